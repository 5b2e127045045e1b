"""The LLP annotations: classes, weak labels and dense second-level labels as arrays.

Source of the packaged files (`avvp_jax/tasks/llp/labels/AVVP_*.csv`): the Look, Listen and Parse dataset released
with Tian, Li and Xu, "Unified Multisensory Perception: Weakly-Supervised Audio-Visual Video Parsing",
ECCV 2020 (https://github.com/YapengTian/AVVP-ECCV20, `data/`), in the version after the upstream
correction of 2024-04-16.

The files are tab-separated with a header line:
  * `AVVP_train.csv`, `AVVP_val_pd.csv`, `AVVP_test_pd.csv`, `AVVP_dataset_full.csv`:
    `filename<TAB>event_labels` (comma-separated class names).
  * `AVVP_eval_audio.csv`, `AVVP_eval_visual.csv`: `filename<TAB>onset<TAB>offset<TAB>event_labels`,
    integer seconds, offset exclusive.

Quirks of the real files, treated exactly as the official evaluation treats them (and counted in
`AnnotationReport` so a caller can log them):
  * dense rows of clips that are in neither the validation nor the test list are ignored;
  * dense rows whose class is missing from that clip's weak labels still count as ground truth;
  * rows with onset == offset (six) or onset > offset (one) are empty events: they set no second.
Copies of `AVVP_eval_audio.csv` from before the 2024-04-16 correction (a class name in the filename
column, a stray backtick after a filename) are recognised and refused with an explanation, unless
`legacy_annotations=True`, which scores them as the official code does (dropping the broken rows).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import pathlib
import re

import numpy as np

from avvp_jax.errors import InputError

CLASSES = (
    "Speech",
    "Car",
    "Cheering",
    "Dog",
    "Cat",
    "Frying_(food)",
    "Basketball_bounce",
    "Fire_alarm",
    "Chainsaw",
    "Cello",
    "Banjo",
    "Singing",
    "Chicken_rooster",
    "Violin_fiddle",
    "Vacuum_cleaner",
    "Baby_laughter",
    "Accordion",
    "Lawn_mower",
    "Motorcycle",
    "Helicopter",
    "Acoustic_guitar",
    "Telephone_bell_ringing",
    "Baby_cry_infant_cry",
    "Blender",
    "Clapping",
)
NUM_CLASSES = len(CLASSES)  # 25
NUM_SECONDS = 10  # every LLP clip is 10 one-second segments
CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}

SPLIT_FILES = {"train": "AVVP_train.csv", "val": "AVVP_val_pd.csv", "test": "AVVP_test_pd.csv"}
DENSE_FILES = {"audio": "AVVP_eval_audio.csv", "visual": "AVVP_eval_visual.csv"}
LABEL_MODALITIES = tuple(DENSE_FILES)  # ("audio", "visual"): what dense (and pseudo) labels come in
SPLITS = tuple(SPLIT_FILES)
CLIP_ID_LENGTH = 11  # feature files are named by the first 11 characters of `filename`

# sha256 of the packaged (corrected, 2024-04-16) files.
OFFICIAL_SHA256 = {
    "AVVP_dataset_full.csv": "89f112ffc602279c87cc2b2040c4cd42eaf163a9d7e61cf4e74250a343d21e56",
    "AVVP_eval_audio.csv": "d5435664668bec6e7eafb39059d2f424ed2682f6b55395262fc3cb691b7d0778",
    "AVVP_eval_visual.csv": "e2274af694f3f27e38b840e0cd91a9d8d9ac85280f193e90828d26b22db69abe",
    "AVVP_test_pd.csv": "3f7a2b040e3b67c15d08efef25002bf8c5b2320f11049eb99ae0eb2d62f8eb9b",
    "AVVP_train.csv": "bbeb83e8af46a85075216b213d3464f92dd4ab71468c852ae454b82cc745c0a4",
    "AVVP_val_pd.csv": "1811813b54c5f43c3be0a97bd0971cfb8a93818ca7b3ab96cdc7f4ac37ef37a6",
}

# `<11-char YouTube id>_<start>_<end>`; start and end are seconds, a few with decimals.
_FILENAME_RE = re.compile(r"^[A-Za-z0-9_-]{11}_\d+(\.\d+)?_\d+(\.\d+)?$")


def default_labels_dir() -> pathlib.Path:
  """The packaged real LLP annotation files."""
  return pathlib.Path(__file__).resolve().parent / "labels"


def resolve_labels_dir(labels_dir: str | pathlib.Path | None) -> pathlib.Path:
  """`labels_dir`, or the packaged annotations when it is None or empty; checks that it exists."""
  if not labels_dir:
    return default_labels_dir()
  path = pathlib.Path(labels_dir).expanduser()
  if not path.is_dir():
    raise InputError(
        f"labels_dir {str(path)!r} is not a folder: point --config.data.labels_dir at the "
        "folder holding the AVVP_*.csv files, or leave it empty for the packaged ones."
    )
  return path


def clip_id(filename: str) -> str:
  """The YouTube id that names a clip's feature files: the first 11 characters of `filename`."""
  return filename[:CLIP_ID_LENGTH]


def labels_fingerprint(labels_dir: str | pathlib.Path | None) -> str:
  """A short hash of the annotation files' contents (keys dataset builds to the labels they came from)."""
  directory = resolve_labels_dir(labels_dir)
  digest = hashlib.sha256()
  for name in sorted(list(SPLIT_FILES.values()) + list(DENSE_FILES.values())):
    path = directory / name
    if path.exists():
      digest.update(name.encode())
      digest.update(path.read_bytes())
  return digest.hexdigest()[:16]


def parse_class_list(text: str, *, where: str) -> np.ndarray:
  """A comma-separated list of class names -> multi-hot `[C]` float32 vector."""
  vector = np.zeros(NUM_CLASSES, np.float32)
  for name in text.split(","):
    name = name.strip()
    if name not in CLASS_INDEX:
      raise InputError(
          f"{where}: unknown class name {name!r}; the 25 LLP classes are "
          f"{', '.join(CLASSES)} (fix the label or the file)."
      )
    vector[CLASS_INDEX[name]] = 1.0
  return vector


def _read_rows(path: pathlib.Path, columns: tuple[str, ...]) -> list[tuple[int, list[str]]]:
  """Reads a tab-separated file with a header; returns (line number, fields) per data row."""
  if not path.exists():
    raise InputError(
        f"annotation file {str(path)!r} is missing: the labels folder must hold "
        f"{', '.join(sorted(list(SPLIT_FILES.values()) + list(DENSE_FILES.values())))}."
    )
  with open(path, newline="") as f:
    rows = list(csv.reader(f, delimiter="\t"))
  if not rows or tuple(field.strip() for field in rows[0]) != columns:
    found = rows[0] if rows else "nothing"
    raise InputError(
        f"{path}:1: expected the tab-separated header {'<TAB>'.join(columns)!r}, found "
        f"{found!r}; use the official LLP annotation files."
    )
  out = []
  for line_number, fields in enumerate(rows[1:], start=2):
    if not fields or all(not field.strip() for field in fields):
      continue  # blank lines (e.g. a trailing newline) carry nothing
    if len(fields) != len(columns):
      raise InputError(
          f"{path}:{line_number}: malformed row {'<TAB>'.join(fields)!r}: expected "
          f"{len(columns)} tab-separated fields ({', '.join(columns)})."
      )
    out.append((line_number, [field.strip() for field in fields]))
  return out


def read_weak_labels(path: str | pathlib.Path) -> tuple[tuple[str, ...], np.ndarray]:
  """Reads a `filename<TAB>event_labels` file.

  Returns:
    filenames: the clips in file order.
    labels: `[N, C]` float32 multi-hot weak (video-level) labels.
  """
  path = pathlib.Path(path)
  filenames, labels, seen = [], [], {}
  for line_number, (filename, event_labels) in _read_rows(path, ("filename", "event_labels")):
    where = f"{path}:{line_number} (clip {filename})"
    if not _FILENAME_RE.match(filename):
      raise InputError(
          f"{where}: malformed filename {filename!r}; expected '<11-char YouTube id>_<start>_"
          "<end>' as in the official files."
      )
    if filename in seen:
      raise InputError(
          f"{where}: clip listed twice (first at line {seen[filename]}); remove one row."
      )
    seen[filename] = line_number
    filenames.append(filename)
    labels.append(parse_class_list(event_labels, where=where))
  labels_array = np.stack(labels) if labels else np.zeros((0, NUM_CLASSES), np.float32)
  return tuple(filenames), labels_array


@dataclasses.dataclass(frozen=True)
class DenseEvent:
  """One row of a dense annotation file."""

  filename: str
  onset: int  # first second of the event
  offset: int  # one past its last second
  class_index: int
  line: int  # line number in the file, for messages


def read_dense_events(
    path: str | pathlib.Path, *, legacy_annotations: bool = False
) -> list[DenseEvent]:
  """Reads `AVVP_eval_{audio,visual}.csv`, checking every row.

  Rows with onset >= offset are kept: they set no second, as the official code's `gt[c, onset:offset] = 1`
  does not (the real audio file has six empty rows and one inverted one, `8DF2PxdT5tE_390_400 9 0
  Cheering`); `AnnotationReport` counts them. Non-integer or out-of-range times and unknown classes raise
  `InputError`. The broken rows of copies
  from before the 2024-04-16 correction raise too, unless `legacy_annotations`, which drops them as the
  official evaluation silently did.
  """
  path = pathlib.Path(path)
  events = []
  for line_number, (filename, onset_text, offset_text, label) in _read_rows(
      path, ("filename", "onset", "offset", "event_labels")
  ):
    where = f"{path}:{line_number} (clip {filename})"
    if filename in CLASS_INDEX or "`" in filename:
      if legacy_annotations:
        continue
      raise InputError(
          f"{where}: filename {filename!r} is not '<id>_<start>_<end>': this looks like a copy of "
          "AVVP_eval_audio.csv from before the upstream correction of 2024-04-16 (two Speech rows of "
          "JfZEqeLZqWk_30_40 with a class in the filename column, a stray backtick after "
          "KvIjsmANkxI_10_20), which the official evaluation silently drops. Use the corrected files "
          "(the packaged default), or set --config.data.legacy_annotations=True to score as older papers "
          "did."
      )
    try:
      onset, offset = int(onset_text), int(offset_text)
    except ValueError:
      raise InputError(
          f"{where}: onset/offset {onset_text!r}/{offset_text!r} are not integer seconds; "
          "fix the row."
      ) from None
    if not 0 <= onset <= NUM_SECONDS or not 0 <= offset <= NUM_SECONDS:
      raise InputError(
          f"{where}: interval [{onset}, {offset}) lies outside the clip's 0..{NUM_SECONDS} "
          "seconds; fix the row."
      )
    if label not in CLASS_INDEX:
      raise InputError(
          f"{where}: unknown class name {label!r}; the 25 LLP classes are " f"{', '.join(CLASSES)}."
      )
    events.append(DenseEvent(filename, onset, offset, CLASS_INDEX[label], line_number))
  return events


@dataclasses.dataclass
class AnnotationReport:
  """Counts of the real files' quirks met while building dense labels (all tolerated, as officially)."""

  rows_outside_splits: int = 0  # dense rows of clips in no evaluated split: ignored
  labels_outside_weak: int = 0  # dense rows whose class is not in the clip's weak labels: kept
  empty_intervals: int = 0  # onset == offset: no second set
  inverted_intervals: int = 0  # onset > offset: no second set (the official slice is empty)

  def describe(self) -> str:
    return (
        f"{self.rows_outside_splits} dense rows of clips outside val/test ignored, "
        f"{self.labels_outside_weak} dense rows with a class outside the weak labels kept, "
        f"{self.empty_intervals} empty intervals (onset == offset), "
        f"{self.inverted_intervals} inverted intervals (onset > offset) set no second"
    )


@dataclasses.dataclass(frozen=True)
class Split:
  """The annotations of one split, in file order.

  Attributes:
    name: "train", "val" or "test".
    filenames: `<id>_<start>_<end>` per clip.
    weak_labels: `[N, C]` float32 video-level labels.
    audio_labels: `[N, T, C]` float32 dense audio labels, or None (train).
    visual_labels: `[N, T, C]` float32 dense visual labels, or None (train).
  """

  name: str
  filenames: tuple[str, ...]
  weak_labels: np.ndarray
  audio_labels: np.ndarray | None = None
  visual_labels: np.ndarray | None = None

  @property
  def clip_ids(self) -> tuple[str, ...]:
    return tuple(clip_id(f) for f in self.filenames)

  @property
  def audio_visual_labels(self) -> np.ndarray | None:
    """`[N, T, C]`: audio-visual events are where a class is both audible and visible."""
    if self.audio_labels is None:
      return None
    return self.audio_labels * self.visual_labels

  def __len__(self) -> int:
    return len(self.filenames)

  def head(self, n: int) -> Split:
    """The first `n` clips of the split (all of them when it has fewer), with their labels."""
    cut = lambda labels: None if labels is None else labels[:n]
    return Split(
        self.name,
        self.filenames[:n],
        self.weak_labels[:n],
        cut(self.audio_labels),
        cut(self.visual_labels),
    )


def dense_labels(
    filenames: tuple[str, ...],
    events: list[DenseEvent],
    report: AnnotationReport | None = None,
    weak_labels: np.ndarray | None = None,
) -> np.ndarray:
  """Dense `[N, T, C]` labels of `filenames` from dense events; events of other clips are ignored."""
  row = {f: i for i, f in enumerate(filenames)}
  labels = np.zeros((len(filenames), NUM_SECONDS, NUM_CLASSES), np.float32)
  for event in events:
    i = row.get(event.filename)
    if i is None:
      continue
    labels[i, event.onset : event.offset, event.class_index] = 1.0
    if report is not None:
      report.empty_intervals += event.onset == event.offset
      report.inverted_intervals += event.onset > event.offset
      if weak_labels is not None:
        report.labels_outside_weak += weak_labels[i, event.class_index] == 0
  return labels


@functools.lru_cache(maxsize=16)
def _load_split_cached(
    split: str, labels_dir: pathlib.Path, legacy_annotations: bool, mtimes: tuple[float, ...]
) -> tuple[Split, AnnotationReport]:
  del mtimes  # part of the cache key only
  filenames, weak = read_weak_labels(labels_dir / SPLIT_FILES[split])
  report = AnnotationReport()
  if split == "train":
    return Split(split, filenames, weak), report
  evaluated = set(read_weak_labels(labels_dir / SPLIT_FILES["val"])[0]) | set(
      read_weak_labels(labels_dir / SPLIT_FILES["test"])[0]
  )
  dense = {}
  for modality, name in DENSE_FILES.items():
    events = read_dense_events(labels_dir / name, legacy_annotations=legacy_annotations)
    report.rows_outside_splits += sum(e.filename not in evaluated for e in events)
    dense[modality] = dense_labels(filenames, events, report, weak)
  return Split(split, filenames, weak, dense["audio"], dense["visual"]), report


def load_split(
    split: str, labels_dir: str | pathlib.Path | None = None, *, legacy_annotations: bool = False
) -> tuple[Split, AnnotationReport]:
  """Loads one split's annotations (dense labels for val and test).

  Args:
    split: "train", "val" or "test".
    labels_dir: folder with the `AVVP_*.csv` files; None means the packaged real annotations.
    legacy_annotations: accept pre-2024-04-16 copies, dropping their broken rows as the official code did.

  Returns:
    The split, and the counts of tolerated quirks (rows ignored or kept as the official evaluation does).
  """
  if split not in SPLIT_FILES:
    raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
  directory = resolve_labels_dir(labels_dir).resolve()
  names = [SPLIT_FILES[s] for s in SPLITS] + list(DENSE_FILES.values())
  mtimes = tuple(
      (directory / n).stat().st_mtime if (directory / n).exists() else -1.0 for n in names
  )
  split_data, report = _load_split_cached(split, directory, legacy_annotations, mtimes)
  return split_data, dataclasses.replace(report)
