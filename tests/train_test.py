"""The trainer: schedule, bf16 step, seeds (replicas equal separate runs), kill-and-resume bit-exactness of a
2-seed run, non-finite stop, summaries, launcher errors.

Runs on the embedded synthetic data with the `configs/han.py:tiny` preset (a micro model, few clips).
"""

import glob
import json
import os
import subprocess
import sys
import tempfile
from unittest import mock

from absl.testing import absltest
import jax
import numpy as np

import launch_env
from avvp_jax import checkpoint
from avvp_jax import cli
from avvp_jax import state as state_lib
from avvp_jax import sharding
from avvp_jax.tasks.llp import run_data
from avvp_jax import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configs import han  # pylint: disable=g-import-not-at-top,wrong-import-position

TIMEOUT_S = 240


def tiny_config(**overrides):
  config = han.get_config("tiny")
  config.unlock()
  for key, value in overrides.items():
    target = config
    *parents, leaf = key.split(".")
    for parent in parents:
      target = target[parent]
    target[leaf] = value
  return config


def _env() -> dict[str, str]:
  env = dict(os.environ)
  launch_env.without_forced_devices(env)
  env.update(
      PYTHONPATH=ROOT + os.pathsep + env.get("PYTHONPATH", ""),
      TF_CPP_MIN_LOG_LEVEL="2",
      JAX_PLATFORMS="cpu",
  )
  return env


def _config_flags(config, keys):
  """`--config.a.b=value` flags reproducing `config`'s values at `keys` on the command line."""
  flags = []
  for key in keys:
    value = config
    for part in key.split("."):
      value = value[part]
    flags.append(f"--config.{key}={value}")
  return flags


def _latest_params(workdir, which="latest"):
  """(step, seed-stacked params as numpy) of a workdir's latest (or best) save."""
  step_dir = checkpoint.find_state_checkpoint(workdir, which=which)
  _, params = checkpoint.restore_params(step_dir)
  return int(os.path.basename(step_dir)), jax.tree.map(np.asarray, params)


def _event_tags(folder):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  events = glob.glob(os.path.join(folder, "events.out.tfevents.*"))
  assert len(events) == 1, (folder, events)
  return {
      value.tag
      for event in tf.compat.v1.train.summary_iterator(events[0])
      for value in event.summary.value
  }


def _metrics_lines(logdir: str) -> list[dict]:
  """The lines of `logdir/metrics.jsonl`, parsed."""
  with open(os.path.join(logdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


class ScheduleTest(absltest.TestCase):

  def test_step_decay_matches_per_epoch_steplr(self):
    config = tiny_config(
        **{
            "optimizer.learning_rate": 3e-4,
            "optimizer.decay_every_epochs": 10,
            "optimizer.decay_factor": 0.1,
        }
    )
    schedule = state_lib.learning_rate_schedule(config, steps_per_epoch=7)
    # PyTorch StepLR(10, 0.1) stepped after each epoch: epochs 0-9 at 3e-4, 10-19 at 3e-5, ...
    for epoch, expected in ((0, 3e-4), (9, 3e-4), (10, 3e-5), (19, 3e-5), (20, 3e-6)):
      for step in (epoch * 7, epoch * 7 + 6):
        self.assertAlmostEqual(
            float(schedule(step)), expected, delta=expected * 1e-5, msg=(epoch, step)
        )

  def test_constant_without_decay(self):
    config = tiny_config(**{"optimizer.decay_every_epochs": 0})
    schedule = state_lib.learning_rate_schedule(config, steps_per_epoch=7)
    self.assertEqual(float(schedule(0)), float(schedule(10_000)))


class TrainStepTest(absltest.TestCase):

  def _step(self, config):
    model = state_lib.build_model(config)
    tx, _ = state_lib.make_optimizer(config, 2)
    mesh = sharding.make_mesh()
    state, abstract = state_lib.create_train_state(config, model, tx, mesh, [0])
    before = jax.tree.map(np.asarray, state.params)
    step_fn = train.jit_train_step(train.make_train_step(config, model, tx), mesh, abstract)
    audio, frames, motion = state_lib.dummy_inputs(config, batch_size=config.batch_size)
    rng = np.random.default_rng(0)
    batch = {
        "audio": rng.normal(size=audio.shape),
        "frames": rng.normal(size=frames.shape),
        "label": (rng.random((config.batch_size, 25)) < 0.2),
    }
    if motion is not None:
      batch["motion"] = rng.normal(size=motion.shape)
    batch = {k: np.asarray(v, np.float32)[None] for k, v in batch.items()}  # one seed: [1, B, ...]
    state, metrics = step_fn(state, sharding.global_batch(mesh, batch, seeds=True))
    return before, state, jax.device_get(metrics)

  def test_bfloat16_compute_keeps_float32_params(self):
    config = tiny_config(compute_dtype="bfloat16")
    before, state, metrics = self._step(config)
    self.assertTrue(np.isfinite(metrics["loss"]).all())
    self.assertEqual(state.step.tolist(), [1])
    for leaf in jax.tree.leaves(state.params):
      self.assertEqual(leaf.dtype, np.float32)
    changed = [
        not np.array_equal(a, np.asarray(b))
        for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(state.params))
    ]
    self.assertTrue(any(changed))

  def test_synthetic_recipe_and_pseudo_label_checks(self):
    from avvp_jax.errors import InputError  # pylint: disable=g-import-not-at-top
    from configs import leap  # pylint: disable=g-import-not-at-top

    config = leap.get_config("tiny")
    resolved = state_lib.resolve_config(
        config
    )  # the synthetic recipe: learned label table, its learning rate
    self.assertEqual(resolved.model.leap.label_embeddings, "learned")
    self.assertEqual(state_lib.peak_learning_rate(resolved), 3e-4)
    chosen = config.copy_and_resolve_references()
    table = os.path.join(self.create_tempdir().full_path, "table.npy")
    np.save(
        table, np.zeros((25, 8), np.float32)
    )  # resolve_config builds the model: the file must exist
    chosen.model.leap.label_embeddings = (
        table  # an explicit table (e.g. a converted LEAP's) is kept
    )
    self.assertEqual(state_lib.resolve_config(chosen).model.leap.label_embeddings, table)
    from avvp_jax.tasks.llp import features  # pylint: disable=g-import-not-at-top

    features_dir = self.create_tempdir()  # real features: the paper's recipe
    for sub, _ in features.LAYOUTS[config.data.layout].values():  # the layout's folders, as checked
      features_dir.mkdir(sub)
    config.data.features_dir = features_dir.full_path
    config.data.pseudo_labels = config.data.features_dir
    resolved = state_lib.resolve_config(config)
    self.assertEqual(resolved.model.leap.label_embeddings, "packaged")
    self.assertEqual(state_lib.peak_learning_rate(resolved), 1e-4)
    config.data.pseudo_labels = ""
    with self.assertRaisesRegex(
        InputError,
        "config.loss.audio_pseudo_labels is True but config.data.pseudo_labels " "is empty",
    ):
      state_lib.resolve_config(config)
    for flag in ("audio_pseudo_labels", "visual_pseudo_labels", "avss_from_pseudo_labels"):
      config.loss[flag] = False
    state_lib.resolve_config(config)  # nothing needs them now
    config.data.pseudo_labels = "simulated"
    with self.assertRaisesRegex(InputError, "only for the embedded synthetic data"):
      state_lib.resolve_config(config)

  def test_unknown_compute_dtype_is_input_error(self):
    from avvp_jax.errors import InputError  # pylint: disable=g-import-not-at-top

    with self.assertRaisesRegex(InputError, "compute_dtype"):
      state_lib.resolve_config(tiny_config(compute_dtype="float8"))


# Plain SGD for the runs compared across seeds layouts. With Adam, a param whose gradient is zero in exact
# arithmetic (the biases under a softmax that a shift cannot change: MMIL's attention biases, the attention
# key biases) gets float noise of either sign, computed in a different order by the vmapped 2-seed step
# than by the 1-seed step, and Adam turns that noise into +-lr steps: those biases then differ by ~1e-4
# while every other param agrees to 1e-7 and the validation metrics are identical (measured). SGD keeps
# the update linear in the gradient, so all params compare at 1e-5.
SGD = {"optimizer.name": "sgd", "optimizer.learning_rate": 0.5}


class TrainAndEvaluateTest(absltest.TestCase):
  """Uninterrupted tiny runs (2 epochs): seed 0, seed 1, and both as one 2-seed run; shared by the tests."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp(
        dir=absltest.get_default_test_tmpdir()
    )  # fresh: a reused workdir resumes
    cls.config = tiny_config(num_epochs=2, synthetic_num_epochs=2, **SGD)
    cls.workdir = os.path.join(cls.root, "uninterrupted")
    cls.scores = train.train_and_evaluate(cls.config, cls.workdir)
    cls.steps_per_epoch = run_data.prepare_run(state_lib.resolve_config(cls.config)).steps_per_epoch
    cls.seed1_config = tiny_config(num_epochs=2, synthetic_num_epochs=2, seed=1, **SGD)
    cls.seed1_workdir = os.path.join(cls.root, "seed1")
    cls.seed1_scores = train.train_and_evaluate(cls.seed1_config, cls.seed1_workdir)
    cls.seeds_config = tiny_config(num_epochs=2, synthetic_num_epochs=2, num_seeds=2, **SGD)
    cls.seeds_workdir = os.path.join(cls.root, "seeds")
    cls.seeds_scores = train.train_and_evaluate(cls.seeds_config, cls.seeds_workdir)

  def test_run_writes_config_checkpoints_and_summaries(self):
    from avvp_jax.tasks.llp import metrics  # pylint: disable=g-import-not-at-top

    for key in metrics.KEYS:
      self.assertBetween(self.scores[key], 0.0, 100.0)
    self.assertTrue(os.path.isfile(os.path.join(self.workdir, "config.json")))
    restored = checkpoint.load_config(self.workdir)
    self.assertEqual(restored.model.to_dict(), self.config.model.to_dict())
    step, _ = _latest_params(self.workdir)
    self.assertEqual(step, 2 * self.steps_per_epoch)
    self.assertIsNotNone(checkpoint.find_state_checkpoint(self.workdir, which="best"))
    self.assertContainsSubset(
        {"train/loss", "train/learning_rate", "val/segment/type"}, _event_tags(self.workdir)
    )
    lines = _metrics_lines(self.workdir)  # the same scalars as JSON lines, one per write
    train_steps = [line["step"] for line in lines if "train/loss" in line]
    self.assertEqual(train_steps, sorted(set(train_steps)))
    self.assertEqual(train_steps[-1], 2 * self.steps_per_epoch)
    val_lines = [line for line in lines if "val/segment/type" in line]
    self.assertEqual(val_lines[-1]["step"], 2 * self.steps_per_epoch)
    self.assertAlmostEqual(
        val_lines[-1]["val/segment/type"], self.scores["segment/type"], delta=1e-6
    )
    for line in lines:
      self.assertIsInstance(line["time"], float)
    self.assertContainsSubset({"train/loss", "train/learning_rate"}, lines[0])
    self.assertNotIn("std", self.scores)  # one seed: its own scores, as before seeds existed
    self.assertIn("per_class", self.scores)
    self.assertFalse(os.path.exists(os.path.join(self.workdir, "seed_0")))

  def test_replicas_equal_separate_one_seed_runs(self):
    self.assertEqual([entry["seed"] for entry in self.seeds_scores["per_seed"]], [0, 1])
    for which in ("latest", "best"):
      _, stacked = _latest_params(self.seeds_workdir, which)
      for k, workdir in enumerate((self.workdir, self.seed1_workdir)):
        _, alone = _latest_params(workdir, which)
        for path, a, b in zip(
            jax.tree_util.tree_leaves_with_path(alone),
            jax.tree.leaves(alone),
            jax.tree.leaves(stacked),
        ):
          self.assertEqual(a.shape[0], 1)
          np.testing.assert_allclose(
              b[k],
              a[0],
              rtol=1e-5,
              atol=1e-5,
              err_msg=f"{which} replica {k}: {jax.tree_util.keystr(path[0])}",
          )
    for k, alone in enumerate((self.scores, self.seed1_scores)):
      for key in metrics_keys():
        self.assertAlmostEqual(
            self.seeds_scores["per_seed"][k][key], alone[key], delta=1e-4, msg=(k, key)
        )
    _, seed0 = _latest_params(self.workdir)
    _, seed1 = _latest_params(self.seed1_workdir)
    self.assertFalse(
        np.allclose(seed0["decoder"]["fc_prob"]["kernel"], seed1["decoder"]["fc_prob"]["kernel"])
    )
    for key in metrics_keys():
      self.assertAlmostEqual(
          self.seeds_scores[key], (self.scores[key] + self.seed1_scores[key]) / 2, delta=1e-4
      )

  def test_replicas_read_the_batches_of_their_seeds(self):
    together = run_data.prepare_run(state_lib.resolve_config(self.seeds_config))
    alone = [
        run_data.prepare_run(state_lib.resolve_config(c)) for c in (self.config, self.seed1_config)
    ]
    for epoch in (0, 1):
      for stacked, *single in zip(
          together.seed_train_batches([0, 1], epoch),
          *(d.seed_train_batches([k], epoch) for k, d in enumerate(alone)),
      ):
        for key in ("index", "audio", "label"):
          for k in (0, 1):
            np.testing.assert_array_equal(
                stacked[key][k], single[k][key][0], err_msg=f"{epoch} {key} {k}"
            )
        self.assertFalse(np.array_equal(stacked["index"][0], stacked["index"][1]))

  def test_seed_summaries(self):
    root = _event_tags(self.seeds_workdir)
    self.assertContainsSubset(
        {"train/loss", "train/learning_rate", "val/segment/type"}, root
    )  # means
    for seed in (0, 1):
      self.assertContainsSubset(
          {"train/loss", "val/segment/type"},
          _event_tags(os.path.join(self.seeds_workdir, f"seed_{seed}")),
      )
    mean_lines = _metrics_lines(self.seeds_workdir)
    seed_lines = [_metrics_lines(os.path.join(self.seeds_workdir, f"seed_{s}")) for s in (0, 1)]
    for k, lines in enumerate(
        seed_lines
    ):  # each seed's file: its own replica's values, step by step
      self.assertEqual([line["step"] for line in lines], [line["step"] for line in mean_lines])
      self.assertAlmostEqual(
          lines[-1]["val/segment/type"],
          self.seeds_scores["per_seed"][k]["segment/type"],
          delta=1e-6,
      )
    self.assertAlmostEqual(
        mean_lines[-1]["val/segment/type"],
        (seed_lines[0][-1]["val/segment/type"] + seed_lines[1][-1]["val/segment/type"]) / 2,
        delta=1e-9,
    )

  def test_killed_and_resumed_two_seed_run_equals_uninterrupted_run_bit_for_bit(self):
    workdir = os.path.join(self.root, "killed")
    kill_after = self.steps_per_epoch + 1  # after epoch 1's checkpoint, inside epoch 2
    command = [
        sys.executable,
        os.path.join(ROOT, "launch", "train.py"),
        "--config=configs/han.py:tiny",
        f"--workdir={workdir}",
        "--config.num_epochs=2",
        "--config.synthetic_num_epochs=2",
        "--config.num_seeds=2",
        f"--config.debug.kill_after_steps={kill_after}",
        *(f"--config.{key}={value}" for key, value in SGD.items()),
    ]
    result = subprocess.run(
        command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S
    )
    self.assertEqual(result.returncode, -9, result.stderr[-3000:])  # SIGKILL: no clean shutdown
    self.assertEqual(checkpoint.Checkpointer(workdir).latest_step(), self.steps_per_epoch)

    # A resumed run restores into the abstract state: no initialisation is compiled or run.
    asked, made = [], []
    real_init = state_lib.train_state_init

    def counted_init(*args, **kwargs):
      asked.append(1)
      make, abstract = real_init(*args, **kwargs)
      return (lambda: made.append(1) or make()), abstract

    with mock.patch.object(state_lib, "train_state_init", counted_init):
      resumed_scores = train.train_and_evaluate(self.seeds_config, workdir)  # resumes here
    self.assertEqual((len(asked), made), (1, []))
    for which in ("latest", "best"):  # the best save holds each replica's own best
      step, resumed = _latest_params(workdir, which)
      expected_step, uninterrupted = _latest_params(self.seeds_workdir, which)
      self.assertEqual(step, expected_step)
      for path, a, b in zip(
          jax.tree_util.tree_leaves_with_path(uninterrupted),
          jax.tree.leaves(uninterrupted),
          jax.tree.leaves(resumed),
      ):
        np.testing.assert_array_equal(b, a, err_msg=f"{which} {jax.tree_util.keystr(path[0])}")
    self.assertEqual(resumed_scores, self.seeds_scores)

  def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(self):
    workdir = os.path.join(self.root, "nan")
    bad_step = self.steps_per_epoch + 1
    config = tiny_config(
        num_epochs=2, synthetic_num_epochs=2, **SGD, **{"debug.nan_loss_at_step": bad_step}
    )
    with self.assertRaisesRegex(train.NonFiniteLossError, rf"at step {bad_step} .*clips \[\S+"):
      train.train_and_evaluate(config, workdir)
    step, params = _latest_params(workdir)
    self.assertEqual(step, self.steps_per_epoch)  # epoch 1's save, nothing after the bad step
    for leaf in jax.tree.leaves(params):
      self.assertTrue(np.all(np.isfinite(leaf)))


def metrics_keys():
  from avvp_jax.tasks.llp import metrics  # pylint: disable=g-import-not-at-top

  return metrics.KEYS


class LauncherTest(absltest.TestCase):

  def assertOneErrorLine(self, stderr, pattern):  # pylint: disable=invalid-name
    """The message is one line, the last of stderr (log lines may come before it), with no traceback."""
    lines = stderr.strip().splitlines()
    self.assertNotIn("Traceback", stderr)
    self.assertRegex(lines[-1], pattern)
    self.assertLen([line for line in lines if line.startswith("error:")], 1, stderr)

  def _run(self, *flags):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "launch", "train.py"), *flags],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )

  def test_missing_features_dir_is_one_line_error(self):
    workdir = self.create_tempdir().full_path
    result = self._run(
        "--config=configs/han.py:tiny",
        f"--workdir={workdir}",
        "--config.data.features_dir=/nonexistent/llp_features",
    )
    self.assertEqual(result.returncode, 2, result.stderr[-3000:])
    self.assertOneErrorLine(result.stderr, r"^error: .*features_dir.*/nonexistent/llp_features")

  def test_misspelt_config_field_is_one_line_error(self):
    result = self._run(
        "--config=configs/han.py:tiny",
        "--config.optimizer.learnin_rate=1e-4",
        f"--workdir={self.create_tempdir().full_path}",
    )
    self.assertNotEqual(result.returncode, 0)
    self.assertOneErrorLine(result.stderr, r"^error: .*learnin_rate")

  def test_default_workdir(self):
    self.assertEqual(cli.default_workdir("configs/leap.py"), os.path.join(".", "workdir", "leap"))
    self.assertEqual(
        cli.default_workdir("configs/leap.py:tiny"), os.path.join(".", "workdir", "leap_tiny")
    )


if __name__ == "__main__":
  absltest.main()
