"""Training: the data-parallel train step of a run's replicas and `train_and_evaluate(config, workdir)`.

Seeds: a run trains `config.num_seeds` independent replicas (seeds `config.seed`, `config.seed + 1`, ...)
in one jitted step. Every leaf of the train state has a leading seed axis `[S]` (`avvp_jax.state`), the
per-replica step is mapped over it (`sharding.map_seeds`: `jax.vmap` for several seeds, the plain step on
the one row for S = 1), and every replica reads its own batches (`[S, B, ...]`, row s in the order a 1-seed
run with seed s would see). Replica s therefore is the run a separate process with seed s would train: same
initialisation, dropout stream and data order.

Parallelism: the step is jitted over the `("seed", "data")` mesh of every device of every host
(`avvp_jax.sharding`); the loss is the mean over the global batch, so a step on N devices equals the step
on one device with the same global batch, and each host feeds only its own slice of every batch.

A run resumes automatically from `WORKDIR/checkpoints` (see `avvp_jax.checkpoint` for the layout): step,
params, optimizer state, dropout keys, the data position, the bests so far and the timer are restored, and
the data order and the per-step dropout keys (`fold_in(key, step)`) depend only on the seed, the epoch and
the step, so a resumed run continues exactly as an uninterrupted one would. Each replica keeps its own best
state (`avvp_jax.best_tracker`); reporting (timer, summaries, progress, profiler) is `avvp_jax.reporting`,
the log line `avvp_jax.train_log`, and when the loop logs, saves and validates, with what runs after each
step (profiler, log line, test faults), `avvp_jax.hooks`.

The workdir is a contract (`avvp_jax.workdir`): before anything is written the config is checked against
the stored run's (a mismatch in the model, data, loss, optimizer or seeds is a one-line error), the workdir
is locked for this run, and the start is appended to `WORKDIR/config_history.jsonl`. SIGINT and SIGTERM stop
cleanly (`avvp_jax.interrupts`): the current step finishes, the full state and data position are saved (as
a mid-epoch `checkpoint.every_steps` save is) and `interrupts.TrainingInterrupted` is raised; rerunning
resumes exactly. A signal during validation or a save is honoured once that is done; one before the loop
starts (data preparation, initialisation, the restore) stops at once, as nothing new is there to save.

Tasks: the loop knows no dataset. The task of `config.task` (`avvp_jax.tasks`) prepares the data streams,
says which batch entries the model reads and what else a training batch tells it, computes the loss, names
the evaluators (`evaluate.run_evaluators`: "val" ranks the epochs, `config.evals` adds more) and the recipe
(e.g. LLP's reduced recipe on its embedded SYNTHETIC data, logged as such).
"""

from __future__ import annotations

import time
from typing import Any, Callable

from absl import logging
import flax.linen as nn
import jax
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from avvp_jax import best_tracker
from avvp_jax import checkpoint as checkpoint_lib
from avvp_jax import evaluate as evaluate_lib
from avvp_jax import faults
from avvp_jax import hooks as hooks_lib
from avvp_jax import interrupts
from avvp_jax import reporting
from avvp_jax import sharding
from avvp_jax import state as state_lib
from avvp_jax import tasks
from avvp_jax import train_log
from avvp_jax import workdir as workdir_lib
from avvp_jax.errors import InputError

Batch = dict[str, Any]
PyTree = Any


# The training loss became NaN or infinite (raised by the log line; `launch/train.py` catches it here).
NonFiniteLossError = train_log.NonFiniteLossError


# --- the step --------------------------------------------------------------------------------------


def make_train_step(
    config: ml_collections.ConfigDict,
    model: nn.Module,
    tx: optax.GradientTransformation,
    steps_per_epoch: int = 0,
) -> Callable[[state_lib.TrainState, Batch], tuple[state_lib.TrainState, dict[str, jax.Array]]]:
  """The pure train step of one replica, `(state, batch) -> (state, metrics)` (see `jit_train_step`).

  Dropout uses `fold_in(state.rng, state.step)`. `metrics` holds the loss, its terms and the gradient norm.
  The task (`config.task`) says which batch entries the model reads, what a training batch also tells it
  (`guidance`), an online relabelling of the batch (`label_denoiser`, e.g. JoMoLD's, which counts in
  `steps_per_epoch`; its forward's dropout key is `fold_in(step key, 1)`) and the loss.
  """
  task = tasks.of(config)
  denoiser = task.label_denoiser(
      config,
      model,
      lambda module, params, batch, rng: state_lib.apply_model(
          module, params, batch, input_keys=task.input_keys, train=True, rng=rng
      ),
      steps_per_epoch,
  )

  def train_step(state: state_lib.TrainState, batch: Batch):
    step_rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    denoised = {}
    if denoiser is not None:
      batch = denoiser(state.params, batch, jax.random.fold_in(step_rng, 1), state.step)
      denoised = {f"denoise/{k}": v for k, v in batch.items() if k.endswith("_dropped")}

    def loss_fn(params):
      outputs = state_lib.apply_model(
          model,
          params,
          batch,
          input_keys=task.input_keys,
          train=True,
          rng=step_rng,
          guidance=task.guidance(batch),
      )
      return task.loss(config.loss, outputs, batch)

    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        "loss": loss,
        "grad_norm": optax.tree.norm(grads),
        **{f"loss/{name}": value for name, value in terms.items()},
        **denoised,
    }
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  # Test machinery (`config.debug.nan_loss_at_step`); off, as in every real run, this is `train_step`.
  return faults.nan_loss(config.debug.nan_loss_at_step, train_step)


def jit_train_step(train_step: Callable, mesh: Mesh, abstract_state: PyTree) -> Callable:
  """The step of all replicas at once: `train_step` mapped over the seed axis (`map_seeds`), jitted on `mesh`.

  `(state [S, ...], batch [S, B, ...]) -> (state, metrics [S])`. The state is not donated: with donation
  XLA's CPU backend copied every param and Adam moment at the step's entry, a slower step (measured by
  `bench/bench_train.py`; figures in docs/benchmarks.md). The caller rebinds `state`, which frees the old one.
  """
  state_sharding = jax.tree.map(lambda x: x.sharding, abstract_state)
  num_seeds = jax.tree.leaves(abstract_state)[0].shape[0]
  return jax.jit(
      sharding.map_seeds(train_step, num_seeds, (0, 0)),
      in_shardings=(state_sharding, sharding.seed_data_sharded(mesh)),
      out_shardings=(state_sharding, sharding.seed_sharded(mesh)),
  )


# --- reporting the run -----------------------------------------------------------------------------


def _validate(config, evals, state, data, mesh, seeds, log=None, step=0) -> dict[str, Any]:
  """Scores every replica with each of the run's evaluations ("val" first); logs a line per evaluation
  (and the per-seed ranking metric) and, with `log`, their summaries at `step` (`<name>/<key>`); returns the
  validation report. `evals`: {name: (evaluator, split, jitted eval step)}."""
  reports = {}
  for name, (evaluator, split, eval_step) in evals.items():
    start = time.time()
    results = evaluate_lib.run_evaluation(
        eval_step,
        evaluator,
        state.params,
        data.eval_batches(split),
        mesh,
        num_clips=data.num_eval_clips(split),
    )
    reports[name] = report = evaluate_lib.seed_report(results, seeds, evaluator.keys)
    logging.info(
        "%s (%d clips, %.1fs): %s",
        "validation" if name == evaluate_lib.VALIDATION else f"{name} ({split})",
        report["num_clips"],
        time.time() - start,
        evaluate_lib.summary_line(report, evaluator.keys),
    )
  if len(seeds) > 1:
    metric = config.checkpoint.best_metric
    logging.info(
        "validation %s per seed: %s",
        metric,
        ", ".join(
            f"{e['seed']}={e[metric]:.2f}" for e in reports[evaluate_lib.VALIDATION]["per_seed"]
        ),
    )
  for name, report in reports.items() if log is not None else ():
    per_seed = report.get("per_seed", [report])
    keys = evals[name][0].keys
    log.scalars(
        step,
        {f"{name}/{k}": np.array([s[k] for s in per_seed]) for k in keys},
        {"epoch": step // data.steps_per_epoch},  # validation runs at epoch ends: counted from 1
    )
  return reports[evaluate_lib.VALIDATION]


def _log_run(
    config: ml_collections.ConfigDict,
    data: Any,
    mesh: Mesh,
    workdir: str,
    num_epochs: int,
    num_params: int,
    seeds: list[int],
    recipe_note: str,
) -> None:
  logging.info(
      "Process %d/%d, %d local / %d global devices (%s), mesh %s; workdir %s",
      jax.process_index(),
      jax.process_count(),
      jax.local_device_count(),
      jax.device_count(),
      jax.devices()[0].platform,
      dict(mesh.shape),
      workdir,
  )
  logging.info(
      "Data: %s; %d epoch%s of %d training clips (%d steps of %d).%s",
      data.description,
      num_epochs,
      "s" if num_epochs != 1 else "",
      data.num_train_clips,
      data.steps_per_epoch,
      config.batch_size,
      f" {recipe_note}" if recipe_note else "",
  )
  logging.info(
      "Model %s/%s: %.2fM params, compute dtype %s; seed%s %s.",
      config.model.encoder,
      config.model.decoder,
      num_params / 1e6,
      config.compute_dtype,
      "s" if len(seeds) != 1 else "",
      ", ".join(map(str, seeds)),
  )


# --- the loop --------------------------------------------------------------------------------------


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains `config` in `workdir` (resuming from its latest checkpoint), validating every epoch.

  Trains `config.num_seeds` replicas at once (see the module docstring); each keeps its own best state.

  Args:
    config: a run config (see `configs/`).
    workdir: where checkpoints, `config.json`, TensorBoard summaries and `eval_*.json` go. With several
      seeds, `workdir/seed_<k>/` holds each replica's own summaries (TensorBoard overlays them as runs).

  Returns:
    The last validation report (`avvp_jax.evaluate.seed_report` of the task's default evaluator): for one
    seed its scores (LLP: the 10 keys of `avvp_jax.tasks.llp.metrics.KEYS` in percent, "per_class") and "num_clips";
    for several, the evaluator's keys hold the mean over the seeds, plus "std", "per_seed" and "num_clips".

  Raises:
    InputError: bad config values or data, a config that does not match the workdir's stored run
      (nothing in the workdir is changed then), or a workdir another trainer holds.
    NonFiniteLossError: the loss became NaN/inf; the last good checkpoint stays in `workdir`.
    interrupts.TrainingInterrupted: SIGINT or SIGTERM arrived; the state was saved at the step it names
      (the signal handlers are installed only during this call, from the main thread).
  """
  config = state_lib.resolve_config(config)  # the one resolution of the run
  workdir = checkpoint_lib.absolute(workdir)
  logging.info(
      "Run: %s (the whole config: %s).", state_lib.run_summary(config), f"{workdir}/config.json"
  )
  with workdir_lib.claim(workdir, config) as run, interrupts.StopRequest() as stop:
    return _train(config, workdir, run, stop)


def _train(
    config: ml_collections.ConfigDict,
    workdir: str,
    run: workdir_lib.Run,
    stop: interrupts.StopRequest,
) -> dict[str, Any]:
  """The body of `train_and_evaluate`, with the workdir claimed and the stop signals caught."""
  seeds = state_lib.run_seeds(config)
  mesh = sharding.make_mesh(num_seeds=len(seeds))
  task = tasks.of(config)
  data = task.prepare_data(config)
  recipe = task.recipe(config)
  num_epochs, steps_per_epoch = recipe.num_epochs, data.steps_per_epoch
  model = state_lib.build_model(config)
  tx, schedule = state_lib.make_optimizer(config, steps_per_epoch)
  initial_state, abstract_state = state_lib.train_state_init(config, model, tx, mesh, seeds)
  _log_run(
      config,
      data,
      mesh,
      workdir,
      num_epochs,
      sum(int(np.prod(x.shape[1:])) for x in jax.tree.leaves(abstract_state.params)),
      seeds,
      recipe.note,
  )
  run.record_start()
  train_step = jit_train_step(
      make_train_step(config, model, tx, steps_per_epoch), mesh, abstract_state
  )
  evals = {
      name: (
          evaluator,
          split,
          evaluate_lib.make_eval_step(
              evaluator, model, mesh, num_seeds=len(seeds), input_keys=task.input_keys
          ),
      )
      for name, (evaluator, split) in evaluate_lib.run_evaluators(
          config, task, task.meta(config)
      ).items()
  }
  best = best_tracker.BestTracker(
      config.checkpoint.best_metric,
      seeds,
      evals[evaluate_lib.VALIDATION][0].keys,
      rule=config.checkpoint.best_rule,
  )

  chrono = reporting.Chrono(num_epochs * steps_per_epoch, config.batch_size * len(seeds))
  start_epoch, batches_done = 0, 0
  with checkpoint_lib.Checkpointer(workdir, keep=config.checkpoint.keep) as checkpointer:
    restored = checkpointer.restore_latest(abstract_state)
    if restored is None:
      state = initial_state()  # compiled and run only for a fresh start
    else:
      state, position = restored
      start_epoch, batches_done = int(position["epoch"]), int(position["batches_done"])
      chrono.load_state_dict(position.get("chrono"))
      logging.info(
          "Resumed from %s at step %d (epoch %d, batch %d).",
          checkpointer.latest.directory,
          int(state.step[0]),
          start_epoch + 1,
          batches_done,
      )
      restored_best = checkpointer.restore_best(abstract_state)
      if restored_best is not None:  # the best save's own bookkeeping matches its state
        best.load_state_dict(restored_best[1], restored_best[0])
    step = int(jax.device_get(state.step)[0])
    if step != start_epoch * steps_per_epoch + batches_done:
      raise InputError(
          f"the checkpoint in {workdir} is at step {step}, which does not match this config's "
          f"{steps_per_epoch} steps per epoch: use a fresh --workdir for a changed config."
      )
    progress = lambda epoch, batches: dict(
        epoch=epoch, batches_done=batches, chrono=chrono.state_dict(step), **best.state_dict()
    )
    saved_step = step if restored is not None else None

    def save(position: dict[str, Any]) -> None:
      nonlocal saved_step
      checkpointer.save(step, state, position)
      saved_step = step

    def stop_here(signum: int, position: Callable[[], dict[str, Any]]) -> None:
      """Saves the full state at `position()` (unless this step is saved already), then stops."""
      if saved_step != step:
        with chrono.paused():
          save(position())
      raise interrupts.TrainingInterrupted(signum, step)

    log = train_log.TrainLog(workdir, seeds, data, schedule, chrono, step, num_epochs)
    hooks = hooks_lib.make_hooks(config, workdir, log, chrono, checkpointer)
    chrono.start(step)
    first_step, val_report = step, {}
    stop.immediate = False  # from here on a signal is a request, honoured at the next safe point
    try:
      for epoch in range(start_epoch, num_epochs):
        skip = batches_done if epoch == start_epoch else 0
        for batch_in_epoch, host_batch in enumerate(
            data.seed_train_batches(seeds, epoch, skip), start=skip
        ):
          state, metrics = train_step(state, sharding.global_batch(mesh, host_batch, seeds=True))
          log.add(step, metrics, np.asarray(host_batch["index"]))
          step += 1
          if step == first_step + 1:  # the compile step: rates are measured from its end
            jax.block_until_ready(metrics)
            chrono.compiled(step)
          # Mid-epoch saves only: the epoch's last step is saved at the epoch's end.
          if hooks_lib.itstime(
              step, config.checkpoint.every_steps, (epoch + 1) * steps_per_epoch, last=False
          ):
            log.flush(step)
            with chrono.paused():
              save(progress(epoch, batch_in_epoch + 1))
          for hook in hooks:  # the profiler, the log line, test faults (`avvp_jax.hooks`)
            hook(step, metrics)
          signum = stop.check(sync_point=hooks_lib.itstime(step, config.log_every_steps))
          if signum:
            log.flush(step)
            stop_here(signum, lambda: progress(epoch, batch_in_epoch + 1))
        log.flush(step)
        last = epoch + 1 == num_epochs
        improved = np.zeros(len(seeds), bool)
        with chrono.paused():
          if hooks_lib.itstime(epoch + 1, config.eval_every_epochs, num_epochs):
            logging.info("epoch %d/%d:", epoch + 1, num_epochs)
            val_report = _validate(config, evals, state, data, mesh, seeds, log, step)
            per_seed = val_report.get("per_seed", [val_report])
            improved = best.update(step, per_seed, state)
            if improved.any():
              logging.info("%s", best.describe(improved))
          if (
              hooks_lib.itstime(epoch + 1, config.checkpoint.every_epochs, num_epochs)
              or improved.any()
          ):
            save(progress(epoch + 1, 0))
          if improved.any():  # every replica improved: the best state is the one just saved
            checkpointer.save_best(
                step,
                best.state,
                progress(epoch + 1, 0),
                best.metrics_record(),
                same_as_latest=bool(improved.all()) and saved_step == step,
            )
        signum = stop.check()  # a signal during the validation or the saves
        if signum and not last:
          stop_here(signum, lambda: progress(epoch + 1, 0))
      if not val_report:  # resumed after the last epoch: nothing left to train
        logging.info(
            "Already trained for %d epoch%s in %s; validating the latest state.",
            num_epochs,
            "s" if num_epochs != 1 else "",
            workdir,
        )
        val_report = _validate(config, evals, state, data, mesh, seeds)
      logging.info(
          "Training done: %d steps in %s of training (all runs of this workdir; validation and saves "
          "left out).",
          step,
          reporting.format_duration(chrono.train_seconds()),
      )
      return val_report
    finally:
      log.close()
