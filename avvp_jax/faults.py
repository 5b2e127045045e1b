"""Test machinery: the faults `config.debug` injects into a training run. Every real run leaves them off.

- `nan_loss_at_step`: the step's reported training loss is NaN at that step (0-based), for the
  non-finite-loss stop (`nan_loss`, around the trainer's step).
- `kill_after_steps`: once that many steps are done, pending checkpoint writes are waited for and the
  process SIGKILLs itself: a crash, for the kill-and-resume test.
- `signal_after_steps` / `signal`: once that many steps are done the process sends itself SIGTERM or SIGINT,
  as a pod's preemption or a Ctrl-C would, for the clean-stop tests.

The trainer knows them only as `nan_loss` around its step and the hooks `make_hooks` builds, which
`avvp_jax.hooks.make_hooks` appends to the run's hooks (called after the step's mid-epoch save).
"""

from __future__ import annotations

import os
import signal
from typing import Any, Callable

from absl import logging
import jax.numpy as jnp
import ml_collections

from avvp_jax import checkpoint as checkpoint_lib

Hook = Callable[[int, Any], None]  # as `avvp_jax.hooks.Hook`


def nan_loss(nan_at_step: int, train_step: Callable) -> Callable:
  """`train_step` whose metrics' "loss" is NaN at step `nan_at_step` (0-based); -1: `train_step` itself.

  Only the reported loss is NaN (the update is the step's own): the trainer's next log flush, which every
  save does first, raises `NonFiniteLossError`, so no state from that step on is ever saved.
  """
  if nan_at_step < 0:
    return train_step

  def step_with_nan_loss(state, batch):
    new_state, metrics = train_step(state, batch)
    return new_state, {
        **metrics,
        "loss": jnp.where(state.step == nan_at_step, jnp.nan, metrics["loss"]),
    }

  return step_with_nan_loss


def make_hooks(
    debug: ml_collections.ConfigDict, checkpointer: checkpoint_lib.Checkpointer
) -> list[Hook]:
  """The hooks `hook(step, metrics)` of the enabled kill and signal faults (none in a real run)."""
  hooks = []
  kill_after = debug.kill_after_steps
  if kill_after:

    def kill(step: int, metrics: Any) -> None:
      del metrics
      if step >= kill_after:
        checkpointer.wait_until_finished()
        logging.warning("debug.kill_after_steps=%d: killing this process.", kill_after)
        logging.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    hooks.append(kill)
  signal_after, name = debug.get("signal_after_steps", 0), debug.get("signal", "SIGTERM")
  if signal_after:  # 0 is off (it would never match anyway: steps done start at 1)

    def send(step: int, metrics: Any) -> None:
      del metrics
      if step == signal_after:
        logging.warning("debug.signal_after_steps=%d: sending %s to this process.", step, name)
        os.kill(os.getpid(), signal.Signals[name])

    hooks.append(send)
  return hooks
