"""The real-data path end to end: a features folder in the official on-disk layout -> train -> evaluate.

`launch/make_synthetic.py` writes a few synthetic clips as `vggish/ res152/ r2plus1d_18/` `.npy` files with
matching `AVVP_*.csv` label files; the launchers then train and evaluate on that folder exactly as they
would on the real LLP features, and every output still says the features are synthetic.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from absl.testing import absltest
import numpy as np

import launch_env
from avvp_jax.tasks.llp import metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 300
NUM_TRAIN, NUM_EVAL = 16, 12  # 2 training steps of 8; one full and one padded evaluation batch of 8


def _launch(script, *flags):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu")
  launch_env.without_forced_devices(env)
  return subprocess.run(
      [sys.executable, os.path.join(ROOT, "launch", script), *flags],
      cwd=ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=TIMEOUT_S,
  )


class OfficialLayoutTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp(prefix="avvp_end_to_end_")
    cls.features_dir = os.path.join(cls.root, "features")
    made = _launch(
        "make_synthetic.py",
        f"--out={cls.features_dir}",
        f"--num_train_clips={NUM_TRAIN}",
        f"--num_eval_clips={NUM_EVAL}",
    )
    assert made.returncode == 0, made.stderr[-3000:]
    # One data_dir for every test: the first training run builds the TFDS dataset, the others reuse it.
    cls.data_flags = [
        f"--config.data.features_dir={cls.features_dir}",
        f"--config.data.labels_dir={os.path.join(cls.features_dir, 'labels')}",
        f"--config.data.data_dir={os.path.join(cls.root, 'tfds')}",
    ]

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()

  def test_folder_is_in_the_official_layout(self):
    for folder, shape in (
        ("vggish", (10, 128)),
        ("res152", (80, 2048)),
        ("r2plus1d_18", (10, 512)),
    ):
      files = sorted(os.listdir(os.path.join(self.features_dir, folder)))
      self.assertLen(files, NUM_TRAIN + 2 * NUM_EVAL)
      self.assertEqual(np.load(os.path.join(self.features_dir, folder, files[0])).shape, shape)

  def test_train_and_evaluate_on_a_features_folder(self):
    workdir = self.create_tempdir().full_path
    trained = _launch(
        "train.py", "--config=configs/han.py:tiny", f"--workdir={workdir}", *self.data_flags
    )
    self.assertEqual(trained.returncode, 0, trained.stderr[-3000:])
    self.assertIn(
        f"LLP features from {self.features_dir}", trained.stderr
    )  # read from the folder ...
    self.assertIn(
        "SYNTHETIC features written by launch/make_synthetic.py", trained.stderr
    )  # ... and said so

    # The workdir's config.json carries the data flags: evaluation reads the same folder.
    evaluated = _launch("evaluate.py", f"--workdir={workdir}", "--split=test")
    self.assertEqual(evaluated.returncode, 0, evaluated.stderr[-3000:])
    with open(os.path.join(workdir, "eval_test.json")) as f:
      report = json.load(f)
    for key in metrics.KEYS:
      self.assertBetween(report[key], 0.0, 100.0, msg=key)
    self.assertEqual(
        report["num_clips"], NUM_EVAL
    )  # the padded last batch is masked, every clip counts once
    self.assertIn("SYNTHETIC", report["data"])


if __name__ == "__main__":
  absltest.main()
