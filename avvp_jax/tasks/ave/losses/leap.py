"""The loss of an AVE localizer with the LEAP head (`avvp_jax.models.localizer_leap`), `config.loss.name = "leap"`.

  compute_loss(loss_config, outputs, batch) -> (scalar, {"video", "segment", "avss", "avps"})

K = the LEAP head's label queries (28 events; 29 with the background query, background last), read from the
outputs' shape; the targets are the batch's 29-column labels cut to K columns, so with 28 queries a background
segment's target is all zeros (no event) and with 29 it is the background column. LEAP's own loss (LLP,
`avvp_jax.tasks.llp.losses`) with AVE's labels in place of pseudo labels, since an AVE event is audible and
visible at once (audio and visual labels are the same):

  video    BCE(audio_prob, y) + BCE(visual_prob, y), y [B, K] the classes present in the clip (supervised: the
           maximum over time of the segment labels; weak: `video_label`, which marks the background-only videos
           background); probabilities clamped to [clamp_eps, 1 - clamp_eps]
  segment  (supervised) `ave_leap_segment_loss`:
             "bce": BCEWithLogits(segment_audio_logits, Y) + BCEWithLogits(segment_visual_logits, Y), Y [B, T, K]
                    the segment labels, as LEAP's segment terms (means over segments and classes);
             "ce":  cross-entropy over the K classes of (segment_audio_logits + segment_visual_logits) / 2 against
                    each segment's class; with 28 queries only event segments count (background has no class)
           weighted by `segment_weight`; weak: none (the weak setting has no segment labels; LEAP's LLP path without
           pseudo labels also leaves its segment term off)
  avss     (supervised) LEAP's audio-visual semantic similarity: MSE(relu(cos(audio_embedding_i,
           visual_embedding_j)), EIoU_ij) over the T x T segment pairs, the EIoU of the events of segments i and j
           (`avss_target` "official" or "paper", `avss_eps`), weighted by `avss_weight`. In AVE both modalities
           carry the same label, so the target pairs every two event segments of the clip (paper: IoU 1;
           official: 1/2 + eps) and leaves background pairs at 0 (+ eps): it is not constant, and pulls the
           audio and visual streams of the event together. Weak: none (no segment labels).

  avps     (supervised, PSP's trunk only) PSP's own AVPS term (`losses.psp.avps_term`: the relu'd, L1-normalised
           cosine of PSP's a' and v' per segment, `av_similarity`, against 1/n on the n event segments), weighted
           by `ave_leap_avps_weight` (0: off; PSP's official weight is 100). It trains PSP's propagation the way
           PSP's own recipe does (docs/ave.md, "Why LEAP lost on PSP"). Weak: none.

Every term is a mean over the real clips (`batch["mask"]`). A term that does not apply is reported as 0.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from avvp_jax.errors import InputError
from avvp_jax.tasks.ave.losses import ave as ave_loss
from avvp_jax.tasks.ave.losses import psp as psp_loss
from avvp_jax.tasks.llp import losses as llp_losses

Array = jax.Array
SEGMENT_LOSSES = ("bce", "ce")
NUM_EVENT_CLASSES = 28


def _bce(prob: Array, target: Array, eps: float) -> Array:
  """Elementwise BCE of clamped probabilities."""
  prob = jnp.clip(prob.astype(jnp.float32), eps, 1.0 - eps)
  return -(target * jnp.log(prob) + (1.0 - target) * jnp.log1p(-prob))


def _bce_with_logits(logits: Array, target: Array) -> Array:
  logits = logits.astype(jnp.float32)
  return -(target * jax.nn.log_sigmoid(logits) + (1.0 - target) * jax.nn.log_sigmoid(-logits))


def segment_term(outputs: Mapping[str, Array], labels_BxTxK: Array, kind: str) -> Array:
  """The segment term per clip, [B] (module docstring)."""
  audio_BxTxK, visual_BxTxK = outputs["segment_audio_logits"], outputs["segment_visual_logits"]
  if kind == "bce":
    return _bce_with_logits(audio_BxTxK, labels_BxTxK).mean(axis=(1, 2)) + _bce_with_logits(
        visual_BxTxK, labels_BxTxK
    ).mean(axis=(1, 2))
  if kind == "ce":
    logits_BxTxK = (audio_BxTxK.astype(jnp.float32) + visual_BxTxK.astype(jnp.float32)) * 0.5
    log_prob_BxTxK = jax.nn.log_softmax(logits_BxTxK, axis=-1)
    counted_BxT = labels_BxTxK.max(axis=-1)  # 28 queries: background segments have no class
    per_segment_BxT = -(labels_BxTxK * log_prob_BxTxK).sum(axis=-1)
    return (per_segment_BxT * counted_BxT).sum(axis=1) / jnp.maximum(counted_BxT.sum(axis=1), 1.0)
  raise InputError(
      f"config.loss.ave_leap_segment_loss {kind!r} is unknown: use one of {SEGMENT_LOSSES}."
  )


def loss(
    loss_config: Any, outputs: Mapping[str, Array], batch: Mapping[str, Array]
) -> tuple[Array, dict[str, Array]]:
  """The LEAP head's loss and its terms (module docstring); the setting is the batch's (segment labels or not)."""
  num_queries = outputs["segment_audio_logits"].shape[-1]
  eps = loss_config.clamp_eps
  supervised = "segment_label" in batch
  zero = jnp.zeros((), jnp.float32)
  if supervised:
    labels_BxTx29 = batch["segment_label"].astype(jnp.float32)
    labels_BxTxK = labels_BxTx29[..., :num_queries]
    video_BxK = labels_BxTxK.max(axis=1)
  else:
    video_BxK = batch["video_label"].astype(jnp.float32)[..., :num_queries]
  video = sum(_bce(outputs[f"{m}_prob"], video_BxK, eps).mean(axis=-1) for m in ("audio", "visual"))
  terms = {"video": ave_loss.masked_mean(video, batch), "segment": zero, "avss": zero, "avps": zero}
  total = terms["video"]
  if supervised:
    kind = loss_config.get("ave_leap_segment_loss", "bce")
    terms["segment"] = ave_loss.masked_mean(segment_term(outputs, labels_BxTxK, kind), batch)
    events_BxTxE = labels_BxTx29[..., :NUM_EVENT_CLASSES]
    target_BxTxT = jax.lax.stop_gradient(
        llp_losses.avss_target(
            events_BxTxE, events_BxTxE, loss_config.avss_target, loss_config.avss_eps
        )
    )
    similarity_BxTxT = jax.nn.relu(
        llp_losses.cosine_similarity(outputs["audio_embedding"], outputs["visual_embedding"])
    )
    terms["avss"] = ave_loss.masked_mean(
        ((similarity_BxTxT - target_BxTxT) ** 2).mean(axis=(1, 2)), batch
    )
    total = (
        total
        + loss_config.segment_weight * terms["segment"]
        + loss_config.avss_weight * terms["avss"]
    )
    avps_weight = loss_config.get("ave_leap_avps_weight", 0.0)
    if avps_weight:
      if "av_similarity" not in outputs:
        raise InputError(
            f"config.loss.ave_leap_avps_weight is {avps_weight}: PSP's AVPS term reads PSP's av_similarity, "
            "which this encoder does not give; use 0 with encoders other than psp."
        )
      terms["avps"] = psp_loss.avps_term(outputs, batch)
      total = total + avps_weight * terms["avps"]
  return total, terms


def compute_loss(
    loss_config: Any, outputs: Mapping[str, Array], batch: Mapping[str, Array]
) -> tuple[Array, dict[str, Array]]:
  """The task's entry (`config.loss.name = "leap"` on AVE): `loss`."""
  if "segment_audio_logits" not in outputs:
    raise InputError(
        "config.loss.name 'leap' on AVE reads the LEAP head's outputs: set config.model.decoder=leap "
        "(or the localizer's own loss with decoder dch)."
    )
  return loss(loss_config, outputs, batch)
