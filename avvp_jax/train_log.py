"""The trainer's log: the train metrics of pending steps, fetched once per log line, checked and reported.

`TrainLog.add` keeps each step's metrics on the device; `flush` (at the log steps, before a save, at an
epoch's end) fetches them in one transfer, raises `NonFiniteLossError` on a NaN or infinite loss (naming the
step and the batch's clips), writes the TensorBoard scalars (the mean over seeds at the workdir, each seed's
own in `seed_<s>/`) and reports the progress line (`avvp_jax.reporting`).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import optax

from avvp_jax import reporting


class NonFiniteLossError(RuntimeError):
  """The training loss became NaN or infinite; the message names the step and the batch's clips."""


def _mean_std(values: np.ndarray, fmt: str) -> str:
  """`mean` for one value, `mean ± std` (sample std) for several."""
  values = np.asarray(values, np.float64)
  if values.size == 1:
    return format(float(values[0]), fmt)
  return f"{format(float(values.mean()), fmt)} ± {format(float(values.std(ddof=1)), fmt)}"


class TrainLog:
  """The train metrics of pending steps: fetched in one transfer per log line, checked, written, reported."""

  def __init__(
      self,
      workdir: str,
      seeds: list[int],
      data: Any,
      schedule: optax.Schedule,
      chrono: reporting.Chrono,
      first_step: int,
      num_epochs: int,
  ):
    self.seeds, self.data, self.schedule, self.chrono = seeds, data, schedule, chrono
    self.num_epochs = num_epochs
    self.writer = reporting.SummaryWriter(workdir)
    self.seed_writers = (
        [reporting.SummaryWriter(os.path.join(workdir, f"seed_{seed}")) for seed in seeds]
        if len(seeds) > 1
        else []
    )
    self.progress = reporting.Progress(chrono.total_steps, first_step, chrono)
    self.pending: list[tuple[int, dict[str, jax.Array], np.ndarray]] = []

  def add(self, step: int, metrics: dict[str, jax.Array], index: np.ndarray) -> None:
    """Step `step` (0-based) ran on the clips `index` ([S, B] rows of the training split)."""
    self.pending.append((step, metrics, index))
    self.progress.update()

  def flush(self, step: int) -> None:
    """Fetches the pending metrics; raises NonFiniteLossError on a non-finite loss; logs `step`'s line.

    `step` is the number of steps taken (so its epoch is `(step - 1) // steps_per_epoch`).
    """
    if not self.pending:
      return
    fetched = jax.device_get([m for _, m, _ in self.pending])
    for (pending_step, _, index), values in zip(self.pending, fetched):
      for k in np.flatnonzero(~np.isfinite(np.asarray(values["loss"]))):
        clips = self.data.train_clip_ids(index[k])
        shown = ", ".join(clips[:8]) + (", ..." if len(clips) > 8 else "")
        replica = f" of the replica with seed {self.seeds[k]}" if len(self.seeds) > 1 else ""
        raise NonFiniteLossError(
            f"training loss{replica} is {float(values['loss'][k])} at step {pending_step} (0-based) on the batch "
            f"of clips [{shown}]; the last good checkpoint is kept: lower the learning rate or check those clips' "
            "features."
        )
    per_seed = {key: np.mean([v[key] for v in fetched], axis=0) for key in fetched[0]}  # [S] each
    self.pending.clear()
    timing = self.chrono.tick(step)
    learning_rate = float(self.schedule(step - 1))
    self.scalars(
        step,
        {f"train/{k}": v for k, v in per_seed.items()},
        {
            "train/learning_rate": learning_rate,
            "train/clips_per_second": timing["clips_per_second"],
            "train/steps_per_second": timing["steps_per_second"],
        },
    )
    epoch = (step - 1) // self.data.steps_per_epoch
    loss, rate = _mean_std(per_seed["loss"], ".4f"), f"{timing['clips_per_second']:.0f} clips/s"
    self.progress.report(
        f"loss {loss} lr {learning_rate:.1e} {rate}",
        f"epoch {epoch + 1}/{self.num_epochs} step {step}/{self.chrono.total_steps}: loss {loss}, "
        f"lr {learning_rate:.2e}, {rate}, ETA {reporting.format_duration(timing['eta_seconds'])}",
    )

  def scalars(
      self, step: int, per_seed: dict[str, np.ndarray], shared: dict[str, float] | None = None
  ) -> None:
    """Summaries: the mean over seeds (and `shared`) at the workdir, each seed's values in `seed_<s>/`."""
    values = {k: float(np.mean(v)) for k, v in per_seed.items()}
    values.update({k: v for k, v in (shared or {}).items() if np.isfinite(v)})
    self.writer.scalars(step, values)
    for k, seed_writer in enumerate(self.seed_writers):
      seed_writer.scalars(step, {key: float(np.asarray(v)[k]) for key, v in per_seed.items()})
    for w in (self.writer, *self.seed_writers):
      w.flush()

  def close(self) -> None:
    self.progress.close()
    for w in (self.writer, *self.seed_writers):
      w.close()
