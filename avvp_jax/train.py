"""Training: state, the data-parallel train step, and `train_and_evaluate(config, workdir)`.

Seeds: a run trains `config.num_seeds` independent replicas (seeds `config.seed`, `config.seed + 1`, ...)
in one jitted step. Every leaf of the train state (step, params, optimizer state, dropout key) has a
leading seed axis `[S]`, the per-replica step is mapped over it (`map_seeds`: `jax.vmap` for several
seeds, the plain step on the one row for S = 1), and every replica reads its own batches (`[S, B, ...]`,
row s in the order a 1-seed run with seed s would see). Replica s therefore is the run a separate process
with seed s would train: same initialisation, dropout stream and data order. A 1-seed run uses the same
state layout, checkpoints and reports with S = 1.

Parallelism is `jax.jit` over a 2-D mesh `("seed", "data")` of every device of every host (`make_mesh`):
the state is split along its seed axis (`P("seed")`), each batch along its seed and clip axes
(`P("seed", "data")`), and XLA inserts the gradient all-reduce over "data". The seed axis has
gcd(num_seeds, devices per host) devices, so a GPU or a TPU slice runs seeds side by side while every
host keeps all seeds of its own clips. The loss is the mean over the global batch, so a step on N devices
equals the step on one device with the same global batch. Each host reads its own slice of every global
batch (`avvp_jax.data.pipeline`), and `global_batch` assembles the global `jax.Array` with
`jax.make_array_from_process_local_data`.

A run resumes automatically from `WORKDIR/checkpoints` (see `avvp_jax.checkpoint` for the layout): step,
params, optimizer state, dropout keys and the data position are restored, and the data order and the
per-step dropout keys (`fold_in(key, step)`) depend only on the seed, the epoch and the step, so a resumed
run continues exactly as an uninterrupted one would. Each replica keeps its own best state (by its own
validation `config.checkpoint.best_metric`); the best save holds them all, each from its own best epoch, and
the trainer keeps them in device memory (a second copy of the train state) to merge later improvements.

Synthetic data: with `config.data.features_dir` empty the embedded LLP-structured synthetic dataset is
used with a reduced recipe (`config.synthetic_num_epochs` epochs, and the synthetic set's own training
size), logged as "SYNTHETIC data: ..."; with real features the config's recipe applies in full.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from absl import logging
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from avvp_jax import checkpoint as checkpoint_lib
from avvp_jax import losses as losses_lib
from avvp_jax.data import annotations
from avvp_jax.data import pseudo_labels
from avvp_jax.data import synthetic as synthetic_lib
from avvp_jax.errors import InputError

Batch = dict[str, Any]
PyTree = Any

SEED_AXIS = "seed"
DATA_AXIS = "data"
# Batch entries that go to the device; everything else (clip ids, strings) stays on the host.
MODEL_INPUT_KEYS = ("audio", "frames", "motion")
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class NonFiniteLossError(RuntimeError):
  """The training loss became NaN or infinite; the message names the step and the batch's clips."""


class TrainState(flax.struct.PyTreeNode):
  """Everything a training step changes, for one replica; the trainer stacks S of them (`[S, ...]` leaves)."""
  step: jax.Array  # int32 scalar: number of steps taken
  params: PyTree
  opt_state: PyTree
  rng: jax.Array  # uint32 raw key data (`jax.random.key_data`) of the replica's dropout stream


run_seeds = checkpoint_lib.run_seeds  # the seeds of a run's replicas: seed, ..., seed + num_seeds - 1


# --- mesh and global batches -----------------------------------------------------------------------


def seed_axis_size(num_seeds: int, devices: Iterable[jax.Device] | None = None) -> int:
  """Devices along the mesh's seed axis: gcd(num_seeds, devices of one host among `devices`)."""
  devices = jax.devices() if devices is None else list(devices)
  per_host = sum(d.process_index == devices[0].process_index for d in devices)
  return math.gcd(int(num_seeds), per_host)


def make_mesh(devices: Iterable[jax.Device] | None = None, num_seeds: int = 1) -> Mesh:
  """The `("seed", "data")` mesh over `devices` (default: every device of every host).

  The seed axis has `seed_axis_size(num_seeds)` devices, the data axis the rest. Device `[s, d]` is
  `devices[d * seeds + s]`: a host's devices (contiguous in `jax.devices()`) form whole columns, so each
  host holds every seed of its own data slice and feeds only its own clips.
  """
  devices = jax.devices() if devices is None else list(devices)
  seeds = seed_axis_size(num_seeds, devices)
  grid = np.empty(len(devices), dtype=object)
  grid[:] = devices
  return Mesh(grid.reshape(-1, seeds).T, (SEED_AXIS, DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  """`[B, ...]`: evaluation batches, the same clips for every seed."""
  return NamedSharding(mesh, P(DATA_AXIS))


def seed_sharded(mesh: Mesh) -> NamedSharding:
  """`[S, ...]`: the train state and per-seed values."""
  return NamedSharding(mesh, P(SEED_AXIS))


def seed_data_sharded(mesh: Mesh) -> NamedSharding:
  """`[S, B, ...]`: training batches, one row of clips per seed."""
  return NamedSharding(mesh, P(SEED_AXIS, DATA_AXIS))


def device_batch(batch: Mapping[str, Any]) -> Batch:
  """The numeric entries of a host batch (drops strings and object arrays)."""
  out = {}
  for key, value in batch.items():
    value = np.asarray(value)
    if value.dtype.kind in "fiub":
      out[key] = value
  return out


def global_batch(mesh: Mesh, host_batch: Mapping[str, Any], *, seeds: bool = False) -> Batch:
  """Assembles the global batch from this host's slice of it.

  Args:
    mesh: from `make_mesh`.
    host_batch: this host's rows, `[B / process_count, ...]` per entry, or with `seeds`
      `[S, B / process_count, ...]` (training batches of S replicas).
    seeds: whether the entries have the leading seed axis.

  Returns:
    The numeric entries as global `jax.Array`s, the clip axis made of the hosts' slices in process order
    and split over the mesh's data axis (and the seed axis over the seed axis).
  """
  sharding = seed_data_sharded(mesh) if seeds else data_sharded(mesh)
  clip_axis = 1 if seeds else 0
  out = {}
  for key, value in device_batch(host_batch).items():
    shape = list(value.shape)
    shape[clip_axis] *= jax.process_count()
    out[key] = jax.make_array_from_process_local_data(sharding, value, tuple(shape))
  return out


# --- model and optimizer ---------------------------------------------------------------------------


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
  """The model of `config.model`, computing in `config.compute_dtype` (params stay float32)."""
  from avvp_jax import models  # pylint: disable=g-import-not-at-top
  if config.compute_dtype not in COMPUTE_DTYPES:
    raise InputError(f"config.compute_dtype {config.compute_dtype!r} is unknown: use one of "
                     f"{sorted(COMPUTE_DTYPES)}.")
  return models.build_model(config.model, dtype=config.compute_dtype)


def dummy_inputs(config: ml_collections.ConfigDict, batch_size: int = 1
                 ) -> tuple[jax.Array, jax.Array, jax.Array | None]:
  """Zero (audio, frames, motion) of the shapes the config's data produce, for initialisation."""
  num_seconds = annotations.NUM_SECONDS
  dims = config.model.input_dims
  frame_steps = num_seconds * 8 if config.data.get("frames", "pooled") == "raw" else num_seconds
  audio = jnp.zeros((batch_size, num_seconds, dims.audio), jnp.float32)
  frames = jnp.zeros((batch_size, frame_steps, dims.frames), jnp.float32)
  motion = jnp.zeros((batch_size, num_seconds, dims.motion), jnp.float32) if dims.motion else None
  return audio, frames, motion


def peak_learning_rate(config: ml_collections.ConfigDict) -> float:
  """`config.synthetic_learning_rate` on the embedded synthetic data when set, else `optimizer.learning_rate`."""
  if is_synthetic(config) and config.get("synthetic_learning_rate", 0.0) > 0:
    return float(config.synthetic_learning_rate)
  return float(config.optimizer.learning_rate)


def learning_rate_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
  """Adam's learning rate per step: PyTorch's per-epoch StepLR (x decay_factor every N epochs)."""
  opt = config.optimizer
  peak = peak_learning_rate(config)
  if opt.decay_every_epochs <= 0:
    return optax.constant_schedule(peak)
  return optax.exponential_decay(peak, transition_steps=opt.decay_every_epochs * steps_per_epoch,
                                 decay_rate=opt.decay_factor, staircase=True)


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int
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
    raise InputError(f"config.optimizer.name {opt.name!r} is unknown: use 'adam', 'adamw' or 'sgd'.")
  if opt.grad_clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(opt.grad_clip_norm), tx)
  return tx, schedule


def _init_fn(config: ml_collections.ConfigDict, model: nn.Module, tx: optax.GradientTransformation
             ) -> Callable[[jax.Array], TrainState]:
  """`init(seed) -> TrainState` of one replica: key(seed) splits into (init, dropout-stream) keys."""
  def init(seed: jax.Array) -> TrainState:
    init_rng, dropout_rng = jax.random.split(jax.random.key(seed))
    params_rng, init_dropout_rng = jax.random.split(init_rng)
    variables = model.init({"params": params_rng, "dropout": init_dropout_rng}, *dummy_inputs(config),
                           train=False)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      rng=jax.random.key_data(dropout_rng))
  return init


def _with_sharding(abstract: PyTree, sharding: NamedSharding) -> PyTree:
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), abstract)


def create_train_state(config: ml_collections.ConfigDict, model: nn.Module, tx: optax.GradientTransformation,
                       mesh: Mesh, seeds: Iterable[int]) -> tuple[TrainState, PyTree]:
  """Initialises one replica per seed on `mesh`; returns (state, abstract state with shardings).

  Every leaf has a leading `[S]` axis split over the mesh's seed axis; replica s is what `init(seeds[s])`
  gives alone. Shapes come from `jax.eval_shape`, the state from `jax.jit(vmap(init), out_shardings=...)`,
  compiled without XLA's backend optimisations: it runs once, and the dozens of unrolled threefry
  initialisers otherwise take longer to optimise (20 s for the MM-Pyramid + LEAP micro model on a CPU)
  than to run.
  """
  init = jax.vmap(_init_fn(config, model, tx))
  seeds = jnp.asarray(list(seeds), jnp.int32)
  abstract = jax.eval_shape(init, seeds)
  compiled = jax.jit(init, out_shardings=seed_sharded(mesh)).lower(seeds).compile(
      {"xla_backend_optimization_level": 0})
  return compiled(seeds), _with_sharding(abstract, seed_sharded(mesh))


def abstract_train_state(config: ml_collections.ConfigDict, mesh: Mesh | None = None) -> TrainState:
  """Shapes, dtypes and shardings of a full `[num_seeds]`-stacked train state of `config`, for restoring."""
  num_seeds = len(run_seeds(config))
  mesh = make_mesh(num_seeds=num_seeds) if mesh is None else mesh
  tx, _ = make_optimizer(config, 1)
  init = jax.vmap(_init_fn(config, build_model(config), tx))
  abstract = jax.eval_shape(init, jax.ShapeDtypeStruct((num_seeds,), jnp.int32))
  return _with_sharding(abstract, seed_sharded(mesh))


def abstract_params(config: ml_collections.ConfigDict, mesh: Mesh | None = None) -> PyTree:
  """Shapes, dtypes and shardings of the `[num_seeds]`-stacked params of `config`'s model, for restoring."""
  return abstract_train_state(config, mesh).params


# --- steps -----------------------------------------------------------------------------------------


def apply_model(model: nn.Module, params: PyTree, batch: Mapping[str, jax.Array], *, train: bool,
                rng: jax.Array | None = None) -> dict[str, jax.Array]:
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
  if train:  # label guidance for models that use it at train time (LINK's PLSIM); never at evaluation
    guidance["video_label"] = batch["label"]
    if pseudo_labels.AUDIO_BATCH_KEY in batch and pseudo_labels.VISUAL_BATCH_KEY in batch:
      guidance["segment_labels"] = (batch[pseudo_labels.AUDIO_BATCH_KEY], batch[pseudo_labels.VISUAL_BATCH_KEY])
  outputs = model.apply({"params": params}, *inputs, train=train, rngs=rngs, **guidance)
  return {key: value.astype(jnp.float32) for key, value in outputs.items()}


def make_train_step(config: ml_collections.ConfigDict, model: nn.Module, tx: optax.GradientTransformation
                    ) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
  """The pure train step of one replica, `(state, batch) -> (state, metrics)` (see `jit_train_step`).

  Dropout uses `fold_in(state.rng, state.step)`. `metrics` holds the loss, its terms and the gradient norm.
  """
  nan_at_step = config.debug.nan_loss_at_step

  def train_step(state: TrainState, batch: Batch):
    step_rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)

    def loss_fn(params):
      outputs = apply_model(model, params, batch, train=True, rng=step_rng)
      loss, terms = losses_lib.compute_loss(config.loss, outputs, batch)
      if nan_at_step >= 0:  # test hook, traced only when enabled
        loss = jnp.where(state.step == nan_at_step, jnp.nan, loss)
      return loss, terms

    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads),
               **{f"loss/{name}": value for name, value in terms.items()}}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step


def map_seeds(fn: Callable, num_seeds: int, in_axes: tuple[int | None, ...]) -> Callable:
  """`jax.vmap(fn, in_axes)` over the seed axis; for one seed, `fn` on row 0 with the axis put back.

  Both compute the same function. The one-seed form runs the plain program, which XLA's CPU backend runs
  faster than a size-1 vmap (HAN train step, batch 16: 61-65 ms against 72-77 ms; bench/bench_train.py).
  """
  if num_seeds > 1:
    return jax.vmap(fn, in_axes=in_axes)

  def one_seed(*args):  # reshapes: free bitcasts in XLA
    rows = [arg if axis is None else jax.tree.map(lambda x: x.reshape(x.shape[1:]), arg)
            for arg, axis in zip(args, in_axes)]
    return jax.tree.map(lambda x: x.reshape((1, *x.shape)), fn(*rows))

  return one_seed


def jit_train_step(train_step: Callable, mesh: Mesh, abstract_state: PyTree) -> Callable:
  """The step of all replicas at once: `train_step` mapped over the seed axis (`map_seeds`), jitted on `mesh`.

  `(state [S, ...], batch [S, B, ...]) -> (state, metrics [S])`. The state is not donated: with donation
  XLA's CPU backend copied every param and Adam moment at the step's entry (HAN, batch 16: 72-74 ms a step
  against 61-65 ms without; bench/bench_train.py). The caller rebinds `state`, which frees the old one.
  """
  state_sharding = jax.tree.map(lambda x: x.sharding, abstract_state)
  num_seeds = jax.tree.leaves(abstract_state)[0].shape[0]
  return jax.jit(map_seeds(train_step, num_seeds, (0, 0)),
                 in_shardings=(state_sharding, seed_data_sharded(mesh)),
                 out_shardings=(state_sharding, seed_sharded(mesh)))


@jax.jit
def _keep_best(improved: jax.Array, state: PyTree, best: PyTree) -> PyTree:
  """Per replica: `state` where `improved[s]`, else `best` (every leaf `[S, ...]`)."""
  def pick(new, old):
    return jnp.where(improved.reshape(improved.shape + (1,) * (new.ndim - 1)), new, old)
  return jax.tree.map(pick, state, best)


# --- logging ---------------------------------------------------------------------------------------


class SummaryWriter:
  """TensorBoard scalar summaries in a folder, through `tf.summary` (no `tensorboard` package needed).

  Only process 0 writes; elsewhere every call is a no-op.
  """

  def __init__(self, logdir: str):
    self._writer = None
    if jax.process_index() != 0:
      return
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from tensorflow.core.framework import summary_pb2  # pylint: disable=g-import-not-at-top
    self._tf = tf
    self._writer = tf.summary.create_file_writer(logdir)
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    metadata.data_class = summary_pb2.DATA_CLASS_SCALAR
    self._metadata = metadata.SerializeToString()

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    if self._writer is None:
      return
    with self._writer.as_default():
      for name, value in values.items():
        self._tf.summary.write(name, self._tf.constant(float(value), self._tf.float32), step=int(step),
                               metadata=self._metadata)

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None


def _format_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def format_metrics(metrics: Mapping[str, float]) -> str:
  return ", ".join(f"{key}={value:.2f}" for key, value in metrics.items())


# --- launcher support ------------------------------------------------------------------------------


def default_workdir(config_arg: str) -> str:
  """`./workdir/<config name>[_<preset>]` for a `--config` value such as `configs/leap.py:tiny`."""
  path, _, preset = config_arg.partition(":")
  name = os.path.splitext(os.path.basename(path))[0] or "run"
  if preset:
    name += "_" + "".join(c if c.isalnum() else "_" for c in preset)
  return os.path.join(".", "workdir", name)


def _quiet_orbax(record) -> bool:
  """absl log filter: Orbax's per-save INFO lines are left out (its warnings and errors stay)."""
  return record.levelno >= 30 or f"{os.sep}orbax{os.sep}" not in record.pathname


def setup_runtime(*, multihost: bool = False, coordinator_address: str | None = None,
                  num_processes: int | None = None, process_id: int | None = None) -> None:
  """Launcher start-up: hides accelerators from TensorFlow, joins the other hosts, logs the devices.

  With `multihost` (or `JAX_COORDINATOR_ADDRESS` in the environment) this calls
  `jax.distributed.initialize` before anything touches a device; on Cloud TPU pod slices it finds the
  coordinator itself, elsewhere pass the coordinator address, the number of processes and this process's
  id (or set them in the environment variables jax reads).
  """
  logging.get_absl_handler().addFilter(_quiet_orbax)
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.set_visible_devices([], "GPU")  # tf.data only: TF must not grab GPU memory
    tf.config.set_visible_devices([], "TPU")
  except (ImportError, RuntimeError, ValueError):
    pass
  if multihost or os.environ.get("JAX_COORDINATOR_ADDRESS"):
    kwargs = {key: value for key, value in dict(coordinator_address=coordinator_address,
                                                num_processes=num_processes, process_id=process_id).items()
              if value is not None}
    jax.distributed.initialize(**kwargs)
  logging.info("JAX %s: process %d of %d; %d local devices of %d: %s", jax.__version__, jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(),
               ", ".join(str(d) for d in jax.local_devices()))


# --- the training loop -----------------------------------------------------------------------------


def is_synthetic(config: ml_collections.ConfigDict) -> bool:
  return not config.data.features_dir


def resolve_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """An unlocked copy of `config`, checked; raises InputError on values that cannot work."""
  config = ml_collections.ConfigDict(config.to_dict())
  if "num_seeds" not in config:  # configs written before seeds existed
    config.num_seeds = 1
  if config.num_seeds < 1:
    raise InputError(f"config.num_seeds={config.num_seeds} must be at least 1: set --config.num_seeds=1 for one "
                     "run, N for N seeds.")
  data_devices = jax.device_count() // seed_axis_size(config.num_seeds)
  for name in ("batch_size", "eval_batch_size"):
    value = config[name]
    if value <= 0 or value % data_devices:
      raise InputError(f"config.{name}={value} must be a positive multiple of the {data_devices} devices of "
                       f"the mesh's data axis: set --config.{name} to a multiple of {data_devices}.")
  if config.compute_dtype not in COMPUTE_DTYPES:
    raise InputError(f"config.compute_dtype {config.compute_dtype!r} is unknown: use one of "
                     f"{sorted(COMPUTE_DTYPES)}.")
  if config.num_epochs <= 0:
    raise InputError(f"config.num_epochs={config.num_epochs} must be positive.")
  if (is_synthetic(config) and config.get("synthetic_label_embeddings", "")
      and config.model.leap.label_embeddings == "packaged"):  # an explicitly chosen table is kept
    config.model.leap.label_embeddings = config.synthetic_label_embeddings  # recorded so in config.json
  if config.data.pseudo_labels == synthetic_lib.SIMULATED and not is_synthetic(config):
    raise InputError("config.data.pseudo_labels='simulated' exists only for the embedded synthetic data (it "
                     "simulates a teacher from the set's hidden dense labels): with real features point it at "
                     "VALOR's pseudo-label folder or at one made by launch/make_pseudo_labels.py.")
  needed = losses_lib.needs_pseudo_labels(config.loss)
  if needed and not config.data.pseudo_labels:
    raise InputError(f"config.loss.{needed[0]} is True but config.data.pseudo_labels is empty: give segment pseudo "
                     "labels (VALOR's folder, one made by launch/make_pseudo_labels.py, or 'simulated' on the "
                     f"embedded synthetic data), or set --config.loss.{'=False --config.loss.'.join(needed)}=False.")
  features_dir = config.data.features_dir
  if features_dir and not os.path.isdir(os.path.expanduser(features_dir)):
    raise InputError(f"config.data.features_dir {features_dir!r} does not exist: point it at the folder "
                     "holding the LLP feature folders, or leave it empty for the embedded synthetic data.")
  return config


def num_train_epochs(config: ml_collections.ConfigDict) -> int:
  """The epochs this run trains: the reduced synthetic recipe without features, else `num_epochs`."""
  if is_synthetic(config) and config.synthetic_num_epochs > 0:
    return config.synthetic_num_epochs
  return config.num_epochs


class _Progress:
  """A tqdm bar on an interactive terminal (process 0), plain absl lines otherwise."""

  def __init__(self, total_steps: int, initial: int):
    self._bar = None
    if jax.process_index() == 0 and sys.stderr.isatty():
      try:
        import tqdm  # pylint: disable=g-import-not-at-top
        self._bar = tqdm.tqdm(total=total_steps, initial=initial, unit="step", dynamic_ncols=True)
      except ImportError:
        self._bar = None

  @property
  def interactive(self) -> bool:
    return self._bar is not None

  def update(self, n: int = 1) -> None:
    if self._bar is not None:
      self._bar.update(n)

  def write(self, line: str) -> None:
    if self._bar is not None:
      self._bar.set_postfix_str(line, refresh=True)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()


def _training_pseudo_labels(config: ml_collections.ConfigDict, filenames: Sequence[str]):
  """The segment pseudo labels of the training clips `filenames` named by `config.data.pseudo_labels`."""
  source = config.data.pseudo_labels
  if source != synthetic_lib.SIMULATED:
    weak = annotations.load_split("train", config.data.labels_dir or None)[0]
    row = {name: i for i, name in enumerate(weak.filenames)}
    weak_labels = weak.weak_labels[[row[name] for name in filenames]] if all(n in row for n in filenames) else None
    labels = pseudo_labels.load_pseudo_labels(source, filenames, weak_labels=weak_labels)
    logging.info("Segment pseudo labels for training: %s.", labels.describe())
    return labels
  data = synthetic_lib.SyntheticLLP(num_train_clips=config.data.synthetic_train_clips,
                                    seed=config.data.synthetic_seed, layout=config.data.layout,
                                    labels_dir=config.data.labels_dir or None)
  simulated = data.simulated_pseudo_labels(("train",))
  logging.info("%s", simulated.summary())
  audio, visual = simulated.labels["train"]
  row = {name: i for i, name in enumerate(data.split("train").filenames)}
  missing = [name for name in filenames if name not in row]
  if missing:
    raise InputError(f"{len(missing)} training clips of the synthetic build (e.g. {missing[0]}) are not in the "
                     "synthetic dataset the pseudo labels were simulated for: delete the stale build in "
                     "config.data.data_dir.")
  order = np.array([row[name] for name in filenames], np.int64)
  return pseudo_labels.PseudoLabels(clip_ids=tuple(annotations.clip_id(f) for f in filenames),
                                    audio=audio[order], visual=visual[order], weak_labels_checked=True,
                                    synthetic=True)  # simulated within the weak labels: none outside them


class TrainingData:
  """This host's view of the data of a run: per-epoch training batches and padded evaluation batches.

  A thin adapter over `avvp_jax.data.pipeline.prepare` (TFDS build + tf.data per-host batches) that also
  adds VALOR's segment pseudo labels to training batches when `config.data.pseudo_labels` is set and
  checks that the features match `config.model.input_dims`. Training batches carry a leading seed axis:
  row s is in the order of seed `run_seeds(config)[s]`, which depends only on (that seed, epoch, host),
  which makes resumption exact.
  """

  def __init__(self, config: ml_collections.ConfigDict, *, train: bool = True):
    from avvp_jax.data import pipeline  # pylint: disable=g-import-not-at-top  (TensorFlow)
    self.seeds = run_seeds(config)
    self._llp = pipeline.prepare(config.data, batch_size=config.batch_size,
                                 eval_batch_size=config.eval_batch_size, seed=config.seed)
    expected = dict(config.model.input_dims)
    if self._llp.input_dims != expected:
      raise InputError(f"the features have widths {self._llp.input_dims} but config.model.input_dims is "
                       f"{expected}: set --config.model.input_dims.<name> to match the features "
                       f"(layout {config.data.layout!r}).")
    self._pseudo_labels = None
    if train and config.data.pseudo_labels:
      self._pseudo_labels = _training_pseudo_labels(config, self._llp.filenames("train"))

  @property
  def description(self) -> str:
    return self._llp.description

  @property
  def synthetic(self) -> bool:
    return self._llp.synthetic

  @property
  def num_train_clips(self) -> int:
    return self._llp.num_train_clips

  @property
  def steps_per_epoch(self) -> int:
    return self._llp.steps_per_epoch

  def num_eval_clips(self, split: str) -> int:
    return self._llp.num_eval_clips(split)

  def train_clip_ids(self, index: np.ndarray) -> list[str]:
    return self._llp.train_clip_ids(index)

  def train_batches(self, epoch: int, skip: int = 0) -> Iterator[Batch]:
    """This host's training batches of `epoch` from batch `skip` on, `[S, B, ...]` per entry (one row per
    seed of the run; pseudo labels added when given)."""
    for batch in self._llp.seed_train_batches(self.seeds, epoch, skip):
      if self._pseudo_labels is not None:
        batch.update(self._pseudo_labels.batch(batch["index"]))
      yield batch

  def eval_batches(self, split: str) -> Iterator[Batch]:
    """This host's padded evaluation batches of `split` (`mask` 0 and `index` -1 on padding)."""
    return self._llp.eval_batches(split)


def _nonfinite_message(step: int, seed: int, clip_ids: list[str], value: float, num_seeds: int) -> str:
  shown = ", ".join(clip_ids[:8]) + (", ..." if len(clip_ids) > 8 else "")
  replica = f" of the replica with seed {seed}" if num_seeds > 1 else ""
  return (f"training loss{replica} is {value} at step {step} (0-based) on the batch of clips [{shown}]; the "
          "last good checkpoint is kept: lower the learning rate or check those clips' features.")


def _mean_std(values: np.ndarray, fmt: str) -> str:
  """`mean` for one value, `mean ± std` (sample std) for several."""
  values = np.asarray(values, np.float64)
  if values.size == 1:
    return format(float(values[0]), fmt)
  return f"{format(float(values.mean()), fmt)} ± {format(float(values.std(ddof=1)), fmt)}"


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains `config` in `workdir` (resuming from its latest checkpoint), validating every epoch.

  Trains `config.num_seeds` replicas at once (see the module docstring); each keeps its own best state.

  Args:
    config: a run config (see `configs/`).
    workdir: where checkpoints, `config.json`, TensorBoard summaries and `eval_*.json` go. With several
      seeds, `workdir/seed_<k>/` holds each replica's own summaries (TensorBoard overlays them as runs).

  Returns:
    The last validation report (`avvp_jax.evaluate.seed_report`): for one seed the 10 keys of
    `avvp_jax.metrics.KEYS` (percent), "per_class" and "num_clips"; for several, the 10 keys hold the mean
    over the seeds, plus "std", "per_seed" and "num_clips".

  Raises:
    InputError: bad config values or data.
    NonFiniteLossError: the loss became NaN/inf; the last good checkpoint stays in `workdir`.
  """
  from avvp_jax import evaluate as evaluate_lib  # pylint: disable=g-import-not-at-top
  keys = evaluate_lib.metrics_lib.KEYS

  config = resolve_config(config)
  workdir = checkpoint_lib.absolute(workdir)
  seeds = run_seeds(config)
  num_seeds = len(seeds)
  mesh = make_mesh(num_seeds=num_seeds)
  logging.info("Process %d/%d, %d local / %d global devices (%s), mesh %s; workdir %s", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(), jax.devices()[0].platform,
               dict(mesh.shape), workdir)

  data = TrainingData(config)
  num_epochs = num_train_epochs(config)
  steps_per_epoch = data.steps_per_epoch
  total_steps = num_epochs * steps_per_epoch
  if is_synthetic(config):
    logging.info("SYNTHETIC data: %s; reduced recipe: %d epochs of %d training clips (%d steps of %d); "
                 "set config.data.features_dir for real LLP features and the full recipe (%d epochs).",
                 data.description, num_epochs, data.num_train_clips, steps_per_epoch, config.batch_size,
                 config.num_epochs)
  else:
    logging.info("Data: %s; %d epochs x %d steps of %d clips.", data.description, num_epochs, steps_per_epoch,
                 config.batch_size)

  model = build_model(config)
  tx, schedule = make_optimizer(config, steps_per_epoch)
  state, abstract_state = create_train_state(config, model, tx, mesh, seeds)
  num_params = sum(int(np.prod(x.shape[1:])) for x in jax.tree.leaves(state.params))
  logging.info("Model %s/%s: %.2fM params, compute dtype %s; %d seed(s): %s.", config.model.encoder,
               config.model.decoder, num_params / 1e6, config.compute_dtype, num_seeds,
               ", ".join(map(str, seeds)))
  checkpoint_lib.save_config(workdir, config)

  train_step = jit_train_step(make_train_step(config, model, tx), mesh, abstract_state)
  eval_step = evaluate_lib.make_eval_step(config, model, mesh)
  writer = SummaryWriter(workdir)
  seed_writers = [SummaryWriter(os.path.join(workdir, f"seed_{seed}")) for seed in seeds] if num_seeds > 1 else []
  progress_bar = None
  with checkpoint_lib.Checkpointer(workdir, keep=config.checkpoint.keep) as checkpointer:
    try:
      start_epoch, batches_done = 0, 0
      # Each replica's best: score, step, validation metrics, and (best_state) its train state.
      best_scores, best_steps = [-math.inf] * num_seeds, [-1] * num_seeds
      best_metrics: list[dict[str, float] | None] = [None] * num_seeds
      best_state = None  # created at the first validation, restored on resume
      restored = checkpointer.restore_latest(abstract_state)
      if restored is not None:
        state, position = restored
        start_epoch, batches_done = int(position["epoch"]), int(position["batches_done"])
        logging.info("Resumed from %s at step %d (epoch %d, batch %d).", checkpointer.latest.directory,
                     int(state.step[0]), start_epoch + 1, batches_done)
        restored_best = checkpointer.restore_best(abstract_state)
        if restored_best is not None:  # the best save's own bookkeeping matches its state
          best_state, best_position = restored_best
          best_scores = [float(x) for x in best_position["best_scores"]]
          best_steps = [int(x) for x in best_position["best_steps"]]
          best_metrics = list(best_position["best_metrics"])
      step = int(jax.device_get(state.step)[0])
      if step != start_epoch * steps_per_epoch + batches_done:
        raise InputError(f"the checkpoint in {workdir} is at step {step}, which does not match this config's "
                         f"{steps_per_epoch} steps per epoch: use a fresh --workdir for a changed config.")

      def progress(epoch: int, batches: int) -> dict[str, Any]:
        return dict(epoch=epoch, batches_done=batches, best_scores=best_scores, best_steps=best_steps,
                    best_metrics=best_metrics)

      val_report: dict[str, Any] = {}
      progress_bar = _Progress(total_steps, step)
      run_start, run_start_step = time.time(), step
      window_start, window_step = time.time(), step
      pending: list[tuple[int, dict[str, jax.Array], np.ndarray]] = []

      def flush_metrics(epoch: int) -> None:
        """Fetches the pending per-step metrics (one transfer); raises on a non-finite loss."""
        nonlocal window_start, window_step
        if not pending:
          return
        fetched = jax.device_get([m for _, m, _ in pending])
        for (pending_step, _, index), values in zip(pending, fetched):
          losses = np.asarray(values["loss"])
          for k in np.flatnonzero(~np.isfinite(losses)):
            raise NonFiniteLossError(_nonfinite_message(pending_step, seeds[k], data.train_clip_ids(index[k]),
                                                        float(losses[k]), num_seeds))
        per_seed = {key: np.mean([v[key] for v in fetched], axis=0) for key in fetched[0]}  # [S] each
        pending.clear()
        now = time.time()
        clips_per_s = (step - window_step) * config.batch_size * num_seeds / max(now - window_start, 1e-9)
        done_rate = (step - run_start_step) / max(now - run_start, 1e-9)
        eta = (total_steps - step) / done_rate if done_rate > 0 else float("nan")
        learning_rate = float(schedule(step - 1))
        shared = {"train/learning_rate": learning_rate, "train/clips_per_second": clips_per_s}
        writer.scalars(step, {**{f"train/{k}": float(np.mean(v)) for k, v in per_seed.items()}, **shared})
        for k, seed_writer in enumerate(seed_writers):
          seed_writer.scalars(step, {f"train/{key}": float(v[k]) for key, v in per_seed.items()})
        loss = _mean_std(per_seed["loss"], ".4f")
        if progress_bar.interactive:
          progress_bar.write(f"loss {loss} lr {learning_rate:.1e} {clips_per_s:.0f} clips/s")
        else:
          logging.info("epoch %d/%d step %d/%d: loss %s, lr %.2e, %.0f clips/s, ETA %s", epoch + 1, num_epochs,
                       step, total_steps, loss, learning_rate, clips_per_s, _format_duration(eta))
        window_start, window_step = now, step

      def validate() -> dict[str, Any]:
        eval_start = time.time()
        results = evaluate_lib.run_evaluation(eval_step, state.params, data.eval_batches("val"), mesh,
                                              num_clips=data.num_eval_clips("val"))
        report = evaluate_lib.seed_report(results, seeds)
        logging.info("validation (%d clips, %.1fs): %s", report["num_clips"], time.time() - eval_start,
                     evaluate_lib.summary_line(report))
        if num_seeds > 1:
          metric = config.checkpoint.best_metric
          logging.info("validation %s per seed: %s", metric,
                       ", ".join(f"{e['seed']}={e[metric]:.2f}" for e in report["per_seed"]))
        return report

      for epoch in range(start_epoch, num_epochs):
        skip = batches_done if epoch == start_epoch else 0
        for batch_in_epoch, host_batch in enumerate(data.train_batches(epoch, skip=skip), start=skip):
          batch = global_batch(mesh, host_batch, seeds=True)
          state, metrics = train_step(state, batch)
          pending.append((step, metrics, np.asarray(host_batch["index"])))
          step += 1
          progress_bar.update()
          if step % config.log_every_steps == 0:
            flush_metrics(epoch)
          if (config.checkpoint.every_steps and step % config.checkpoint.every_steps == 0
              and batch_in_epoch + 1 < steps_per_epoch):
            flush_metrics(epoch)
            checkpointer.save(step, state, progress(epoch, batch_in_epoch + 1))
          if config.debug.kill_after_steps and step >= config.debug.kill_after_steps:
            checkpointer.wait_until_finished()
            logging.warning("debug.kill_after_steps=%d: killing this process.", config.debug.kill_after_steps)
            logging.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        flush_metrics(epoch)
        last = epoch + 1 == num_epochs
        improved = np.zeros(num_seeds, bool)
        if (epoch + 1) % config.eval_every_epochs == 0 or last:
          logging.info("epoch %d/%d:", epoch + 1, num_epochs)
          val_report = validate()
          per_seed = val_report.get("per_seed", [val_report])
          writer.scalars(step, {f"val/{k}": val_report[k] for k in keys})
          for scores, seed_writer in zip(per_seed, seed_writers):
            seed_writer.scalars(step, {f"val/{k}": scores[k] for k in keys})
          for k, scores in enumerate(per_seed):
            score = scores[config.checkpoint.best_metric]
            if score >= best_scores[k]:  # the official rule: a tie keeps the later epoch
              improved[k] = True
              best_scores[k], best_steps[k] = float(score), step
              best_metrics[k] = {key: float(scores[key]) for key in keys}
          if improved.any():
            best_state = _keep_best(improved, state, state if best_state is None else best_state)
            logging.info("New best %s at step %d for seed(s) %s: %s.", config.checkpoint.best_metric, step,
                         ", ".join(str(seeds[k]) for k in np.flatnonzero(improved)),
                         ", ".join(f"{best_scores[k]:.2f}" for k in np.flatnonzero(improved)))
        for w in (writer, *seed_writers):
          w.flush()
        if (epoch + 1) % config.checkpoint.every_epochs == 0 or last or improved.any():
          checkpointer.save(step, state, progress(epoch + 1, 0))
        if improved.any():
          checkpointer.save_best(step, best_state, progress(epoch + 1, 0), {
              "best_metric": config.checkpoint.best_metric,
              "per_seed": [{"seed": seed, "step": best_steps[k], **(best_metrics[k] or {})}
                           for k, seed in enumerate(seeds)]})
      if not val_report:  # resumed after the last epoch: nothing left to train
        logging.info("Already trained for %d epochs in %s; validating the latest state.", num_epochs, workdir)
        val_report = validate()
      logging.info("Training done: %d steps in %s (this run).", step - run_start_step,
                   _format_duration(time.time() - run_start))
      return val_report
    finally:
      if progress_bar is not None:
        progress_bar.close()
      for w in (writer, *seed_writers):
        w.close()
