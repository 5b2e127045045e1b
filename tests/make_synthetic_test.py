"""Tests of launch/make_synthetic.py, run as a user would (a subprocess)."""

import json
import os
import pathlib
import subprocess
import sys

from absl.testing import absltest
import numpy as np

from avvp_jax.tasks.llp import annotations
from avvp_jax.tasks.llp import features
from avvp_jax.tasks.llp import pseudo_labels
from avvp_jax.tasks.llp import simulated_teacher
from avvp_jax.tasks.llp import synthetic

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "launch" / "make_synthetic.py"


def _run(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  return subprocess.run(
      [sys.executable, str(SCRIPT), *args],
      capture_output=True,
      text=True,
      env=env,
      timeout=120,
      check=False,
  )


class MakeSyntheticTest(absltest.TestCase):

  def test_writes_a_consistent_features_and_labels_pair(self):
    out = pathlib.Path(self.create_tempdir().full_path) / "synthetic"
    result = _run(
        f"--out={out}",
        "--num_train_clips=5",
        "--splits=train,test",
        "--num_eval_clips=3",
        "--layout=clip_clap",
        "--data_seed=7",
    )
    self.assertEqual(result.returncode, 0, result.stderr)
    log_lines = [line for line in result.stderr.splitlines() if "make_synthetic.py" in line]
    self.assertNotEmpty(log_lines)
    for line in log_lines:
      self.assertIn("SYNTHETIC", line)
    self.assertIn("SYNTHETIC", (out / "SYNTHETIC.txt").read_text())
    self.assertIn("SYNTHETIC", (out / "labels" / "SYNTHETIC.txt").read_text())

    data = synthetic.SyntheticLLP(num_train_clips=5, seed=7, layout="clip_clap")
    labels_dir = out / "labels"
    expected_counts = {"train": 5, "val": 0, "test": 3}
    for split, count in expected_counts.items():
      loaded = annotations.load_split(split, labels_dir)[0]
      self.assertEqual(loaded.filenames, data.split(split).filenames[:count])
      for index, clip in enumerate(loaded.clip_ids):
        expected = data.features(split, index)
        for modality, folder in synthetic.FEATURE_DIRS["clip_clap"].items():
          stored = np.load(out / folder / f"{clip}.npy")
          self.assertEqual(stored.shape, features.stored_shapes("clip_clap")[modality])
          if (
              modality == "audio"
          ):  # VALOR's [64, 768] CLAP maps, read back as the generated segments
            np.testing.assert_allclose(
                features.clap_segments(stored), expected[modality], atol=1e-5
            )
          else:
            self.assertEqual(stored.tobytes(), expected[modality].tobytes())
    test = annotations.load_split("test", labels_dir)[0]
    np.testing.assert_array_equal(test.audio_labels, data.split("test").audio_labels[:3])
    # Every clip in the labels has features, and nothing else was written.
    for folder in synthetic.FEATURE_DIRS["clip_clap"].values():
      self.assertLen(list((out / folder).glob("*.npy")), 8)
    self.assertFalse((out / "vggish").exists())
    # SIMULATED pseudo labels of exactly the written clips, in VALOR's layout, as the simulation gives them.
    simulated = simulated_teacher.simulated_pseudo_labels(data, ("train", "test"))
    for split, count in (("train", 5), ("test", 3)):
      loaded = pseudo_labels.load_pseudo_labels(
          out,
          data.split(split).filenames[:count],
          weak_labels=data.split(split).weak_labels[:count],
      )
      np.testing.assert_array_equal(loaded.audio, simulated.labels[split][0][:count])
      np.testing.assert_array_equal(loaded.visual, simulated.labels[split][1][:count])
      self.assertEqual(loaded.positives_outside_weak, 0)
    self.assertLen(list((out / pseudo_labels.AUDIO_SUBDIR).glob("*.npy")), 8)
    quality = json.loads((out / "pseudo_label_quality.json").read_text())
    self.assertTrue(quality["synthetic"])
    self.assertIn("SIMULATED", quality["data"])
    self.assertEqual((quality["train"]["clips"], quality["test"]["clips"]), (5, 3))
    self.assertTrue(any("SIMULATED pseudo labels" in line for line in log_lines))

  def test_official_layout_files(self):
    out = pathlib.Path(self.create_tempdir().full_path)
    result = _run(f"--out={out}", "--num_train_clips=2", "--splits=train", "--nowrite_labels")
    self.assertEqual(result.returncode, 0, result.stderr)
    clip = synthetic.SyntheticLLP(num_train_clips=2).split("train").clip_ids[1]
    for modality, folder in synthetic.FEATURE_DIRS["official"].items():
      stored = np.load(out / folder / f"{clip}.npy")
      self.assertEqual(stored.shape, synthetic.FEATURE_SHAPES["official"][modality])
      self.assertEqual(stored.dtype, np.float32)
    self.assertEqual(stored.shape, (10, 512))
    self.assertEqual(np.load(out / "res152" / f"{clip}.npy").shape, (80, 2048))
    self.assertFalse((out / "labels").exists())
    self.assertTrue((out / "SYNTHETIC.txt").exists())

  def test_bad_flags_are_one_line_errors(self):
    out = self.create_tempdir().full_path
    for args, culprit in (
        ((f"--out={out}", "--splits=dev"), "--splits"),
        ((f"--out={out}", "--layout=i3d"), "layout"),
        ((f"--out={out}", "--num_train_clips=0"), "num_train_clips"),
        ((), "--out is required"),
        ((f"--out={out}", f"--output_dir={out}"), "--output_dir and --out both given"),
    ):
      result = _run(*args)
      self.assertEqual(result.returncode, 2, result.stderr)
      lines = result.stderr.strip().splitlines()
      self.assertLen(lines, 1, result.stderr)
      self.assertStartsWith(lines[0], "error: ")
      self.assertIn(culprit, lines[0])


if __name__ == "__main__":
  absltest.main()
