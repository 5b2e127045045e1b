"""Evaluation: padded masked batches equal one whole-split scoring, for every replica of a 2-seed run and
for their ensemble; launch/evaluate.py writes eval_<split>.json with mean, std, per seed and ensemble.
"""

import json
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest
import jax
import numpy as np

import avvp_jax
import launch_env
from avvp_jax import checkpoint
from avvp_jax import evaluate
from avvp_jax.errors import InputError
from avvp_jax.tasks.llp import task as llp_task
from avvp_jax.tasks.llp.evaluator import ParsingEvaluator
from avvp_jax.tools import evaluate_checkpoint
from avvp_jax.tasks.llp import metrics
from avvp_jax import state as state_lib
from avvp_jax import sharding
from avvp_jax.tasks.llp import run_data
from avvp_jax import train
from avvp_jax.tasks.llp import annotations

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configs import han  # pylint: disable=g-import-not-at-top,wrong-import-position

TIMEOUT_S = 240


def _env() -> dict[str, str]:
  env = dict(os.environ)
  launch_env.without_forced_devices(env)
  env.update(
      PYTHONPATH=ROOT + os.pathsep + env.get("PYTHONPATH", ""),
      TF_CPP_MIN_LOG_LEVEL="2",
      JAX_PLATFORMS="cpu",
  )
  return env


class EvaluateTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.config = han.get_config("tiny")
    cls.config.unlock()
    cls.config.num_seeds = 2  # replicas with seeds 0 and 1
    # A fresh folder: a workdir left by an earlier run would resume instead of training.
    cls.workdir = os.path.join(
        tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir()), "evaluate_tiny"
    )
    train.train_and_evaluate(cls.config, cls.workdir)

  def _launch(self, *flags):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "launch", "evaluate.py"), *flags],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )

  def test_batched_masked_sums_equal_whole_split_scores(self):
    config = state_lib.resolve_config(self.config)
    _, params = checkpoint.restore_params(self.workdir)
    data = run_data.prepare_run(config, train=False)
    mesh = sharding.make_mesh(num_seeds=2)
    model = state_lib.build_model(config)
    batches = list(data.eval_batches("val"))
    num_clips = data.num_eval_clips("val")
    self.assertGreater(len(batches) * config.eval_batch_size, num_clips)  # the last batch is padded
    evaluator = ParsingEvaluator(llp_task.TASK.meta(config))
    got = evaluate.run_evaluation(
        evaluate.make_eval_step(
            evaluator, model, mesh, num_seeds=2, input_keys=llp_task.INPUT_KEYS, ensemble=True
        ),
        evaluator,
        params,
        batches,
        mesh,
        num_clips=num_clips,
    )
    # Oracle: the real rows of every batch, scored in one call, each replica's model applied on its own.
    whole = {
        key: np.concatenate([np.asarray(b[key]) for b in batches])
        for key in batches[0]
        if np.asarray(batches[0][key]).dtype.kind in "fiub"
    }
    real = whole["mask"] > 0
    self.assertEqual(int(real.sum()), num_clips)
    self.assertLen(set(whole["index"][real].tolist()), num_clips)  # every clip exactly once
    whole = {key: jax.numpy.asarray(value[real]) for key, value in whole.items()}
    replica_outputs = [
        state_lib.apply_model(
            model,
            checkpoint.select_seed(config, params, seed),
            whole,
            input_keys=llp_task.INPUT_KEYS,
            train=False,
        )
        for seed in (0, 1)
    ]
    ensemble_outputs = {
        key: (replica_outputs[0][key] + replica_outputs[1][key]) / 2 for key in replica_outputs[0]
    }
    self.assertLen(got["per_seed"], 2)
    for scores, outputs in (
        (got["per_seed"][0], replica_outputs[0]),
        (got["per_seed"][1], replica_outputs[1]),
        (got["ensemble"], ensemble_outputs),
    ):
      preds = metrics.segment_predictions(
          outputs["segment_audio_prob"],
          outputs["segment_visual_prob"],
          outputs["audio_filter_prob"],
          outputs["visual_filter_prob"],
      )
      expected = metrics.parsing_scores(*preds, whole["audio_label"], whole["visual_label"])
      for key in metrics.KEYS:
        self.assertAlmostEqual(scores[key], expected[key], delta=1e-4, msg=key)
      self.assertEqual(scores["num_clips"], num_clips)
      per_class = metrics.per_class_f1(*preds, whole["audio_label"], whole["visual_label"])
      for key, values in per_class.items():
        expected_classes = {
            name: v for name, v in zip(annotations.CLASSES, values) if np.isfinite(v)
        }
        self.assertEqual(sorted(scores["per_class"][key]), sorted(expected_classes))
        for name, value in expected_classes.items():
          self.assertAlmostEqual(scores["per_class"][key][name], value, delta=1e-6, msg=(key, name))
    self.assertNotEqual(got["per_seed"][0]["segment/type"], got["per_seed"][1]["segment/type"])

  def test_launcher_writes_eval_json_from_workdir(self):
    with open(os.path.join(self.workdir, "eval_test.json"), "w") as f:  # a report of another step
      json.dump({"step": 1}, f)
    result = self._launch(
        f"--workdir={self.workdir}"
    )  # --split=test by default, as the examples say
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertIn("test (", result.stdout)
    with open(os.path.join(self.workdir, "eval_test.json")) as f:
      report = json.load(f)
    step = checkpoint.resolve(self.workdir).step  # the best save, the one scored
    self.assertIn(f"replacing eval_test.json of step 1 with step {step}", result.stdout)
    self.assertEqual(
        {k: report[k] for k in ("step", "seeds", "headline", "synthetic", "package_version")},
        {
            "step": step,
            "seeds": [0, 1],
            "headline": "mean over 2 seeds",
            "synthetic": True,
            "package_version": avvp_jax.__version__,
        },
    )
    self.assertIn("commit", report)
    self.assertContainsSubset(metrics.KEYS, report)
    self.assertEqual([entry["seed"] for entry in report["per_seed"]], [0, 1])
    for (
        key
    ) in (
        metrics.KEYS
    ):  # the top-level keys: mean over the seeds; std: the sample standard deviation
      values = [entry[key] for entry in report["per_seed"]]
      self.assertAlmostEqual(report[key], np.mean(values), delta=1e-9, msg=key)
      self.assertAlmostEqual(
          report["std"][key], abs(values[0] - values[1]) / np.sqrt(2), delta=1e-9, msg=key
      )
      self.assertBetween(report["ensemble"][key], 0.0, 100.0)
    self.assertIn("synthetic", report["data"].lower())
    self.assertEqual(report["split"], "test")
    self.assertContainsSubset(
        ["segment/audio", "segment/visual"], report["per_seed"][1]["per_class"]
    )
    self.assertRegex(result.stdout, r"segment/type +\d+\.\d\d ± +\d+\.\d\d +\d+\.\d\d")

  def test_one_seed_report_is_the_seeds_scores(self):
    scores = {
        **{key: float(i) for i, key in enumerate(metrics.KEYS)},
        "per_class": {},
        "num_clips": 3,
    }
    report = evaluate.seed_report({"per_seed": [scores], "ensemble": None}, [7], metrics.KEYS)
    self.assertEqual(report, scores)  # no std / per_seed / ensemble keys for one seed
    self.assertEqual(
        evaluate.report_lines(report, metrics.KEYS)[3].split(), ["segment/type", "3.00"]
    )

  def test_params_only_checkpoint(self):
    config, params = checkpoint.restore_params(self.workdir)
    export = self.create_tempdir().full_path
    checkpoint.save_params_checkpoint(export, config, params)
    _, restored = checkpoint.restore_params(export)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(restored)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    out_dir = self.create_tempdir().full_path
    report = evaluate_checkpoint.evaluate_checkpoint(None, out_dir, "val", checkpoint=export)
    expected = evaluate_checkpoint.evaluate_checkpoint(None, self.workdir, "val")
    for key in metrics.KEYS:
      self.assertEqual(report[key], expected[key])
    self.assertEqual(report["ensemble"], expected["ensemble"])
    self.assertTrue(os.path.isfile(os.path.join(out_dir, "eval_val.json")))
    self.assertIsNone(report["step"])  # a params-only checkpoint: no train step
    self.assertEqual(expected["step"], checkpoint.resolve(self.workdir).step)

  def test_config_with_other_seeds_is_an_input_error(self):
    from avvp_jax.errors import InputError  # pylint: disable=g-import-not-at-top

    one_seed = han.get_config("tiny")
    with self.assertRaisesRegex(
        InputError,
        r"holds 2 replica\(s\) \(seeds \[0, 1\]\), but the given config has "
        r"num_seeds=1: pass --config.num_seeds=2 --config.seed=0",
    ):
      checkpoint.restore_params(self.workdir, one_seed)

  def test_config_without_num_seeds_takes_the_checkpoints_seeds(self):
    # configs/han.py:tiny says num_seeds=1; the workdir holds 2 replicas, and the checkpoint's number wins.
    result = self._launch(
        "--config=configs/han.py:tiny", f"--workdir={self.workdir}", "--split=val"
    )
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    with open(os.path.join(self.workdir, "eval_val.json")) as f:
      report = json.load(f)
    self.assertEqual([entry["seed"] for entry in report["per_seed"]], [0, 1])
    self.assertIn("ensemble", report)
    expected = evaluate_checkpoint.evaluate_checkpoint(
        None, self.workdir, "val"
    )  # the stored config
    for key in metrics.KEYS:
      self.assertAlmostEqual(report[key], expected[key], delta=1e-9, msg=key)

  def test_explicit_other_num_seeds_is_one_line_error(self):
    for flags in (
        ["--config.num_seeds", "1"],
    ):  # absl reads "--config.num_seeds=1" into the same override
      result = self._launch(
          "--config=configs/han.py:tiny", *flags, f"--workdir={self.workdir}", "--split=val"
      )
      self.assertEqual(result.returncode, 2, result.stderr[-3000:])
      self.assertNotIn("Traceback", result.stderr)
      lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
      self.assertLen(lines, 1, result.stderr)
      self.assertRegex(
          lines[0],
          r"^error: the checkpoint in .* holds 2 replica\(s\) \(seeds \[0, 1\]\), but the "
          r"given config has num_seeds=1: pass --config.num_seeds=2 --config.seed=0",
      )

  def test_a_split_the_task_cannot_score_is_refused_before_anything_is_written(self):
    before = sorted(os.listdir(self.workdir))
    with self.assertRaisesRegex(
        InputError, r"^--split='train' is not an evaluation split: use val or test\.$"
    ):
      evaluate_checkpoint.evaluate_checkpoint(None, self.workdir, "train")
    self.assertEqual(sorted(os.listdir(self.workdir)), before)

  def test_missing_checkpoint_is_one_line_error(self):
    empty = self.create_tempdir().full_path
    result = self._launch("--config=configs/han.py:tiny", f"--workdir={empty}", "--split=val")
    self.assertEqual(result.returncode, 2, result.stderr[-3000:])
    lines = result.stderr.strip().splitlines()
    self.assertNotIn("Traceback", result.stderr)
    self.assertRegex(lines[-1], r"^error: No checkpoint in ")
    self.assertLen([line for line in lines if line.startswith("error:")], 1, result.stderr)


if __name__ == "__main__":
  absltest.main()
