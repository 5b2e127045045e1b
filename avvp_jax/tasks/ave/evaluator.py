"""AVE's segment accuracy as an evaluator (`avvp_jax.task.Evaluator`).

The model's `segment_class` output ([B, T] int32, its official decision rule: `decisions`) is compared with the
batch's `segment_label` on the device as masked per-label counts (`metrics.segment_counts`); `scores` gives the
headline `accuracy` (percent of all segments of the split), per-label accuracies and the clip count. Model
selection ranks runs by `accuracy` on val.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax

from avvp_jax import task as task_lib
from avvp_jax.tasks.ave import batch_keys
from avvp_jax.tasks.ave import metrics


class SegmentAccuracyEvaluator(task_lib.Evaluator):
  """`accuracy` (percent of segments), `per_class` {label: accuracy}, `num_segments`, `num_clips`."""

  keys = ("accuracy",)
  # A model's `segment_class` is its official rule's decision: the mean of several replicas' decisions is no
  # class, so a multi-seed run reports mean, std and per seed, no seed ensemble (which would need each rule
  # applied to averaged scores).
  ensemble = False

  def batch_sums(
      self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]
  ) -> dict[str, Any]:
    sums = metrics.segment_counts(
        outputs[batch_keys.SEGMENT_CLASS], batch[batch_keys.SEGMENT_LABEL], batch[batch_keys.MASK]
    )
    sums["clips"] = jax.numpy.sum(batch[batch_keys.MASK])
    return sums

  def scores(self, totals: Mapping[str, Any]) -> dict[str, Any]:
    num_clips = int(totals["clips"])
    if num_clips == 0:
      raise RuntimeError("evaluation saw no clips")
    return {
        "accuracy": metrics.accuracy(totals),
        "per_class": {"accuracy": metrics.per_class_accuracy(totals)},
        "num_segments": int(sum(totals["count"])),
        "num_clips": num_clips,
    }
