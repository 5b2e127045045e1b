"""A PyTorch transcription of CMBS's official forwards (marmot-xy/CMBS `model/models.py` and
`model/main_model.py`), written for these tests from reading that code: the same module names and shapes, so
`state_dict()` has the official keys (the released DataParallel files' keys minus `module.`), including the
modules the official forward never calls (`encoder_layer`, `decoder_layer`, each decoder layer's `self_attn`,
the attention's `ave_bottleneck`, the weak model's `classifier`, the supervised model's `video_norm` and
`audio_norm`).

Like the official code, the relation modules work sequence-first ([T, B, D]); inputs are audio [B, T, 128]
and visual [B, T, 7, 7, 512], and the forward returns the official tuple.
"""

import copy
import warnings

import torch
from torch import nn
from torch.nn import functional as F


class AudioGuidedAttention(nn.Module):
  """`New_Audio_Guided_Attention` (visual 512, audio 128, hidden 256)."""

  def __init__(self, beta):
    super().__init__()
    self.beta = beta
    c, a, h = 512, 128, 256
    self.affine_video_1, self.affine_audio_1 = nn.Linear(c, c), nn.Linear(a, c)
    self.affine_bottleneck, self.affine_v_c_att = nn.Linear(c, h), nn.Linear(h, c)
    self.affine_video_2, self.affine_audio_2 = nn.Linear(c, h), nn.Linear(a, h)
    self.affine_v_s_att = nn.Linear(h, 1)
    self.video_query, self.video_key = nn.Linear(c, c // 4), nn.Linear(c, c // 4)
    self.video_value = nn.Linear(c, c)
    self.affine_video_ave, self.affine_video_3 = nn.Linear(c, h), nn.Linear(c, h)
    self.ave_bottleneck = nn.Linear(512, 256)  # never called
    self.ave_v_att = nn.Linear(h, 1)
    self.dropout = nn.Dropout(0.2)
    self.norm = nn.LayerNorm(c)

  def forward(self, video, audio_tbd):
    audio = audio_tbd.transpose(1, 0)
    b, t, hh, ww, c = video.shape
    n = hh * ww
    audio_flat = audio.reshape(b * t, -1)
    raw = video.reshape(b, t, n, c)
    q = self.video_query(raw).reshape(b * t, n, -1)
    k = self.video_key(raw).reshape(b * t, n, -1)
    v = self.video_value(raw).reshape(b * t, n, -1)
    attended = torch.matmul(torch.softmax(torch.bmm(q, k.transpose(1, 2)), dim=-1), v)
    feat = self.norm(raw.reshape(b * t, n, c) + self.dropout(attended))  # [bt, n, c]
    # self spatial attention
    mean = F.relu(self.affine_video_ave(feat.sum(dim=1) / n)).unsqueeze(1)
    query = F.relu(self.affine_video_3(feat)) * mean
    weights = torch.softmax(torch.tanh(self.ave_v_att(query)).transpose(2, 1), dim=-1)
    self_feat = torch.bmm(weights, feat).reshape(b, t, c)
    # channel attention
    a1 = F.relu(self.affine_audio_1(audio_flat)).unsqueeze(1)
    v1 = F.relu(self.affine_video_1(feat))
    joint = F.relu(self.affine_bottleneck((a1 * v1).mean(dim=1)))
    channel = torch.sigmoid(self.affine_v_c_att(joint)).reshape(b, t, 1, c)
    c_feat = (raw * (channel + 1)).reshape(b * t, n, c)
    # audio spatial attention
    query2 = F.relu(self.affine_video_2(c_feat)) * F.relu(
        self.affine_audio_2(audio_flat)
    ).unsqueeze(1)
    weights2 = torch.softmax(torch.tanh(self.affine_v_s_att(query2)).transpose(2, 1), dim=-1)
    pooled = torch.bmm(weights2, c_feat).reshape(b, t, c)
    return pooled + self.beta * torch.sigmoid(self_feat) * pooled


class EncoderLayer(nn.Module):

  def __init__(self, d_model, nhead, dim_feedforward, dropout=0.1):
    super().__init__()
    self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
    self.linear1, self.linear2 = nn.Linear(d_model, dim_feedforward), nn.Linear(
        dim_feedforward, d_model
    )
    self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
    self.dropout, self.dropout1, self.dropout2 = (nn.Dropout(dropout) for _ in range(3))

  def forward(self, src):
    src = self.norm1(src + self.dropout1(self.self_attn(src, src, src)[0]))
    return self.norm2(src + self.dropout2(self.linear2(self.dropout(F.relu(self.linear1(src))))))


class DecoderLayer(nn.Module):

  def __init__(self, d_model, nhead, dim_feedforward, dropout=0.1):
    super().__init__()
    self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)  # never called
    self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
    self.linear1, self.linear2 = nn.Linear(d_model, dim_feedforward), nn.Linear(
        dim_feedforward, d_model
    )
    self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
    self.dropout, self.dropout1, self.dropout2 = (nn.Dropout(dropout) for _ in range(3))

  def forward(self, tgt, memory):
    keys = torch.cat([memory, tgt], dim=0)
    tgt = self.norm1(tgt + self.dropout1(self.multihead_attn(tgt, keys, keys)[0]))
    return self.norm2(tgt + self.dropout2(self.linear2(self.dropout(F.relu(self.linear1(tgt))))))


class Stack(nn.Module):
  """`Encoder` / `Decoder`: deep copies of one layer, applied in turn."""

  def __init__(self, layer, num_layers):
    super().__init__()
    self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(num_layers)])

  def forward(self, x, *memory):
    for layer in self.layers:
      x = layer(x, *memory)
    return x


class InternalTemporalRelationModule(nn.Module):

  def __init__(self, input_dim, d_model, feedforward_dim):
    super().__init__()
    self.encoder_layer = EncoderLayer(d_model, 4, feedforward_dim)
    self.encoder = Stack(self.encoder_layer, 2)
    self.affine_matrix = nn.Linear(input_dim, d_model)

  def forward(self, feature):
    return self.encoder(self.affine_matrix(feature))


class CrossModalRelationAttModule(nn.Module):

  def __init__(self, input_dim, d_model, feedforward_dim):
    super().__init__()
    self.decoder_layer = DecoderLayer(d_model, 4, feedforward_dim)
    self.decoder = Stack(self.decoder_layer, 1)
    self.affine_matrix = nn.Linear(input_dim, d_model)

  def forward(self, query, memory):
    return self.decoder(self.affine_matrix(query), memory)


class AudioVideoInter(nn.Module):

  def __init__(self, d_model, n_head, head_dropout=0.2):
    super().__init__()
    self.dropout = nn.Dropout(0.1)
    self.video_multihead = nn.MultiheadAttention(d_model, num_heads=n_head, dropout=head_dropout)
    self.norm1 = nn.LayerNorm(d_model)

  def forward(self, video, audio):
    product = video * audio
    memory = torch.cat([audio, video], dim=0)
    return self.norm1(product + self.dropout(self.video_multihead(product, memory, memory)[0]))


def top_k_mean(scores_btk, k=4):
  return scores_btk.sort(descending=True, dim=1)[0][:, :k, :].mean(dim=1)


class WeakMainModel(nn.Module):
  """`weak_main_model` with configs/weak.json."""

  def __init__(self, alpha=0.2, gamma=0.5, beta=0.5, d_model=256):
    super().__init__()
    self.alpha, self.gamma = alpha, gamma
    self.spatial_channel_att = AudioGuidedAttention(beta)
    self.v_fc = nn.Linear(512, 512)
    self.dropout = nn.Dropout(0.1)
    self.video_encoder = InternalTemporalRelationModule(512, d_model, 2048)
    self.video_decoder = CrossModalRelationAttModule(512, d_model, 1024)
    self.audio_encoder = InternalTemporalRelationModule(128, d_model, 2048)
    self.audio_decoder = CrossModalRelationAttModule(128, d_model, 1024)
    self.AVInter = AudioVideoInter(d_model, 2, 0.2)
    self.VAInter = AudioVideoInter(d_model, 2, 0.2)
    self.audio_gated = nn.Sequential(nn.Linear(d_model, 1), nn.Sigmoid())
    self.video_gated = nn.Sequential(nn.Linear(d_model, 1), nn.Sigmoid())
    self.CAS_model = nn.Module()
    self.CAS_model.classifier = nn.Sequential(nn.Conv1d(d_model, 29, kernel_size=1, bias=False))
    self.classifier = nn.Linear(d_model, 1)  # never called
    self.audio_cas = nn.Linear(d_model, 29)
    self.video_cas = nn.Linear(d_model, 29)

  def forward(self, visual, audio):
    audio = audio.transpose(1, 0)  # [T, B, 128]
    visual = self.dropout(F.relu(self.v_fc(visual)))
    visual = self.spatial_channel_att(visual, audio).transpose(1, 0)  # [T, B, 512]
    video_kv = self.video_encoder(visual)
    audio_query = self.audio_decoder(audio, video_kv)
    audio_kv = self.audio_encoder(audio)
    video_query = self.video_decoder(visual, audio_kv)
    audio_gate = self.audio_gated(video_kv)
    video_gate = self.video_gated(audio_kv)
    av_gate = ((audio_gate + video_gate) / 2).permute(1, 0, 2)  # [B, T, 1]
    a = self.alpha
    video_query = (1 - a) * video_query + audio_gate * video_query * a
    audio_query = (1 - a) * audio_query + video_gate * audio_query * a
    video_cas = self.video_cas(video_query).permute(1, 0, 2)
    audio_cas = self.audio_cas(audio_query).permute(1, 0, 2)
    video_query = self.AVInter(video_query, audio_query)
    audio_query = self.VAInter(audio_query, video_query)
    fused = ((video_query + audio_query) / 2).transpose(0, 1)  # [B, T, D]
    cas = self.CAS_model.classifier(fused.permute(0, 2, 1)).permute(0, 2, 1)
    cas = self.gamma * torch.sigmoid(video_cas) * cas + self.gamma * torch.sigmoid(audio_cas) * cas
    raw_logits = top_k_mean(cas)[:, None, :]
    logits = (av_gate * raw_logits).max(dim=1)[0]
    return av_gate.squeeze(), raw_logits.squeeze(), torch.softmax(logits, dim=-1)


class RNNEncoder(nn.Module):

  def __init__(self, audio_dim, video_dim, d_model):
    super().__init__()
    with warnings.catch_warnings():  # dropout with one layer: torch warns that it never acts
      warnings.simplefilter("ignore", UserWarning)
      self.audio_rnn = nn.LSTM(
          audio_dim, d_model // 2, 1, batch_first=True, bidirectional=True, dropout=0.2
      )
      self.visual_rnn = nn.LSTM(
          video_dim, d_model, 1, batch_first=True, bidirectional=True, dropout=0.2
      )

  def forward(self, audio, visual):
    return self.audio_rnn(audio)[0], self.visual_rnn(visual)[0]


class SupvLocalizeModule(nn.Module):

  def __init__(self, d_model):
    super().__init__()
    self.classifier = nn.Linear(d_model, 1)
    self.event_classifier = nn.Linear(d_model, 28)

  def forward(self, fused_tbd):
    pooled = fused_tbd.transpose(1, 0).max(1)[0]
    return self.classifier(fused_tbd), self.event_classifier(pooled)


class SupvMainModel(nn.Module):
  """`supv_main_model` with configs/main.json."""

  def __init__(self, alpha=0.1, gamma=0.3, beta=0.4, d_model=256):
    super().__init__()
    self.alpha, self.gamma = alpha, gamma
    self.spatial_channel_att = AudioGuidedAttention(beta)
    self.v_fc = nn.Linear(512, 512)
    self.dropout = nn.Dropout(0.2)
    self.video_encoder = InternalTemporalRelationModule(512, d_model, 1024)
    self.video_decoder = CrossModalRelationAttModule(512, d_model, 1024)
    self.audio_encoder = InternalTemporalRelationModule(d_model, d_model, 1024)
    self.audio_decoder = CrossModalRelationAttModule(d_model, d_model, 1024)
    self.audio_visual_rnn_layer = RNNEncoder(128, 512, d_model)
    self.audio_gated = nn.Sequential(nn.Linear(d_model, 1), nn.Sigmoid())
    self.video_gated = nn.Sequential(nn.Linear(d_model, 1), nn.Sigmoid())
    self.AVInter = AudioVideoInter(d_model, 4, 0.2)
    self.VAInter = AudioVideoInter(d_model, 4, 0.2)
    self.localize_module = SupvLocalizeModule(d_model)
    self.video_norm, self.audio_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)  # never called
    self.audio_cas = nn.Linear(d_model, 28)
    self.video_cas = nn.Linear(d_model, 28)

  def forward(self, visual, audio):
    rnn_audio_in = audio
    visual = self.dropout(F.relu(self.v_fc(visual)))
    visual = self.spatial_channel_att(visual, audio.transpose(1, 0))  # [B, T, 512]
    audio_rnn, visual_rnn = self.audio_visual_rnn_layer(rnn_audio_in, visual)
    audio_in = audio_rnn.transpose(1, 0)  # [T, B, 256]
    visual_in = visual_rnn.transpose(1, 0)  # [T, B, 512]
    video_kv = self.video_encoder(visual_in)
    audio_query = self.audio_decoder(audio_in, video_kv)
    audio_kv = self.audio_encoder(audio_in)
    video_query = self.video_decoder(visual_in, audio_kv)
    audio_gate = self.audio_gated(audio_kv)
    video_gate = self.video_gated(video_kv)
    gate = audio_gate * video_gate
    video_query = video_query + audio_gate * video_query * self.alpha
    audio_query = audio_query + video_gate * audio_query * self.alpha
    video_cas = self.video_cas(video_query).permute(1, 0, 2)
    audio_cas = self.audio_cas(audio_query).permute(1, 0, 2)
    av_score = (top_k_mean(video_cas) + top_k_mean(audio_cas)) / 2
    video_query = self.AVInter(video_query, audio_query)
    audio_query = self.VAInter(audio_query, video_query)
    is_event, event_scores = self.localize_module((video_query + audio_query) / 2)
    return is_event, event_scores + self.gamma * av_score, gate, av_score


def supervised_loss(outputs, labels):
  """supv_main.py `train_epoch`'s loss of the model's tuple and the [B, T, 29] labels."""
  is_event_scores, event_scores, gate, av_score = outputs
  is_event_scores = is_event_scores.transpose(1, 0).squeeze()
  gate = gate.transpose(1, 0).squeeze()
  labels_bce, labels_evn = labels[:, :, :-1].max(-1)
  labels_event = labels_evn.max(-1)[0]
  bce, ce = nn.BCEWithLogitsLoss(), nn.CrossEntropyLoss()
  terms = {
      "event": bce(is_event_scores, labels_bce),
      "gate": bce(gate, labels_bce),
      "class": ce(event_scores, labels_event),
      "av_class": ce(av_score, labels_event),
  }
  return sum(terms.values()), terms


def segment_prediction(is_event_scores, class_scores):
  """`compute_accuracy_supervised`'s prediction (before comparing with the labels): [B, T] classes."""
  is_event = torch.sigmoid(is_event_scores) > 0.5
  pred = is_event.long() * class_scores.max(-1)[1][:, None]
  pred[~is_event] = 28
  return pred
