"""AVE's cross-modality localization score (A2V / V2A), as `cmm_test.py` of YapengTian/AVE-ECCV18 computes it.

For a clip whose event covers the l segments seg[0] < ... < seg[l-1] (its `event_mask`), with D[i, j] the
matcher's distance of visual segment i and audio segment j (`cross_distance`, models/cmm.py):

  A2V ("given audio clip": find the event's audio in the visual track)
      score[n] = sum_{i<l} D[n + i, seg[i]],   n = 0 .. 10 - l
  V2A ("given video clip": find the event's visual segments in the audio track)
      score[n] = sum_{i<l} D[seg[i], n + i],   n = 0 .. 10 - l

The prediction is the window start argmin_n score[n] (the first on ties, as numpy's argmin), and a clip counts
as right when it equals seg[0]: an exact-start accuracy. The official code skips clips whose event fills all
10 segments (one window, always right); a clip with no event segment (row 26 of Annotations.txt, in the match
split's val) would crash it, and is skipped here too. The score is 100 * right / scored clips. The official
print shows `video_count, audio_count`, i.e. V2A first, then A2V (`audio_count` is the "given audio clip" count).

On the device a batch becomes masked sums: `a2v` and `v2a` (clips right), `scored` (clips with 0 < l < 10),
`clips` (all real clips). The evaluator reports `a2v`, `v2a` and their `mean` (what ranks epochs).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from avvp_jax import task as task_lib
from avvp_jax.tasks.ave import batch_keys

CROSS_DISTANCE = (
    "cross_distance"  # the model output read: [B, T, T], visual segment i against audio segment j
)


def window_scores(distance_BxTxT: jax.Array, event_mask_BxT: jax.Array) -> jax.Array:
  """score[b, n] = sum over the clip's event segments j (rank r_j among them) of distance[b, n + r_j, j]:
  the A2V window scores of `cmm_test.py` (V2A: pass the distance transposed); +inf where the window does not
  fit (n > T - l). Shapes: [B, T, T], [B, T] -> [B, T]."""
  t = distance_BxTxT.shape[-1]
  event_BxT = event_mask_BxT > 0.5
  rank_BxT = jnp.cumsum(event_BxT.astype(jnp.int32), axis=-1) - 1
  length_B = jnp.sum(event_BxT.astype(jnp.int32), axis=-1)
  start_N = jnp.arange(t)
  row_BxNxT = jnp.clip(start_N[None, :, None] + rank_BxT[:, None, :], 0, t - 1)
  picked_BxNxT = jnp.take_along_axis(distance_BxTxT.astype(jnp.float32), row_BxNxT, axis=1)
  score_BxN = jnp.sum(jnp.where(event_BxT[:, None, :], picked_BxNxT, 0.0), axis=-1)
  fits_BxN = start_N[None, :] <= (t - length_B)[:, None]
  return jnp.where(fits_BxN, score_BxN, jnp.inf)


def start_hits(
    distance_BxTxT: jax.Array, event_mask_BxT: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(a2v_right [B], v2a_right [B], scored [B]) as bool: whether each direction's best window starts at the
  first event segment, and whether the clip is scored (0 < l < T)."""
  t = event_mask_BxT.shape[-1]
  event_BxT = event_mask_BxT > 0.5
  length_B = jnp.sum(event_BxT.astype(jnp.int32), axis=-1)
  first_B = jnp.argmax(event_BxT, axis=-1)
  a2v_B = jnp.argmin(window_scores(distance_BxTxT, event_mask_BxT), axis=-1) == first_B
  v2a_B = (
      jnp.argmin(window_scores(jnp.swapaxes(distance_BxTxT, 1, 2), event_mask_BxT), axis=-1)
      == first_B
  )
  return a2v_B, v2a_B, (length_B > 0) & (length_B < t)


class CrossModalEvaluator(task_lib.Evaluator):
  """`a2v`, `v2a` (percent of scored clips whose event start is found), their `mean`, `num_scored`,
  `num_clips`."""

  keys = ("mean", "a2v", "v2a")
  # Distances averaged over replicas are still distances: the seed ensemble is a matcher to score.
  ensemble = True

  def batch_sums(
      self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]
  ) -> dict[str, Any]:
    a2v_B, v2a_B, scored_B = start_hits(outputs[CROSS_DISTANCE], batch[batch_keys.EVENT_MASK])
    real_B = batch[batch_keys.MASK].astype(jnp.float32)
    counted_B = real_B * scored_B.astype(jnp.float32)
    return {
        "a2v": jnp.sum(counted_B * a2v_B.astype(jnp.float32)),
        "v2a": jnp.sum(counted_B * v2a_B.astype(jnp.float32)),
        "scored": jnp.sum(counted_B),
        "clips": jnp.sum(real_B),
    }

  def scores(self, totals: Mapping[str, Any]) -> dict[str, Any]:
    num_clips, scored = int(totals["clips"]), int(totals["scored"])
    if num_clips == 0:
      raise RuntimeError("evaluation saw no clips")
    if scored == 0:
      raise RuntimeError(
          "no clip of the split has an event of 1 to 9 segments: cross-modal localization scores none"
      )
    a2v = 100.0 * float(totals["a2v"]) / scored
    v2a = 100.0 * float(totals["v2a"]) / scored
    return {
        "mean": (a2v + v2a) / 2.0,
        "a2v": a2v,
        "v2a": v2a,
        "num_scored": scored,
        "num_clips": num_clips,
    }
