"""CVCM's per-step training batch: the warm-up flag and the cross-video pairs (GenjiB/CM-Co-Occurrence-AVVP
`main_trans.py:train`, `sample_mixing_neg`, run with --augment 1).

Every step the official code draws, for each clip i of the batch, a partner j != i uniformly among the batch's
other clips, and runs the model on 2B clips: the batch, then each clip's audio with its partner's visual
streams (ResNet frames and R(2+1)D motion; `audio[sample_idx]` with `sample_idx = arange(B)` is the clip's
own audio). The losses' BCEs read the first B outputs, the cross-video contrastive term all 2B
(avvp_jax/tasks/llp/losses.py, "cvcm"). As that term reads only the pair rows' encoded segments and MMIL
temporal-attention logits, the task's guidance for such a batch has the decoder score the B clips alone
(`scored_rows`, avvp_jax/models/mmil.py): the class-token head runs on B rows, not 2B (bench/bench_cvcm.py). Its epoch-dependent parts (the label smoothing and the contrastive
term switched on after `--init_epoch`) need the epoch, which the loss reads as a flag the step sets here.

`make_mixer(loss_config, steps_per_epoch)` gives `mix(params, batch, rng, step) -> batch`, the task's
per-step relabelling hook (`Task.label_denoiser`), pure and jittable with static shapes:
  * `losses.CVCM_WARM_UP`: float32 scalar, 1 while the 1-based epoch `step // steps_per_epoch + 1` is at most
    `cvcm_warm_up_epochs` (official `epoch > args.init_epoch` is the end of the warm-up);
  * with `cvcm_mix` (official --augment 1): `losses.CVCM_PARTNER` [B] int32 and the feature streams doubled
    to [2B, ...] as above. Partners are drawn among the real clips (`mask` 1): padding is no partner, and a
    batch of one real clip pairs it with itself (the official loop would never end).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

from avvp_jax.errors import InputError
from avvp_jax.tasks.llp import batch_keys
from avvp_jax.tasks.llp import losses

VISUAL_KEYS = (batch_keys.FRAMES, batch_keys.MOTION)  # the streams the partner lends


def draw_partners(rng: jax.Array, mask: jax.Array) -> jax.Array:
  """`[B]` int32: for each clip a partner drawn uniformly among the other real clips (`mask` [B] > 0).

  A clip with no other real clip in the batch (and every padding clip without one) is its own partner.
  """
  num = mask.shape[0]
  candidate_BxB = (mask[None, :] > 0) & ~jnp.eye(num, dtype=bool)
  scores_BxB = jnp.where(candidate_BxB, jax.random.uniform(rng, (num, num)), -1.0)
  partner = jnp.argmax(scores_BxB, axis=1)
  return jnp.where(candidate_BxB.any(axis=1), partner, jnp.arange(num)).astype(jnp.int32)


def make_mixer(
    loss_config: Any, steps_per_epoch: int
) -> Callable[[Any, Mapping[str, Any], jax.Array, jax.Array], dict[str, Any]]:
  """CVCM's per-step batch (module docstring): `mix(params, batch, rng, step) -> batch`."""
  if steps_per_epoch < 1:
    raise InputError(
        "config.loss.name='cvcm' needs the run's steps per epoch (make_train_step's argument) for its "
        "warm-up epochs."
    )
  warm_up_epochs = int(loss_config.cvcm_warm_up_epochs)
  mixing = bool(loss_config.cvcm_mix)

  def mix(params: Any, batch: Mapping[str, Any], rng: jax.Array, step: jax.Array):
    del params  # the pairs depend on the batch and the key only
    out = dict(batch)
    epoch = step // steps_per_epoch + 1
    out[losses.CVCM_WARM_UP] = (epoch <= warm_up_epochs).astype(jnp.float32)
    if not mixing:
      return out
    label = batch[batch_keys.LABEL]
    mask = batch.get(batch_keys.MASK, jnp.ones(label.shape[0], jnp.float32))
    partner = draw_partners(rng, mask)
    out[losses.CVCM_PARTNER] = partner
    for key in batch_keys.FEATURE_KEYS:
      if batch.get(key) is None:
        continue
      features = batch[key]
      lent = features[partner] if key in VISUAL_KEYS else features
      out[key] = jnp.concatenate([features, lent], axis=0)
    return out

  return mix
