"""The official LLP scores as an evaluator: segment- and event-level F1 of audio, visual and audio-visual events.

`batch_sums` thresholds a model's probabilities the official way (`metrics.segment_predictions`), scores every
clip (`metrics.clip_scores`) and reduces the clips to masked sums (`metrics.masked_clip_sums`) and per-class
counts (`metrics.per_class_counts`), jittable, on the device; `scores` turns the split's float64 sums into the
10 official numbers (percent: 100 * sum / count, the Type@AV scores as the official mean of the three means)
and per-class F1s (a diagnostic, from the pooled counts).
"""

from __future__ import annotations

import pathlib
from typing import Any, Mapping

import jax
import numpy as np

from avvp_jax.errors import InputError
from avvp_jax.tasks.llp import metrics as metrics_lib
from avvp_jax import task as task_lib
from avvp_jax.tasks.llp import batch_keys


class ParsingEvaluator(task_lib.Evaluator):
  """The 10 LLP parsing scores (`metrics.KEYS`), per-class F1s and the clip count.

  `thresholds` ({"audio": [C], "visual": [C]} segment-probability cuts, `load_thresholds`) replace the official
  0.5 of the segment probabilities, per modality and class (UWAV's teacher evaluation, VALOR's per-class
  thresholds); the video-level gate stays at 0.5. Which video-level probabilities gate (whole-video, official,
  or each modality's) is the decoder's `filter` (`config.model.mmil.filter`, `config.model.leap.filter`).
  `settings` names both, and the selection rule, in the reports (`llp.task.LLPTask.make_evaluator`).
  """

  keys = metrics_lib.KEYS

  def __init__(
      self,
      meta: task_lib.Meta,
      thresholds: Mapping[str, np.ndarray] | None = None,
      settings: Mapping[str, Any] | None = None,
  ):
    super().__init__(meta)
    self.thresholds = (
        None
        if thresholds is None
        else {m: np.asarray(thresholds[m], np.float32) for m in ("audio", "visual")}
    )
    self.settings = dict(settings or {})

  def batch_sums(
      self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]
  ) -> dict[str, Any]:
    """Masked metric sums and per-class counts of one model's outputs on a batch."""
    if self.thresholds is None:
      pred_audio, pred_visual = metrics_lib.segment_predictions(
          outputs["segment_audio_prob"],
          outputs["segment_visual_prob"],
          outputs["audio_filter_prob"],
          outputs["visual_filter_prob"],
      )
    else:  # per modality and class segment cuts; the official 0.5 video-level gate
      pred_audio, pred_visual = (
          metrics_lib.gate(
              outputs[f"segment_{m}_prob"],
              outputs[f"{m}_filter_prob"],
              self.thresholds[m],
              metrics_lib.OFFICIAL_THRESHOLD,
          ).astype(jax.numpy.float32)
          for m in ("audio", "visual")
      )
    true = (batch[batch_keys.AUDIO_LABEL], batch[batch_keys.VISUAL_LABEL])
    scores = metrics_lib.clip_scores(pred_audio, pred_visual, *true)
    return {
        "sums": metrics_lib.masked_clip_sums(scores, batch[batch_keys.MASK]),
        "class_counts": metrics_lib.per_class_counts(
            pred_audio, pred_visual, *true, batch[batch_keys.MASK]
        ),
    }

  def scores(self, totals: Mapping[str, Any]) -> dict[str, Any]:
    """The 10 metrics (percent), per-class F1s and the clip count from split-wide float64 sums."""
    sums, class_counts = totals["sums"], totals["class_counts"]
    count = float(sums["count"])
    if count == 0:
      raise RuntimeError("evaluation saw no clips")
    scores: dict[str, Any] = {key: 100.0 * float(sums[key]) / count for key in metrics_lib.KEYS}
    for level in metrics_lib.LEVELS:  # the official formula: the mean of the three means
      scores[f"{level}/type"] = sum(scores[f"{level}/{m}"] for m in metrics_lib.MODALITIES) / 3.0
    scores["num_clips"] = int(count)
    per_class = metrics_lib.f1_from_counts(class_counts)
    scores["per_class"] = {
        key: {
            name: float(value)
            for name, value in zip(self.meta.class_names, values)
            if np.isfinite(value)
        }
        for key, values in per_class.items()
    }
    return scores


def load_thresholds(path: str, num_classes: int) -> dict[str, np.ndarray]:
  """Per-class segment-probability thresholds {"audio": [C], "visual": [C]} float32 from `path`:

    * a folder with UWAV's `a_classwise_threhsolds.npy` and `v_classwise_threhsolds.npy` (logit thresholds,
      e.g. the `UWAV/` folder launch/make_pseudo_labels.py --uwav writes): p = sigmoid(theta), -inf -> 0 (every
      second passes; UWAV's `logit > theta`, with probabilities >= p, differs only at exact ties);
    * a .npz with `audio` and `visual` arrays of [C] probabilities in [0, 1].

  Raises:
    InputError: one line naming the file: missing, unreadable, of the wrong length, or out of range.
  """
  root = pathlib.Path(path).expanduser()
  names = {"audio": "a_classwise_threhsolds.npy", "visual": "v_classwise_threhsolds.npy"}
  out = {}
  try:
    if root.is_dir():
      for m, name in names.items():
        file = root / name
        if not file.is_file():
          raise InputError(
              f"config.eval_thresholds: {str(file)!r} is missing (a folder holds UWAV's a_/v_classwise_threhsolds.npy)."
          )
        logits = np.load(file, allow_pickle=False).astype(np.float64)
        if logits.shape != (num_classes,) or np.isnan(logits).any():
          raise InputError(
              f"config.eval_thresholds: {str(file)!r} holds {logits.shape} values (NaN?), expected {num_classes} logits."
          )
        out[m] = np.where(np.isneginf(logits), 0.0, 1.0 / (1.0 + np.exp(-logits))).astype(
            np.float32
        )
    elif root.suffix == ".npz" and root.is_file():
      with np.load(root, allow_pickle=False) as npz:
        for m in names:
          if m not in npz:
            raise InputError(f"config.eval_thresholds: {str(root)!r} has no {m!r} array.")
          out[m] = np.asarray(npz[m], np.float32)
          if out[m].shape != (num_classes,) or not ((out[m] >= 0) & (out[m] <= 1)).all():
            raise InputError(
                f"config.eval_thresholds: {str(root)!r} {m!r} holds {out[m].shape} values, expected "
                f"{num_classes} probabilities in [0, 1]."
            )
    else:
      raise InputError(
          f"config.eval_thresholds {str(root)!r} is neither a folder of UWAV's threshold files nor a .npz file."
      )
  except InputError:
    raise  # already one line naming the file
  except (OSError, ValueError) as error:
    raise InputError(f"config.eval_thresholds {str(root)!r} could not be read ({error}).") from None
  return out
