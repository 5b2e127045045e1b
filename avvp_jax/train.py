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
from typing import Any, Callable, Mapping

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from avvp_jax import checkpoint as checkpoint_lib
from avvp_jax import evaluate as evaluate_lib
from avvp_jax import losses as losses_lib
from avvp_jax import metrics as metrics_lib
from avvp_jax import sharding
from avvp_jax import state as state_lib
from avvp_jax.data import run_data
from avvp_jax.data import synthetic as synthetic_lib
from avvp_jax.errors import InputError

Batch = dict[str, Any]
PyTree = Any



class NonFiniteLossError(RuntimeError):
  """The training loss became NaN or infinite; the message names the step and the batch's clips."""


# --- steps -----------------------------------------------------------------------------------------


def make_train_step(config: ml_collections.ConfigDict, model: nn.Module, tx: optax.GradientTransformation
                    ) -> Callable[[state_lib.TrainState, Batch], tuple[state_lib.TrainState, dict[str, jax.Array]]]:
  """The pure train step of one replica, `(state, batch) -> (state, metrics)` (see `jit_train_step`).

  Dropout uses `fold_in(state.rng, state.step)`. `metrics` holds the loss, its terms and the gradient norm.
  """
  nan_at_step = config.debug.nan_loss_at_step

  def train_step(state: state_lib.TrainState, batch: Batch):
    step_rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)

    def loss_fn(params):
      outputs = state_lib.apply_model(model, params, batch, train=True, rng=step_rng)
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


def jit_train_step(train_step: Callable, mesh: Mesh, abstract_state: PyTree) -> Callable:
  """The step of all replicas at once: `train_step` mapped over the seed axis (`map_seeds`), jitted on `mesh`.

  `(state [S, ...], batch [S, B, ...]) -> (state, metrics [S])`. The state is not donated: with donation
  XLA's CPU backend copied every param and Adam moment at the step's entry (HAN, batch 16: 72-74 ms a step
  against 61-65 ms without; bench/bench_train.py). The caller rebinds `state`, which frees the old one.
  """
  state_sharding = jax.tree.map(lambda x: x.sharding, abstract_state)
  num_seeds = jax.tree.leaves(abstract_state)[0].shape[0]
  return jax.jit(sharding.map_seeds(train_step, num_seeds, (0, 0)),
                 in_shardings=(state_sharding, sharding.seed_data_sharded(mesh)),
                 out_shardings=(state_sharding, sharding.seed_sharded(mesh)))


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


# --- the training loop -----------------------------------------------------------------------------


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
  keys = metrics_lib.KEYS

  config = state_lib.resolve_config(config)
  workdir = checkpoint_lib.absolute(workdir)
  seeds = state_lib.run_seeds(config)
  num_seeds = len(seeds)
  mesh = sharding.make_mesh(num_seeds=num_seeds)
  logging.info("Process %d/%d, %d local / %d global devices (%s), mesh %s; workdir %s", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(), jax.devices()[0].platform,
               dict(mesh.shape), workdir)

  data = run_data.prepare_run(config)
  num_epochs = state_lib.num_train_epochs(config)
  steps_per_epoch = data.steps_per_epoch
  total_steps = num_epochs * steps_per_epoch
  if synthetic_lib.is_synthetic(config.data):
    logging.info("SYNTHETIC data: %s; reduced recipe: %d epochs of %d training clips (%d steps of %d); "
                 "set config.data.features_dir for real LLP features and the full recipe (%d epochs).",
                 data.description, num_epochs, data.num_train_clips, steps_per_epoch, config.batch_size,
                 config.num_epochs)
  else:
    logging.info("Data: %s; %d epochs x %d steps of %d clips.", data.description, num_epochs, steps_per_epoch,
                 config.batch_size)

  model = state_lib.build_model(config)
  tx, schedule = state_lib.make_optimizer(config, steps_per_epoch)
  state, abstract_state = state_lib.create_train_state(config, model, tx, mesh, seeds)
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
        for batch_in_epoch, host_batch in enumerate(data.seed_train_batches(seeds, epoch, skip), start=skip):
          batch = sharding.global_batch(mesh, host_batch, seeds=True)
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
