"""The released AVE feature files: checked, streamed h5 readers (a clip at a time, never a whole file).

A features folder (`config.data.features_dir`) holds the files of AVE-ECCV18's release, each with one dataset
`avadataset`, rows in Annotations.txt order:

  audio_feature.h5          [4143, 10, 128]          VGGish embeddings (ReLU'd raw embedding), float
  visual_feature.h5         [4143, 10, 7, 7, 512]    VGG-19 pool5 maps, channels last, float64 (7.7 GiB)
  for the weak setting (`supervision="weak"`), the background-only videos appended to training (178 released;
  the two files must agree on the count):
  audio_feature_noisy.h5    [178, 10, 128]
  visual_feature_noisy.h5   [178, 10, 7, 7, 512]
  labels_noisy.h5           [178, 29] (optional: every row must be the background one-hot)
  optionally labels.h5 or right_labels.h5 [4143, 10, 29] (AVE's / PSP's name): checked against the labels built
  from Annotations.txt, which are what the builds use.

`H5Rows` opens one file, checks its dataset, shape and dtype, and reads row by row as float32 (h5py reads only
the bytes of the row asked for). Every problem is an `InputError` of one line that names the file: a missing
file, a file HDF5 cannot open (not HDF5, or truncated: HDF5 checks the stored end of file on opening), no
`avadataset`, a wrong shape or row count, a non-float dtype, a row that cannot be read, NaN or Inf values.
"""

from __future__ import annotations

import os
import pathlib
from typing import Iterator, Sequence

import numpy as np

from avvp_jax.errors import InputError
from avvp_jax.tasks.ave import annotations

DATASET = "avadataset"
SHAPES = {"audio": (10, 128), "visual": (10, 7, 7, 512)}  # per video
FILES = {"audio": "audio_feature.h5", "visual": "visual_feature.h5"}
NOISY_FILES = {"audio": "audio_feature_noisy.h5", "visual": "visual_feature_noisy.h5"}
NOISY_LABELS_FILE = "labels_noisy.h5"
SEGMENT_LABEL_FILES = ("labels.h5", "right_labels.h5")  # AVE-ECCV18's name, PSP's name
NUM_NOISY = 178  # background-only videos of the weak setting


def _shape_text(shape: Sequence[int]) -> str:
  return "[" + ", ".join(str(int(n)) for n in shape) + "]"


class H5Rows:
  """Rows of one h5 dataset `[N, *shape]`, read one at a time as float32 (use as a context manager).

  Args:
    path: the h5 file.
    shape: the per-row shape (e.g. `SHAPES["visual"]`).
    num_rows: the rows the file must hold (e.g. 4,143); None: any.
    dataset: the dataset's name (`avadataset` in every released file).

  Raises:
    InputError: (on opening) a missing or unreadable file, no such dataset, a wrong shape or dtype.
  """

  def __init__(
      self,
      path: str | os.PathLike,
      shape: Sequence[int],
      num_rows: int | None = None,
      dataset: str = DATASET,
  ):
    import h5py  # pylint: disable=g-import-not-at-top  (only when features are read)

    self.path = pathlib.Path(path)
    self.shape = tuple(int(n) for n in shape)
    if not self.path.is_file():
      raise InputError(f"{self.path} does not exist.")
    try:
      self._file = h5py.File(self.path, "r")
    except OSError as error:
      reason = str(error).split("(", 1)[-1].rstrip(")") if "(" in str(error) else str(error)
      raise InputError(
          f"{self.path} cannot be opened as HDF5 ({reason}): a partial download or not an h5 file?"
      ) from None
    try:
      if dataset not in self._file:
        raise InputError(
            f"{self.path} has no dataset {dataset!r} (it holds {', '.join(self._file) or 'nothing'})."
        )
      self._data = self._file[dataset]
      if tuple(self._data.shape[1:]) != self.shape:
        raise InputError(
            f"{self.path}: {dataset!r} is {_shape_text(self._data.shape)}, expected "
            f"[N, {_shape_text(self.shape)[1:]} per video."
        )
      if num_rows is not None and self._data.shape[0] != num_rows:
        raise InputError(
            f"{self.path}: {dataset!r} holds {self._data.shape[0]} videos, expected {num_rows}."
        )
      if self._data.dtype.kind != "f":
        raise InputError(f"{self.path}: {dataset!r} is {self._data.dtype}, expected floats.")
    except InputError:
      self._file.close()
      raise

  def __len__(self) -> int:
    return int(self._data.shape[0])

  @property
  def dtype(self) -> np.dtype:
    """The stored dtype (float64 in the released files)."""
    return self._data.dtype

  def read(self, row: int) -> np.ndarray:
    """Row `row` as float32 `shape`.

    Raises:
      InputError: the row cannot be read (a truncated file) or holds NaN or Inf.
    """
    try:
      values = np.asarray(self._data[int(row)], dtype=np.float32)
    except (OSError, RuntimeError) as error:
      raise InputError(
          f"{self.path}: video {row} cannot be read ({str(error).splitlines()[0]}): a truncated file?"
      ) from None
    if not np.all(np.isfinite(values)):
      raise InputError(f"{self.path}: video {row} holds NaN or Inf values.")
    return values

  def rows(self, indices: Sequence[int]) -> Iterator[np.ndarray]:
    """The rows `indices`, in that order, one at a time."""
    for row in indices:
      yield self.read(row)

  def close(self) -> None:
    self._file.close()

  def __enter__(self) -> "H5Rows":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def open_features(features_dir: str | os.PathLike, *, noisy: bool = False) -> dict[str, H5Rows]:
  """{"audio": H5Rows, "visual": H5Rows} of a features folder (the noisy videos' files with `noisy`); the
  visual file must hold as many videos as the audio file."""
  folder = pathlib.Path(features_dir).expanduser()
  files = NOISY_FILES if noisy else FILES
  opened: dict[str, H5Rows] = {}
  try:
    for name, filename in files.items():
      count = len(opened["audio"]) if opened else None
      opened[name] = H5Rows(folder / filename, SHAPES[name], count)
  except InputError:
    for reader in opened.values():
      reader.close()
    raise
  return opened


def check_features_dir(
    features_dir: str | os.PathLike, num_videos: int, *, weak: bool = False
) -> None:
  """Opens (and closes) every file a build of `features_dir` reads, so a bad folder fails before a build.

  Args:
    features_dir: the folder of the released files.
    num_videos: the rows of Annotations.txt (4,143).
    weak: also the weak setting's noisy videos.

  Raises:
    InputError: a missing folder or any problem of `H5Rows`.
  """
  folder = pathlib.Path(features_dir).expanduser()
  if not folder.is_dir():
    raise InputError(
        f"config.data.features_dir {os.fspath(features_dir)!r} is not a folder: give the folder of AVE's "
        f"{FILES['audio']} and {FILES['visual']}, or leave it empty for the SYNTHETIC set."
    )
  for name, filename in FILES.items():
    with H5Rows(folder / filename, SHAPES[name], num_videos):
      pass
  if weak:
    readers = open_features(folder, noisy=True)
    for reader in readers.values():
      reader.close()
    check_noisy_labels(folder, len(readers["audio"]))


def noisy_labels(count: int = NUM_NOISY) -> np.ndarray:
  """[count, 29] float32: the noisy videos' video labels, the background one-hot (as labels_noisy.h5)."""
  return np.tile(
      np.eye(annotations.NUM_LABELS, dtype=np.float32)[annotations.BACKGROUND], (count, 1)
  )


def read_all(
    path: str | os.PathLike, shape: Sequence[int], num_rows: int | None = None
) -> np.ndarray:
  """A small h5 label file whole, float32 (labels_noisy.h5, labels.h5): checked as `H5Rows` does."""
  with H5Rows(path, shape, num_rows) as reader:
    return np.stack(list(reader.rows(range(len(reader)))))


def check_noisy_labels(features_dir: str | os.PathLike, count: int = NUM_NOISY) -> None:
  """When `features_dir` holds labels_noisy.h5, it must be `count` background one-hots (what builds use)."""
  path = pathlib.Path(features_dir).expanduser() / NOISY_LABELS_FILE
  if path.exists() and not np.array_equal(
      read_all(path, (annotations.NUM_LABELS,), count), noisy_labels(count)
  ):
    raise InputError(
        f"{path}: the weak setting's noisy videos must all be background (column 28), as released."
    )


def check_segment_labels(features_dir: str | os.PathLike, built: np.ndarray) -> None:
  """When `features_dir` holds labels.h5 or right_labels.h5, it must equal `built` [N, 10, 29] (the labels of
  Annotations.txt, which the builds use)."""
  for name in SEGMENT_LABEL_FILES:
    path = pathlib.Path(features_dir).expanduser() / name
    if path.exists():
      given = read_all(path, built.shape[1:], len(built))
      if not np.array_equal(given, built):
        rows = np.flatnonzero(np.any(given != built, axis=(1, 2)))
        raise InputError(
            f"{path} differs from the labels of Annotations.txt in {len(rows)} videos (first: row "
            f"{rows[0]}): remove it or give the Annotations.txt it was made from (config.data.ave.labels_dir)."
        )


def folder_stamp(features_dir: str | os.PathLike, *, weak: bool = False) -> list[list]:
  """[[file name, size, mtime in ns], ...] of the files a build reads: what a build's key depends on."""
  folder = pathlib.Path(features_dir).expanduser()
  names = [*FILES.values()] + ([*NOISY_FILES.values(), NOISY_LABELS_FILE] if weak else [])
  names += list(SEGMENT_LABEL_FILES)
  stamp = []
  for name in names:
    path = folder / name
    if path.exists():
      info = path.stat()
      stamp.append([name, info.st_size, info.st_mtime_ns])
  return stamp
