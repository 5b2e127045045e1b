"""Tests of avvp_jax.tasks.llp.pseudo_labels on small folders laid out as VALOR's archives unpack: reading, the
atomic writer, and `quality` against a hand-worked pair of clips."""

import json
import os
import pathlib
import time
from unittest import mock

from absl.testing import absltest
import numpy as np

from avvp_jax.tasks.llp import annotations
from avvp_jax.tasks.llp import pseudo_labels
from avvp_jax.errors import InputError

FILENAMES = ("BjCEufrlXm4_20_30", "AP0061o0Nvk_101.8_111.8", "-0A9suni5YA_0_10")


def _write_folder(root, clip_ids, rng, *, shape=(10, 25), skip=()):
  """Writes random 0/1 int64 files (VALOR's dtype); returns {clip: (audio, visual)}."""
  written = {}
  for modality_dir in (pseudo_labels.AUDIO_SUBDIR, pseudo_labels.VISUAL_SUBDIR):
    (root / modality_dir).mkdir(parents=True, exist_ok=True)
  for clip in clip_ids:
    audio = (rng.uniform(size=shape) < 0.2).astype(np.int64)
    visual = (rng.uniform(size=shape) < 0.2).astype(np.int64)
    if (clip, "audio") not in skip:
      np.save(root / pseudo_labels.AUDIO_SUBDIR / f"{clip}.npy", audio)
    if (clip, "visual") not in skip:
      np.save(root / pseudo_labels.VISUAL_SUBDIR / f"{clip}.npy", visual)
    written[clip] = (audio, visual)
  return written


class LoadTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.root = pathlib.Path(self.create_tempdir().full_path)
    self.clip_ids = [name[:11] for name in FILENAMES]

  def test_rows_follow_the_filenames(self):
    written = _write_folder(self.root, self.clip_ids + ["zzzzzzzzzzz"], np.random.default_rng(0))
    labels = pseudo_labels.load_pseudo_labels(str(self.root), FILENAMES)
    self.assertEqual(labels.clip_ids, tuple(self.clip_ids))
    self.assertEqual(labels.audio.shape, (3, 10, 25))
    self.assertEqual(labels.audio.dtype, np.float32)
    for i, clip in enumerate(self.clip_ids):
      np.testing.assert_array_equal(labels.audio[i], written[clip][0])
      np.testing.assert_array_equal(labels.visual[i], written[clip][1])
      np.testing.assert_array_equal(labels.audio_video[i], written[clip][0].any(axis=0))
      np.testing.assert_array_equal(labels.visual_video[i], written[clip][1].any(axis=0))

  def test_batch_keys_and_padding(self):
    written = _write_folder(self.root, self.clip_ids, np.random.default_rng(1))
    labels = pseudo_labels.load_pseudo_labels(self.root, FILENAMES)
    batch = labels.batch(np.array([2, 0, -1]))
    self.assertEqual(set(batch), {"audio_pseudo_label", "visual_pseudo_label"})
    np.testing.assert_array_equal(batch["audio_pseudo_label"][0], written[self.clip_ids[2]][0])
    np.testing.assert_array_equal(batch["visual_pseudo_label"][1], written[self.clip_ids[0]][1])
    np.testing.assert_array_equal(batch["audio_pseudo_label"][2], np.zeros((10, 25)))
    self.assertEqual(batch["visual_pseudo_label"].dtype, np.float32)

  def test_a_stacked_copy_is_read_while_the_files_are_unchanged(self):
    written = _write_folder(self.root, self.clip_ids, np.random.default_rng(11))
    cache = pathlib.Path(self.create_tempdir().full_path)

    def assert_labels(labels, expected):
      self.assertEqual(labels.audio.dtype, np.float32)
      for i, clip in enumerate(self.clip_ids):
        np.testing.assert_array_equal(labels.audio[i], expected[clip][0])
        np.testing.assert_array_equal(labels.visual[i], expected[clip][1])

    assert_labels(pseudo_labels.load_pseudo_labels(self.root, FILENAMES, cache_dir=cache), written)
    self.assertLen(list(cache.glob(f"{pseudo_labels.CACHE_PREFIX}*.npz")), 1)
    with mock.patch.object(
        pseudo_labels, "_read_one", side_effect=AssertionError("a file was read")
    ):
      assert_labels(
          pseudo_labels.load_pseudo_labels(self.root, FILENAMES, cache_dir=cache), written
      )
    time.sleep(0.05)  # past the file system's timestamp granularity
    changed = (1 - written[self.clip_ids[1]][0], written[self.clip_ids[1]][1])  # rewritten in place
    np.save(self.root / pseudo_labels.AUDIO_SUBDIR / f"{self.clip_ids[1]}.npy", changed[0])
    written[self.clip_ids[1]] = changed
    assert_labels(pseudo_labels.load_pseudo_labels(self.root, FILENAMES, cache_dir=cache), written)
    time.sleep(0.05)
    np.save(
        self.root / pseudo_labels.VISUAL_SUBDIR / f"{self.clip_ids[2]}.npy", np.full((10, 25), 2)
    )
    with self.assertRaisesRegex(InputError, r"-0A9suni5YA\.npy.*holds 2"):
      pseudo_labels.load_pseudo_labels(self.root, FILENAMES, cache_dir=cache)

  def test_missing_clip_is_named(self):
    _write_folder(
        self.root, self.clip_ids, np.random.default_rng(2), skip={(self.clip_ids[1], "visual")}
    )
    with self.assertRaisesRegex(
        InputError, r"1 of 3 clips have no visual pseudo labels.*AP0061o0Nvk"
    ):
      pseudo_labels.load_pseudo_labels(self.root, FILENAMES)

  def test_wrong_shape_is_named(self):
    _write_folder(self.root, self.clip_ids, np.random.default_rng(3))
    np.save(self.root / pseudo_labels.AUDIO_SUBDIR / f"{self.clip_ids[0]}.npy", np.zeros((25, 10)))
    with self.assertRaisesRegex(InputError, r"BjCEufrlXm4\.npy.*shape \(25, 10\)"):
      pseudo_labels.load_pseudo_labels(self.root, FILENAMES)

  def test_values_other_than_0_and_1_are_refused_naming_the_file(self):
    _write_folder(self.root, self.clip_ids, np.random.default_rng(4))
    path = self.root / pseudo_labels.VISUAL_SUBDIR / f"{self.clip_ids[2]}.npy"
    for bad in (
        np.full((10, 25), 2),
        np.full((10, 25), 0.5),
        np.full((10, 25), np.nan),
        np.full((10, 25), -1),
    ):
      np.save(path, bad)
      with self.assertRaisesRegex(
          InputError,
          r"-0A9suni5YA\.npy' holds .* at second 0, class Speech .*other than 0 " "and 1",
      ):
        pseudo_labels.load_pseudo_labels(self.root, FILENAMES)
    np.save(path, np.full((10, 25), "1"))
    with self.assertRaisesRegex(InputError, r"-0A9suni5YA\.npy' has dtype"):
      pseudo_labels.load_pseudo_labels(self.root, FILENAMES)

  def test_bool_and_float_0_1_files_load(self):
    written = _write_folder(self.root, self.clip_ids, np.random.default_rng(6))
    np.save(
        self.root / pseudo_labels.AUDIO_SUBDIR / f"{self.clip_ids[0]}.npy",
        written[self.clip_ids[0]][0] > 0,
    )
    np.save(
        self.root / pseudo_labels.VISUAL_SUBDIR / f"{self.clip_ids[0]}.npy",
        written[self.clip_ids[0]][1].astype(np.float32),
    )
    labels = pseudo_labels.load_pseudo_labels(self.root, FILENAMES)
    np.testing.assert_array_equal(labels.audio[0], written[self.clip_ids[0]][0])
    np.testing.assert_array_equal(labels.visual[0], written[self.clip_ids[0]][1])

  def test_positives_outside_the_weak_labels_are_counted_and_kept(self):
    written = _write_folder(self.root, self.clip_ids, np.random.default_rng(7))
    weak = np.ones((3, 25), np.float32)
    weak[1, 4] = 0.0  # class Cat is not in clip 1's weak label
    audio = written[self.clip_ids[1]][0].copy()
    audio[:, 4] = 0
    audio[2:5, 4] = 1  # three audio seconds of Cat
    visual = written[self.clip_ids[1]][1].copy()
    visual[:, 4] = 0
    visual[9, 4] = 1  # one visual second
    np.save(self.root / pseudo_labels.AUDIO_SUBDIR / f"{self.clip_ids[1]}.npy", audio)
    np.save(self.root / pseudo_labels.VISUAL_SUBDIR / f"{self.clip_ids[1]}.npy", visual)
    with self.assertLogs(level="WARNING") as logs:
      labels = pseudo_labels.load_pseudo_labels(self.root, FILENAMES, weak_labels=weak)
    self.assertIn("4 positive seconds (audio 3, visual 1)", "\n".join(logs.output))
    self.assertIn("AP0061o0Nvk", "\n".join(logs.output))
    self.assertEqual((labels.positives_outside_weak, labels.clips_outside_weak), (4, 1))
    self.assertTrue(labels.weak_labels_checked)
    np.testing.assert_array_equal(labels.audio[1], audio)  # kept as given
    self.assertEqual(
        labels.describe(),
        f"pseudo labels: 3 clips, 4 positives outside weak labels (in 1 clips) "
        f"(from {self.root})",
    )
    clean = pseudo_labels.load_pseudo_labels(self.root, FILENAMES, weak_labels=np.ones((3, 25)))
    self.assertEqual(clean.positives_outside_weak, 0)
    self.assertIn("0 positives outside weak labels", clean.describe())
    unchecked = pseudo_labels.load_pseudo_labels(self.root, FILENAMES)
    self.assertFalse(unchecked.weak_labels_checked)
    self.assertIn("weak labels not checked", unchecked.describe())
    with self.assertRaisesRegex(
        InputError, r"weak_labels have shape \(2, 25\), expected \(3, 25\)"
    ):
      pseudo_labels.load_pseudo_labels(self.root, FILENAMES, weak_labels=np.ones((2, 25)))

  def test_load_for_split_checks_the_split_weak_labels(self):
    _write_folder(self.root, self.clip_ids, np.random.default_rng(8))
    split = annotations.Split("train", FILENAMES, np.zeros((3, 25), np.float32))
    labels = pseudo_labels.load_for_split(self.root, split)
    self.assertTrue(labels.weak_labels_checked)
    self.assertEqual(labels.positives_outside_weak, int(labels.audio.sum() + labels.visual.sum()))

  def test_unreadable_file(self):
    _write_folder(self.root, self.clip_ids, np.random.default_rng(5))
    (self.root / pseudo_labels.AUDIO_SUBDIR / f"{self.clip_ids[1]}.npy").write_text("not numpy")
    with self.assertRaisesRegex(InputError, "not a readable"):
      pseudo_labels.load_pseudo_labels(self.root, FILENAMES)

  def test_missing_folders(self):
    with self.assertRaisesRegex(InputError, "not a folder"):
      pseudo_labels.load_pseudo_labels(self.root / "nope", FILENAMES)
    (self.root / pseudo_labels.AUDIO_SUBDIR).mkdir(parents=True)
    with self.assertRaisesRegex(InputError, "CLIP/segment_pseudo_labels"):
      pseudo_labels.load_pseudo_labels(self.root, FILENAMES)


def _random_labels(rng, n):
  return (rng.uniform(size=(n, 10, 25)) < 0.2).astype(np.int64), (
      rng.uniform(size=(n, 10, 25)) < 0.2
  )


class WriteTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.base = pathlib.Path(self.create_tempdir().full_path)
    self.root = self.base / "pseudo"
    self.clip_ids = [name[:11] for name in FILENAMES]

  def _siblings(self):
    return sorted(p.name for p in self.base.iterdir())

  def test_layout_dtype_and_round_trip(self):
    audio, visual = _random_labels(np.random.default_rng(0), 3)
    out = pseudo_labels.write_pseudo_labels(
        self.root, FILENAMES, audio, visual, extra_files={"quality.json": "{}\n"}
    )
    self.assertEqual(out, self.root.absolute())
    for subdir, expected in (
        (pseudo_labels.AUDIO_SUBDIR, audio),
        (pseudo_labels.VISUAL_SUBDIR, visual),
    ):
      self.assertEqual(
          sorted(os.listdir(self.root / subdir)),
          sorted([f"{c}.npy" for c in self.clip_ids] + [pseudo_labels.STAMP_FILE]),
      )
      stored = np.load(self.root / subdir / f"{self.clip_ids[1]}.npy")
      self.assertEqual(
          (stored.dtype, stored.shape), (np.dtype(np.int64), (10, 25))
      )  # VALOR's files
      np.testing.assert_array_equal(stored, expected[1])
    self.assertEqual((self.root / "quality.json").read_text(), "{}\n")
    self.assertFalse((self.root / "SYNTHETIC.txt").exists())
    self.assertEqual(self._siblings(), ["pseudo"])  # no temporary folder left behind
    labels = pseudo_labels.load_pseudo_labels(self.root, list(reversed(FILENAMES)))
    np.testing.assert_array_equal(labels.audio, audio[::-1])
    np.testing.assert_array_equal(labels.visual, visual[::-1])
    self.assertFalse(labels.synthetic)

  def test_marker_text_makes_a_synthetic_folder(self):
    audio, visual = _random_labels(np.random.default_rng(1), 3)
    pseudo_labels.write_pseudo_labels(
        self.root, self.clip_ids, audio, visual, marker_text="SYNTHETIC test\n"
    )
    self.assertEqual((self.root / "SYNTHETIC.txt").read_text(), "SYNTHETIC test\n")
    self.assertEqual(
        (self.root / pseudo_labels.AUDIO_SUBDIR / "SYNTHETIC.txt").read_text(), "SYNTHETIC test\n"
    )
    labels = pseudo_labels.load_pseudo_labels(self.root, FILENAMES)
    self.assertTrue(labels.synthetic)
    self.assertTrue(labels.describe().startswith("SYNTHETIC pseudo labels: 3 clips"))

  def test_an_earlier_write_is_replaced_whole(self):
    audio, visual = _random_labels(np.random.default_rng(2), 3)
    pseudo_labels.write_pseudo_labels(
        self.root, self.clip_ids, audio, visual, marker_text="SYNTHETIC\n"
    )
    pseudo_labels.write_pseudo_labels(self.root, self.clip_ids[:1], audio[:1] * 0, visual[:1] * 0)
    self.assertEqual(
        sorted(os.listdir(self.root / pseudo_labels.AUDIO_SUBDIR)),
        [f"{self.clip_ids[0]}.npy", pseudo_labels.STAMP_FILE],
    )  # the other clips are gone
    self.assertFalse((self.root / "SYNTHETIC.txt").exists())  # and so is the old marker
    self.assertEqual(self._siblings(), ["pseudo"])
    self.assertEqual(pseudo_labels.load_pseudo_labels(self.root, FILENAMES[:1]).audio.sum(), 0)

  def test_a_failed_write_leaves_nothing_and_keeps_the_earlier_one(self):
    audio, visual = _random_labels(np.random.default_rng(3), 3)
    real_save = np.save
    calls = []

    def failing_save(path, array):
      calls.append(path)
      if len(calls) == 4:  # the first visual file: the audio folder is complete by then
        raise OSError("disk full")
      real_save(path, array)

    with mock.patch.object(np, "save", failing_save), self.assertRaisesRegex(OSError, "disk full"):
      pseudo_labels.write_pseudo_labels(self.root, self.clip_ids, audio, visual)
    self.assertEqual(self._siblings(), [])  # no root, no partial folder

    pseudo_labels.write_pseudo_labels(self.root, self.clip_ids, audio, visual)
    calls.clear()
    with mock.patch.object(np, "save", failing_save), self.assertRaisesRegex(OSError, "disk full"):
      pseudo_labels.write_pseudo_labels(self.root, self.clip_ids, 1 - audio, 1 - visual)
    self.assertEqual(self._siblings(), ["pseudo"])
    labels = pseudo_labels.load_pseudo_labels(self.root, FILENAMES)
    np.testing.assert_array_equal(labels.audio, audio)  # the earlier write, untouched
    np.testing.assert_array_equal(labels.visual, visual)

  def test_writes_beside_the_features_of_an_existing_folder(self):
    features = self.root / "CLAP" / "features"
    features.mkdir(parents=True)
    np.save(features / f"{self.clip_ids[0]}.npy", np.zeros((64, 768), np.float32))
    (self.root / "SYNTHETIC.txt").write_text("SYNTHETIC features\n")
    audio, visual = _random_labels(np.random.default_rng(4), 3)
    for _ in range(2):  # the second write replaces the first one's label folders
      pseudo_labels.write_pseudo_labels(
          self.root, self.clip_ids, audio, visual, marker_text="SYNTHETIC labels\n"
      )
    self.assertTrue((features / f"{self.clip_ids[0]}.npy").is_file())  # features untouched
    self.assertEqual(
        (self.root / "SYNTHETIC.txt").read_text(), "SYNTHETIC features\n\nSYNTHETIC labels\n"
    )
    self.assertEqual(
        sorted(os.listdir(self.root)), ["CLAP", "CLIP", "SYNTHETIC.txt"]
    )  # no partial folder
    np.testing.assert_array_equal(
        pseudo_labels.load_pseudo_labels(self.root, FILENAMES).visual, visual
    )
    self.assertFalse(pseudo_labels.replaceable(self.root))

  def test_labels_someone_else_wrote_are_refused(self):
    _write_folder(self.root, self.clip_ids, np.random.default_rng(5))  # VALOR-like: no stamp
    before = np.load(self.root / pseudo_labels.AUDIO_SUBDIR / f"{self.clip_ids[0]}.npy")
    audio, visual = _random_labels(np.random.default_rng(6), 3)
    with self.assertRaisesRegex(
        InputError,
        r"CLAP/segment_pseudo_labels' already holds pseudo labels that avvp_jax " "did not write",
    ):
      pseudo_labels.write_pseudo_labels(self.root, self.clip_ids, audio, visual)
    np.testing.assert_array_equal(
        np.load(self.root / pseudo_labels.AUDIO_SUBDIR / f"{self.clip_ids[0]}.npy"), before
    )
    self.assertEqual(sorted(os.listdir(self.root)), ["CLAP", "CLIP"])

  def test_folders_of_two_writes_are_refused(self):
    audio, visual = _random_labels(np.random.default_rng(7), 3)
    other = self.base / "other"
    pseudo_labels.write_pseudo_labels(self.root, self.clip_ids, audio, visual)
    pseudo_labels.write_pseudo_labels(other, self.clip_ids, audio, visual)
    target = self.root / pseudo_labels.VISUAL_SUBDIR
    for path in target.iterdir():
      path.unlink()
    target.rmdir()
    os.rename(
        other / pseudo_labels.VISUAL_SUBDIR, target
    )  # what a crash between the two renames would leave
    with self.assertRaisesRegex(InputError, "two different writes"):
      pseudo_labels.load_pseudo_labels(self.root, FILENAMES)

  def test_bad_input_writes_nothing(self):
    audio, visual = _random_labels(np.random.default_rng(8), 3)
    soft = visual.astype(np.float32)
    soft[0, 0, 0] = 0.5
    cases = [
        ((FILENAMES, audio[:2], visual), r"audio has shape \(2, 10, 25\), expected \(3, 10, 25\)"),
        ((FILENAMES, audio, soft), r"visual holds 0.5 \(clip row 0, second 0, class Speech\)"),
        ((FILENAMES, audio.astype(str), visual), "audio has dtype"),
        ((FILENAMES[:2] + FILENAMES[:1], audio, visual), r"clip ids repeat \(BjCEufrlXm4\)"),
        (([], audio[:0], visual[:0]), "no clips"),
        (("BjCEufrlXm4", audio[:1], visual[:1]), "one string"),
        ((["../x", "b", "c"], audio, visual), "cannot name a file"),
    ]
    for args, message in cases:
      with self.assertRaisesRegex(InputError, message):
        pseudo_labels.write_pseudo_labels(self.root, *args)
    with self.assertRaisesRegex(InputError, "extra_files name 'CLAP'"):
      pseudo_labels.write_pseudo_labels(
          self.root, FILENAMES, audio, visual, extra_files={"CLAP": "x"}
      )
    self.assertEqual(self._siblings(), [])
    (self.base / "file").write_text("x")
    with self.assertRaisesRegex(InputError, "is a file"):
      pseudo_labels.write_pseudo_labels(self.base / "file", FILENAMES, audio, visual)

  def test_stamp_says_who_wrote_it(self):
    audio, visual = _random_labels(np.random.default_rng(9), 3)
    pseudo_labels.write_pseudo_labels(self.root, self.clip_ids, audio, visual)
    stamps = [
        json.loads((self.root / d / pseudo_labels.STAMP_FILE).read_text())
        for d in (pseudo_labels.AUDIO_SUBDIR, pseudo_labels.VISUAL_SUBDIR)
    ]
    self.assertEqual([s["modality"] for s in stamps], ["audio", "visual"])
    self.assertEqual(stamps[0]["write_id"], stamps[1]["write_id"])
    self.assertEqual(stamps[0]["dtype"], "int64")
    self.assertTrue(pseudo_labels.replaceable(self.root))
    (self.root / "notes.txt").write_text("mine")
    self.assertFalse(
        pseudo_labels.replaceable(self.root)
    )  # a file added since: no longer ours as a whole


def _hand_worked_clips():
  """Two clips, worked by hand in `QualityTest`: (audio, visual, true_audio, true_visual), [2, 10, 25] each."""
  speech, car, dog, cat = (annotations.CLASS_INDEX[c] for c in ("Speech", "Car", "Dog", "Cat"))
  shape = (2, 10, 25)
  audio, visual, true_audio, true_visual = (np.zeros(shape, np.int64) for _ in range(4))
  true_audio[0, 0:4, speech] = 1  # clip 0: Speech audible in seconds 0-3 ...
  audio[0, 1:5, speech] = 1  # ... labelled in 1-4: TP 3 (1, 2, 3), FP 1 (4), FN 1 (0)
  true_audio[0, 5:10, dog] = 1  # Dog audible in 5-9, never labelled: FN 5
  true_audio[1, :, car] = 1  # clip 1: Car audible throughout ...
  audio[1, :, car] = 1  # ... and labelled throughout: TP 10
  audio[1, 0, cat] = 1  # one spurious second of Cat: FP 1
  true_visual[1, 0:5, car] = (
      1  # clip 1: Car visible in 0-4, labelled exactly; clip 0: nothing visible or labelled
  )
  visual[1, 0:5, car] = 1
  return audio, visual, true_audio, true_visual


class QualityTest(absltest.TestCase):

  def test_hand_worked_clips(self):
    scores = pseudo_labels.quality(*_hand_worked_clips())
    self.assertEqual(set(scores), {"audio", "visual"})
    self.assertEqual(set(scores["audio"]), {"precision", "recall", "f1", "segment_f1"})
    # Audio pooled: TP = 3 + 10 = 13, FP = 1 + 1 = 2, FN = 1 + 5 = 6.
    self.assertAlmostEqual(scores["audio"]["precision"], 100 * 13 / 15, places=4)  # 86.67
    self.assertAlmostEqual(scores["audio"]["recall"], 100 * 13 / 19, places=4)  # 68.42
    self.assertAlmostEqual(scores["audio"]["f1"], 100 * 26 / 34, places=4)  # 76.47
    # Official: clip 0 = mean(Speech 2*3/(6+1+1) = 0.75, Dog 0) = 0.375; clip 1 = mean(Car 1, Cat 0) = 0.5.
    self.assertAlmostEqual(
        scores["audio"]["segment_f1"], 100 * (0.375 + 0.5) / 2, places=4
    )  # 43.75
    # Visual: 5 TP, nothing else; clip 0 (nothing at all) counts 100 officially.
    for key in ("precision", "recall", "f1", "segment_f1"):
      self.assertAlmostEqual(scores["visual"][key], 100.0, places=4)
    for values in scores.values():
      for value in values.values():
        self.assertIsInstance(value, float)

  def test_mask_and_empty_cases(self):
    audio, visual, true_audio, true_visual = _hand_worked_clips()
    scores = pseudo_labels.quality(audio, visual, true_audio, true_visual, mask=np.array([1, 0]))
    # Clip 0 alone: audio TP 3, FP 1, FN 6; visual has nothing in labels or truth (0/0 counts 100).
    self.assertAlmostEqual(scores["audio"]["precision"], 75.0, places=4)
    self.assertAlmostEqual(scores["audio"]["recall"], 100 * 3 / 9, places=4)
    self.assertAlmostEqual(scores["audio"]["f1"], 100 * 6 / 13, places=4)
    self.assertAlmostEqual(scores["audio"]["segment_f1"], 37.5, places=4)
    self.assertEqual(
        scores["visual"], {"precision": 100.0, "recall": 100.0, "f1": 100.0, "segment_f1": 100.0}
    )
    nothing = pseudo_labels.quality(
        audio * 0, visual * 0, true_audio, true_visual
    )  # nothing labelled
    self.assertEqual(
        (nothing["audio"]["precision"], nothing["audio"]["recall"], nothing["audio"]["f1"]),
        (0.0, 0.0, 0.0),
    )

  def test_bad_input(self):
    audio, visual, true_audio, true_visual = _hand_worked_clips()
    with self.assertRaisesRegex(InputError, "shapes"):
      pseudo_labels.quality(audio[:1], visual, true_audio, true_visual)
    with self.assertRaisesRegex(InputError, "true_visual with values other than 0 and 1"):
      pseudo_labels.quality(audio, visual, true_audio, true_visual * 0.5)
    with self.assertRaisesRegex(InputError, r"mask of shape \(3,\)"):
      pseudo_labels.quality(audio, visual, true_audio, true_visual, mask=np.ones(3))
    with self.assertRaisesRegex(InputError, "no clip"):
      pseudo_labels.quality(audio, visual, true_audio, true_visual, mask=np.zeros(2))


if __name__ == "__main__":
  absltest.main()
