"""Tests of avvp_jax.reporting: the pausable timer (on a fake clock), its ETA after a resume, the profiler."""

import json
import os

from absl.testing import absltest
import jax
import jax.numpy as jnp

from avvp_jax import reporting


class FakeClock:
  """A clock the test moves by hand."""

  def __init__(self):
    self.now = 1000.0

  def __call__(self) -> float:
    return self.now

  def advance(self, seconds: float) -> None:
    self.now += seconds


class ChronoTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.clock = FakeClock()
    self.chrono = reporting.Chrono(total_steps=100, clips_per_step=16, clock=self.clock)

  def run_steps(self, chrono, first, last, seconds_per_step=0.5):
    for _ in range(first, last):
      self.clock.advance(seconds_per_step)

  def test_compile_step_is_out_of_the_rates_but_in_the_total(self):
    self.chrono.start(0)
    self.clock.advance(30.0)  # step 1 with its compilation
    self.chrono.compiled(1)
    self.run_steps(self.chrono, 1, 11)  # 10 steps of 0.5 s
    timing = self.chrono.tick(11)
    self.assertAlmostEqual(timing["steps_per_second"], 2.0)
    self.assertAlmostEqual(timing["clips_per_second"], 32.0)
    self.assertAlmostEqual(timing["eta_seconds"], 89 * 0.5)
    self.assertAlmostEqual(timing["train_seconds"], 35.0)

  def test_pauses_are_left_out_of_rates_eta_and_total(self):
    self.chrono.start(0)
    self.clock.advance(10.0)
    self.chrono.compiled(1)
    self.run_steps(self.chrono, 1, 5)  # 4 steps, 2 s
    with self.chrono.paused():  # validation and a checkpoint save
      self.clock.advance(100.0)
      with self.chrono.paused():  # nested pauses count once
        self.clock.advance(7.0)
    self.run_steps(self.chrono, 5, 9)  # 4 more steps, 2 s
    timing = self.chrono.tick(9)
    self.assertAlmostEqual(timing["steps_per_second"], 2.0)  # not 8 / 109
    self.assertAlmostEqual(timing["eta_seconds"], 91 * 0.5)
    self.assertAlmostEqual(timing["train_seconds"], 14.0)
    # The next window starts at the tick: a pause inside it is left out too.
    self.run_steps(self.chrono, 9, 13, seconds_per_step=0.25)
    with self.chrono.paused():
      self.clock.advance(50.0)
    self.assertAlmostEqual(self.chrono.tick(13)["steps_per_second"], 4.0)

  def test_rates_are_unknown_before_the_compile_step_ends(self):
    self.chrono.start(0)
    self.clock.advance(3.0)
    timing = self.chrono.tick(0)
    self.assertNotEqual(timing["steps_per_second"], timing["steps_per_second"])  # NaN
    self.assertNotEqual(timing["eta_seconds"], timing["eta_seconds"])
    self.assertEqual(reporting.format_duration(timing["eta_seconds"]), "?")

  def test_eta_and_total_after_a_resume(self):
    self.chrono.start(0)
    self.clock.advance(20.0)
    self.chrono.compiled(1)
    self.run_steps(self.chrono, 1, 41)  # 40 measured steps of 0.5 s
    saved = json.loads(json.dumps(self.chrono.state_dict(41)))  # the checkpointed progress is JSON
    self.assertAlmostEqual(saved["train_seconds"], 40.0)

    self.clock.advance(3600.0)  # the process was down for an hour: not training time
    resumed = reporting.Chrono(total_steps=100, clips_per_step=16, clock=self.clock)
    resumed.load_state_dict(saved)
    resumed.start(41)
    timing = resumed.tick(41)  # before this run measured anything: the earlier runs' time per step
    self.assertAlmostEqual(timing["eta_seconds"], 59 * 0.5)
    self.assertAlmostEqual(timing["train_seconds"], 40.0)
    self.clock.advance(15.0)  # this run's compile step
    resumed.compiled(42)
    self.run_steps(resumed, 42, 62, seconds_per_step=1.0)  # slower machine: 20 steps of 1 s
    timing = resumed.tick(62)
    self.assertAlmostEqual(timing["steps_per_second"], 1.0)
    self.assertAlmostEqual(timing["eta_seconds"], 38 * (20.0 + 20.0) / 60)  # pooled over both runs
    self.assertAlmostEqual(timing["train_seconds"], 40.0 + 15.0 + 20.0)
    self.assertAlmostEqual(resumed.state_dict(62)["measured_steps"], 60)

  def test_format_duration(self):
    self.assertEqual(reporting.format_duration(3725.9), "1:02:05")
    self.assertEqual(reporting.format_duration(-4), "0:00:00")


class ProfilerTest(absltest.TestCase):

  def test_off_by_default(self):
    logdir = os.path.join(self.create_tempdir().full_path, "profile")
    profiler = reporting.Profiler(logdir, first_step=1, num_steps=0)
    for step in range(1, 4):
      profiler.step(step)
    profiler.stop()
    self.assertFalse(os.path.exists(logdir))

  def test_traces_the_given_steps(self):
    logdir = os.path.join(self.create_tempdir().full_path, "profile")
    clock = FakeClock()
    chrono = reporting.Chrono(10, 1, clock=clock)
    chrono.start(0)
    profiler = reporting.Profiler(logdir, first_step=2, num_steps=2, chrono=chrono)
    fn = jax.jit(lambda x: x * 2.0)
    x = jnp.ones(4)
    for step in range(1, 6):
      x = fn(x)
      profiler.step(step, x)
    profiler.stop()
    traces = [name for _, _, names in os.walk(logdir) for name in names]
    self.assertTrue(any(name.endswith((".xplane.pb", ".trace.json.gz")) for name in traces), traces)


if __name__ == "__main__":
  absltest.main()
