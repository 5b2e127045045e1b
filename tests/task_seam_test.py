"""The task seam: a toy second task (tests/toy_task.py) trains through launch/train.py, the registry, the meta."""

import json
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest
import jax
import ml_collections
import numpy as np

from avvp_jax import evaluate
from avvp_jax import models
from avvp_jax import state as state_lib
from avvp_jax import task as task_lib
from avvp_jax import tasks
from avvp_jax import train
from avvp_jax.errors import InputError
from avvp_jax.tasks.llp import task as llp_task
from train_test import ROOT, TIMEOUT_S, _env  # pylint: disable=g-bad-import-order

TESTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, ROOT)

from configs import han  # pylint: disable=g-import-not-at-top,wrong-import-position


class ToyTaskTest(absltest.TestCase):

  def test_trains_one_epoch_through_the_launcher(self):
    root = tempfile.mkdtemp(prefix="toy_task_")
    workdir = os.path.join(root, "workdir")
    env = _env()
    env["PYTHONPATH"] = TESTS + os.pathsep + env["PYTHONPATH"]
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "launch", "train.py"),
            "--config=configs/han.py:tiny",
            f"--workdir={workdir}",
            "--config.task=toy_task",
            f"--config.data.data_dir={root}/tfds",
            "--config.num_epochs=1",
            "--config.batch_size=8",
            "--config.eval_batch_size=4",
            "--config.model.input_dims.audio=6",
            "--config.model.input_dims.frames=6",
            "--config.model.input_dims.motion=0",
            "--config.checkpoint.best_metric=accuracy",
            "--config.final_report=val",  # the toy has no test split
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    self.assertEqual(result.returncode, 0, msg=result.stderr[-3000:])
    self.assertIn("validation, last epoch (10 clips; toy)", result.stdout)
    self.assertRegex(result.stdout, r"accuracy +\d+\.\d\d")
    stored = json.load(open(os.path.join(workdir, "config.json")))
    self.assertEqual(stored["task"], "toy_task")
    self.assertLen(os.listdir(os.path.join(workdir, "best")), 1)  # ranked by the toy's accuracy
    self.assertIn("val, best state (10 clips; one seed)", result.stdout)  # the final report
    report = json.load(open(os.path.join(workdir, "eval_val.json")))
    self.assertEqual((report["task"], report["num_clips"]), ("toy", 10))


class EvalsTest(absltest.TestCase):

  def _config(self):
    config = han.get_config("tiny")
    config.unlock()
    config.task = "toy_task"
    config.num_epochs, config.batch_size, config.eval_batch_size = 1, 8, 4
    config.model.input_dims.update(audio=6, frames=6, motion=0)
    config.checkpoint.best_metric = ""  # the task's default
    config.final_report = "val"  # the toy has no test split
    return state_lib.resolve_config(config)

  def test_config_evals_add_evaluations_without_touching_the_trainer(self):
    config = self._config()
    self.assertEqual(config.checkpoint.best_metric, "accuracy")
    config.evals.again = dict(split="val")
    config.data.data_dir = tempfile.mkdtemp(prefix="toy_evals_")
    with self.assertLogs(level="INFO") as logs:
      report = train.train_and_evaluate(config, os.path.join(config.data.data_dir, "workdir"))
    lines = [r.getMessage() for r in logs.records]
    validation = [line for line in lines if line.startswith("validation (10 clips")]
    again = [line for line in lines if line.startswith("again (val) (10 clips")]
    self.assertLen(validation, 1)
    self.assertLen(again, 1)
    self.assertEqual(
        validation[0].split(": ", 1)[1], again[0].split(": ", 1)[1]
    )  # same split, same scores
    self.assertIn("accuracy", report)

  def test_bad_entries_are_one_line(self):
    config = self._config()
    task = tasks.of(config)
    config.evals.test = dict(split="test")
    with self.assertRaisesRegex(InputError, "scores split 'test'"):
      evaluate.run_evaluators(config, task, task.meta(config))
    config.evals.test = dict(split="val", type="f1")
    with self.assertRaisesRegex(InputError, "'f1' is not an evaluator of task 'toy'"):
      evaluate.run_evaluators(config, task, task.meta(config))


class RegistryTest(absltest.TestCase):

  def test_unknown_task_is_one_line(self):
    with self.assertRaisesRegex(
        InputError, "config.task 'nope' is unknown: use one of ave, ave_cmm, llp"
    ):
      tasks.get("nope")
    with self.assertRaisesRegex(InputError, "is unknown"):
      tasks.get("no_such_package.no_task")

  def test_launcher_names_an_unknown_task_in_one_line(self):
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "launch", "train.py"),
            "--config=configs/han.py:tiny",
            "--config.task=nope",
            f"--workdir={tempfile.mkdtemp(prefix='nope_')}/w",
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    self.assertEqual(result.returncode, 2)
    self.assertEqual(
        result.stderr.strip().splitlines()[-1],
        "error: config.task 'nope' is unknown: use one of ave, ave_cmm, llp, or the dotted path of an "
        "importable module that defines TASK (an avvp_jax.task.Task).",
    )
    self.assertNotIn("Traceback", result.stderr)

  def test_configs_before_tasks_are_llp(self):
    config = ml_collections.ConfigDict({"num_seeds": 1})
    state_lib.backfill(config)
    self.assertEqual(config.task, "llp")
    self.assertIs(tasks.of(config), llp_task.TASK)


class MetaTest(absltest.TestCase):

  def test_llp_meta_follows_the_layout(self):
    meta = llp_task.META
    self.assertEqual(meta.num_classes, 25)
    self.assertEqual(meta.num_segments, 10)
    self.assertEqual(meta.input_dims(llp_task.INPUT_KEYS), dict(audio=128, frames=2048, motion=512))
    clip_clap = llp_task._meta("clip_clap", "pooled", dict(audio=768, frames=768, motion=0))
    self.assertEqual([spec.name for spec in clip_clap.features], ["audio", "frames"])
    raw = llp_task._meta("official", "raw", dict(audio=128, frames=2048, motion=512))
    self.assertEqual(raw.feature("frames").shape, (80, 2048))

  def test_models_are_sized_by_the_meta(self):
    meta = task_lib.Meta(
        task="three",
        class_names=("a", "b", "c"),
        num_segments=5,
        features=(task_lib.FeatureSpec("audio", (5, 7)), task_lib.FeatureSpec("frames", (5, 9))),
    )
    config = ml_collections.ConfigDict(
        dict(
            encoder="han",
            decoder="leap",
            refiner="none",
            hidden_dim=16,
            input_dims=dict(audio=7, frames=9, motion=0),
            han=dict(num_heads=2),
            leap=dict(num_blocks=1, num_heads=2, label_embeddings="learned", learned_label_dim=8),
        )
    )
    model = models.build_model(config, meta)
    audio, frames = np.zeros((2, 5, 7), np.float32), np.zeros((2, 5, 9), np.float32)
    params = model.init(jax.random.key(0), audio, frames, train=False)["params"]
    outputs = model.apply({"params": params}, audio, frames, train=False)
    self.assertEqual(outputs["segment_audio_prob"].shape, (2, 5, 3))
    # The packaged tables hold LLP's and AVE's classes only: another task names its own table.
    config.leap.label_embeddings = "packaged"
    with self.assertRaisesRegex(InputError, "hold the LLP and AVE classes, not 'a', 'b', 'c'"):
      models.build_model(config, meta)


if __name__ == "__main__":
  absltest.main()
