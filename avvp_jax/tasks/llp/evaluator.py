"""The official LLP scores as an evaluator: segment- and event-level F1 of audio, visual and audio-visual events.

`batch_sums` thresholds a model's probabilities the official way (`metrics.segment_predictions`), scores every
clip (`metrics.clip_scores`) and reduces the clips to masked sums (`metrics.masked_clip_sums`) and per-class
counts (`metrics.per_class_counts`), jittable, on the device; `scores` turns the split's float64 sums into the
10 official numbers (percent: 100 * sum / count, the Type@AV scores as the official mean of the three means)
and per-class F1s (a diagnostic, from the pooled counts).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np

from avvp_jax.tasks.llp import metrics as metrics_lib
from avvp_jax import task as task_lib
from avvp_jax.tasks.llp import batch_keys


class ParsingEvaluator(task_lib.Evaluator):
  """The 10 LLP parsing scores (`metrics.KEYS`), per-class F1s and the clip count."""

  keys = metrics_lib.KEYS

  def batch_sums(
      self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]
  ) -> dict[str, Any]:
    """Masked metric sums and per-class counts of one model's outputs on a batch."""
    pred_audio, pred_visual = metrics_lib.segment_predictions(
        outputs["segment_audio_prob"],
        outputs["segment_visual_prob"],
        outputs["audio_filter_prob"],
        outputs["visual_filter_prob"],
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
