"""The official LLP audio-visual video parsing metrics, vectorised in jnp.

The numbers match the evaluation released with Tian, Li and Xu (ECCV 2020; `main_avvp.py:eval` and
`utils/eval_metrics.py` in YapengTian/AVVP-ECCV20), which later papers (HAN, MA, JoMoLD, LEAP, ...) copy.
Its rules, quirks included:

  * Predictions. A second is predicted for a class when its segment probability is >= 0.5 AND the clip's
    video-level probability for that class is >= 0.5 (`OFFICIAL_THRESHOLD`; the rule is `gate`, applied
    to both modalities by `segment_predictions`). The audio-visual prediction and truth are the products
    (logical AND) of the audio and the visual ones.
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
event, and a whole test set is scored, and its values checked, in one jitted call. Each clip's row of
seconds of one class is held as the bits of one uint32 word (so clips are at most `MAX_SECONDS` = 32
seconds long; LLP's are 10): second-level counts are popcounts of ANDs, the events of a row are ceil(T / 2)
bit masks, and event matching compares all mask pairs at once.

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

Length: one rule set, the official evaluation (the prediction rule, the counts, the scores), which changes
as a whole when it does.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from avvp_jax import official
from avvp_jax.errors import InputError

# The scored modalities: audio, visual, and audio-visual (the AND of both). Labels come in the first two
# only (`avvp_jax.tasks.llp.annotations.LABEL_MODALITIES`).
MODALITIES = ("audio", "visual", "audio_visual")
LEVELS = ("segment", "event")
KEYS = (
    "segment/audio",
    "segment/visual",
    "segment/audio_visual",
    "segment/type",
    "segment/event",
    "event/audio",
    "event/visual",
    "event/audio_visual",
    "event/type",
    "event/event",
)
PER_CLASS_KEYS = (
    "segment/audio",
    "segment/visual",
    "segment/audio_visual",
    "event/audio",
    "event/visual",
    "event/audio_visual",
)

# The official cut of segment and video-level probabilities (`avvp_jax.official`, which the models read too).
OFFICIAL_THRESHOLD = official.THRESHOLD

# Values are split into a multiple of 2^-12 and a remainder before summing; the coarse parts of up to
# 4096 values in [0, 1] add up exactly in float32 (24-bit significand).
_COARSE_SCALE = 4096.0
# A clip's seconds of one class are counted as the bits of one uint32 word.
MAX_SECONDS = 32


# ----------------------------------------------------------------------------------------------------
# Predictions.


def gate(
    segment_prob: Any,
    filter_prob: Any,
    threshold: Any = OFFICIAL_THRESHOLD,
    gate_threshold: Any = None,
) -> Any:
  """The official rule, bool `[N, T, C]`: a second is positive for a class when its `segment_prob`
  `[N, T, C]` is >= `threshold` and the clip's video-level `filter_prob` `[N, C]` is >= `gate_threshold`
  (None: `threshold`, as officially). Thresholds: one number or `[C]`. numpy or jax arrays, jittable; no
  checks (`segment_predictions` checks the shapes)."""
  gate_threshold = threshold if gate_threshold is None else gate_threshold
  # A [C] threshold gets explicit leading axes (no rank promotion); `np.reshape` keeps jax arrays jax.
  cut = lambda t, rank: t if np.ndim(t) == 0 else np.reshape(t, (1,) * (rank - 1) + (-1,))
  return (segment_prob >= cut(threshold, 3)) & (filter_prob >= cut(gate_threshold, 2))[:, None, :]


def segment_predictions(
    segment_audio_prob: jax.Array,
    segment_visual_prob: jax.Array,
    audio_filter_prob: jax.Array,
    visual_filter_prob: jax.Array,
    threshold: Any = OFFICIAL_THRESHOLD,
    gate_threshold: Any = None,
) -> tuple[jax.Array, jax.Array]:
  """Turns model probabilities into 0/1 second-level predictions, the official way (`gate`).

  The official code uses 0.5 (`OFFICIAL_THRESHOLD`) for the segment and the clip-level ("filter")
  probabilities and, for HAN/MMIL and LEAP, the whole-video probability as the filter of both modalities;
  the model decides which probabilities it hands over. Jittable.

  Args:
    segment_audio_prob: [N, T, C] audio segment probabilities.
    segment_visual_prob: [N, T, C] visual segment probabilities.
    audio_filter_prob: [N, C] video-level probabilities gating the audio predictions.
    visual_filter_prob: [N, C] video-level probabilities gating the visual predictions.
    threshold: the cut of the segment probabilities (kept when >=): one number or [C] (one per class).
    gate_threshold: the cut of the video-level probabilities, same forms; None: `threshold` (official).

  Returns:
    (pred_audio, pred_visual): float32 0/1 arrays [N, T, C].
  """
  segment_audio_prob = jnp.asarray(segment_audio_prob)
  segment_visual_prob = jnp.asarray(segment_visual_prob)
  audio_filter_prob = jnp.asarray(audio_filter_prob)
  visual_filter_prob = jnp.asarray(visual_filter_prob)
  for name, seg, flt in (
      ("audio", segment_audio_prob, audio_filter_prob),
      ("visual", segment_visual_prob, visual_filter_prob),
  ):
    if seg.ndim != 3 or flt.shape != (seg.shape[0], seg.shape[2]):
      raise InputError(
          f"segment_predictions got segment_{name}_prob of shape {seg.shape} and {name}_filter_prob of "
          f"shape {flt.shape}: pass [N, T, C] segment and [N, C] video-level probabilities."
      )
  pred_audio = gate(segment_audio_prob, audio_filter_prob, threshold, gate_threshold)
  pred_visual = gate(segment_visual_prob, visual_filter_prob, threshold, gate_threshold)
  return pred_audio.astype(jnp.float32), pred_visual.astype(jnp.float32)


# ----------------------------------------------------------------------------------------------------
# Counting.


def _row_bits(positive_NxTxC: jax.Array) -> jax.Array:
  """Each clip's and class's row of seconds as the bits of one word: bit t is set when second t is positive.

  Args:
    positive_NxTxC: bool [N, T, C], T <= `MAX_SECONDS`.

  Returns:
    uint32 [N, C] (the bits are disjoint, so their integer sum is exact).
  """
  num_seconds = positive_NxTxC.shape[1]
  weight_1xTx1 = jnp.asarray(
      np.left_shift(np.uint32(1), np.arange(num_seconds, dtype=np.uint32))[None, :, None]
  )
  return jnp.sum(jnp.where(positive_NxTxC, weight_1xTx1, jnp.uint32(0)), axis=1, dtype=jnp.uint32)


def _popcount(bits: jax.Array) -> jax.Array:
  """Number of set bits, as float32 (exact: at most 32)."""
  return jax.lax.population_count(bits).astype(jnp.float32)


def _event_masks(bits_NxC: jax.Array, num_seconds: int) -> list[jax.Array]:
  """The events (maximal runs of set bits) of each row, as S = ceil(T / 2) bit masks, earliest first.

  This is the device (bit-parallel) form of `avvp_jax.tasks.llp.events.runs`, which finds the same runs on the host
  in numpy: inside the jitted metrics a row is one word, and its next run is cut off with two integer ops
  (adding the lowest set bit carries through the lowest run and clears it). Empty slots are 0.

  Args:
    bits_NxC: uint32 [N, C] rows (`_row_bits`).
    num_seconds: T, the number of meaningful bits.

  Returns:
    S uint32 [N, C] masks.
  """
  remaining = bits_NxC
  masks = []
  for _ in range((num_seconds + 1) // 2):
    lowest = remaining & (~remaining + jnp.uint32(1))  # the lowest set bit (0 when none is left)
    run = remaining & ~(
        remaining + lowest
    )  # the carry clears exactly the lowest run (mod 2^32 at bit 31)
    masks.append(run)
    remaining = remaining ^ run
  return masks


def _segment_counts(
    pred_NxC: jax.Array, true_NxC: jax.Array, num_seconds: int
) -> tuple[jax.Array, ...]:
  """Second-level TP, FP, FN per clip and class from row bits: float32 [N, C] each."""
  del num_seconds  # the rows hold no bits beyond T
  return (
      _popcount(pred_NxC & true_NxC),
      _popcount(pred_NxC & ~true_NxC),
      _popcount(~pred_NxC & true_NxC),
  )


def _event_counts(
    pred_NxC: jax.Array, true_NxC: jax.Array, num_seconds: int
) -> tuple[jax.Array, ...]:
  """Event-level TP, FP, FN per clip and class from row bits, the official way: float32 [N, C] each.

  A predicted event is a TP when some true event of its row has IoU >= 0.5 with it (decided exactly in
  integers as 2 * intersection >= union, with a non-empty intersection), else an FP; a true event that no
  predicted event matches is an FN. The S x S event pairs are unrolled into elementwise [N, C] operations
  (an [N, C, S, S] intermediate with reductions over its small axes runs ~3x slower on CPU).
  """
  pred_masks = _event_masks(pred_NxC, num_seconds)
  true_masks = _event_masks(true_NxC, num_seconds)
  pred_found = [jnp.zeros(pred_NxC.shape, bool) for _ in pred_masks]
  true_found = [jnp.zeros(true_NxC.shape, bool) for _ in true_masks]
  for i, pred in enumerate(pred_masks):
    for j, true in enumerate(true_masks):
      inter = jax.lax.population_count(pred & true)
      match = (inter > 0) & (
          2 * inter >= jax.lax.population_count(pred | true)
      )  # empty slots never match
      pred_found[i] = pred_found[i] | match
      true_found[j] = true_found[j] | match
  tp = sum(found.astype(jnp.float32) for found in pred_found)
  num_true_found = sum(found.astype(jnp.float32) for found in true_found)
  num_pred = _popcount(pred_NxC & ~(pred_NxC << 1))  # events = rising edges
  num_true = _popcount(true_NxC & ~(true_NxC << 1))
  return tp, num_pred - tp, num_true - num_true_found


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


def _check_labels(pred_audio, pred_visual, true_audio, true_visual) -> None:
  """Shape checks (host, no transfer): four [N, T, C] arrays of one shape with T <= `MAX_SECONDS`."""
  shapes = {
      name: tuple(np.shape(x))
      for name, x in (
          ("pred_audio", pred_audio),
          ("pred_visual", pred_visual),
          ("true_audio", true_audio),
          ("true_visual", true_visual),
      )
  }
  first = shapes["pred_audio"]
  if len(first) != 3 or any(shape != first for shape in shapes.values()):
    raise InputError(
        f"the metrics got label arrays of shapes {shapes}: pass four 0/1 arrays of one "
        "shape [N, T, C] (clips, seconds, classes)."
    )
  if first[1] > MAX_SECONDS:
    raise InputError(
        f"the metrics got clips of {first[1]} seconds: they score at most {MAX_SECONDS} seconds "
        "per clip (LLP clips have 10); split longer videos into clips."
    )


def _modality_bits(pred_audio, pred_visual, true_audio, true_visual):
  """Row bits [N, C] (pred, true) for audio, visual and audio-visual (the AND of both), and T."""
  pa, pv, ta, tv = (
      _row_bits(jnp.asarray(x) != 0) for x in (pred_audio, pred_visual, true_audio, true_visual)
  )
  return {"audio": (pa, ta), "visual": (pv, tv), "audio_visual": (pa & pv, ta & tv)}, np.shape(
      pred_audio
  )[1]


def _all_binary(*arrays) -> jax.Array:
  """Whether every value of every [N, T, C] array is 0 or 1: a bool scalar, on the device.

  It compares the row bits of the nonzero values with those of the ones, the same reduction as the scores'
  `_row_bits`, which XLA computes once for both (a plain `all((x == 0) | (x == 1))` costs twice the time).
  """
  return jnp.all(
      jnp.stack(
          [
              jnp.all(_row_bits(jnp.asarray(x) != 0) == _row_bits(jnp.asarray(x) == 1))
              for x in arrays
          ]
      )
  )


# ----------------------------------------------------------------------------------------------------
# Scores.


@jax.jit
def clip_scores(
    pred_audio: jax.Array, pred_visual: jax.Array, true_audio: jax.Array, true_visual: jax.Array
) -> dict[str, jax.Array]:
  """The official per-clip values (fractions in [0, 1], not percent), one per key of `KEYS`.

  `100 * mean` over clips of each entry is the official number. `*/type` is the mean of the clip's
  audio, visual and audio-visual values (its mean over clips equals the official Type@AV, the mean of
  the three means); `*/event` is the clip's Event@AV, with audio and visual counts pooled per class.
  Jitted; vectorised over clips, classes and events.

  Args:
    pred_audio, pred_visual: [N, T, C] 0/1 predictions (any dtype; nonzero counts as positive), T <= 32.
    true_audio, true_visual: [N, T, C] 0/1 ground truth.

  Returns:
    dict key -> float32 [N].
  """
  _check_labels(pred_audio, pred_visual, true_audio, true_visual)
  bits, num_seconds = _modality_bits(pred_audio, pred_visual, true_audio, true_visual)
  scores = {}
  for level, count_fn in (("segment", _segment_counts), ("event", _event_counts)):
    counts = {m: count_fn(*bits[m], num_seconds) for m in MODALITIES}
    for m in MODALITIES:
      scores[f"{level}/{m}"] = _clip_value(*counts[m])
    scores[f"{level}/type"] = (
        scores[f"{level}/audio"] + scores[f"{level}/visual"] + scores[f"{level}/audio_visual"]
    ) / 3.0
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
  sums = {
      key: _accurate_sum(jnp.where(real_N, values, 0.0), axis=0)
      for key, values in clip_values.items()
  }
  sums["count"] = jnp.sum(real_N, dtype=jnp.float32)
  return sums


@jax.jit
def per_class_counts(
    pred_audio, pred_visual, true_audio, true_visual, mask
) -> dict[str, jax.Array]:
  """Per-class (TP, FP, FN) summed over the real clips, for `f1_from_counts`; jitted, batch by batch.

  Args:
    pred_audio, pred_visual, true_audio, true_visual: [N, T, C] 0/1, T <= 32.
    mask: [N], nonzero for real clips.

  Returns:
    dict with the keys of `PER_CLASS_KEYS` -> float32 [3, C]: TP, FP and FN per class (seconds at segment
    level, events as in the official event-level rule at event level).
  """
  _check_labels(pred_audio, pred_visual, true_audio, true_visual)
  bits, num_seconds = _modality_bits(pred_audio, pred_visual, true_audio, true_visual)
  real_N1 = (jnp.asarray(mask) != 0)[:, None]
  out = {}
  for level, count_fn in (("segment", _segment_counts), ("event", _event_counts)):
    for m in MODALITIES:
      counts = count_fn(*bits[m], num_seconds)
      out[f"{level}/{m}"] = jnp.stack([jnp.sum(jnp.where(real_N1, c, 0.0), axis=0) for c in counts])
  return out


@jax.jit
def _checked_score_sums(
    pred_audio, pred_visual, true_audio, true_visual, mask
) -> dict[str, jax.Array]:
  """`masked_clip_sums(clip_scores(...))` of a whole set and the value check, in one device call."""
  sums = masked_clip_sums(clip_scores(pred_audio, pred_visual, true_audio, true_visual), mask)
  sums["binary"] = _all_binary(pred_audio, pred_visual, true_audio, true_visual)
  return sums


@jax.jit
def _checked_class_counts(
    pred_audio, pred_visual, true_audio, true_visual, mask
) -> dict[str, jax.Array]:
  """`per_class_counts` of a whole set, the value check and the number of real clips, in one device call."""
  counts = per_class_counts(pred_audio, pred_visual, true_audio, true_visual, mask)
  counts["binary"] = _all_binary(pred_audio, pred_visual, true_audio, true_visual)
  counts["count"] = jnp.sum(jnp.asarray(mask) != 0, dtype=jnp.float32)
  return counts


def _host_inputs(pred_audio, pred_visual, true_audio, true_visual, mask):
  """Checks shapes on the host (no transfer); returns the four label arrays and the [N] mask as arrays."""
  _check_labels(pred_audio, pred_visual, true_audio, true_visual)
  arrays = [
      x if isinstance(x, (np.ndarray, jax.Array)) else np.asarray(x)
      for x in (pred_audio, pred_visual, true_audio, true_visual)
  ]
  num_clips = arrays[0].shape[0]
  mask = np.ones((num_clips,), np.float32) if mask is None else mask
  if np.shape(mask) != (num_clips,):
    raise InputError(
        f"mask has shape {np.shape(mask)}, but the labels hold {num_clips} clips: pass a [N] mask "
        "with 1 for real clips and 0 for padding."
    )
  return arrays, mask


def _check_values(fetched: dict[str, Any]) -> None:
  """Raises for the device-side checks of `_checked_*` once their results are on the host."""
  if not bool(fetched.pop("binary")):
    raise InputError(
        "the metrics got predictions or labels with values other than 0 and 1: threshold "
        "probabilities first, e.g. with metrics.segment_predictions."
    )
  if float(fetched["count"]) == 0:
    raise InputError(
        "mask selects no clip: the metrics need at least one real clip (mask value 1)."
    )


def parsing_scores(pred_audio, pred_visual, true_audio, true_visual, mask=None) -> dict[str, float]:
  """The ten official AVVP numbers, in percent, over a whole set of clips.

  One jitted call over all clips computes the scores and checks the values, and one transfer brings back
  scalars; `InputError` is raised for mismatched shapes (before any device work), non-0/1 values or an
  empty mask.

  Args:
    pred_audio, pred_visual: [N, T, C] 0/1 predictions (e.g. from `segment_predictions`), T <= 32.
    true_audio, true_visual: [N, T, C] 0/1 dense ground truth.
    mask: optional [N]; clips where it is 0 (padding) are left out.

  Returns:
    dict with the keys of `KEYS` -> Python float, percent (100 = perfect).
  """
  arrays, mask = _host_inputs(pred_audio, pred_visual, true_audio, true_visual, mask)
  sums = jax.device_get(_checked_score_sums(*arrays, mask))
  _check_values(sums)
  count = float(sums["count"])
  scores = {key: 100.0 * float(sums[key]) / count for key in KEYS}
  for level in LEVELS:  # the official formula: the mean of the three means.
    scores[f"{level}/type"] = sum(scores[f"{level}/{m}"] for m in MODALITIES) / 3.0
  return scores


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


def per_class_f1(
    pred_audio, pred_visual, true_audio, true_visual, mask=None
) -> dict[str, np.ndarray]:
  """Per-class F1 in percent over the whole set, for diagnostics (not an official number).

  For each class, the TP, FP and FN of all real clips are added up first (seconds at segment level,
  events as in the official event-level rule at event level), then F1 = 100 * 2TP / (2TP + FP + FN).
  A class that is neither predicted nor true anywhere in the set gets NaN.

  Args:
    pred_audio, pred_visual, true_audio, true_visual, mask: as in `parsing_scores`.

  Returns:
    dict with the keys of `PER_CLASS_KEYS` (`segment/audio`, ..., `event/audio_visual`) -> float64 [C].
  """
  arrays, mask = _host_inputs(pred_audio, pred_visual, true_audio, true_visual, mask)
  counts = jax.device_get(_checked_class_counts(*arrays, mask))
  _check_values(counts)
  return f1_from_counts(counts)
