"""Events in seconds from a model's probabilities: thresholds, runs of positive seconds, event dicts.

Everything here reads the model's own output names (`avvp_jax.models`): `segment_audio_prob`,
`segment_visual_prob` `[N, T, C]`, `audio_filter_prob`, `visual_filter_prob`, `video_prob`, `audio_prob`,
`visual_prob` `[N, C]`, as `avvp_jax.inference.predict` returns them.

Events are built exactly as the official evaluation (`avvp_jax.tasks.llp.metrics.segment_predictions`) does:
  * a second is positive for a class and modality when its segment probability is >= `threshold` and the
    clip's gate probability (`audio_filter_prob` / `visual_filter_prob`) is >= `gate_threshold` (both 0.5 by
    default, the official values; either can be one number, `[C]` numbers, or a {class name: value} mapping
    whose unnamed classes keep 0.5);
  * an event is a maximal run of consecutive positive seconds of one class (`runs`): `onset` is its first
    second, `offset` the end of its last one (exclusive, so an event reaching the clip's end has offset
    T = 10);
  * audio-visual events are the runs where the audio AND the visual predictions are positive.
Each event is `{"modality": "audio" | "visual" | "audio_visual", "label": class name, "onset":
seconds, "offset": seconds, "score": float}`. `score` is the mean, over the event's seconds, of the
segment probability of its modality; for an audio-visual event the per-second probability is the
smaller of the audio and the visual one (both must hold for the event to exist), so its score is the
mean of those minima. `video_labels` lists a clip's classes by their whole-video score
(`VIDEO_SCORE` says what it is: not a probability, MMIL's lies in [0, 2)). A clip's events are
ordered by onset, then modality (audio, visual, audio_visual), then class. Event detection is
vectorised over clips, classes and seconds (numpy); only the output dicts are built one by one.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from avvp_jax.tasks.llp import metrics
from avvp_jax.tasks.llp import annotations
from avvp_jax.errors import InputError

Event = dict[str, Any]

# What `video_labels(...)[n][k]["score"]` (the events JSON's `video_labels[].score`) is.
VIDEO_SCORE = """`score` is the model's `video_prob`: the whole-video score that the official
evaluation thresholds (at 0.5) to gate the segment predictions, not a calibrated probability. With
the MMIL decoder (HAN, MM-Pyramid, LINK) it is the official attentive pooling
(YapengTian/AVVP-ECCV20 `MMIL_Net`, global_prob) sum over seconds t and modalities m of Wt[t, m] *
Wm[t, m] * P[t, m], with P the segment sigmoids, Wt the temporal attention (a softmax over the
seconds, per modality) and Wm the modality attention (a softmax over audio and visual, per second):
its weights add up to between 0 and 2, not to 1, so the score lies in [0, 2) and passes 1 when the
two modalities attend to different seconds. With the LEAP decoder it is 0 or 1 (the union of the
thresholded audio and visual probabilities, the official global_prob). `audio` and `visual` are the
modality-level probabilities `audio_prob` / `visual_prob`, attention-weighted means of segment
sigmoids, in [0, 1]."""

SECONDS_PER_SEGMENT = 1.0  # LLP segments are one second long


# --- thresholds -----------------------------------------------------------------------------------


def class_thresholds(
    threshold: float | Sequence[float] | Mapping[str, float] | None, name: str = "threshold"
) -> np.ndarray:
  """`[C]` float32 thresholds from one number, `[C]` numbers, or {class name: value} (others 0.5).

  Args:
    threshold: one number, `[C]` numbers, a {class name: value} mapping, or None (0.5).
    name: the argument's name in error messages.

  Returns:
    `[C]` float32 thresholds in [0, 1].

  Raises:
    InputError: on unknown class names, a wrong number of values, or values outside [0, 1].
  """
  if threshold is None:
    threshold = metrics.OFFICIAL_THRESHOLD
  if isinstance(threshold, Mapping):
    values = np.full(annotations.NUM_CLASSES, metrics.OFFICIAL_THRESHOLD, np.float64)
    unknown = [label for label in threshold if label not in annotations.CLASS_INDEX]
    if unknown:
      raise InputError(
          f"{name} names unknown classes {unknown}: use LLP class names such as "
          f"{', '.join(annotations.CLASSES[:3])} (see avvp_jax.tasks.llp.annotations.CLASSES)."
      )
    for label, value in threshold.items():
      values[annotations.CLASS_INDEX[label]] = value
  else:
    try:
      values = np.broadcast_to(np.asarray(threshold, np.float64), (annotations.NUM_CLASSES,))
    except (TypeError, ValueError):
      raise InputError(
          f"{name} {threshold!r} is neither one number nor {annotations.NUM_CLASSES} numbers (one "
          "per class): pass e.g. 0.5, a [25] array or {'Speech': 0.4}."
      ) from None
  if not (np.all(np.isfinite(values)) and np.all((values >= 0.0) & (values <= 1.0))):
    shown = dict(threshold) if isinstance(threshold, Mapping) else np.asarray(threshold).tolist()
    raise InputError(f"{name} must lie in [0, 1] (got {shown}): pass probabilities.")
  return values.astype(np.float32)


def segment_predictions(
    probs: Mapping[str, Any],
    threshold: Any = metrics.OFFICIAL_THRESHOLD,
    gate_threshold: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
  """0/1 second-level predictions from a model's probabilities.

  The rule of `metrics.segment_predictions` (`metrics.gate`), what evaluation scores at the default 0.5;
  per-class values apply it per class.

  Args:
    probs: `segment_audio_prob`, `segment_visual_prob` `[N, T, C]` and `audio_filter_prob`,
      `visual_filter_prob` `[N, C]` (other keys are ignored).
    threshold: segment threshold: one number, `[C]` numbers, or {class name: value} (others 0.5).
    gate_threshold: video-level gate threshold, same forms; None: the same as `threshold` (the official rule
      uses one value for both).

  Returns:
    (pred_audio, pred_visual): bool `[N, T, C]`.
  """
  segment_t = class_thresholds(threshold, "threshold")
  gate_t = (
      segment_t if gate_threshold is None else class_thresholds(gate_threshold, "gate_threshold")
  )
  arrays = [
      np.asarray(probs[key], np.float32)
      for key in (
          "segment_audio_prob",
          "segment_visual_prob",
          "audio_filter_prob",
          "visual_filter_prob",
      )
  ]
  pred_audio, pred_visual = metrics.segment_predictions(
      *arrays, threshold=segment_t, gate_threshold=gate_t
  )
  return np.asarray(pred_audio) > 0, np.asarray(pred_visual) > 0


# --- runs and events ------------------------------------------------------------------------------


def runs(positive_NxTxC: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Maximal runs of positive seconds of every clip and class.

  Args:
    positive_NxTxC: `[N, T, C]` 0/1 or bool (nonzero: positive).

  Returns:
    (clip, cls, start, end): int arrays `[R]`, one entry per run, `end` exclusive, in row-major
    (clip, class, start) order.
  """
  x_NxCxT = np.asarray(positive_NxTxC, bool).transpose(0, 2, 1).astype(np.int8)
  edges = np.diff(
      np.pad(x_NxCxT, ((0, 0), (0, 0), (1, 1))), axis=-1
  )  # [N, C, T + 1]: +1 rise, -1 fall
  clip, cls, start = np.nonzero(edges == 1)
  end = np.nonzero(edges == -1)[
      2
  ]  # same (clip, class) order, so the k-th fall closes the k-th rise
  return clip, cls, start, end


def _run_means(prob_NxTxC: np.ndarray, clip, cls, start, end) -> np.ndarray:
  """Mean of `prob` over each run's seconds, from cumulative sums (float64)."""
  cumulative = np.concatenate(
      [
          np.zeros_like(prob_NxTxC[:, :1], np.float64),
          np.cumsum(prob_NxTxC, axis=1, dtype=np.float64),
      ],
      axis=1,
  )  # [N, T + 1, C]
  return (cumulative[clip, end, cls] - cumulative[clip, start, cls]) / (end - start)


def extract_events(
    pred_audio: Any,
    pred_visual: Any,
    segment_audio_prob: Any = None,
    segment_visual_prob: Any = None,
) -> list[list[Event]]:
  """Events of every clip from 0/1 predictions (the official event rule; see the module docstring).

  Args:
    pred_audio, pred_visual: `[N, T, C]` 0/1 (or bool) second-level predictions.
    segment_audio_prob, segment_visual_prob: `[N, T, C]` probabilities for the scores; None: the 0/1
      values themselves (score 1.0, e.g. for ground truth).

  Returns:
    N lists of event dicts, ordered by onset, modality, class.
  """
  pred_audio = np.asarray(pred_audio) > 0
  pred_visual = np.asarray(pred_visual) > 0
  if pred_audio.ndim != 3 or pred_audio.shape != pred_visual.shape:
    raise InputError(
        f"pred_audio {pred_audio.shape} and pred_visual {pred_visual.shape} must both be [N, T, C]."
    )
  prob_audio = (
      pred_audio.astype(np.float32)
      if segment_audio_prob is None
      else np.asarray(segment_audio_prob)
  )
  prob_visual = (
      pred_visual.astype(np.float32)
      if segment_visual_prob is None
      else np.asarray(segment_visual_prob)
  )
  streams = (
      (pred_audio, prob_audio),
      (pred_visual, prob_visual),
      (pred_audio & pred_visual, np.minimum(prob_audio, prob_visual)),
  )
  parts = []
  for modality, (positive, prob) in enumerate(streams):
    clip, cls, start, end = runs(positive)
    parts.append(
        (
            clip,
            cls,
            start,
            end,
            np.full_like(clip, modality),
            _run_means(prob, clip, cls, start, end),
        )
    )
  clip, cls, start, end, modality, score = (np.concatenate(column) for column in zip(*parts))
  order = np.lexsort((cls, modality, start, clip))  # by clip, then onset, modality, class
  events: list[list[Event]] = [[] for _ in range(pred_audio.shape[0])]
  for i in order:
    events[clip[i]].append(
        {
            "modality": metrics.MODALITIES[modality[i]],
            "label": annotations.CLASSES[cls[i]]
            if pred_audio.shape[2] == annotations.NUM_CLASSES
            else int(cls[i]),
            "onset": float(start[i]) * SECONDS_PER_SEGMENT,
            "offset": float(end[i]) * SECONDS_PER_SEGMENT,
            "score": float(score[i]),
        }
    )
  return events


def events_from_probabilities(
    probs: Mapping[str, Any],
    threshold: Any = metrics.OFFICIAL_THRESHOLD,
    gate_threshold: Any = None,
) -> list[list[Event]]:
  """Events of every clip of a batch of probabilities (each `[N, ...]`; see `segment_predictions`).

  Args:
    probs: `segment_audio_prob`, `segment_visual_prob` `[N, T, C]`, `audio_filter_prob`, `visual_filter_prob`
      `[N, C]`.
    threshold, gate_threshold: as in `segment_predictions`.

  Returns:
    N lists of event dicts (see `extract_events`).
  """
  pred_audio, pred_visual = segment_predictions(probs, threshold, gate_threshold)
  return extract_events(
      pred_audio, pred_visual, probs["segment_audio_prob"], probs["segment_visual_prob"]
  )


def video_labels(
    probs: Mapping[str, Any], threshold: Any = metrics.OFFICIAL_THRESHOLD
) -> list[list[dict[str, Any]]]:
  """Per clip, the classes whose whole-video score `video_prob` is >= `threshold`, best first.

  Args:
    probs: `video_prob`, `audio_prob`, `visual_prob` `[N, C]`.
    threshold: one number, `[C]` numbers, or {class name: value} (others 0.5).

  Returns:
    N lists of {"label", "score": `video_prob`, "audio": `audio_prob`, "visual": `visual_prob`}.
    `score` is not a probability: with the MMIL decoder it lies in [0, 2), with LEAP's it is 0 or 1;
    `audio` and `visual` lie in [0, 1] (see `VIDEO_SCORE`).
  """
  video = np.asarray(probs["video_prob"], np.float32)
  keep = video >= class_thresholds(threshold, "threshold")
  out: list[list[dict[str, Any]]] = [[] for _ in range(video.shape[0])]
  clip, cls = np.nonzero(keep)
  order = np.lexsort((cls, -video[clip, cls], clip))
  audio, visual = np.asarray(probs["audio_prob"]), np.asarray(probs["visual_prob"])
  for i in order:
    n, c = clip[i], cls[i]
    out[n].append(
        {
            "label": annotations.CLASSES[c],
            "score": float(video[n, c]),
            "audio": float(audio[n, c]),
            "visual": float(visual[n, c]),
        }
    )
  return out
