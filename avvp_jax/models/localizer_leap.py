"""LEAP as the head of an audio-visual event localizer (the LEAP paper's Table 5: "LEAP on AVEL").

The LEAP paper (Zhou et al., ECCV 2024, Sec. 4.5) puts its decoder on AVE's three encoders (AVE, PSP, CMBS)
and fixes no detail; jasongief/LEAP ships no AVEL code. What avvp_jax does (`config.model.decoder = "leap"`
with a localizer encoder), each choice an attribute of `LocalizerLEAP` (`config.model.localizer_leap`):

  trunk      the localizer built with `trunk_only=True`: it runs up to its head and returns its streams
             [B, T, D] (`audio`, `visual`, `fusion`; models/ave.py, psp.py, cmbs.py say which tensors)
  streams    "modality": LEAP's audio branch reads `audio`, its visual branch `visual` (as in AVVP);
             "fused": both branches read `fusion`, the tensor the official head reads
  decoder    the LLP `LEAPDecoder` unchanged (leap.py), its K label queries the class names' embeddings:
             background "threshold": K = 28 (the events); "query": K = 29, a 29th query for background
  scale      LEAP's segment logits (attention logits, mean over heads) times `logit_scale` (1: LEAP's own), a
             constant or, with `learn_logit_scale`, a learned scalar per branch started there (stored as its log,
             as CLIP's temperature): the attention logits of the untrained head spread over the classes by about
             0.002 (docs/ave.md, "Why LEAP learned slowly"), so the segment term barely moves them
  score      p [B, T, K] from the segment probabilities of the two branches, `combine`:
             "mean": (p_a + p_v) / 2; "product": p_a * p_v (an AVE event is audible AND visible);
             "softmax": softmax over the K queries of the branches' mean (scaled) logit (l_a + l_v) / 2, the
             score the "ce" segment loss trains (losses/leap.py), so the decision is the loss's argmax. The
             sigmoid scores of "mean" and "product" depend on each segment's class-common logit offset, which
             that softmax loss leaves free; on PSP's streams it drifts (docs/ave.md, "Why LEAP lost on PSP")
  decision   one label per segment, `segment_class` int32 [B, T] (0-27 an event, 28 background), by
             `segment_classes` below: "segment" (each segment's best class) or "video" (the video's one class,
             AVE's videos have one event, and each segment is that class or background)

The video-level scores `video_event_prob` [B, K] combine LEAP's `audio_prob` and `visual_prob` the same way
("softmax": their mean, as the video-level terms are per-class BCEs).
Outputs: LEAP's output dict (leap.py: `audio_prob`, `visual_prob`, ...; `segment_{audio,visual}_logits` and
`segment_{audio,visual}_prob` scaled), the
streams LEAP read as `audio_embedding` / `visual_embedding` (the avss loss's input), `segment_event_prob` p,
`video_event_prob` and `segment_class`, and the trunk's `av_similarity` where it gives one (PSP; its AVPS
term's input); float32. The loss is `avvp_jax.tasks.ave.losses.leap`.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from avvp_jax.errors import InputError

STREAMS = ("modality", "fused")
BACKGROUNDS = ("threshold", "query")
COMBINES = ("mean", "product", "softmax")
DECISIONS = ("segment", "video")


def combine_probs(audio_prob: jax.Array, visual_prob: jax.Array, combine: str) -> jax.Array:
  """The audio-visual score of per-modality probabilities of one shape: their mean or product ("softmax", which
  combines segment logits, `segment_scores`: the mean)."""
  if combine in ("mean", "softmax"):
    return (audio_prob + visual_prob) * 0.5
  if combine == "product":
    return audio_prob * visual_prob
  raise InputError(
      f"config.model.localizer_leap.combine {combine!r} is unknown: use one of {COMBINES}."
  )


def segment_scores(
    audio_logits_BxTxK: jax.Array, visual_logits_BxTxK: jax.Array, combine: str
) -> jax.Array:
  """p [B, T, K], the audio-visual segment scores of the two branches' (scaled) segment logits (module
  docstring): "mean" / "product" of their sigmoids, or "softmax" over K of their mean."""
  if combine == "softmax":
    return jax.nn.softmax((audio_logits_BxTxK + visual_logits_BxTxK) * 0.5, axis=-1)
  return combine_probs(
      jax.nn.sigmoid(audio_logits_BxTxK), jax.nn.sigmoid(visual_logits_BxTxK), combine
  )


def segment_classes(
    segment_prob_BxTxK: jax.Array,
    video_prob_BxK: jax.Array,
    *,
    background: str,
    decision: str,
    threshold: float,
    background_class: int,
) -> jax.Array:
  """One label per segment from LEAP's audio-visual scores: int32 [B, T], `background_class` for background.

  Args:
    segment_prob_BxTxK: per-segment class scores in [0, 1]; K = `background_class` (events only) or one
      more (the last column background).
    video_prob_BxK: the video-level scores, same K.
    background: "threshold" (K events: background where the chosen class scores below `threshold`) or
      "query" (the last column is background, a class like the others).
    decision: "segment" (each segment's argmax class) or "video" (every segment is the video's argmax event
      class, over the event columns of `video_prob`, or background).
    threshold: the event threshold of background "threshold".
    background_class: the background label (AVE: 28, the number of event classes).

  Ties go to the lowest index (jnp.argmax).
  """
  if background not in BACKGROUNDS:
    raise InputError(
        f"config.model.localizer_leap.background {background!r} is unknown: use one of {BACKGROUNDS}."
    )
  if decision not in DECISIONS:
    raise InputError(
        f"config.model.localizer_leap.decision {decision!r} is unknown: use one of {DECISIONS}."
    )
  num_events = background_class
  events_BxTxE = segment_prob_BxTxK[..., :num_events]
  if decision == "segment":
    class_BxT = jnp.argmax(segment_prob_BxTxK, axis=-1)
    if background == "threshold":
      is_event_BxT = events_BxTxE.max(axis=-1) >= threshold
    else:
      is_event_BxT = class_BxT < num_events
  else:
    class_B = jnp.argmax(video_prob_BxK[..., :num_events], axis=-1)
    class_BxT = jnp.broadcast_to(class_B[:, None], segment_prob_BxTxK.shape[:2])
    chosen_BxT = jnp.take_along_axis(events_BxTxE, class_BxT[..., None], axis=-1)[..., 0]
    if background == "threshold":
      is_event_BxT = chosen_BxT >= threshold
    else:
      is_event_BxT = chosen_BxT >= segment_prob_BxTxK[..., num_events]
  return jnp.where(is_event_BxT, class_BxT, background_class).astype(jnp.int32)


class LocalizerLEAP(nn.Module):
  """An event localizer's trunk with the LEAP decoder as its head (module docstring).

  Built by `models.build_model` as `LocalizerLEAP(**config.model.localizer_leap, trunk=..., decoder=...,
  num_event_classes=28)`: the section's keys are the attributes below but `trunk`, `decoder` and
  `num_event_classes`.

  Attributes:
    trunk: the localizer, built with `trunk_only=True`: (audio, visual, train) -> its streams dict.
    decoder: a `leap.LEAPDecoder` of K = num_event_classes (background "threshold") or + 1 ("query") classes.
    num_event_classes: the task's event classes (AVE 28); the label `num_event_classes` is background.
    streams: "modality" or "fused" (module docstring).
    background: "threshold" or "query".
    combine: "mean", "product" or "softmax".
    decision: "segment" or "video".
    threshold: background "threshold"'s event threshold on the combined score.
    logit_scale: the factor on LEAP's segment logits (1: LEAP's own), > 0.
    learn_logit_scale: learn the factor (one scalar per branch, `{audio,visual}_log_logit_scale`, started at
      log(logit_scale)).
  """

  trunk: nn.Module
  decoder: nn.Module
  num_event_classes: int = 28
  streams: str = "modality"
  background: str = "threshold"
  combine: str = "mean"
  decision: str = "segment"
  threshold: float = 0.5
  logit_scale: float = 1.0
  learn_logit_scale: bool = False

  @nn.compact
  def __call__(
      self, audio: jax.Array, visual: jax.Array, *, train: bool = False
  ) -> dict[str, jax.Array]:
    """Args: the localizer's inputs (AVE: audio [B, T, 128], visual [B, T, 7, 7, 512]), train (dropout).
    Returns the outputs of the module docstring."""
    if self.streams not in STREAMS:
      raise InputError(
          f"config.model.localizer_leap.streams {self.streams!r} is unknown: use one of {STREAMS}."
      )
    expected = self.num_event_classes + (self.background == "query")
    if self.decoder.num_classes != expected:
      raise InputError(
          f"the LEAP head has {self.decoder.num_classes} label queries: background "
          f"{self.background!r} needs {expected}."
      )
    if not self.logit_scale > 0:
      raise InputError(
          f"config.model.localizer_leap.logit_scale is {self.logit_scale}: use a number above 0."
      )
    trunk = self.trunk(audio, visual, train=train)
    if self.streams == "modality":
      audio_BxTxD, visual_BxTxD = trunk["audio"], trunk["visual"]
    else:
      audio_BxTxD = visual_BxTxD = trunk["fusion"]
    outputs = dict(self.decoder(audio_BxTxD, visual_BxTxD, train=train))
    for modality in ("audio", "visual"):
      scale = jnp.float32(self.logit_scale)
      if self.learn_logit_scale:
        init = lambda _, shape: jnp.full(shape, jnp.log(self.logit_scale), jnp.float32)
        scale = jnp.exp(self.param(f"{modality}_log_logit_scale", init, ()))
      logits_BxTxK = outputs[f"segment_{modality}_logits"].astype(jnp.float32) * scale
      outputs[f"segment_{modality}_logits"] = logits_BxTxK
      outputs[f"segment_{modality}_prob"] = jax.nn.sigmoid(logits_BxTxK)
    segment_prob_BxTxK = segment_scores(
        outputs["segment_audio_logits"], outputs["segment_visual_logits"], self.combine
    )
    video_prob_BxK = combine_probs(outputs["audio_prob"], outputs["visual_prob"], self.combine)
    outputs.update(
        audio_embedding=audio_BxTxD,
        visual_embedding=visual_BxTxD,
        segment_event_prob=segment_prob_BxTxK,
        video_event_prob=video_prob_BxK,
    )
    if (
        "av_similarity" in trunk
    ):  # PSP's per-segment cos(v', a'), for its AVPS term (losses/leap.py)
      outputs["av_similarity"] = trunk["av_similarity"]
    outputs = {key: value.astype(jnp.float32) for key, value in outputs.items()}
    outputs["segment_class"] = segment_classes(
        segment_prob_BxTxK,
        video_prob_BxK,
        background=self.background,
        decision=self.decision,
        threshold=self.threshold,
        background_class=self.num_event_classes,
    )
    return outputs
