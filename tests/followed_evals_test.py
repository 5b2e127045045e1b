"""The papers' best-test-epoch figure: read back from a run's metrics, beside the validation-selected report."""

import importlib
import json
import os
import sys

from absl.testing import absltest

from avvp_jax import followed_evals
from avvp_jax import train
from avvp_jax.tools import evaluate_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _write(folder, records):
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
    for r in records:
      f.write(json.dumps(r) + "\n")


class BestFollowedEpochTest(absltest.TestCase):

  def test_one_seed_first_of_equal_maxima_and_resumed_duplicates(self):
    workdir = self.create_tempdir().full_path
    _write(
        workdir,
        [
            {"step": 1, "train/loss": 3.0},
            {"step": 10, "epoch": 1, "val/accuracy": 50.0, "test/accuracy": 40.0},
            {"step": 20, "epoch": 2, "val/accuracy": 60.0, "test/accuracy": 70.0},
            {"step": 30, "epoch": 3, "val/accuracy": 65.0, "test/accuracy": 65.0},
            # a run resumed after epoch 3 logs epoch 3 again (the later line counts), then a tie with epoch 2
            {"step": 30, "epoch": 3, "val/accuracy": 65.0, "test/accuracy": 66.0},
            {"step": 40, "epoch": 4, "val/accuracy": 64.0, "test/accuracy": 70.0},
        ],
    )
    with open(
        os.path.join(workdir, "metrics.jsonl"), "a"
    ) as f:  # a line cut short by a stopped run
      f.write('{"step": 50, "epoch": 5, "test/accu')
    best = followed_evals.best_followed_epoch(workdir, [0], "test", "test", "accuracy")
    self.assertEqual(best["per_seed"], [{"seed": 0, "step": 20, "epoch": 2, "accuracy": 70.0}])
    self.assertEqual(best["accuracy"], 70.0)
    self.assertNotIn("std", best)
    self.assertIn("a selection on test", best["rule"])
    self.assertIn("epoch 2", followed_evals.line(best))
    self.assertIsNone(followed_evals.best_followed_epoch(workdir, [0], "other", "test", "accuracy"))

  def test_seeds_read_their_own_logs(self):
    workdir = self.create_tempdir().full_path
    _write(workdir, [{"step": 5, "epoch": 1, "test/accuracy": 10.0}, {"step": 10, "epoch": 2}])
    _write(
        os.path.join(workdir, "seed_3"),
        [{"step": 5, "test/accuracy": 30.0}, {"step": 10, "test/accuracy": 20.0}],
    )
    _write(
        os.path.join(workdir, "seed_4"),
        [{"step": 5, "test/accuracy": 10.0}, {"step": 10, "test/accuracy": 50.0}],
    )
    best = followed_evals.best_followed_epoch(workdir, [3, 4], "test", "test", "accuracy")
    self.assertEqual(
        best["per_seed"],
        [
            {"seed": 3, "step": 5, "epoch": 1, "accuracy": 30.0},
            {"seed": 4, "step": 10, "epoch": 2, "accuracy": 50.0},
        ],
    )
    self.assertAlmostEqual(best["accuracy"], 40.0)
    self.assertAlmostEqual(best["std"], 14.142135623730951)
    self.assertIn("40.00 ± 14.14 over 2 seeds", followed_evals.line(best))


class TrainedRunTest(absltest.TestCase):

  def test_an_ave_run_reports_its_best_test_epoch_beside_the_selected_state(self):
    config = importlib.import_module("configs.psp").get_config("tiny")
    self.assertEqual(config.evals.test.split, "test")  # the AVE run cards follow the test split
    config.num_epochs = config.synthetic_num_epochs = 2
    workdir = self.create_tempdir().full_path
    train.train_and_evaluate(config, workdir)
    report = evaluate_checkpoint.evaluate_checkpoint(None, workdir, "test")
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      logged = [json.loads(line) for line in f]
    tests = [r for r in logged if "test/accuracy" in r]
    self.assertEqual(
        [r["epoch"] for r in tests], [1, 2]
    )  # the trainer logs each validation's epoch
    best = report["best_followed_epoch"]["test"]
    (entry,) = best["per_seed"]
    top = max(r["test/accuracy"] for r in tests)
    first = next(r for r in tests if r["test/accuracy"] == top)
    self.assertEqual(
        (entry["step"], entry["epoch"], entry["accuracy"]), (first["step"], first["epoch"], top)
    )
    with open(os.path.join(workdir, "eval_test.json")) as f:
      self.assertEqual(json.load(f)["best_followed_epoch"], report["best_followed_epoch"])
    # another checkpoint than the workdir's own has no training log to read
    other = evaluate_checkpoint.evaluate_checkpoint(
        None,
        None,
        "test",
        os.path.join(workdir, "best", str(report["step"])),
        out=self.create_tempdir().full_path,
    )
    self.assertNotIn("best_followed_epoch", other)


if __name__ == "__main__":
  absltest.main()
