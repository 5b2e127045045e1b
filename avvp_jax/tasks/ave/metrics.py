"""AVE's score: segment accuracy over every segment of a split, background counted as a class.

The official codes (AVE-ECCV18 `compute_acc`, PSP `compute_acc`, CMBS `compute_accuracy_*`) compare each
segment's predicted label with the argmax of its one-hot label and report right segments / all segments
(402 x 10 = 4,020 on the test split). Here a batch is reduced to per-class counts on the device, so padding
counts for nothing and the split's accuracy is exact whatever the batch size:

  right [29]  segments of each true label predicted right (masked)
  count [29]  segments of each true label (masked)

accuracy = 100 * sum(right) / sum(count); per-class accuracy = 100 * right / count (the share of a label's
segments predicted right; background is label 28).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from avvp_jax.tasks.ave import annotations


def segment_counts(
    segment_class: jax.Array, segment_label: jax.Array, mask: jax.Array
) -> dict[str, jax.Array]:
  """Per-label right and total segment counts of a batch (jittable).

  Args:
    segment_class: [B, T] predicted labels (0-28), a rule of `decisions`: int32, or the float32 the trainer's
      `apply_model` makes of every output (exact for these small integers).
    segment_label: [B, T, 29] one-hot labels (the true label is its argmax, as in the official codes).
    mask: [B] 1 on real clips, 0 on padding.

  Returns:
    {"right": [29] float32, "count": [29] float32}.
  """
  true = jnp.argmax(segment_label, axis=-1)
  one_hot = jax.nn.one_hot(true, annotations.NUM_LABELS, dtype=jnp.float32)  # [B, T, 29]
  weight = one_hot * mask.astype(jnp.float32)[:, None, None]
  right = (segment_class.astype(jnp.int32) == true).astype(jnp.float32)[..., None]
  return {"right": jnp.sum(weight * right, axis=(0, 1)), "count": jnp.sum(weight, axis=(0, 1))}


def accuracy(totals) -> float:
  """Percent of all segments predicted right, from `segment_counts` summed over a split."""
  count = float(np.sum(totals["count"]))
  if count == 0:
    raise RuntimeError("the accuracy saw no segments")
  return 100.0 * float(np.sum(totals["right"])) / count


def per_class_accuracy(totals) -> dict[str, float]:
  """{label name: percent of its segments predicted right} for the labels with segments in the split."""
  right, count = np.asarray(totals["right"], np.float64), np.asarray(totals["count"], np.float64)
  return {
      name: 100.0 * float(right[i] / count[i])
      for i, name in enumerate(annotations.LABEL_NAMES)
      if count[i] > 0
  }
