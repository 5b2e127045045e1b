"""Input embedding: per-second audio and visual segment features of a common width.

As in the official HAN model (YapengTian/AVVP-ECCV20 `MMIL_Net.forward`, reused unchanged by LEAP):

  audio  [B, T, Da]                       -> fc_a                              -> [B, T, D]
  frames [B, 8T, Df] (8 frames a second)  -> fc_v, then mean over each second  -> [B, T, D]
  frames [B, T, Df]  (already pooled)     -> fc_v                              -> [B, T, D]
  motion [B, T, Dm]                       -> fc_st                             -> [B, T, D]
  visual = fc_fusion([frames; motion])                                         -> [B, T, D]

The official code applies fc_v to all 80 frames and then average-pools with kernel 8 over time; a Dense is
affine, so pooling the frames first gives the same result (up to float rounding) for 8x less work: both
layouts are accepted. Without a motion stream (`input_dims.motion == 0`, e.g. CLIP/CLAP features) the visual
embedding is fc_v of the frames alone (no fc_st, no fc_fusion).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from avvp_jax.errors import InputError
from avvp_jax.models import layers


class InputEmbedding(nn.Module):
  """Embeds audio, frame and (optionally) motion features into [B, T, D] audio and visual segments.

  Built as `InputEmbedding(hidden_dim=config.model.hidden_dim, **config.model.input_dims, dtype=...)`: the
  `input_dims` keys are the three feature widths below.

  Attributes:
    hidden_dim: D, the width of the embedded segments (official 512).
    audio: Da, the audio features' width (VGGish 128; CLAP 512).
    frames: Df, the frame features' width (ResNet-152 2048; CLIP 768).
    motion: Dm, the motion features' width (R(2+1)D-18 512); 0: no motion stream.
    frames_per_segment: F, frames a segment when they come raw ([B, F*T, Df]; LLP's 8 a second); the builder
      gives the task's (`Meta.frames_per_segment`).
    dtype: computation dtype (params stay float32).
  """

  hidden_dim: int = 512
  audio: int = 128
  frames: int = 2048
  motion: int = 512
  frames_per_segment: int = 8
  dtype: layers.Dtype | None = None

  @nn.compact
  def __call__(
      self, audio_BxTxA: jax.Array, frames_BxNxF: jax.Array, motion_BxTxM: jax.Array | None
  ) -> tuple[jax.Array, jax.Array]:
    """Returns (audio_BxTxD, visual_BxTxD); `frames_BxNxF` is [B, T, Df] or [B, 8T, Df]."""
    batch, num_seconds, audio_dim = audio_BxTxA.shape
    _check_width("audio", audio_BxTxA, self.audio, "input_dims.audio")
    _check_width("frames", frames_BxNxF, self.frames, "input_dims.frames")
    dense = lambda features, fan_in, name: layers.torch_dense(
        features, fan_in, name=name, dtype=self.dtype
    )
    audio_BxTxD = dense(self.hidden_dim, audio_dim, "fc_a")(audio_BxTxA)

    frames_embedded = dense(self.hidden_dim, self.frames, "fc_v")(frames_BxNxF)
    if self.frames_per_segment > 1 and frames_BxNxF.shape[:2] == (
        batch,
        num_seconds * self.frames_per_segment,
    ):
      frames_BxTxD = frames_embedded.reshape(
          batch, num_seconds, self.frames_per_segment, self.hidden_dim
      ).mean(axis=2)
    elif frames_BxNxF.shape[:2] == (batch, num_seconds):
      frames_BxTxD = frames_embedded
    else:
      raise InputError(
          f"frames of shape {tuple(frames_BxNxF.shape)} fit neither [B, T, Df] nor [B, 8T, Df] with the "
          f"audio's B={batch}, T={num_seconds}: give {self.frames_per_segment} frames or one pooled "
          "feature per audio segment."
      )

    if not self.motion:
      if motion_BxTxM is not None:
        raise InputError(
            "motion features were given but config.model.input_dims.motion is 0: set it to "
            "their width or pass motion=None."
        )
      return audio_BxTxD, frames_BxTxD
    if motion_BxTxM is None:
      raise InputError(
          f"motion is None but config.model.input_dims.motion is {self.motion}: pass the "
          "motion features or set input_dims.motion = 0."
      )
    _check_width("motion", motion_BxTxM, self.motion, "input_dims.motion")
    if motion_BxTxM.shape[:2] != (batch, num_seconds):
      raise InputError(
          f"motion of shape {tuple(motion_BxTxM.shape)} does not match the audio's "
          f"[B={batch}, T={num_seconds}]: give one motion feature per audio segment."
      )
    motion_BxTxD = dense(self.hidden_dim, self.motion, "fc_st")(motion_BxTxM)
    fused_BxTx2D = jnp.concatenate([frames_BxTxD, motion_BxTxD], axis=-1)
    visual_BxTxD = dense(self.hidden_dim, 2 * self.hidden_dim, "fc_fusion")(fused_BxTx2D)
    return audio_BxTxD, visual_BxTxD


def _check_width(name: str, array: jax.Array, expected: int, field: str) -> None:
  if array.ndim != 3 or array.shape[-1] != expected:
    raise InputError(
        f"{name} features of shape {tuple(array.shape)} do not end in config.model.{field}="
        f"{expected}: set that field to the features' width (or pass [B, T, {expected}])."
    )
