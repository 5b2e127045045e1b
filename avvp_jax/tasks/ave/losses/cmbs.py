"""CMBS's official training losses (marmot-xy/CMBS supv_main.py and weakly_main.py, `train_epoch`).

  loss(outputs, batch, supervision="full") -> (scalar, {term: value})        supervision: "full" | "weak"

`outputs` is the dict of `avvp_jax.models.cmbs.CMBS` or `WeakCMBS`; `batch` holds `segment_label` [B, T, 29]
(one-hot, 28 = background), `event_mask` [B, T] (1 on event segments), `video_label` [B, 29] and `mask` [B]
(1 on a real clip, 0 on padding). Every term is a mean over the real clips (and their segments), equal to the
official mean when `mask` is all ones. Computed in float32, or float64 when the outputs are float64.

Fully supervised ("full"), the sum of four terms, as coded (`loss_is_event + label_is_gate +
loss_event_class + loss_cas`):
  event     BCEWithLogits(event_logits, event_mask)        per segment
  gate      BCEWithLogits(event_gate, event_mask)          per segment; the gate is a product of two sigmoids,
            a probability in (0, 1), which the official code nevertheless hands to BCE-with-LOGITS: the term
            pushes the gate towards 1 on events and towards 0 on background through sigmoid(gate), which
            never goes below 0.5, so the term stays above log 2 ~ 0.69 on a background segment
  class     CrossEntropy(class_logits, video class)        per clip
  av_class  CrossEntropy(av_class_logits, video class)     per clip
where the video class is, as coded, the largest over segments of each segment's argmax over the 28 event
columns of `segment_label` (a background segment's all-zero row gives 0): the video's event class for AVE's
one-class videos. The BCE target is the official max over the 28 event columns, which is `event_mask`.

Weakly supervised ("weak"), one term (`criterion_event = nn.MultiLabelSoftMarginLoss()`):
  class     MultiLabelSoftMargin(class_prob, video_label) = -mean_c [y log sigmoid(p) + (1 - y) log
            sigmoid(-p)], on the softmax PROBABILITIES p (not logits), over the 29 columns (background
            included: the background-only training videos are labelled 28).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from avvp_jax.errors import InputError

Array = jax.Array
Terms = dict[str, Array]
NUM_EVENT_CLASSES = 28
SUPERVISIONS = ("full", "weak")


def _float(x: Array) -> Array:
  x = jnp.asarray(x)
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _masked_mean(per_clip_B: Array, mask_B: Array) -> Array:
  mask_B = mask_B.astype(per_clip_B.dtype)
  return (per_clip_B * mask_B).sum() / jnp.maximum(mask_B.sum(), 1.0)


def _bce_with_logits_per_clip(logits_BxT: Array, target_BxT: Array) -> Array:
  """`nn.BCEWithLogitsLoss`'s elements averaged per clip: [B]."""
  target_BxT = target_BxT.astype(logits_BxT.dtype)
  elements = -(
      target_BxT * jax.nn.log_sigmoid(logits_BxT)
      + (1 - target_BxT) * jax.nn.log_sigmoid(-logits_BxT)
  )
  return elements.mean(axis=-1)


def _cross_entropy_per_clip(logits_BxK: Array, class_B: Array) -> Array:
  log_prob_BxK = jax.nn.log_softmax(logits_BxK, axis=-1)
  return -jnp.take_along_axis(log_prob_BxK, class_B[:, None], axis=-1)[:, 0]


def video_class(segment_label_BxTx29: Array) -> Array:
  """The official `labels_event`: max over segments of the argmax over the 28 event columns, int32 [B]."""
  per_segment_BxT = jnp.argmax(segment_label_BxTx29[..., :NUM_EVENT_CLASSES], axis=-1)
  return per_segment_BxT.max(axis=-1).astype(jnp.int32)


def supervised_terms(outputs: Mapping[str, Array], batch: Mapping[str, Any]) -> Terms:
  """The four per-clip terms of the supervised loss, each [B] (see the module docstring)."""
  event_mask_BxT = jnp.asarray(batch["event_mask"])
  label_B = video_class(jnp.asarray(batch["segment_label"]))
  return {
      "event": _bce_with_logits_per_clip(_float(outputs["event_logits"]), event_mask_BxT),
      "gate": _bce_with_logits_per_clip(_float(outputs["event_gate"]), event_mask_BxT),
      "class": _cross_entropy_per_clip(_float(outputs["class_logits"]), label_B),
      "av_class": _cross_entropy_per_clip(_float(outputs["av_class_logits"]), label_B),
  }


def weak_terms(outputs: Mapping[str, Array], batch: Mapping[str, Any]) -> Terms:
  """The weak loss per clip, [B]: MultiLabelSoftMarginLoss on the class probabilities."""
  prob_BxK = _float(outputs["class_prob"])
  label_BxK = jnp.asarray(batch["video_label"]).astype(prob_BxK.dtype)
  elements = label_BxK * jax.nn.log_sigmoid(prob_BxK) + (1 - label_BxK) * jax.nn.log_sigmoid(
      -prob_BxK
  )
  return {"class": -elements.mean(axis=-1)}


def loss(
    outputs: Mapping[str, Array], batch: Mapping[str, Any], *, supervision: str = "full"
) -> tuple[Array, Terms]:
  """CMBS's training loss and its terms, each a mean over the real clips (`batch["mask"]`, when present).

  Args:
    outputs: the model's output dict (`CMBS` for "full", `WeakCMBS` for "weak").
    batch: the batch dict (module docstring); the weak loss reads only `video_label` (and `mask`).
    supervision: "full" (supv_main.py's loss) or "weak" (weakly_main.py's).

  Returns:
    (the sum of the terms, {term: value}).

  Raises:
    InputError: an unknown `supervision`.
  """
  if supervision not in SUPERVISIONS:
    raise InputError(f"CMBS supervision {supervision!r} is unknown: use one of {SUPERVISIONS}.")
  per_clip = (weak_terms if supervision == "weak" else supervised_terms)(outputs, batch)
  batch_size = next(iter(per_clip.values())).shape[0]
  mask_B = jnp.asarray(batch["mask"]) if "mask" in batch else jnp.ones((batch_size,))
  terms = {name: _masked_mean(value, mask_B) for name, value in per_clip.items()}
  return sum(terms.values()), terms


def compute_loss(
    loss_config: Any, outputs: Mapping[str, Array], batch: Mapping[str, Array]
) -> tuple[Array, dict[str, Array]]:
  """The task's entry (`config.loss.name = "cmbs"`): `loss` in the setting of the batch (training batches of the
  weak setting hold no `segment_label`)."""
  del loss_config
  return loss(outputs, batch, supervision="full" if "segment_label" in batch else "weak")
