"""AVE-ECCV18's loss: `nn.MultiLabelSoftMarginLoss` on the models' softmax outputs (avvp_jax.models.ave).

  loss(outputs, batch, supervision="full") -> (scalar, {"multilabel_soft_margin": scalar})

  full (supervised_main.py):       MLSM(outputs["segment_prob"] [B, T, 29], batch["segment_label"] [B, T, 29])
  weak (weak_supervised_main.py):  MLSM(outputs["video_prob"] [B, 29], batch["video_label"] [B, 29])

MLSM(x, y) = -mean_c [y_c log sigmoid(x_c) + (1 - y_c) log sigmoid(-x_c)], averaged over the rows (every
segment of the batch, or every clip). As in the official code the inputs are softmax probabilities, which MLSM
then treats as logits (sigmoid of a value in [0, 1]): a quirk a faithful port keeps, since it shapes the
gradients the official weights were trained with. Rows of padded clips (`batch["mask"]` [B] 0) do not count:
the mean runs over the real clips, and equals the official mean when every clip is real.

The official recipes (read from the mains): Adam, lr 1e-3, batch 64, `StepLR(step_size=15000, gamma=0.1)`
stepped once per iteration (before `optimizer.step()`), no weight decay, no gradient clipping, the training
order of `train_order.h5` unshuffled (the batches are the same every epoch; `nb_batch = 3339 // 64 = 52`, the
last 11 clips never seen). Supervised: 300 epochs (15,600 iterations: lr 1e-4 for about the last 600),
validation accuracy every 5 epochs, the best kept. Weak: 250 epochs by default (`3517 // 64 = 54` batches,
13,500 iterations: the StepLR never fires), on train_order's 3339 clips followed by the 178 background-only
"noisy" clips (labels_noisy.h5; unshuffled, so they fill the last batches and the last 61 of them are never
seen); its `best_val_acc` is never updated, so every 5th epoch's model overwrites the saved one.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from avvp_jax.errors import InputError

Array = jax.Array
SUPERVISIONS = ("full", "weak")


def masked_mean(per_clip_B: Array, batch: Mapping[str, Array]) -> Array:
  """The mean of `per_clip` [B] over the real clips (`batch["mask"]` [B], 1 real; absent: all real)."""
  mask_B = batch.get("mask")
  if mask_B is None:
    return per_clip_B.mean()
  mask_B = mask_B.astype(jnp.float32)
  return (per_clip_B * mask_B).sum() / jnp.maximum(mask_B.sum(), 1.0)


def multilabel_soft_margin(inputs: Array, targets: Array) -> Array:
  """`nn.MultiLabelSoftMarginLoss(reduction="none")`: the mean over the last axis of the per-class BCE of
  sigmoid(inputs); shape `inputs.shape[:-1]`."""
  inputs, targets = inputs.astype(jnp.float32), targets.astype(jnp.float32)
  per_class = targets * jax.nn.log_sigmoid(inputs) + (1.0 - targets) * jax.nn.log_sigmoid(-inputs)
  return -per_class.mean(axis=-1)


def loss(
    outputs: Mapping[str, Array], batch: Mapping[str, Array], *, supervision: str = "full"
) -> tuple[Array, dict[str, Array]]:
  """The official AVE-ECCV18 loss of `supervision` ("full" or "weak"; module docstring)."""
  if supervision == "full":
    per_clip_B = multilabel_soft_margin(outputs["segment_prob"], batch["segment_label"]).mean(
        axis=1
    )
  elif supervision == "weak":
    per_clip_B = multilabel_soft_margin(outputs["video_prob"], batch["video_label"])
  else:
    raise InputError(f"AVE loss supervision {supervision!r} is unknown: use one of {SUPERVISIONS}.")
  value = masked_mean(per_clip_B, batch)
  return value, {"multilabel_soft_margin": value}


def compute_loss(
    loss_config: Any, outputs: Mapping[str, Array], batch: Mapping[str, Array]
) -> tuple[Array, dict[str, Array]]:
  """The task's entry (`config.loss.name = "ave"`): `loss` in the setting of the batch (training batches of the
  weak setting hold no `segment_label`)."""
  del loss_config
  return loss(outputs, batch, supervision="full" if "segment_label" in batch else "weak")
