"""The official LLP audio-visual video parsing metrics, vectorised in jnp.

The numbers match the evaluation released with Tian, Li and Xu (ECCV 2020; `main_avvp.py:eval` and
`utils/eval_metrics.py` in YapengTian/AVVP-ECCV20), which later papers (HAN, MA, JoMoLD, LEAP, ...) copy.
Its rules, quirks included:

  * Predictions. A second is predicted for a class when its segment probability is >= 0.5 AND the clip's
    video-level probability for that class is >= 0.5 (`segment_predictions`). The audio-visual prediction
    and truth are the products (logical AND) of the audio and the visual ones.
  * Segment level. Per clip and class: TP, FP, FN counted over the T seconds. A class enters the clip's
    average only if it is present in the prediction or in the truth; its F1 is 2TP / (2TP + FP + FN), so a
    class with only false positives or only false negatives scores 0. The clip's value is the mean over
    the classes that entered, or 1.0 when none did (nothing predicted, nothing true).
  * Event level. An event is a maximal run of consecutive positive seconds of one class (runs may touch
    second 0 and second T). A predicted event is a TP if its IoU (in seconds) with at least one true event
    of its class is >= 0.5, else an FP; a true event is an FN if no predicted event reaches IoU >= 0.5 with
    it. Nothing enforces a one-to-one matching (with maximal runs and IoU >= 0.5 a match is one-to-one
    anyway). Per class F1 and clip averaging as at segment level.
  * Type@AV is the mean of the audio, visual and audio-visual values. Event@AV pools the audio and the
    visual TP, FP and FN of each class before taking its F1 (audio-visual counts are not pooled in).
  * The reported number is 100 x the mean over clips of the per-clip values.

Everything here is vectorised over clips, classes and events: no Python loop runs per clip, class or
event, and a whole test set is scored in one jitted call. The events of each clip and class are held in
ceil(T / 2) slots (start, end) found from the rising and falling edges of the row; event matching compares
all slot pairs at once.

Precision: counts are exact in float32; per-class F1s are summed, and per-clip values summed over clips,
with a split into a coarse part (a multiple of 2^-12, summed exactly) and a small remainder, so results
stay within ~1e-6 percentage points of the float64 official code for any summation order.

Typical use:

  pred_audio, pred_visual = metrics.segment_predictions(
      out["segment_audio_prob"], out["segment_visual_prob"],
      out["audio_filter_prob"], out["visual_filter_prob"])
  scores = metrics.parsing_scores(pred_audio, pred_visual, true_audio, true_visual, mask=mask)
  scores["segment/audio"]  # e.g. 60.1 (percent)

For evaluation over batches: `masked_clip_sums(clip_scores(...), mask)` per batch, accumulate the sums and
the clip counts on the host in float64, and report 100 * sum / count.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from avvp_jax.errors import InputError

MODALITIES = ("audio", "visual", "audio_visual")
LEVELS = ("segment", "event")
KEYS = (
    "segment/audio", "segment/visual", "segment/audio_visual", "segment/type", "segment/event",
    "event/audio", "event/visual", "event/audio_visual", "event/type", "event/event",
)
PER_CLASS_KEYS = (
    "segment/audio", "segment/visual", "segment/audio_visual",
    "event/audio", "event/visual", "event/audio_visual",
)

# Values are split into a multiple of 2^-12 and a remainder before summing; the coarse parts of up to
# 4096 values in [0, 1] add up exactly in float32 (24-bit significand).
_COARSE_SCALE = 4096.0


# ----------------------------------------------------------------------------------------------------
# Predictions.


def segment_predictions(
    segment_audio_prob: jax.Array,
    segment_visual_prob: jax.Array,
    audio_filter_prob: jax.Array,
    visual_filter_prob: jax.Array,
    threshold: float = 0.5,
) -> tuple[jax.Array, jax.Array]:
  """Turns model probabilities into 0/1 second-level predictions, the official way.

  A second is positive for a class when its segment probability is >= `threshold` and the clip-level
  probability of that class (the "filter" probability of that modality) is >= `threshold` too. The
  official code uses 0.5 for both and, for HAN/MMIL and LEAP, the whole-video probability as the filter
  of both modalities; the model decides which probabilities it hands over. Jittable.

  Args:
    segment_audio_prob: [N, T, C] audio segment probabilities.
    segment_visual_prob: [N, T, C] visual segment probabilities.
    audio_filter_prob: [N, C] video-level probabilities gating the audio predictions.
    visual_filter_prob: [N, C] video-level probabilities gating the visual predictions.
    threshold: the cut for both the segment and the video-level probabilities (kept when >=).

  Returns:
    (pred_audio, pred_visual): float32 0/1 arrays [N, T, C].
  """
  segment_audio_prob = jnp.asarray(segment_audio_prob)
  segment_visual_prob = jnp.asarray(segment_visual_prob)
  audio_filter_prob = jnp.asarray(audio_filter_prob)
  visual_filter_prob = jnp.asarray(visual_filter_prob)
  for name, seg, flt in (("audio", segment_audio_prob, audio_filter_prob),
                         ("visual", segment_visual_prob, visual_filter_prob)):
    if seg.ndim != 3 or flt.shape != (seg.shape[0], seg.shape[2]):
      raise InputError(
          f"segment_predictions got segment_{name}_prob of shape {seg.shape} and {name}_filter_prob of "
          f"shape {flt.shape}: pass [N, T, C] segment and [N, C] video-level probabilities.")

  def gate(segment_prob, filter_prob):
    keep_class_NxC = filter_prob >= threshold
    positive_NxTxC = segment_prob >= threshold
    return (positive_NxTxC & keep_class_NxC[:, None, :]).astype(jnp.float32)

  return gate(segment_audio_prob, audio_filter_prob), gate(segment_visual_prob, visual_filter_prob)


# ----------------------------------------------------------------------------------------------------
# Counting.


def _event_slots(positive_NxTxC: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The events (maximal runs of positive seconds) of each clip and class, as S = ceil(T / 2) slots.

  The k-th event of a row starts at the row's k-th rising edge and ends after its k-th falling edge.
  Edge ranks come from a product with a constant triangular matrix (0/1 inputs, small integer outputs:
  exact at any matmul precision).

  Args:
    positive_NxTxC: bool [N, T, C].

  Returns:
    start [N, C, S] int32, end [N, C, S] int32 (exclusive), valid [N, C, S] bool (slot holds an event).
  """
  num_seconds = positive_NxTxC.shape[1]
  num_slots = (num_seconds + 1) // 2
  x_NxTxC = positive_NxTxC.astype(jnp.int32)
  zeros_Nx1xC = jnp.zeros_like(x_NxTxC[:, :1])
  before_NxTxC = jnp.concatenate([zeros_Nx1xC, x_NxTxC[:, :-1]], axis=1)
  after_NxTxC = jnp.concatenate([x_NxTxC[:, 1:], zeros_Nx1xC], axis=1)
  rises_NxTxC = x_NxTxC * (1 - before_NxTxC)  # an event starts at this second
  falls_NxTxC = x_NxTxC * (1 - after_NxTxC)  # an event ends after this second
  # upto[t, u] = 1 if t <= u: (flags @ upto)[u] counts the flags at seconds 0..u.
  upto_TxT = jnp.asarray(np.triu(np.ones((num_seconds, num_seconds), np.float32)))

  def rank(flags_NxTxC):
    return jnp.einsum("ntc,tu->nuc", flags_NxTxC.astype(jnp.float32), upto_TxT,
                      precision=jax.lax.Precision.HIGHEST).astype(jnp.int32)

  slot_1x1x1xS = jnp.arange(1, num_slots + 1, dtype=jnp.int32)[None, None, None, :]
  second_1xTx1x1 = jnp.arange(num_seconds, dtype=jnp.int32)[None, :, None, None]
  is_rise_NxTxCxS = (rises_NxTxC == 1)[..., None] & (rank(rises_NxTxC)[..., None] == slot_1x1x1xS)
  is_fall_NxTxCxS = (falls_NxTxC == 1)[..., None] & (rank(falls_NxTxC)[..., None] == slot_1x1x1xS)
  start_NxCxS = jnp.sum(jnp.where(is_rise_NxTxCxS, second_1xTx1x1, 0), axis=1)
  end_NxCxS = jnp.sum(jnp.where(is_fall_NxTxCxS, second_1xTx1x1 + 1, 0), axis=1)
  valid_NxCxS = jnp.any(is_rise_NxTxCxS, axis=1)
  return start_NxCxS, end_NxCxS, valid_NxCxS


def _segment_counts(pred_NxTxC: jax.Array, true_NxTxC: jax.Array) -> tuple[jax.Array, ...]:
  """Second-level TP, FP, FN per clip and class: float32 [N, C] each."""
  tp = jnp.sum(pred_NxTxC & true_NxTxC, axis=1, dtype=jnp.float32)
  fp = jnp.sum(pred_NxTxC & ~true_NxTxC, axis=1, dtype=jnp.float32)
  fn = jnp.sum(~pred_NxTxC & true_NxTxC, axis=1, dtype=jnp.float32)
  return tp, fp, fn


def _event_counts(pred_NxTxC: jax.Array, true_NxTxC: jax.Array) -> tuple[jax.Array, ...]:
  """Event-level TP, FP, FN per clip and class, the official way: float32 [N, C] each.

  A predicted event is a TP when some true event of its row has IoU >= 0.5 with it (decided exactly in
  integers as 2 * intersection >= union), else an FP; a true event no predicted event matches is an FN.
  """
  pred_start, pred_end, pred_valid = (x[..., :, None] for x in _event_slots(pred_NxTxC))  # [N, C, S, 1]
  true_start, true_end, true_valid = (x[..., None, :] for x in _event_slots(true_NxTxC))  # [N, C, 1, S]
  inter_NxCxSxS = jnp.maximum(
      0, jnp.minimum(pred_end, true_end) - jnp.maximum(pred_start, true_start))
  union_NxCxSxS = (pred_end - pred_start) + (true_end - true_start) - inter_NxCxSxS
  match_NxCxSxS = (2 * inter_NxCxSxS >= union_NxCxSxS) & pred_valid & true_valid
  pred_found_NxCxS = jnp.any(match_NxCxSxS, axis=-1)
  true_found_NxCxS = jnp.any(match_NxCxSxS, axis=-2)
  pred_valid, true_valid = pred_valid[..., 0], true_valid[..., 0, :]
  tp = jnp.sum(pred_valid & pred_found_NxCxS, axis=-1, dtype=jnp.float32)
  fp = jnp.sum(pred_valid & ~pred_found_NxCxS, axis=-1, dtype=jnp.float32)
  fn = jnp.sum(true_valid & ~true_found_NxCxS, axis=-1, dtype=jnp.float32)
  return tp, fp, fn


def _accurate_sum(values: jax.Array, axis: int) -> jax.Array:
  """Sum of values in [0, 1] whose float32 error does not grow with the reduction order or length."""
  coarse = jnp.round(values * _COARSE_SCALE) / _COARSE_SCALE
  return jnp.sum(coarse, axis=axis) + jnp.sum(values - coarse, axis=axis)


def _f1(tp: jax.Array, fp: jax.Array, fn: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-class F1 = 2TP / (2TP + FP + FN) and whether the class counts (present in pred or truth)."""
  denominator = 2.0 * tp + fp + fn
  present = denominator > 0
  f1 = jnp.where(present, 2.0 * tp / jnp.where(present, denominator, 1.0), 0.0)
  return f1, present


def _clip_value(tp_NxC: jax.Array, fp_NxC: jax.Array, fn_NxC: jax.Array) -> jax.Array:
  """Official per-clip value [N]: mean F1 over present classes, 1.0 when no class is present."""
  f1_NxC, present_NxC = _f1(tp_NxC, fp_NxC, fn_NxC)
  num_present_N = jnp.sum(present_NxC, axis=-1, dtype=jnp.float32)
  total_N = _accurate_sum(f1_NxC, axis=-1)
  return jnp.where(num_present_N > 0, total_N / jnp.maximum(num_present_N, 1.0), 1.0)


def _as_binary(x) -> jax.Array:
  return jnp.asarray(x) != 0


def _check_labels(pred_audio, pred_visual, true_audio, true_visual) -> None:
  shapes = {name: tuple(np.shape(x)) for name, x in (("pred_audio", pred_audio), ("pred_visual", pred_visual),
                                                    ("true_audio", true_audio), ("true_visual", true_visual))}
  first = shapes["pred_audio"]
  if len(first) != 3 or any(shape != first for shape in shapes.values()):
    raise InputError(f"the metrics got label arrays of shapes {shapes}: pass four 0/1 arrays of one "
                     "shape [N, T, C] (clips, seconds, classes).")


def _modality_labels(pred_audio, pred_visual, true_audio, true_visual):
  """Bool [N, T, C] (pred, true) pairs for audio, visual and audio-visual (the AND of both)."""
  pa, pv, ta, tv = (_as_binary(x) for x in (pred_audio, pred_visual, true_audio, true_visual))
  return {"audio": (pa, ta), "visual": (pv, tv), "audio_visual": (pa & pv, ta & tv)}


# ----------------------------------------------------------------------------------------------------
# Scores.


@jax.jit
def clip_scores(pred_audio: jax.Array, pred_visual: jax.Array, true_audio: jax.Array,
                true_visual: jax.Array) -> dict[str, jax.Array]:
  """The official per-clip values (fractions in [0, 1], not percent), one per key of `KEYS`.

  `100 * mean` over clips of each entry is the official number. `*/type` is the mean of the clip's
  audio, visual and audio-visual values (its mean over clips equals the official Type@AV, the mean of
  the three means); `*/event` is the clip's Event@AV, with audio and visual counts pooled per class.
  Jitted; vectorised over clips, classes and events.

  Args:
    pred_audio, pred_visual: [N, T, C] 0/1 predictions (any dtype; nonzero counts as positive).
    true_audio, true_visual: [N, T, C] 0/1 ground truth.

  Returns:
    dict key -> float32 [N].
  """
  _check_labels(pred_audio, pred_visual, true_audio, true_visual)
  labels = _modality_labels(pred_audio, pred_visual, true_audio, true_visual)
  scores = {}
  for level, count_fn in (("segment", _segment_counts), ("event", _event_counts)):
    counts = {m: count_fn(*labels[m]) for m in MODALITIES}
    for m in MODALITIES:
      scores[f"{level}/{m}"] = _clip_value(*counts[m])
    scores[f"{level}/type"] = (scores[f"{level}/audio"] + scores[f"{level}/visual"]
                               + scores[f"{level}/audio_visual"]) / 3.0
    pooled = [a + v for a, v in zip(counts["audio"], counts["visual"])]
    scores[f"{level}/event"] = _clip_value(*pooled)
  return {key: scores[key] for key in KEYS}


@jax.jit
def masked_clip_sums(clip_values: Mapping[str, jax.Array], mask: jax.Array) -> dict[str, jax.Array]:
  """Sums over the real clips of each [N] entry of `clip_scores`, plus `count` (number of real clips).

  Meant for batched evaluation: accumulate the returned scalars over batches on the host in float64 and
  report 100 * sum / count. Jitted.

  Args:
    clip_values: dict key -> [N] per-clip values (fractions in [0, 1]).
    mask: [N], nonzero (1) for real clips, 0 for padding.

  Returns:
    dict key -> float32 scalar, and "count" -> float32 scalar.
  """
  real_N = jnp.asarray(mask) != 0
  sums = {key: _accurate_sum(jnp.where(real_N, values, 0.0), axis=0) for key, values in clip_values.items()}
  sums["count"] = jnp.sum(real_N, dtype=jnp.float32)
  return sums


@jax.jit
def _binary_check(pred_audio, pred_visual, true_audio, true_visual, mask) -> tuple[jax.Array, jax.Array]:
  arrays = (pred_audio, pred_visual, true_audio, true_visual)
  labels_ok = jnp.all(jnp.stack([jnp.all((x == 0) | (x == 1)) for x in arrays]))
  return labels_ok, jnp.sum(mask != 0)


@jax.jit
def _score_sums(pred_audio, pred_visual, true_audio, true_visual, mask) -> dict[str, jax.Array]:
  return masked_clip_sums(clip_scores(pred_audio, pred_visual, true_audio, true_visual), mask)


def _validated(pred_audio, pred_visual, true_audio, true_visual, mask):
  """Checks shapes and values on the host; returns the inputs as arrays and the [N] mask."""
  _check_labels(pred_audio, pred_visual, true_audio, true_visual)
  arrays = [jnp.asarray(x) for x in (pred_audio, pred_visual, true_audio, true_visual)]
  num_clips = arrays[0].shape[0]
  if mask is None:
    mask = jnp.ones((num_clips,), jnp.float32)
  mask = jnp.asarray(mask)
  if mask.shape != (num_clips,):
    raise InputError(f"mask has shape {mask.shape}, but the labels hold {num_clips} clips: pass a [N] mask "
                     "with 1 for real clips and 0 for padding.")
  labels_ok, num_real = _binary_check(*arrays, mask)
  if not bool(labels_ok):
    raise InputError("the metrics got predictions or labels with values other than 0 and 1: threshold "
                     "probabilities first, e.g. with metrics.segment_predictions.")
  if int(num_real) == 0:
    raise InputError("mask selects no clip: the metrics need at least one real clip (mask value 1).")
  return arrays, mask


def parsing_scores(pred_audio, pred_visual, true_audio, true_visual, mask=None) -> dict[str, float]:
  """The ten official AVVP numbers, in percent, over a whole set of clips.

  Computed in one jitted call over all clips; host-side checks raise `InputError` for mismatched shapes,
  non-0/1 values or an empty mask.

  Args:
    pred_audio, pred_visual: [N, T, C] 0/1 predictions (e.g. from `segment_predictions`).
    true_audio, true_visual: [N, T, C] 0/1 dense ground truth.
    mask: optional [N]; clips where it is 0 (padding) are left out.

  Returns:
    dict with the keys of `KEYS` -> Python float, percent (100 = perfect).
  """
  arrays, mask = _validated(pred_audio, pred_visual, true_audio, true_visual, mask)
  sums = jax.device_get(_score_sums(*arrays, mask))
  count = float(sums["count"])
  scores = {key: 100.0 * float(sums[key]) / count for key in KEYS}
  for level in LEVELS:  # the official formula: the mean of the three means.
    scores[f"{level}/type"] = sum(scores[f"{level}/{m}"] for m in MODALITIES) / 3.0
  return scores


@jax.jit
def per_class_counts(pred_audio, pred_visual, true_audio, true_visual, mask) -> dict[str, jax.Array]:
  """Per-class (TP, FP, FN) summed over the real clips, for `f1_from_counts`; jitted, batch by batch.

  Args:
    pred_audio, pred_visual, true_audio, true_visual: [N, T, C] 0/1.
    mask: [N], nonzero for real clips.

  Returns:
    dict with the keys of `PER_CLASS_KEYS` -> float32 [3, C]: TP, FP and FN per class (seconds at segment
    level, events as in the official event-level rule at event level).
  """
  labels = _modality_labels(pred_audio, pred_visual, true_audio, true_visual)
  real_N1 = (jnp.asarray(mask) != 0)[:, None]
  out = {}
  for level, count_fn in (("segment", _segment_counts), ("event", _event_counts)):
    for m in MODALITIES:
      counts = count_fn(*labels[m])
      out[f"{level}/{m}"] = jnp.stack([jnp.sum(jnp.where(real_N1, c, 0.0), axis=0) for c in counts])
  return out


def f1_from_counts(counts: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Per-class F1 in percent from `per_class_counts` (summed over batches): 100 * 2TP / (2TP + FP + FN).

  A class that is neither predicted nor true anywhere gets NaN. Returns `PER_CLASS_KEYS` -> float64 [C].
  """
  out = {}
  for key in PER_CLASS_KEYS:
    tp, fp, fn = np.asarray(counts[key], np.float64)
    denominator = 2.0 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
      out[key] = np.where(denominator > 0, 100.0 * 2.0 * tp / denominator, np.nan)
  return out


def per_class_f1(pred_audio, pred_visual, true_audio, true_visual, mask=None) -> dict[str, np.ndarray]:
  """Per-class F1 in percent over the whole set, for diagnostics (not an official number).

  For each class, the TP, FP and FN of all real clips are added up first (seconds at segment level,
  events as in the official event-level rule at event level), then F1 = 100 * 2TP / (2TP + FP + FN).
  A class that is neither predicted nor true anywhere in the set gets NaN.

  Args:
    pred_audio, pred_visual, true_audio, true_visual, mask: as in `parsing_scores`.

  Returns:
    dict with the keys of `PER_CLASS_KEYS` (`segment/audio`, ..., `event/audio_visual`) -> float64 [C].
  """
  arrays, mask = _validated(pred_audio, pred_visual, true_audio, true_visual, mask)
  return f1_from_counts(jax.device_get(per_class_counts(*arrays, mask)))
