"""Tests of avvp_jax.tasks.llp.annotations against hand-read rows of the real LLP files."""

import hashlib
import pathlib
import shutil
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from avvp_jax.tasks.llp import annotations
from avvp_jax.errors import InputError

C = annotations.CLASS_INDEX


def _row(split, filename):
  return split.filenames.index(filename)


class PackagedFilesTest(absltest.TestCase):

  def test_packaged_files_are_the_corrected_release(self):
    for name, digest in annotations.OFFICIAL_SHA256.items():
      data = (annotations.default_labels_dir() / name).read_bytes()
      self.assertEqual(hashlib.sha256(data).hexdigest(), digest, name)

  def test_class_order(self):
    self.assertLen(annotations.CLASSES, 25)
    self.assertEqual(annotations.CLASSES[0], "Speech")
    self.assertEqual(annotations.CLASSES[13], "Violin_fiddle")
    self.assertEqual(annotations.CLASSES[24], "Clapping")

  def test_split_sizes(self):
    sizes = {s: len(annotations.load_split(s)[0]) for s in annotations.SPLITS}
    self.assertEqual(sizes, {"train": 10_000, "val": 649, "test": 1_200})
    train, _ = annotations.load_split("train")
    self.assertIsNone(train.audio_labels)
    self.assertEqual(train.weak_labels.shape, (10_000, 25))

  def test_head_keeps_the_first_clips_and_their_labels(self):
    val, _ = annotations.load_split("val")
    head = val.head(3)
    self.assertEqual((head.name, head.filenames), ("val", val.filenames[:3]))
    for got, full in (
        (head.weak_labels, val.weak_labels),
        (head.audio_labels, val.audio_labels),
        (head.visual_labels, val.visual_labels),
    ):
      self.assertLen(got, 3)
      np.testing.assert_array_equal(got, full[:3])
    self.assertLen(val.head(10_000), 649)
    train, _ = annotations.load_split("train")
    self.assertIsNone(train.head(2).audio_labels)
    self.assertEqual(train.head(2).clip_ids, train.clip_ids[:2])

  def test_weak_labels_first_rows(self):
    train, _ = annotations.load_split("train")
    self.assertEqual(train.filenames[0], "BjCEufrlXm4_20_30")  # Speech,Dog
    np.testing.assert_array_equal(np.flatnonzero(train.weak_labels[0]), [C["Speech"], C["Dog"]])
    self.assertEqual(train.clip_ids[0], "BjCEufrlXm4")

  def test_decimal_times_in_filename(self):
    train, _ = annotations.load_split("train")
    i = _row(train, "AP0061o0Nvk_101.8_111.8")
    self.assertEqual(train.clip_ids[i], "AP0061o0Nvk")

  def test_corrected_rows_of_2024(self):
    test, _ = annotations.load_split("test")
    # JfZEqeLZqWk_30_40: audio Baby_cry 0-10, Speech 0-4 and 7-10; visual Baby_cry 1-6.
    i = _row(test, "JfZEqeLZqWk_30_40")
    np.testing.assert_array_equal(
        test.audio_labels[i, :, C["Speech"]], [1, 1, 1, 1, 0, 0, 0, 1, 1, 1]
    )
    np.testing.assert_array_equal(test.audio_labels[i, :, C["Baby_cry_infant_cry"]], np.ones(10))
    np.testing.assert_array_equal(
        test.visual_labels[i, :, C["Baby_cry_infant_cry"]], [0, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    )
    np.testing.assert_array_equal(
        test.audio_visual_labels[i, :, C["Baby_cry_infant_cry"]], [0, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    )
    self.assertEqual(test.audio_labels[i].sum(), 10 + 7)
    # KvIjsmANkxI_10_20: audio Cat 0-1, 3-7, 8-10 (the backtick row), Speech 0-10.
    i = _row(test, "KvIjsmANkxI_10_20")
    np.testing.assert_array_equal(test.audio_labels[i, :, C["Cat"]], [1, 0, 0, 1, 1, 1, 1, 0, 1, 1])

  def test_empty_and_inverted_intervals_set_nothing(self):
    val, val_report = annotations.load_split("val")
    test, test_report = annotations.load_split("test")
    # "Gg3pK71kApY_30_40 10 10 Speech": Speech never audible though in the weak labels.
    i = _row(test, "Gg3pK71kApY_30_40")
    self.assertEqual(test.audio_labels[i, :, C["Speech"]].sum(), 0)
    self.assertEqual(test.audio_labels[i, :, C["Motorcycle"]].sum(), 10)
    # "CaC2xvdLC34_250_260 9 9 Speech" beside "9 10 Clapping".
    i = _row(test, "CaC2xvdLC34_250_260")
    self.assertEqual(test.audio_labels[i, :, C["Speech"]].sum(), 0)
    self.assertEqual(test.audio_labels[i, 9, C["Clapping"]], 1)
    # "8DF2PxdT5tE_390_400 9 0 Cheering": inverted, the official slice 9:0 is empty.
    i = _row(val, "8DF2PxdT5tE_390_400")
    self.assertEqual(val.audio_labels[i, :, C["Cheering"]].sum(), 0)
    self.assertEqual(val_report.inverted_intervals, 1)
    self.assertEqual(test_report.inverted_intervals, 0)
    self.assertEqual(val_report.empty_intervals + test_report.empty_intervals, 4)

  def test_quirk_counts(self):
    _, val_report = annotations.load_split("val")
    _, test_report = annotations.load_split("test")
    # 25 dense rows belong to clips in neither list; each split's report counts all of them.
    self.assertEqual(val_report.rows_outside_splits, 25)
    self.assertEqual(test_report.rows_outside_splits, 25)
    # 127 dense rows name a class missing from the clip's weak labels; they stay ground truth.
    self.assertEqual(val_report.labels_outside_weak + test_report.labels_outside_weak, 127)
    test, _ = annotations.load_split("test")
    i = _row(test, "Baue01N86wE_10_20")  # visual Basketball_bounce 0-1 is in the weak labels
    self.assertEqual(test.visual_labels[i, 0, C["Basketball_bounce"]], 1)

  def test_dense_label_outside_weak_label_is_kept(self):
    val, _ = annotations.load_split("val")
    test, _ = annotations.load_split("test")
    split = val if "McfGMq5A5G8_30_40" in val.filenames else test
    i = _row(split, "McfGMq5A5G8_30_40")
    self.assertEqual(split.weak_labels[i, C["Singing"]], 0)
    np.testing.assert_array_equal(split.audio_labels[i, :6, C["Singing"]], np.ones(6))

  def test_fingerprint_changes_with_content(self):
    with tempfile.TemporaryDirectory() as tmp:
      copy = pathlib.Path(tmp) / "llp"
      shutil.copytree(annotations.default_labels_dir(), copy)
      self.assertEqual(annotations.labels_fingerprint(copy), annotations.labels_fingerprint(None))
      with open(copy / "AVVP_val_pd.csv", "a") as f:
        f.write("aaaaaaaaaaa_0_10\tDog\n")
      self.assertNotEqual(
          annotations.labels_fingerprint(copy), annotations.labels_fingerprint(None)
      )


class BadInputTest(parameterized.TestCase):

  def _labels_dir(self, audio_rows=None, val_rows=None):
    tmp = pathlib.Path(self.create_tempdir().full_path)
    shutil.copytree(annotations.default_labels_dir(), tmp, dirs_exist_ok=True)
    if audio_rows is not None:
      (tmp / "AVVP_eval_audio.csv").write_text(
          "filename\tonset\toffset\tevent_labels\n" + audio_rows
      )
    if val_rows is not None:
      (tmp / "AVVP_val_pd.csv").write_text("filename\tevent_labels\n" + val_rows)
    return tmp

  @parameterized.named_parameters(
      (
          "unknown_class",
          "4YdbENYcIyE_23_33\t0\t4\tBaby_crying\n",
          "unknown class name 'Baby_crying'",
      ),
      ("malformed_row", "4YdbENYcIyE_23_33\t0\t4\n", "malformed row"),
      ("non_integer", "4YdbENYcIyE_23_33\t0\tfour\tDog\n", "not integer seconds"),
      ("out_of_range", "4YdbENYcIyE_23_33\t3\t11\tDog\n", "outside the clip"),
  )
  def test_bad_dense_rows(self, rows, message):
    labels_dir = self._labels_dir(audio_rows=rows)
    with self.assertRaisesRegex(InputError, message) as raised:
      annotations.load_split("test", labels_dir)
    self.assertIn("AVVP_eval_audio.csv:2", str(raised.exception))
    self.assertIn("4YdbENYcIyE_23_33", str(raised.exception))

  @parameterized.named_parameters(
      ("unknown_class", "4O9rI-FpqLg_10_20\tCheering,Speach\n", "unknown class name 'Speach'"),
      ("malformed_filename", "4O9rI_10_20\tSpeech\n", "malformed filename"),
      ("duplicate", "4O9rI-FpqLg_10_20\tSpeech\n4O9rI-FpqLg_10_20\tDog\n", "listed twice"),
      ("three_fields", "4O9rI-FpqLg_10_20\tSpeech\textra\n", "malformed row"),
  )
  def test_bad_weak_rows(self, rows, message):
    labels_dir = self._labels_dir(val_rows=rows)
    with self.assertRaisesRegex(InputError, message):
      annotations.load_split("val", labels_dir)

  def test_missing_file_and_bad_header(self):
    labels_dir = self._labels_dir()
    (labels_dir / "AVVP_test_pd.csv").unlink()
    with self.assertRaisesRegex(InputError, "AVVP_test_pd.csv.* is missing"):
      annotations.load_split("test", labels_dir)
    (labels_dir / "AVVP_val_pd.csv").write_text("name,labels\nx,y\n")
    with self.assertRaisesRegex(InputError, "expected the tab-separated header"):
      annotations.load_split("val", labels_dir)

  def test_missing_folder_and_unknown_split(self):
    with self.assertRaisesRegex(InputError, "is not a folder"):
      annotations.load_split("val", "/nonexistent/llp")
    with self.assertRaisesRegex(InputError, "unknown split 'dev'"):
      annotations.load_split("dev")

  def test_pre_2024_copy_is_recognised(self):
    labels_dir = self._labels_dir()
    path = labels_dir / "AVVP_eval_audio.csv"
    text = path.read_text()
    # Re-create the three broken rows of the copies from before the 2024-04-16 correction.
    text = text.replace("JfZEqeLZqWk_30_40\t0\t4\tSpeech", "Baby_cry_infant_cry\t0\t4\tSpeech")
    text = text.replace("JfZEqeLZqWk_30_40\t7\t10\tSpeech", "Baby_cry_infant_cry\t7\t10\tSpeech")
    text = text.replace("KvIjsmANkxI_10_20\t8\t10\tCat", "KvIjsmANkxI_10_20`\t8\t10\tCat")
    path.write_text(text)
    with self.assertRaisesRegex(InputError, "before the upstream correction of 2024-04-16"):
      annotations.load_split("test", labels_dir)
    legacy, _ = annotations.load_split("test", labels_dir, legacy_annotations=True)
    corrected, _ = annotations.load_split("test")
    # The official evaluation silently drops the three rows: 4 + 3 + 2 audio seconds fewer.
    self.assertEqual(corrected.audio_labels.sum() - legacy.audio_labels.sum(), 9)
    i = legacy.filenames.index("JfZEqeLZqWk_30_40")
    self.assertEqual(legacy.audio_labels[i, :, C["Speech"]].sum(), 0)


if __name__ == "__main__":
  absltest.main()
