"""LINK: adaptive modality interaction (Wang, Zhu, Chen and Wang, "LINK: Adaptive Modality Interaction for
Audio-Visual Video Parsing", arXiv 2412.20872): TSAM, CMIM and PLSIM (S-LOSS is in `avvp_jax.tasks.llp.losses`).

No public code of LINK was found; this is written from the paper's equations. The model is

  embedded segments -> TSAM (per modality) -> CMIM -> HAN encoder -> [PLSIM] -> decoder (MMIL)

`LINKEncoder` (`config.model.link`) holds TSAM, CMIM, S-LOSS's learnable mu and a `HANEncoder` built from
`config.model.han` alone; PLSIM (`config.model.plsim`) needs (pseudo) labels and is the `refiner` of `AVVPModel`
(`config.model.refiner = "plsim"`, see `avvp_jax.models`). Each part can be switched off.

TSAM (eq. 1-3), for one modality's segments f [B, T, D], modelled on CBAM with the T segments in the role of
CBAM's channels and the D features in the role of its spatial positions:
  temporal  w_t = sigmoid(MLP(mean_d f) + MLP(max_d f))    [B, T]: one weight per segment; the MLP (shared by
            the two pooled maps) maps the T pooled values to T weights (T -> hidden -> T, ReLU): "across_time".
  spatial   w_s = sigmoid(mean_t f' + max_t f')             [B, D]: one weight per feature channel, from the
            features pooled along time ("pool", the paper's form: no parameters).
  f' = w_t * f,  out = w_s * f'                              (CBAM's sequential order)
  Ambiguities, each a config choice: `temporal_mlp="per_segment"` applies one small MLP (1 -> hidden -> 1) to
  each segment's pooled scalars instead, so a segment's weight depends on it alone (no mixing across time);
  `spatial="mlp"` passes the time-pooled maps through a shared MLP (D -> D / 4 -> D) before the sigmoid, as
  CBAM's channel attention does.

CMIM (eq. 4-6), with four learnable scalars:
  f_ac = f_a + alpha2 * softmax(f_a f_v^T) (beta2 f_v),   f_vc = f_v + alpha1 * softmax(f_v f_a^T) (beta1 f_a)
  outputs f_a + f_ac and f_v + f_vc; the softmax runs over the other modality's segments and, as written, the
  products are not scaled. alpha starts at `cmim_alpha_init` (0: CMIM starts as the scaling 2f and learns how
  much of the other modality to let in), beta at 1.

PLSIM (eq. 13-17): per segment, the class names of its pseudo labels become a text embedding (the mean of the
rows of a [C, L] class-name table over the segment's labelled classes; zeros for a segment with none); four
MLPs (L -> D -> D, ReLU) map it to FiLM parameters:
  F_a = f_a * gamma1 + gamma2 + f_a  (gamma1, gamma2 from the audio embedding),  F_v likewise (gamma3, gamma4).
  Text embeddings: the paper uses CLAP ("This is a sound of ...") for audio and CLIP ("A photo of ...") for
  visual labels; without those encoders both default to the packaged MiniLM class-name table
  (`label_embeddings.py`); a [25, L] .npy of CLAP/CLIP text embeddings can be set per modality.
  Pseudo labels: (1) segment labels given to the model (VALOR's CLAP/CLIP pseudo labels, already restricted to
  the weak labels; training only); otherwise (2) the model's own segment predictions: the decoder's
  `segment_*_prob` on the un-modulated segments (a first decoder pass, same weights), thresholded at
  `threshold`, and at training time, when the weak labels are given, kept only for the clip's labelled classes
  (`train_gate`); at test time ungated. The labels pass no gradient. The first pass's outputs are returned
  under `first_pass_*` so that a loss can train it (the test-time labels come from it).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from avvp_jax.errors import InputError
from avvp_jax.models import han as han_lib
from avvp_jax.models import label_embeddings as label_embeddings_lib
from avvp_jax.models import layers

TEMPORAL_MLPS = ("across_time", "per_segment")
SPATIALS = ("pool", "mlp")
SPATIAL_MLP_REDUCTION = 4  # hidden width D / 4 of the spatial MLP ("mlp" only)


class TSAM(nn.Module):
  """Temporal then spatial (channel) attention of one modality's [B, T, D] segments (module docstring).

  Attributes:
    temporal_hidden: hidden width of the temporal MLP; 0: T ("across_time") or 4 ("per_segment").
    temporal_mlp: "across_time" (T -> hidden -> T) or "per_segment" (1 -> hidden -> 1 on each pooled value).
    spatial: "pool" (sigmoid of the summed time-pooled maps) or "mlp" (through a shared MLP first).
    dtype: computation dtype of the MLPs (weights in float32).
  """

  temporal_hidden: int = 0
  temporal_mlp: str = "across_time"
  spatial: str = "pool"
  dtype: layers.Dtype | None = None

  @nn.compact
  def __call__(self, x_BxTxD: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns (out_BxTxD, temporal_weight_BxT, spatial_weight_BxD)."""
    if self.temporal_mlp not in TEMPORAL_MLPS:
      raise InputError(
          f"config.model.link.tsam_temporal_mlp {self.temporal_mlp!r} is unknown: use one of "
          f"{TEMPORAL_MLPS}."
      )
    if self.spatial not in SPATIALS:
      raise InputError(
          f"config.model.link.tsam_spatial {self.spatial!r} is unknown: use one of {SPATIALS}."
      )
    _, num_seconds, dim = x_BxTxD.shape
    x32 = x_BxTxD.astype(jnp.float32)

    def mlp(prefix, width, hidden, values):
      first = layers.torch_dense(hidden, width, name=f"{prefix}_in", dtype=self.dtype)
      second = layers.torch_dense(width, hidden, name=f"{prefix}_out", dtype=self.dtype)
      return [second(nn.relu(first(v))).astype(jnp.float32) for v in values]

    pooled_BxT = [x32.mean(axis=-1), x32.max(axis=-1)]
    if self.temporal_mlp == "across_time":
      logits = mlp("temporal_mlp", num_seconds, self.temporal_hidden or num_seconds, pooled_BxT)
      temporal_BxT = jax.nn.sigmoid(logits[0] + logits[1])
    else:
      logits = mlp("temporal_mlp", 1, self.temporal_hidden or 4, [p[..., None] for p in pooled_BxT])
      temporal_BxT = jax.nn.sigmoid(logits[0] + logits[1])[..., 0]
    weighted_BxTxD = x32 * temporal_BxT[:, :, None]

    pooled_BxD = [weighted_BxTxD.mean(axis=1), weighted_BxTxD.max(axis=1)]
    if self.spatial == "mlp":
      pooled_BxD = mlp("spatial_mlp", dim, max(dim // SPATIAL_MLP_REDUCTION, 1), pooled_BxD)
    spatial_BxD = jax.nn.sigmoid(pooled_BxD[0] + pooled_BxD[1])
    out_BxTxD = (weighted_BxTxD * spatial_BxD[:, None, :]).astype(x_BxTxD.dtype)
    return out_BxTxD, temporal_BxT, spatial_BxD


class CMIM(nn.Module):
  """Cross-modal interaction with learnable scalars alpha1, beta1 (visual side), alpha2, beta2 (audio side).

  Attributes:
    alpha_init: initial alpha1 and alpha2 (betas start at 1).
    dtype: computation dtype of the products (softmax in float32).
  """

  alpha_init: float = 0.0
  dtype: layers.Dtype | None = None

  @nn.compact
  def __call__(
      self, audio_BxTxD: jax.Array, visual_BxTxD: jax.Array
  ) -> tuple[jax.Array, jax.Array]:
    scalar = lambda name, value: self.param(name, nn.initializers.constant(value), (), jnp.float32)
    alpha1, beta1 = scalar("alpha1", self.alpha_init), scalar("beta1", 1.0)
    alpha2, beta2 = scalar("alpha2", self.alpha_init), scalar("beta2", 1.0)
    dtype = self.dtype or audio_BxTxD.dtype
    audio, visual = audio_BxTxD.astype(dtype), visual_BxTxD.astype(dtype)

    def interact(x_BxTxD, other_BxSxD, alpha, beta):
      logits_BxTxS = jnp.einsum("btd,bsd->bts", x_BxTxD, other_BxSxD).astype(jnp.float32)
      weights_BxTxS = jax.nn.softmax(logits_BxTxS, axis=-1)
      attended_BxTxD = jnp.einsum("bts,bsd->btd", weights_BxTxS.astype(dtype), other_BxSxD).astype(
          jnp.float32
      )
      interacted_BxTxD = x_BxTxD.astype(jnp.float32) + alpha * beta * attended_BxTxD
      return (x_BxTxD.astype(jnp.float32) + interacted_BxTxD).astype(x_BxTxD.dtype)

    return interact(audio, visual, alpha2, beta2), interact(visual, audio, alpha1, beta1)


class LINKEncoder(nn.Module):
  """TSAM -> CMIM -> HAN over [B, T, D] audio and visual segments; also holds S-LOSS's learnable mu.

  Built as `LINKEncoder(**config.model.link, han=HANEncoder(**config.model.han, ...), dtype=...)`: the
  `link` section's keys are the attributes below but `han` and `dtype`.

  Attributes:
    tsam: apply TSAM (one per modality: `audio_tsam`, `visual_tsam`).
    cmim: apply CMIM (`cmim`).
    tsam_temporal_hidden, tsam_temporal_mlp, tsam_spatial: see `TSAM`.
    cmim_alpha_init: see `CMIM`.
    mu_init: the initial value of S-LOSS's mu (returned as `similarity_mu`).
    han: the HAN encoder after CMIM (its params under `han`); None, or one of num_layers = 0, skips it.
    dtype: computation dtype of TSAM and CMIM (the HAN encoder has its own).
  """

  tsam: bool = True
  cmim: bool = True
  tsam_temporal_hidden: int = 0
  tsam_temporal_mlp: str = "across_time"
  tsam_spatial: str = "pool"
  cmim_alpha_init: float = 0.0
  mu_init: float = 0.0
  han: han_lib.HANEncoder | None = None
  dtype: layers.Dtype | None = None

  @nn.compact
  def __call__(
      self, audio_BxTxD: jax.Array, visual_BxTxD: jax.Array, *, train: bool
  ) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
    """Returns (audio_BxTxD, visual_BxTxD, extras): extras hold `similarity_mu` [] and TSAM's weights."""
    extras = {
        "similarity_mu": self.param(
            "similarity_mu", nn.initializers.constant(self.mu_init), (), jnp.float32
        )
    }
    if self.tsam:
      make = lambda name: TSAM(
          temporal_hidden=self.tsam_temporal_hidden,
          temporal_mlp=self.tsam_temporal_mlp,
          spatial=self.tsam_spatial,
          dtype=self.dtype,
          name=name,
      )
      audio_BxTxD, extras["audio_temporal_weight"], extras["audio_channel_weight"] = make(
          "audio_tsam"
      )(audio_BxTxD)
      visual_BxTxD, extras["visual_temporal_weight"], extras["visual_channel_weight"] = make(
          "visual_tsam"
      )(visual_BxTxD)
    if self.cmim:
      audio_BxTxD, visual_BxTxD = CMIM(
          alpha_init=self.cmim_alpha_init, dtype=self.dtype, name="cmim"
      )(audio_BxTxD, visual_BxTxD)
    if self.han is not None and self.han.num_layers:
      audio_BxTxD, visual_BxTxD = self.han(audio_BxTxD, visual_BxTxD, train=train)
    return audio_BxTxD, visual_BxTxD, extras


class PLSIM(nn.Module):
  """Pseudo-label semantic interaction: FiLM of the [B, T, D] segments by their labels' text embeddings.

  Built as `PLSIM(**config.model.plsim, audio_label_table=..., visual_label_table=..., dtype=...)` when
  `config.model.refiner == "plsim"`: the section's keys are these attributes but the tables and `dtype`
  (`models.build_model` loads the tables for the task's class names).

  Attributes:
    audio_label_embeddings, visual_label_embeddings: where the [C, L] class-name tables come from ("packaged"
      or a .npy path, e.g. CLAP / CLIP text embeddings of the prompted class names).
    audio_label_table, visual_label_table: those tables, [C, L].
    hidden_dim: hidden width of the four MLPs; 0: D.
    threshold: on the decoder's segment probabilities when the model's own predictions are the labels.
    train_gate: in training, keep own predictions only for the weak labels' classes (when they are given).
    dtype: computation dtype of the MLPs.
  """

  audio_label_embeddings: str = label_embeddings_lib.PACKAGED
  visual_label_embeddings: str = label_embeddings_lib.PACKAGED
  audio_label_table: Any = None
  visual_label_table: Any = None
  hidden_dim: int = 0
  threshold: float = 0.5
  train_gate: bool = True
  dtype: layers.Dtype | None = None

  @nn.compact
  def __call__(
      self,
      audio_BxTxD: jax.Array,
      visual_BxTxD: jax.Array,
      first_pass: dict[str, jax.Array] | None,
      *,
      train: bool,
      segment_labels: tuple[jax.Array, jax.Array] | None = None,
      video_label: jax.Array | None = None,
  ) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
    """Modulates the segments.

    Args:
      audio_BxTxD, visual_BxTxD: the encoded segments.
      first_pass: the decoder's outputs on them (`segment_audio_prob`, `segment_visual_prob` [B, T, C]); used
        when `segment_labels` is None.
      train: training mode (the weak-label gate applies only then).
      segment_labels: (audio [B, T, C], visual [B, T, C]) 0/1 pseudo labels to use instead (training).
      video_label: [B, C] weak labels (training), for the gate of own predictions.

    Returns:
      (audio_BxTxD, visual_BxTxD, extras) with extras `plsim_audio_label`, `plsim_visual_label` [B, T, C].
    """
    dim = audio_BxTxD.shape[-1]
    if segment_labels is not None:
      audio_label, visual_label = (jnp.asarray(x, jnp.float32) for x in segment_labels)
    else:
      if first_pass is None:
        raise InputError(
            "PLSIM got neither segment pseudo labels nor the decoder's first pass: pass "
            "segment_labels or let AVVPModel run the first pass."
        )
      audio_label = (first_pass["segment_audio_prob"] >= self.threshold).astype(jnp.float32)
      visual_label = (first_pass["segment_visual_prob"] >= self.threshold).astype(jnp.float32)
      if train and self.train_gate and video_label is not None:
        gate_Bx1xC = jnp.asarray(video_label, jnp.float32)[:, None, :]
        audio_label, visual_label = audio_label * gate_Bx1xC, visual_label * gate_Bx1xC
    audio_label, visual_label = jax.lax.stop_gradient(audio_label), jax.lax.stop_gradient(
        visual_label
    )
    num_classes = audio_label.shape[-1]

    def text_embedding(table, label_BxTxC):
      if table is None:
        raise InputError(
            "PLSIM was built without its class-name tables: build it with avvp_jax.models.build_model."
        )
      table_CxL = jnp.asarray(table, jnp.float32)
      if table_CxL.shape[0] != num_classes:
        raise InputError(
            f"PLSIM got labels of {num_classes} classes; its class-name table has "
            f"{table_CxL.shape[0]} rows."
        )
      count_BxTx1 = label_BxTxC.sum(axis=-1, keepdims=True)
      return jnp.einsum("btc,cl->btl", label_BxTxC, table_CxL) / jnp.maximum(count_BxTx1, 1.0)

    def mlp(name, e_BxTxL):
      hidden = self.hidden_dim or dim
      first = layers.torch_dense(hidden, e_BxTxL.shape[-1], name=f"{name}_in", dtype=self.dtype)
      return layers.torch_dense(dim, hidden, name=f"{name}_out", dtype=self.dtype)(
          nn.relu(first(e_BxTxL))
      )

    def film(prefix, x_BxTxD, e_BxTxL):
      scale_BxTxD = mlp(f"{prefix}_scale", e_BxTxL).astype(jnp.float32)
      shift_BxTxD = mlp(f"{prefix}_shift", e_BxTxL).astype(jnp.float32)
      x32 = x_BxTxD.astype(jnp.float32)
      return (x32 * scale_BxTxD + shift_BxTxD + x32).astype(x_BxTxD.dtype)

    audio_BxTxD = film("audio", audio_BxTxD, text_embedding(self.audio_label_table, audio_label))
    visual_BxTxD = film(
        "visual", visual_BxTxD, text_embedding(self.visual_label_table, visual_label)
    )
    return (
        audio_BxTxD,
        visual_BxTxD,
        {"plsim_audio_label": audio_label, "plsim_visual_label": visual_label},
    )
