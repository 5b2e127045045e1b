"""The AVE annotations: classes, the h5 splits, and segment / video / event-mask labels as arrays.

Source of the packaged files (`avvp_jax/tasks/ave/data/`, see its README.txt): the `data/` folder of
github.com/YapengTian/AVE-ECCV18 (Tian et al., "Audio-Visual Event Localization in Unconstrained Videos",
ECCV 2018), commit 93f843f.

  Annotations.txt        one row per video, `Category&VideoID&Quality&StartTime&EndTime`, integer seconds; the
                         copy in the repository has no header, the one in the dataset zip has one (both read)
  {train,val,test}_order.h5   dataset `order`, int64: rows of Annotations.txt (0-based), unsorted; every method
                         trains and scores on these splits (3,339 / 402 / 402 rows, disjoint, all rows)
  {train,val,test}_order_match.h5   the split set "match" of the cross-modality localization task (cmm_train.py,
                         cmm_test.py): 3,339 / 402 / 402 rows, disjoint, all rows, another partition (train
                         and val sorted, test not). Its test rows all hold an event of 2 to 9 segments; val
                         holds row 26 (no event segment) and 203 rows whose event fills all 10 segments.

Labels of row i (class c = `CLASS_INDEX[Category]`, `BACKGROUND` = 28):
  segment j is the event when `StartTime <= j < EndTime`, else background;
  segment_labels [N, 10, 29] one-hot per segment (the released labels.h5, PSP's right_labels.h5),
  event_mask     [N, 10]     1 on event segments (labels_closs.h5),
  video_labels   [N, 29]     one-hot of c (mil_labels.h5; background never set).

Quirks of the real file: classes are numbered in the order they first appear (Church bell 0, Male speech 1, ...,
Mandolin 27); 45 of the 4,097 YouTube ids have more than one row (44 two, 0f_iTO5t3hU three: Ukulele, Banjo,
Mandolin), each row another class of the same video (16 Banjo + Mandolin, 8 male + female speech, ...); row 26 (Church bell,
VWi2ENBuTbw) has StartTime == EndTime == 0: no event segment, yet video label Church bell, as in the released
files. A start after its end, times outside [0, 10], a class not among the 28 and other malformed rows raise
`InputError` naming the file and line.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pathlib

import numpy as np

from avvp_jax.errors import InputError

CLASSES = (
    "Church bell",
    "Male speech, man speaking",
    "Bark",
    "Fixed-wing aircraft, airplane",
    "Race car, auto racing",
    "Female speech, woman speaking",
    "Helicopter",
    "Violin, fiddle",
    "Flute",
    "Ukulele",
    "Frying (food)",
    "Truck",
    "Shofar",
    "Motorcycle",
    "Acoustic guitar",
    "Train horn",
    "Clock",
    "Banjo",
    "Goat",
    "Baby cry, infant cry",
    "Bus",
    "Chainsaw",
    "Cat",
    "Horse",
    "Toilet flush",
    "Rodents, rats, mice",
    "Accordion",
    "Mandolin",
)
NUM_EVENT_CLASSES = len(CLASSES)  # 28
BACKGROUND = NUM_EVENT_CLASSES  # label index 28
LABEL_NAMES = (*CLASSES, "Background")  # the 29 label columns
NUM_LABELS = len(LABEL_NAMES)  # 29
NUM_SEGMENTS = 10  # every AVE video is 10 one-second segments
CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}

ANNOTATIONS_FILE = "Annotations.txt"
HEADER = ("Category", "VideoID", "Quality", "StartTime", "EndTime")
SPLITS = ("train", "val", "test")
# The split sets (`config.data.ave.splits`): "standard", the localization splits every method uses, and
# "match", the cross-modality localization task's (A2V / V2A).
SPLIT_SETS = {"standard": "_order.h5", "match": "_order_match.h5"}
ORDER_FILES = {split: f"{split}{SPLIT_SETS['standard']}" for split in SPLITS}


def order_files(split_set: str = "standard") -> dict[str, str]:
  """{split: order file name} of `split_set` (a key of `SPLIT_SETS`).

  Raises:
    InputError: an unknown split set.
  """
  if split_set not in SPLIT_SETS:
    raise InputError(
        f"config.data.ave.splits={split_set!r} is unknown: use one of {', '.join(SPLIT_SETS)}."
    )
  return {split: f"{split}{SPLIT_SETS[split_set]}" for split in SPLITS}


ORDER_DATASET = "order"
PACKAGED_DIR = pathlib.Path(__file__).parent / "data"


@dataclasses.dataclass(frozen=True)
class Annotations:
  """The rows of an Annotations.txt.

  Attributes:
    classes: [N] int64 class index (0-27) per row.
    video_ids: the N YouTube ids (not unique: 45 have two or three rows in the real file).
    starts, ends: [N] int64 first event segment and the one after the last (`start <= j < end`).
    source: the file read.
  """

  classes: np.ndarray
  video_ids: tuple[str, ...]
  starts: np.ndarray
  ends: np.ndarray
  source: str = ""

  def __len__(self) -> int:
    return len(self.video_ids)

  def event_mask(self) -> np.ndarray:
    """[N, 10] float32: 1 on the event segments (labels_closs.h5)."""
    segment = np.arange(NUM_SEGMENTS)
    return ((segment >= self.starts[:, None]) & (segment < self.ends[:, None])).astype(np.float32)

  def segment_classes(self) -> np.ndarray:
    """[N, 10] int32: the label of each segment, the row's class on event segments, else `BACKGROUND`."""
    return np.where(self.event_mask() > 0, self.classes[:, None], BACKGROUND).astype(np.int32)

  def segment_labels(self) -> np.ndarray:
    """[N, 10, 29] float32 one-hot per segment (labels.h5; PSP's right_labels.h5)."""
    return np.eye(NUM_LABELS, dtype=np.float32)[self.segment_classes()]

  def video_labels(self) -> np.ndarray:
    """[N, 29] float32 one-hot of the row's class (mil_labels.h5)."""
    return np.eye(NUM_LABELS, dtype=np.float32)[self.classes]


def resolve_dir(folder: str | os.PathLike | None) -> pathlib.Path:
  """The folder of Annotations.txt and the order files: `folder`, or (None / empty) the packaged one."""
  return pathlib.Path(folder).expanduser() if folder else PACKAGED_DIR


def _int_field(text: str, name: str, where: str) -> int:
  try:
    return int(text)
  except ValueError:
    raise InputError(f"{where}: {name} {text!r} is not an integer number of seconds.") from None


@functools.lru_cache(maxsize=8)
def _load(path: str, stamp: tuple[int, int] | None = None) -> Annotations:
  """The rows of `path`; `stamp` (size, mtime) keys the cache, so an edited file is read again."""
  del stamp
  try:
    lines = pathlib.Path(path).read_text(encoding="utf-8").splitlines()
  except FileNotFoundError:
    raise InputError(
        f"{path} does not exist: give the folder of AVE's Annotations.txt (or leave it empty for the "
        "packaged copy)."
    ) from None
  except UnicodeDecodeError as error:
    raise InputError(f"{path} is not UTF-8 text ({error.reason}).") from None
  classes, ids, starts, ends = [], [], [], []
  for number, line in enumerate(lines, start=1):
    where = f"{path}, line {number}"
    fields = line.split("&")
    if number == 1 and tuple(fields) == HEADER:  # the dataset zip's copy has a header
      continue
    if not line.strip() and number == len(lines):
      continue
    if len(fields) != len(HEADER):
      raise InputError(
          f"{where}: {len(fields)} fields separated by '&', expected {len(HEADER)} "
          f"({'&'.join(HEADER)})."
      )
    category, video_id, _, start_text, end_text = fields
    if category not in CLASS_INDEX:
      raise InputError(f"{where}: class {category!r} is not one of the 28 AVE classes.")
    start = _int_field(start_text, "StartTime", where)
    end = _int_field(end_text, "EndTime", where)
    if not 0 <= start <= NUM_SEGMENTS or not 0 <= end <= NUM_SEGMENTS:
      raise InputError(
          f"{where}: times {start}..{end} are outside the video's 0..{NUM_SEGMENTS} s."
      )
    if start > end:
      raise InputError(f"{where}: StartTime {start} is after EndTime {end}.")
    classes.append(CLASS_INDEX[category])
    ids.append(video_id)
    starts.append(start)
    ends.append(end)
  if not ids:
    raise InputError(f"{path} holds no annotation rows.")
  return Annotations(
      classes=np.array(classes, np.int64),
      video_ids=tuple(ids),
      starts=np.array(starts, np.int64),
      ends=np.array(ends, np.int64),
      source=path,
  )


def load_annotations(folder: str | os.PathLike | None = None) -> Annotations:
  """The rows of `folder/Annotations.txt` (None: the packaged copy).

  Raises:
    InputError: a missing file or a malformed row (the message names the file and line).
  """
  path = (resolve_dir(folder) / ANNOTATIONS_FILE).resolve()
  info = path.stat() if path.is_file() else None
  return _load(os.fspath(path), (info.st_size, info.st_mtime_ns) if info else None)


def load_order(
    split: str,
    folder: str | os.PathLike | None = None,
    num_rows: int | None = None,
    split_set: str = "standard",
):
  """[n] int64: the rows of Annotations.txt in `split`, in the order file's order (`{split}_order.h5`, or
  `{split}_order_match.h5` for the split set "match").

  Args:
    split: "train", "val" or "test".
    folder: the folder of the order files; None: the packaged ones.
    num_rows: the number of annotation rows; an index outside [0, num_rows) is an error.
    split_set: "standard" or "match" (`SPLIT_SETS`).

  Raises:
    InputError: an unknown split, a missing or unreadable file, no `order` dataset, or an index out of range.
  """
  if split not in ORDER_FILES:
    raise InputError(f"unknown AVE split {split!r}: use one of {', '.join(SPLITS)}.")
  import h5py  # pylint: disable=g-import-not-at-top  (only when the splits are read)

  path = resolve_dir(folder) / order_files(split_set)[split]
  if not path.is_file():
    raise InputError(f"{path} does not exist: AVE's {split} split needs its order file.")
  try:
    with h5py.File(path, "r") as h5:
      if ORDER_DATASET not in h5:
        raise InputError(
            f"{path} has no dataset {ORDER_DATASET!r} (it holds {', '.join(h5) or 'none'})."
        )
      order = np.asarray(h5[ORDER_DATASET][()])
  except OSError as error:
    raise InputError(f"{path} is not a readable HDF5 file ({error}).") from None
  if order.ndim != 1 or not np.issubdtype(order.dtype, np.integer):
    raise InputError(
        f"{path}: {ORDER_DATASET!r} is {order.dtype} {order.shape}, not a 1-d integer array."
    )
  order = order.astype(np.int64)
  if num_rows is not None and order.size and (order.min() < 0 or order.max() >= num_rows):
    bad = int(order[(order < 0) | (order >= num_rows)][0])
    raise InputError(f"{path}: index {bad} is outside the {num_rows} rows of Annotations.txt.")
  return order


def load_splits(
    folder: str | os.PathLike | None = None, split_set: str = "standard"
) -> tuple[Annotations, dict[str, np.ndarray]]:
  """The annotations and each split's rows of `split_set` ("standard" or "match"), checked: in range and no
  row in two splits.

  Raises:
    InputError: as `load_annotations` and `load_order`, or a row in two splits.
  """
  rows = load_annotations(folder)
  orders = {split: load_order(split, folder, len(rows), split_set) for split in SPLITS}
  seen: dict[int, str] = {}
  for split, order in orders.items():
    for row in order.tolist():
      if row in seen:
        raise InputError(
            f"{resolve_dir(folder) / order_files(split_set)[split]}: row {row} is also in the "
            f"{seen[row]} split."
        )
      seen[row] = split
  return rows, orders


def fingerprint(folder: str | os.PathLike | None = None, split_set: str = "standard") -> str:
  """sha256 of Annotations.txt and the three order files of `split_set` in `folder`: what a build's key
  depends on."""
  digest = hashlib.sha256()
  base = resolve_dir(folder)
  for name in (ANNOTATIONS_FILE, *order_files(split_set).values()):
    path = base / name
    if not path.is_file():
      raise InputError(
          f"{path} does not exist: AVE needs Annotations.txt and the three order files of the split "
          f"set {split_set!r}."
      )
    digest.update(name.encode() + b"\0" + path.read_bytes())
  return digest.hexdigest()
