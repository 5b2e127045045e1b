"""AVE-ECCV18's cross-modal matching loss: the contrastive loss of `cmm_train.py` (Hadsell et al. 2006).

  loss = mean over pairs of  y d^2 + (1 - y) max(margin - d, 0)^2,   margin = config.loss.cmm_margin (2.0)

with d the matcher's `pair_distance` [B, T] (a segment's visual embedding against its own audio embedding,
models/cmm.py) and y = `event_mask` [B, T]: 1 where the segment is part of the event (the pair matches), 0 on
background. These are the official pairs: `cmm_train.py` builds one (visual, audio) pair per segment of each
training clip with its `labels_closs.h5` entry as the label, and draws no negatives (the background segments
are the negatives). `cmm_test.py` codes margin 1.0 but never trains; training's margin is 2.0.

The official mean runs over Keras batches of 8 pairs shuffled across clips; here a batch holds whole clips, so
the mean runs over the B x 10 pairs of the batch's real clips (`batch["mask"]`): the same mean when every clip
is real.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from avvp_jax.tasks.ave.losses import ave as ave_losses

Array = jax.Array
DEFAULT_MARGIN = 2.0  # cmm_train.py


def contrastive(distance: Array, same: Array, margin: float = DEFAULT_MARGIN) -> Array:
  """Per pair: `same * d^2 + (1 - same) * max(margin - d, 0)^2` (shape of `distance`)."""
  distance, same = distance.astype(jnp.float32), same.astype(jnp.float32)
  return same * jnp.square(distance) + (1.0 - same) * jnp.square(
      jnp.maximum(margin - distance, 0.0)
  )


def compute_loss(
    loss_config: Any, outputs: Mapping[str, Array], batch: Mapping[str, Array]
) -> tuple[Array, dict[str, Array]]:
  """The task's entry (`config.loss.name = "cmm"`): the contrastive loss of the batch's segment pairs."""
  margin = float(loss_config.get("cmm_margin", DEFAULT_MARGIN))
  per_pair_BxT = contrastive(outputs["pair_distance"], batch["event_mask"], margin)
  value = ave_losses.masked_mean(per_pair_BxT.mean(axis=1), batch)
  return value, {"contrastive": value}
