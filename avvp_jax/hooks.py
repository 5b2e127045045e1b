"""When the training loop acts (`itstime`), and what it runs after every step (the hooks).

Every cadence decision of the loop is one `itstime` call, in the spirit of big_vision's `u.itstime`: the
log lines (and the multi-host stop check that goes with them), the mid-epoch saves, validation and the
epoch saves. The periodic actions that leave the train state alone are hooks, as nanodo's
`for h in hooks: h(step)`: `make_hooks` builds them once, and the loop calls each as `hook(step, metrics)`
once `step` steps are done (`metrics`: that step's, still on the device), after the step's mid-epoch save
(so a fault that kills the process finds the save written), in order: the profiler, the log line, then the
test faults (`avvp_jax.faults`; none in a real run).
"""

from __future__ import annotations

import os
from typing import Any, Callable

import ml_collections

from avvp_jax import checkpoint as checkpoint_lib
from avvp_jax import faults
from avvp_jax import reporting
from avvp_jax import train_log

Hook = Callable[
    [int, Any], None
]  # hook(step, metrics): `step` steps are done, `metrics` the last one's


def itstime(step: int, every: int, total: int | None = None, *, last: bool = True) -> bool:
  """Whether an action due every `every` steps (or epochs) is due once `step` of them are done.

  Args:
    step: steps (or epochs) done, counted from 1.
    every: the period; due at its multiples. 0: at none.
    total: the end of the span, where `last` alone decides; None: no end.
    last: at `total`, due (validation after the last epoch) or not due even on a multiple (a mid-epoch save
      skips the epoch's last step, which the epoch's own save covers).
  """
  if total is not None and step == total:
    return last
  return bool(every) and step % every == 0


def periodic(every: int, action: Callable[[int], None]) -> Hook:
  """The hook that calls `action(step)` at the multiples of `every` steps (0: never)."""

  def hook(step: int, metrics: Any) -> None:
    del metrics
    if itstime(step, every):
      action(step)

  return hook


def make_hooks(
    config: ml_collections.ConfigDict,
    workdir: str,
    log: train_log.TrainLog,
    chrono: reporting.Chrono,
    checkpointer: checkpoint_lib.Checkpointer,
) -> list[Hook]:
  """A run's hooks, in calling order: the profiler, the log line, the test faults of `config.debug`.

  The profiler traces `config.profile.num_steps` steps from `config.profile.first_step` on into
  `workdir/profile`, cut at the run's last step, so the trace always ends (written paused, `chrono`).
  """
  first, num_steps = config.profile.first_step, config.profile.num_steps
  profiler = reporting.Profiler(
      os.path.join(workdir, "profile"), first, min(num_steps, chrono.total_steps - first), chrono
  )
  return [
      profiler.step,
      periodic(config.log_every_steps, log.flush),
      *faults.make_hooks(config.debug, checkpointer),
  ]
