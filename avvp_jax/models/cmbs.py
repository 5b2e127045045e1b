"""CMBS: cross-modal background suppression for audio-visual event localization (Xia and Zhao, CVPR 2022).

As coded in marmot-xy/CMBS `model/main_model.py` (`supv_main_model`, `weak_main_model`; the code differs from
the paper in places, and the code is what is followed). Both models take AVE's features, audio [B, T, 128]
(VGGish) and visual [B, T, 7, 7, 512] (VGG-19 pool5 maps), and share a trunk:

  visual <- Dropout(ReLU(`v_fc` visual))                                  per position of the map
  visual <- `spatial_channel_att`(visual, audio)   [B, T, 512]           audio_guided_attention.py
  video_kv = `video_encoder`(visual); audio_query = `audio_decoder`(audio, memory=video_kv)    cmran.py
  audio_kv = `audio_encoder`(audio);  video_query = `video_decoder`(visual, memory=audio_kv)
  gates from `audio_gated` and `video_gated` (Linear D -> 1, sigmoid) on the encoder outputs
  per-segment class logits `video_cas`, `audio_cas` of the gated queries
  video_query <- `AVInter`(video_query, audio_query); audio_query <- `VAInter`(audio_query, video_query)
  fused = (video_query + audio_query) / 2                                [B, T, D]

(`VAInter` reads the video query `AVInter` has just updated; the supervised model puts BiLSTMs between the
attention and the relation modules.) What differs, per model, is listed in `CMBS` and `WeakCMBS`. Both return
a dict with the official outputs under descriptive names, float32 whatever the computation dtype (float64 when
computing in float64), plus `segment_class` int32 [B, T]: 0-27 an event class, 28 (`BACKGROUND`) background,
by the rule of the official evaluation (`compute_accuracy_supervised` in supv_main.py and weakly_main.py): a
segment is an event where sigmoid(event score) > 0.5, and every event segment gets the video's one class, the
argmax of the class logits.

With `trunk_only=True` (another head on the network, `models.localizer_leap`) neither model builds its class
heads (`video_cas`, `audio_cas`, `localize_module`, `CAS_model`): the outputs are the streams after the
interactions, float32 [B, T, D]: `audio` (the audio query after `VAInter`), `visual` (the video query after
`AVInter`) and `fusion`, their mean, plus `event_gate` [B, T].

Params mirror the official names (the released DataParallel state_dict's keys minus `module.`); modules the
official forward never calls are not created (`avvp_jax.convert.cmbs` lists and drops them).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from avvp_jax.models import audio_guided_attention
from avvp_jax.models import cmran
from avvp_jax.models import layers
from avvp_jax.models import lstm

NUM_EVENT_CLASSES = 28  # AVE's event classes; index 28 is background
BACKGROUND = NUM_EVENT_CLASSES


def top_k_mean(scores_BxTxK: jax.Array, k: int) -> jax.Array:
  """The mean of the k largest values over time of each column: [B, T, K] -> [B, K]."""
  top_BxKxk, _ = jax.lax.top_k(jnp.swapaxes(scores_BxTxK, 1, 2), k)
  return top_BxKxk.mean(axis=-1)


def _wide(outputs: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """Float outputs in at least float32 (float64 stays float64); `segment_class` is int32."""
  return {
      key: value.astype(jnp.promote_types(value.dtype, jnp.float32))
      if key != "segment_class"
      else value
      for key, value in outputs.items()
  }


def _trunk(
    audio_BxTxD: jax.Array,
    visual_BxTxD: jax.Array,
    fused_BxTxD: jax.Array,
    event_gate_BxT: jax.Array,
) -> dict[str, jax.Array]:
  """The `trunk_only` outputs (module docstring)."""
  return _wide(
      {
          "audio": audio_BxTxD,
          "visual": visual_BxTxD,
          "fusion": fused_BxTxD,
          "event_gate": event_gate_BxT,
      }
  )


def segment_classes(is_event_BxT: jax.Array, class_logits_BxK: jax.Array) -> jax.Array:
  """CMBS's official segment rule: event segments take the argmax class of the video, the others background.

  Args:
    is_event_BxT: bool [B, T], True for an event segment.
    class_logits_BxK: the video's class scores [B, K] (K = 28, or 29 with background last).

  Returns:
    int32 [B, T]: the class of every event segment, `BACKGROUND` elsewhere.
  """
  video_class_B = jnp.argmax(class_logits_BxK, axis=-1).astype(jnp.int32)
  return jnp.where(is_event_BxT, video_class_B[:, None], jnp.int32(BACKGROUND))


def weak_segment_classes(
    event_gate_BxT: jax.Array, class_logits_BxK: jax.Array, every_segment_foreground: bool
) -> jax.Array:
  """The weak model's segment classes (`WeakCMBS.every_segment_foreground`): int32 [B, T].

  True: the official evaluation, `sigmoid(event_gate) > 0.5` (true for every gate in (0, 1)); False: an event
  where `event_gate > 0.5`. Event segments take the argmax of the 29 `class_logits` [B, 29].
  """
  if every_segment_foreground:
    is_event_BxT = jax.nn.sigmoid(event_gate_BxT) > 0.5
  else:
    is_event_BxT = event_gate_BxT > 0.5
  return segment_classes(is_event_BxT, class_logits_BxK)


def _relation(
    d_model: int, name: str, ffn_dim: int, cross_modal: bool, dtype: layers.Dtype | None
) -> cmran.RelationModule:
  """CMBS's relation modules: encoders of 2 layers, decoders of 1, 4 heads (`InternalTemporalRelationModule`,
  `CrossModalRelationAttModule`)."""
  return cmran.RelationModule(
      d_model,
      num_layers=1 if cross_modal else 2,
      ffn_dim=ffn_dim,
      cross_modal=cross_modal,
      dtype=dtype,
      name=name,
  )


class AudioVideoInter(nn.Module):
  """CMBS's audio-visual interaction: the product of the two streams attends to both, post-norm.

  out = LayerNorm(g + Dropout(Attention(g, [audio; video]))), g = video * audio (all [B, T, D]); as
  `AudioVideoInter` in main_model.py, with `nn.MultiheadAttention` `video_multihead` and LayerNorm `norm1`.

  Attributes:
    num_heads: attention heads (official: supervised 4, weak 2).
    attention_dropout: dropout on the attention weights (official 0.2).
    dropout: dropout on the attention output (official 0.1).
    dtype: computation dtype.
  """

  num_heads: int = 4
  attention_dropout: float = 0.2
  dropout: float = 0.1
  dtype: layers.Dtype | None = None

  @nn.compact
  def __call__(self, video_BxTxD: jax.Array, audio_BxTxD: jax.Array, *, train: bool) -> jax.Array:
    global_BxTxD = video_BxTxD * audio_BxTxD
    memory_Bx2TxD = jnp.concatenate([audio_BxTxD, video_BxTxD], axis=1)
    attention = layers.MultiHeadAttention(
        self.num_heads,
        self.attention_dropout,
        packed_init=True,
        dtype=self.dtype,
        name="video_multihead",
    )
    attended_BxTxD, _ = attention(global_BxTxD, memory_Bx2TxD, memory_Bx2TxD, train=train)
    attended_BxTxD = nn.Dropout(self.dropout)(attended_BxTxD, deterministic=not train)
    return layers.layer_norm("norm1", self.dtype)(global_BxTxD + attended_BxTxD)


class WeakCMBS(nn.Module):
  """Weakly supervised CMBS (`weak_main_model`, configs/weak.json), trained on video labels only.

  Differences from the supervised model: no LSTMs (the encoders read the attended visual features and the
  raw audio), feed-forward width 2048 in the encoders (1024 in the decoders), crossed gates (the audio gate
  comes from the VIDEO encoder and the video gate from the AUDIO encoder) averaged into the event gate, gated
  queries (1 - alpha) q + alpha g q, 2-head interactions, and a class-activation head over 29 classes
  (background included): a bias-free kernel-1 Conv1d `CAS_model` on the fused segments, gated by gamma times
  the sigmoids of `video_cas` and `audio_cas`, top-k pooled over time into `class_logits`; the video's class
  probability is the softmax over classes of the maximum over time of the event gate times `class_logits`.

  Attributes:
    alpha, gamma, beta: official 0.2, 0.5, 0.5.
    d_model: model width (official 256).
    top_k: segments pooled for the class logits (official 4).
    dropout: dropout after `v_fc` (official 0.1).
    every_segment_foreground: the official evaluation (weakly_main.py, `validate_epoch`) hands the event gate
      (already a probability, the mean of two sigmoids) to `compute_accuracy_supervised`, which applies a
      sigmoid again and thresholds at 0.5: sigmoid(p) > 0.5 for every p > 0, so every segment is an event
      segment and gets the video class (the argmax over the 29 `class_logits`: background there makes every
      segment background). True (official): that rule, computed as coded; False: event where gate > 0.5.
    dtype: computation dtype.
  """

  alpha: float = 0.2
  gamma: float = 0.5
  beta: float = 0.5
  d_model: int = 256
  top_k: int = 4
  dropout: float = 0.1
  every_segment_foreground: bool = True
  trunk_only: bool = False
  dtype: layers.Dtype | None = None

  @nn.compact
  def __call__(
      self, audio_BxTxA: jax.Array, visual_BxTxHxWxC: jax.Array, *, train: bool = False
  ) -> dict[str, jax.Array]:
    """Localizes events from video-level supervision.

    Args:
      audio_BxTxA: audio features [B, T, 128].
      visual_BxTxHxWxC: visual feature maps [B, T, 7, 7, 512].
      train: training mode (dropout; needs rngs={"dropout": key}).

    Returns:
      event_gate [B, T]: the mean of the two gates, a probability per segment (`av_gate`);
      class_logits [B, 29]: top-k pooled gated class activations (`raw_logits`, the official evaluation's
        class scores);
      class_prob [B, 29]: softmax over classes of max_t event_gate * class_logits (`event_scores`, the input
        of the official MultiLabelSoftMarginLoss);
      segment_class int32 [B, T]: see `every_segment_foreground`.
    """
    num_classes = NUM_EVENT_CLASSES + 1
    visual_dim = visual_BxTxHxWxC.shape[-1]
    dense = lambda features, fan_in, name, **kw: layers.torch_dense(
        features, fan_in, name=name, dtype=self.dtype, **kw
    )
    visual = nn.relu(dense(visual_dim, visual_dim, "v_fc")(visual_BxTxHxWxC))
    visual = nn.Dropout(self.dropout)(visual, deterministic=not train)
    visual_BxTxC = audio_guided_attention.AudioGuidedAttention(
        beta=self.beta, dtype=self.dtype, name="spatial_channel_att"
    )(visual, audio_BxTxA, train=train)

    relation = functools.partial(_relation, self.d_model, dtype=self.dtype)
    video_kv_BxTxD = relation("video_encoder", 2048, False)(visual_BxTxC, train=train)
    audio_query_BxTxD = relation("audio_decoder", 1024, True)(
        audio_BxTxA, video_kv_BxTxD, train=train
    )
    audio_kv_BxTxD = relation("audio_encoder", 2048, False)(audio_BxTxA, train=train)
    video_query_BxTxD = relation("video_decoder", 1024, True)(
        visual_BxTxC, audio_kv_BxTxD, train=train
    )

    audio_gate_BxTx1 = jax.nn.sigmoid(dense(1, self.d_model, "audio_gated")(video_kv_BxTxD))
    video_gate_BxTx1 = jax.nn.sigmoid(dense(1, self.d_model, "video_gated")(audio_kv_BxTxD))
    av_gate_BxTx1 = (audio_gate_BxTx1 + video_gate_BxTx1) / 2
    gated = lambda query, gate: (1 - self.alpha) * query + gate * query * self.alpha
    video_query_BxTxD = gated(video_query_BxTxD, audio_gate_BxTx1)
    audio_query_BxTxD = gated(audio_query_BxTxD, video_gate_BxTx1)

    inter = lambda name: AudioVideoInter(num_heads=2, dtype=self.dtype, name=name)
    video_inter_BxTxD = inter("AVInter")(video_query_BxTxD, audio_query_BxTxD, train=train)
    audio_inter_BxTxD = inter("VAInter")(audio_query_BxTxD, video_inter_BxTxD, train=train)
    fused_BxTxD = (video_inter_BxTxD + audio_inter_BxTxD) / 2
    event_gate_BxT = av_gate_BxTx1[..., 0]
    if self.trunk_only:
      return _trunk(audio_inter_BxTxD, video_inter_BxTxD, fused_BxTxD, event_gate_BxT)

    video_cas_BxTxK = dense(num_classes, self.d_model, "video_cas")(video_query_BxTxD)
    audio_cas_BxTxK = dense(num_classes, self.d_model, "audio_cas")(audio_query_BxTxD)

    cas_BxTxK = dense(num_classes, self.d_model, "CAS_model", use_bias=False)(fused_BxTxD)
    cas_BxTxK = (
        self.gamma * jax.nn.sigmoid(video_cas_BxTxK) * cas_BxTxK
        + self.gamma * jax.nn.sigmoid(audio_cas_BxTxK) * cas_BxTxK
    )
    class_logits_BxK = top_k_mean(cas_BxTxK, self.top_k)
    video_logits_BxK = (av_gate_BxTx1 * class_logits_BxK[:, None, :]).max(axis=1)
    video_logits_BxK = video_logits_BxK.astype(
        jnp.promote_types(video_logits_BxK.dtype, jnp.float32)
    )
    return _wide(
        {
            "event_gate": event_gate_BxT,
            "class_logits": class_logits_BxK,
            "class_prob": jax.nn.softmax(video_logits_BxK, axis=-1),
            "segment_class": weak_segment_classes(
                event_gate_BxT, class_logits_BxK, self.every_segment_foreground
            ),
        }
    )


class RNNEncoder(nn.Module):
  """The supervised model's BiLSTMs: audio [B, T, A] -> [B, T, D], visual [B, T, C] -> [B, T, 2D].

  `audio_rnn` has D / 2 hidden units per direction, `visual_rnn` D; both are one-layer `nn.LSTM`s, so their
  official `dropout=0.2` (between stacked layers) never acts.
  """

  d_model: int = 256
  dtype: layers.Dtype | None = None

  @nn.compact
  def __call__(
      self, audio_BxTxA: jax.Array, visual_BxTxC: jax.Array, *, train: bool
  ) -> tuple[jax.Array, jax.Array]:
    rnn = lambda hidden, name: lstm.LSTM(hidden, dropout=0.2, dtype=self.dtype, name=name)
    audio_BxTxD = rnn(self.d_model // 2, "audio_rnn")(audio_BxTxA, train=train)
    visual_BxTx2D = rnn(self.d_model, "visual_rnn")(visual_BxTxC, train=train)
    return audio_BxTxD, visual_BxTx2D


class SupvLocalizeModule(nn.Module):
  """The supervised head: an event logit per segment (`classifier`) and the video's class logits from the
  maximum over time of the fused segments (`event_classifier`).

  Attributes:
    dtype: computation dtype.
  """

  dtype: layers.Dtype | None = None

  @nn.compact
  def __call__(self, fused_BxTxD: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Returns (event logits [B, T], class logits [B, 28])."""
    dim = fused_BxTxD.shape[-1]
    dense = lambda features, name: layers.torch_dense(features, dim, name=name, dtype=self.dtype)
    event_logits_BxT = dense(1, "classifier")(fused_BxTxD)[..., 0]
    class_logits_BxK = dense(NUM_EVENT_CLASSES, "event_classifier")(fused_BxTxD.max(axis=1))
    return event_logits_BxT, class_logits_BxK


class CMBS(nn.Module):
  """Fully supervised CMBS (`supv_main_model`, configs/main.json), trained on segment labels.

  After the audio-guided attention, BiLSTMs (`audio_visual_rnn_layer`: audio 128 -> 2 x 128, visual 512 ->
  2 x 256) feed the relation modules (feed-forward width 1024 throughout). Each gate comes from its own
  modality's encoder (audio gate from the audio encoder, video gate from the video encoder); the event gate is
  their product, and each query is gated by the other modality, q + alpha g q. The per-segment class logits
  `video_cas`, `audio_cas` (28 classes) are top-k pooled over time and averaged (`av_class_logits`); the head
  `localize_module` scores each fused segment as event or background and classifies the video from the fused
  segments' maximum over time; its class logits get gamma * `av_class_logits` added.

  Attributes:
    alpha, gamma, beta: official 0.1, 0.3, 0.4.
    d_model: model width (official 256).
    top_k: segments pooled for `av_class_logits` (official 4).
    dropout: dropout after `v_fc` (official 0.2).
    trunk_only: return the streams the heads read instead of their outputs (module docstring).
    dtype: computation dtype.
  """

  alpha: float = 0.1
  gamma: float = 0.3
  beta: float = 0.4
  d_model: int = 256
  top_k: int = 4
  dropout: float = 0.2
  trunk_only: bool = False
  dtype: layers.Dtype | None = None

  @nn.compact
  def __call__(
      self, audio_BxTxA: jax.Array, visual_BxTxHxWxC: jax.Array, *, train: bool = False
  ) -> dict[str, jax.Array]:
    """Localizes events from segment-level supervision.

    Args:
      audio_BxTxA: audio features [B, T, 128].
      visual_BxTxHxWxC: visual feature maps [B, T, 7, 7, 512].
      train: training mode (dropout; needs rngs={"dropout": key}).

    Returns:
      event_logits [B, T]: event-vs-background logit per segment (`is_event_scores`);
      class_logits [B, 28]: the video's class logits, gamma * av_class_logits included (`event_scores`);
      event_gate [B, T]: the product of the audio and video gates, a probability (`audio_visual_gate`);
      av_class_logits [B, 28]: the mean of the top-k pooled audio and video class logits (`av_score`);
      segment_class int32 [B, T]: the video's class where sigmoid(event_logits) > 0.5, else 28.
    """
    visual_dim = visual_BxTxHxWxC.shape[-1]
    dense = lambda features, fan_in, name: layers.torch_dense(
        features, fan_in, name=name, dtype=self.dtype
    )
    visual = nn.relu(dense(visual_dim, visual_dim, "v_fc")(visual_BxTxHxWxC))
    visual = nn.Dropout(self.dropout)(visual, deterministic=not train)
    visual_BxTxC = audio_guided_attention.AudioGuidedAttention(
        beta=self.beta, dtype=self.dtype, name="spatial_channel_att"
    )(visual, audio_BxTxA, train=train)
    audio_BxTxD, visual_BxTx2D = RNNEncoder(
        self.d_model, dtype=self.dtype, name="audio_visual_rnn_layer"
    )(audio_BxTxA, visual_BxTxC, train=train)

    relation = functools.partial(_relation, self.d_model, dtype=self.dtype)
    video_kv_BxTxD = relation("video_encoder", 1024, False)(visual_BxTx2D, train=train)
    audio_query_BxTxD = relation("audio_decoder", 1024, True)(
        audio_BxTxD, video_kv_BxTxD, train=train
    )
    audio_kv_BxTxD = relation("audio_encoder", 1024, False)(audio_BxTxD, train=train)
    video_query_BxTxD = relation("video_decoder", 1024, True)(
        visual_BxTx2D, audio_kv_BxTxD, train=train
    )

    audio_gate_BxTx1 = jax.nn.sigmoid(dense(1, self.d_model, "audio_gated")(audio_kv_BxTxD))
    video_gate_BxTx1 = jax.nn.sigmoid(dense(1, self.d_model, "video_gated")(video_kv_BxTxD))
    event_gate_BxT = (audio_gate_BxTx1 * video_gate_BxTx1)[..., 0]
    video_query_BxTxD = video_query_BxTxD + audio_gate_BxTx1 * video_query_BxTxD * self.alpha
    audio_query_BxTxD = audio_query_BxTxD + video_gate_BxTx1 * audio_query_BxTxD * self.alpha

    gated_video_BxTxD, gated_audio_BxTxD = video_query_BxTxD, audio_query_BxTxD

    inter = lambda name: AudioVideoInter(num_heads=4, dtype=self.dtype, name=name)
    video_query_BxTxD = inter("AVInter")(video_query_BxTxD, audio_query_BxTxD, train=train)
    audio_query_BxTxD = inter("VAInter")(audio_query_BxTxD, video_query_BxTxD, train=train)
    fused_BxTxD = (video_query_BxTxD + audio_query_BxTxD) / 2
    if self.trunk_only:
      return _trunk(audio_query_BxTxD, video_query_BxTxD, fused_BxTxD, event_gate_BxT)
    video_cas_BxTxK = dense(NUM_EVENT_CLASSES, self.d_model, "video_cas")(gated_video_BxTxD)
    audio_cas_BxTxK = dense(NUM_EVENT_CLASSES, self.d_model, "audio_cas")(gated_audio_BxTxD)
    av_class_logits_BxK = (
        top_k_mean(video_cas_BxTxK, self.top_k) + top_k_mean(audio_cas_BxTxK, self.top_k)
    ) / 2
    event_logits_BxT, class_logits_BxK = SupvLocalizeModule(
        dtype=self.dtype, name="localize_module"
    )(fused_BxTxD)
    class_logits_BxK = class_logits_BxK + self.gamma * av_class_logits_BxK
    return _wide(
        {
            "event_logits": event_logits_BxT,
            "class_logits": class_logits_BxK,
            "event_gate": event_gate_BxT,
            "av_class_logits": av_class_logits_BxK,
            "segment_class": segment_classes(
                jax.nn.sigmoid(event_logits_BxT) > 0.5, class_logits_BxK
            ),
        }
    )
