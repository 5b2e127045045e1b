"""PyTorch transcriptions of the official AVE forwards (the `parity` extra), the oracles of the AVE model tests.

Written from reading YapengTian/AVE-ECCV18 (`models.py`, `models_fusion.py`, `models_weakly.py`) and
jasongief/PSP_CVPR_2021 (`fully_model.py`, `weakly_model.py`, `measure.py`), with the official module and
parameter names (so a random state_dict has the official keys, unused modules included) and without `.cuda()`.
Inputs: audio [B, 10, 128], visual [B, 10, 7, 7, 512].
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import torch_oracles

GAIN = 4.0


# --- inputs, labels and state_dicts of the AVE model tests ---------------------------------------


def inputs(batch=2, seed=0):
  rng = np.random.default_rng(seed)
  audio = rng.normal(size=(batch, 10, 128)).astype(np.float32)
  visual = np.abs(rng.normal(size=(batch, 10, 7, 7, 512))).astype(np.float32)  # post-ReLU VGG maps
  return audio, visual


def labels(batch=2, seed=0):
  """AVE-like labels: one event class per clip on a random run of segments, background (28) elsewhere; the
  last clip background only."""
  rng = np.random.default_rng(seed)
  segment = np.zeros((batch, 10, 29), np.float32)
  video = np.zeros((batch, 29), np.float32)
  for b in range(batch):
    event = np.zeros(10, bool)
    if b < batch - 1:
      start = rng.integers(0, 8)
      event[start : start + rng.integers(2, 10 - start + 1)] = True
    cls = int(rng.integers(0, 28))
    segment[b, event, cls] = 1.0
    segment[b, ~event, 28] = 1.0
    video[b, cls if event.any() else 28] = 1.0
  return segment, video


def state_dict(module: torch.nn.Module) -> dict[str, np.ndarray]:
  return {key: value.detach().numpy().copy() for key, value in module.state_dict().items()}


def randomize(model: nn.Module, seed: int = 0, gain: float = GAIN) -> nn.Module:
  """`torch_oracles.randomize`, then every weight matrix times `gain`: with the plain +-1/sqrt(fan_in) draw the
  AVE models' softmaxes stay near uniform (AVGA's largest weight ~0.03 of 49 regions, class probabilities
  within 0.01 of 1/29), where a wrong region or class index hides under the tolerance; with gain 4 AVGA peaks
  at ~0.4 and the logits spread by ~1. Returns the model in eval mode."""
  torch_oracles.randomize(model, seed)
  with torch.no_grad():
    for param in model.parameters():
      if param.ndim == 2:
        param.mul_(gain)
  return model.eval()


class AVGAMixin:
  """The audio-guided visual attention of `att_Net.forward` (and PSP's `AVGA`), on the host's affine_* layers."""

  def attend(self, audio, video):
    regions = video.reshape(video.size(0) * video.size(1), -1, video.size(-1))  # [B*T, 49, 512]
    projected = torch.relu(self.affine_video(regions))
    guide = torch.relu(self.affine_audio(audio.reshape(-1, audio.size(-1))))
    content = self.affine_v(projected) + self.affine_g(guide).unsqueeze(2)
    scores = self.affine_h(torch.tanh(content)).squeeze(2)  # [B*T, 49]
    weights = torch.softmax(scores, dim=-1).unsqueeze(1)
    attended = torch.bmm(weights, regions).reshape(video.size(0), -1, video.size(-1))
    return attended, weights.reshape(video.size(0), video.size(1), -1)

  def make_avga(self, audio_dim=128, visual_dim=512, hidden_size=512):
    self.affine_audio = nn.Linear(audio_dim, hidden_size)
    self.affine_video = nn.Linear(visual_dim, hidden_size)
    self.affine_v = nn.Linear(hidden_size, 49, bias=False)
    self.affine_g = nn.Linear(hidden_size, 49, bias=False)
    self.affine_h = nn.Linear(49, 1, bias=False)


class AttNet(nn.Module, AVGAMixin):
  """`att_Net(128, 128, 512, 29)`: A+V-att (models.py; returns the softmax) or the weak one (models_weakly.py;
  returns (softmax of the max-pooled score, score))."""

  def __init__(self, weak=False, hidden_dim=128, hidden_size=512, classes=29):
    super().__init__()
    self.weak = weak
    self.lstm_audio = nn.LSTM(128, hidden_dim, 1, batch_first=True, bidirectional=True)
    self.lstm_video = nn.LSTM(512, hidden_dim, 1, batch_first=True, bidirectional=True)
    self.make_avga(hidden_size=hidden_size)
    self.L1 = nn.Linear(hidden_dim * 4, 64)
    self.L2 = nn.Linear(64, classes)

  def forward(self, audio, video):
    attended, _ = self.attend(audio, video)
    lstm_audio, _ = self.lstm_audio(audio)
    lstm_video, _ = self.lstm_video(attended)
    joint = torch.relu(torch.cat((lstm_audio, lstm_video), -1))
    score = self.L2(torch.relu(self.L1(joint)))
    if not self.weak:
      return torch.softmax(score, dim=-1)
    pooled = F.max_pool1d(score.permute(0, 2, 1), score.size(1)).squeeze(-1)
    return torch.softmax(pooled, dim=-1), score


class TBMRFNet(nn.Module, AVGAMixin):
  """`TBMRF_Net(128, 128, 512, 29, 1)` (models_fusion.py): DMRN; returns the softmax."""

  def __init__(self, hidden_dim=128, hidden_size=512, classes=29, nb_block=1):
    super().__init__()
    self.nb_block = nb_block
    self.lstm_audio = nn.LSTM(128, hidden_dim, 1, batch_first=True, bidirectional=True)
    self.lstm_video = nn.LSTM(512, hidden_dim, 1, batch_first=True, bidirectional=True)
    self.make_avga(hidden_size=hidden_size)
    width = 2 * hidden_dim
    self.U_v = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width))
    self.U_a = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width))
    self.L2 = nn.Linear(width, classes)

  def forward(self, audio, video):
    attended, _ = self.attend(audio, video)
    a, _ = self.lstm_audio(audio)
    v, _ = self.lstm_video(attended)
    for _ in range(self.nb_block):
      merged = (self.U_v(v) + self.U_a(a)) * 0.5
      v, a = torch.tanh(a + merged), torch.tanh(v + merged)  # each takes the other's residual
    return torch.softmax(self.L2((v + a) * 0.5), dim=-1)


class AVGA(nn.Module, AVGAMixin):
  """PSP's `AVGA` submodule (`attention.*` keys)."""

  def __init__(self):
    super().__init__()
    self.make_avga()

  def forward(self, audio, video):
    return self.attend(audio, video)[0]


class LSTMAV(nn.Module):
  """PSP's `LSTM_A_V` (`lstm_a_v.*` keys)."""

  def __init__(self, audio_dim=128, visual_dim=128, hidden_dim=128):
    super().__init__()
    self.lstm_audio = nn.LSTM(audio_dim, hidden_dim, 1, batch_first=True, bidirectional=True)
    self.lstm_video = nn.LSTM(visual_dim, hidden_dim, 1, batch_first=True, bidirectional=True)

  def forward(self, audio, video):
    return self.lstm_audio(audio)[0], self.lstm_video(video)[0]


def _row_normalise(x):
  return x / (x.sum(dim=-1, keepdim=True) + 1e-8)


class PSPModule(nn.Module):
  """PSP's positive sample propagation (`psp.*` keys): fully_model.PSP (fully=True) or weakly_model.PSP."""

  def __init__(self, fully, dim=256):
    super().__init__()
    self.fully = fully
    for name in ("v_L1", "v_L2", "a_L1", "a_L2") + (("v_fc", "a_fc") if fully else ()):
      setattr(self, name, nn.Linear(dim, dim, bias=False))
    self.dropout = nn.Dropout(0.1)
    self.layer_norm = nn.LayerNorm(dim, eps=1e-6)

  def forward(self, a_fea, v_fea, threshold):
    branch = lambda layer, x: self.dropout(torch.relu(layer(x)))
    v1, v2 = branch(self.v_L1, v_fea), branch(self.v_L2, v_fea)
    a1, a2 = branch(self.a_L1, a_fea), branch(self.a_L2, a_fea)
    beta_va = torch.relu(torch.bmm(v2, a1.permute(0, 2, 1)) / v2.shape[2] ** 0.5)
    beta_av = beta_va.permute(0, 2, 1)
    gammas = []
    for beta in (beta_va, beta_av):
      beta = _row_normalise(beta)
      gamma = (beta > threshold).float() * beta
      gammas.append(_row_normalise(gamma) if self.fully else gamma)
    gamma_va, gamma_av = gammas
    v_psp = v_fea + torch.bmm(gamma_va, a2)
    a_psp = a_fea + torch.bmm(gamma_av, v1)
    if self.fully:
      v_psp = self.dropout(torch.relu(self.v_fc(v_psp)))
      a_psp = self.dropout(torch.relu(self.a_fc(a_psp)))
    v_psp, a_psp = self.layer_norm(v_psp), self.layer_norm(a_psp)
    return (v_psp + a_psp) * 0.5, v_psp, a_psp, gamma_va, gamma_av


class Classify(nn.Module):
  """fully_model.Classify: present in the official state_dict, never called."""

  def __init__(self, dim=256, classes=28):
    super().__init__()
    self.L1 = nn.Linear(dim, 64, bias=False)
    self.L2 = nn.Linear(64, classes, bias=False)


class PSPNet(nn.Module):
  """`psp_net(128, 512, 128, 29)` of fully_model.py (fully=True; forward returns (fusion, out, cross_att)) or
  of weakly_model.py (forward returns (out_avg, score)); the extra last outputs are the two PSP weights.
  """

  def __init__(self, fully, threshold):
    super().__init__()
    self.fully, self.threshold = fully, threshold
    if fully:
      self.fa = nn.Sequential(nn.Linear(128, 256, bias=False), nn.Linear(256, 128, bias=False))
      self.fv = nn.Sequential(nn.Linear(512, 256, bias=False), nn.Linear(256, 128, bias=False))
      self.v_classify, self.a_classify = Classify(), Classify()
      self.L3, self.L4 = nn.Linear(256, 64), nn.Linear(64, 2)
    else:
      self.temperature = nn.Parameter(torch.ones(1, 29))
      self.W1 = nn.Linear(256, 1, bias=False)
      self.W2 = nn.Linear(64, 1, bias=False)
      self.W3 = nn.Linear(29, 1, bias=False)
    self.linear_v = nn.Linear(512, 128)  # used by the weak model only
    self.attention = AVGA()
    self.lstm_a_v = LSTMAV()
    self.psp = PSPModule(fully)
    self.L1 = nn.Linear(256, 64, bias=False)
    self.L2 = nn.Linear(64, 29, bias=False)

  def forward(self, audio, video):
    if self.fully:
      audio = self.fa(audio)
      visual = self.fv(self.attention(audio, video))
    else:
      visual = self.linear_v(self.attention(audio, video))
    lstm_audio, lstm_video = self.lstm_a_v(audio, visual)
    fusion, v_psp, a_psp, gamma_va, gamma_av = self.psp(lstm_audio, lstm_video, self.threshold)
    score = self.L2(torch.relu(self.L1(fusion)))
    if self.fully:
      cross_att = (F.normalize(v_psp, dim=-1) * F.normalize(a_psp, dim=-1)).sum(dim=-1)
      return fusion, score, cross_att, gamma_va, gamma_av
    weight = torch.sigmoid(torch.relu(self.W3(score)))  # [B, T, 1]
    score = score * weight.expand_as(score)
    out_avg = F.avg_pool1d(score.permute(0, 2, 1), score.size(1)).squeeze(-1)
    return torch.softmax(out_avg, dim=-1), score, weight.squeeze(-1), gamma_va, gamma_av


def avps_loss(av_similarity, soft_label):
  """measure.AVPSLoss: MSE between the L1-normalised relu of the similarity and the soft label."""
  relu = torch.relu(av_similarity)
  return nn.MSELoss()(relu / (relu.sum(dim=-1, keepdim=True) + 1e-8), soft_label)


def official_avps_targets(label_batches):
  """The AVPS soft labels the official `AVE_Fully_Dataset.get_segment_wise_relation` hands out for successive
  batches of one-hot segment labels [B, T, 29], with its buffer that is never cleared (a numpy transcription
  of the loop)."""
  buffer = None
  targets = []
  for labels in label_batches:
    if buffer is None:
      buffer = np.zeros(labels.shape[:2], np.float32)
    for i in range(labels.shape[0]):
      present = sorted(np.sum(labels[i].T, axis=1).nonzero()[0].tolist())
      rows = labels[i, :, present[0]].nonzero()[0].tolist()
      if rows:
        buffer[i, rows] = 1 / len(rows)
    targets.append(buffer.copy())
  return targets
