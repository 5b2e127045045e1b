"""Parsing clips with a trained model: probabilities, events in seconds, and timeline pictures.

Library API (also exported from `avvp_jax`):

  parser = avvp_jax.load_parser("workdir/han")        # a workdir (its best save) or a checkpoint folder
  probs = parser.predict(audio, frames, motion)        # dict of probabilities (below), numpy
  events = parser.parse(audio, frames, motion)         # per clip: a list of event dicts

  probs = avvp_jax.predict(config, params, audio, frames, motion)   # functional, jitted, jax.Arrays
  probs = avvp_jax.predict_ensemble(config, stacked_params, audio, frames, motion)  # [S, ...] params

Multi-seed workdirs (`config.num_seeds > 1`): `load_parser(path)` gives the seed ensemble, whose
probabilities are the mean of the replicas' (what `launch/evaluate.py` scores as "ensemble");
`load_parser(path, seed=k)` gives the replica trained with seed k alone.

Inputs are one clip (`audio [T, Da]`, `frames [T, Df]` or raw `[8T, Df]`, `motion [T, Dm]`) or a batch of
clips (a leading `[B]` axis on each). Models without a motion stream (CLIP/CLAP features,
`config.model.input_dims.motion == 0`) take `motion=None`. Every input is checked before any computation
(rank, sizes against the model's `config.model.input_dims`, floating dtype, finite values) and a problem
raises `avvp_jax.errors.InputError` with one sentence naming the culprit and the fix.

`predict` returns float32 probabilities (a leading `[B]` axis only when the inputs had one):

  video           [B, C]     whole-video probability of each class
  audio, visual   [B, C]     video-level probability per modality
  segment_audio   [B, T, C]  per-second audio probability
  segment_visual  [B, T, C]  per-second visual probability
  audio_filter, visual_filter  [B, C]  the video-level probabilities the model's official evaluation gates
                             segment predictions with (HAN/MMIL and LEAP: `video`)

Events, built exactly as the official evaluation (`avvp_jax.metrics.segment_predictions`) does:
  * a second is positive for a class and modality when its segment probability is >= `threshold` and the
    clip's gate probability (`audio_filter` / `visual_filter`) is >= `gate_threshold` (both 0.5 by default,
    the official values; either can be one number, `[C]` numbers, or a {class name: value} mapping whose
    unnamed classes keep 0.5);
  * an event is a maximal run of consecutive positive seconds of one class: `onset` is its first second,
    `offset` the end of its last one (exclusive, so an event reaching the clip's end has offset T = 10);
  * audio-visual events are the runs where the audio AND the visual predictions are positive.
  Each event is `{"modality": "audio" | "visual" | "audio_visual", "label": class name, "onset": seconds,
  "offset": seconds, "score": float}`. `score` is the mean, over the event's seconds, of the segment
  probability of its modality; for an audio-visual event the per-second probability is the smaller of the
  audio and the visual one (both must hold for the event to exist), so its score is the mean of those
  minima. A clip's events are ordered by onset, then modality (audio, visual, audio_visual), then class.
  Event detection is vectorised over clips, classes and seconds (numpy); only the output dicts are built
  one by one.

`plot_timelines` draws clips as timelines (one row per class that occurs, audio and visual bars, the
audio-visual overlap hatched, the ground truth beside the prediction when given); it needs matplotlib and
uses its Agg backend.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import Any, Mapping, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from avvp_jax import metrics
from avvp_jax.data import annotations
from avvp_jax.errors import InputError

PyTree = Any
Event = dict[str, Any]

MODALITIES = ("audio", "visual", "audio_visual")
OUTPUT_KEYS = ("video", "audio", "visual", "segment_audio", "segment_visual", "audio_filter", "visual_filter")
# Model output -> `predict` key.
_OUTPUT_NAMES = {
    "video_prob": "video", "audio_prob": "audio", "visual_prob": "visual",
    "segment_audio_prob": "segment_audio", "segment_visual_prob": "segment_visual",
    "audio_filter_prob": "audio_filter", "visual_filter_prob": "visual_filter",
}
DEFAULT_THRESHOLD = 0.5  # the official segment and video-level threshold
FRAMES_PER_SECOND = 8  # raw ResNet-152 frames per second (official layout)
SECONDS_PER_SEGMENT = 1.0  # LLP segments are one second long


# --- the model of a config, cached ----------------------------------------------------------------


def _model_key(config: ml_collections.ConfigDict) -> str:
  """A hashable key of everything that defines the model: `config.model` and the compute dtype."""
  compute_dtype = config.get("compute_dtype", None) or config.model.get("compute_dtype", "float32")
  model = config.model.to_dict() if isinstance(config.model, ml_collections.ConfigDict) else dict(config.model)
  return json.dumps({"model": model, "compute_dtype": compute_dtype}, sort_keys=True, default=str)


@functools.lru_cache(maxsize=16)
def _model_from_key(key: str):
  from avvp_jax import models  # pylint: disable=g-import-not-at-top  (flax, only when a model is needed)
  spec = json.loads(key)
  return models.build_model(ml_collections.ConfigDict(spec["model"]), dtype=spec["compute_dtype"])


@functools.partial(jax.jit, static_argnames=("model_key",))
def _apply(params: PyTree, audio: jax.Array, frames: jax.Array, motion: jax.Array | None, *,
           model_key: str) -> dict[str, jax.Array]:
  """The model's probabilities for a batch `[B, ...]`, renamed to the `OUTPUT_KEYS`."""
  outputs = _model_from_key(model_key).apply({"params": params}, audio, frames, motion, train=False)
  return {name: outputs[key].astype(jnp.float32) for key, name in _OUTPUT_NAMES.items()}


# --- input checks ---------------------------------------------------------------------------------


def _is_tracer(x: Any) -> bool:
  return isinstance(x, jax.core.Tracer)


def _as_array(x: Any, name: str) -> Any:
  if isinstance(x, (np.ndarray, jax.Array)):
    return x
  try:
    return np.asarray(x)
  except (TypeError, ValueError) as error:
    raise InputError(f"{name} could not be read as an array ({error}): pass a float32 numpy or jax array.") from None


def _all_finite(x: Any) -> bool:
  if _is_tracer(x):
    return True  # values are unknown while tracing: under jit/vmap only shapes and dtypes are checked
  if isinstance(x, jax.Array):
    return bool(jnp.all(jnp.isfinite(x)))
  return bool(np.isfinite(x).all())


def validate_inputs(config: ml_collections.ConfigDict, audio: Any, frames: Any, motion: Any = None
                    ) -> tuple[Any, Any, Any, bool]:
  """Checks model inputs against `config.model.input_dims`; raises InputError on the first problem.

  Args:
    config: the run config (only `config.model.input_dims` is read).
    audio: `[T, Da]` or `[B, T, Da]`.
    frames: `[T, Df]` / `[8T, Df]`, or with a leading `[B]`.
    motion: `[T, Dm]` or `[B, T, Dm]`; None for models without a motion stream.

  Returns:
    (audio, frames, motion) as float32 arrays with a batch axis, and whether the inputs had one. Under a
    caller's `jit`/`vmap` the shapes and dtypes are checked; values (finiteness) only on concrete arrays.
  """
  dims = config.model.input_dims
  use_motion = int(dims.get("motion", 0)) > 0
  if use_motion and motion is None:
    raise InputError(f"motion is None but this model has a motion stream of width {dims.motion}: pass the "
                     f"[T, {dims.motion}] (or [B, T, {dims.motion}]) motion features.")
  if not use_motion and motion is not None:
    raise InputError("motion was given but this model has no motion stream (config.model.input_dims.motion "
                     "is 0, e.g. CLIP/CLAP features): pass motion=None.")
  named = {"audio": _as_array(audio, "audio"), "frames": _as_array(frames, "frames")}
  if use_motion:
    named["motion"] = _as_array(motion, "motion")
  widths = {"audio": int(dims.audio), "frames": int(dims.frames), "motion": int(dims.get("motion", 0))}

  ranks = {name: x.ndim for name, x in named.items()}
  if any(rank not in (2, 3) for rank in ranks.values()) or len(set(ranks.values())) != 1:
    shapes = ", ".join(f"{name} {tuple(x.shape)}" for name, x in named.items())
    raise InputError(f"inputs have shapes {shapes}: pass one clip as [T, D] arrays or a batch as [B, T, D] "
                     "arrays, the same rank for every input.")
  batched = ranks["audio"] == 3
  for name, x in named.items():
    if not jnp.issubdtype(x.dtype, jnp.floating):
      raise InputError(f"{name} has dtype {x.dtype}: pass floating-point features (float32).")
  for name, x in named.items():
    if x.shape[-1] != widths[name]:
      raise InputError(f"{name} has feature width {x.shape[-1]} (shape {tuple(x.shape)}) but the model expects "
                       f"{widths[name]} (config.model.input_dims.{name}): pass the features it was trained on.")
  num_seconds = named["audio"].shape[-2]
  if num_seconds < 1:
    raise InputError(f"audio has shape {tuple(named['audio'].shape)} with no seconds: pass [T, {widths['audio']}] "
                     "features with T >= 1.")
  if named["frames"].shape[-2] not in (num_seconds, FRAMES_PER_SECOND * num_seconds):
    raise InputError(f"frames have {named['frames'].shape[-2]} steps but audio has {num_seconds} seconds: pass "
                     f"pooled frames [{num_seconds}, {widths['frames']}] or raw frames "
                     f"[{FRAMES_PER_SECOND * num_seconds}, {widths['frames']}].")
  if use_motion and named["motion"].shape[-2] != num_seconds:
    raise InputError(f"motion has {named['motion'].shape[-2]} seconds but audio has {num_seconds}: pass "
                     f"[{num_seconds}, {widths['motion']}] motion features.")
  if batched and len({x.shape[0] for x in named.values()}) != 1:
    sizes = ", ".join(f"{name} {x.shape[0]}" for name, x in named.items())
    raise InputError(f"inputs hold different numbers of clips ({sizes}): pass the same clips to every input.")
  for name, x in named.items():
    if not _all_finite(x):
      raise InputError(f"{name} holds NaN or infinite values: re-extract those clips' features.")

  def prepared(x):
    x = jnp.asarray(x, jnp.float32)
    return x if batched else x[None]

  return (prepared(named["audio"]), prepared(named["frames"]),
          prepared(named["motion"]) if use_motion else None, batched)


# --- prediction -----------------------------------------------------------------------------------


def predict(config: ml_collections.ConfigDict, params: PyTree, audio: Any, frames: Any, motion: Any = None
            ) -> dict[str, jax.Array]:
  """The model's probabilities: the functional form of `Parser.predict`, jitted.

  The model is built once per distinct `config.model` (cached) and applied by a `jax.jit` keyed by it, so
  this can be called inside a caller's `jax.jit` (close over or mark `config` static) and under `jax.vmap`
  (each mapped call sees one clip without the batch axis).

  Args:
    config: the run config the params belong to (only `config.model` and `compute_dtype` are used).
    params: the model's params.
    audio, frames, motion: one clip or a batch (see `validate_inputs`).

  Returns:
    dict with the `OUTPUT_KEYS` -> float32 jax.Array (see the module docstring), with the batch axis only
    when the inputs had one.
  """
  audio, frames, motion, batched = validate_inputs(config, audio, frames, motion)
  outputs = _apply(params, audio, frames, motion, model_key=_model_key(config))
  return outputs if batched else {key: value[0] for key, value in outputs.items()}


@functools.partial(jax.jit, static_argnames=("model_key",))
def _apply_ensemble(params: PyTree, audio: jax.Array, frames: jax.Array, motion: jax.Array | None, *,
                    model_key: str) -> dict[str, jax.Array]:
  """The mean over the replicas of `_apply`'s probabilities (params `[S, ...]`)."""
  outputs = jax.vmap(lambda p: _apply(p, audio, frames, motion, model_key=model_key))(params)
  return {key: jnp.mean(value, axis=0) for key, value in outputs.items()}


def predict_ensemble(config: ml_collections.ConfigDict, params: PyTree, audio: Any, frames: Any,
                     motion: Any = None) -> dict[str, jax.Array]:
  """The seed ensemble's probabilities: every output of `predict` averaged over the replicas.

  Args:
    config: the run config the params belong to.
    params: seed-stacked params, a leading `[S]` axis on every leaf (as `checkpoint.restore_params`
      returns them).
    audio, frames, motion: one clip or a batch (see `validate_inputs`).

  Returns:
    As `predict`. The video-level gates and the segment probabilities are both means, so thresholding them
    is the ensemble's official evaluation.
  """
  audio, frames, motion, batched = validate_inputs(config, audio, frames, motion)
  outputs = _apply_ensemble(params, audio, frames, motion, model_key=_model_key(config))
  return outputs if batched else {key: value[0] for key, value in outputs.items()}


# --- thresholds and events ------------------------------------------------------------------------


def class_thresholds(threshold: float | Sequence[float] | Mapping[str, float] | None,
                     name: str = "threshold") -> np.ndarray:
  """`[C]` float32 thresholds from one number, `[C]` numbers, or {class name: value} (others 0.5)."""
  if threshold is None:
    threshold = DEFAULT_THRESHOLD
  if isinstance(threshold, Mapping):
    values = np.full(annotations.NUM_CLASSES, DEFAULT_THRESHOLD, np.float64)
    unknown = [label for label in threshold if label not in annotations.CLASS_INDEX]
    if unknown:
      raise InputError(f"{name} names unknown classes {unknown}: use LLP class names such as "
                       f"{', '.join(annotations.CLASSES[:3])} (see avvp_jax.data.annotations.CLASSES).")
    for label, value in threshold.items():
      values[annotations.CLASS_INDEX[label]] = value
  else:
    try:
      values = np.broadcast_to(np.asarray(threshold, np.float64), (annotations.NUM_CLASSES,))
    except (TypeError, ValueError):
      raise InputError(f"{name} {threshold!r} is neither one number nor {annotations.NUM_CLASSES} numbers (one "
                       "per class): pass e.g. 0.5, a [25] array or {'Speech': 0.4}.") from None
  if not (np.all(np.isfinite(values)) and np.all((values >= 0.0) & (values <= 1.0))):
    shown = dict(threshold) if isinstance(threshold, Mapping) else np.asarray(threshold).tolist()
    raise InputError(f"{name} must lie in [0, 1] (got {shown}): pass probabilities.")
  return values.astype(np.float32)


def segment_predictions(probs: Mapping[str, Any], threshold: Any = DEFAULT_THRESHOLD,
                        gate_threshold: Any = None) -> tuple[np.ndarray, np.ndarray]:
  """0/1 second-level predictions (bool `[N, T, C]` audio, visual) from `predict`'s probabilities.

  With one threshold for segments and gate (the default 0.5 included) this is exactly
  `metrics.segment_predictions`, what evaluation scores; per-class values apply the same rule per class.
  `gate_threshold=None` uses `threshold` for the gate too (the official rule uses one value for both).
  """
  segment_t = class_thresholds(threshold, "threshold")
  gate_t = segment_t if gate_threshold is None else class_thresholds(gate_threshold, "gate_threshold")
  arrays = [np.asarray(probs[key], np.float32)
            for key in ("segment_audio", "segment_visual", "audio_filter", "visual_filter")]
  if np.all(segment_t == segment_t[0]) and np.all(gate_t == segment_t[0]):
    pred_audio, pred_visual = metrics.segment_predictions(*arrays, threshold=float(segment_t[0]))
    return np.asarray(pred_audio) > 0, np.asarray(pred_visual) > 0
  seg_audio, seg_visual, filter_audio, filter_visual = arrays
  pred_audio = (seg_audio >= segment_t) & (filter_audio >= gate_t)[:, None, :]
  pred_visual = (seg_visual >= segment_t) & (filter_visual >= gate_t)[:, None, :]
  return pred_audio, pred_visual


def _runs(positive_NxTxC: np.ndarray) -> tuple[np.ndarray, ...]:
  """Maximal runs of True along T: (clip, class, start, end) int arrays, end exclusive, row-major order."""
  x_NxCxT = np.asarray(positive_NxTxC, bool).transpose(0, 2, 1).astype(np.int8)
  edges = np.diff(np.pad(x_NxCxT, ((0, 0), (0, 0), (1, 1))), axis=-1)  # [N, C, T + 1]: +1 rise, -1 fall
  clip, cls, start = np.nonzero(edges == 1)
  end = np.nonzero(edges == -1)[2]  # same (clip, class) order, so the k-th fall closes the k-th rise
  return clip, cls, start, end


def _run_means(prob_NxTxC: np.ndarray, clip, cls, start, end) -> np.ndarray:
  """Mean of `prob` over each run's seconds, from cumulative sums (float64)."""
  cumulative = np.concatenate([np.zeros_like(prob_NxTxC[:, :1], np.float64),
                               np.cumsum(prob_NxTxC, axis=1, dtype=np.float64)], axis=1)  # [N, T + 1, C]
  return (cumulative[clip, end, cls] - cumulative[clip, start, cls]) / (end - start)


def extract_events(pred_audio: Any, pred_visual: Any, segment_audio_prob: Any = None,
                   segment_visual_prob: Any = None) -> list[list[Event]]:
  """Events of every clip from 0/1 predictions (the official event rule; see the module docstring).

  Args:
    pred_audio, pred_visual: `[N, T, C]` 0/1 (or bool) second-level predictions.
    segment_audio_prob, segment_visual_prob: `[N, T, C]` probabilities for the scores; None: the 0/1
      values themselves (score 1.0, e.g. for ground truth).

  Returns:
    N lists of event dicts, ordered by onset, modality, class.
  """
  pred_audio = np.asarray(pred_audio) > 0
  pred_visual = np.asarray(pred_visual) > 0
  if pred_audio.ndim != 3 or pred_audio.shape != pred_visual.shape:
    raise InputError(f"pred_audio {pred_audio.shape} and pred_visual {pred_visual.shape} must both be [N, T, C].")
  prob_audio = pred_audio.astype(np.float32) if segment_audio_prob is None else np.asarray(segment_audio_prob)
  prob_visual = pred_visual.astype(np.float32) if segment_visual_prob is None else np.asarray(segment_visual_prob)
  streams = ((pred_audio, prob_audio), (pred_visual, prob_visual),
             (pred_audio & pred_visual, np.minimum(prob_audio, prob_visual)))
  parts = []
  for modality, (positive, prob) in enumerate(streams):
    clip, cls, start, end = _runs(positive)
    parts.append((clip, cls, start, end, np.full_like(clip, modality), _run_means(prob, clip, cls, start, end)))
  clip, cls, start, end, modality, score = (np.concatenate(column) for column in zip(*parts))
  order = np.lexsort((cls, modality, start, clip))  # by clip, then onset, modality, class
  events: list[list[Event]] = [[] for _ in range(pred_audio.shape[0])]
  for i in order:
    events[clip[i]].append({
        "modality": MODALITIES[modality[i]],
        "label": annotations.CLASSES[cls[i]] if pred_audio.shape[2] == annotations.NUM_CLASSES else int(cls[i]),
        "onset": float(start[i]) * SECONDS_PER_SEGMENT,
        "offset": float(end[i]) * SECONDS_PER_SEGMENT,
        "score": float(score[i]),
    })
  return events


def events_from_probabilities(probs: Mapping[str, Any], threshold: Any = DEFAULT_THRESHOLD,
                              gate_threshold: Any = None) -> list[list[Event]]:
  """Events of every clip of a batch of `predict` probabilities (each `[N, ...]`)."""
  pred_audio, pred_visual = segment_predictions(probs, threshold, gate_threshold)
  return extract_events(pred_audio, pred_visual, probs["segment_audio"], probs["segment_visual"])


def video_labels(probs: Mapping[str, Any], threshold: Any = DEFAULT_THRESHOLD) -> list[list[dict[str, Any]]]:
  """Per clip, the classes whose whole-video probability is >= `threshold`, as {label, score, audio, visual}
  (score: `video` probability; audio, visual: the video-level probability of each modality), by score."""
  video = np.asarray(probs["video"], np.float32)
  keep = video >= class_thresholds(threshold, "threshold")
  out: list[list[dict[str, Any]]] = [[] for _ in range(video.shape[0])]
  clip, cls = np.nonzero(keep)
  order = np.lexsort((cls, -video[clip, cls], clip))
  audio, visual = np.asarray(probs["audio"]), np.asarray(probs["visual"])
  for i in order:
    n, c = clip[i], cls[i]
    out[n].append({"label": annotations.CLASSES[c], "score": float(video[n, c]),
                   "audio": float(audio[n, c]), "visual": float(visual[n, c])})
  return out


# --- the parser object ----------------------------------------------------------------------------


class Parser:
  """A trained model (or a seed ensemble of replicas) ready for inference: `predict` and `parse`.

  Attributes:
    config: the run config (`config.model` rebuilds the model).
    params: one model's params, or with `seeds` the seed-stacked params (`[S, ...]`) of an ensemble.
    seeds: None for one model; the replicas' seeds for an ensemble, whose probabilities are averaged.
    source: where they were loaded from (None when built from memory).
  """

  def __init__(self, config: ml_collections.ConfigDict, params: PyTree, source: str | None = None, *,
               seeds: Sequence[int] | None = None):
    self.config = config
    self.params = params
    self.seeds = None if seeds is None else [int(s) for s in seeds]
    self.source = source

  @property
  def input_dims(self) -> dict[str, int]:
    """Feature widths the model takes: {"audio": Da, "frames": Df, "motion": Dm (0: no motion)}."""
    return {key: int(value) for key, value in self.config.model.input_dims.items()}

  @property
  def uses_motion(self) -> bool:
    return self.input_dims.get("motion", 0) > 0

  def predict(self, audio: Any, frames: Any, motion: Any = None) -> dict[str, np.ndarray]:
    """Probabilities of one clip or a batch (see the module docstring), as numpy float32 arrays."""
    predict_fn = predict if self.seeds is None else predict_ensemble
    return jax.device_get(predict_fn(self.config, self.params, audio, frames, motion))

  def parse(self, audio: Any, frames: Any, motion: Any = None, *, threshold: Any = DEFAULT_THRESHOLD,
            gate_threshold: Any = None) -> list[Event] | list[list[Event]]:
    """Events of one clip (a list of event dicts) or of a batch (a list of such lists).

    Args:
      audio, frames, motion: one clip or a batch (see `validate_inputs`).
      threshold: segment threshold: one number, `[C]` numbers, or {class name: value} (others 0.5).
      gate_threshold: video-level gate threshold, same forms; None: the same as `threshold` (official).
    """
    batched = np.ndim(audio) == 3
    probs = self.predict(audio, frames, motion)
    if not batched:
      probs = {key: value[None] for key, value in probs.items()}
    events = events_from_probabilities(probs, threshold, gate_threshold)
    return events if batched else events[0]


def load_parser(path: str | os.PathLike[str], seed: int | None = None) -> Parser:
  """A `Parser` from a training workdir (its best save, else its latest), a step folder of one, or a
  params-only checkpoint folder (`checkpoint.save_params_checkpoint`, e.g. a converted official HAN).

  Args:
    path: the workdir or checkpoint folder.
    seed: for a multi-seed run, the seed of the one replica to use; None: the seed ensemble (the mean of
      the replicas' probabilities). A 1-seed run has one model either way.

  Raises:
    InputError: when `path` holds no checkpoint avvp_jax can read, or `seed` is not one of its replicas.
  """
  from avvp_jax import checkpoint  # pylint: disable=g-import-not-at-top  (orbax, only when loading)
  from avvp_jax import state as state_lib  # pylint: disable=g-import-not-at-top
  path = os.path.abspath(os.path.expanduser(os.fspath(path)))
  config, params = checkpoint.restore_params(path)
  seeds = state_lib.run_seeds(config)
  if seed is not None or len(seeds) == 1:
    chosen = seeds[0] if seed is None else seed
    params = checkpoint.select_seed(config, params, chosen)
    logging.info("Loaded %s/%s params (seed %d) from %s.", config.model.encoder, config.model.decoder,
                 chosen, path)
    return Parser(config, params, source=path)
  logging.info("Loaded the %s/%s ensemble of seeds %s from %s.", config.model.encoder, config.model.decoder,
               ", ".join(map(str, seeds)), path)
  return Parser(config, params, source=path, seeds=seeds)


# --- timelines ------------------------------------------------------------------------------------

AUDIO_COLOR = "#1f77b4"  # blue
VISUAL_COLOR = "#ff7f0e"  # orange
OVERLAP_COLOR = "#2ca02c"  # green outline, hatched: audio-visual
PLOT_DPI = 100
_LABEL_WIDTH_IN = 1.9  # class names on the left of each clip's first panel
_PANEL_WIDTH_IN = 5.0
_HEADER_IN = 0.55  # figure title and legend
_CLIP_TITLE_IN = 0.35  # per clip, above its panels: the panel titles
_CLIP_FOOTER_IN = 0.5  # per clip, below its panels: the seconds axis
_ROW_IN = 0.32  # per class row


def _timeline_rows(clip: Mapping[str, Any]) -> list[str]:
  """Classes shown for a clip: those in its predicted or true events, in class order (may be empty)."""
  labels = {e["label"] for e in clip["events"]} | {e["label"] for e in (clip.get("truth") or [])}
  return [c for c in annotations.CLASSES if c in labels]


def timeline_figure_size(clips: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
  """(width, height) in pixels of `plot_timelines(clips)`'s picture."""
  with_truth = any(clip.get("truth") is not None for clip in clips)
  width = _LABEL_WIDTH_IN + _PANEL_WIDTH_IN * (2 if with_truth else 1)
  height = _HEADER_IN + sum(_CLIP_TITLE_IN + _CLIP_FOOTER_IN + _ROW_IN * max(1, len(_timeline_rows(c))) for c in clips)
  return int(round(width * PLOT_DPI)), int(round(height * PLOT_DPI))


def _draw_events(ax, events: Sequence[Event], rows: list[str], num_seconds: int) -> None:
  """Draws one panel: per class row, the audio bar on top, the visual bar below, audio-visual hatched."""
  from matplotlib import patches  # pylint: disable=g-import-not-at-top
  index = {label: i for i, label in enumerate(rows)}
  for event in events:
    y = len(rows) - 1 - index[event["label"]]  # first class at the top
    onset, width = event["onset"], event["offset"] - event["onset"]
    if event["modality"] == "audio":
      ax.add_patch(patches.Rectangle((onset, y + 0.52), width, 0.38, facecolor=AUDIO_COLOR, edgecolor="none"))
    elif event["modality"] == "visual":
      ax.add_patch(patches.Rectangle((onset, y + 0.10), width, 0.38, facecolor=VISUAL_COLOR, edgecolor="none"))
    else:
      ax.add_patch(patches.Rectangle((onset, y + 0.05), width, 0.90, facecolor="none", edgecolor=OVERLAP_COLOR,
                                     hatch="///", linewidth=1.5))
  ax.set_xlim(0, num_seconds)
  ax.set_ylim(0, max(1, len(rows)))
  ax.set_xticks(range(num_seconds + 1))
  ax.set_yticks([len(rows) - 1 - i + 0.5 for i in range(len(rows))])
  ax.set_yticklabels([])
  ax.grid(axis="x", color="#dddddd", linewidth=0.6)
  ax.set_axisbelow(True)
  for y in range(1, len(rows)):
    ax.axhline(y, color="#bbbbbb", linewidth=0.6)
  ax.tick_params(labelsize=8)


def plot_timelines(path: str | os.PathLike[str], clips: Sequence[Mapping[str, Any]], *, title: str | None = None,
                   num_seconds: int = annotations.NUM_SECONDS) -> tuple[int, int]:
  """Writes a PNG of clips' event timelines; returns its (width, height) in pixels.

  Args:
    path: the PNG file to write (parent folders are created).
    clips: per clip a mapping with "clip" (its id, the panel title), "events" (predicted events) and
      optionally "truth" (ground-truth events, e.g. `extract_events` of the dense labels) or None.
    title: the figure title.
    num_seconds: the clips' length (the x axis).
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import patches  # pylint: disable=g-import-not-at-top
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  if not clips:
    raise InputError("plot_timelines got no clips: pass at least one clip to draw.")
  with_truth = any(clip.get("truth") is not None for clip in clips)
  width_px, height_px = timeline_figure_size(clips)
  fig = plt.figure(figsize=(width_px / PLOT_DPI, height_px / PLOT_DPI), dpi=PLOT_DPI)
  try:
    width_in, height_in = width_px / PLOT_DPI, height_px / PLOT_DPI
    panel_w = _PANEL_WIDTH_IN / width_in
    top = 1.0 - _HEADER_IN / height_in
    for clip in clips:
      rows = _timeline_rows(clip)
      block_in = _CLIP_TITLE_IN + _ROW_IN * max(1, len(rows)) + _CLIP_FOOTER_IN
      panel_h = _ROW_IN * max(1, len(rows)) / height_in
      bottom = top - (_CLIP_TITLE_IN / height_in) - panel_h
      panels = [("prediction", clip["events"])]
      if with_truth:
        truth = clip.get("truth")
        panels.append(("ground truth" if truth is not None else "ground truth (not available)", truth or []))
      for column, (name, events) in enumerate(panels):
        left = (_LABEL_WIDTH_IN + column * _PANEL_WIDTH_IN) / width_in + 0.01
        ax = fig.add_axes((left, bottom, panel_w - 0.03, panel_h))
        _draw_events(ax, events, rows, num_seconds)
        ax.set_title(f"{clip['clip']}: {name}", fontsize=9, loc="left")
        if column == 0:
          ax.set_yticklabels([r.replace("_", " ") for r in rows], fontsize=8)
        ax.set_xlabel("seconds", fontsize=8, labelpad=1)
        if not rows:
          ax.text(num_seconds / 2, 0.5, "no events", ha="center", va="center", fontsize=8, color="#777777")
      top -= block_in / height_in
    handles = [patches.Patch(facecolor=AUDIO_COLOR, label="audio"),
               patches.Patch(facecolor=VISUAL_COLOR, label="visual"),
               patches.Patch(facecolor="none", edgecolor=OVERLAP_COLOR, hatch="///", label="audio-visual (both)")]
    fig.legend(handles=handles, loc="upper right", ncol=3, fontsize=8, frameon=False,
               bbox_to_anchor=(1.0 - 0.02, 1.0 - 0.26 / height_in))
    if title:
      fig.suptitle(title, x=0.02, y=1.0 - 0.08 / height_in, ha="left", va="top", fontsize=10)
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    fig.savefig(os.fspath(path), dpi=PLOT_DPI, format="png")
  finally:
    plt.close(fig)
  return width_px, height_px


# --- features on disk, and the work of launch/parse.py --------------------------------------------

NPZ_FRAME_KEYS = ("frames", "visual")  # the frames of an .npz may be stored under either name


def detect_layout(features_dir: str | os.PathLike[str]) -> str:
  """The layout of a features folder ("official" or "clip_clap"), from its sub-folders."""
  from avvp_jax.data import features  # pylint: disable=g-import-not-at-top
  root = os.path.expanduser(os.fspath(features_dir))
  for layout, folders in features.LAYOUTS.items():
    if all(os.path.isdir(os.path.join(root, sub)) for sub, _ in folders.values()):
      return layout
  expected = "; ".join(f"{layout}: " + ", ".join(f"{sub}/" for sub, _ in folders.values())
                       for layout, folders in features.LAYOUTS.items())
  raise InputError(f"features folder {root!r} holds neither layout's sub-folders ({expected}): point --features "
                   "at the folder holding them, or at one .npz file.")


def _check_layout_fits(layout: str, config: ml_collections.ConfigDict, root: str) -> None:
  from avvp_jax.data import features  # pylint: disable=g-import-not-at-top
  shapes = features.output_shapes(layout, "pooled")
  have = {name: shapes[name][1] if name in shapes else 0 for name in ("audio", "frames", "motion")}
  want = {name: int(config.model.input_dims.get(name, 0)) for name in have}
  if have != want:
    raise InputError(f"features folder {root!r} holds {layout!r} features of widths {have} but the checkpoint's "
                     f"model takes {want}: pass features of the layout the model was trained on.")


def folder_clips(features_dir: str | os.PathLike[str], layout: str) -> list[str]:
  """Clip ids of a features folder: the `.npy` names of its audio sub-folder, sorted."""
  from avvp_jax.data import features  # pylint: disable=g-import-not-at-top
  folder = os.path.join(os.path.expanduser(os.fspath(features_dir)), features.LAYOUTS[layout]["audio"][0])
  return sorted(name[:-4] for name in os.listdir(folder) if name.endswith(".npy"))


def read_clip_list(path: str | os.PathLike[str]) -> list[str]:
  """Clip ids from a text file: the first field of every non-empty line (`#` starts a comment)."""
  path = os.path.expanduser(os.fspath(path))
  if not os.path.isfile(path):
    raise InputError(f"clip list {path!r} does not exist: pass a text file with one clip id per line.")
  with open(path) as f:
    ids = [line.split("#", 1)[0].split() for line in f]
  ids = [fields[0] for fields in ids if fields]
  if not ids:
    raise InputError(f"clip list {path!r} names no clip: write one clip id per line.")
  return ids


def _load_npz(path: str, config: ml_collections.ConfigDict) -> tuple[list[str], dict[str, np.ndarray]]:
  """(clip ids, {"audio", "frames", "motion"?} [N, ...]) from one .npz file."""
  try:
    with np.load(path, allow_pickle=False) as npz:
      arrays = {key: npz[key] for key in npz.files}
  except (ValueError, OSError, EOFError) as error:
    raise InputError(f"--features {path!r} is not a readable .npz file ({error}): save it with "
                     "numpy.savez(path, audio=..., frames=..., motion=...).") from None
  frame_key = next((key for key in NPZ_FRAME_KEYS if key in arrays), None)
  use_motion = int(config.model.input_dims.get("motion", 0)) > 0
  missing = [name for name, present in (("audio", "audio" in arrays), ("frames (or visual)", frame_key),
                                        ("motion", "motion" in arrays or not use_motion)) if not present]
  if missing:
    raise InputError(f"--features {path!r} has no {', '.join(missing)} array (it holds {sorted(arrays)}): save "
                     "the model's inputs as audio, frames and motion.")
  out = {"audio": arrays["audio"], "frames": arrays[frame_key]}
  if use_motion:
    out["motion"] = arrays["motion"]
  if config.get("data", {}).get("layout", "official") == "clip_clap" and out["audio"].shape[-2:-1] == (64,):
    from avvp_jax.data import features  # pylint: disable=g-import-not-at-top
    out["audio"] = features.clap_segments(out["audio"])  # CLAP feature maps -> 10 one-second segments
  stem = os.path.splitext(os.path.basename(path))[0]
  if out["audio"].ndim == 2:
    return [stem], {key: value[None] for key, value in out.items()}
  num_clips = out["audio"].shape[0] if out["audio"].ndim == 3 else 0
  if "clip_ids" in arrays:
    ids = [str(x) for x in np.asarray(arrays["clip_ids"]).reshape(-1)]
    if len(ids) != num_clips:
      raise InputError(f"--features {path!r} holds {len(ids)} clip_ids for {num_clips} clips: give one id per clip.")
  else:
    ids = [f"{stem}_{i}" for i in range(num_clips)]
  return ids, out


def ground_truth(labels_dir: str | os.PathLike[str] | None, split: str
                 ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """clip id -> (audio, visual) dense labels `[T, C]` of `split` ("val", "test" or "auto": both)."""
  splits = ("val", "test") if split == "auto" else ((split,) if split in ("val", "test") else ())
  if split not in ("auto", "val", "test", "none"):
    raise InputError(f"split {split!r} has no dense labels: use auto, val, test or none.")
  table: dict[str, tuple[np.ndarray, np.ndarray]] = {}
  for name in reversed(splits):  # val wins over test for a clip in both
    data = annotations.load_split(name, labels_dir or None)[0]
    for row, clip in enumerate(data.clip_ids):
      table[clip] = (data.audio_labels[row], data.visual_labels[row])
  return table


def _write_json_records(path: str):
  """A writer of records to `path`: a JSON list, or JSON lines for a `.jsonl` name. Yields a `write`."""
  lines = path.endswith(".jsonl")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  f = open(path + ".tmp", "w")  # pylint: disable=consider-using-with
  count = 0

  def write(record: dict[str, Any]) -> None:
    nonlocal count
    text = json.dumps(record)
    if lines:
      f.write(text + "\n")
    else:
      f.write(("[\n" if count == 0 else ",\n") + text)
    count += 1

  def close() -> None:
    if not lines:
      f.write("[]\n" if count == 0 else "\n]\n")
    f.close()
    os.replace(path + ".tmp", path)

  return write, close


def parse_files(checkpoint: str, features: str, out: str, *, clips: Sequence[str] | None = None,
                clip_list: str | None = None, batch_size: int = 64, threshold: Any = DEFAULT_THRESHOLD,
                gate_threshold: Any = None, plot: str | None = None, plot_dir: str | None = None,
                plot_clips: Sequence[str] | None = None, plot_max: int = 4, labels_dir: str | None = None,
                split: str = "auto", title: str | None = None, progress: bool | None = None,
                seed: int | None = None) -> str:
  """What `launch/parse.py` does: parse a features folder or .npz, write JSON records and timelines.

  Args:
    checkpoint: a workdir or checkpoint folder (`load_parser`).
    features: a features folder (either layout) or one .npz file (see launch/parse.py).
    out: the JSON file (a list of records; `.jsonl`: one record per line).
    clips, clip_list: the clips of a folder to parse (ids, or a file of ids); default all.
    batch_size: clips per jitted call (the last batch is padded, so one compilation serves every batch).
    threshold, gate_threshold: as in `Parser.parse`.
    plot: a PNG of the timelines of the plotted clips; plot_dir: a folder of one PNG per plotted clip.
    plot_clips: the ids to plot; default the first `plot_max` clips.
    labels_dir, split: the dense labels drawn as ground truth (split "auto", "val", "test" or "none").
    title: the title of the `plot` picture; default names the checkpoint (and says synthetic when the
      folder holds the synthetic data marker).
    progress: a tqdm bar; None: only on a terminal.
    seed: for a multi-seed checkpoint, the replica to use; None: the seed ensemble (`load_parser`).

  Returns:
    A one-line summary of what was written.
  """
  import concurrent.futures  # pylint: disable=g-import-not-at-top
  import tqdm  # pylint: disable=g-import-not-at-top
  from avvp_jax.data import features as features_lib  # pylint: disable=g-import-not-at-top
  from avvp_jax.data import synthetic  # pylint: disable=g-import-not-at-top

  if batch_size < 1:
    raise InputError(f"batch_size={batch_size} must be positive.")
  features = os.path.expanduser(os.fspath(features))
  if not os.path.exists(features):
    raise InputError(f"--features {features!r} does not exist: pass a features folder or a .npz file.")
  thresholds = class_thresholds(threshold, "threshold")
  gates = thresholds if gate_threshold is None else class_thresholds(gate_threshold, "gate_threshold")
  truth_table = ground_truth(labels_dir, split) if (plot or plot_dir) and split != "none" else {}
  parser = load_parser(checkpoint, seed=seed)
  config = parser.config

  synthetic_data = False
  if os.path.isdir(features):
    layout = detect_layout(features)
    _check_layout_fits(layout, config, features)
    synthetic_data = os.path.isfile(os.path.join(features, synthetic.MARKER_FILE))
    if clip_list:
      clip_ids = read_clip_list(clip_list)
    elif clips:
      clip_ids = [c.strip() for c in clips if c.strip()]
    else:
      clip_ids = folder_clips(features, layout)
    if not clip_ids:
      raise InputError(f"features folder {features!r} holds no clip (.npy files): extract features first.")
    npz_arrays = None
  else:
    if clips or clip_list:
      raise InputError("--clips and --clip_list select clips of a features folder, not of an .npz file.")
    clip_ids, npz_arrays = _load_npz(features, config)
    if not clip_ids:
      raise InputError(f"--features {features!r} holds no clip.")
  if len(set(clip_ids)) != len(clip_ids):
    raise InputError("the clip list names a clip more than once: give each clip once.")
  wanted_plots = list(plot_clips) if plot_clips else clip_ids[:max(plot_max, 0)]
  unknown = [c for c in wanted_plots if c not in set(clip_ids)]  # checked only when plotting
  if (plot or plot_dir) and unknown:
    raise InputError(f"plot_clips names clips that are not parsed: {unknown[:5]}: pick ids among the parsed clips.")
  plotted: dict[str, dict[str, Any]] = {}
  npz_rows = {clip: row for row, clip in enumerate(clip_ids)}
  plot_set = set(wanted_plots) if (plot or plot_dir) else set()

  def load_batch(ids: Sequence[str], pool) -> dict[str, np.ndarray]:
    if npz_arrays is not None:
      rows = [npz_rows[c] for c in ids]
      return {key: value[rows] for key, value in npz_arrays.items()}
    loaded = list(pool.map(lambda c: features_lib.load_clip(features, layout, "pooled", c), ids))
    return {key: np.stack([clip[key] for clip in loaded]) for key in loaded[0]}

  size = min(batch_size, len(clip_ids))
  batches = [clip_ids[i:i + size] for i in range(0, len(clip_ids), size)]
  write, close = _write_json_records(out)
  num_events = 0
  bar = tqdm.tqdm(total=len(clip_ids), unit="clip", disable=None if progress is None else not progress,
                  file=sys.stderr, dynamic_ncols=True)
  try:
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
      pending = pool.submit(load_batch, batches[0], pool) if npz_arrays is None else None
      for k, ids in enumerate(batches):
        batch = pending.result() if pending is not None else load_batch(ids, pool)
        if npz_arrays is None and k + 1 < len(batches):
          pending = pool.submit(load_batch, batches[k + 1], pool)  # read ahead while this batch runs
        pad = size - len(ids)
        if pad:  # one shape for every batch: one compilation
          batch = {key: np.concatenate([value, np.zeros((pad, *value.shape[1:]), value.dtype)])
                   for key, value in batch.items()}
        probs = parser.predict(batch["audio"], batch["frames"], batch.get("motion"))
        probs = {key: value[:len(ids)] for key, value in probs.items()}
        events = events_from_probabilities(probs, thresholds, gates)
        labels = video_labels(probs, gates)
        for clip, clip_events, clip_labels in zip(ids, events, labels):
          write({"clip": clip, "events": clip_events, "video_labels": clip_labels})
          num_events += len(clip_events)
          if clip in plot_set:
            plotted[clip] = {"clip": clip, "events": clip_events, "truth": None}
        bar.update(len(ids))
  finally:
    bar.close()
    close()
  written = [out]
  if plot or plot_dir:
    for clip, entry in plotted.items():
      if clip in truth_table:
        entry["truth"] = extract_events(*(x[None] for x in truth_table[clip]))[0]
    ordered = [plotted[c] for c in wanted_plots]
    note = "SYNTHETIC features" if synthetic_data else os.path.basename(os.path.normpath(features))
    if plot:
      plot_timelines(plot, ordered, title=title or f"{note}; model {config.model.encoder}/{config.model.decoder} "
                     f"({os.path.basename(os.path.normpath(checkpoint))})")
      written.append(plot)
    if plot_dir:
      for entry in ordered:
        plot_timelines(os.path.join(plot_dir, f"{entry['clip']}.png"), [entry], title=title or note)
      written.append(f"{len(ordered)} PNGs in {plot_dir}")
  return f"parsed {len(clip_ids)} clips ({num_events} events) with {parser.source}: wrote {', '.join(written)}"
