"""Tests of avvp_jax.tasks.ave.annotations against the released AVE label files (../shared/ave beside the clone)."""

import os
import pathlib
import shutil
import tempfile

from absl.testing import absltest
import h5py
import numpy as np

from avvp_jax.errors import InputError
from avvp_jax.tasks.ave import annotations
from avvp_jax.tasks.ave import metrics

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "ave"  # the released files, beside the clone (as on CI)


def _released(name):
  with h5py.File(SHARED / name, "r") as h5:
    return h5["avadataset"][()]


class ReleasedLabelsTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.rows, cls.orders = annotations.load_splits()

  def test_packaged_files_are_the_released_ones(self):
    for name in ("Annotations.txt", "train_order.h5", "val_order.h5", "test_order.h5"):
      self.assertEqual(
          (annotations.PACKAGED_DIR / name).read_bytes(), (SHARED / name).read_bytes(), name
      )

  def test_built_labels_equal_the_released_files(self):
    video = self.rows.video_labels()
    mask = self.rows.event_mask()
    np.testing.assert_array_equal(video, _released("mil_labels.h5"))
    np.testing.assert_array_equal(mask, _released("labels_closs.h5"))
    self.assertEqual(video.dtype, np.float32)
    self.assertEqual(mask.dtype, np.float32)

  def test_segment_labels_combine_the_released_video_labels_and_event_mask(self):
    mil, closs = _released("mil_labels.h5"), _released("labels_closs.h5")
    background = np.zeros(29, np.float32)
    background[28] = 1
    expected = closs[:, :, None] * mil[:, None, :] + (1 - closs)[:, :, None] * background
    segment = self.rows.segment_labels()
    self.assertEqual(segment.shape, (4143, 10, 29))
    np.testing.assert_array_equal(segment, expected)
    np.testing.assert_array_equal(segment.argmax(-1), self.rows.segment_classes())

  def test_classes_are_numbered_by_first_appearance(self):
    text = (SHARED / "Annotations.txt").read_text().splitlines()
    first = []
    for line in text:
      name = line.split("&")[0]
      if name not in first:
        first.append(name)
    self.assertEqual(tuple(first), annotations.CLASSES)
    self.assertEqual(annotations.CLASSES[0], "Church bell")
    self.assertEqual(annotations.CLASSES[27], "Mandolin")
    self.assertEqual(annotations.LABEL_NAMES[annotations.BACKGROUND], "Background")

  def test_splits_are_disjoint_and_cover_every_row(self):
    sizes = {split: len(order) for split, order in self.orders.items()}
    self.assertEqual(sizes, {"train": 3339, "val": 402, "test": 402})
    rows = np.concatenate(list(self.orders.values()))
    self.assertLen(np.unique(rows), 4143)
    np.testing.assert_array_equal(np.sort(rows), np.arange(4143))
    self.assertFalse(np.all(np.diff(self.orders["test"]) > 0))  # unsorted, used as stored

  def test_video_ids(self):
    ids, counts = np.unique(self.rows.video_ids, return_counts=True)
    self.assertLen(ids, 4097)
    self.assertEqual(int((counts > 1).sum()), 45)
    self.assertEqual(sorted(counts[counts > 1].tolist()), [2] * 44 + [3])
    repeated = [i for i, video in enumerate(self.rows.video_ids) if video == "0f_iTO5t3hU"]
    names = {annotations.CLASSES[self.rows.classes[i]] for i in repeated}
    self.assertEqual(
        names, {"Ukulele", "Banjo", "Mandolin"}
    )  # one video, three classes, three rows

  def test_the_empty_event_row_is_background_everywhere(self):
    self.assertEqual(self.rows.video_ids[26], "VWi2ENBuTbw")
    np.testing.assert_array_equal(self.rows.segment_classes()[26], np.full(10, 28))
    self.assertEqual(int(self.rows.video_labels()[26].argmax()), 0)

  def test_reference_accuracies_on_the_test_split(self):
    test = self.orders["test"]
    labels = self.rows.segment_labels()[test]
    mask = np.ones(len(test), np.float32)
    background = np.full((len(test), 10), 28, np.int32)
    video_class = np.repeat(self.rows.classes[test, None], 10, axis=1).astype(np.int32)
    closs = _released("labels_closs.h5")[test]
    for prediction, expected, oracle in (
        (background, 17.79, 100 * (1 - closs.mean())),
        (video_class, 82.21, 100 * closs.mean()),
    ):
      totals = metrics.segment_counts(prediction, labels, mask)
      self.assertEqual(float(np.sum(totals["count"])), 4020)
      score = metrics.accuracy(totals)
      self.assertAlmostEqual(score, oracle, places=4)
      self.assertEqual(round(score, 2), expected)
    per_class = metrics.per_class_accuracy(metrics.segment_counts(background, labels, mask))
    self.assertEqual(per_class["Background"], 100.0)
    self.assertEqual(per_class["Church bell"], 0.0)


class HeaderTest(absltest.TestCase):

  def test_a_header_line_is_accepted(self):
    folder = pathlib.Path(tempfile.mkdtemp(prefix="ave_header_"))
    text = (annotations.PACKAGED_DIR / "Annotations.txt").read_text()
    (folder / "Annotations.txt").write_text("Category&VideoID&Quality&StartTime&EndTime\n" + text)
    with_header = annotations.load_annotations(folder)
    plain = annotations.load_annotations()
    self.assertLen(with_header, 4143)
    np.testing.assert_array_equal(with_header.segment_labels(), plain.segment_labels())
    self.assertEqual(with_header.video_ids, plain.video_ids)


class BadInputTest(absltest.TestCase):

  def _folder(self, lines=None):
    folder = pathlib.Path(tempfile.mkdtemp(prefix="ave_bad_"))
    for name in ("train_order.h5", "val_order.h5", "test_order.h5"):
      shutil.copy(annotations.PACKAGED_DIR / name, folder / name)
    text = (annotations.PACKAGED_DIR / "Annotations.txt").read_text().splitlines()
    if lines:
      for number, line in lines.items():
        text[number - 1] = line
    (folder / "Annotations.txt").write_text("\n".join(text) + "\n")
    return folder

  def _message(self, folder, call=annotations.load_splits):
    with self.assertRaises(InputError) as caught:
      call(folder)
    message = str(caught.exception)
    self.assertNotIn("\n", message)
    return message

  def test_malformed_rows_name_file_and_line(self):
    cases = {
        "Bark&abc&good&3": "line 7: 4 fields",
        "Bark&abc&good&6&2": "line 7: StartTime 6 is after EndTime 2",
        "Kazoo&abc&good&0&10": "line 7: class 'Kazoo' is not one of the 28",
        "Bark&abc&good&0&11": "line 7: times 0..11 are outside",
        "Bark&abc&good&zero&10": "line 7: StartTime 'zero' is not an integer",
    }
    for line, expected in cases.items():
      folder = self._folder({7: line})
      message = self._message(folder)
      self.assertIn(str(folder / "Annotations.txt"), message)
      self.assertIn(expected, message)

  def test_order_files(self):
    folder = self._folder()
    with h5py.File(folder / "val_order.h5", "w") as h5:
      h5["order"] = np.array([0, 4143], np.int64)
    message = self._message(folder)
    self.assertIn("val_order.h5: index 4143 is outside the 4143 rows", message)
    with h5py.File(folder / "val_order.h5", "w") as h5:
      h5["rows"] = np.array([0], np.int64)
    self.assertIn("has no dataset 'order' (it holds rows)", self._message(folder))
    with h5py.File(folder / "val_order.h5", "w") as h5:
      h5["order"] = np.array([5, 6], np.int64)  # rows of the training split
    self.assertIn("is also in the", self._message(folder))
    (folder / "test_order.h5").write_bytes(b"not hdf5")
    self.assertIn("test_order.h5 is not a readable HDF5 file", self._message(folder))
    os.remove(folder / "test_order.h5")
    self.assertIn("test_order.h5 does not exist", self._message(folder))

  def test_missing_annotations(self):
    folder = self._folder()
    os.remove(folder / "Annotations.txt")
    self.assertIn("Annotations.txt does not exist", self._message(folder))


if __name__ == "__main__":
  absltest.main()
