"""The AVE h5 feature readers on files the tests make: float64 maps, a truncated file, a wrong shape, no
`avadataset`, NaN values, label files that disagree."""

import os
import pathlib
import tempfile

from absl.testing import absltest
import h5py
import numpy as np

from avvp_jax.errors import InputError
from avvp_jax.tasks.ave import annotations
from avvp_jax.tasks.ave import features


def make_folder(num_videos=6, weak=False, seed=0):
  """A features folder in the released layout (float64, dataset avadataset) of `num_videos` videos."""
  folder = pathlib.Path(tempfile.mkdtemp(prefix="ave_features_"))
  rng = np.random.default_rng(seed)
  arrays = {
      "audio": rng.normal(size=(num_videos, 10, 128)),
      "visual": rng.normal(size=(num_videos, 10, 7, 7, 512)),
  }
  for name, values in arrays.items():
    with h5py.File(folder / features.FILES[name], "w") as h5:
      h5["avadataset"] = values  # float64, as released
  if weak:
    for name, filename in features.NOISY_FILES.items():
      with h5py.File(folder / filename, "w") as h5:
        h5["avadataset"] = rng.normal(size=(178, *features.SHAPES[name]))
    with h5py.File(folder / features.NOISY_LABELS_FILE, "w") as h5:
      h5["avadataset"] = features.noisy_labels()
  return folder, arrays


class ReaderTest(absltest.TestCase):

  def test_reads_float64_rows_as_float32_in_any_order(self):
    folder, arrays = make_folder()
    with features.H5Rows(folder / "visual_feature.h5", (10, 7, 7, 512), 6) as reader:
      self.assertEqual(reader.dtype, np.float64)
      self.assertLen(reader, 6)
      rows = list(reader.rows([4, 0, 4]))
    for got, row in zip(rows, [4, 0, 4]):
      self.assertEqual(got.dtype, np.float32)
      np.testing.assert_array_equal(got, arrays["visual"][row].astype(np.float32))

  def _message(self, call):
    with self.assertRaises(InputError) as caught:
      call()
    message = str(caught.exception)
    self.assertNotIn("\n", message)
    return message

  def test_bad_files_are_one_line_errors_naming_the_file(self):
    folder, _ = make_folder()
    audio = folder / "audio_feature.h5"
    shape = features.SHAPES["audio"]
    message = self._message(lambda: features.H5Rows(audio, shape, 7))
    self.assertIn(f"{audio}: 'avadataset' holds 6 videos, expected 7", message)
    message = self._message(lambda: features.H5Rows(audio, (10, 129)))
    self.assertIn(
        f"{audio}: 'avadataset' is [6, 10, 128], expected [N, 10, 129] per video", message
    )
    with h5py.File(audio, "w") as h5:
      h5["features"] = np.zeros((6, 10, 128))
    message = self._message(lambda: features.H5Rows(audio, shape))
    self.assertIn(f"{audio} has no dataset 'avadataset' (it holds features)", message)
    with h5py.File(audio, "w") as h5:
      h5["avadataset"] = np.zeros((6, 10, 128), np.int32)
    self.assertIn("is int32, expected floats", self._message(lambda: features.H5Rows(audio, shape)))
    with h5py.File(audio, "w") as h5:
      values = np.zeros((6, 10, 128))
      values[2, 3, 4] = np.nan
      h5["avadataset"] = values
    with features.H5Rows(audio, shape) as reader:
      reader.read(1)
      self.assertIn(f"{audio}: video 2 holds NaN", self._message(lambda: reader.read(2)))
    os.remove(audio)
    self.assertIn(f"{audio} does not exist", self._message(lambda: features.H5Rows(audio, shape)))

  def test_a_truncated_file(self):
    folder, _ = make_folder()
    visual = folder / "visual_feature.h5"
    data = visual.read_bytes()
    visual.write_bytes(data[: len(data) // 2])  # an interrupted download
    message = self._message(lambda: features.H5Rows(visual, features.SHAPES["visual"]))
    self.assertIn(f"{visual} cannot be opened as HDF5", message)
    self.assertIn("truncated", message)
    visual.write_bytes(b"<html>not found</html>")
    message = self._message(lambda: features.H5Rows(visual, features.SHAPES["visual"]))
    self.assertIn(f"{visual} cannot be opened as HDF5", message)


class FolderTest(absltest.TestCase):

  def test_check_features_dir(self):
    folder, _ = make_folder(weak=True)
    features.check_features_dir(folder, 6, weak=True)
    with self.assertRaisesRegex(InputError, "holds 6 videos, expected 4143"):
      features.check_features_dir(folder, 4143)
    with self.assertRaisesRegex(InputError, "is not a folder"):
      features.check_features_dir(folder / "nope", 6)
    plain, _ = make_folder()
    with self.assertRaisesRegex(InputError, "audio_feature_noisy.h5 does not exist"):
      features.check_features_dir(plain, 6, weak=True)
    with h5py.File(folder / features.NOISY_LABELS_FILE, "w") as h5:
      h5["avadataset"] = np.eye(29, dtype=np.float32)[np.zeros(178, int)]  # class 0, not background
    with self.assertRaisesRegex(
        InputError, "labels_noisy.h5: the weak setting's noisy videos must"
    ):
      features.check_features_dir(folder, 6, weak=True)

  def test_noisy_labels_equal_the_released_file(self):
    shared = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "ave"
    np.testing.assert_array_equal(
        features.read_all(shared / "labels_noisy.h5", (29,), 178), features.noisy_labels()
    )

  def test_a_given_labels_file_must_equal_the_built_labels(self):
    folder, _ = make_folder()
    built = annotations.load_annotations().segment_labels()
    features.check_segment_labels(folder, built)  # none given
    for name in features.SEGMENT_LABEL_FILES:
      with h5py.File(folder / name, "w") as h5:
        h5["avadataset"] = built
      features.check_segment_labels(folder, built)
      changed = built.copy()
      changed[17, 3] = np.eye(29)[5]
      with h5py.File(folder / name, "w") as h5:
        h5["avadataset"] = changed
      with self.assertRaisesRegex(InputError, f"{name} differs .* in 1 videos \\(first: row 17\\)"):
        features.check_segment_labels(folder, built)
      os.remove(folder / name)


if __name__ == "__main__":
  absltest.main()
