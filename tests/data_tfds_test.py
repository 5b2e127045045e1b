"""Tests of avvp_jax.tasks.llp.tfds_llp: TFDS builds of tiny feature folders, read-back, atomicity, bad input."""

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from avvp_jax.tasks.llp import annotations
from avvp_jax.tasks.llp import features
from avvp_jax.tasks.llp import pipeline
from avvp_jax.tasks.llp import run_data
from avvp_jax.tasks.llp import simulated_teacher
from avvp_jax.tasks.llp import synthetic
from avvp_jax.tasks.llp import tfds_llp
from avvp_jax.errors import InputError
from configs import common

REPO = pathlib.Path(__file__).resolve().parents[1]


def write_tiny_llp(root: pathlib.Path, layout: str = "official", sizes=(6, 4, 5), seed: int = 0):
  """A tiny LLP on disk: labels folder (5 AVVP_*.csv files) and features folder of `layout`.

  Returns (features_dir, labels_dir, {split: [per-clip dict of the stored arrays]}).
  """
  rng = np.random.default_rng(seed)
  features_dir, labels_dir = root / "features", root / "labels"
  labels_dir.mkdir(parents=True)
  stored, dense = {}, {"audio": [], "visual": []}
  for split, n in zip(annotations.SPLITS, sizes):
    rows, stored[split] = [], []
    for i in range(n):
      clip = f"{split[:2]}{seed}{i:08d}"[:11].ljust(11, "x")
      filename = f"{clip}_{10 * i}_{10 * i + 10}"
      classes = sorted(rng.choice(annotations.NUM_CLASSES, size=rng.integers(1, 3), replace=False))
      rows.append(f"{filename}\t{','.join(annotations.CLASSES[c] for c in classes)}\n")
      if split != "train":
        for c in classes:
          onset = int(rng.integers(0, 9))
          dense["audio"].append(
              f"{filename}\t{onset}\t{int(rng.integers(onset + 1, 11))}\t{annotations.CLASSES[c]}\n"
          )
          dense["visual"].append(f"{filename}\t{onset}\t10\t{annotations.CLASSES[c]}\n")
      arrays = {}
      for modality, (folder, shape) in features.LAYOUTS[layout].items():
        (features_dir / folder).mkdir(parents=True, exist_ok=True)
        arrays[modality] = rng.normal(size=shape).astype(np.float32)
        np.save(features_dir / folder / f"{clip}.npy", arrays[modality])
      stored[split].append(arrays)
    (labels_dir / annotations.SPLIT_FILES[split]).write_text(
        "filename\tevent_labels\n" + "".join(rows)
    )
  for modality, name in annotations.DENSE_FILES.items():
    (labels_dir / name).write_text(
        "filename\tonset\toffset\tevent_labels\n" + "".join(dense[modality])
    )
  return features_dir, labels_dir, stored


def build(root: pathlib.Path, features_dir, labels_dir, config: str) -> tfds_llp.AvvpLlp:
  builder = tfds_llp.AvvpLlp(config=config, data_dir=str(root / "tfds"), labels_dir=labels_dir)
  builder.download_and_prepare(download_config=tfds_llp.download_config(features_dir))
  return tfds_llp.AvvpLlp(config=config, data_dir=str(root / "tfds"), labels_dir=labels_dir)


def read_split(builder: tfds_llp.AvvpLlp, split: str) -> list[dict]:
  return list(builder.as_dataset(split=split, shuffle_files=False).as_numpy_iterator())


class BuildTest(parameterized.TestCase):

  @parameterized.parameters("official_pooled", "official_raw", "clip_clap")
  def test_read_back_equals_files_and_labels(self, config):
    root = pathlib.Path(self.create_tempdir().full_path)
    layout = "clip_clap" if config == "clip_clap" else "official"
    features_dir, labels_dir, stored = write_tiny_llp(root, layout)
    builder = build(root, features_dir, labels_dir, config)
    self.assertTrue(builder.is_prepared())
    for split in annotations.SPLITS:
      labels = annotations.load_split(split, labels_dir)[0]
      examples = read_split(builder, split)
      self.assertLen(examples, len(labels))
      self.assertEqual(builder.filenames(split), labels.filenames)
      for row, example in enumerate(examples):
        self.assertEqual(example["index"], row)
        self.assertEqual(example["filename"].decode(), labels.filenames[row])
        self.assertEqual(example["clip_id"].decode(), labels.clip_ids[row])
        np.testing.assert_array_equal(example["label"], labels.weak_labels[row])
        if split == "train":
          self.assertEqual(example["audio_label"].sum(), 0)
        else:
          np.testing.assert_array_equal(example["audio_label"], labels.audio_labels[row])
          np.testing.assert_array_equal(example["visual_label"], labels.visual_labels[row])
        files = stored[split][row]
        if layout == "official":
          np.testing.assert_array_equal(example["audio"], files["audio"])
          np.testing.assert_array_equal(example["motion"], files["motion"])
          expected_frames = (
              files["frames"]
              if config == "official_raw"
              else files["frames"].reshape(10, 8, 2048).mean(axis=1)
          )
          np.testing.assert_allclose(example["frames"], expected_frames, rtol=1e-6, atol=1e-6)
        else:
          self.assertNotIn("motion", example)
          np.testing.assert_array_equal(example["frames"], files["frames"])
          np.testing.assert_allclose(
              example["audio"],
              features.clap_segment_matrix() @ files["audio"],
              rtol=1e-5,
              atol=1e-6,
          )

  def test_info_is_filled_in(self):
    info = tfds_llp.AvvpLlp(config="official_pooled", data_dir=self.create_tempdir().full_path).info
    self.assertIn("Tian", info.citation)
    self.assertIn("Lai", info.citation)
    self.assertEqual(info.homepage, "https://github.com/YapengTian/AVVP-ECCV20")
    self.assertIn("AVVP-ECCV20", tfds_llp.AvvpLlp.MANUAL_DOWNLOAD_INSTRUCTIONS)
    self.assertIn("VALOR", tfds_llp.AvvpLlp.MANUAL_DOWNLOAD_INSTRUCTIONS)
    self.assertEqual(info.features["frames"].shape, (10, 2048))
    self.assertEqual(info.features["audio"].np_dtype, np.float32)
    names = [c.name for c in tfds_llp.BUILDER_CONFIGS]
    self.assertEqual(tfds_llp.AvvpLlp.DEFAULT_CONFIG_NAME, "official_pooled")
    self.assertTrue(
        all(
            c.synthetic == n.startswith("synthetic_")
            for c, n in zip(tfds_llp.BUILDER_CONFIGS, names)
        )
    )

  def test_synthetic_config_holds_the_generators_features(self):
    root = pathlib.Path(self.create_tempdir().full_path)
    builder = tfds_llp.AvvpLlp(
        config="synthetic_official_raw",
        data_dir=str(root),
        synthetic_train_clips=4,
        synthetic_seed=3,
        synthetic_eval_clips=3,
    )
    builder.download_and_prepare(download_config=tfds_llp.download_config(None))
    self.assertIn("SYNTHETIC", builder.description_line)
    data = synthetic.SyntheticLLP(4, 3, "official", "raw")
    for split, n in (("train", 4), ("val", 3), ("test", 3)):
      examples = read_split(builder, split)
      self.assertLen(examples, n)
      for row, example in enumerate(examples):
        self.assertEqual(example["filename"].decode(), data.split(split).filenames[row])
        for modality, value in data.features(split, row).items():
          np.testing.assert_array_equal(example[modality], value)

  def test_bad_value_mid_build_leaves_no_build(self):
    root = pathlib.Path(self.create_tempdir().full_path)
    features_dir, labels_dir, _ = write_tiny_llp(root)
    clip = annotations.load_split("test", labels_dir)[0].clip_ids[
        2
    ]  # the train split is written before it
    bad = np.load(features_dir / "r2plus1d_18" / f"{clip}.npy")
    bad[4, 9] = np.inf
    np.save(features_dir / "r2plus1d_18" / f"{clip}.npy", bad)
    builder = tfds_llp.AvvpLlp(
        config="official_pooled", data_dir=str(root / "tfds"), labels_dir=labels_dir
    )
    with self.assertRaisesRegex(
        InputError, rf"{clip}.npy' of clip {clip}.* holds inf at index \[4, 9\]"
    ):
      builder.download_and_prepare(download_config=tfds_llp.download_config(features_dir))
    self.assertFalse(
        tfds_llp.AvvpLlp(
            config="official_pooled", data_dir=str(root / "tfds"), labels_dir=labels_dir
        ).is_prepared()
    )

  def test_missing_clip_is_refused_before_writing(self):
    root = pathlib.Path(self.create_tempdir().full_path)
    features_dir, labels_dir, _ = write_tiny_llp(root)
    clip = annotations.load_split("val", labels_dir)[0].clip_ids[1]
    for folder in ("vggish", "res152", "r2plus1d_18"):
      (features_dir / folder / f"{clip}.npy").unlink()
    builder = tfds_llp.AvvpLlp(
        config="official_pooled", data_dir=str(root / "tfds"), labels_dir=labels_dir
    )
    with self.assertRaisesRegex(
        InputError, f"clip {clip} .* is listed in AVVP_val_pd.csv but has no features"
    ):
      builder.download_and_prepare(download_config=tfds_llp.download_config(features_dir))
    written = list((root / "tfds").rglob("*.tfrecord*"))
    self.assertEqual(written, [])


_KILLED_BUILD = textwrap.dedent("""
    import sys, time
    from avvp_jax.tasks.llp import features, pipeline
    from configs import common
    load_clip = features.load_clip
    def slow_load_clip(*args, **kwargs):
      time.sleep(0.05)
      return load_clip(*args, **kwargs)
    features.load_clip = slow_load_clip
    config = common.get_config().data
    config.update(dict(features_dir=sys.argv[1], labels_dir=sys.argv[2], data_dir=sys.argv[3]))
    pipeline.ensure_built(config)
    print("FINISHED")
""")


class InterruptedBuildTest(absltest.TestCase):

  def test_killed_build_is_not_prepared_and_rebuilds(self):
    root = pathlib.Path(self.create_tempdir().full_path)
    features_dir, labels_dir, stored = write_tiny_llp(root, sizes=(60, 4, 4))
    paths = dict(
        features_dir=str(features_dir), labels_dir=str(labels_dir), data_dir=str(root / "tfds")
    )
    config = common.get_config().data  # configs/common.py's defaults, these paths
    config.update(paths)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen(
        [sys.executable, "-c", _KILLED_BUILD, *paths.values()],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
      deadline = time.time() + 60
      while not list((root / "tfds").rglob("incomplete.*")):  # the build has started writing
        self.assertIsNone(process.poll(), "the build finished or failed before it could be killed")
        self.assertLess(time.time(), deadline)
        time.sleep(0.05)
      time.sleep(0.5)  # ~10 of 60 training clips read
      process.send_signal(signal.SIGKILL)
      process.wait(timeout=30)
    finally:
      if process.poll() is None:
        process.kill()
        process.wait()
    self.assertNotIn(b"FINISHED", process.stdout.read())
    process.stdout.close()
    self.assertEqual(process.returncode, -signal.SIGKILL)
    self.assertFalse(pipeline.make_builder(config).is_prepared())

    builder = pipeline.ensure_built(config)  # starts over and completes
    self.assertTrue(builder.is_prepared())
    examples = read_split(builder, "train")
    self.assertLen(examples, 60)
    for row in (0, 59):
      np.testing.assert_array_equal(examples[row]["audio"], stored["train"][row]["audio"])


class SimulatedPseudoLabelsTest(absltest.TestCase):
  """A synthetic build stores the SIMULATED training pseudo labels; training reads them back."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.config = common.get_config()
    cls.config.data.update(
        dict(
            features_dir="",
            data_dir=tempfile.mkdtemp(prefix="simulated_tfds_"),
            synthetic_train_clips=24,
            synthetic_seed=2,
            synthetic_eval_clips=2,
            layout="clip_clap",
            pseudo_labels=simulated_teacher.SIMULATED,
        )
    )
    cls.builder = pipeline.ensure_built(cls.config.data)
    # The oracle: what training computed before the build stored them, from a second generator.
    data = synthetic.SyntheticLLP(num_train_clips=24, seed=2, layout="clip_clap")
    cls.fresh = simulated_teacher.simulated_pseudo_labels(data, ("train",))
    cls.train_filenames = data.split("train").filenames

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.config.data.data_dir, ignore_errors=True)
    super().tearDownClass()

  def test_stored_labels_are_bit_identical_to_a_fresh_simulation(self):
    self.assertTrue((self.builder.data_path / tfds_llp.SIMULATED_LABELS_FILE).exists())
    stored = self.builder.simulated_pseudo_labels()
    self.assertEqual(self.builder.filenames("train"), self.train_filenames)
    for got, want in zip(stored.labels["train"], self.fresh.labels["train"]):
      self.assertEqual(got.dtype, np.float32)
      self.assertEqual(got.tobytes(), want.tobytes())
    self.assertGreater(stored.labels["train"][0].sum(), 0)
    self.assertEqual(stored.severity, self.fresh.severity)
    self.assertEqual(stored.f1, self.fresh.f1)
    self.assertEqual(stored.summary(), self.fresh.summary())

  def test_training_reads_them_back_in_order_without_recomputing(self):
    filenames = self.train_filenames[::-3]  # another order, and a subset
    with (
        mock.patch.object(
            simulated_teacher, "simulated_pseudo_labels", side_effect=AssertionError("recomputed")
        ),
        mock.patch.object(run_data.logging, "info") as info,
    ):
      self.assertTrue(pipeline.ensure_built(self.config.data).is_prepared())
      labels = run_data.training_pseudo_labels(self.config, filenames)
    self.assertIn(mock.call("%s", self.fresh.summary()), info.call_args_list)
    self.assertEqual(labels.clip_ids, tuple(annotations.clip_id(f) for f in filenames))
    rows = [self.train_filenames.index(f) for f in filenames]
    audio, visual = self.fresh.labels["train"]
    self.assertEqual(labels.audio.tobytes(), audio[rows].tobytes())
    self.assertEqual(labels.visual.tobytes(), visual[rows].tobytes())
    self.assertTrue(labels.synthetic)
    self.assertTrue(labels.weak_labels_checked)
    with self.assertRaisesRegex(InputError, "1 training clips .* not in the synthetic build"):
      run_data.training_pseudo_labels(self.config, ("xxxxxxxxxxx_0_10",))

  def test_a_teacher_that_cannot_be_calibrated_fails_on_reading_not_building(self):
    config = self.config.copy_and_resolve_references()
    config.data.data_dir = self.create_tempdir().full_path
    with mock.patch.object(
        simulated_teacher, "simulated_pseudo_labels", side_effect=InputError("cannot reach F1")
    ):
      builder = pipeline.ensure_built(config.data)
    self.assertTrue(builder.is_prepared())
    with self.assertRaisesRegex(InputError, "cannot reach F1"):
      run_data.training_pseudo_labels(config, builder.filenames("train"))

  def test_real_builds_hold_none(self):
    root = pathlib.Path(self.create_tempdir().full_path)
    features_dir, labels_dir, _ = write_tiny_llp(root)
    builder = build(root, features_dir, labels_dir, "official_pooled")
    self.assertFalse((builder.data_path / tfds_llp.SIMULATED_LABELS_FILE).exists())
    with self.assertRaisesRegex(InputError, "only for the embedded synthetic data"):
      builder.simulated_pseudo_labels()


if __name__ == "__main__":
  absltest.main()
