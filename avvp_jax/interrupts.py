"""Clean stops: SIGINT (Ctrl-C) and SIGTERM (a pod's or cloud host's preemption) become a stop request.

`StopRequest` is a context manager the trainer holds while it runs. Until the training loop starts
(`immediate`: data preparation, which may build a dataset for minutes, initialisation, the restore) a
signal raises `TrainingInterrupted` at once: there is nothing new to save, and the run's `finally` blocks
release the workdir. In the loop, the first SIGINT or SIGTERM only records the signal (the handler does
nothing else, so it is safe wherever it lands); the trainer reads the request at its safe points (after a
step, after an epoch's validation and saves), saves the full state with its data position and raises
`TrainingInterrupted`, which `launch/train.py` turns into one line and exit status 130 (SIGINT) or 143
(SIGTERM). Either way the first signal puts the previous handlers back at once, so a second one has its
usual effect (Ctrl-C raises KeyboardInterrupt, a second SIGTERM ends the process), and leaving the context
restores them too, so a library call leaves no handler behind.

Several hosts: a signal may reach one host only, and the save is collective, so every process must stop at
the same step: `check(sync_point=True)` gathers every process's request (a small all-gather), and the
trainer calls it at the same steps on every host (its log steps and epoch ends).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import jax
from jax.experimental import multihost_utils
import numpy as np

# The exit status of a process stopped by each signal, as a shell reports it: 128 + the signal's number.
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}


class TrainingInterrupted(Exception):
  """The run stopped on a signal after saving its state; rerunning the same command resumes it.

  Attributes:
    signum: the signal (SIGINT or SIGTERM).
    step: the training step of the save (the steps taken so far); None when the run stopped before its
      training loop started (nothing new was saved).
    exit_status: 130 for SIGINT, 143 for SIGTERM.
  """

  def __init__(self, signum: int, step: int | None):
    self.signum, self.step = int(signum), None if step is None else int(step)
    self.exit_status = EXIT_STATUS.get(signal.Signals(self.signum), 128 + self.signum)
    where = "before training started" if step is None else f"at step {self.step}"
    super().__init__(f"interrupted {where}; the same command resumes")


class StopRequest:
  """While entered, the first SIGINT/SIGTERM is a stop request (see the module docstring).

  Handlers can only be installed from the main thread; elsewhere (a trainer in a worker thread) none are
  installed and the request is only ever set by `request`.

  Attributes:
    immediate: while True, a signal raises `TrainingInterrupted` (step None) where it lands; the trainer
      sets it False when its loop starts, from then on a signal only sets `signum`.
    signum: the signal received, or None.
  """

  def __init__(
      self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM), *, immediate: bool = True
  ):
    self.signals = tuple(signals)
    self.immediate = immediate
    self.signum: int | None = None
    self._previous: dict[int, Any] = {}

  def __enter__(self) -> "StopRequest":
    if threading.current_thread() is threading.main_thread():
      for signum in self.signals:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    self._restore()

  def _handle(self, signum: int, frame: Any) -> None:
    del frame
    self.request(signum)
    if self.immediate:
      raise TrainingInterrupted(signum, None)

  def request(self, signum: int) -> None:
    """Records a stop request for `signum` (the first one counts) and puts the previous handlers back."""
    if self.signum is None:
      self.signum = int(signum)
    self._restore()

  def _restore(self) -> None:
    for signum, previous in self._previous.items():
      signal.signal(
          signum, signal.SIG_DFL if previous is None else previous
      )  # None: set outside Python
    self._previous.clear()

  def check(self, sync_point: bool = True) -> int | None:
    """The signal to stop on, or None to go on.

    Args:
      sync_point: with several processes, whether every process calls this now (at the same step): only
        then are their requests gathered, and every process gets the same answer; elsewhere it is None. With
        one process every call answers.
    """
    if jax.process_count() == 1:
      return self.signum
    if not sync_point:
      return None
    gathered = multihost_utils.process_allgather(np.int32(self.signum or 0))
    nonzero = [int(s) for s in np.asarray(gathered).reshape(-1) if s]
    return nonzero[0] if nonzero else None
