"""AVE-ECCV18's event localisation networks: A+V-att, DMRN and the weakly supervised A+V-att.

Tian, Shi, Li, Duan and Xu, "Audio-Visual Event Localization in Unconstrained Videos", ECCV 2018;
YapengTian/AVE-ECCV18 `models.py:att_Net`, `models_fusion.py:TBMRF_Net`, `models_weakly.py:att_Net`. All three
share the front end:

  attended = AVGA(audio, visual)                     [B, T, 512]   (avga.py, the official affine_* names)
  a = lstm_audio(audio)      v = lstm_video(attended)  [B, T, 2H]  (BiLSTMs, H = hidden_dim = 128)

The LSTM of the audio reads the raw audio, not AVGA's relu(affine_audio) projection (the code's choice).
Then, by `fusion`:

  "concat" (A+V-att):  s = L2(relu(L1(relu([a, v]))))        L1: 4H -> 64, L2: 64 -> 29
  "dmrn" (TBMRF_Net):  `num_blocks` times:
                          m = (U_v(v) + U_a(a)) / 2          U_*: Linear 2H->2H, tanh, Linear 2H->2H
                          v, a = tanh(a + m), tanh(v + m)    (the code adds each modality's *other* residual)
                       s = L2((v + a) / 2)                   L2: 2H -> 29

and by `supervision`:

  "full":  segment_prob = softmax_c(s)  [B, T, 29], the official output, which the official loss
           (MultiLabelSoftMarginLoss, tasks/ave/losses/ave.py) reads as if it were logits.
  "weak":  video_prob = softmax_c(max_t s) [B, 29] (the official `out`, the loss's input); s is the official
           `score`, whose per-segment argmax the official weak evaluation takes.

Outputs (float32): `segment_logits` s [B, T, 29]; `segment_prob` softmax_c(s) [B, T, 29]; `video_prob`
[B, 29] (weak only); `visual_attention` [B, T, 49], AVGA's map; `segment_class` int32 [B, T], the argmax of s
over the 29 classes (0-27 an event, 28 background), the official decision rule of all three. No dropout.

With `trunk_only=True` (another head on the network, `models.localizer_leap`) the head (L2) is not
built and the outputs are the streams it would read, float32 [B, T, D]: `audio` a and
`visual` v (the LSTM outputs, D = 2H) and `fusion`, the head's input (relu(L1(relu([a, v]))), D = 64, for
"concat"; the DMRN output, D = 2H, for "dmrn"), plus `visual_attention`.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from avvp_jax.errors import InputError
from avvp_jax.models import avga
from avvp_jax.models import lstm

Dtype = Any

FUSIONS = ("concat", "dmrn")
SUPERVISIONS = ("full", "weak")
NUM_CLASSES = 29  # AVE's 28 events and background


class DMRN(nn.Module):
  """TBMRF_Net's dual multimodal residual fusion of [B, T, D] audio and visual into [B, T, D] (module docstring).

  Attributes:
    num_blocks: fusion blocks, sharing U_v and U_a (official: 1).
    dtype: computation dtype.
  """

  num_blocks: int = 1
  dtype: Dtype | None = None

  @nn.compact
  def __call__(self, audio_BxTxD: jax.Array, visual_BxTxD: jax.Array) -> jax.Array:
    dim = audio_BxTxD.shape[-1]

    def transform(prefix):  # nn.Sequential(Linear, Tanh, Linear): torch keys {prefix}.0, {prefix}.2
      first = avga.linear(dim, dim, name=f"{prefix}_0", dtype=self.dtype)
      second = avga.linear(dim, dim, name=f"{prefix}_2", dtype=self.dtype)
      return lambda x: second(jnp.tanh(first(x)))

    u_v, u_a = transform("U_v"), transform("U_a")
    for _ in range(self.num_blocks):
      merged_BxTxD = (u_v(visual_BxTxD) + u_a(audio_BxTxD)) * 0.5
      visual_BxTxD, audio_BxTxD = (
          jnp.tanh(audio_BxTxD + merged_BxTxD),
          jnp.tanh(visual_BxTxD + merged_BxTxD),
      )
    return (visual_BxTxD + audio_BxTxD) * 0.5


class AVENet(nn.Module):
  """AVE-ECCV18's A+V-att (fusion "concat"), DMRN ("dmrn"), fully or weakly supervised (module docstring).

  Official settings: `att_Net(128, 128, 512, 29)` (A+V-att, and the weak one) and `TBMRF_Net(128, 128, 512,
  29, 1)` (DMRN), i.e. the defaults here. The official weak model is "concat" + "weak"; "dmrn" + "weak" is
  allowed (max-pooled DMRN scores) but has no official counterpart.

  Attributes:
    fusion: "concat" or "dmrn".
    supervision: "full" or "weak".
    hidden_dim: H, each LSTM direction's width.
    hidden_size: AVGA's width.
    num_blocks: DMRN's blocks.
    num_classes: 29 (AVE); the last is background.
    trunk_only: return the streams the head reads instead of the head's outputs (module docstring).
    dtype: computation dtype of the Dense and LSTM products; softmax and outputs float32.
  """

  fusion: str = "concat"
  supervision: str = "full"
  hidden_dim: int = 128
  hidden_size: int = 512
  num_blocks: int = 1
  num_classes: int = NUM_CLASSES
  trunk_only: bool = False
  dtype: Dtype | None = None

  @nn.compact
  def __call__(
      self, audio_BxTxA: jax.Array, visual_BxTxHxWxC: jax.Array, *, train: bool = False
  ) -> dict[str, jax.Array]:
    """Args: audio [B, T, 128], visual [B, T, 7, 7, 512], train (no dropout: ignored). Returns the outputs
    of the module docstring."""
    del train  # the official models have no dropout
    if self.fusion not in FUSIONS:
      raise InputError(f"AVENet fusion {self.fusion!r} is unknown: use one of {FUSIONS}.")
    if self.supervision not in SUPERVISIONS:
      raise InputError(
          f"AVENet supervision {self.supervision!r} is unknown: use one of {SUPERVISIONS}."
      )
    # Initialisation as the official code: att_Net xavier-initialises AVGA and L1, L2; TBMRF_Net only L2.
    attention = avga.AVGA(
        self.hidden_size, xavier_init=self.fusion == "concat", dtype=self.dtype, name="attention"
    )
    attended_BxTxC, attention_BxTxR = attention(audio_BxTxA, visual_BxTxHxWxC)
    rnn = lambda name: lstm.LSTM(self.hidden_dim, dtype=self.dtype, name=name)
    audio_BxTxD = rnn("lstm_audio")(audio_BxTxA)
    visual_BxTxD = rnn("lstm_video")(attended_BxTxC)
    width = 2 * self.hidden_dim
    if self.fusion == "concat":
      joint_BxTx2D = nn.relu(jnp.concatenate([audio_BxTxD, visual_BxTxD], axis=-1))
      hidden_BxTxE = nn.relu(
          avga.linear(64, 2 * width, name="L1", xavier=True, dtype=self.dtype)(joint_BxTx2D)
      )
      head_input, fan_in = hidden_BxTxE, 64
    else:
      head_input = DMRN(self.num_blocks, self.dtype, name="dmrn")(audio_BxTxD, visual_BxTxD)
      fan_in = width
    if self.trunk_only:
      streams = {"audio": audio_BxTxD, "visual": visual_BxTxD, "fusion": head_input}
      streams = {key: value.astype(jnp.float32) for key, value in streams.items()}
      return {**streams, "visual_attention": attention_BxTxR}
    logits_BxTxC = avga.linear(self.num_classes, fan_in, name="L2", xavier=True, dtype=self.dtype)(
        head_input
    ).astype(jnp.float32)
    segment_prob_BxTxC = jax.nn.softmax(logits_BxTxC, axis=-1)
    # The official evaluations: the argmax of the softmax output (full), of the score (weak).
    decided_BxTxC = segment_prob_BxTxC if self.supervision == "full" else logits_BxTxC
    outputs = {
        "segment_logits": logits_BxTxC,
        "segment_prob": segment_prob_BxTxC,
        "visual_attention": attention_BxTxR,
        "segment_class": jnp.argmax(decided_BxTxC, axis=-1).astype(jnp.int32),
    }
    if self.supervision == "weak":
      outputs["video_prob"] = jax.nn.softmax(logits_BxTxC.max(axis=1), axis=-1)
    return outputs
