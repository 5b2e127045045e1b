"""Training: state, the data-parallel train step, and `train_and_evaluate(config, workdir)`.

Data parallelism is `jax.jit` over a 1-D mesh of every device of every host
(`Mesh(np.array(jax.devices()), ("data",))`): the train state is replicated (`P()`), each batch is split
along its first axis (`P("data")`), and XLA inserts the gradient all-reduce. The loss is the mean over the
global batch, so a step on N devices equals the step on one device with the same global batch. Each host
reads its own slice of every global batch (`avvp_jax.data.pipeline`), and `global_batch` assembles the
global `jax.Array` with `jax.make_array_from_process_local_data`.

A run resumes automatically from `WORKDIR/checkpoints` (see `avvp_jax.checkpoint` for the layout): step,
params, optimizer state and the data position are restored, and the data order and the per-step dropout
keys (`fold_in(key, step)`) depend only on the seed, the epoch and the step, so a resumed run continues
exactly as an uninterrupted one would.

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
from typing import Any, Callable, Iterable, Iterator, Mapping

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
from avvp_jax.errors import InputError

Batch = dict[str, Any]
PyTree = Any

DATA_AXIS = "data"
# Batch entries that go to the device; everything else (clip ids, strings) stays on the host.
MODEL_INPUT_KEYS = ("audio", "frames", "motion")
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class NonFiniteLossError(RuntimeError):
  """The training loss became NaN or infinite; the message names the step and the batch's clips."""


class TrainState(flax.struct.PyTreeNode):
  """Everything a training step changes: the step counter, the params and the optimizer state."""
  step: jax.Array  # int32 scalar: number of steps taken
  params: PyTree
  opt_state: PyTree


# --- mesh and global batches -----------------------------------------------------------------------


def make_mesh(devices: Iterable[jax.Device] | None = None) -> Mesh:
  """A 1-D data-parallel mesh over `devices` (default: every device of every host)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.array(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def device_batch(batch: Mapping[str, Any]) -> Batch:
  """The numeric entries of a host batch (drops strings and object arrays)."""
  out = {}
  for key, value in batch.items():
    value = np.asarray(value)
    if value.dtype.kind in "fiub":
      out[key] = value
  return out


def global_batch(mesh: Mesh, host_batch: Mapping[str, Any]) -> Batch:
  """Assembles the global batch from this host's slice (`[B / process_count, ...]` per entry).

  The global array's rows are the hosts' slices in process order, split over the mesh's devices.
  """
  sharding = data_sharded(mesh)
  return {key: jax.make_array_from_process_local_data(sharding, value)
          for key, value in device_batch(host_batch).items()}


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
  from avvp_jax.data import annotations  # pylint: disable=g-import-not-at-top
  num_seconds = annotations.NUM_SECONDS
  dims = config.model.input_dims
  frame_steps = num_seconds * 8 if config.data.get("frames", "pooled") == "raw" else num_seconds
  audio = jnp.zeros((batch_size, num_seconds, dims.audio), jnp.float32)
  frames = jnp.zeros((batch_size, frame_steps, dims.frames), jnp.float32)
  motion = jnp.zeros((batch_size, num_seconds, dims.motion), jnp.float32) if dims.motion else None
  return audio, frames, motion


def learning_rate_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
  """Adam's learning rate per step: PyTorch's per-epoch StepLR (x decay_factor every N epochs)."""
  opt = config.optimizer
  if opt.decay_every_epochs <= 0:
    return optax.constant_schedule(opt.learning_rate)
  return optax.exponential_decay(opt.learning_rate, transition_steps=opt.decay_every_epochs * steps_per_epoch,
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
  def init(rng: jax.Array) -> TrainState:
    params_rng, dropout_rng = jax.random.split(rng)
    variables = model.init({"params": params_rng, "dropout": dropout_rng}, *dummy_inputs(config), train=False)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))
  return init


def _with_sharding(abstract: PyTree, sharding: NamedSharding) -> PyTree:
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), abstract)


def create_train_state(config: ml_collections.ConfigDict, model: nn.Module, tx: optax.GradientTransformation,
                       mesh: Mesh, rng: jax.Array) -> tuple[TrainState, PyTree]:
  """Initialises the replicated train state on `mesh`; returns (state, abstract state with shardings).

  Shapes come from `jax.eval_shape`; the state is then created by `jax.jit(init, out_shardings=...)`.
  """
  init = _init_fn(config, model, tx)
  abstract = jax.eval_shape(init, rng)
  sharding = jax.tree.map(lambda _: replicated(mesh), abstract)
  state = jax.jit(init, out_shardings=sharding)(rng)
  return state, _with_sharding(abstract, replicated(mesh))


def abstract_train_state(config: ml_collections.ConfigDict, mesh: Mesh | None = None) -> TrainState:
  """Shapes, dtypes and (replicated) shardings of a full train state of `config`, for restoring."""
  mesh = make_mesh() if mesh is None else mesh
  tx, _ = make_optimizer(config, 1)
  abstract = jax.eval_shape(_init_fn(config, build_model(config), tx), jax.random.key(0))
  return _with_sharding(abstract, replicated(mesh))


def abstract_params(config: ml_collections.ConfigDict, mesh: Mesh | None = None) -> PyTree:
  """Shapes, dtypes and (replicated) shardings of the params of `config`'s model, for restoring."""
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
  from avvp_jax.data import pseudo_labels  # pylint: disable=g-import-not-at-top
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
                    ) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
  """The pure train step `(state, batch, rng) -> (state, metrics)` (not jitted; see `jit_train_step`).

  Dropout uses `fold_in(rng, state.step)`. `metrics` holds the loss, its terms and the gradient norm.
  """
  from avvp_jax import losses  # pylint: disable=g-import-not-at-top
  nan_at_step = config.debug.nan_loss_at_step

  def train_step(state: TrainState, batch: Batch, rng: jax.Array):
    step_rng = jax.random.fold_in(rng, state.step)

    def loss_fn(params):
      outputs = apply_model(model, params, batch, train=True, rng=step_rng)
      loss, terms = losses.compute_loss(config.loss, outputs, batch)
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


def jit_train_step(train_step: Callable, mesh: Mesh, abstract_state: PyTree) -> Callable:
  """`jax.jit` with replicated state/rng, data-sharded batch, donated state."""
  state_sharding = jax.tree.map(lambda x: x.sharding, abstract_state)
  return jax.jit(train_step,
                 in_shardings=(state_sharding, data_sharded(mesh), replicated(mesh)),
                 out_shardings=(state_sharding, replicated(mesh)),
                 donate_argnums=0)


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
  num_devices = jax.device_count()
  for name in ("batch_size", "eval_batch_size"):
    value = config[name]
    if value <= 0 or value % num_devices:
      raise InputError(f"config.{name}={value} must be a positive multiple of the {num_devices} devices: "
                       f"set --config.{name} to a multiple of {num_devices}.")
  if config.compute_dtype not in COMPUTE_DTYPES:
    raise InputError(f"config.compute_dtype {config.compute_dtype!r} is unknown: use one of "
                     f"{sorted(COMPUTE_DTYPES)}.")
  if config.num_epochs <= 0:
    raise InputError(f"config.num_epochs={config.num_epochs} must be positive.")
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


class TrainingData:
  """This host's view of the data of a run: per-epoch training batches and padded evaluation batches.

  A thin adapter over `avvp_jax.data.pipeline.prepare` (TFDS build + tf.data per-host batches) that also
  adds VALOR's segment pseudo labels to training batches when `config.data.pseudo_labels` is set and
  checks that the features match `config.model.input_dims`. The training order of an epoch depends only on
  (config.seed, epoch, host), which makes resumption exact.
  """

  def __init__(self, config: ml_collections.ConfigDict, *, train: bool = True):
    from avvp_jax.data import pipeline  # pylint: disable=g-import-not-at-top  (TensorFlow)
    self._llp = pipeline.prepare(config.data, batch_size=config.batch_size,
                                 eval_batch_size=config.eval_batch_size, seed=config.seed)
    expected = dict(config.model.input_dims)
    if self._llp.input_dims != expected:
      raise InputError(f"the features have widths {self._llp.input_dims} but config.model.input_dims is "
                       f"{expected}: set --config.model.input_dims.<name> to match the features "
                       f"(layout {config.data.layout!r}).")
    self._pseudo_labels = None
    if train and config.data.pseudo_labels:
      from avvp_jax.data import pseudo_labels  # pylint: disable=g-import-not-at-top
      self._pseudo_labels = pseudo_labels.load_pseudo_labels(config.data.pseudo_labels,
                                                             self._llp.filenames("train"))

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
    """This host's training batches of `epoch` from batch `skip` on (pseudo labels added when given)."""
    for batch in self._llp.train_batches(epoch, skip):
      if self._pseudo_labels is not None:
        batch.update(self._pseudo_labels.batch(batch["index"]))
      yield batch

  def eval_batches(self, split: str) -> Iterator[Batch]:
    """This host's padded evaluation batches of `split` (`mask` 0 and `index` -1 on padding)."""
    return self._llp.eval_batches(split)


def _nonfinite_message(step: int, clip_ids: list[str], value: float) -> str:
  shown = ", ".join(clip_ids[:8]) + (", ..." if len(clip_ids) > 8 else "")
  return (f"training loss is {value} at step {step} (0-based) on the batch of clips [{shown}]; the last good "
          "checkpoint is kept: lower the learning rate or check those clips' features.")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains `config` in `workdir` (resuming from its latest checkpoint), validating every epoch.

  Args:
    config: a run config (see `configs/`).
    workdir: where checkpoints, `config.json`, TensorBoard summaries and `eval_*.json` go.

  Returns:
    The last validation metrics (the 10 keys of `avvp_jax.metrics.KEYS`, percent, and "per_class").

  Raises:
    InputError: bad config values or data.
    NonFiniteLossError: the loss became NaN/inf; the last good checkpoint stays in `workdir`.
  """
  from avvp_jax import evaluate as evaluate_lib  # pylint: disable=g-import-not-at-top

  config = resolve_config(config)
  workdir = checkpoint_lib.absolute(workdir)
  mesh = make_mesh()
  logging.info("Process %d/%d, %d local / %d global devices (%s); workdir %s", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(), jax.devices()[0].platform,
               workdir)

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
  rng = jax.random.key(config.seed)
  init_rng, dropout_rng = jax.random.split(rng)
  state, abstract_state = create_train_state(config, model, tx, mesh, init_rng)
  num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
  logging.info("Model %s/%s: %.2fM params, compute dtype %s.", config.model.encoder, config.model.decoder,
               num_params / 1e6, config.compute_dtype)
  checkpoint_lib.save_config(workdir, config)

  train_step = jit_train_step(make_train_step(config, model, tx), mesh, abstract_state)
  eval_step = evaluate_lib.make_eval_step(config, model, mesh)
  writer = SummaryWriter(workdir)
  progress_bar = None
  with checkpoint_lib.Checkpointer(workdir, keep=config.checkpoint.keep) as checkpointer:
    try:
      start_epoch, batches_done, best_score = 0, 0, -math.inf
      restored = checkpointer.restore_latest(abstract_state)
      if restored is not None:
        state, position = restored
        start_epoch, batches_done = int(position["epoch"]), int(position["batches_done"])
        best_score = float(position.get("best_score", -math.inf))
        logging.info("Resumed from %s at step %d (epoch %d, batch %d).", checkpointer.latest.directory,
                     int(state.step), start_epoch + 1, batches_done)
      step = int(jax.device_get(state.step))
      if step != start_epoch * steps_per_epoch + batches_done:
        raise InputError(f"the checkpoint in {workdir} is at step {step}, which does not match this config's "
                         f"{steps_per_epoch} steps per epoch: use a fresh --workdir for a changed config.")

      val_scores: dict[str, Any] = {}
      progress_bar = _Progress(total_steps, step)
      run_start, run_start_step = time.time(), step
      window_start, window_step = time.time(), step
      pending: list[tuple[int, dict[str, jax.Array], np.ndarray]] = []

      def flush_metrics(epoch: int) -> dict[str, float]:
        """Fetches the pending per-step metrics (one transfer); raises on a non-finite loss."""
        nonlocal window_start, window_step
        if not pending:
          return {}
        fetched = jax.device_get([m for _, m, _ in pending])
        for (pending_step, _, index), values in zip(pending, fetched):
          loss = float(values["loss"])
          if not math.isfinite(loss):
            clip_ids = data.train_clip_ids(index)
            raise NonFiniteLossError(_nonfinite_message(pending_step, clip_ids, loss))
        means = {key: float(np.mean([v[key] for v in fetched])) for key in fetched[0]}
        pending.clear()
        now = time.time()
        clips_per_s = (step - window_step) * config.batch_size / max(now - window_start, 1e-9)
        done_rate = (step - run_start_step) / max(now - run_start, 1e-9)
        eta = (total_steps - step) / done_rate if done_rate > 0 else float("nan")
        means["learning_rate"] = float(schedule(step - 1))
        means["clips_per_second"] = clips_per_s
        writer.scalars(step, {f"train/{k}": v for k, v in means.items()})
        line = (f"epoch {epoch + 1}/{num_epochs} step {step}/{total_steps}: loss {means['loss']:.4f}, "
                f"lr {means['learning_rate']:.2e}, {clips_per_s:.0f} clips/s, ETA {_format_duration(eta)}")
        if progress_bar.interactive:
          progress_bar.write(f"loss {means['loss']:.4f} lr {means['learning_rate']:.1e} {clips_per_s:.0f} clips/s")
        else:
          logging.info("%s", line)
        window_start, window_step = now, step
        return means

      for epoch in range(start_epoch, num_epochs):
        skip = batches_done if epoch == start_epoch else 0
        for batch_in_epoch, host_batch in enumerate(data.train_batches(epoch, skip=skip), start=skip):
          batch = global_batch(mesh, host_batch)
          state, metrics = train_step(state, batch, dropout_rng)
          pending.append((step, metrics, np.asarray(host_batch["index"])))
          step += 1
          progress_bar.update()
          if step % config.log_every_steps == 0:
            flush_metrics(epoch)
          if (config.checkpoint.every_steps and step % config.checkpoint.every_steps == 0
              and batch_in_epoch + 1 < steps_per_epoch):
            flush_metrics(epoch)
            checkpointer.save(step, state, dict(epoch=epoch, batches_done=batch_in_epoch + 1,
                                                best_score=best_score))
          if config.debug.kill_after_steps and step >= config.debug.kill_after_steps:
            checkpointer.wait_until_finished()
            logging.warning("debug.kill_after_steps=%d: killing this process.", config.debug.kill_after_steps)
            logging.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        flush_metrics(epoch)
        last = epoch + 1 == num_epochs
        best_metrics = None
        if (epoch + 1) % config.eval_every_epochs == 0 or last:
          eval_start = time.time()
          val_scores = evaluate_lib.run_evaluation(eval_step, state.params, data.eval_batches("val"), mesh,
                                                   num_clips=data.num_eval_clips("val"))
          logging.info("epoch %d/%d validation (%d clips, %.1fs): %s", epoch + 1, num_epochs,
                       val_scores["num_clips"], time.time() - eval_start, evaluate_lib.summary_line(val_scores))
          writer.scalars(step, {f"val/{k}": val_scores[k] for k in evaluate_lib.metrics_lib.KEYS})
          score = val_scores[config.checkpoint.best_metric]
          if score > best_score:
            best_score = score
            best_metrics = {k: val_scores[k] for k in evaluate_lib.metrics_lib.KEYS}
            logging.info("New best %s: %.2f at step %d.", config.checkpoint.best_metric, score, step)
        writer.flush()
        if (epoch + 1) % config.checkpoint.every_epochs == 0 or last or best_metrics is not None:
          checkpointer.save(step, state, dict(epoch=epoch + 1, batches_done=0, best_score=best_score),
                            best_metrics=best_metrics)
      if not val_scores:  # resumed after the last epoch: nothing left to train
        logging.info("Already trained for %d epochs in %s; validating the latest state.", num_epochs, workdir)
        val_scores = evaluate_lib.run_evaluation(eval_step, state.params, data.eval_batches("val"), mesh,
                                                 num_clips=data.num_eval_clips("val"))
        logging.info("validation: %s", evaluate_lib.summary_line(val_scores))
      logging.info("Training done: %d steps in %s (this run).", step - run_start_step,
                   _format_duration(time.time() - run_start))
      return val_scores
    finally:
      if progress_bar is not None:
        progress_bar.close()
      writer.close()
