"""Clean stops: SIGINT and SIGTERM mid-epoch save the full state and data position, exit 130 / 143 with one
line, and the resumed run ends bit-identical to an uninterrupted one; a second Ctrl-C aborts at once.

Tiny HAN runs (`configs/han.py:tiny`, 2 epochs of 8 steps) on the embedded synthetic data. The signals come
from the trainer's test hook (`config.debug.signal_after_steps`, deterministic) and once from outside
(`Popen.send_signal` while the run logs its steps); the interrupted runs resume in this process.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

from absl.testing import absltest
import jax
import numpy as np

from avvp_jax import checkpoint
from avvp_jax import interrupts
from avvp_jax import state as state_lib
from avvp_jax import train
from avvp_jax import workdir as workdir_lib
from train_test import ROOT, TIMEOUT_S, _env, tiny_config  # pylint: disable=g-bad-import-order

EPOCHS = 2
STEPS_PER_EPOCH = 8  # the tiny preset's 64 synthetic training clips in batches of 8
COMMAND = [
    sys.executable,
    os.path.join(ROOT, "launch", "train.py"),
    "--config=configs/han.py:tiny",
    f"--config.synthetic_num_epochs={EPOCHS}",
]


def _config(**overrides):
  return tiny_config(synthetic_num_epochs=EPOCHS, **overrides)


def _latest(workdir, config):
  """(full latest TrainState as numpy, its progress without the timer) of a workdir."""
  abstract = state_lib.abstract_train_state(state_lib.resolve_config(config))
  with checkpoint.Checkpointer(workdir) as checkpointer:
    state, progress = checkpointer.restore_latest(abstract)
  progress.pop("chrono")  # wall-clock times
  return jax.tree.map(np.asarray, state), progress


def _best_params(workdir):
  _, params = checkpoint.restore_params(checkpoint.find_state_checkpoint(workdir, which="best"))
  return jax.tree.map(np.asarray, params)


class CleanStopTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    cls.handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    cls.workdir = os.path.join(cls.root, "uninterrupted")
    cls.scores = train.train_and_evaluate(_config(), cls.workdir)
    cls.handlers_after = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    cls.state, cls.progress = _latest(cls.workdir, _config())
    cls.best = _best_params(cls.workdir)

  def assertResumesBitForBit(self, workdir):  # pylint: disable=invalid-name
    """Resumes `workdir` in this process; its end equals the uninterrupted run's exactly."""
    scores = train.train_and_evaluate(_config(), workdir)
    state, progress = _latest(workdir, _config())
    self.assertEqual(int(state.step[0]), EPOCHS * STEPS_PER_EPOCH)
    for path, a, b in zip(
        jax.tree_util.tree_leaves_with_path(self.state),
        jax.tree.leaves(self.state),
        jax.tree.leaves(state),
    ):
      np.testing.assert_array_equal(b, a, err_msg=f"latest {jax.tree_util.keystr(path[0])}")
    for a, b in zip(jax.tree.leaves(self.best), jax.tree.leaves(_best_params(workdir))):
      np.testing.assert_array_equal(b, a, err_msg="best params")
    self.assertEqual(progress, self.progress)
    self.assertEqual(scores, self.scores)
    self.assertFalse(os.path.exists(os.path.join(workdir, workdir_lib.LOCK_FILENAME)))

  def assertStoppedCleanly(self, result_stderr, returncode, status):  # pylint: disable=invalid-name
    """Exit `status`, no traceback, the last line of stderr the one line; returns the step it names."""
    self.assertEqual(returncode, status, result_stderr[-3000:])
    self.assertNotIn("Traceback", result_stderr)
    last = result_stderr.strip().splitlines()[-1]
    match = re.fullmatch(r"interrupted at step (\d+); the same command resumes", last)
    self.assertIsNotNone(match, result_stderr[-3000:])
    return int(match.group(1))

  def test_library_call_leaves_no_handlers_behind(self):
    self.assertEqual(self.handlers_after, self.handlers)

  def test_sigint_mid_epoch_saves_exits_130_and_resumes_bit_for_bit(self):
    workdir = os.path.join(self.root, "sigint")
    result = subprocess.run(
        COMMAND
        + [
            f"--workdir={workdir}",
            "--config.debug.signal_after_steps=3",
            "--config.debug.signal=SIGINT",
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    self.assertEqual(self.assertStoppedCleanly(result.stderr, result.returncode, 130), 3)
    _, progress = _latest(workdir, _config())
    self.assertEqual(
        (progress["epoch"], progress["batches_done"]), (0, 3)
    )  # the partial epoch kept
    self.assertFalse(os.path.exists(os.path.join(workdir, workdir_lib.LOCK_FILENAME)))
    self.assertResumesBitForBit(workdir)

  def test_external_sigterm_saves_exits_143_and_resumes_bit_for_bit(self):
    workdir = os.path.join(self.root, "sigterm")
    process = subprocess.Popen(
        COMMAND + [f"--workdir={workdir}"],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    try:
      for line in process.stderr:
        lines.append(line)
        if re.search(rf"step 2/{EPOCHS * STEPS_PER_EPOCH}:", line):
          process.send_signal(signal.SIGTERM)  # inside epoch 1, while it trains on
          break
      lines.extend(process.stderr)
      returncode = process.wait(timeout=TIMEOUT_S)
    finally:
      if process.poll() is None:
        process.kill()
        process.wait()
    stderr = "".join(lines)
    step = self.assertStoppedCleanly(stderr, returncode, 143)
    self.assertBetween(step, 2, EPOCHS * STEPS_PER_EPOCH - 1)
    saved_step, progress = _latest(workdir, _config())
    self.assertEqual(int(saved_step.step[0]), step)  # the step it stopped at, not the last epoch's
    self.assertEqual(progress["epoch"] * STEPS_PER_EPOCH + progress["batches_done"], step, progress)
    self.assertResumesBitForBit(workdir)

  def test_signal_at_an_epoch_end_in_process_then_resume(self):
    """SIGTERM after an epoch's last step, before its validation: the resumed run validates that epoch."""
    workdir = os.path.join(self.root, "epoch_end")
    config = _config(**{"debug.signal_after_steps": STEPS_PER_EPOCH, "debug.signal": "SIGTERM"})
    with self.assertRaises(interrupts.TrainingInterrupted) as caught:
      train.train_and_evaluate(config, workdir)
    self.assertEqual((caught.exception.step, caught.exception.exit_status), (STEPS_PER_EPOCH, 143))
    self.assertEqual(
        str(caught.exception), f"interrupted at step {STEPS_PER_EPOCH}; the same command resumes"
    )
    self.assertEqual({s: signal.getsignal(s) for s in self.handlers}, self.handlers)
    _, progress = _latest(workdir, _config())
    self.assertEqual((progress["epoch"], progress["batches_done"]), (0, STEPS_PER_EPOCH))
    self.assertResumesBitForBit(workdir)


def _signal_this_thread(signum: int) -> None:
  """Sends `signum` to the calling (main) thread, so its Python handler runs before the next line.

  `os.kill(os.getpid(), ...)` sends it to the process, whose threads (JAX's and TensorFlow's) may take it
  first; one suite run under load saw the handler miss the `with` block that expects it (the cause is likely
  this, not proven). Sent to this thread, it lands here.
  """
  signal.pthread_kill(threading.get_ident(), signum)


class StopRequestTest(absltest.TestCase):

  def test_first_signal_is_a_request_second_ctrl_c_aborts(self):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with interrupts.StopRequest(immediate=False) as stop:
      self.assertIsNone(stop.check())
      _signal_this_thread(signal.SIGINT)
      self.assertEqual(stop.check(), signal.SIGINT)
      self.assertEqual({s: signal.getsignal(s) for s in before}, before)  # back at once
      with self.assertRaises(KeyboardInterrupt):
        _signal_this_thread(signal.SIGINT)
    self.assertEqual({s: signal.getsignal(s) for s in before}, before)

  def test_sigterm_is_a_request(self):
    before = signal.getsignal(signal.SIGTERM)
    with interrupts.StopRequest(immediate=False) as stop:
      _signal_this_thread(signal.SIGTERM)
      self.assertEqual(stop.check(), signal.SIGTERM)
      # Back to the previous handler (SIG_DFL under pytest): a second SIGTERM ends the process.
      self.assertEqual(signal.getsignal(signal.SIGTERM), before)
    self.assertEqual(interrupts.TrainingInterrupted(signal.SIGINT, 5).exit_status, 130)

  def test_before_the_loop_a_signal_stops_at_once(self):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with self.assertRaises(interrupts.TrainingInterrupted) as caught:
      with interrupts.StopRequest():
        _signal_this_thread(signal.SIGTERM)
        time.sleep(5)  # never reached: the handler raises where the signal lands
    self.assertEqual((caught.exception.step, caught.exception.exit_status), (None, 143))
    self.assertEqual(
        str(caught.exception), "interrupted before training started; the same command resumes"
    )
    self.assertEqual({s: signal.getsignal(s) for s in before}, before)


if __name__ == "__main__":
  absltest.main()
