"""PSP's losses (avvp_jax.models.psp): cross-entropy + 100 x AVPS (fully supervised), BCE (weakly supervised).

  loss(outputs, batch, supervision="full", avps_weight=100.0, avps_targets="clean", weak_target="proportion")
      -> (scalar, terms)

full (fully_supervised_main.py, measure.AVPSLoss), terms {"cross_entropy", "avps"}:
  CE(segment_logits, the class of each segment) + avps_weight * MSE(relu(s) / (sum_t relu(s) + 1e-8), q)
  with s = outputs["av_similarity"] [B, T] and q [B, T] the AVPS soft label: for the first class column that
  is positive somewhere in the clip (its event, or background 28 for a background-only clip), 1 / n on its n
  segments of that class; CE and MSE are means over every segment of the batch. `avps_weight` is the official
  --LAMBDA (100).
weak (weakly_supervised_main.py), terms {"bce"}:
  BCE(video_prob, p), the mean over the 29 classes, logs clamped at -100 as torch's BCELoss does, with p:
    "proportion" (default, official): the share of the clip's segments in each class, mean_t segment_label: the
                 official `prob_label.h5` ("the proportion of the background and event segments", the authors
                 in jasongief/PSP_CVPR_2021 issue #7; the file is not in the repository); background-only clips
                 get the one-hot background label (`labels_noisy.h5`), which is the same thing. It reads
                 segment-level counts, which weak supervision strictly would not have.
    "video_label": batch["video_label"], the one-hot video label (what AVE-ECCV18's weak model trains on).

`avps_targets`: the official loader (dataloader.AVE_Fully_Dataset.get_segment_wise_relation) writes q into a
buffer it never clears: a segment outside the clip's class keeps whatever the clip at the same batch position
had in an earlier batch, so stale targets leak across batches. "clean" (default) computes q from the batch's
`segment_label` as above; "official" reads `batch["avps_target"]` [B, T], which a loader builds by calling one
`OfficialAVPSTargets` on its training batches in order, as the official one does.

Padded clips (`batch["mask"]` [B] 0) do not count; every mean equals the official one when all clips are real.

The official recipes (read from the mains): Adam, lr 1e-3 (`ScheduledOptim`: no warm-up, no clipping, no weight
decay), batch 128 (`nb_batch = len // 128`: the remainder is dropped), the clip order reshuffled once per epoch
(`random.seed(123)`), 300 epochs; the lr times 0.8 after epochs 60 and 120 (`(epoch + 1) % 60 == 0 and epoch <
170`: at the ends of epochs 59 and 119) in the fully supervised setting, after epochs 80 and 160 (`% 80`,
`epoch < 200`: ends of epochs 79 and 159) in the weak one; thresholds 0.099 (full) and 0.095 (weak), from the
README's run commands (also the argparse defaults). Every 5th epoch both validation and *test* accuracy are
computed and the model is saved on a new best *test* accuracy. The weak training set is train_order's 3339
clips plus the 178 background-only clips of the "noisy" files (`3517 // 128 = 27` batches).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from avvp_jax.errors import InputError
from avvp_jax.tasks.ave.losses import ave as ave_loss

Array = jax.Array
SUPERVISIONS = ("full", "weak")
AVPS_TARGETS = ("clean", "official")
WEAK_TARGETS = ("proportion", "video_label")
AVPS_WEIGHT = 100.0  # the official --LAMBDA
SUM_EPSILON = 1e-8
BCE_LOG_FLOOR = -100.0  # torch's BCELoss clamps each log at -100


def avps_target(segment_label: Array) -> Array:
  """The AVPS soft label q [B, T] of one-hot segment labels [B, T, C] (module docstring), without the official
  buffer's leak: 1 / n on the n segments of the clip's first positive class column, 0 elsewhere (an all-zero
  clip: all 0)."""
  present_BxC = segment_label.max(axis=1) > 0
  first_B = jnp.argmax(present_BxC, axis=-1)
  rows_BxT = jnp.take_along_axis(segment_label, first_B[:, None, None], axis=2)[..., 0] > 0
  count_Bx1 = rows_BxT.sum(axis=1, keepdims=True)
  return jnp.where(rows_BxT, 1.0 / jnp.maximum(count_Bx1, 1), 0.0).astype(jnp.float32)


class OfficialAVPSTargets:
  """The official loader's AVPS buffer: call it on each training batch's segment labels [B, T, C] (numpy), in
  order, for the targets it hands out ([B, T] float32, a copy), leak included; put them in `batch["avps_target"]`
  and pass `avps_targets="official"` to `loss`. The buffer starts at zeros and never clears, as the official one.
  """

  def __init__(self) -> None:
    self._buffer: np.ndarray | None = None

  def __call__(self, segment_label: np.ndarray) -> np.ndarray:
    segment_label = np.asarray(segment_label)
    if self._buffer is None:
      self._buffer = np.zeros(segment_label.shape[:2], np.float32)
    if self._buffer.shape != segment_label.shape[:2]:
      raise InputError(
          f"OfficialAVPSTargets got a batch of shape {segment_label.shape[:2]} after batches of "
          f"{self._buffer.shape}: the official buffer has the fixed training batch shape (drop the remainder)."
      )
    fresh = np.asarray(avps_target(jnp.asarray(segment_label)))
    self._buffer = np.where(fresh > 0, fresh, self._buffer).astype(np.float32)
    return self._buffer.copy()


def avps_term(
    outputs: Mapping[str, Array], batch: Mapping[str, Array], avps_targets: str = "clean"
) -> Array:
  """The AVPS term (unweighted; module docstring) of `outputs["av_similarity"]` [B, T] against the batch's
  targets: the MSE of the relu'd, L1-normalised similarities and q, a mean over the real clips."""
  labels_BxTxC = batch["segment_label"].astype(jnp.float32)
  if avps_targets == "clean":
    target_BxT = avps_target(labels_BxTxC)
  elif avps_targets == "official":
    if "avps_target" not in batch:
      raise InputError(
          'avps_targets="official" reads batch["avps_target"], which this batch lacks: build it with '
          "avvp_jax.tasks.ave.losses.psp.OfficialAVPSTargets in the loader, or use the clean targets."
      )
    target_BxT = batch["avps_target"].astype(jnp.float32)
  else:
    raise InputError(f"PSP avps_targets {avps_targets!r} is unknown: use one of {AVPS_TARGETS}.")
  similarity_BxT = jax.nn.relu(outputs["av_similarity"].astype(jnp.float32))
  similarity_BxT = similarity_BxT / (similarity_BxT.sum(axis=-1, keepdims=True) + SUM_EPSILON)
  return ave_loss.masked_mean(((similarity_BxT - target_BxT) ** 2).mean(-1), batch)


def _full(
    outputs: Mapping[str, Array], batch: Mapping[str, Array], avps_weight: float, avps_targets: str
) -> tuple[Array, dict[str, Array]]:
  labels_BxTxC = batch["segment_label"].astype(jnp.float32)
  log_prob_BxTxC = jax.nn.log_softmax(outputs["segment_logits"].astype(jnp.float32), axis=-1)
  cross_entropy = ave_loss.masked_mean(-(labels_BxTxC * log_prob_BxTxC).sum(-1).mean(-1), batch)
  avps = avps_term(outputs, batch, avps_targets)
  return cross_entropy + avps_weight * avps, {"cross_entropy": cross_entropy, "avps": avps}


def _weak(
    outputs: Mapping[str, Array], batch: Mapping[str, Array], weak_target: str
) -> tuple[Array, dict[str, Array]]:
  if weak_target == "proportion":  # PSP's prob_label.h5, or the same from segment labels
    if "prob_label" in batch:
      target_BxC = batch["prob_label"].astype(jnp.float32)
    else:
      target_BxC = batch["segment_label"].astype(jnp.float32).mean(axis=1)
  elif weak_target == "video_label":
    target_BxC = batch["video_label"].astype(jnp.float32)
  else:
    raise InputError(f"PSP weak_target {weak_target!r} is unknown: use one of {WEAK_TARGETS}.")
  prob_BxC = outputs["video_prob"].astype(jnp.float32)
  log_p = jnp.maximum(jnp.log(prob_BxC), BCE_LOG_FLOOR)
  log_not_p = jnp.maximum(jnp.log1p(-prob_BxC), BCE_LOG_FLOOR)
  bce = ave_loss.masked_mean(-(target_BxC * log_p + (1.0 - target_BxC) * log_not_p).mean(-1), batch)
  return bce, {"bce": bce}


def loss(
    outputs: Mapping[str, Array],
    batch: Mapping[str, Array],
    *,
    supervision: str = "full",
    avps_weight: float = AVPS_WEIGHT,
    avps_targets: str = "clean",
    weak_target: str = "proportion",
) -> tuple[Array, dict[str, Array]]:
  """PSP's official loss of `supervision` ("full" or "weak"; module docstring)."""
  if supervision == "full":
    return _full(outputs, batch, avps_weight, avps_targets)
  if supervision == "weak":
    return _weak(outputs, batch, weak_target)
  raise InputError(f"PSP loss supervision {supervision!r} is unknown: use one of {SUPERVISIONS}.")


def compute_loss(
    loss_config: Any, outputs: Mapping[str, Array], batch: Mapping[str, Array]
) -> tuple[Array, dict[str, Array]]:
  """The task's entry (`config.loss.name = "psp"`): `loss` in the setting of the batch (training batches of the
  weak setting hold no `segment_label`), with the clean AVPS targets; the weak target is the video label, or
  PSP's event/background proportions where the batch has them (`prob_label`: `config.data.ave.prob_labels`,
  never the default, as it leaks each event's duration)."""
  del loss_config
  if "segment_label" in batch:
    return loss(outputs, batch, supervision="full")
  return loss(
      outputs,
      batch,
      supervision="weak",
      weak_target="proportion" if "prob_label" in batch else "video_label",
  )
