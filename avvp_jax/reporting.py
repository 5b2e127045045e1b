"""What a training run reports: a pausable timer, TensorBoard scalars, the progress line and a profiler hook.

`Chrono` times training the way big_vision's `chrono` does: it counts only the time spent stepping, so
validation, checkpoint saves and a profiler's trace are kept out (`with chrono.paused(): ...`), and it
skips the first step of every (re)started run, which holds the compilation. Its `state_dict()` goes into
the checkpointed progress, so a resumed run's ETA (from the measured time per step of every run so far)
and its total training time are right from its first log line.

`SummaryWriter` writes TensorBoard scalars with `tf.summary` and the same as JSON lines to `metrics.jsonl`
(process 0 only). clu's `metric_writers` would do the same but its TF writer imports the `tensorboard`
package, which our pinned stack does not install, and clu's `ReportProgress` neither leaves paused
sections out of its rate nor restores its timer from a checkpoint, so this module is written here.

`Progress` is a tqdm bar on an interactive terminal (process 0), absl log lines elsewhere; on a
terminal, log lines are written above the bar (through `tqdm.write`), never onto its line, and the
bar's ETA is the chrono's (tqdm's own would count the compile step). `Profiler` records a
`jax.profiler` trace of `config.profile.num_steps` steps from `config.profile.first_step` into
`WORKDIR/profile` (open it with TensorBoard's profile plugin or Perfetto). `VideoProgress` is the per-video
line with an ETA of the video launchers.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from typing import Any, Callable, Iterator, Mapping

from absl import logging
import jax


def format_duration(seconds: float) -> str:
  """`H:MM:SS` of a number of seconds (negative -> 0; NaN -> "?")."""
  if seconds != seconds:  # NaN: not known yet
    return "?"
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def counted(number: int, noun: str) -> str:
  """`1 video`, `2 videos`."""
  return f"{number} {noun}{'' if number == 1 else 's'}"


class VideoProgress:
  """One log line per finished video with an ETA for the rest: the first video's time includes compiling the
  networks, so once a second video is done the rate leaves the first out.

    progress = VideoProgress(len(paths), log)
    ...
    progress.done(name, "3 windows, 5 events")   # "video 1/4 walk.mp4: 3 windows, 5 events in 31.2 s; ETA ..."
  """

  def __init__(self, total: int, log: Callable[[str], None]):
    self.total = total
    self.log = log
    self.seconds: list[float] = []
    self._start = time.perf_counter()

  def done(self, name: str, detail: str) -> None:
    """Logs the line of the video just finished (`detail`: what it gave)."""
    now = time.perf_counter()
    self.seconds.append(now - self._start)
    self._start = now
    left = self.total - len(self.seconds)
    rate = self.seconds[1:] or self.seconds
    eta = f"; ETA {format_duration(left * sum(rate) / len(rate))}" if left else ""
    first = " (with compiling the networks)" if len(self.seconds) == 1 and left else ""
    self.log(
        f"video {len(self.seconds)}/{self.total} {name}: {detail} in {self.seconds[-1]:.1f} s{first}{eta}"
    )


class Chrono:
  """Training time, throughput and ETA, with pauses and compile steps left out (see the module docstring).

  Call `start(step)` once the run knows its first step (after restoring), `compiled(step)` once that
  step's result is ready (its time is compile time, counted in the total but not in the rates), `tick(step)`
  at every log line (after the step's metrics were fetched, so the clock measures finished work), and wrap
  everything that is not training in `paused()`.

  Attributes:
    total_steps: steps of the whole run (every epoch), for the ETA.
    clips_per_step: clips one step trains (global batch x replicas), for clips/s.
  """

  def __init__(
      self, total_steps: int, clips_per_step: int, clock: Callable[[], float] = time.monotonic
  ):
    self.total_steps = int(total_steps)
    self.clips_per_step = int(clips_per_step)
    self._clock = clock
    # Kept across resumes (`state_dict`): training seconds (compile included, pauses not) of earlier runs, and
    # the measured seconds / steps (compile excluded) that the time per step is estimated from.
    self._earlier_seconds = 0.0
    self._earlier_measured_seconds = 0.0
    self._earlier_measured_steps = 0
    self._run_start = None  # clock at `start`
    self._paused_seconds = 0.0  # paused time since `start`
    self._pause_start = None
    self._measure_start = None  # (clock, paused seconds, step) at `compiled`
    self._window = None  # (clock, paused seconds, step) at the last tick or `compiled`

  # --- the checkpointed part -------------------------------------------------------------------------

  def state_dict(self, step: int) -> dict[str, float]:
    """JSON-able totals for the progress checkpointed at `step`: training seconds, measured seconds / steps."""
    measured_seconds, measured_steps = self._measured(step)
    return {
        "train_seconds": self.train_seconds(),
        "measured_seconds": measured_seconds,
        "measured_steps": measured_steps,
    }

  def load_state_dict(self, state: Mapping[str, float] | None) -> None:
    """Restores the totals of earlier runs (`state_dict` of the checkpoint resumed from); None: a fresh run."""
    state = state or {}
    self._earlier_seconds = float(state.get("train_seconds", 0.0))
    self._earlier_measured_seconds = float(state.get("measured_seconds", 0.0))
    self._earlier_measured_steps = int(state.get("measured_steps", 0))

  # --- the clock -------------------------------------------------------------------------------------

  def start(self, step: int) -> None:
    now = self._clock()
    self._run_start, self._paused_seconds, self._pause_start = now, 0.0, None
    self._measure_start = None
    self._window = (now, 0.0, int(step))

  def compiled(self, step: int) -> None:
    """The run's first step (with its compilation) is done at `step`: rates are measured from here."""
    self._measure_start = self._window = (self._clock(), self._paused_total(), int(step))

  @contextlib.contextmanager
  def paused(self) -> Iterator[None]:
    """Time inside is counted neither as training time nor in the rates (validation, saves, traces)."""
    if self._pause_start is not None:  # nested: the outer pause already counts it
      yield
      return
    self._pause_start = self._clock()
    try:
      yield
    finally:
      self._paused_seconds += self._clock() - self._pause_start
      self._pause_start = None

  def _paused_total(self) -> float:
    extra = self._clock() - self._pause_start if self._pause_start is not None else 0.0
    return self._paused_seconds + extra

  def _active_since(self, mark: tuple[float, float, int]) -> float:
    return self._clock() - mark[0] - (self._paused_total() - mark[1])

  def _measured(self, step: int) -> tuple[float, int]:
    """Measured (seconds, steps) of every run so far, this one's up to `step` (compile step left out)."""
    seconds, steps = self._earlier_measured_seconds, self._earlier_measured_steps
    if self._measure_start is not None:
      seconds += self._active_since(self._measure_start)
      steps += int(step) - self._measure_start[2]
    return seconds, steps

  def train_seconds(self) -> float:
    """Training time of the whole run so far: earlier runs' and this one's, compilation in, pauses out."""
    if self._run_start is None:
      return self._earlier_seconds
    return self._earlier_seconds + self._active_since((self._run_start, 0.0, 0))

  def tick(self, step: int) -> dict[str, float]:
    """Rates over the window since the last tick, and the ETA; call after fetching `step`'s metrics.

    Returns:
      {"steps_per_second", "clips_per_second"} over the window (NaN within the compile step's window),
      "eta_seconds" (remaining steps x the measured seconds per step of every run so far; NaN before any
      step was measured) and "train_seconds" (`train_seconds()`).
    """
    step = int(step)
    out = {"steps_per_second": float("nan"), "clips_per_second": float("nan")}
    if self._measure_start is not None and self._window is not None:
      seconds, steps = self._active_since(self._window), step - self._window[2]
      if seconds > 0 and steps > 0:
        out["steps_per_second"] = steps / seconds
        out["clips_per_second"] = steps * self.clips_per_step / seconds
      self._window = (self._clock(), self._paused_total(), step)
    out["eta_seconds"] = self.eta_seconds(step)
    out["train_seconds"] = self.train_seconds()
    return out

  def eta_seconds(self, step: int) -> float:
    """Remaining steps after `step` x the measured seconds per step of every run so far (the compile
    step and pauses left out); NaN before any step was measured. Changes nothing (unlike `tick`)."""
    measured_seconds, measured_steps = self._measured(step)
    per_step = measured_seconds / measured_steps if measured_steps > 0 else float("nan")
    return max(self.total_steps - int(step), 0) * per_step


METRICS_FILE = "metrics.jsonl"


class SummaryWriter:
  """TensorBoard scalar summaries in a folder, through `tf.summary` (no `tensorboard` package needed), and
  the same scalars as JSON lines in `<logdir>/metrics.jsonl`.

  Every `scalars(step, values)` call appends one line `{"step": N, "time": unix seconds, <tag>: value, ...}`
  (a non-finite value is `null`) and flushes it, so the file is readable while the run goes on
  (`pandas.read_json(path, lines=True)`); a resumed run appends to it. Only process 0 writes; elsewhere
  every call is a no-op. TensorFlow is imported on construction (the trainer's data pipeline has imported
  it already).
  """

  def __init__(self, logdir: str):
    self._writer = None
    self._jsonl = None
    if jax.process_index() != 0:
      return
    import tensorflow as tf  # pylint: disable=g-import-not-at-top  (only process 0 writes summaries)
    from tensorflow.core.framework import summary_pb2  # pylint: disable=g-import-not-at-top  (as tf above)

    self._tf = tf
    self._writer = tf.summary.create_file_writer(logdir)
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    metadata.data_class = summary_pb2.DATA_CLASS_SCALAR
    self._metadata = metadata.SerializeToString()
    tf.io.gfile.makedirs(logdir)
    self._jsonl = tf.io.gfile.GFile(os.path.join(logdir, METRICS_FILE), "a")

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    if self._writer is None:
      return
    record = {"step": int(step), "time": time.time()}
    for name, value in values.items():
      value = float(value)
      record[name] = value if math.isfinite(value) else None
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    with self._writer.as_default():
      for name, value in values.items():
        self._tf.summary.write(
            name,
            self._tf.constant(float(value), self._tf.float32),
            step=int(step),
            metadata=self._metadata,
        )

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()
      self._jsonl.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._jsonl.close()
      self._writer = self._jsonl = None


class _BarStream:
  """A text stream that writes whole lines through `tqdm.write`: the bar is cleared, the line
  printed on a line of its own, the bar redrawn below it (what `Progress` routes absl's log lines
  and stderr through).
  """

  def __init__(self, stream: Any, write: Callable[[str], None]):
    self._stream, self._write, self._pending = stream, write, ""

  def write(self, text: str) -> int:
    self._pending += text
    *lines, self._pending = self._pending.split("\n")
    for line in lines:
      self._write(line)
    return len(text)

  def flush(self) -> None:
    if self._pending:
      self._write(self._pending)
      self._pending = ""
    self._stream.flush()

  def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...: the wrapped stream's
    return getattr(self._stream, name)


def _unmeasured_left_out(text: str) -> str:
  """`text` without a rate that is NaN (`Chrono.tick` within the compile step): "..., lr 3.00e-04, nan
  clips/s, ETA ?" -> "..., lr 3.00e-04 (with compilation: no rate or ETA yet)"."""
  for unmeasured in (", nan clips/s, ETA ?", ", nan clips/s", " nan clips/s"):
    if unmeasured in text:
      note = " (with compilation: no rate or ETA yet)" if "ETA" in unmeasured else ""
      return text.replace(unmeasured, note)
  return text


class Progress:
  """A tqdm bar on an interactive terminal (process 0), plain absl lines otherwise.

  While the bar is shown, absl's log lines (and anything else written to `sys.stderr` from Python)
  go through `tqdm.write`, so a log line never lands on the bar's line. The bar shows no tqdm rate
  or ETA of its own (tqdm's would count the compile step and validation); with a `chrono`, `report`
  adds the chrono's ETA, which leaves both out.
  """

  def __init__(self, total_steps: int, initial: int, chrono: Chrono | None = None):
    self._bar = None
    self._chrono = chrono
    self._restore: list[Callable[[], None]] = []
    if jax.process_index() == 0 and sys.stderr.isatty():
      import tqdm  # pylint: disable=g-import-not-at-top  (only on a terminal)

      stderr = sys.stderr
      self._bar = tqdm.tqdm(
          total=total_steps,
          initial=initial,
          unit="step",
          dynamic_ncols=True,
          file=stderr,
          bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
      )
      self._route_through_bar(stderr, lambda line: tqdm.tqdm.write(line, file=stderr))

  def _route_through_bar(self, stderr: Any, write: Callable[[str], None]) -> None:
    """Sends absl's handler and `sys.stderr` through `write` until `close`."""
    stream = _BarStream(stderr, write)
    handler = logging.get_absl_handler().python_handler
    saved = handler.stream
    handler.stream = stream
    sys.stderr = stream
    self._restore = [
        lambda: setattr(handler, "stream", saved),
        lambda: setattr(sys, "stderr", stderr),
    ]

  def update(self, n: int = 1) -> None:
    if self._bar is not None:
      self._bar.update(n)

  def report(self, bar_text: str, log_line: str) -> None:
    """`bar_text` beside the bar on a terminal (with the chrono's ETA once one is measured); `log_line` as
    an absl INFO line elsewhere. A rate not measured yet (the compile step's "nan clips/s", "ETA ?") is
    left out: the line says "with compilation: no rate or ETA yet" instead."""
    bar_text, log_line = _unmeasured_left_out(bar_text), _unmeasured_left_out(log_line)
    if self._bar is not None:
      if self._chrono is not None:
        eta = self._chrono.eta_seconds(self._bar.n)
        if eta == eta:  # not NaN: some step was measured
          bar_text = f"{bar_text}, ETA {format_duration(eta)}"
      self._bar.set_postfix_str(bar_text, refresh=True)
    else:
      logging.info("%s", log_line)

  def close(self) -> None:
    if self._bar is not None:
      sys.stderr.flush()
      self._bar.close()
      self._bar = None
    for restore in self._restore:
      restore()
    self._restore = []


class Profiler:
  """A `jax.profiler` trace of `num_steps` training steps from `first_step` on into `logdir` (0 steps: off).

  Call `step(step, result)` after every step with that step's output (its arrays are waited for before
  the trace stops, so the trace holds whole steps). Stopping writes the trace (seconds): do it paused.
  """

  def __init__(self, logdir: str, first_step: int, num_steps: int, chrono: Chrono | None = None):
    self.logdir = logdir
    self.first_step = int(first_step)
    self.num_steps = int(num_steps)
    self._chrono = chrono
    self._active = False

  def step(self, step: int, result: Any = None) -> None:
    """`step` steps have been taken; starts or stops the trace at its bounds."""
    if self.num_steps <= 0 or jax.process_index() != 0:
      return
    if not self._active and step == self.first_step:
      os.makedirs(self.logdir, exist_ok=True)
      jax.profiler.start_trace(self.logdir)
      self._active = True
    elif self._active and step >= self.first_step + self.num_steps:
      self.stop(result)

  def stop(self, result: Any = None) -> None:
    if not self._active:
      return
    with self._chrono.paused() if self._chrono is not None else contextlib.nullcontext():
      jax.block_until_ready(result)
      jax.profiler.stop_trace()
    self._active = False
    logging.info(
        "Wrote a profile of %d steps (from step %d) to %s.",
        self.num_steps,
        self.first_step,
        self.logdir,
    )
