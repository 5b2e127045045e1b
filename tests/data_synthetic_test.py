"""Tests of avvp_jax.tasks.llp.synthetic: shapes, exact pooling, determinism, labels, learnability, writing."""

import functools
import pathlib

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from avvp_jax.tasks.llp import annotations
from avvp_jax.tasks.llp import simulated_teacher
from avvp_jax.tasks.llp import synthetic
from avvp_jax.errors import InputError

T, C = annotations.NUM_SECONDS, annotations.NUM_CLASSES


def _real_pairs():
  """Real val+test (weak, audio, visual) concatenated."""
  val, test = annotations.load_split("val")[0], annotations.load_split("test")[0]
  return tuple(
      np.concatenate([getattr(val, k), getattr(test, k)])
      for k in ("weak_labels", "audio_labels", "visual_labels")
  )


def _f1(pred: np.ndarray, true: np.ndarray) -> float:
  pred, true = pred > 0, true > 0
  return 2 * (pred & true).sum() / max(pred.sum() + true.sum(), 1)


class ShapesTest(parameterized.TestCase):

  def test_feature_shape_constants(self):
    self.assertEqual(
        synthetic.FEATURE_SHAPES["official"],
        {"audio": (10, 128), "frames": (80, 2048), "motion": (10, 512)},
    )
    self.assertEqual(
        synthetic.FEATURE_SHAPES["clip_clap"], {"audio": (10, 768), "frames": (10, 768)}
    )
    self.assertEqual(synthetic.feature_shapes("official", "pooled")["frames"], (10, 2048))
    self.assertEqual(
        set(synthetic.FEATURE_DIRS["official"].values()), {"vggish", "res152", "r2plus1d_18"}
    )

  @parameterized.parameters(
      ("official", "raw"), ("official", "pooled"), ("clip_clap", "raw"), ("clip_clap", "pooled")
  )
  def test_shapes_and_dtypes(self, layout, frames):
    data = synthetic.SyntheticLLP(num_train_clips=4, layout=layout, frames=frames)
    expected = synthetic.feature_shapes(layout, frames)
    for split in annotations.SPLITS:
      clip = data.features(split, 1)
      self.assertEqual(set(clip), set(expected))
      for modality, value in clip.items():
        self.assertEqual(value.shape, expected[modality], (split, modality))
        self.assertEqual(value.dtype, np.float32)
        self.assertTrue(np.isfinite(value).all())
    batch = data.features_batch("val", [0, 3, 2])
    for modality, value in batch.items():
      self.assertEqual(value.shape, (3, *expected[modality]))

  def test_value_ranges(self):
    clip = synthetic.SyntheticLLP(4, layout="official").features("val", 0)
    self.assertGreaterEqual(clip["frames"].min(), 0.0)  # post-ReLU like ResNet-152 average pooling
    self.assertGreaterEqual(clip["motion"].min(), 0.0)
    self.assertLess(clip["audio"].min(), 0.0)  # VGGish-like: real-valued
    self.assertGreater(clip["frames"].mean(), 0.1)
    clip = synthetic.SyntheticLLP(4, layout="clip_clap").features("val", 0)
    for value in clip.values():  # CLIP / CLAP embeddings are unit vectors
      np.testing.assert_allclose(np.linalg.norm(value, axis=1), 1.0, rtol=1e-5)

  def test_pooled_frames_are_the_mean_of_raw_frames(self):
    raw = synthetic.SyntheticLLP(4, seed=3, frames="raw")
    pooled = synthetic.SyntheticLLP(4, seed=3, frames="pooled")
    for split, index in (("train", 2), ("val", 7), ("test", 100)):
      raw_frames = raw.features(split, index)["frames"].astype(np.float64)
      expected = raw_frames.reshape(T, 8, -1).mean(axis=1)
      got = pooled.features(split, index)
      np.testing.assert_allclose(got["frames"], expected, rtol=1e-6, atol=1e-6)
      # The other modalities do not depend on the frames mode.
      np.testing.assert_array_equal(got["audio"], raw.features(split, index)["audio"])
      np.testing.assert_array_equal(got["motion"], raw.features(split, index)["motion"])


class DeterminismTest(absltest.TestCase):

  def test_same_seed_same_bytes_in_any_order(self):
    first = synthetic.SyntheticLLP(10, seed=5)
    second = synthetic.SyntheticLLP(10, seed=5)
    later = [second.features("test", i) for i in (9, 4)]  # other clips first, on another instance
    for index, clip in zip((9, 4), later):
      for modality, value in first.features("test", index).items():
        self.assertEqual(value.tobytes(), clip[modality].tobytes())
    batch = first.features_batch("test", [4, 9])
    self.assertEqual(batch["frames"][1].tobytes(), later[0]["frames"].tobytes())

  def test_a_clip_does_not_depend_on_the_training_subset_size(self):
    small, large = synthetic.SyntheticLLP(20, seed=1), synthetic.SyntheticLLP(500, seed=1)
    filename = small.split("train").filenames[3]
    index = large.split("train").filenames.index(
        filename
    )  # the small subset is a prefix of the order
    for modality, value in small.features("train", 3).items():
      self.assertEqual(value.tobytes(), large.features("train", index)[modality].tobytes())

  def test_different_seed_differs(self):
    a = synthetic.SyntheticLLP(50, seed=0).features("val", 0)
    b = synthetic.SyntheticLLP(50, seed=1).features("val", 0)
    for modality in a:
      self.assertGreater(np.abs(a[modality] - b[modality]).mean(), 0.05, modality)
    self.assertNotEqual(
        synthetic.SyntheticLLP(50, seed=0).split("train").filenames,
        synthetic.SyntheticLLP(50, seed=1).split("train").filenames,
    )


class SplitsTest(absltest.TestCase):

  def test_split_sizes_and_labels(self):
    data = synthetic.SyntheticLLP(num_train_clips=300, seed=2)
    real = {s: annotations.load_split(s)[0] for s in annotations.SPLITS}
    self.assertLen(data.split("val"), 649)
    self.assertLen(data.split("test"), 1200)
    train = data.split("train")
    self.assertLen(train, 300)
    self.assertIsNone(
        train.audio_labels
    )  # dense training labels are never handed out with the split
    rows = [real["train"].filenames.index(f) for f in train.filenames]
    self.assertEqual(rows, sorted(rows))  # file order
    np.testing.assert_array_equal(train.weak_labels, real["train"].weak_labels[rows])
    np.testing.assert_array_equal(data.split("test").audio_labels, real["test"].audio_labels)
    np.testing.assert_array_equal(data.split("val").visual_labels, real["val"].visual_labels)
    self.assertLen(synthetic.SyntheticLLP(num_train_clips=None).split("train"), 10_000)

  def test_everything_says_synthetic(self):
    data = synthetic.SyntheticLLP(8)
    self.assertIn("SYNTHETIC", synthetic.__doc__)
    self.assertIn("SYNTHETIC", data.description)
    self.assertIn("SYNTHETIC", synthetic.marker_text(data, {"train": 8}, "Synthetic features"))
    self.assertEqual(synthetic.NAME, "synthetic")

  def test_bad_input(self):
    with self.assertRaisesRegex(InputError, "layout"):
      synthetic.SyntheticLLP(4, layout="i3d")
    with self.assertRaisesRegex(InputError, "frames"):
      synthetic.SyntheticLLP(4, frames="mean")
    with self.assertRaisesRegex(InputError, "num_train_clips"):
      synthetic.SyntheticLLP(0)
    with self.assertRaisesRegex(InputError, "num_train_clips"):
      synthetic.SyntheticLLP(10_001)
    data = synthetic.SyntheticLLP(4)
    with self.assertRaisesRegex(InputError, "split"):
      data.split("dev")
    with self.assertRaisesRegex(InputError, "index 4"):
      data.features("train", 4)


class DenseTrainLabelsTest(absltest.TestCase):

  def test_hand_worked_pool(self):
    # One pattern per class: class c audible in seconds [0, c % 10 + 1), visible in second 9 only.
    weak = np.eye(C, dtype=np.float32)
    audio = np.zeros((C, T, C), np.float32)
    visual = np.zeros((C, T, C), np.float32)
    for c in range(C):
      audio[c, : c % 10 + 1, c] = 1
      visual[c, 9, c] = 1
    pool = synthetic.EventPool.from_labels(weak, audio, visual)
    clip_weak = np.zeros((2, C), np.float32)
    clip_weak[0, [1, 12]] = 1
    clip_weak[1, 24] = 1
    drawn_audio, drawn_visual = synthetic.draw_dense_labels(["a", "b"], clip_weak, pool, seed=0)
    expected_audio = np.zeros((2, T, C), np.float32)
    expected_audio[0, :2, 1] = 1
    expected_audio[0, :3, 12] = 1
    expected_audio[1, :5, 24] = 1
    expected_visual = np.zeros((2, T, C), np.float32)
    expected_visual[0, 9, [1, 12]] = 1
    expected_visual[1, 9, 24] = 1
    np.testing.assert_array_equal(drawn_audio, expected_audio)
    np.testing.assert_array_equal(drawn_visual, expected_visual)

  def test_pool_needs_every_class(self):
    weak = np.zeros((1, C), np.float32)
    with self.assertRaisesRegex(InputError, "Speech"):
      synthetic.EventPool.from_labels(weak, np.zeros((1, T, C)), np.zeros((1, T, C)))

  def test_drawn_labels_follow_llp_statistics(self):
    data = synthetic.SyntheticLLP(num_train_clips=None, seed=0)
    weak = data.split("train").weak_labels
    audio, visual = data.dense_train_labels
    self.assertEqual(audio.shape, (10_000, T, C))
    # Only weak classes, each audible or visible somewhere.
    present = audio.any(axis=1) | visual.any(axis=1)
    np.testing.assert_array_equal(present, weak > 0)
    # Per-class statistics match the real val+test (clip, class) pairs with at least one event.
    real_weak, real_audio, real_visual = _real_pairs()
    real_weak = real_weak * (real_audio.any(axis=1) | real_visual.any(axis=1))
    drawn = synthetic.label_statistics(weak, audio, visual)
    real = synthetic.label_statistics(real_weak, real_audio, real_visual)
    count = drawn["weak_count"]
    frequent = count >= 300
    self.assertGreaterEqual(frequent.sum(), 15)
    # Sampling tolerance: 4 standard errors of the drawn estimate around the real value.
    for key in ("p_audible", "p_visible", "p_both"):
      p = real[key]
      tolerance = 4 * np.sqrt(p * (1 - p) / count) + 1e-9
      np.testing.assert_array_less(
          np.abs(drawn[key] - p)[frequent], tolerance[frequent], err_msg=key
      )
    for key, labels, real_labels, probability in (
        ("audio_seconds", audio, real_audio, "p_audible"),
        ("visual_seconds", visual, real_visual, "p_visible"),
    ):
      present = real_labels.any(axis=1) & (real_weak > 0)
      seconds = real_labels.sum(axis=1)
      spread = np.array([seconds[present[:, c], c].std() for c in range(C)])
      tolerance = 4 * spread / np.sqrt(np.maximum(count * drawn[probability], 1)) + 1e-9
      np.testing.assert_array_less(
          np.abs(drawn[key] - real[key])[frequent], tolerance[frequent], err_msg=key
      )
    np.testing.assert_array_equal(drawn["p_neither"], 0.0)
    for key in ("audio_length_hist", "visual_length_hist"):
      drawn_hist = drawn[key] / drawn[key].sum()
      real_hist = real[key] / real[key].sum()
      self.assertLess(np.abs(drawn_hist - real_hist).sum(), 0.08, key)

  def test_label_statistics_hand_worked(self):
    weak = np.array([[1, 0] + [0] * (C - 2), [1, 1] + [0] * (C - 2)], np.float32)
    audio = np.zeros((2, T, C), np.float32)
    visual = np.zeros((2, T, C), np.float32)
    audio[0, 2:4, 0] = 1
    audio[0, 6:7, 0] = 1  # clip 0 Speech: 2 audio events, 3 seconds, onset 2
    visual[1, :, 0] = 1  # clip 1 Speech: visible only
    audio[1, 5:, 1] = 1  # clip 1 Car: audible only, 5 seconds
    stats = synthetic.label_statistics(weak, audio, visual)
    self.assertEqual(stats["weak_count"][0], 2)
    self.assertEqual(stats["p_audible"][0], 0.5)
    self.assertEqual(stats["p_visible"][0], 0.5)
    self.assertEqual(stats["p_both"][0], 0.0)
    self.assertEqual(stats["audio_events"][0], 2)
    self.assertEqual(stats["audio_seconds"][0], 3)
    self.assertEqual(stats["audio_onset"][0], 2)
    self.assertEqual(stats["audio_seconds"][1], 5)
    self.assertEqual(stats["audio_length_hist"][[3, 5]].tolist(), [1, 1])


@functools.lru_cache(maxsize=None)
def _probe_data(layout):
  """Pooled features of 400 training and 300 validation clips, and their dense labels."""
  data = synthetic.SyntheticLLP(num_train_clips=400, seed=0, layout=layout, frames="pooled")
  return (
      data.features_batch("train", range(400)),
      data.features_batch("val", range(300)),
      data.dense_labels("train"),
      tuple(y[:300] for y in data.dense_labels("val")),
  )


class LearnabilityTest(parameterized.TestCase):
  """A ridge probe on per-second features of training clips predicts validation dense labels."""

  @parameterized.parameters(
      ("official", "audio", "audio"),
      ("official", "frames", "visual"),
      ("official", "motion", "visual"),
      ("clip_clap", "audio", "audio"),
      ("clip_clap", "frames", "visual"),
  )
  def test_features_carry_the_labels(self, layout, modality, labels):
    train, val, train_labels, val_labels = _probe_data(layout)
    width = train[modality].shape[-1]
    # Wide features go through a fixed random projection to 256 dims (keeps the test fast; a weaker probe).
    projection = (
        np.random.default_rng(0).standard_normal((width, 256), dtype=np.float32) / 16
        if width > 256
        else np.eye(width, dtype=np.float32)
    )
    train_x = train[modality].reshape(-1, width) @ projection
    val_x = val[modality].reshape(-1, width) @ projection
    train_y = train_labels[labels == "visual"].reshape(-1, C)
    val_y = val_labels[labels == "visual"].reshape(-1, C)
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    design = np.c_[(train_x - mean) / std, np.ones(len(train_x))].astype(np.float64)
    weights = np.linalg.solve(design.T @ design + np.eye(design.shape[1]), design.T @ train_y)
    scores = np.c_[(val_x - mean) / std, np.ones(len(val_x))] @ weights
    f1 = max(_f1(scores > threshold, val_y) for threshold in (0.2, 0.3, 0.4, 0.5))
    chance = _f1(np.ones_like(val_y), val_y)  # everything positive
    self.assertLess(chance, 0.15)
    self.assertGreater(f1, 0.5, f"{layout} {modality}: probe F1 {f1:.3f}")
    self.assertLess(f1, 0.95, f"{layout} {modality}: probe F1 {f1:.3f} (too easy)")


class WriteTest(absltest.TestCase):

  def test_write_features_and_labels_agree(self):
    out = pathlib.Path(self.create_tempdir().full_path)
    data = synthetic.SyntheticLLP(num_train_clips=3, seed=4, frames="pooled")
    self.assertEqual(synthetic.write_features(data, out, "train"), 3)
    synthetic.write_features(data, out, "val", range(2))
    train, val = data.split("train"), data.split("val")
    written = {"train": train.filenames, "val": val.filenames[:2]}
    counts = synthetic.write_labels(data, out / "labels", written)
    self.assertEqual(counts["AVVP_train.csv"], 3)
    self.assertEqual(counts["AVVP_val_pd.csv"], 2)
    self.assertEqual(counts["AVVP_test_pd.csv"], 0)
    self.assertEqual(counts["AVVP_dataset_full.csv"], 5)
    raw = synthetic.SyntheticLLP(num_train_clips=3, seed=4, frames="raw")
    for split, count in (("train", 3), ("val", 2)):
      loaded = annotations.load_split(split, out / "labels")[0]
      self.assertEqual(loaded.filenames, data.split(split).filenames[:count])
      for index, clip in enumerate(loaded.clip_ids):
        expected = raw.features(split, index)  # files hold raw frames whatever the frames mode
        for modality, folder in synthetic.FEATURE_DIRS["official"].items():
          stored = np.load(out / folder / f"{clip}.npy")
          self.assertEqual(stored.dtype, np.float32)
          self.assertEqual(stored.tobytes(), expected[modality].tobytes())
    loaded_val = annotations.load_split("val", out / "labels")[0]
    np.testing.assert_array_equal(loaded_val.audio_labels, val.audio_labels[:2])
    np.testing.assert_array_equal(loaded_val.visual_labels, val.visual_labels[:2])
    self.assertLen(annotations.load_split("test", out / "labels")[0], 0)
    for modality, folder in synthetic.FEATURE_DIRS["official"].items():
      self.assertLen(list((out / folder).glob("*.npy")), 5, modality)


if __name__ == "__main__":
  absltest.main()


def _official_segment_f1(pseudo: np.ndarray, truth: np.ndarray) -> float:
  """An independent float64 transcription of the official segment-level F1 (percent) of one modality:
  per clip, the mean F1 over the classes present in the labels or the truth (1 when none is), then the
  mean over clips."""
  values = []
  for p_clip, t_clip in zip(pseudo > 0, truth > 0):
    f1s = []
    for c in range(p_clip.shape[1]):
      tp = int((p_clip[:, c] & t_clip[:, c]).sum())
      fp = int((p_clip[:, c] & ~t_clip[:, c]).sum())
      fn = int((~p_clip[:, c] & t_clip[:, c]).sum())
      if tp + fp + fn:
        f1s.append(2 * tp / (2 * tp + fp + fn))
    values.append(np.mean(f1s) if f1s else 1.0)
  return 100.0 * float(np.mean(values))


class SimulatedPseudoLabelsTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.data = synthetic.SyntheticLLP(num_train_clips=1000, seed=3)
    cls.simulated = simulated_teacher.simulated_pseudo_labels(cls.data, ("train", "test"))

  def test_weak_label_filter_and_values(self):
    for split in ("train", "test"):
      weak = self.data.split(split).weak_labels > 0
      for labels in self.simulated.labels[split]:
        self.assertEqual(labels.shape, (len(weak), T, C))
        self.assertEqual(labels.dtype, np.float32)
        self.assertTrue(np.isin(labels, (0.0, 1.0)).all())
        self.assertFalse(labels[np.broadcast_to(~weak[:, None, :], labels.shape)].any(), split)

  def test_f1_against_the_hidden_dense_labels_hits_the_targets(self):
    audio, visual = self.simulated.labels["train"]
    dense_audio, dense_visual = self.data.dense_train_labels
    for modality, pseudo, truth in (
        ("audio", audio, dense_audio),
        ("visual", visual, dense_visual),
    ):
      f1 = _official_segment_f1(pseudo, truth)
      self.assertAlmostEqual(
          f1, simulated_teacher.PSEUDO_LABEL_TARGET_F1[modality], delta=2.0, msg=modality
      )
      self.assertAlmostEqual(f1, self.simulated.f1["train"][modality], delta=1e-3, msg=modality)
    self.assertIn("SIMULATED", self.simulated.summary())

  def test_every_kind_of_teacher_error_occurs(self):
    audio, visual = self.simulated.labels["train"]
    dense_audio, dense_visual = (x > 0 for x in self.data.dense_train_labels)
    for pseudo, truth, other in (
        (audio > 0, dense_audio, dense_visual),
        (visual > 0, dense_visual, dense_audio),
    ):
      present, labelled = truth.any(axis=1), pseudo.any(axis=1)  # [N, C]
      self.assertGreater((present & ~labelled).sum(), 0)  # whole events missed
      self.assertGreater((pseudo & ~truth).sum(), 0)  # spurious seconds
      self.assertGreater((truth & ~pseudo).sum(), 0)  # missed seconds
      leaked = ~present & labelled  # labelled where only the other modality has the class
      self.assertGreater(leaked.sum(), 0)
      leaked_seconds = pseudo & leaked[:, None, :]
      self.assertGreater(
          (leaked_seconds & other).sum(), 0.8 * leaked_seconds.sum()
      )  # on the other's seconds
    # The visual teacher errs more than the audio one, as VALOR's CLIP labels do on LLP.
    self.assertGreater(self.simulated.f1["train"]["audio"], self.simulated.f1["train"]["visual"])

  def test_deterministic_and_per_clip(self):
    again = simulated_teacher.simulated_pseudo_labels(
        synthetic.SyntheticLLP(num_train_clips=1000, seed=3), ("test",)
    )
    for first, second in zip(self.simulated.labels["test"], again.labels["test"]):
      np.testing.assert_array_equal(first, second)
    other_seed = simulated_teacher.simulated_pseudo_labels(
        synthetic.SyntheticLLP(num_train_clips=1000, seed=4), ("test",)
    )
    self.assertFalse(np.array_equal(self.simulated.labels["test"][0], other_seed.labels["test"][0]))

  def test_hand_worked_teacher(self):
    # One clip, weak labels {0, 1, 2}: class 0 audible in seconds 2-5, class 1 visible only (seconds 0-9),
    # class 2 audible in 7-8; class 3 (not weak) audible everywhere and never labelled.
    audio, visual = np.zeros((1, T, C), np.float32), np.zeros((1, T, C), np.float32)
    audio[0, 2:6, 0] = 1
    visual[0, :, 1] = 1
    audio[0, 7:9, 2] = 1
    audio[0, :, 3] = 1
    weak = np.zeros((1, C), np.float32)
    weak[0, :3] = 1
    draws = np.full((1, simulated_teacher._NUM_DRAWS, T, C), 0.99, np.float32)  # pylint: disable=protected-access
    errors = simulated_teacher.TeacherErrors(
        missed_event=0.5, jitter=0.5, missed_second=0.5, spurious_second=0.5, leaked_event=0.5
    )
    clean = simulated_teacher.simulate_teacher(audio, visual, weak, draws, errors, severity=1.0)
    expected = audio * weak[:, None, :]
    np.testing.assert_array_equal(
        clean, expected
    )  # no draw below any rate: the weak-filtered truth
    fields = range(simulated_teacher._NUM_DRAWS)  # pylint: disable=protected-access
    u_event, u_onset, u_offset, d_onset, d_offset, u_second, u_spurious, u_leak = fields
    draws[0, u_onset, 2, 0], draws[0, d_onset, 2, 0] = (
        0.1,
        0.1,
    )  # onset of class 0 one second earlier
    draws[0, u_offset, 2, 0], draws[0, d_offset, 2, 0] = 0.1, 0.9  # its offset one second later
    draws[0, u_event, 7, 2] = 0.1  # the class-2 event (onset 7) missed whole
    draws[0, u_leak, 0, 1] = 0.1  # class 1 (visible only) leaks into audio on its visual seconds
    draws[0, u_second, 9, 1] = 0.1  # ... minus second 9
    draws[0, u_spurious, 0, 2] = 0.1  # a spurious second of class 2 at second 0
    draws[0, u_spurious, 0, 3] = 0.1  # ... and of class 3, which the weak filter removes
    noisy = simulated_teacher.simulate_teacher(audio, visual, weak, draws, errors, severity=1.0)
    expected = np.zeros((1, T, C), np.float32)
    expected[0, 1:7, 0] = 1
    expected[0, :9, 1] = 1
    expected[0, 0, 2] = 1
    np.testing.assert_array_equal(noisy, expected)
    # Severity 0: every rate is 0, whatever the draws.
    np.testing.assert_array_equal(
        simulated_teacher.simulate_teacher(audio, visual, weak, draws, errors, 0.0),
        audio * weak[:, None, :],
    )

  def test_unreachable_target(self):
    dense_audio, dense_visual = self.data.dense_train_labels
    train = self.data.split("train")
    draws = simulated_teacher._teacher_draws(3, "audio", train.filenames)  # pylint: disable=protected-access
    with self.assertRaisesRegex(InputError, "cannot reach"):
      simulated_teacher.calibrate_severity(
          dense_audio,
          dense_visual,
          train.weak_labels,
          draws,
          simulated_teacher.TEACHER_ERRORS["audio"],
          100.5,
      )
