"""The AVE data path: the SYNTHETIC generator, the `avvp_ave` TFDS builds (made h5 files and SYNTHETIC) and
their `streams.Streams`, full and weak."""

import pathlib
import sys
import tempfile

from absl.testing import absltest
import h5py
import numpy as np

from avvp_jax.errors import InputError
from avvp_jax.tasks.ave import annotations
from avvp_jax.tasks.ave import pipeline
from avvp_jax.tasks.ave import synthetic

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from configs import common  # pylint: disable=g-import-not-at-top,wrong-import-position

ORDERS = {"train": [3, 0, 4, 1, 2], "val": [6, 5], "test": [8, 7]}  # unsorted, as the real ones


def small_labels_dir():
  """The first 9 real annotation rows and order files over them."""
  folder = pathlib.Path(tempfile.mkdtemp(prefix="ave_labels_"))
  lines = (annotations.PACKAGED_DIR / "Annotations.txt").read_text().splitlines()[:9]
  (folder / "Annotations.txt").write_text("\n".join(lines) + "\n")
  for split, order in ORDERS.items():
    with h5py.File(folder / f"{split}_order.h5", "w") as h5:
      h5["order"] = np.array(order, np.int64)
  return folder


def features_dir(num_videos=9, num_noisy=3, seed=0):
  """Released-layout float64 feature files (and the weak setting's noisy ones) of made values."""
  folder = pathlib.Path(tempfile.mkdtemp(prefix="ave_h5_"))
  rng = np.random.default_rng(seed)
  values = {}
  for prefix, count in (("", num_videos), ("_noisy", num_noisy)):
    for name, shape in (("audio", (10, 128)), ("visual", (10, 7, 7, 512))):
      array = rng.normal(size=(count, *shape))
      with h5py.File(folder / f"{name}_feature{prefix}.h5", "w") as h5:
        h5["avadataset"] = array
      values[name + prefix] = array
  return folder, values


def data_config(**ave):
  config = common.get_config().data
  config.data_dir = tempfile.mkdtemp(prefix="ave_tfds_")
  config.ave.update(ave)
  return config


def prepare(config, batch_size=4, eval_batch_size=4):
  return pipeline.prepare(
      config,
      batch_size=batch_size,
      eval_batch_size=eval_batch_size,
      process_index=0,
      process_count=1,
  )


def all_batches(batches):
  batches = list(batches)
  return {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}


class SyntheticTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.rows, cls.orders = annotations.load_splits()
    cls.data = synthetic.SyntheticAVE(0, cls.rows)

  def test_deterministic_per_clip_and_seed(self):
    again = synthetic.SyntheticAVE(0, self.rows)
    for row in (0, 26, 4142):
      first, second = self.data.features(row), again.features(row)
      for name, shape in (("audio", (10, 128)), ("visual", (10, 7, 7, 512))):
        self.assertEqual(first[name].shape, shape)
        self.assertEqual(first[name].dtype, np.float32)
        np.testing.assert_array_equal(first[name], second[name])
    other = synthetic.SyntheticAVE(1, self.rows).features(0)
    self.assertFalse(np.array_equal(other["audio"], self.data.features(0)["audio"]))

  def _scores(self, clip):
    """[10, 28] match of each segment with each class: audio and best-cell visual prototype products."""
    audio = clip["audio"] @ self.data.audio_prototypes.T
    visual = (clip["visual"].reshape(10, 49, 512) @ self.data.visual_prototypes.T).max(1)
    return (audio + visual) / 10

  def test_events_show_their_class_and_background_carries_none(self):
    """Event segments match their class best, mostly; background segments match the clip's class no more
    than chance, and as strongly as the background-only videos do (no event in either)."""
    event_hits, background_hits, event_best, background_best = [], [], [], []
    for row in self.orders["test"][:120].tolist():
      score = self._scores(self.data.features(row))
      event = self.rows.segment_classes()[row] != annotations.BACKGROUND
      event_hits += list(score[event].argmax(-1) == self.rows.classes[row])
      background_hits += list(score[~event].argmax(-1) == self.rows.classes[row])
      event_best += list(score[event].max(-1))
      background_best += list(score[~event].max(-1))
    noisy_best = [self._scores(self.data.noisy_features(k)).max(-1) for k in range(40)]
    self.assertGreater(np.mean(event_hits), 0.6)
    self.assertLess(np.mean(background_hits), 3 / 28)  # chance is 1/28
    self.assertGreater(np.mean(event_best), 1.5 * np.mean(background_best))
    self.assertAlmostEqual(
        np.mean(noisy_best), np.mean(background_best), delta=0.05 * np.mean(noisy_best)
    )

  def test_split_rows(self):
    rows = synthetic.split_rows(self.orders, 30, 7, seed=0)
    self.assertLen(rows["train"], 30)
    self.assertTrue(set(rows["train"]) <= set(self.orders["train"]))
    position = {r: i for i, r in enumerate(self.orders["train"].tolist())}
    self.assertEqual(
        [position[r] for r in rows["train"].tolist()],
        sorted(position[r] for r in rows["train"].tolist()),
    )  # in the order file's order
    np.testing.assert_array_equal(rows["test"], self.orders["test"][:7])
    self.assertLen(synthetic.split_rows(self.orders, 30, 0, seed=0)["val"], 402)
    with self.assertRaisesRegex(
        InputError, "synthetic_train_clips=0 must be between 1 and the 3339"
    ):
      synthetic.split_rows(self.orders, 0, 0, seed=0)
    with self.assertRaisesRegex(InputError, "synthetic_eval_clips=403"):
      synthetic.split_rows(self.orders, 5, 403, seed=0)
    self.assertEqual(synthetic.num_noisy(800, 3339), 43)


class RealFeaturesBuildTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.labels_dir = small_labels_dir()
    cls.rows = annotations.load_annotations(cls.labels_dir)
    cls.features_dir, cls.values = features_dir()

  def _config(self, supervision):
    config = data_config(supervision=supervision, labels_dir=str(self.labels_dir))
    config.features_dir = str(self.features_dir)
    return config

  def test_full_build_streams_the_h5_rows_in_order_file_order(self):
    data = prepare(self._config("full"))
    self.assertFalse(data.synthetic)
    self.assertEqual({s: data.num_clips(s) for s in data.splits}, {"train": 5, "val": 2, "test": 2})
    self.assertEqual(
        data.filenames("val"), (f"{self.rows.video_ids[6]}_6", f"{self.rows.video_ids[5]}_5")
    )
    for split, order in ORDERS.items():
      batch = all_batches(data.eval_batches(split))
      real = batch["mask"] > 0
      self.assertEqual(int(real.sum()), len(order))
      np.testing.assert_array_equal(batch["index"][real], np.arange(len(order)))
      np.testing.assert_array_equal(
          batch["audio"][real], self.values["audio"][order].astype(np.float32)
      )
      np.testing.assert_array_equal(
          batch["visual"][real], self.values["visual"][order].astype(np.float32)
      )
      np.testing.assert_array_equal(batch["segment_label"][real], self.rows.segment_labels()[order])
      np.testing.assert_array_equal(batch["video_label"][real], self.rows.video_labels()[order])
      np.testing.assert_array_equal(batch["event_mask"][real], self.rows.event_mask()[order])
    train = all_batches(data.train_batches(0))
    self.assertEqual(
        set(train),
        {"audio", "visual", "segment_label", "video_label", "event_mask", "index", "mask"},
    )
    real = train["mask"] > 0
    self.assertEqual(sorted(train["index"][real].tolist()), list(range(5)))
    order = np.array(ORDERS["train"])[train["index"][real]]
    np.testing.assert_array_equal(train["segment_label"][real], self.rows.segment_labels()[order])

  def test_weak_build_appends_the_background_videos_and_hides_segment_labels_in_training(self):
    data = prepare(self._config("weak"))
    self.assertEqual(data.num_clips("train"), 8)  # 5 + 3 background-only
    self.assertEqual(data.filenames("train")[5:], ("noisy_0", "noisy_1", "noisy_2"))
    train = all_batches(data.train_batches(0))
    self.assertEqual(set(train), {"audio", "visual", "video_label", "index", "mask"})
    real = train["mask"] > 0
    noisy = train["index"][real] >= 5
    np.testing.assert_array_equal(
        train["video_label"][real][noisy].argmax(-1), np.full(int(noisy.sum()), 28)
    )
    by_index = dict(zip(train["index"][real].tolist(), train["audio"][real]))
    for k in range(3):
      np.testing.assert_array_equal(
          by_index[5 + k], self.values["audio_noisy"][k].astype(np.float32)
      )
    test = all_batches(data.eval_batches("test"))
    self.assertIn("segment_label", test)
    self.assertIn("event_mask", test)

  def test_psp_prob_labels_are_a_named_weak_option(self):
    path = pathlib.Path(tempfile.mkdtemp(prefix="ave_prob_")) / "prob_label.h5"
    shares = np.random.default_rng(1).dirichlet(np.ones(29), size=9).astype(np.float32)
    with h5py.File(path, "w") as h5:
      h5["avadataset"] = shares
    config = self._config("weak")
    config.ave.prob_labels = str(path)
    data = prepare(config)
    train = all_batches(data.train_batches(0))
    self.assertIn("prob_label", train)
    real = train["mask"] > 0
    order = np.array(ORDERS["train"] + [-1] * 3)[train["index"][real]]
    for got, row in zip(train["prob_label"][real], order):
      expected = shares[row] if row >= 0 else np.eye(29, dtype=np.float32)[28]  # noisy: background
      np.testing.assert_array_equal(got, expected)
    self.assertNotIn("prob_label", all_batches(prepare(self._config("weak")).train_batches(0)))
    config.ave.supervision = "full"
    with self.assertRaisesRegex(InputError, "prob_labels is PSP's weak-setting target"):
      prepare(config)

  def test_a_bad_folder_builds_nothing(self):
    folder, _ = features_dir(num_videos=8)  # one video short of the 9 annotation rows
    config = self._config("full")
    config.features_dir = str(folder)
    with self.assertRaisesRegex(
        InputError, "audio_feature.h5: 'avadataset' holds 8 videos, expected 9"
    ):
      prepare(config)
    self.assertFalse(pipeline.make_builder(config).is_prepared())
    config.ave.supervision = "partial"
    with self.assertRaisesRegex(InputError, "supervision='partial' is unknown"):
      pipeline.prepare(config, batch_size=4, eval_batch_size=4)

  def test_build_key_follows_the_inputs(self):
    config = self._config("full")
    key = pipeline.build_key(config)
    self.assertEqual(pipeline.build_key(self._config("full")), key)
    self.assertNotEqual(pipeline.build_key(self._config("weak")), key)
    other = data_config(supervision="full")
    other.features_dir = str(self.features_dir)
    self.assertNotEqual(pipeline.build_key(other), key)  # the packaged annotations


class SyntheticBuildTest(absltest.TestCase):

  def test_match_split_set_build(self):
    """`config.data.ave.splits = "match"`: the cross-modality task's order files, in their own build."""
    config = data_config(splits="match", synthetic_train_clips=8, synthetic_eval_clips=3)
    self.assertNotEqual(
        pipeline.build_key(config),
        pipeline.build_key(data_config(synthetic_train_clips=8, synthetic_eval_clips=3)),
    )
    data = prepare(config, batch_size=4, eval_batch_size=4)
    self.assertIn("'match' split set", data.description)
    rows, orders = annotations.load_splits(split_set="match")
    self.assertEqual({s: data.num_clips(s) for s in data.splits}, {"train": 8, "val": 3, "test": 3})
    test = all_batches(data.eval_batches("test"))
    real = test["mask"] > 0
    np.testing.assert_array_equal(test["event_mask"][real], rows.event_mask()[orders["test"][:3]])
    generator = synthetic.SyntheticAVE(0, rows)
    np.testing.assert_array_equal(
        test["audio"][real][2], generator.features(int(orders["test"][2]))["audio"]
    )

  def test_synthetic_weak_build(self):
    config = data_config(supervision="weak", synthetic_train_clips=40, synthetic_eval_clips=5)
    data = prepare(config, batch_size=8, eval_batch_size=4)
    self.assertTrue(data.synthetic)
    self.assertIn("SYNTHETIC", data.description)
    self.assertEqual(
        {s: data.num_clips(s) for s in data.splits}, {"train": 42, "val": 5, "test": 5}
    )
    rows, orders = annotations.load_splits()
    generator = synthetic.SyntheticAVE(0, rows)
    test = all_batches(data.eval_batches("test"))
    real = test["mask"] > 0
    for index in range(5):
      row = int(orders["test"][index])
      np.testing.assert_array_equal(test["visual"][real][index], generator.features(row)["visual"])
      np.testing.assert_array_equal(test["segment_label"][real][index], rows.segment_labels()[row])
    train = all_batches(data.train_batches(0))
    self.assertNotIn("segment_label", train)
    self.assertEqual(int(np.sum(train["video_label"][train["mask"] > 0].argmax(-1) == 28)), 2)


if __name__ == "__main__":
  absltest.main()
