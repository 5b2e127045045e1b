"""Attentive multimodal multiple-instance learning (MMIL) pooling (Tian, Li and Xu, ECCV 2020, Sec. 3.3).

With f[t, m] the encoded segment t of modality m (audio, visual) stacked into [B, T, 2, D]:

  P[t, m]  = sigmoid(fc_prob(f[t, m]))                          segment probabilities   (eq. 5)
                                                                (fc_prob(f[t, m]): segment_*_logits)
  Wt[t, m] = softmax over t of fc_frame_att(f[t, m])            temporal attention      (eq. 6)
  Wm[t, m] = softmax over m of fc_av_att(f[t, m])               audio-visual attention  (eq. 7)
  p        = sum_t sum_m Wt[t, m] * Wm[t, m] * P[t, m]          video-level             (eq. 8)
  p_a      = sum_t Wt[t, audio] * P[t, audio]                   audio-level             (eq. 9)
  p_v      = sum_t Wt[t, visual] * P[t, visual]                 visual-level            (eq. 10)

every product being per class. The three Dense layers (D -> 25 each) keep the official names fc_prob,
fc_frame_att and fc_av_att (YapengTian/AVVP-ECCV20 `MMIL_Net`), and both modalities share them. HAN's official
evaluation gates the segment predictions of both modalities by the thresholded video-level output, so
`audio_filter_prob` and `visual_filter_prob` are `video_prob` (`filter="union"`); `filter="modality"` gates
each modality by its own video-level probability, p_a or p_v, as JoMoLD's `eval` (and MA's) do.

JoMoLD (MCG-NJU/JoMoLD `MMIL_Net(cls_dropout=0.5)`) drops the encoded visual segments with p = 0.5 in
training before the pooling (`visual_dropout`); the encoder's outputs (`visual_embedding`) stay undropped.

CVCM (GenjiB/CM-Co-Occurrence-AVVP `nets/net_trans.py`) scores the segments by class tokens instead of
`fc_prob` (`class_token_dim` > 0: `cvcm.ClassTokenCoOccurrence`, named "class_tokens"); the pooling is the same.
`temporal_attention_logits` (fc_frame_att before its softmax) is what CVCM's cross-video contrastive term
pools the segments with (avvp_jax/tasks/llp/losses.py, "cvcm").

`scored_rows=R` (training only; CVCM's step, avvp_jax/tasks/llp/cvcm_mix.py) scores the first R of the N rows
only: the segment scores, the poolings and every output but `temporal_attention_logits` ([N, T, 2, C]) have
R rows. CVCM's rows after the batch (a clip's audio with another clip's visual streams) feed its contrastive
term alone, which reads the encoded segments and those logits, so scoring them (the class-token head, the
step's costliest part) was work whose result nothing read; row by row the outputs are the same.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from avvp_jax.errors import InputError
from avvp_jax.models import cvcm
from avvp_jax.models import layers

FILTERS = ("union", "modality")


class MMILDecoder(nn.Module):
  """Attentive MMIL pooling of [B, T, D] audio and visual segments into the output dict.

  Attributes:
    num_classes: C, the task's classes (`models.build_model` gives them).
    visual_dropout: dropout on the visual segments entering the pooling, in training (official 0; JoMoLD 0.5).
    filter: which video-level probabilities gate the segment predictions at evaluation: "union" (official:
      `video_prob` for both) or "modality" (each modality its own, JoMoLD's and MA's evaluation).
    class_token_dim: 0: segment logits from `fc_prob` (HAN's); K > 0: from CVCM's class-token
      co-occurrence head with tokens of width K (official --occ_dim 128).
    class_token_dropout: that head's dropout (official --prob_drop_occ 0.25); unused without it.
    dtype: computation dtype of the Dense layers; probabilities are float32.
  """

  num_classes: int = 0
  visual_dropout: float = 0.0
  filter: str = "union"
  class_token_dim: int = 0
  class_token_dropout: float = 0.25
  dtype: layers.Dtype | None = None

  @nn.compact
  def __call__(
      self,
      audio_NxTxD: jax.Array,
      visual_NxTxD: jax.Array,
      *,
      train: bool,
      scored_rows: int | None = None,
  ) -> dict[str, jax.Array]:
    """The output dict of N rows; with `scored_rows=B`, of the first B rows (but the temporal-attention
    logits, of all N: module docstring)."""
    if self.filter not in FILTERS:
      raise InputError(
          f"config.model.mmil.filter {self.filter!r} is unknown: use one of {FILTERS}."
      )
    num_rows = audio_NxTxD.shape[0]
    batch = num_rows if scored_rows is None else int(scored_rows)
    if not 0 < batch <= num_rows:
      raise InputError(
          f"MMILDecoder: scored_rows={scored_rows} must be between 1 and the {num_rows} rows given."
      )
    if self.visual_dropout:
      visual_NxTxD = nn.Dropout(self.visual_dropout)(visual_NxTxD, deterministic=not train)
    dim = audio_NxTxD.shape[-1]
    segments_NxTxMxD = jnp.stack([audio_NxTxD, visual_NxTxD], axis=2)
    segments_BxTxMxD = segments_NxTxMxD[:batch]
    head = lambda name, x: layers.torch_dense(self.num_classes, dim, name=name, dtype=self.dtype)(
        x
    ).astype(jnp.float32)
    if self.class_token_dim:
      segment_logits_BxTxMxC = cvcm.ClassTokenCoOccurrence(
          num_classes=self.num_classes,
          token_dim=self.class_token_dim,
          dropout=self.class_token_dropout,
          dtype=self.dtype,
          name="class_tokens",
      )(audio_NxTxD[:batch], visual_NxTxD[:batch], train=train)
    else:
      segment_logits_BxTxMxC = head("fc_prob", segments_BxTxMxD)
    segment_prob_BxTxMxC = jax.nn.sigmoid(segment_logits_BxTxMxC)
    temporal_logits_NxTxMxC = head("fc_frame_att", segments_NxTxMxD)
    temporal_logits_BxTxMxC = temporal_logits_NxTxMxC[:batch]
    temporal_att_BxTxMxC = jax.nn.softmax(temporal_logits_BxTxMxC, axis=1)
    modality_att_BxTxMxC = jax.nn.softmax(head("fc_av_att", segments_BxTxMxD), axis=2)
    weighted_BxTxMxC = temporal_att_BxTxMxC * segment_prob_BxTxMxC
    video_prob_BxC = (weighted_BxTxMxC * modality_att_BxTxMxC).sum(axis=(1, 2))
    modality_prob_BxMxC = weighted_BxTxMxC.sum(axis=1)
    return {
        "video_prob": video_prob_BxC,
        "audio_prob": modality_prob_BxMxC[:, 0],
        "visual_prob": modality_prob_BxMxC[:, 1],
        "segment_audio_prob": segment_prob_BxTxMxC[:, :, 0],
        "segment_visual_prob": segment_prob_BxTxMxC[:, :, 1],
        # [B, T, C] fc_prob before the sigmoid (VALOR's loss takes BCE-with-logits of them)
        "segment_audio_logits": segment_logits_BxTxMxC[:, :, 0],
        "segment_visual_logits": segment_logits_BxTxMxC[:, :, 1],
        "audio_filter_prob": video_prob_BxC
        if self.filter == "union"
        else modality_prob_BxMxC[:, 0],
        "visual_filter_prob": video_prob_BxC
        if self.filter == "union"
        else modality_prob_BxMxC[:, 1],
        "temporal_attention": temporal_att_BxTxMxC,  # [B, T, 2, C], sums to 1 over T
        # [N, T, 2, C], before that softmax: every row, also beyond `scored_rows`
        "temporal_attention_logits": temporal_logits_NxTxMxC,
        "modality_attention": modality_att_BxTxMxC,  # [B, T, 2, C], sums to 1 over the two modalities
    }
