"""Tests of avvp_jax.hooks (the loop's cadences, hand-worked; the after-step hooks) and avvp_jax.faults."""

import os
import signal

from absl.testing import absltest
import jax.numpy as jnp
import ml_collections

from avvp_jax import faults
from avvp_jax import hooks
from avvp_jax import interrupts
from avvp_jax import reporting


def _due(every, total=None, last=True, steps=range(1, 11)):
  return [step for step in steps if hooks.itstime(step, every, total, last=last)]


class ItstimeTest(absltest.TestCase):

  def test_multiples(self):
    self.assertEqual(_due(3), [3, 6, 9])
    self.assertEqual(_due(1), list(range(1, 11)))
    self.assertEqual(_due(0), [])  # 0: never

  def test_last_is_due_whatever_the_period(self):
    # Validation every 3 epochs of 10, and after the last: epochs 3, 6, 9, 10 (as `% 3 == 0 or last`).
    self.assertEqual(_due(3, total=10), [3, 6, 9, 10])
    self.assertEqual(_due(0, total=10), [10])
    self.assertEqual(_due(5, total=10), [5, 10])

  def test_last_false_skips_the_end_even_on_a_multiple(self):
    # Mid-epoch saves every 4 steps, epoch 2 of 8 steps (steps 9..16): 12 only; 16 is the epoch's own save.
    self.assertEqual(_due(4, total=16, last=False, steps=range(9, 17)), [12])
    self.assertEqual(_due(3, total=16, last=False, steps=range(9, 17)), [9, 12, 15])
    self.assertEqual(_due(0, total=16, last=False, steps=range(9, 17)), [])


def _config(log_every=2, first=0, num_steps=0, **debug):
  config = ml_collections.ConfigDict(
      {
          "log_every_steps": log_every,
          "profile": {"first_step": first, "num_steps": num_steps},
          "debug": {
              "kill_after_steps": 0,
              "signal_after_steps": 0,
              "signal": "SIGTERM",
              "nan_loss_at_step": -1,
          },
      }
  )
  config.debug.update(debug)
  return config


class FakeLog:

  def __init__(self):
    self.flushed = []

  def flush(self, step):
    self.flushed.append(step)


class HooksTest(absltest.TestCase):

  def run_hooks(self, config, total_steps=6):
    workdir = self.create_tempdir().full_path
    log = FakeLog()
    chrono = reporting.Chrono(total_steps, 1)
    chrono.start(0)
    run_hooks = hooks.make_hooks(config, workdir, log, chrono, checkpointer=None)
    x = jnp.ones(3)
    for step in range(1, total_steps + 1):
      x = x * 2.0
      for hook in run_hooks:
        hook(step, x)
    return run_hooks, log, os.path.join(workdir, "profile")

  def test_a_real_run_has_a_profiler_and_a_log_hook_only(self):
    run_hooks, log, profile = self.run_hooks(_config(log_every=2))
    self.assertLen(run_hooks, 2)
    self.assertEqual(log.flushed, [2, 4, 6])
    self.assertFalse(os.path.exists(profile))

  def test_the_profile_is_cut_at_the_last_step(self):
    _, _, profile = self.run_hooks(_config(first=4, num_steps=100), total_steps=6)
    traces = [name for _, _, names in os.walk(profile) for name in names]
    self.assertTrue(any(name.endswith((".xplane.pb", ".trace.json.gz")) for name in traces), traces)

  def test_signal_fault_sends_the_signal_once_at_its_step(self):
    with interrupts.StopRequest(immediate=False) as stop:
      run_hooks, _, _ = self.run_hooks(
          _config(signal_after_steps=3, signal="SIGINT"), total_steps=3
      )
      self.assertLen(run_hooks, 3)
      self.assertEqual(stop.signum, signal.SIGINT)

  def test_kill_fault_waits_for_its_step(self):
    (kill,) = faults.make_hooks(_config(kill_after_steps=5).debug, checkpointer=None)
    for step in range(1, 5):  # would SIGKILL this process at step 5
      kill(step, None)


class NanLossTest(absltest.TestCase):

  def test_off_is_the_step_itself(self):
    step_fn = lambda state, batch: (state, {"loss": 1.0})
    self.assertIs(faults.nan_loss(-1, step_fn), step_fn)

  def test_nan_at_the_given_0_based_step(self):
    State = lambda step: ml_collections.ConfigDict({"step": jnp.int32(step)})
    step_fn = faults.nan_loss(2, lambda state, batch: (state, {"loss": jnp.float32(1.5), "x": 1}))
    losses = [float(step_fn(State(step), None)[1]["loss"]) for step in range(4)]
    self.assertEqual(losses[:2] + losses[3:], [1.5, 1.5, 1.5])
    self.assertTrue(jnp.isnan(losses[2]))
    self.assertEqual(list(step_fn(State(0), None)[1]), ["loss", "x"])


if __name__ == "__main__":
  absltest.main()
