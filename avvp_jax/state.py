"""A run's replicas: the config check, the model, the optimizer, the train state and model application.

Seeds: a run trains `config.num_seeds` independent replicas (seeds `config.seed`, `config.seed + 1`, ...,
`run_seeds`). Every leaf of a `TrainState` (step, params, optimizer state, dropout key) has a leading seed
axis `[S]`, split over the mesh's seed axis (`avvp_jax.sharding`). Replica s is what `init(seed_s)` gives
alone: key(seed) splits into the params and dropout-stream keys, so a replica equals the run a separate
process with that seed would start.

`resolve_config` is where a run config is checked, once per run (every launcher and library entry calls it
first): the generic fields here, the task's (`config.task`, `avvp_jax.tasks`) by the task, so bad values and
an empty or wrongly laid out features folder are one-line InputErrors before any data is built; fields the
chosen model never reads (`ignored_fields`) are one warning. The rest builds from a checked config:
`build_model` (sized by the task's `Meta`), `make_optimizer` (the task's recipe gives the peak learning rate),
`create_train_state` (or `train_state_init`, which compiles the initialisation only when asked) /
`abstract_train_state` (for restoring), and `apply_model`, the one way training,
evaluation, parsing and ensembles run a model on a batch. Nothing here knows a dataset.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Mapping, Sequence

from absl import logging
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh, NamedSharding

from avvp_jax import best_tracker
from avvp_jax import models
from avvp_jax import sharding
from avvp_jax import tasks
from avvp_jax.errors import InputError

PyTree = Any


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


# The optimizer fields of configs/common.py that older configs lack, with the values those runs trained with.
_OPTIMIZER_BACKFILL = {
    "decay_epochs": (),
    "schedule": "step",
    "warmup_epochs": 0,
    "final_lr_divisor": 100.0,
    "b1": 0.9,
    "b2": 0.999,
    "eps": 1e-8,
}
SCHEDULES = ("step", "warmup_cosine")
# Fields of a section added later (a dotted key names a subsection's field, filled when the subsection is
# there), with the value every run before them had.
_SECTION_BACKFILL = {
    "model": {
        "han.cross_attention": True,
        "mmil.visual_dropout": 0.0,
        "mmil.filter": "union",
        "mmil.class_token_dim": 0,
        "mmil.class_token_dropout": 0.25,
    },
    # evaluation batches were streamed every time; AVE's standard splits (before cross-modal matching)
    "data": {"eval_in_memory_mb": 0, "ave.splits": "standard", "refined_labels": ""},
    "loss": {
        "cmm_margin": 2.0,
        "audio_weight": 1.0,
        "visual_weight": 1.0,
        "video_weight": 1.0,
        "nce_weight": 1.0,
        "nce_temperature": 0.2,
        "nce_smoothing": 0.1,
        "denoise": False,
        "noise_ratios": "",
        "denoise_warm_up": "official",
        "denoise_warm_up_epochs": 0.9,
        "ma_contrastive_weight": 1.0,
        "ma_temperature": 0.2,
        "ma_smoothing": 0.1,
        "ma_drop_clears_video": True,
        "cvcm_weight": 0.85,
        "cvcm_temperature": 1.0,
        "cvcm_warm_up_epochs": 2,
        "cvcm_warm_up_audio_smoothing": 1.0,
        "cvcm_warm_up_visual_smoothing": 0.9,
        "cvcm_mix": True,
        "uwav_soft_targets": True,
        "uwav_soft_mixup": True,
        "uwav_reweight": "inverse_freq",
        "uwav_positive_weight": 0.5,
        "uwav_negative_weight": 1.0,
        "uwav_mixup_weight": 1.0,
        "uwav_mixup_alpha": 1.7,
    },
}


def backfill(config: ml_collections.ConfigDict) -> None:
  """Adds, in place, the fields of configs written before they existed, with the values those runs had."""
  if "num_seeds" not in config:
    config.num_seeds = 1
  if "task" not in config:
    config.task = tasks.DEFAULT
  if "evals" not in config:
    config.evals = ml_collections.ConfigDict()
  if "final_report" not in config:
    config.final_report = ""
  optimizer = config.get("optimizer")
  if optimizer is not None:
    # Before the schedule option and Adam's moment fields: step decay, optax's (= PyTorch's) Adam defaults.
    for key, value in _OPTIMIZER_BACKFILL.items():
      if key not in optimizer:
        optimizer[key] = value
  for section, fields in _SECTION_BACKFILL.items():
    part = config.get(section)
    for key, value in fields.items() if part is not None else ():
      head, _, leaf = key.rpartition(".")
      holder = part.get(head) if head else part
      if holder is not None and leaf not in holder:
        holder[leaf] = value
  if "checkpoint" in config and "best_rule" not in config.checkpoint:
    config.checkpoint.best_rule = best_tracker.TIES_KEEP_LATER  # the tracker's only rule then


def backfilled(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """An unlocked copy of `config` with `backfill`'s fields (a stored config of an older run reads as it ran)."""
  config = ml_collections.ConfigDict(config.to_dict())
  backfill(config)
  return config


def resolve_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """An unlocked copy of `config`, checked; raises InputError on values that cannot work.

  The generic fields are checked here (seeds, batch sizes against the mesh, dtype, epochs), the task's own by
  its `check_config` (which may fill derived fields), the model sections by the model registry (the model is
  built once, without parameters: `build_model` names unknown modules and keys; fields the chosen model never
  reads are one warning here). An empty `checkpoint.best_metric` becomes the task's default.
  """
  config = backfilled(config)
  task = tasks.of(config)
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
  _check_optimizer(config.optimizer)
  if "checkpoint" in config:
    best_tracker.check_rule(config.checkpoint.best_rule)
  _warn_ignored_fields(config)
  task.check_config(config)
  eval_splits = task.meta(config).eval_splits
  if config.final_report and config.final_report not in eval_splits:
    raise InputError(
        f"config.final_report={config.final_report!r} is not an evaluation split: use "
        f"{' or '.join(map(repr, eval_splits))}, or '' for no final report."
    )
  build_model(config)  # unknown module names and section keys fail here, before any data is read
  if "checkpoint" in config and not config.checkpoint.get("best_metric"):
    config.checkpoint.best_metric = task.default_best_metric
  return config


def run_summary(config: ml_collections.ConfigDict) -> str:
  """One line of a resolved run config for the console (the whole config goes to the workdir's config.json):
  task, model modules, data (the task's `data_line`, and the layout where the config has one), seeds,
  epochs (the task's recipe) and batch size.
  """
  model = config.get("model") or {}
  modules = "/".join(str(model[key]) for key in ("encoder", "decoder", "refiner") if key in model)
  data = tasks.of(config).data_line(config)
  layout = (config.get("data") or {}).get("layout")
  if layout:
    data += f", {layout} layout"
  seeds = run_seeds(config)
  epochs = num_train_epochs(config)
  return (
      f"task {config.task}, model {modules or '?'} on {data}; seed{'s' if len(seeds) > 1 else ''} "
      f"{', '.join(map(str, seeds))}, {epochs} epoch{'s' if epochs != 1 else ''}, batch {config.batch_size}"
  )


# --- fields the chosen model does not read ---------------------------------------------------------


def ignored_fields(config: ml_collections.ConfigDict) -> list[str]:
  """Dotted names of the `config.model` fields that were changed but that the model never reads.

  A field counts as changed when its value differs from the default of the module its section is
  splatted into (which are configs/common.py's defaults), e.g. `model.leap.label_embeddings` set for
  HAN + MMIL, whose model builds no LEAP decoder. Sections of unknown modules are skipped
  (`build_model` names those).
  """
  read = set(models.sections_read(config.model))
  ignored = []
  for section, module_class in models.SECTION_MODULES.items():
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
  """One warning for a run whose config sets fields the chosen model never reads."""
  model = config.model
  ignored = [
      f"{name}={model[name.split('.')[1]][name.split('.')[2]]!r}" for name in ignored_fields(config)
  ]
  if not ignored:
    return
  logging.warning(
      "config field(s) %s are ignored: the model (encoder %s, decoder %s, refiner %s) reads only "
      "%s of config.model's sections; choose a model that uses them or leave them out.",
      ", ".join(ignored),
      model.encoder,
      model.decoder,
      model.get("refiner", "none"),
      ", ".join(f"model.{s}" for s in models.sections_read(model)),
  )


def num_train_epochs(config: ml_collections.ConfigDict) -> int:
  """The epochs this run trains: the task's recipe (e.g. a reduced one on synthetic data)."""
  return tasks.of(config).recipe(config).num_epochs


# --- model and optimizer ---------------------------------------------------------------------------


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
  """The model of `config.model` for its task's data, computing in `config.compute_dtype` (params stay
  float32)."""
  return models.build_model(config.model, tasks.of(config).meta(config), dtype=config.compute_dtype)


def dummy_inputs(config: ml_collections.ConfigDict, batch_size: int = 1) -> list[Any]:
  """Zeros of the model's positional inputs (the task's `input_keys` order; a stream the data lack: None)
  of the shapes the config's data produce, `[batch_size, ...]`, for initialisation and benchmarks.
  """
  task = tasks.of(config)
  batch = task.dummy_batch(task.meta(config), batch_size)
  return [batch.get(key) for key in task.input_keys]


def peak_learning_rate(config: ml_collections.ConfigDict) -> float:
  """The peak learning rate of the task's recipe (e.g. `config.synthetic_learning_rate` on synthetic data)."""
  return tasks.of(config).recipe(config).learning_rate


def _check_optimizer(opt: ml_collections.ConfigDict) -> None:
  """The schedule and Adam fields of `config.optimizer` that cannot work, as one-line InputErrors."""
  if opt.schedule not in SCHEDULES:
    raise InputError(
        f"config.optimizer.schedule {opt.schedule!r} is unknown: use 'step' (StepLR / MultiStepLR per "
        "epoch) or 'warmup_cosine' (linear warm-up, then cosine per epoch)."
    )
  if opt.schedule == "warmup_cosine":
    if opt.warmup_epochs < 0:
      raise InputError(f"config.optimizer.warmup_epochs={opt.warmup_epochs} must be 0 or more.")
    if opt.final_lr_divisor < 1:
      raise InputError(
          f"config.optimizer.final_lr_divisor={opt.final_lr_divisor} must be at least 1 (the cosine "
          "ends at learning_rate / final_lr_divisor)."
      )
  if not (0 <= opt.b1 < 1 and 0 <= opt.b2 < 1) or opt.eps <= 0:
    raise InputError(
        f"config.optimizer b1={opt.b1}, b2={opt.b2}, eps={opt.eps}: Adam needs 0 <= b1, b2 < 1 and "
        "eps > 0."
    )


def warmup_cosine_rate(
    epoch: jax.Array | int,
    peak: float,
    warmup_epochs: int,
    num_epochs: int,
    final_lr_divisor: float,
) -> jax.Array:
  """The learning rate of 1-based `epoch` (of `num_epochs`): `epoch / warmup_epochs * peak` while `epoch <
  warmup_epochs`, then a cosine from `peak` (at `warmup_epochs`) to `peak / final_lr_divisor` (at
  `num_epochs`). This is VALOR's `lr_warm_up_cos_anneal` (Franklin905/VALOR `main_avvp.py`, set before
  each epoch with cur_epoch = 1, 2, ...; its `lr_min` is our peak / final_lr_divisor). Where `num_epochs ==
  warmup_epochs` the official code divides by zero at the last epoch; here that epoch runs at `peak`.
  """
  epoch = jnp.asarray(epoch, jnp.float32)
  low = peak / final_lr_divisor
  progress = (epoch - warmup_epochs) / max(num_epochs - warmup_epochs, 1)
  cosine = low + 0.5 * (peak - low) * (1.0 + jnp.cos(progress * jnp.pi))
  warmup = epoch / max(warmup_epochs, 1) * peak
  return jnp.where(epoch < warmup_epochs, warmup, cosine)


def learning_rate_schedule(
    config: ml_collections.ConfigDict, steps_per_epoch: int
) -> optax.Schedule:
  """The learning rate per step, constant within an epoch (the official codes set it per epoch).

  `config.optimizer.schedule`:
    "step":          PyTorch's StepLR (x decay_factor every `decay_every_epochs`; 0: constant), or its
                     MultiStepLR (x decay_factor after each epoch of `decay_epochs`, when given);
    "warmup_cosine": `warmup_cosine_rate` of the epoch (1-based), over the run's epochs (the task's recipe:
                     the reduced one on the synthetic data).
  """
  opt = config.optimizer
  peak = peak_learning_rate(config)
  if opt.schedule == "warmup_cosine":
    num_epochs = num_train_epochs(config)
    return lambda step: warmup_cosine_rate(
        step // steps_per_epoch + 1, peak, int(opt.warmup_epochs), num_epochs, opt.final_lr_divisor
    )
  milestones = tuple(opt.get("decay_epochs", ()))
  if milestones:
    if any(int(e) <= 0 for e in milestones) or list(milestones) != sorted(set(milestones)):
      raise InputError(
          f"config.optimizer.decay_epochs={milestones} must be increasing positive epochs, e.g. (60, 120)."
      )
    return optax.piecewise_constant_schedule(
        peak, {int(epoch) * steps_per_epoch: opt.decay_factor for epoch in milestones}
    )
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
  moments = dict(b1=opt.b1, b2=opt.b2, eps=opt.eps)
  if opt.name == "adam":
    tx = optax.adam(schedule, **moments)
  elif opt.name == "adamw":  # PyTorch's AdamW: decoupled decay lr * weight_decay * param
    tx = optax.adamw(schedule, weight_decay=opt.weight_decay, **moments)
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

  inputs = dummy_inputs(config)

  def init(seed: jax.Array) -> TrainState:
    init_rng, dropout_rng = jax.random.split(jax.random.key(seed))
    params_rng, init_dropout_rng = jax.random.split(init_rng)
    variables = model.init(
        {"params": params_rng, "dropout": init_dropout_rng}, *inputs, train=False
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


def train_state_init(
    config: ml_collections.ConfigDict,
    model: nn.Module,
    tx: optax.GradientTransformation,
    mesh: Mesh,
    seeds: Iterable[int],
) -> tuple[Callable[[], TrainState], PyTree]:
  """(`make()` -> the initial state, its abstract state with shardings), as `create_train_state`; only
  `make()` compiles and runs the initialisation, so a resumed run (restored into the abstract state) skips it.
  """
  init = jax.vmap(_init_fn(config, model, tx))
  seeds = jnp.asarray(list(seeds), jnp.int32)
  abstract = jax.eval_shape(init, seeds)

  def make() -> TrainState:
    compiled = (
        jax.jit(init, out_shardings=sharding.seed_sharded(mesh))
        .lower(seeds)
        .compile({"xla_backend_optimization_level": 0})
    )
    return compiled(seeds)

  return make, _with_sharding(abstract, sharding.seed_sharded(mesh))


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
  make, abstract = train_state_init(config, model, tx, mesh, seeds)
  return make(), abstract


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
    input_keys: Sequence[str],
    train: bool,
    rng: jax.Array | None = None,
    guidance: Mapping[str, Any] | None = None,
) -> dict[str, jax.Array]:
  """Runs the model on a batch's `input_keys` (the task's; an absent stream is None); outputs are float32.

  `guidance` (training only: the task's `guidance(batch)`, e.g. LLP's weak and segment pseudo labels) goes to
  the model as keyword inputs; models that do not read it ignore it.

  The compute dtype is the model's (`build_model` passes `config.compute_dtype`): with bfloat16 the
  Dense layers and attention products run in bfloat16 while the params, softmaxes and outputs stay
  float32, so losses and metrics always see float32.
  """
  inputs = [batch.get(key) for key in input_keys]
  rngs = {"dropout": rng} if train else None
  outputs = model.apply({"params": params}, *inputs, train=train, rngs=rngs, **(guidance or {}))
  return {key: value.astype(jnp.float32) for key, value in outputs.items()}
