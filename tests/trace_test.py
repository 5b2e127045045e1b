"""Results one can trace: `metrics.jsonl` beside the TensorBoard files, the source commit and version, the
"replacing eval_<split>.json of step N" line. (The reports of real runs are checked in train_test.py,
workdir_test.py, evaluate_test.py and parse_cli_test.py, on the runs they train.)
"""

import json
import os
import shutil
import subprocess
from unittest import mock

from absl.testing import absltest

import avvp_jax
from avvp_jax import provenance
from avvp_jax import reporting
from avvp_jax.tools import evaluate_checkpoint


def read_jsonl(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f]


class MetricsJsonlTest(absltest.TestCase):

  def test_one_flushed_line_per_call_appended_across_writers(self):
    logdir = os.path.join(self.create_tempdir().full_path, "run")
    path = os.path.join(logdir, reporting.METRICS_FILE)
    writer = reporting.SummaryWriter(logdir)
    writer.scalars(1, {"train/loss": 0.5, "train/learning_rate": 1e-3})
    self.assertLen(read_jsonl(path), 1)  # flushed at once: readable while the run goes on
    writer.scalars(2, {"val/segment/type": 12.5, "bad": float("nan")})
    writer.close()
    resumed = reporting.SummaryWriter(logdir)  # a resumed run appends
    resumed.scalars(3, {"train/loss": 0.25})
    resumed.close()
    lines = read_jsonl(path)
    self.assertEqual([line["step"] for line in lines], [1, 2, 3])
    self.assertEqual(
        {k: v for k, v in lines[0].items() if k != "time"},
        {"step": 1, "train/loss": 0.5, "train/learning_rate": 1e-3},
    )
    self.assertIsNone(lines[1]["bad"])  # not finite: null, which every JSON reader takes
    self.assertEqual(lines[1]["val/segment/type"], 12.5)
    for line in lines:
      self.assertIsInstance(line["time"], float)
    self.assertTrue(any(name.startswith("events.out.tfevents") for name in os.listdir(logdir)))


class ProvenanceTest(absltest.TestCase):

  def test_version_and_commit_of_this_checkout(self):
    self.assertEqual(provenance.package()["package_version"], avvp_jax.__version__)
    if shutil.which("git") is None or not os.path.exists(
        os.path.join(provenance.SOURCE_ROOT, ".git")
    ):
      self.skipTest("not a git checkout")
    self.assertRegex(provenance.source_commit(), r"^[0-9a-f]{40}$")

  def test_no_commit_outside_a_git_checkout(self):
    copy = self.create_tempdir().full_path  # a copy of the sources, not a checkout
    self.assertIsNone(provenance.source_commit(copy))
    self.assertIsNone(provenance.source_commit(os.path.join(copy, "missing")))
    with mock.patch.object(shutil, "which", return_value=None):  # git is not installed
      self.assertIsNone(provenance.source_commit.__wrapped__(provenance.SOURCE_ROOT))
    with mock.patch.object(subprocess, "run", side_effect=OSError("no git")):
      self.assertIsNone(provenance.source_commit.__wrapped__(provenance.SOURCE_ROOT))

  def test_no_commit_of_a_repository_the_package_was_copied_into(self):
    if shutil.which("git") is None:
      self.skipTest("git is not installed")
    repo = self.create_tempdir().full_path
    subprocess.run(["git", "init", "-q", repo], check=True)
    inner = os.path.join(repo, "site-packages")
    os.makedirs(inner)
    self.assertIsNone(provenance.source_commit(inner))

  def test_thresholds_as_json(self):
    self.assertEqual(provenance.thresholds(0.5), 0.5)
    self.assertEqual(provenance.thresholds([0.25, 0.5]), [0.25, 0.5])
    self.assertEqual(provenance.thresholds({"Speech": 0.3}), {"Speech": 0.3})
    self.assertIsNone(provenance.thresholds(None))


class ReplacingLineTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.workdir = self.create_tempdir().full_path
    self.step_dir = os.path.join(self.workdir, "best", "700")
    os.makedirs(
        os.path.join(self.step_dir, "state")
    )  # what `checkpoint.resolve` reads of a step folder
    self.path = os.path.join(self.workdir, "eval_test.json")

  def _line(self, old=None):
    if old is not None:
      with open(self.path, "w") as f:
        json.dump(old, f)
    return evaluate_checkpoint.replacing_line(self.path, self.workdir, self.step_dir)

  def test_says_which_step_is_replaced(self):
    self.assertIsNone(self._line())  # no report yet
    self.assertEqual(
        self._line({"step": 500}), "replacing eval_test.json of step 500 with step 700"
    )
    self.assertEqual(
        self._line({"step": None}),
        "replacing eval_test.json of a checkpoint without a step with step 700",
    )
    self.assertIsNone(self._line({"step": 700}))  # the same step: nothing to say
    self.assertIsNone(self._line({"segment/type": 1.0}))  # a report written before steps were named


if __name__ == "__main__":
  absltest.main()
