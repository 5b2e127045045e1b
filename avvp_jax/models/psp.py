"""PSP, positive sample propagation, fully and weakly supervised, as the official code has it.

Zhou, Zheng, Zhong, Hao and Wang, "Positive Sample Propagation along the Audio-Visual Event Line", CVPR 2021;
jasongief/PSP_CVPR_2021 `fully_model.py:psp_net` and `weakly_model.py:psp_net`, both `psp_net(128, 512, 128,
29)`. The two differ in more than the head, and a parameter here (`supervision`) picks each as its code is:

  full:  a = fa(audio)                                  fa: Linear 128->256->128, no bias, no activation
         attended = AVGA(a, visual);  v = fv(attended)  fv: Linear 512->256->128, no bias, no activation
  weak:  a = audio;  v = linear_v(AVGA(audio, visual))  linear_v: Linear 512->128 with bias
  both:  a, v = lstm_audio(a), lstm_video(v)            BiLSTMs 128 -> [B, T, 256]
         fusion, v', a' = PSP(a, v)                     (`PSPModule` below)
         s = L2(relu(L1(fusion)))                       L1: 256->64, L2: 64->29, no biases
  full:  outputs s (logits, CrossEntropy) and cos(v', a') per segment (the AVPS loss's input)
  weak:  w = sigmoid(relu(W3(s))) [B, T, 1];  s = s * w;  video_prob = softmax_c(mean_t s)

The PSP module (`PSPModule`), with d = 256, X_1, X_2 = dropout(relu(X_L1(x))), dropout(relu(X_L2(x))):

  beta = relu(v_2 a_1^T / sqrt(d))                       [T_v, T_a]
  beta_va = rows of beta L1-normalised;  beta_av = rows of beta^T L1-normalised   (sum + 1e-8)
  gamma = beta * [beta > threshold]                      (pruning; threshold 0.099 full, 0.095 weak)
  full only: gamma L1-normalised again                   (sum + 1e-8)
  v' = v + gamma_va a_2;  a' = a + gamma_av v_1
  full only: v', a' = dropout(relu(v_fc(v'))), dropout(relu(a_fc(a')))
  v', a' = layer_norm(v'), layer_norm(a')                one LayerNorm (eps 1e-6) shared by both
  fusion = (v' + a') / 2

Dropout (p = 0.1) acts only with `train=True` (rngs "dropout"). The official modules that the forward never
calls (full: linear_v, v_classify, a_classify, L3, L4; weak: temperature, W1, W2) are not built here.

Outputs (float32): `fusion` [B, T, 256]; `segment_logits` s [B, T, 29] (weak: after the temporal weighting,
the official `score`); `segment_prob` softmax_c(s); `visual_attention` [B, T, 49] (AVGA); `psp_visual_weights`
gamma_va and `psp_audio_weights` gamma_av [B, T, T]; full: `av_similarity` [B, T], the cosine of v' and a'
(the official `cross_att`); weak: `temporal_weight` w [B, T] and `video_prob` [B, 29]. `segment_class` int32
[B, T] is the argmax over the 29 classes of s (full) or of softmax(s) (weak), as `measure.compute_acc` decides
on the official outputs (0-27 an event, 28 background).

With `trunk_only=True` (another head on the network, `models.localizer_leap`) the head (L1, L2, W3) is not
built and the outputs are the streams it would read, float32 [B, T, 256]: `audio` a', `visual` v' and
`fusion`, plus `visual_attention`, `psp_visual_weights`, `psp_audio_weights` and (full) `av_similarity`.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from avvp_jax.errors import InputError
from avvp_jax.models import avga
from avvp_jax.models import lstm

Dtype = Any

SUPERVISIONS = ("full", "weak")
THRESHOLDS = {"full": 0.099, "weak": 0.095}  # the official run commands' --threshold
NUM_CLASSES = 29
LAYER_NORM_EPSILON = 1e-6  # PSP's nn.LayerNorm(out_dim, eps=1e-6)
SUM_EPSILON = 1e-8  # added to every L1 norm
NORMALIZE_EPSILON = 1e-12  # F.normalize's


def _l1_rows(x: jax.Array) -> jax.Array:
  return x / (x.sum(axis=-1, keepdims=True) + SUM_EPSILON)


class PSPModule(nn.Module):
  """Positive sample propagation between [B, T, d] audio and visual segments (module docstring).

  Attributes:
    threshold: the pruning threshold on the normalised similarities.
    renormalize: the fully supervised variant (L1-renormalised pruned weights, then v_fc / a_fc with ReLU and
      dropout); False: the weak one.
    dropout: the dropout rate (official 0.1).
    dtype: computation dtype; the similarities are float32.
  """

  threshold: float
  renormalize: bool = True
  dropout: float = 0.1
  dtype: Dtype | None = None

  @nn.compact
  def __call__(
      self, audio_BxTxD: jax.Array, visual_BxTxD: jax.Array, *, train: bool
  ) -> dict[str, jax.Array]:
    dim = visual_BxTxD.shape[-1]
    drop = lambda x: nn.Dropout(self.dropout)(x, deterministic=not train)
    dense = lambda name: avga.linear(
        dim, dim, name=name, use_bias=False, xavier=True, dtype=self.dtype
    )
    branch = lambda name, x: drop(nn.relu(dense(name)(x)))
    v1_BxTxD, v2_BxTxD = branch("v_L1", visual_BxTxD), branch("v_L2", visual_BxTxD)
    a1_BxTxD, a2_BxTxD = branch("a_L1", audio_BxTxD), branch("a_L2", audio_BxTxD)
    beta_BxTvxTa = jnp.einsum("bvd,bad->bva", v2_BxTxD, a1_BxTxD).astype(jnp.float32)
    beta_BxTvxTa = nn.relu(beta_BxTvxTa / jnp.sqrt(jnp.float32(dim)))
    gammas = []
    for beta in (beta_BxTvxTa, jnp.swapaxes(beta_BxTvxTa, 1, 2)):
      beta = _l1_rows(beta)
      gamma = jnp.where(beta > self.threshold, beta, 0.0)
      gammas.append(_l1_rows(gamma) if self.renormalize else gamma)
    gamma_va_BxTvxTa, gamma_av_BxTaxTv = gammas
    mix = lambda weights, values: jnp.einsum("bij,bjd->bid", weights.astype(values.dtype), values)
    visual_psp_BxTxD = visual_BxTxD + mix(gamma_va_BxTvxTa, a2_BxTxD)
    audio_psp_BxTxD = audio_BxTxD + mix(gamma_av_BxTaxTv, v1_BxTxD)
    if self.renormalize:
      visual_psp_BxTxD = drop(nn.relu(dense("v_fc")(visual_psp_BxTxD)))
      audio_psp_BxTxD = drop(nn.relu(dense("a_fc")(audio_psp_BxTxD)))
    norm = nn.LayerNorm(
        epsilon=LAYER_NORM_EPSILON, dtype=self.dtype, param_dtype=jnp.float32, name="layer_norm"
    )
    visual_psp_BxTxD, audio_psp_BxTxD = norm(visual_psp_BxTxD), norm(audio_psp_BxTxD)
    return {
        "fusion": (visual_psp_BxTxD + audio_psp_BxTxD) * 0.5,
        "visual": visual_psp_BxTxD,
        "audio": audio_psp_BxTxD,
        "visual_weights": gamma_va_BxTvxTa,
        "audio_weights": gamma_av_BxTaxTv,
    }


def _cosine(x_BxTxD: jax.Array, y_BxTxD: jax.Array) -> jax.Array:
  unit = lambda x: x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), NORMALIZE_EPSILON)
  return (unit(x_BxTxD) * unit(y_BxTxD)).sum(axis=-1)


class PSPNet(nn.Module):
  """PSP's `psp_net`, fully (`supervision="full"`) or weakly ("weak") supervised (module docstring).

  Attributes:
    supervision: "full" or "weak".
    threshold: PSP's pruning threshold; None: the official one of the setting (`THRESHOLDS`).
    hidden_dim: each LSTM direction's width (official 128; the PSP width is twice it).
    dropout: PSP's dropout rate.
    num_classes: 29 (AVE); the last is background.
    trunk_only: return the streams the head reads instead of the head's outputs (module docstring).
    dtype: computation dtype; softmax and outputs float32.
  """

  supervision: str = "full"
  threshold: float | None = None
  hidden_dim: int = 128
  dropout: float = 0.1
  num_classes: int = NUM_CLASSES
  trunk_only: bool = False
  dtype: Dtype | None = None

  @nn.compact
  def __call__(
      self, audio_BxTxA: jax.Array, visual_BxTxHxWxC: jax.Array, *, train: bool = False
  ) -> dict[str, jax.Array]:
    """Args: audio [B, T, 128], visual [B, T, 7, 7, 512], train (dropout). Returns the outputs of the module
    docstring."""
    if self.supervision not in SUPERVISIONS:
      raise InputError(
          f"PSPNet supervision {self.supervision!r} is unknown: use one of {SUPERVISIONS}."
      )
    full = self.supervision == "full"
    threshold = THRESHOLDS[self.supervision] if self.threshold is None else self.threshold
    hidden = self.hidden_dim
    dense = lambda features, fan_in, name, **kw: avga.linear(
        features, fan_in, name=name, dtype=self.dtype, **kw
    )
    audio_width, visual_width = audio_BxTxA.shape[-1], visual_BxTxHxWxC.shape[-1]
    if full:  # fa, fv: nn.Sequential of two bias-free Linears (torch keys fa.0, fa.1, fv.0, fv.1)
      audio_BxTxA = dense(hidden, 256, "fa_1", use_bias=False)(
          dense(256, audio_width, "fa_0", use_bias=False)(audio_BxTxA)
      )
    attended_BxTxC, attention_BxTxR = avga.AVGA(dtype=self.dtype, name="attention")(
        audio_BxTxA, visual_BxTxHxWxC
    )
    if full:
      visual_BxTxE = dense(hidden, 256, "fv_1", use_bias=False)(
          dense(256, visual_width, "fv_0", use_bias=False)(attended_BxTxC)
      )
    else:
      visual_BxTxE = dense(hidden, visual_width, "linear_v")(attended_BxTxC)
    rnn = lambda name: lstm.LSTM(hidden, dtype=self.dtype, name=name)
    psp = PSPModule(
        threshold, renormalize=full, dropout=self.dropout, dtype=self.dtype, name="psp"
    )(rnn("lstm_audio")(audio_BxTxA), rnn("lstm_video")(visual_BxTxE), train=train)
    if self.trunk_only:
      outputs = {key: psp[key].astype(jnp.float32) for key in ("audio", "visual", "fusion")}
      outputs.update(
          visual_attention=attention_BxTxR,
          psp_visual_weights=psp["visual_weights"],
          psp_audio_weights=psp["audio_weights"],
      )
      if full:
        outputs["av_similarity"] = _cosine(psp["visual"], psp["audio"]).astype(jnp.float32)
      return outputs
    width = 2 * hidden
    hidden_BxTxE = nn.relu(dense(64, width, "L1", use_bias=False, xavier=True)(psp["fusion"]))
    logits_BxTxC = dense(self.num_classes, 64, "L2", use_bias=False, xavier=True)(hidden_BxTxE)
    logits_BxTxC = logits_BxTxC.astype(jnp.float32)
    outputs = {
        "fusion": psp["fusion"].astype(jnp.float32),
        "visual_attention": attention_BxTxR,
        "psp_visual_weights": psp["visual_weights"],
        "psp_audio_weights": psp["audio_weights"],
    }
    if full:
      outputs["av_similarity"] = _cosine(psp["visual"], psp["audio"]).astype(jnp.float32)
      decided_BxTxC = logits_BxTxC
    else:
      weight_BxTx1 = jax.nn.sigmoid(
          nn.relu(dense(1, self.num_classes, "W3", use_bias=False)(logits_BxTxC))
      ).astype(jnp.float32)
      logits_BxTxC = logits_BxTxC * weight_BxTx1
      outputs["temporal_weight"] = weight_BxTx1[..., 0]
      outputs["video_prob"] = jax.nn.softmax(logits_BxTxC.mean(axis=1), axis=-1)
    outputs["segment_logits"] = logits_BxTxC
    outputs["segment_prob"] = jax.nn.softmax(logits_BxTxC, axis=-1)
    if not full:
      decided_BxTxC = outputs["segment_prob"]
    outputs["segment_class"] = jnp.argmax(decided_BxTxC, axis=-1).astype(jnp.int32)
    return outputs
