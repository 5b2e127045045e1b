"""The AVE task through the generic trainer: a TEST-ONLY tiny model (tests/ave_toy_model.py) trains an epoch on
the SYNTHETIC set and is scored by the AVE evaluator through the generic loop; the loss dispatch and the
config checks."""

import os
import subprocess
import sys
import tempfile
from unittest import mock

from absl.testing import absltest
import jax
import numpy as np

from avvp_jax import checkpoint
from avvp_jax import evaluate
from avvp_jax import models
from avvp_jax import sharding
from avvp_jax import state as state_lib
from avvp_jax import tasks
from avvp_jax import train
from avvp_jax import workdir as workdir_lib
from avvp_jax.errors import InputError
from avvp_jax.tasks.ave import annotations
from avvp_jax.tasks.ave import task as ave_task
import ave_toy_model  # pylint: disable=g-bad-import-order
from train_test import TIMEOUT_S, _env  # pylint: disable=g-bad-import-order

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configs import han  # pylint: disable=g-import-not-at-top,wrong-import-position


def _config(supervision="full"):
  config = han.get_config("tiny")
  config.unlock()
  config.task = "ave"
  config.loss.name = "ave_toy_model"
  config.num_epochs, config.batch_size, config.eval_batch_size = 1, 8, 3
  config.optimizer.learning_rate = 1e-3
  config.data.data_dir = tempfile.mkdtemp(prefix="ave_task_")
  config.data.ave.update(supervision=supervision, synthetic_train_clips=16, synthetic_eval_clips=8)
  config.checkpoint.best_metric = ""  # the task's default
  return config


class RegistryTest(absltest.TestCase):

  def test_ave_is_a_task_with_its_facts(self):
    task = tasks.get("ave")
    self.assertIs(task, ave_task.TASK)
    meta = task.meta(_config())
    self.assertEqual(meta.num_classes, 29)
    self.assertEqual(meta.class_names[annotations.BACKGROUND], "Background")
    self.assertEqual(meta.num_segments, 10)
    self.assertEqual(meta.feature("visual").shape, (10, 7, 7, 512))
    self.assertEqual(meta.input_dims(task.input_keys), {"audio": 128, "visual": 512})
    self.assertEqual(task.default_best_metric, "accuracy")
    dummy = task.dummy_batch(meta, 2)
    self.assertEqual(dummy["visual"].shape, (2, 10, 7, 7, 512))

  def test_the_task_imports_no_tensorflow(self):
    """The task's checks run before data are read: TensorFlow (and h5py) only when they are."""
    code = (
        "import sys; from avvp_jax import tasks; tasks.get('ave'); "
        "heavy = [m for m in ('tensorflow', 'h5py') if m in sys.modules]; assert not heavy, heavy"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    self.assertEqual(result.returncode, 0, msg=result.stderr[-2000:])

  def test_config_checks_are_one_line(self):
    config = _config()
    config.loss.name = "nope"
    with self.assertRaisesRegex(InputError, "config.loss.name 'nope' names no AVE loss"):
      ave_task.TASK.check_config(config)
    config = _config()
    config.data.ave.supervision = "semi"
    with self.assertRaisesRegex(InputError, "supervision='semi' is unknown"):
      ave_task.TASK.check_config(config)
    config = _config()
    config.data.ave.synthetic_train_clips = 5000
    with self.assertRaisesRegex(InputError, "synthetic_train_clips=5000"):
      ave_task.TASK.check_config(config)
    config = _config()
    config.data.features_dir = "/no/such/folder"
    with self.assertRaisesRegex(InputError, "is not a folder"):
      ave_task.TASK.check_config(config)
    config = _config()
    config.checkpoint.best_metric = "segment/type"  # LLP's, from an LLP base config
    with self.assertRaisesRegex(
        InputError, "best_metric='segment/type' is no AVE score: use one of accuracy"
    ):
      ave_task.TASK.check_config(config)
    config = _config()
    del config.data["ave"]
    with self.assertRaisesRegex(InputError, "config.data.ave is missing"):
      ave_task.TASK.check_config(config)

  def test_loss_dispatch_finds_the_models_module_lazily(self):
    config = _config()
    self.assertIs(ave_task.loss_module(config.loss), ave_toy_model)
    with mock.patch("importlib.import_module", wraps=__import__("importlib").import_module) as imp:
      ave_task.loss_module(config.loss)
    self.assertEqual(imp.call_args_list[0].args[0], "avvp_jax.tasks.ave.losses.ave_toy_model")


@mock.patch.object(models, "build_model", ave_toy_model.build)
class TrainTest(absltest.TestCase):

  def _train(self, supervision):
    config = state_lib.resolve_config(_config(supervision))
    self.assertEqual(config.checkpoint.best_metric, "accuracy")
    workdir = os.path.join(config.data.data_dir, "workdir")
    with self.assertLogs(level="INFO") as logs:
      report = train.train_and_evaluate(config, workdir)
    return config, workdir, report, [r.getMessage() for r in logs.records]

  def test_trains_and_scores_through_the_generic_loop(self):
    config, workdir, report, lines = self._train("full")
    self.assertTrue(any("SYNTHETIC" in line for line in lines))
    self.assertEqual(report["num_clips"], 8)
    self.assertEqual(report["num_segments"], 80)
    self.assertSetEqual(set(report["per_class"]), {"accuracy"})
    self.assertTrue(any(line.startswith("validation") for line in lines))
    self.assertLen(os.listdir(os.path.join(workdir, "best")), 1)
    # Oracle: the trained model applied to every real val clip at once, argmaxes compared in numpy.
    _, params = checkpoint.restore_params(workdir)
    data = ave_task.TASK.prepare_data(config, train=False)
    batches = list(data.eval_batches("val"))
    self.assertLen(batches, 3)  # 3 + 3 + 2 real clips, the last padded
    whole = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    real = whole["mask"] > 0
    model = ave_toy_model.build(None, ave_task.META)
    one = jax.tree.map(lambda x: np.asarray(x)[0], params)
    outputs = model.apply({"params": one}, whole["audio"][real], whole["visual"][real])
    right = np.asarray(outputs["segment_logits"]).argmax(-1) == whole["segment_label"][real].argmax(
        -1
    )
    self.assertAlmostEqual(report["accuracy"], 100 * right.mean(), places=4)
    # The same through evaluate.run_evaluation directly (every clip once, padding masked).
    mesh = sharding.make_mesh(num_seeds=1)
    evaluator = ave_task.TASK.evaluators["accuracy"](ave_task.META)
    got = evaluate.run_evaluation(
        evaluate.make_eval_step(
            evaluator, model, mesh, num_seeds=1, input_keys=ave_task.TASK.input_keys
        ),
        evaluator,
        params,
        batches,
        mesh,
        num_clips=8,
    )
    self.assertAlmostEqual(got["per_seed"][0]["accuracy"], 100 * right.mean(), places=4)

  def test_weak_training_sees_video_labels_only(self):
    with mock.patch.object(ave_toy_model, "compute_loss", wraps=ave_toy_model.compute_loss) as loss:
      _, _, report, _ = self._train("weak")
    self.assertEqual(report["num_segments"], 80)  # val still scored on segment labels
    traced = set(loss.call_args.args[2])  # the training batch the loss saw (traced once)
    self.assertIn("video_label", traced)
    self.assertNotIn("segment_label", traced)
    self.assertNotIn("event_mask", traced)


class OldWorkdirTest(absltest.TestCase):
  """config.data.ave joined configs/common.py after LLP runs were stored: those runs still continue."""

  def test_an_llp_run_stored_before_data_ave_continues(self):
    workdir = tempfile.mkdtemp(prefix="ave_old_workdir_")
    stored = han.get_config("tiny")
    stored.unlock()
    del stored.data["ave"]  # as an LLP run written before AVE stored it
    checkpoint.save_config(workdir, stored)
    changes = workdir_lib.check(workdir, han.get_config("tiny"))
    self.assertIn("data.ave.supervision", changes)  # recorded, not refused
    changed = han.get_config("tiny")
    changed.data.layout = "clip_clap"
    with self.assertRaisesRegex(
        InputError, "data.layout is"
    ):  # the run's own data still must match
      workdir_lib.check(workdir, changed)

  def test_an_ave_runs_own_data_section_must_match(self):
    workdir = tempfile.mkdtemp(prefix="ave_workdir_")
    checkpoint.save_config(workdir, _config())
    weak = _config("weak")
    weak.data.data_dir = _config().data.data_dir
    with self.assertRaisesRegex(InputError, 'data.ave.supervision is "full" there, "weak" here'):
      workdir_lib.check(workdir, weak)


# launch/train.py with the registry's builder replaced by the TEST-ONLY model (the registry builds LLP-shaped
# models until the AVE models land).
_LAUNCH = """
import runpy, sys
import avvp_jax.models
import ave_toy_model
avvp_jax.models.build_model = ave_toy_model.build
sys.argv = ["launch/train.py", *sys.argv[1:]]
runpy.run_path("launch/train.py", run_name="__main__")
"""


class LauncherTest(absltest.TestCase):

  def _run(self, *flags, patch=True):
    env = _env()
    env["PYTHONPATH"] = os.path.dirname(os.path.abspath(__file__)) + os.pathsep + env["PYTHONPATH"]
    command = ["-c", _LAUNCH] if patch else [os.path.join(ROOT, "launch", "train.py")]
    return subprocess.run(
        [sys.executable, *command, "--config=configs/han.py:tiny", "--config.task=ave", *flags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )

  def test_trains_one_epoch_through_the_launcher(self):
    root = tempfile.mkdtemp(prefix="ave_launch_")
    result = self._run(
        f"--workdir={root}/workdir",
        "--config.loss.name=ave_toy_model",
        f"--config.data.data_dir={root}/tfds",
        "--config.data.ave.synthetic_train_clips=16",
        "--config.data.ave.synthetic_eval_clips=8",
        "--config.num_epochs=1",
        "--config.batch_size=8",
        "--config.eval_batch_size=4",
        "--config.checkpoint.best_metric=accuracy",
    )
    self.assertEqual(result.returncode, 0, msg=result.stderr[-3000:])
    self.assertIn("validation, last epoch (8 clips; SYNTHETIC AVE data", result.stdout)
    self.assertRegex(result.stdout, r"accuracy +\d+\.\d\d")

  def test_without_an_ave_loss_the_launcher_says_so_in_one_line(self):
    result = self._run(f"--workdir={tempfile.mkdtemp(prefix='ave_noloss_')}/w", patch=False)
    self.assertEqual(result.returncode, 2, msg=result.stderr[-2000:])
    self.assertEqual(
        result.stderr.strip().splitlines()[-1],
        "error: config.loss.name 'han' names no AVE loss: give the name of a module of "
        "avvp_jax.tasks.ave.losses (e.g. the model's), or the dotted path of an importable module that "
        "defines compute_loss(loss_config, outputs, batch).",
    )
    self.assertNotIn("Traceback", result.stderr)


if __name__ == "__main__":
  absltest.main()
