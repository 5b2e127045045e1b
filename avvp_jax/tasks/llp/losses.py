"""Training losses of HAN, MA, LEAP, LINK, VALOR, JoMoLD, CVCM and UWAV: `compute_loss(config.loss, outputs, batch) -> (loss, terms)`.

`outputs` is a model's output dict (`avvp_jax.models`), `batch` a batch dict (`avvp_jax.tasks.llp.batch_keys`).
Every loss is the mean over the real clips of the batch (weighted by `batch["mask"]` when present),
computed in float32 whatever the model's dtype, with no Python loop over clips, and is jittable.
Probabilities are clamped to `[clamp_eps, 1 - clamp_eps]` before any log, as both official codes do.

HAN (Tian, Li and Xu, ECCV 2020; YapengTian/AVVP-ECCV20 `main_avvp.py:train`):
  BCE(video_prob, y) + BCE(audio_prob, s_a y + (1 - s_a) / 2) + BCE(visual_prob, s_v y + (1 - s_v) / 2)
  with the label smoothing of individual guided learning, s_a = 1.0 and s_v = 0.9.

MA (Wu and Yang, CVPR 2021; Yu-Wu/Modaily-Aware-Audio-Visual-Video-Parsing `step1_train_base_model` and
`step3_retrain`, `main_avvp.py:train`, `nets/net_audiovisual.py`):
  BCE(video_prob, y') + BCE(audio_prob, pa) + BCE(visual_prob, pv) + ma_contrastive_weight * L_con
  with pa = s_a y + (1 - s_a) / 2 and pv = s_v y + (1 - s_v) / 2 (HAN's targets), y' = y. With refined labels
  in the batch (`batch_keys.MODALITY_LABELS`, stage 3) a class dropped from a modality gets target 0 there
  (exactly 0, not the smoothed (1 - s) / 2: the official loader writes pv[c] = 0), and with
  `ma_drop_clears_video` a dropped audio class also clears y'[c] (the official loader's `pa = label` aliases
  the video label, so `pa[c] = 0` clears both). L_con, the audio-visual contrastive term: for each clip the
  [T, T] cosine similarities of the encoded audio segments (`audio_embedding`) with the embedded visual
  segments before the encoder (`visual_input_embedding`), divided by `ma_temperature` (0.2), are T logits per
  audio segment i whose target is visual segment i, label-smoothed as the official `LabelSmoothingLoss(10,
  0.1)`: cross-entropy against 1 - ma_smoothing on i and ma_smoothing / (T - 1) elsewhere, averaged over the
  segments.

LEAP (Zhou et al., ECCV 2024; jasongief/LEAP `main_leap.py:train`, `avss_loss`):
  L_basic = BCE(video_prob, y)
          + BCE(audio_prob, pa) + BCE(visual_prob, pv)                  video level, per modality
          + segment_weight * [BCE(segment_audio_prob, Pa) + BCE(segment_visual_prob, Pv)]
  L = L_basic + avss_weight * MSE(relu(cos(audio_embedding_i, visual_embedding_j)), target_ij).
  With VALOR's segment pseudo labels in the batch (`batch_keys.PSEUDO_LABELS`), Pa / Pv
  are those and pa / pv their maximum over time. Without them the video-level targets are the smoothed
  weak labels (as the official data loader does), the segment term is off (reported as 0), and the avss
  target is built from the model's own segment predictions, thresholded at 0.5 and kept only for classes
  whose video-level probability of that modality is at least 0.5 (the official `use_pseudo_label=False`
  path). The avss target from segment labels Pa, Pv `[T, C]`:
    "official": x_ij = <Pa_i, Pv_j> / max(max_i |Pa_i|, max_j |Pv_j|), target = x / (1 + x) + avss_eps
                (the official sigmoid(log x) + eps; 0 + eps when neither modality has an event);
    "paper":    target = |Pa_i & Pv_j| / |Pa_i | Pv_j|, the per-pair event IoU (0 when both are empty).

VALOR (Lai, Chen and Wang, NeurIPS 2023; Franklin905/VALOR `main_avvp.py:train`):
  BCE(video_prob, y) + segment_weight * [BCEWithLogits(segment_audio_logits, Pa)
                                         + BCEWithLogits(segment_visual_logits, Pv)]
  with Pa / Pv the segment pseudo labels (CLAP / CLIP in the paper) and the logits the decoder's segment
  scores before the sigmoid (MMIL's fc_prob); official: segment_weight 1, both terms on. No per-modality
  video-level term. `audio_segment_loss` / `visual_segment_loss` switch a term off (reported as 0).

JoMoLD (Cheng et al., ECCV 2022; MCG-NJU/JoMoLD `main.py`, `nets/net_audiovisual.py`):
  audio_weight * BCE(audio_prob, Pa) + visual_weight * BCE(visual_prob, Pv) + video_weight * BCE(video_prob, y)
  + nce_weight * NCE, with Pa / Pv the smoothed weak labels (HAN's s_a, s_v), or the denoised targets
  `batch["audio_target"]` / `batch["visual_target"]` [B, C] when the trainer's denoiser put them there
  (`avvp_jax.tasks.llp.denoising`: a dropped label is 0). NCE (`label_smoothed_nce`) is the official
  `LabelSmoothingNCELoss` of the cosine similarities of the encoded audio and visual segments over the
  temperature: for each audio segment i, -log(sum_j q_ij softmax_j(s_ij)) with q_ii = 1 - smoothing and
  q_ij = smoothing / (T - 1), averaged over the clip's T segments. Official: stage 1 weights 1, 1, 1, 1;
  stage 3 2, 1, 1, 1; temperature 0.2, smoothing 0.1.

CVCM (Lin et al., NeurIPS 2021; GenjiB/CM-Co-Occurrence-AVVP `main_trans.py:train`, `nets/net_trans.py`), on
MA's modality labels ya, yv (`batch_keys.MODALITY_LABELS`; the weak labels without them):
  BCE(video_prob, ya | yv) + BCE(audio_prob, s_a ya + (1 - s_a) / 2) + BCE(visual_prob, s_v yv + (1 - s_v) / 2)
  + cvcm_weight * L_cv after the first `cvcm_warm_up_epochs` epochs (the video target ya | yv is CVCM's loader's;
  `ma_drop_clears_video` takes MA's stage-3 one instead, y with the dropped audio classes cleared) (official --init_epoch 2; during them s_a,
  s_v are `cvcm_warm_up_{audio,visual}_smoothing`, 1.0 / 0.9, and L_cv is left out; after them
  `{audio,visual}_smoothing`, 1.0 / 1.0). The BCEs read the B clips of the batch. L_cv, the cross-video term,
  reads 2B rows: the clips, then each clip's audio with a partner clip's visual streams (a random other clip
  of the batch, `avvp_jax.tasks.llp.cvcm_mix`; its visual labels the partner's). Each row's audio is pooled
  over time with softmax_t(sum_c fc_frame_att[t, audio, c] ya[c]) (`temporal_attention_logits`), its visual
  likewise with yv, both L2-normalised; audio i against all 2B visual rows j, cosine / cvcm_temperature, is a
  softmax whose target spreads evenly over the rows j whose visual labels share a class with row i's audio
  labels (the official `LabelSmoothingLoss` of main_trans.py: (P != 0) of the smoothed targets, so during the
  warm-up every row is a positive, though then unused); averaged over the 2B rows, a row without a positive
  counting 0.
UWAV (Lai et al., CVPR 2025; its student HAN's `calculate_loss`; `avvp_jax.tasks.llp.uwav`):
  BCE(video_prob, y)
  + segment_weight * [sum_m mean(w * BCEWithLogits(segment_m_logits, sigmoid((z_m - theta_m) / 2) y))]
  + uwav_mixup_weight * [sum_m mixup_m], with z_m / theta_m a teacher's segment logits and fitted thresholds,
  w the class-balanced weights and mixup_m the segment mixup term (the step's draws in the batch).

LINK (Wang et al., arXiv 2412.20872, eq. 7-12): LEAP's L_basic (video, per-modality and pseudo-label terms,
with the same fallbacks) + avss_weight * S-LOSS, where S-LOSS is the avss loss above with each pair's squared
error weighted by eq. 11 (`similarity_weight`, with the model's learnable `similarity_mu`). With PLSIM the model
also returns its un-modulated first pass (`first_pass_*`), whose video-level BCEs are added with weight
`link_first_pass_weight` (an addition of avvp_jax: its segment predictions are PLSIM's test-time labels).

Length: every LLP loss is here, beside the pieces they share (the guided BCEs, the smoothing, the cosine
segment matching, the avss target), so one registry names them all and a recipe's loss reuses, not copies.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections

from avvp_jax.tasks.llp import metrics
from avvp_jax.tasks.llp import batch_keys
from avvp_jax.tasks.llp import uwav
from avvp_jax.errors import InputError

Array = jax.Array
Terms = dict[str, Array]

NORMALIZE_EPS = 1e-12  # smallest norm in the cosine similarity (torch F.normalize's default)
AVSS_TARGETS = ("official", "paper")
LINK_SIMILARITIES = ("weighted", "plain", "off")
# The official LEAP flags, as `config.loss` booleans (official run script: all on): `{audio,visual}_pseudo_labels`
# (--a_pseudo_flag / --v_pseudo_flag), `{audio,visual}_segment_loss` (--temporal_a_loss_flag / --temporal_v_loss_flag)
# and `avss_from_pseudo_labels` (--use_pseudo_label).
PSEUDO_LABEL_FLAGS = (
    "audio_pseudo_labels",
    "visual_pseudo_labels",
    "audio_segment_loss",
    "visual_segment_loss",
    "avss_from_pseudo_labels",
)
S_LOSS_LOW = -0.2  # LINK eq. 11: pairs less similar than this get weight 1


def _f32(x: Array) -> Array:
  return jnp.asarray(x, jnp.float32)


def _clamp(prob: Array, eps: float) -> Array:
  return jnp.clip(_f32(prob), eps, 1.0 - eps)


def _per_clip_mean(values: Array) -> Array:
  """`[B, ...]` -> `[B]` mean over all but the leading axis."""
  return values.reshape(values.shape[0], -1).mean(axis=1)


def _bce_per_clip(prob: Array, target: Array) -> Array:
  """Binary cross-entropy of clamped `prob` and `target` (same shape `[B, ...]`), averaged per clip `[B]`."""
  target = jax.lax.stop_gradient(_f32(target))
  return _per_clip_mean(-(target * jnp.log(prob) + (1.0 - target) * jnp.log1p(-prob)))


def _bce_with_logits_per_clip(logits: Array, target: Array) -> Array:
  """PyTorch's `binary_cross_entropy_with_logits` of `logits` and `target` `[B, ...]`, averaged per clip `[B]`,
  in its stable form max(x, 0) - x y + log(1 + exp(-|x|))."""
  x = _f32(logits)
  target = jax.lax.stop_gradient(_f32(target))
  return _per_clip_mean(jnp.maximum(x, 0.0) - x * target + jnp.log1p(jnp.exp(-jnp.abs(x))))


def _batch_mean(per_clip: Array, batch: Mapping[str, Any]) -> Array:
  """Mean of `[B]` values over the real clips (`batch["mask"]`, when present)."""
  if batch_keys.MASK not in batch:
    return per_clip.mean()
  mask = _f32(batch[batch_keys.MASK])
  return (per_clip * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def smooth(label: Array, smoothing: float) -> Array:
  """Label smoothing toward 0.5: `s * y + (1 - s) * 0.5`."""
  return smoothing * _f32(label) + (1.0 - smoothing) * 0.5


def unit(x: Array) -> Array:
  """`x / max(|x|, eps)` over the last axis (torch's `F.normalize`), float32."""
  x = _f32(x)
  # max(|x|, eps) written so that a zero vector has a zero gradient, not NaN.
  squared = jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), NORMALIZE_EPS**2)
  return x * jax.lax.rsqrt(squared)


def cosine_similarity(audio_embedding: Array, visual_embedding: Array) -> Array:
  """`[B, T, D]` x `[B, T, D]` -> `[B, T, T]` cosine similarity of audio segment i and visual segment j."""
  return jnp.einsum("bid,bjd->bij", unit(audio_embedding), unit(visual_embedding))


def avss_target(
    audio_segments: Array, visual_segments: Array, kind: str = "official", eps: float = 0.01
) -> Array:
  """The EIoU target `[B, T, T]` of the avss loss from 0/1 segment labels `[B, T, C]`.

  Args:
    audio_segments: `[B, T, C]` audio events of each segment.
    visual_segments: `[B, T, C]` visual events of each segment.
    kind: "official" (LEAP's released code) or "paper" (per-pair IoU); see the module docstring.
    eps: added to the official target; unused by "paper".

  Returns:
    `[B, T, T]` float32, entry (i, j) pairing audio segment i with visual segment j.
  """
  audio_segments = _f32(audio_segments)
  visual_segments = _f32(visual_segments)
  shared = jnp.einsum("bic,bjc->bij", audio_segments, visual_segments)  # |Pa_i & Pv_j|
  if kind == "official":
    most_audio = audio_segments.sum(axis=-1).max(axis=-1)  # [B] most events in one audio segment
    most_visual = visual_segments.sum(axis=-1).max(axis=-1)
    most = jnp.maximum(most_audio, most_visual)
    ratio = shared / jnp.where(most > 0, most, 1.0)[:, None, None]  # shared is 0 wherever most is 0
    return ratio / (1.0 + ratio) + eps
  if kind == "paper":
    union = (
        audio_segments.sum(axis=-1)[:, :, None] + visual_segments.sum(axis=-1)[:, None, :] - shared
    )
    return jnp.where(union > 0, shared / jnp.where(union > 0, union, 1.0), 0.0)
  raise InputError(f"config.loss.avss_target {kind!r} is unknown: use one of {AVSS_TARGETS}.")


def guided_terms(
    config: ml_collections.ConfigDict,
    outputs: Mapping[str, Array],
    batch: Mapping[str, Any],
    **targets: Array,
) -> Terms:
  """The clamped BCE of each `<name>_prob` output `[B, C]` against `targets[name]`, a batch mean per name
  (`video`, `audio`, `visual`: HAN's terms, which MA and JoMoLD take with other targets)."""
  return {
      name: _batch_mean(
          _bce_per_clip(_clamp(outputs[f"{name}_prob"], config.clamp_eps), target), batch
      )
      for name, target in targets.items()
  }


def han_loss(
    config: ml_collections.ConfigDict, outputs: Mapping[str, Array], batch: Mapping[str, Any]
) -> tuple[Array, Terms]:
  """HAN's loss: video BCE plus the smoothed audio and visual guided BCEs (module docstring)."""
  label = _f32(batch[batch_keys.LABEL])
  terms = guided_terms(
      config,
      outputs,
      batch,
      video=label,
      audio=smooth(label, config.audio_smoothing),
      visual=smooth(label, config.visual_smoothing),
  )
  return terms["video"] + terms["audio"] + terms["visual"], terms


def segment_match(
    audio_embedding: Array, visual_embedding: Array, temperature: float, smoothing: float
) -> tuple[Array, Array]:
  """Audio segment i of a clip matched against its T visual segments, visual segment i the right one.

  Returns the logits `[B, T, T]` (the cosine similarities over `temperature`) and the label-smoothed target
  `[T, T]`: `1 - smoothing` on the matching segment and `smoothing / (T - 1)` on each other one. MA's
  contrastive term takes their cross-entropy, JoMoLD's NCE the log of the target's expected probability.
  """
  logits_BxTxT = cosine_similarity(audio_embedding, visual_embedding) / temperature
  num_segments = logits_BxTxT.shape[-1]
  eye_TxT = jnp.eye(num_segments, dtype=jnp.float32)
  target_TxT = eye_TxT * (1.0 - smoothing) + (1.0 - eye_TxT) * (
      smoothing / max(num_segments - 1, 1)
  )
  return logits_BxTxT, target_TxT


def ma_contrastive_per_clip(
    audio_embedding: Array, visual_embedding: Array, temperature: float, smoothing: float
) -> Array:
  """MA's label-smoothed audio-to-visual segment contrastive loss per clip `[B]` (module docstring): the
  cross-entropy of `segment_match`'s target and softmax, averaged over the segments.

  Args:
    audio_embedding: `[B, T, D]` the encoded audio segments (the queries).
    visual_embedding: `[B, T, D]` the visual segments they are matched against (MA: before the encoder).
    temperature: the similarities are divided by it (MA: 0.2).
    smoothing: the target's mass off the matching segment, spread evenly over the other T - 1 (MA: 0.1).
  """
  logits_BxTxT, target_TxT = segment_match(
      audio_embedding, visual_embedding, temperature, smoothing
  )
  cross_entropy_BxT = -(target_TxT[None] * jax.nn.log_softmax(logits_BxTxT, axis=-1)).sum(axis=-1)
  return cross_entropy_BxT.mean(axis=-1)


def ma_loss(
    config: ml_collections.ConfigDict, outputs: Mapping[str, Array], batch: Mapping[str, Any]
) -> tuple[Array, Terms]:
  """MA's loss: HAN's three BCEs on (refined) modality labels + the contrastive term (module docstring)."""
  label = _f32(batch[batch_keys.LABEL])
  targets = {
      "audio": smooth(label, config.audio_smoothing),
      "visual": smooth(label, config.visual_smoothing),
  }
  video_target = label
  if all(key in batch for key in batch_keys.MODALITY_LABELS):
    dropped = {
        "audio": label * (1.0 - _f32(batch[batch_keys.AUDIO_MODALITY_LABEL])),
        "visual": label * (1.0 - _f32(batch[batch_keys.VISUAL_MODALITY_LABEL])),
    }
    targets = {m: targets[m] * (1.0 - dropped[m]) for m in targets}
    if config.ma_drop_clears_video:
      video_target = label * (1.0 - dropped["audio"])
  terms = guided_terms(config, outputs, batch, video=video_target, **targets)
  if "visual_input_embedding" not in outputs:
    raise InputError(
        "config.loss.name='ma' needs the model's visual_input_embedding output (the embedded visual "
        "segments before the encoder): use a model built by avvp_jax.models.build_model."
    )
  terms["contrastive"] = _batch_mean(
      ma_contrastive_per_clip(
          outputs["audio_embedding"],
          outputs["visual_input_embedding"],
          config.ma_temperature,
          config.ma_smoothing,
      ),
      batch,
  )
  loss = (
      terms["video"]
      + terms["audio"]
      + terms["visual"]
      + config.ma_contrastive_weight * terms["contrastive"]
  )
  return loss, terms


def _fallback_segments(segment_prob: Array, video_prob: Array) -> Array:
  """The model's own 0/1 segment predictions `[B, T, C]`, kept where its video-level prob is >= 0.5 (the
  official rule and threshold, `metrics.gate`)."""
  own = metrics.gate(_f32(segment_prob), _f32(video_prob), metrics.OFFICIAL_THRESHOLD)
  return jax.lax.stop_gradient(own.astype(jnp.float32))


def _pseudo_label_flags(config: ml_collections.ConfigDict) -> dict[str, bool]:
  """The official loss flags of `config` (see `configs/common.py`, loss section)."""
  return {name: bool(config.get(name, False)) for name in PSEUDO_LABEL_FLAGS}


def needs_pseudo_labels(config: ml_collections.ConfigDict) -> list[str]:
  """The `config.loss` flags (LEAP, LINK and VALOR losses) that read segment pseudo labels; empty: none does."""
  if config.name == "valor":
    flags = _pseudo_label_flags(config)
    return [name for name in ("audio_segment_loss", "visual_segment_loss") if flags[name]]
  if config.name not in ("leap", "link"):
    return []
  flags = _pseudo_label_flags(config)
  used = [name for name in ("audio_pseudo_labels", "visual_pseudo_labels") if flags[name]]
  if (
      config.avss_weight
      and flags["avss_from_pseudo_labels"]
      and not (config.name == "link" and config.link_similarity == "off")
  ):
    used.append("avss_from_pseudo_labels")
  return used


def _basic_terms(
    config: ml_collections.ConfigDict, outputs: Mapping[str, Array], batch: Mapping[str, Any]
) -> tuple[Terms, Array, Array]:
  """L_basic's terms of LEAP (and LINK) and the 0/1 segment labels `[B, T, C]` the similarity target uses.

  Per modality m, as the official flags do (jasongief/LEAP `main_leap.py`, `dataloader_leap_add_label.py`):
  with `m_pseudo_labels` the video-level target is the maximum over time of the segment pseudo labels and
  the segment target the pseudo labels themselves; without it both are the smoothed weak label (the segment
  target its per-second copy). `m_segment_loss` switches the segment BCE. The avss target is built from the
  pseudo labels with `avss_from_pseudo_labels`, else from the model's own thresholded predictions.
  """
  eps = config.clamp_eps
  flags = _pseudo_label_flags(config)
  label = _f32(batch[batch_keys.LABEL])
  keys = {"audio": batch_keys.AUDIO_PSEUDO_LABEL, "visual": batch_keys.VISUAL_PSEUDO_LABEL}
  needed = {
      "audio_pseudo_labels": [keys["audio"]],
      "visual_pseudo_labels": [keys["visual"]],
      "avss_from_pseudo_labels": list(keys.values()),
  }
  missing = [
      name for name in needs_pseudo_labels(config) if not all(k in batch for k in needed[name])
  ]
  if missing:
    raise InputError(
        f"config.loss.{missing[0]} is True but the batch has no segment pseudo labels: set "
        "--config.data.pseudo_labels (VALOR's folder, one made by launch/make_pseudo_labels.py, or "
        f"'simulated' on the embedded synthetic data), or set --config.loss.{missing[0]}=False."
    )
  smoothing = {"audio": config.audio_smoothing, "visual": config.visual_smoothing}
  terms = {"video": _batch_mean(_bce_per_clip(_clamp(outputs["video_prob"], eps), label), batch)}
  own_segments = {}
  for m in ("audio", "visual"):
    if flags[f"{m}_pseudo_labels"]:
      segment_target = _f32(batch[keys[m]])
      video_target = segment_target.max(axis=1)
    else:
      video_target = smooth(label, smoothing[m])
      segment_target = jnp.broadcast_to(
          video_target[:, None, :], outputs[f"segment_{m}_prob"].shape
      )
    terms[m] = _batch_mean(_bce_per_clip(_clamp(outputs[f"{m}_prob"], eps), video_target), batch)
    if flags[f"{m}_segment_loss"]:
      terms[f"{m}_segment"] = _batch_mean(
          _bce_per_clip(_clamp(outputs[f"segment_{m}_prob"], eps), segment_target), batch
      )
    else:
      terms[f"{m}_segment"] = jnp.zeros((), jnp.float32)
    if (
        "first_pass_video_prob" in outputs
    ):  # LINK with PLSIM: the un-modulated pass, same video-level targets
      first = _batch_mean(
          _bce_per_clip(_clamp(outputs[f"first_pass_{m}_prob"], eps), video_target), batch
      )
      terms["first_pass"] = terms.get("first_pass", 0.0) + first
    own_segments[m] = _fallback_segments(outputs[f"segment_{m}_prob"], outputs[f"{m}_prob"])
  if "first_pass_video_prob" in outputs:
    terms["first_pass"] = terms["first_pass"] + _batch_mean(
        _bce_per_clip(_clamp(outputs["first_pass_video_prob"], eps), label), batch
    )
  if flags["avss_from_pseudo_labels"] and all(
      k in batch for k in keys.values()
  ):  # else avss is unused
    audio_segments, visual_segments = _f32(batch[keys["audio"]]), _f32(batch[keys["visual"]])
  else:
    audio_segments, visual_segments = own_segments["audio"], own_segments["visual"]
  ordered = ("video", "audio", "visual", "audio_segment", "visual_segment", "first_pass")
  return {k: terms[k] for k in ordered if k in terms}, audio_segments, visual_segments


def leap_loss(
    config: ml_collections.ConfigDict, outputs: Mapping[str, Array], batch: Mapping[str, Any]
) -> tuple[Array, Terms]:
  """LEAP's loss: L_basic + avss_weight * L_avss (module docstring)."""
  terms, audio_segments, visual_segments = _basic_terms(config, outputs, batch)
  terms.pop("first_pass", None)
  target = jax.lax.stop_gradient(
      avss_target(audio_segments, visual_segments, config.avss_target, config.avss_eps)
  )
  similarity = jax.nn.relu(
      cosine_similarity(outputs["audio_embedding"], outputs["visual_embedding"])
  )
  terms["avss"] = _batch_mean(_per_clip_mean((similarity - target) ** 2), batch)
  loss = (
      terms["video"]
      + terms["audio"]
      + terms["visual"]
      + config.segment_weight * (terms["audio_segment"] + terms["visual_segment"])
      + config.avss_weight * terms["avss"]
  )
  return loss, terms


def similarity_weight(similarity: Array, mu: Array) -> Array:
  """LINK's eq. 11: the S-LOSS weight of each segment pair from its cosine similarity s and the learnable mu.

  w = 1 for s <= -0.2;  e^|1 - mu| for -0.2 < s < 0;  e^|1 - mu| + (1 - e^|1 - mu|) s for s >= 0.
  Any shape; `mu` a scalar. The weight passes gradient to mu only (s enters as a constant coefficient).
  """
  s = jax.lax.stop_gradient(_f32(similarity))
  peak = jnp.exp(jnp.abs(1.0 - _f32(mu)))
  return jnp.where(s <= S_LOSS_LOW, 1.0, jnp.where(s < 0.0, peak, peak + (1.0 - peak) * s))


def link_loss(
    config: ml_collections.ConfigDict, outputs: Mapping[str, Array], batch: Mapping[str, Any]
) -> tuple[Array, Terms]:
  """LINK's loss (eq. 7-12): L_basic (as LEAP's) + avss_weight * S-LOSS [+ first_pass_weight * first pass].

  S-LOSS (`config.link_similarity`): "weighted" is the avss loss with each pair's squared error weighted by
  `similarity_weight(s, outputs["similarity_mu"])`; "plain" is LEAP's unweighted avss loss; "off" drops it.
  """
  if config.link_similarity not in LINK_SIMILARITIES:
    raise InputError(
        f"config.loss.link_similarity {config.link_similarity!r} is unknown: use one of "
        f"{LINK_SIMILARITIES}."
    )
  terms, audio_segments, visual_segments = _basic_terms(config, outputs, batch)
  loss = (
      terms["video"]
      + terms["audio"]
      + terms["visual"]
      + config.segment_weight * (terms["audio_segment"] + terms["visual_segment"])
  )
  if "first_pass" in terms:
    loss = loss + config.link_first_pass_weight * terms["first_pass"]
  if config.link_similarity != "off":
    target = jax.lax.stop_gradient(
        avss_target(audio_segments, visual_segments, config.avss_target, config.avss_eps)
    )
    cosine = cosine_similarity(outputs["audio_embedding"], outputs["visual_embedding"])
    squared_error = (jax.nn.relu(cosine) - target) ** 2
    if config.link_similarity == "weighted":
      if "similarity_mu" not in outputs:
        raise InputError(
            "config.loss.link_similarity is 'weighted' but the model has no 'similarity_mu' "
            "output: use config.model.encoder = 'link' or link_similarity = 'plain'."
        )
      squared_error = similarity_weight(cosine, outputs["similarity_mu"]) * squared_error
    terms["similarity"] = _batch_mean(_per_clip_mean(squared_error), batch)
    loss = loss + config.avss_weight * terms["similarity"]
  return loss, terms


def valor_loss(
    config: ml_collections.ConfigDict, outputs: Mapping[str, Array], batch: Mapping[str, Any]
) -> tuple[Array, Terms]:
  """VALOR's loss: video BCE + segment_weight * the segment BCE-with-logits per modality (module docstring)."""
  label = _f32(batch[batch_keys.LABEL])
  terms = {
      "video": _batch_mean(
          _bce_per_clip(_clamp(outputs["video_prob"], config.clamp_eps), label), batch
      )
  }
  keys = {"audio": batch_keys.AUDIO_PSEUDO_LABEL, "visual": batch_keys.VISUAL_PSEUDO_LABEL}
  for m in ("audio", "visual"):
    if not config.get(f"{m}_segment_loss", False):
      terms[f"{m}_segment"] = jnp.zeros((), jnp.float32)
      continue
    if keys[m] not in batch:
      raise InputError(
          f"config.loss.name='valor' with {m}_segment_loss=True but the batch has no {m} segment pseudo "
          "labels: set --config.data.pseudo_labels (VALOR's folder, one made by launch/make_pseudo_labels.py, "
          f"or 'simulated' on the embedded synthetic data), or set --config.loss.{m}_segment_loss=False."
      )
    if f"segment_{m}_logits" not in outputs:
      raise InputError(
          f"config.loss.name='valor' needs the model's segment_{m}_logits output, which this decoder does "
          "not give: use config.model.decoder='mmil' (or 'leap')."
      )
    terms[f"{m}_segment"] = _batch_mean(
        _bce_with_logits_per_clip(outputs[f"segment_{m}_logits"], batch[keys[m]]), batch
    )
  loss = terms["video"] + config.segment_weight * (terms["audio_segment"] + terms["visual_segment"])
  return loss, terms


def label_smoothed_nce(
    audio_embedding: Array, visual_embedding: Array, temperature: float, smoothing: float
) -> Array:
  """JoMoLD's label-smoothed NCE per clip `[B]` (module docstring) of `[B, T, D]` encoded segments.

  The official `LabelSmoothingNCELoss(classes=10)` takes the log of the smoothed target's expected softmax
  probability (not a cross-entropy), one row per audio segment, the matching visual segment its class.
  """
  logits_BxTxT, target_TxT = segment_match(
      audio_embedding, visual_embedding, temperature, smoothing
  )
  prob_BxTxT = jax.nn.softmax(logits_BxTxT, axis=-1)
  return -jnp.log(jnp.sum(prob_BxTxT * target_TxT[None], axis=-1)).mean(axis=-1)


DENOISED_TARGETS = ("audio_target", "visual_target")  # [B, C] batch keys the denoiser adds


def jomold_loss(
    config: ml_collections.ConfigDict, outputs: Mapping[str, Array], batch: Mapping[str, Any]
) -> tuple[Array, Terms]:
  """JoMoLD's loss: weighted modality, video and NCE terms (module docstring), on denoised targets if given."""
  label = _f32(batch[batch_keys.LABEL])
  smoothing = {"audio": config.audio_smoothing, "visual": config.visual_smoothing}
  targets = {}
  for m in ("audio", "visual"):
    target = batch.get(f"{m}_target")
    targets[m] = smooth(label, smoothing[m]) if target is None else _f32(target)
  terms = guided_terms(config, outputs, batch, video=label, **targets)
  terms["nce"] = _batch_mean(
      label_smoothed_nce(
          outputs["audio_embedding"],
          outputs["visual_embedding"],
          config.nce_temperature,
          config.nce_smoothing,
      ),
      batch,
  )
  loss = (
      config.audio_weight * terms["audio"]
      + config.visual_weight * terms["visual"]
      + config.video_weight * terms["video"]
      + config.nce_weight * terms["nce"]
  )
  return loss, terms


# The batch entries CVCM's per-step preparation adds (`avvp_jax.tasks.llp.cvcm_mix`): the warm-up flag (a
# float32 scalar, 1 in the first `cvcm_warm_up_epochs` epochs) and each clip's cross-video partner [B] int32.
CVCM_WARM_UP = "cvcm_warm_up"
CVCM_PARTNER = "cvcm_partner"


def cvcm_contrastive_per_row(
    audio_embedding: Array,
    visual_embedding: Array,
    temporal_logits: Array,
    audio_labels: Array,
    visual_labels: Array,
    audio_positive: Array,
    visual_positive: Array,
    temperature: float,
    column_mask: Array,
) -> Array:
  """CVCM's cross-video audio-visual contrastive loss of each of N clips `[N]` (module docstring).

  Args:
    audio_embedding: `[N, T, D]` the encoded audio segments.
    visual_embedding: `[N, T, D]` the encoded visual segments.
    temporal_logits: `[N, T, 2, C]` MMIL's fc_frame_att before its softmax (audio, visual).
    audio_labels: `[N, C]` 0/1 audio labels: the classes whose attention logits pool a clip's audio.
    visual_labels: `[N, C]` 0/1 visual labels, likewise.
    audio_positive: `[N, C]` 0/1: audio i and visual j are a positive pair when they share a class of
      `audio_positive[i]` and `visual_positive[j]`.
    visual_positive: `[N, C]` 0/1, likewise.
    temperature: the cosine similarities are divided by it (official --tmp 1).
    column_mask: `[N]` 1 on real clips; padding is no candidate.

  Returns:
    `[N]` the cross-entropy of each audio row against its row-normalised positive targets (0 for a row
    without positives).
  """

  def pooled(segments_NxTxD, logits_NxTxC, labels_NxC):
    weight_NxT = jax.nn.softmax(
        jnp.einsum("ntc,nc->nt", _f32(logits_NxTxC), jax.lax.stop_gradient(_f32(labels_NxC))),
        axis=1,
    )
    return unit(jnp.einsum("nt,ntd->nd", weight_NxT, _f32(segments_NxTxD)))

  audio_NxD = pooled(audio_embedding, temporal_logits[:, :, 0], audio_labels)
  visual_NxD = pooled(visual_embedding, temporal_logits[:, :, 1], visual_labels)
  valid_1xN = (_f32(column_mask) > 0)[None, :]
  logits_NxN = jnp.where(valid_1xN, audio_NxD @ visual_NxD.T / temperature, -1e30)
  shared_NxN = _f32(audio_positive) @ _f32(visual_positive).T
  target_NxN = jnp.where(valid_1xN, jnp.minimum(shared_NxN, 1.0), 0.0)
  target_NxN = jax.lax.stop_gradient(target_NxN / (target_NxN.sum(-1, keepdims=True) + 1e-10))
  return -(target_NxN * jax.nn.log_softmax(logits_NxN, axis=-1)).sum(axis=-1)


def cvcm_loss(
    config: ml_collections.ConfigDict, outputs: Mapping[str, Array], batch: Mapping[str, Any]
) -> tuple[Array, Terms]:
  """CVCM's loss: HAN's three BCEs on MA's modality labels + the cross-video contrastive term (module
  docstring). With `batch[CVCM_PARTNER]` the outputs hold 2B rows (the B clips, then each clip's audio with
  its partner's visual streams) and the BCEs read the first B."""
  label = _f32(batch[batch_keys.LABEL])
  num_clips = label.shape[0]
  labels = {
      m: _f32(batch[key]) if key in batch else label
      for m, key in zip(("audio", "visual"), batch_keys.MODALITY_LABELS)
  }
  warm = _f32(batch.get(CVCM_WARM_UP, 0.0))
  smoothing = {
      "audio": jnp.where(warm > 0, config.cvcm_warm_up_audio_smoothing, config.audio_smoothing),
      "visual": jnp.where(warm > 0, config.cvcm_warm_up_visual_smoothing, config.visual_smoothing),
  }
  first = {f"{m}_prob": outputs[f"{m}_prob"][:num_clips] for m in ("video", "audio", "visual")}
  video = jnp.maximum(labels["audio"], labels["visual"])  # official logical_or(a_refine, v_refine)
  if (
      config.ma_drop_clears_video
  ):  # MA's stage-3 quirk instead: the weak label less the dropped audio
    video = label * labels["audio"]
  targets = {m: smooth(labels[m], smoothing[m]) for m in labels}
  terms = guided_terms(config, first, batch, video=video, **targets)
  mask = _f32(batch[batch_keys.MASK]) if batch_keys.MASK in batch else jnp.ones(num_clips)
  rows = labels
  if CVCM_PARTNER in batch:  # the mixed half: own audio labels, the partner's visual labels
    partner = batch[CVCM_PARTNER]
    rows = {
        "audio": jnp.concatenate([labels["audio"], labels["audio"]]),
        "visual": jnp.concatenate([labels["visual"], labels["visual"][partner]]),
    }
    mask = jnp.concatenate([mask, mask])
  if outputs["audio_embedding"].shape[0] != mask.shape[0]:
    raise InputError(
        f"config.loss.name='cvcm' got {outputs['audio_embedding'].shape[0]} model rows for "
        f"{mask.shape[0]} contrastive rows: train it through the task's step (its cross-video batch)."
    )
  per_row = cvcm_contrastive_per_row(
      outputs["audio_embedding"],
      outputs["visual_embedding"],
      outputs["temporal_attention_logits"],
      rows["audio"],
      rows["visual"],
      smooth(rows["audio"], smoothing["audio"]) != 0,  # official (Pa != 0), (Pv != 0)
      smooth(rows["visual"], smoothing["visual"]) != 0,
      config.cvcm_temperature,
      mask,
  )
  terms["contrastive"] = (per_row * mask).sum() / jnp.maximum(mask.sum(), 1.0)
  loss = (
      terms["video"]
      + terms["audio"]
      + terms["visual"]
      + (1.0 - warm) * config.cvcm_weight * terms["contrastive"]
  )
  return loss, terms


def uwav_loss(
    config: ml_collections.ConfigDict, outputs: Mapping[str, Array], batch: Mapping[str, Any]
) -> tuple[Array, Terms]:
  """UWAV's student loss (`avvp_jax.tasks.llp.uwav`): video BCE + segment_weight x the class-balanced segment
  BCE-with-logits against the teacher's soft targets + uwav_mixup_weight x the mixup terms, per modality.

  `uwav_soft_targets` (official `--apply_uncertainty`) and `uwav_soft_mixup` (`--apply_uncertainty_mixup`)
  choose the soft targets over the hard segment labels; `uwav_reweight` the weights ("inverse_freq", "fixed",
  "off"); the mixup draws (`uwav.MIXUP_KEYS`) come from the train step's hook (`uwav.make_mixup_step`).
  """
  label = _f32(batch[batch_keys.LABEL])
  mask = batch.get(batch_keys.MASK)
  real = _f32(mask) > 0 if mask is not None else jnp.ones(label.shape[:1], bool)
  terms = {
      "video": _batch_mean(
          _bce_per_clip(_clamp(outputs["video_prob"], config.clamp_eps), label), batch
      )
  }
  hard_keys = {"audio": batch_keys.AUDIO_PSEUDO_LABEL, "visual": batch_keys.VISUAL_PSEUDO_LABEL}
  mixup = []
  for m in uwav.MODALITIES:
    logit_key, threshold_key, frequency_key = uwav.BATCH_KEYS[m]
    needed = [logit_key, threshold_key, frequency_key, hard_keys[m]]
    if config.uwav_mixup_weight:
      needed += list(uwav.MIXUP_KEYS[m])
    missing = [key for key in needed if key not in batch]
    if missing:
      raise InputError(
          f"config.loss.name='uwav' but the batch has no {missing[0]}: give the teacher's folder "
          "(--config.data.pseudo_labels, made by launch/make_pseudo_labels.py --uwav) and train with "
          "launch/train.py, whose step adds the mixup draws."
      )
    if f"segment_{m}_logits" not in outputs:
      raise InputError(
          f"config.loss.name='uwav' needs the model's segment_{m}_logits output: use "
          "config.model.decoder='mmil'."
      )
    thresholds = jnp.max(jnp.where(real[:, None], _f32(batch[threshold_key]), -jnp.inf), axis=0)
    frequency = jnp.max(jnp.where(real, _f32(batch[frequency_key]), -jnp.inf))
    soft = uwav.soft_targets(batch[logit_key], thresholds, label, mask)
    hard = _f32(batch[hard_keys[m]])
    logits = outputs[f"segment_{m}_logits"]
    weights = uwav.segment_weights(
        label,
        frequency,
        config.uwav_reweight,
        config.uwav_positive_weight,
        config.uwav_negative_weight,
        logits.shape[1],
    )
    target = soft if config.uwav_soft_targets else hard
    terms[f"{m}_segment"] = _batch_mean(
        _per_clip_mean(weights * uwav.bce_with_logits(logits, target)), batch
    )
    if config.uwav_mixup_weight:
      lam_key, perm_key = uwav.MIXUP_KEYS[m]
      terms[f"{m}_mixup"] = uwav.mixup_term(
          logits, soft if config.uwav_soft_mixup else hard, batch[lam_key], batch[perm_key], mask
      )
    else:
      terms[f"{m}_mixup"] = jnp.zeros((), jnp.float32)
    mixup.append(terms[f"{m}_mixup"])
  loss = (
      terms["video"]
      + config.segment_weight * (terms["audio_segment"] + terms["visual_segment"])
      + config.uwav_mixup_weight * (mixup[0] + mixup[1])
  )
  return loss, terms


LossFn = Callable[
    [ml_collections.ConfigDict, Mapping[str, Array], Mapping[str, Any]], tuple[Array, Terms]
]
LOSSES: dict[str, LossFn] = {
    "han": han_loss,
    "ma": ma_loss,
    "leap": leap_loss,
    "link": link_loss,
    "valor": valor_loss,
    "jomold": jomold_loss,
    "cvcm": cvcm_loss,
    "uwav": uwav_loss,
}


def compute_loss(
    config: ml_collections.ConfigDict, outputs: Mapping[str, Array], batch: Mapping[str, Any]
) -> tuple[Array, Terms]:
  """The loss named by `config.name` (a key of `LOSSES`).

  Args:
    config: `config.loss`; `config.name` in {"han", "ma", "leap", "link", "valor"}.
    outputs: the model's output dict (`video_prob [B, C]`, `audio_prob`, `visual_prob [B, C]`,
      `segment_audio_prob`, `segment_visual_prob [B, T, C]`, `audio_embedding`, `visual_embedding
      [B, T, D]`), any float dtype.
    batch: the batch dict; uses `label [B, C]`, `mask [B]` when present, and for LEAP the pseudo-label
      keys of `avvp_jax.tasks.llp.pseudo_labels` when present.

  Returns:
    `(loss, terms)`: the float32 scalar to minimise and a dict of its named float32 scalar terms
    (unweighted): HAN `video`, `audio`, `visual`; MA also `contrastive`; LEAP also `audio_segment`, `visual_segment`, `avss`;
    LINK `video`, `audio`, `visual`, `audio_segment`, `visual_segment`, `similarity` (unless off) and
    `first_pass` (with PLSIM); VALOR `video`, `audio_segment`, `visual_segment`; CVCM `video`, `audio`,
    `visual`, `contrastive`.
    `first_pass` (with PLSIM); VALOR `video`, `audio_segment`, `visual_segment`; UWAV those and
    `audio_mixup`, `visual_mixup`.
  """
  if config.name not in LOSSES:
    raise InputError(f"config.loss.name {config.name!r} is unknown: use one of {sorted(LOSSES)}.")
  return LOSSES[config.name](config, outputs, batch)
