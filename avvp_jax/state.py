"""A run's replicas: the config check, the model, the optimizer, the train state and model application.

Seeds: a run trains `config.num_seeds` independent replicas (seeds `config.seed`, `config.seed + 1`, ...,
`run_seeds`). Every leaf of a `TrainState` (step, params, optimizer state, dropout key) has a leading seed
axis `[S]`, split over the mesh's seed axis (`avvp_jax.sharding`). Replica s is what `init(seed_s)` gives
alone: key(seed) splits into the params and dropout-stream keys, so a replica equals the run a separate
process with that seed would start.

`resolve_config` is where a run config is checked (every launcher and library entry calls it first):
bad values and an empty or wrongly laid out features folder are one-line InputErrors before any data
is built, `model.input_dims` follow `data.layout` unless set by hand, and fields the chosen model
never reads (`ignored_fields`) are one warning per process. The rest builds from a checked config:
`build_model`, `make_optimizer`, `create_train_state` / `abstract_train_state` (for restoring), and
`apply_model`, the one way training, evaluation, parsing and ensembles run a model on a batch.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Iterable, Mapping

from absl import logging
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh, NamedSharding

from avvp_jax import losses as losses_lib
from avvp_jax import models
from avvp_jax.models import han as han_lib
from avvp_jax.models import leap as leap_lib
from avvp_jax.models import link as link_lib
from avvp_jax.models import mmil as mmil_lib
from avvp_jax.models import mmpyramid as mmpyramid_lib
from avvp_jax import sharding
from avvp_jax.data import annotations
from avvp_jax.data import features as features_lib
from avvp_jax.data import pseudo_labels
from avvp_jax.data import simulated_teacher
from avvp_jax.data import synthetic as synthetic_lib
from avvp_jax.errors import InputError

PyTree = Any

# Batch entries the model reads; everything else (labels, mask, index) is for losses and metrics.
MODEL_INPUT_KEYS = ("audio", "frames", "motion")


class TrainState(flax.struct.PyTreeNode):
  """Everything a training step changes, for one replica; the trainer stacks S of them (`[S, ...]` leaves)."""

  step: jax.Array  # int32 scalar: number of steps taken
  params: PyTree
  opt_state: PyTree
  rng: jax.Array  # uint32 raw key data (`jax.random.key_data`) of the replica's dropout stream


def run_seeds(config: ml_collections.ConfigDict) -> list[int]:
  """The seeds of a run's replicas: `config.seed`, ..., `config.seed + config.num_seeds - 1`."""
  first = int(config.get("seed", 0))
  return [first + k for k in range(int(config.get("num_seeds", 1)))]


# --- the config ------------------------------------------------------------------------------------


def resolve_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """An unlocked copy of `config`, checked; raises InputError on values that cannot work."""
  config = ml_collections.ConfigDict(config.to_dict())
  if "num_seeds" not in config:  # configs written before seeds existed
    config.num_seeds = 1
  if config.num_seeds < 1:
    raise InputError(
        f"config.num_seeds={config.num_seeds} must be at least 1: set --config.num_seeds=1 for one "
        "run, N for N seeds."
    )
  data_devices = jax.device_count() // sharding.seed_axis_size(config.num_seeds)
  for name in ("batch_size", "eval_batch_size"):
    value = config[name]
    if value <= 0 or value % data_devices:
      raise InputError(
          f"config.{name}={value} must be a positive multiple of the {data_devices} devices of "
          f"the mesh's data axis: set --config.{name} to a multiple of {data_devices}."
      )
  models.resolve_dtype(config.compute_dtype, "config.compute_dtype")
  if config.num_epochs <= 0:
    raise InputError(f"config.num_epochs={config.num_epochs} must be positive.")
  _warn_ignored_fields(config)
  if (
      synthetic_lib.is_synthetic(config.data)
      and config.synthetic_label_embeddings
      and config.model.decoder == "leap"
      and config.model.leap.label_embeddings == "packaged"
  ):  # an explicitly chosen table is kept
    config.model.leap.label_embeddings = (
        config.synthetic_label_embeddings
    )  # recorded so in config.json
  if config.data.pseudo_labels == simulated_teacher.SIMULATED and not synthetic_lib.is_synthetic(
      config.data
  ):
    raise InputError(
        "config.data.pseudo_labels='simulated' exists only for the embedded synthetic data (it "
        "simulates a teacher from the set's hidden dense labels): with real features point it at "
        "VALOR's pseudo-label folder or at one made by launch/make_pseudo_labels.py."
    )
  needed = losses_lib.needs_pseudo_labels(config.loss)
  if needed and not config.data.pseudo_labels:
    raise InputError(
        f"config.loss.{needed[0]} is True but config.data.pseudo_labels is empty: give segment pseudo "
        "labels (VALOR's folder, one made by launch/make_pseudo_labels.py, or 'simulated' on the "
        f"embedded synthetic data), or set --config.loss.{'=False --config.loss.'.join(needed)}=False."
    )
  features_dir = config.data.features_dir
  if features_dir:
    if not os.path.isdir(os.path.expanduser(features_dir)):
      raise InputError(
          f"config.data.features_dir {features_dir!r} does not exist: point it at the folder "
          "holding the LLP feature folders, or leave it empty for the embedded synthetic data."
      )
    features_lib.check_layout_folders(features_dir, config.data.layout)  # before TFDS is asked
  _input_dims_from_layout(config)
  return config


_logged_layout_dims: set[str] = set()  # layouts whose input dims were logged in this process


def _input_dims_from_layout(config: ml_collections.ConfigDict) -> None:
  """`config.model.input_dims` of `config.data.layout` when all three are still the official
  layout's defaults (configs/common.py) and another layout is chosen: `clip_clap` gives audio 768,
  frames 768 and no motion stream. Dims set by hand (any of the three changed) are kept; the data
  check names a mismatch.
  """
  layout = config.data.layout
  if layout == "official":
    return
  features_lib.check_layout(layout, config.data.frames)
  official = _layout_input_dims("official")
  if dict(config.model.input_dims) != official:
    return
  dims = _layout_input_dims(layout)
  config.model.input_dims = ml_collections.ConfigDict(dims)
  if layout in _logged_layout_dims:  # once per process, though resolve_config runs more than once
    return
  _logged_layout_dims.add(layout)
  logging.info(
      "config.model.input_dims from the %r layout: %s (set --config.model.input_dims.* to "
      "override).",
      layout,
      ", ".join(f"{name} {value}" for name, value in dims.items()),
  )


def _layout_input_dims(layout: str) -> dict[str, int]:
  """{audio, frames, motion} widths of `layout` (0: no such stream), as config.model.input_dims."""
  shapes = features_lib.output_shapes(layout)
  return {name: int(shapes[name][1]) if name in shapes else 0 for name in MODEL_INPUT_KEYS}


# --- fields the chosen model does not read ---------------------------------------------------------

# The sections of config.model each encoder / decoder / refiner name reads (models.build_model
# splats them), and the module each section is splatted into: its attribute defaults are
# configs/common.py's defaults.
_SECTIONS_READ = {
    "encoder": {"han": ("han",), "mmpyramid": ("mmpyramid",), "link": ("link", "han")},
    "decoder": {"mmil": ("mmil",), "leap": ("leap",)},
    "refiner": {"none": (), "plsim": ("plsim",)},
}
_SECTION_MODULES = {
    "han": han_lib.HANEncoder,
    "mmpyramid": mmpyramid_lib.MMPyramidEncoder,
    "link": link_lib.LINKEncoder,
    "mmil": mmil_lib.MMILDecoder,
    "leap": leap_lib.LEAPDecoder,
    "plsim": link_lib.PLSIM,
}
# The (field=value, ...) lists already warned about in this process.
_warned_ignored: set[tuple[str, ...]] = set()


def sections_read(model_config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The sections of `config.model` its encoder, decoder and refiner read (unknown names: none)."""
  read = []
  for part, table in _SECTIONS_READ.items():
    read.extend(table.get(model_config.get(part, "none"), ()))
  return tuple(dict.fromkeys(read))


def ignored_fields(config: ml_collections.ConfigDict) -> list[str]:
  """Dotted names of the `config.model` fields that were changed but that the model never reads.

  A field counts as changed when its value differs from the default of the module its section is
  splatted into (which are configs/common.py's defaults), e.g. `model.leap.label_embeddings` set for
  HAN + MMIL, whose model builds no LEAP decoder. Sections of unknown modules are skipped
  (`build_model` names those).
  """
  read = set(sections_read(config.model))
  ignored = []
  for section, module_class in _SECTION_MODULES.items():
    if section in read or section not in config.model:
      continue
    defaults = {
        f.name: f.default
        for f in dataclasses.fields(module_class)
        if f.init and f.default is not dataclasses.MISSING
    }
    for key, value in config.model[section].items():
      if key in defaults and value != defaults[key]:
        ignored.append(f"model.{section}.{key}")
  return ignored


def _warn_ignored_fields(config: ml_collections.ConfigDict) -> None:
  """One warning per process for a run whose config sets fields the chosen model never reads."""
  model = config.model
  ignored = tuple(
      f"{name}={model[name.split('.')[1]][name.split('.')[2]]!r}" for name in ignored_fields(config)
  )
  if not ignored or ignored in _warned_ignored:
    return
  _warned_ignored.add(ignored)
  logging.warning(
      "config field(s) %s are ignored: the model (encoder %s, decoder %s, refiner %s) reads only "
      "%s of config.model's sections; choose a model that uses them or leave them out.",
      ", ".join(ignored),
      model.encoder,
      model.decoder,
      model.get("refiner", "none"),
      ", ".join(f"model.{s}" for s in sections_read(model)),
  )


def num_train_epochs(config: ml_collections.ConfigDict) -> int:
  """The epochs this run trains: the reduced synthetic recipe without features, else `num_epochs`."""
  if synthetic_lib.is_synthetic(config.data) and config.synthetic_num_epochs > 0:
    return config.synthetic_num_epochs
  return config.num_epochs


# --- model and optimizer ---------------------------------------------------------------------------


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
  """The model of `config.model`, computing in `config.compute_dtype` (params stay float32)."""
  return models.build_model(config.model, dtype=config.compute_dtype)


def dummy_inputs(
    config: ml_collections.ConfigDict, batch_size: int = 1
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
  """Zero (audio, frames, motion) of the shapes the config's data produce, for initialisation."""
  num_seconds = annotations.NUM_SECONDS
  dims = config.model.input_dims
  frame_steps = (
      num_seconds * features_lib.FRAMES_PER_SECOND if config.data.frames == "raw" else num_seconds
  )
  audio = jnp.zeros((batch_size, num_seconds, dims.audio), jnp.float32)
  frames = jnp.zeros((batch_size, frame_steps, dims.frames), jnp.float32)
  motion = jnp.zeros((batch_size, num_seconds, dims.motion), jnp.float32) if dims.motion else None
  return audio, frames, motion


def peak_learning_rate(config: ml_collections.ConfigDict) -> float:
  """`config.synthetic_learning_rate` on the embedded synthetic data when set, else `optimizer.learning_rate`."""
  if synthetic_lib.is_synthetic(config.data) and config.synthetic_learning_rate > 0:
    return float(config.synthetic_learning_rate)
  return float(config.optimizer.learning_rate)


def learning_rate_schedule(
    config: ml_collections.ConfigDict, steps_per_epoch: int
) -> optax.Schedule:
  """Adam's learning rate per step: PyTorch's per-epoch StepLR (x decay_factor every N epochs)."""
  opt = config.optimizer
  peak = peak_learning_rate(config)
  if opt.decay_every_epochs <= 0:
    return optax.constant_schedule(peak)
  return optax.exponential_decay(
      peak,
      transition_steps=opt.decay_every_epochs * steps_per_epoch,
      decay_rate=opt.decay_factor,
      staircase=True,
  )


def make_optimizer(
    config: ml_collections.ConfigDict, steps_per_epoch: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optimizer of `config.optimizer` and its learning-rate schedule."""
  opt = config.optimizer
  schedule = learning_rate_schedule(config, max(steps_per_epoch, 1))
  if opt.name == "adam":
    tx = optax.adam(schedule)
  elif opt.name == "adamw":
    tx = optax.adamw(schedule, weight_decay=opt.weight_decay)
  elif opt.name == "sgd":
    tx = optax.sgd(schedule)
  else:
    raise InputError(
        f"config.optimizer.name {opt.name!r} is unknown: use 'adam', 'adamw' or 'sgd'."
    )
  if opt.grad_clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(opt.grad_clip_norm), tx)
  return tx, schedule


def _init_fn(
    config: ml_collections.ConfigDict, model: nn.Module, tx: optax.GradientTransformation
) -> Callable[[jax.Array], TrainState]:
  """`init(seed) -> TrainState` of one replica: key(seed) splits into (init, dropout-stream) keys."""

  def init(seed: jax.Array) -> TrainState:
    init_rng, dropout_rng = jax.random.split(jax.random.key(seed))
    params_rng, init_dropout_rng = jax.random.split(init_rng)
    variables = model.init(
        {"params": params_rng, "dropout": init_dropout_rng}, *dummy_inputs(config), train=False
    )
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        rng=jax.random.key_data(dropout_rng),
    )

  return init


def _with_sharding(abstract: PyTree, target: NamedSharding) -> PyTree:
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=target), abstract)


def create_train_state(
    config: ml_collections.ConfigDict,
    model: nn.Module,
    tx: optax.GradientTransformation,
    mesh: Mesh,
    seeds: Iterable[int],
) -> tuple[TrainState, PyTree]:
  """Initialises one replica per seed on `mesh`; returns (state, abstract state with shardings).

  Every leaf has a leading `[S]` axis split over the mesh's seed axis; replica s is what `init(seeds[s])`
  gives alone. Shapes come from `jax.eval_shape`, the state from `jax.jit(vmap(init), out_shardings=...)`,
  compiled without XLA's backend optimisations: it runs once, and the dozens of unrolled threefry
  initialisers otherwise take longer to optimise than to run.
  """
  init = jax.vmap(_init_fn(config, model, tx))
  seeds = jnp.asarray(list(seeds), jnp.int32)
  abstract = jax.eval_shape(init, seeds)
  compiled = (
      jax.jit(init, out_shardings=sharding.seed_sharded(mesh))
      .lower(seeds)
      .compile({"xla_backend_optimization_level": 0})
  )
  return compiled(seeds), _with_sharding(abstract, sharding.seed_sharded(mesh))


def abstract_train_state(config: ml_collections.ConfigDict, mesh: Mesh | None = None) -> TrainState:
  """Shapes, dtypes and shardings of a full `[num_seeds]`-stacked train state of `config`, for restoring."""
  num_seeds = len(run_seeds(config))
  mesh = sharding.make_mesh(num_seeds=num_seeds) if mesh is None else mesh
  tx, _ = make_optimizer(config, 1)
  init = jax.vmap(_init_fn(config, build_model(config), tx))
  abstract = jax.eval_shape(init, jax.ShapeDtypeStruct((num_seeds,), jnp.int32))
  return _with_sharding(abstract, sharding.seed_sharded(mesh))


def abstract_params(config: ml_collections.ConfigDict, mesh: Mesh | None = None) -> PyTree:
  """Shapes, dtypes and shardings of the `[num_seeds]`-stacked params of `config`'s model, for restoring."""
  return abstract_train_state(config, mesh).params


# --- applying the model ----------------------------------------------------------------------------


def apply_model(
    model: nn.Module,
    params: PyTree,
    batch: Mapping[str, jax.Array],
    *,
    train: bool,
    rng: jax.Array | None = None,
) -> dict[str, jax.Array]:
  """Runs the model on a batch's `audio`, `frames` and (if present) `motion`; outputs are float32.

  In training the weak labels (and VALOR's segment pseudo labels, when the batch has them) go to the model
  as `video_label` / `segment_labels`; only LINK's PLSIM reads them, every other model ignores them.

  The compute dtype is the model's (`build_model` passes `config.compute_dtype`): with bfloat16 the
  Dense layers and attention products run in bfloat16 while the params, softmaxes and outputs stay
  float32, so losses and metrics always see float32.
  """
  inputs = [batch.get(key) for key in MODEL_INPUT_KEYS]
  rngs = {"dropout": rng} if train else None
  guidance = {}
  if (
      train
  ):  # label guidance for models that use it at train time (LINK's PLSIM); never at evaluation
    guidance["video_label"] = batch["label"]
    if pseudo_labels.AUDIO_BATCH_KEY in batch and pseudo_labels.VISUAL_BATCH_KEY in batch:
      guidance["segment_labels"] = (
          batch[pseudo_labels.AUDIO_BATCH_KEY],
          batch[pseudo_labels.VISUAL_BATCH_KEY],
      )
  outputs = model.apply({"params": params}, *inputs, train=train, rngs=rngs, **guidance)
  return {key: value.astype(jnp.float32) for key, value in outputs.items()}
