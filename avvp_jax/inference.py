"""Inference with a trained model: checked inputs, probabilities of one model or a seed ensemble, a parser.

Library API (`load_parser`, `predict`, `predict_ensemble` and `Parser` are also exported from `avvp_jax`):

  parser = avvp_jax.load_parser("workdir/han")        # a workdir (its best save) or a checkpoint folder
  probs = parser.predict(audio, frames, motion)        # dict of probabilities (below), numpy
  events = parser.parse(audio, frames, motion)         # per clip: a list of event dicts (`avvp_jax.tasks.llp.events`)

  probs = avvp_jax.predict(config, params, audio, frames, motion)   # functional, jitted, jax.Arrays
  probs = avvp_jax.predict_ensemble(config, stacked_params, audio, frames, motion)  # [S, ...] params

  for job, probs in inference.predict_batches(parser.predict, read, jobs, 64):  # many clips: padded
    ...                                                 # batches, each read while the one before runs

Multi-seed workdirs (`config.num_seeds > 1`): `load_parser(path)` gives the seed ensemble, whose
probabilities are the mean of the replicas' (what `launch/evaluate.py` scores as "ensemble");
`load_parser(path, seed=k)` gives the replica trained with seed k alone.

Inputs are one clip (`audio [T, Da]`, `frames [T, Df]` or raw `[8T, Df]`, `motion [T, Dm]`) or a batch of
clips (a leading `[B]` axis on each). Models without a motion stream (CLIP/CLAP features,
`config.model.input_dims.motion == 0`) take `motion=None`. Every input is checked before any computation
(rank, sizes against the model's `config.model.input_dims`, floating dtype, finite values) and a problem
raises `avvp_jax.errors.InputError` with one sentence naming the culprit and the fix.

`predict` returns the model's own outputs (`avvp_jax.models`) as float32 probabilities, a leading `[B]` axis
only when the inputs had one:

  video_prob                  [B, C]     whole-video score of each class, thresholded at 0.5 by
                                         the official evaluation but not bounded by 1: MMIL's
                                         attentive pooling lies in [0, 2), LEAP's is 0 or 1
                                         (`avvp_jax.tasks.llp.events.VIDEO_SCORE`)
  audio_prob, visual_prob     [B, C]     video-level probability per modality, in [0, 1]
  segment_audio_prob          [B, T, C]  per-second audio probability
  segment_visual_prob         [B, T, C]  per-second visual probability
  audio_filter_prob, visual_filter_prob  [B, C]  the video-level probabilities the model's official evaluation
                                         gates segment predictions with (HAN/MMIL and LEAP: `video_prob`)

The model is applied as training and evaluation apply it: `avvp_jax.state.apply_model(..., train=False)`,
mapped over an ensemble's replicas with `avvp_jax.sharding.map_seeds`.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import os
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from avvp_jax.tasks.llp import events as events_lib
from avvp_jax.tasks.llp import metrics
from avvp_jax import sharding
from avvp_jax.tasks.llp import features as features_lib
from avvp_jax.errors import InputError

PyTree = Any
Job = TypeVar("Job")  # what names one batch of clips for `predict_batches`' reader

# The model outputs `predict` returns (the model's own names; see the module docstring).
OUTPUT_KEYS = (
    "video_prob",
    "audio_prob",
    "visual_prob",
    "segment_audio_prob",
    "segment_visual_prob",
    "audio_filter_prob",
    "visual_filter_prob",
)


# --- the model of a config, cached ----------------------------------------------------------------


def _model_key(config: ml_collections.ConfigDict) -> str:
  """A hashable key of everything that defines the model: `config.model`, the compute dtype and the task's
  facts (`config.task` and the data layout its `Meta` reads)."""
  as_dict = lambda x: x.to_dict() if isinstance(x, ml_collections.ConfigDict) else dict(x)
  data = as_dict(config.data)
  return json.dumps(
      {
          "model": as_dict(config.model),
          "compute_dtype": config.compute_dtype,
          "task": config.get("task", "llp"),
          "data": {key: data[key] for key in ("layout", "frames") if key in data},
      },
      sort_keys=True,
      default=str,
  )


@functools.lru_cache(maxsize=16)
def _model_from_key(key: str) -> Any:
  """The model (a flax module) of a `_model_key`, built once (`state.build_model`)."""
  # flax only once a model is needed: `avvp_jax.load_parser` and the input checks resolve without it.
  from avvp_jax import state as state_lib  # pylint: disable=g-import-not-at-top  (flax: `import avvp_jax` stays light)

  spec = json.loads(key)
  return state_lib.build_model(ml_collections.ConfigDict(spec))


@functools.partial(jax.jit, static_argnames=("model_key", "num_seeds"))
def _apply(
    params: PyTree, batch: dict[str, jax.Array], *, model_key: str, num_seeds: int | None = None
) -> dict[str, jax.Array]:
  """The `OUTPUT_KEYS` of the model for a batch `[B, ...]`; with `num_seeds`, the mean over the replicas.

  Args:
    params: one model's params, or with `num_seeds` seed-stacked params (`[S, ...]` leaves).
    batch: `audio [B, T, Da]`, `frames [B, T or 8T, Df]` and, for models with a motion stream, `motion`.
    model_key: `_model_key(config)`.
    num_seeds: None for one model; S for an ensemble of S replicas.

  Returns:
    `OUTPUT_KEYS` -> float32 `[B, ...]`.
  """
  # flax only once a model is applied: `avvp_jax.load_parser` and the input checks resolve without it.
  from avvp_jax import state as state_lib  # pylint: disable=g-import-not-at-top  (flax: `import avvp_jax` stays light)

  from avvp_jax import tasks  # pylint: disable=g-import-not-at-top  (as state: `import avvp_jax` stays light)

  model = _model_from_key(model_key)
  input_keys = tasks.get(json.loads(model_key)["task"]).input_keys

  def one_replica(replica_params, replica_batch):
    outputs = state_lib.apply_model(
        model, replica_params, replica_batch, input_keys=input_keys, train=False
    )
    return {key: outputs[key] for key in OUTPUT_KEYS}

  if num_seeds is None:
    return one_replica(params, batch)
  outputs = sharding.map_seeds(one_replica, num_seeds, (0, None))(params, batch)
  return {key: jnp.mean(value, axis=0) for key, value in outputs.items()}


# --- input checks ---------------------------------------------------------------------------------


def _is_tracer(x: Any) -> bool:
  return isinstance(x, jax.core.Tracer)


def _as_array(x: Any, name: str) -> Any:
  if isinstance(x, (np.ndarray, jax.Array)):
    return x
  try:
    return np.asarray(x)
  except (TypeError, ValueError) as error:
    raise InputError(
        f"{name} could not be read as an array ({error}): pass a float32 numpy or jax array."
    ) from None


def _all_finite(x: Any) -> bool:
  if _is_tracer(x):
    return (
        True  # values are unknown while tracing: under jit/vmap only shapes and dtypes are checked
    )
  if isinstance(x, jax.Array):
    return bool(jnp.all(jnp.isfinite(x)))
  return bool(np.isfinite(x).all())


def validate_inputs(
    config: ml_collections.ConfigDict, audio: Any, frames: Any, motion: Any = None
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
    raise InputError(
        f"motion is None but this model has a motion stream of width {dims.motion}: pass the "
        f"[T, {dims.motion}] (or [B, T, {dims.motion}]) motion features."
    )
  if not use_motion and motion is not None:
    raise InputError(
        "motion was given but this model has no motion stream (config.model.input_dims.motion "
        "is 0, e.g. CLIP/CLAP features): pass motion=None."
    )
  named = {"audio": _as_array(audio, "audio"), "frames": _as_array(frames, "frames")}
  if use_motion:
    named["motion"] = _as_array(motion, "motion")
  widths = {
      "audio": int(dims.audio),
      "frames": int(dims.frames),
      "motion": int(dims.get("motion", 0)),
  }
  frames_per_second = features_lib.FRAMES_PER_SECOND

  ranks = {name: x.ndim for name, x in named.items()}
  if any(rank not in (2, 3) for rank in ranks.values()) or len(set(ranks.values())) != 1:
    shapes = ", ".join(f"{name} {tuple(x.shape)}" for name, x in named.items())
    raise InputError(
        f"inputs have shapes {shapes}: pass one clip as [T, D] arrays or a batch as [B, T, D] "
        "arrays, the same rank for every input."
    )
  batched = ranks["audio"] == 3
  for name, x in named.items():
    if not jnp.issubdtype(x.dtype, jnp.floating):
      raise InputError(f"{name} has dtype {x.dtype}: pass floating-point features (float32).")
  for name, x in named.items():
    if x.shape[-1] != widths[name]:
      raise InputError(
          f"{name} has feature width {x.shape[-1]} (shape {tuple(x.shape)}) but the model expects "
          f"{widths[name]} (config.model.input_dims.{name}): pass the features it was trained on."
      )
  num_seconds = named["audio"].shape[-2]
  if num_seconds < 1:
    raise InputError(
        f"audio has shape {tuple(named['audio'].shape)} with no seconds: pass [T, {widths['audio']}] "
        "features with T >= 1."
    )
  if named["frames"].shape[-2] not in (num_seconds, frames_per_second * num_seconds):
    raise InputError(
        f"frames have {named['frames'].shape[-2]} steps but audio has {num_seconds} seconds: pass "
        f"pooled frames [{num_seconds}, {widths['frames']}] or raw frames "
        f"[{frames_per_second * num_seconds}, {widths['frames']}]."
    )
  if use_motion and named["motion"].shape[-2] != num_seconds:
    raise InputError(
        f"motion has {named['motion'].shape[-2]} seconds but audio has {num_seconds}: pass "
        f"[{num_seconds}, {widths['motion']}] motion features."
    )
  if batched and len({x.shape[0] for x in named.values()}) != 1:
    sizes = ", ".join(f"{name} {x.shape[0]}" for name, x in named.items())
    raise InputError(
        f"inputs hold different numbers of clips ({sizes}): pass the same clips to every input."
    )
  for name, x in named.items():
    if not _all_finite(x):
      raise InputError(f"{name} holds NaN or infinite values: re-extract those clips' features.")

  def prepared(x):
    x = jnp.asarray(x, jnp.float32)
    return x if batched else x[None]

  return (
      prepared(named["audio"]),
      prepared(named["frames"]),
      prepared(named["motion"]) if use_motion else None,
      batched,
  )


# --- prediction -----------------------------------------------------------------------------------


def _predict(
    config: ml_collections.ConfigDict,
    params: PyTree,
    audio: Any,
    frames: Any,
    motion: Any,
    num_seeds: int | None,
) -> dict[str, jax.Array]:
  """Checks the inputs, applies `_apply`, and drops the batch axis the inputs did not have."""
  audio, frames, motion, batched = validate_inputs(config, audio, frames, motion)
  batch = {"audio": audio, "frames": frames}
  if motion is not None:
    batch["motion"] = motion
  outputs = _apply(params, batch, model_key=_model_key(config), num_seeds=num_seeds)
  return outputs if batched else {key: value[0] for key, value in outputs.items()}


def predict(
    config: ml_collections.ConfigDict, params: PyTree, audio: Any, frames: Any, motion: Any = None
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
    `OUTPUT_KEYS` -> float32 jax.Array (see the module docstring), with the batch axis only when the inputs
    had one.
  """
  return _predict(config, params, audio, frames, motion, num_seeds=None)


def predict_ensemble(
    config: ml_collections.ConfigDict, params: PyTree, audio: Any, frames: Any, motion: Any = None
) -> dict[str, jax.Array]:
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
  num_seeds = int(jax.tree.leaves(params)[0].shape[0])
  return _predict(config, params, audio, frames, motion, num_seeds=num_seeds)


def _padded(batch: Mapping[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
  """`[b, ...]` arrays with `size - b` zero clips appended: `[size, ...]`."""
  return {
      key: np.concatenate([value, np.zeros((size - len(value), *value.shape[1:]), value.dtype)])
      for key, value in batch.items()
  }


def predict_batches(
    predict_fn: Callable[..., Mapping[str, Any]],
    read: Callable[[Job], Mapping[str, np.ndarray]],
    jobs: Sequence[Job],
    batch_size: int,
) -> Iterator[tuple[Job, dict[str, np.ndarray]]]:
  """A model's probabilities over many clips, a batch at a time, the next batch read while one runs.

  `read(job)` gives the features of b <= `batch_size` clips, `audio` / `frames` / (`motion`) `[b, ...]`
  (`avvp_jax.tasks.llp.batch_keys.FEATURE_KEYS`); it runs on a worker thread, one job ahead. Zero clips pad every
  batch to `batch_size`, so one compilation serves them all, and the padding's outputs are dropped.

  Args:
    predict_fn: `(audio, frames, motion or None) -> probabilities`, e.g. `Parser.predict`.
    read: the reader of one job's features.
    jobs: what to read, in order (e.g. lists of clip ids).
    batch_size: the padded batch size (at least the largest b).

  Yields:
    (job, its clips' probabilities: `OUTPUT_KEYS` -> numpy `[b, ...]`), in the order of `jobs`.
  """
  if not jobs:
    return
  with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
    pending = pool.submit(read, jobs[0])
    for k, job in enumerate(jobs):
      batch = pending.result()
      if k + 1 < len(jobs):
        pending = pool.submit(read, jobs[k + 1])
      num_clips = len(batch["audio"])
      padded = _padded(batch, batch_size)
      probs = predict_fn(padded["audio"], padded["frames"], padded.get("motion"))
      yield job, {key: np.asarray(value)[:num_clips] for key, value in probs.items()}


# --- the parser object ----------------------------------------------------------------------------


class Parser:
  """A trained model (or a seed ensemble of replicas) ready for inference: `predict` and `parse`.

  Attributes:
    config: the run config (`config.model` rebuilds the model).
    params: one model's params, or with `seeds` the seed-stacked params (`[S, ...]`) of an ensemble.
    seeds: None for one model; the replicas' seeds for an ensemble, whose probabilities are averaged.
    source: where they were loaded from (None when built from memory).
  """

  def __init__(
      self,
      config: ml_collections.ConfigDict,
      params: PyTree,
      source: str | None = None,
      *,
      seeds: Sequence[int] | None = None,
  ):
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
    """Probabilities of one clip or a batch (`OUTPUT_KEYS`; see the module docstring), as numpy float32."""
    predict_fn = predict if self.seeds is None else predict_ensemble
    return jax.device_get(predict_fn(self.config, self.params, audio, frames, motion))

  def parse(
      self,
      audio: Any,
      frames: Any,
      motion: Any = None,
      *,
      threshold: Any = metrics.OFFICIAL_THRESHOLD,
      gate_threshold: Any = None,
  ) -> list[events_lib.Event] | list[list[events_lib.Event]]:
    """Events of one clip (a list of event dicts) or of a batch (a list of such lists).

    Args:
      audio, frames, motion: one clip or a batch (see `validate_inputs`).
      threshold: segment threshold: one number, `[C]` numbers, or {class name: value} (others 0.5).
      gate_threshold: video-level gate threshold, same forms; None: the same as `threshold` (official).

    Returns:
      The events of `avvp_jax.tasks.llp.events.events_from_probabilities`: one list per clip, or one list for one clip.
    """
    batched = np.ndim(audio) == 3
    probs = self.predict(audio, frames, motion)
    if not batched:
      probs = {key: value[None] for key, value in probs.items()}
    events = events_lib.events_from_probabilities(probs, threshold, gate_threshold)
    return events if batched else events[0]


def load_parser(path: str | os.PathLike[str], seed: int | None = None) -> Parser:
  """A `Parser` from a training workdir (its best save, else its latest), a step folder of one, or a
  params-only checkpoint folder (`checkpoint.save_params_checkpoint`, e.g. a converted official HAN).

  Args:
    path: the workdir or checkpoint folder.
    seed: for a multi-seed run, the seed of the one replica to use; None: the seed ensemble (the mean of
      the replicas' probabilities). A 1-seed run has one model either way.

  Returns:
    The parser, its `source` the absolute path.

  Raises:
    InputError: when `path` holds no checkpoint avvp_jax can read, one of an AVE localizer (whose loader is
      `avvp_jax.load_localizer`), or `seed` is not one of its replicas.
  """
  # Orbax only when loading (predicting with params in memory never imports it); state (flax) as in `_apply`.
  from avvp_jax import checkpoint  # pylint: disable=g-import-not-at-top  (orbax, only when loading)
  from avvp_jax import state as state_lib  # pylint: disable=g-import-not-at-top  (flax: `import avvp_jax` stays light)

  path = os.path.abspath(os.path.expanduser(os.fspath(path)))
  source = checkpoint.resolve(path)
  task = checkpoint.checkpoint_config(source).get("task", "llp")
  if task != "llp":
    raise InputError(
        f"{path} holds an AVE localizer (task {task!r}), not an LLP parser: it parses no LLP events "
        "(AVE models load with avvp_jax.load_localizer)."
    )
  config, params = checkpoint.restore_params(source)
  seeds = state_lib.run_seeds(config)
  if seed is not None or len(seeds) == 1:
    chosen = seeds[0] if seed is None else seed
    params = checkpoint.select_seed(config, params, chosen)
    logging.info(
        "Loaded %s/%s params (seed %d) from %s.",
        config.model.encoder,
        config.model.decoder,
        chosen,
        path,
    )
    return Parser(config, params, source=path)
  logging.info(
      "Loaded the %s/%s ensemble of seeds %s from %s.",
      config.model.encoder,
      config.model.decoder,
      ", ".join(map(str, seeds)),
      path,
  )
  return Parser(config, params, source=path, seeds=seeds)
