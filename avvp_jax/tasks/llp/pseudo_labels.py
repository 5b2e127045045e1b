"""Segment-level pseudo labels in VALOR's layout: read, written, and scored against dense labels.

VALOR (Lai, Chen and Wang, "Modality-Independent Teachers Meet Weakly-Supervised Audio-Visual Event
Parser", NeurIPS 2023, https://github.com/Franklin905/VALOR) releases per-second pseudo labels made by
CLAP (audio) and CLIP (visual), restricted to each clip's weak labels. LEAP trains with them. The released
`CLAP.zip` and `CLIP.zip` unpack to

    <root>/CLAP/segment_pseudo_labels/<clip id>.npy   audio,  [10, 25] int64, 0/1
    <root>/CLIP/segment_pseudo_labels/<clip id>.npy   visual, [10, 25] int64, 0/1

one file per clip of the whole dataset (train, val and test), named by the first 11 characters of the
clip's `filename`, rows in seconds and columns in the standard class order. `config.data.pseudo_labels`
is `<root>`. The video-level pseudo label of a clip is the maximum over its seconds.

Reading (`load_pseudo_labels`, `load_for_split`) checks every file and raises `InputError` with one line
naming it for a missing clip, an unreadable file, a wrong shape or a value other than 0 and 1. A positive
second of a class outside the clip's weak label is tolerated (a teacher filtered by the weak labels, as
VALOR's are, makes none; other teachers may): it is counted in `PseudoLabels.positives_outside_weak` and
logged as a warning, and `PseudoLabels.describe()` is the line a trainer logs.

Writing (`write_pseudo_labels`) produces the same layout (int64 0/1), never half a folder: see its
docstring. `launch/make_pseudo_labels.py` and the synthetic data writer use it; a folder made from
SYNTHETIC data carries `SYNTHETIC.txt` and loads with `PseudoLabels.synthetic` set.

Scoring (`quality`) gives the pseudo labels' segment-level precision, recall and F1 against dense labels,
pooled, and the official AVVP segment F1 (the figure UWAV's Table 3 reports for VALOR's labels on LLP:
audio 80.5, visual 61.7).

The trainer puts the rows of a batch's clips under `AUDIO_BATCH_KEY` / `VISUAL_BATCH_KEY` (`[B, T, C]`
float32; `avvp_jax.tasks.llp.batch_keys`); `avvp_jax.tasks.llp.losses` uses them when they are present. This module is
numpy only (`quality` imports the jitted metrics, hence JAX, when called; never TensorFlow).

Length: one file format (VALOR's layout): its reader, writer, value checks and quality report change
together when the format does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import uuid
from typing import Any, Mapping, Sequence

from absl import logging
import numpy as np

from avvp_jax.tasks.llp import annotations
from avvp_jax.tasks.llp import batch_keys
from avvp_jax.tasks.llp import synthetic as synthetic_lib
from avvp_jax.errors import InputError

# Batch keys of the segment-level pseudo labels, `[B, T, C]` float32 in {0, 1} (names for `batch_keys`' own).
AUDIO_BATCH_KEY = batch_keys.AUDIO_PSEUDO_LABEL
VISUAL_BATCH_KEY = batch_keys.VISUAL_PSEUDO_LABEL

# Sub-folders of `config.data.pseudo_labels`, as VALOR's archives unpack.
AUDIO_SUBDIR = "CLAP/segment_pseudo_labels"
VISUAL_SUBDIR = "CLIP/segment_pseudo_labels"
SUBDIRS = {"audio": AUDIO_SUBDIR, "visual": VISUAL_SUBDIR}

# Written by `write_pseudo_labels` into each label folder (and into a root it made as a whole): who wrote it,
# and one id per write, so a folder pair from two different writes is recognised.
STAMP_FILE = "avvp_jax_pseudo_labels.json"
MARKER_FILE = synthetic_lib.MARKER_FILE  # the synthetic data marker
FILE_DTYPE = np.int64  # VALOR's files
_PARTIAL_PREFIX = ".avvp_jax_pseudo_labels.partial-"  # a write in progress; never read
CACHE_PREFIX = (
    "pseudo_labels-"  # a stacked copy of checked labels in a cache folder (`_read_cached`)
)

_SHOW_AT_MOST = 5  # clip ids named in a message


@dataclasses.dataclass(frozen=True)
class PseudoLabels:
  """Segment-level pseudo labels of one split, in the split's file order.

  Attributes:
    clip_ids: `[N]` clip ids, the row order.
    audio: `[N, T, C]` float32 audio pseudo labels.
    visual: `[N, T, C]` float32 visual pseudo labels.
    positives_outside_weak: positive (clip, second, class) cells, both modalities together, of a class
      outside the clip's weak label; 0 when no weak labels were given to check against.
    clips_outside_weak: clips with at least one such cell.
    weak_labels_checked: whether weak labels were given (and the two counts mean something).
    synthetic: the folder says it was made from SYNTHETIC data (its `SYNTHETIC.txt` marker).
    source: the folder they were read from ("" when built in memory).
  """

  clip_ids: tuple[str, ...]
  audio: np.ndarray
  visual: np.ndarray
  positives_outside_weak: int = 0
  clips_outside_weak: int = 0
  weak_labels_checked: bool = False
  synthetic: bool = False
  source: str = ""

  def __len__(self) -> int:
    return len(self.clip_ids)

  @property
  def audio_video(self) -> np.ndarray:
    """`[N, C]` video-level audio pseudo labels: the maximum over seconds."""
    return self.audio.max(axis=1)

  @property
  def visual_video(self) -> np.ndarray:
    """`[N, C]` video-level visual pseudo labels: the maximum over seconds."""
    return self.visual.max(axis=1)

  def describe(self) -> str:
    """One line for a log, e.g. "pseudo labels: 10000 clips, 0 positives outside weak labels (from DIR)"."""
    kind = "SYNTHETIC pseudo labels" if self.synthetic else "pseudo labels"
    if self.weak_labels_checked:
      outside = f"{self.positives_outside_weak} positives outside weak labels"
      if self.positives_outside_weak:
        outside += f" (in {self.clips_outside_weak} clips)"
    else:
      outside = "weak labels not checked"
    where = f" (from {self.source})" if self.source else ""
    return f"{kind}: {len(self)} clips, {outside}{where}"

  def batch(self, index: np.ndarray) -> dict[str, np.ndarray]:
    """The batch entries of rows `index` (`[B]` or `[S, B]` int); rows of -1 (padding) get zeros."""
    index = np.asarray(index)
    valid = (index >= 0)[..., None, None]
    rows = np.where(index >= 0, index, 0)
    return {
        AUDIO_BATCH_KEY: np.where(valid, self.audio[rows], 0.0).astype(np.float32),
        VISUAL_BATCH_KEY: np.where(valid, self.visual[rows], 0.0).astype(np.float32),
    }


# --- reading --------------------------------------------------------------------------------------------


def resolve_dirs(root: str | pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
  """The audio and visual pseudo-label folders under `root`, checked to exist."""
  root = pathlib.Path(root).expanduser()
  if not root.is_dir():
    raise InputError(
        f"pseudo_labels {str(root)!r} is not a folder: point --config.data.pseudo_labels "
        f"at the folder where VALOR's CLAP.zip and CLIP.zip were unpacked (or one written by "
        "launch/make_pseudo_labels.py), or leave it empty."
    )
  dirs = (root / AUDIO_SUBDIR, root / VISUAL_SUBDIR)
  for path in dirs:
    if not path.is_dir():
      raise InputError(
          f"pseudo_labels folder {str(root)!r} has no {path.relative_to(root)}/: unpack "
          "VALOR's CLAP.zip (audio) and CLIP.zip (visual) into it, or make the folder with "
          "launch/make_pseudo_labels.py."
      )
  return dirs


def _read_stamp(folder: pathlib.Path) -> dict[str, Any] | None:
  path = folder / STAMP_FILE
  if not path.is_file():
    return None
  try:
    stamp = json.loads(path.read_text())
  except (OSError, ValueError) as error:
    raise InputError(
        f"pseudo-label stamp {str(path)!r} is not readable JSON ({error}): write the folder again "
        "with launch/make_pseudo_labels.py."
    ) from None
  return stamp if isinstance(stamp, dict) else None


def _read_one(path: pathlib.Path) -> np.ndarray:
  try:
    labels = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError) as error:
    raise InputError(
        f"pseudo-label file {str(path)!r} is not a readable .npy array ({error}): "
        "download and unpack VALOR's archive again."
    ) from None
  expected = (annotations.NUM_SECONDS, annotations.NUM_CLASSES)
  if labels.shape != expected:
    raise InputError(
        f"pseudo-label file {str(path)!r} has shape {labels.shape}, expected {expected} "
        "(seconds x classes): use VALOR's segment_pseudo_labels files."
    )
  if not (np.issubdtype(labels.dtype, np.number) or labels.dtype == np.bool_):
    raise InputError(
        f"pseudo-label file {str(path)!r} has dtype {labels.dtype}, expected 0/1 integers (VALOR's "
        "int64): use VALOR's segment_pseudo_labels files."
    )
  binary = (labels == 0) | (labels == 1)
  if not binary.all():
    second, cls = (int(i) for i in np.argwhere(~binary)[0])
    raise InputError(
        f"pseudo-label file {str(path)!r} holds {labels[second, cls].item()!r} at second {second}, class "
        f"{annotations.CLASSES[cls]} ({int((~binary).sum())} values other than 0 and 1): pseudo "
        "labels are 0/1 per second and class; threshold soft labels before saving them."
    )
  return labels.astype(np.float32)


def _read_modality(folder: pathlib.Path, clip_ids: Sequence[str], modality: str) -> np.ndarray:
  paths = [folder / f"{clip}.npy" for clip in clip_ids]
  missing = [clip for clip, path in zip(clip_ids, paths) if not path.is_file()]
  if missing:
    shown = ", ".join(missing[:_SHOW_AT_MOST]) + (", ..." if len(missing) > _SHOW_AT_MOST else "")
    raise InputError(
        f"{len(missing)} of {len(clip_ids)} clips have no {modality} pseudo labels in "
        f"{str(folder)!r} ({shown}): unpack the complete VALOR archive there, make them for every "
        "clip with launch/make_pseudo_labels.py, or leave config.data.pseudo_labels empty."
    )
  return (
      np.stack([_read_one(path) for path in paths])
      if paths
      else np.zeros((0, annotations.NUM_SECONDS, annotations.NUM_CLASSES), np.float32)
  )


def _files_key(folders: Sequence[pathlib.Path], clip_ids: Sequence[str]) -> str | None:
  """A digest of the label files' identities (inode, size, change times), read with one `stat` per file;
  None when a file is missing (the file-by-file read then names it)."""
  digest = hashlib.sha256()
  for folder in folders:
    digest.update(f"{folder.resolve()}\n".encode())
    for clip in clip_ids:
      try:
        info = os.stat(folder / f"{clip}.npy")
      except OSError:
        return None
      digest.update(
          f"{clip} {info.st_ino} {info.st_size} {info.st_mtime_ns} {info.st_ctime_ns}\n".encode()
      )
  return digest.hexdigest()


def _read_cached(
    cache_dir: pathlib.Path | None, folders: Sequence[pathlib.Path], clip_ids: Sequence[str]
) -> list[np.ndarray]:
  """The two modalities' `[N, T, C]` labels: from `cache_dir`'s stacked copy when the files are unchanged
  since it was written, else read file by file (`_read_modality`: every check) and the copy (re)written.

  The copy (`CACHE_PREFIX<digest of the folders and clip ids>.npz`, uint8 0/1) holds `_files_key` of the
  files it was read from; any file replaced, rewritten or touched since gives another key, so it is read
  again. A cache folder that cannot be written is skipped (logged).
  """
  key = _files_key(folders, clip_ids) if cache_dir is not None else None
  if key is None:
    return [_read_modality(f, clip_ids, m) for f, m in zip(folders, annotations.LABEL_MODALITIES)]
  name = hashlib.sha256("\n".join([*map(str, folders), *clip_ids]).encode()).hexdigest()[:24]
  path = pathlib.Path(cache_dir) / f"{CACHE_PREFIX}{name}.npz"
  try:
    with np.load(path, allow_pickle=False) as cached:
      if str(cached["key"]) == key:
        return [cached[m].astype(np.float32) for m in annotations.LABEL_MODALITIES]
  except (OSError, ValueError, KeyError):
    pass  # none yet, or unreadable: read the files
  labels = [_read_modality(f, clip_ids, m) for f, m in zip(folders, annotations.LABEL_MODALITIES)]
  temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(temporary, "wb") as f:
      np.savez(
          f,
          key=np.asarray(key),
          **{m: x.astype(np.uint8) for m, x in zip(annotations.LABEL_MODALITIES, labels)},
      )
    os.replace(temporary, path)
  except OSError as error:
    temporary.unlink(missing_ok=True)
    logging.warning(
        "Pseudo labels: no stacked copy written in %s (%s); files are read each start.",
        cache_dir,
        error,
    )
  return labels


def load_pseudo_labels(
    root: str | pathlib.Path,
    filenames: Sequence[str],
    weak_labels: np.ndarray | None = None,
    *,
    cache_dir: str | pathlib.Path | None = None,
) -> PseudoLabels:
  """Reads the pseudo labels of `filenames` (a split's `filename` column) from VALOR's folder `root`.

  Args:
    root: the folder holding `CLAP/segment_pseudo_labels/` and `CLIP/segment_pseudo_labels/`.
    filenames: `[N]` LLP filenames (or clip ids); row i of the result belongs to `filenames[i]`.
    weak_labels: optional `[N, C]` 0/1 weak labels of those clips. Positive seconds of a class outside a
      clip's weak label are then counted and logged as a warning (they are kept: the loss sees them).
    cache_dir: where a stacked copy of the checked labels is kept (the trainer's: its TFDS build folder),
      read instead of the files at the next start while the files are unchanged (`_read_cached`); None:
      the files are read each time.

  Returns:
    `PseudoLabels` with `[N, T, C]` float32 audio and visual arrays and the counts.

  Raises:
    InputError: a folder or a clip's file is missing, unreadable, of the wrong shape or not 0/1; the two
      folders come from two different writes of `write_pseudo_labels` (one was interrupted); `weak_labels`
      has the wrong shape.
  """
  audio_dir, visual_dir = resolve_dirs(root)
  clip_ids = tuple(annotations.clip_id(name) for name in filenames)
  stamps = [_read_stamp(audio_dir), _read_stamp(visual_dir)]
  if all(stamps) and stamps[0].get("write_id") != stamps[1].get("write_id"):
    raise InputError(
        f"pseudo_labels folder {str(root)!r} holds audio and visual labels from two different writes "
        "(one was interrupted): write the folder again with launch/make_pseudo_labels.py."
    )
  labels = dict(
      zip(
          annotations.LABEL_MODALITIES,
          _read_cached(
              None if cache_dir is None else pathlib.Path(cache_dir),
              [audio_dir, visual_dir],
              clip_ids,
          ),
      )
  )
  synthetic = any(
      (folder / MARKER_FILE).is_file()
      for folder in (pathlib.Path(root).expanduser(), audio_dir, visual_dir)
  )
  counts = {}
  if weak_labels is not None:
    weak = np.asarray(weak_labels)
    if weak.shape != (len(clip_ids), annotations.NUM_CLASSES):
      raise InputError(
          f"weak_labels have shape {weak.shape}, expected ({len(clip_ids)}, "
          f"{annotations.NUM_CLASSES}) for the {len(clip_ids)} clips asked for: pass the split's weak "
          "labels in the order of its filenames."
      )
    outside = {m: (labels[m] > 0) & (weak[:, None, :] == 0) for m in annotations.LABEL_MODALITIES}
    per_clip = sum(outside[m].sum(axis=(1, 2)) for m in annotations.LABEL_MODALITIES)
    counts = dict(
        positives_outside_weak=int(per_clip.sum()),
        clips_outside_weak=int((per_clip > 0).sum()),
        weak_labels_checked=True,
    )
    if counts["positives_outside_weak"]:
      shown = ", ".join(clip_ids[i] for i in np.flatnonzero(per_clip)[:_SHOW_AT_MOST])
      logging.warning(
          "Pseudo labels in %s: %d positive seconds (audio %d, visual %d) of a class outside the clip's "
          "weak label, in %d of %d clips (e.g. %s); kept as given.",
          root,
          counts["positives_outside_weak"],
          int(outside["audio"].sum()),
          int(outside["visual"].sum()),
          counts["clips_outside_weak"],
          len(clip_ids),
          shown,
      )
  return PseudoLabels(
      clip_ids=clip_ids,
      audio=labels["audio"],
      visual=labels["visual"],
      synthetic=synthetic,
      source=str(root),
      **counts,
  )


def load_for_split(root: str | pathlib.Path, split: annotations.Split) -> PseudoLabels:
  """`load_pseudo_labels` for the clips of an `annotations.Split`, in its file order, checked against its weak
  labels."""
  return load_pseudo_labels(root, split.filenames, split.weak_labels)


# --- writing --------------------------------------------------------------------------------------------


def _binary_array(values: Any, name: str, num_clips: int) -> np.ndarray:
  """`values` as `[N, T, C]` int64 0/1, or InputError naming `name`."""
  try:
    array = np.asarray(values)
  except (TypeError, ValueError) as error:
    raise InputError(
        f"{name} could not be read as an array ({error}): pass [N, T, C] 0/1 labels."
    ) from None
  expected = (num_clips, annotations.NUM_SECONDS, annotations.NUM_CLASSES)
  if array.shape != expected:
    raise InputError(
        f"{name} has shape {array.shape}, expected {expected} (one [seconds, classes] row per clip "
        "id): pass one label array per clip."
    )
  if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
    raise InputError(f"{name} has dtype {array.dtype}: pass 0/1 numbers or booleans.")
  binary = (array == 0) | (array == 1)
  if not binary.all():
    clip, second, cls = (int(i) for i in np.argwhere(~binary)[0])
    raise InputError(
        f"{name} holds {array[clip, second, cls].item()!r} (clip row {clip}, second {second}, class "
        f"{annotations.CLASSES[cls]}): pseudo labels are 0/1; threshold probabilities first."
    )
  return array.astype(FILE_DTYPE)


def _checked_clip_ids(clip_ids: Sequence[str]) -> list[str]:
  if isinstance(clip_ids, str):
    raise InputError(
        "clip_ids is one string: pass a sequence of clip ids (or filenames), one per label row."
    )
  ids = [annotations.clip_id(str(name)) for name in clip_ids]
  if not ids:
    raise InputError("write_pseudo_labels got no clips: pass at least one clip id with its labels.")
  bad = [clip for clip in ids if not clip or clip.startswith(".") or "/" in clip or "\\" in clip]
  if bad:
    raise InputError(
        f"clip id {bad[0]!r} cannot name a file: pass LLP clip ids or filenames such as "
        "'BjCEufrlXm4_20_30'."
    )
  seen, repeated = set(), []
  for clip in ids:
    if clip in seen:
      repeated.append(clip)
    seen.add(clip)
  if repeated:
    raise InputError(
        f"clip ids repeat ({', '.join(sorted(set(repeated))[:_SHOW_AT_MOST])}): each clip's 11-character "
        "id names one file, so give each clip once."
    )
  return ids


def _write_text(path: pathlib.Path, text: str) -> None:
  """Writes `path` whole or not at all (a temporary file renamed over it)."""
  temporary = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
  temporary.write_text(text)
  os.replace(temporary, path)


def _fill_label_folders(
    base: pathlib.Path,
    ids: Sequence[str],
    arrays: Mapping[str, np.ndarray],
    write_id: str,
    marker_text: str | None,
) -> None:
  """Writes `base/<modality subdir>/` for both modalities, each with its stamp (and marker)."""
  for modality in annotations.LABEL_MODALITIES:
    folder = base / SUBDIRS[modality]
    folder.mkdir(parents=True)
    for clip, labels in zip(ids, arrays[modality]):
      np.save(folder / f"{clip}.npy", labels)
    stamp = {
        "written_by": "avvp_jax.tasks.llp.pseudo_labels.write_pseudo_labels",
        "write_id": write_id,
        "modality": modality,
        "num_clips": len(ids),
        "shape": list(arrays[modality].shape[1:]),
        "dtype": np.dtype(FILE_DTYPE).name,
        "synthetic": marker_text is not None,
    }
    (folder / STAMP_FILE).write_text(json.dumps(stamp, indent=2) + "\n")
    if marker_text is not None:
      (folder / MARKER_FILE).write_text(marker_text)


def _entries(folder: pathlib.Path) -> list[str]:
  return sorted(name for name in os.listdir(folder) if not name.startswith(_PARTIAL_PREFIX))


def replaceable(root: str | os.PathLike[str]) -> bool:
  """Whether `write_pseudo_labels(root, ...)` may replace `root` as a whole: it is absent, empty, or was made
  as a whole by `write_pseudo_labels` and holds nothing else since."""
  root = pathlib.Path(root).expanduser()
  if not root.exists():
    return True
  if not root.is_dir():
    return False
  stamp = _read_stamp(root)
  entries = set(_entries(root))
  return not entries or (bool(stamp) and entries <= set(stamp.get("entries", ())))


def write_pseudo_labels(
    root: str | os.PathLike[str],
    clip_ids: Sequence[str],
    audio: Any,
    visual: Any,
    *,
    marker_text: str | None = None,
    extra_files: Mapping[str, str] | None = None,
    array_files: Mapping[str, np.ndarray] | None = None,
) -> pathlib.Path:
  """Writes segment pseudo labels in VALOR's layout, atomically: `load_pseudo_labels(root, ...)` reads them.

  Files: `root/CLAP/segment_pseudo_labels/<id>.npy` (audio) and `root/CLIP/segment_pseudo_labels/<id>.npy`
  (visual), `[10, 25]` int64 0/1 each (VALOR's dtype), plus a stamp `avvp_jax_pseudo_labels.json` in each of
  the two folders; with `marker_text`, `root/SYNTHETIC.txt` (and a copy in each label folder) holding it.

  Never half-written:
    * `root` absent or empty: the whole tree is written into a temporary sibling folder, then renamed to
      `root` (one rename).
    * `root` written as a whole by an earlier call (its stamp lists everything in it): replaced the same way
      (the new tree is complete before the old one is moved aside and deleted).
    * any other folder (e.g. a features folder, so that the labels sit beside `CLAP/features/`): the two
      label folders are written complete inside `root` under a hidden temporary name and renamed into place;
      one from a previous call of this function is replaced, one from anyone else (VALOR's) is refused.
      Between the two renames a reader sees the folders of two writes and refuses them (the stamps differ).
      The marker is written last; an existing different `SYNTHETIC.txt` (a features folder's) is kept and the
      new text appended to it.

  Args:
    root: the pseudo-label folder (`config.data.pseudo_labels`).
    clip_ids: `[N]` clip ids or LLP filenames (their first 11 characters name the files), unique.
    audio, visual: `[N, 10, 25]` 0/1 (bool, integer or float) labels of those clips.
    marker_text: when given, the folder is SYNTHETIC: the text of its `SYNTHETIC.txt`.
    extra_files: {file name: text} written at `root` beside the labels (e.g. `quality.json`).
    array_files: {relative path: array} saved as .npy under `root` with the labels (a UWAV teacher's logits and
      thresholds, `avvp_jax.tasks.llp.uwav.array_files`); only when `root` is written as a whole.

  Returns:
    The folder written.

  Raises:
    InputError: bad ids or labels (nothing is written), or `root` holds label folders this function did not
      write, or is a file.
  """
  root = pathlib.Path(root).expanduser().absolute()
  ids = _checked_clip_ids(clip_ids)
  arrays = {
      "audio": _binary_array(audio, "audio", len(ids)),
      "visual": _binary_array(visual, "visual", len(ids)),
  }
  if marker_text is not None and not isinstance(marker_text, str):
    raise InputError(
        f"marker_text must be a string (the text of {MARKER_FILE}), got {type(marker_text).__name__}."
    )
  extra_files = dict(extra_files or {})
  reserved = {MARKER_FILE, STAMP_FILE, "CLAP", "CLIP"}
  bad_names = [
      name
      for name in extra_files
      if name in reserved or os.path.basename(name) != name or name.startswith(".") or not name
  ]
  if bad_names:
    raise InputError(
        f"extra_files name {bad_names[0]!r} is not a plain file name beside the labels: use e.g. "
        "'quality.json'."
    )
  if root.exists() and not root.is_dir():
    raise InputError(f"pseudo-label folder {str(root)!r} is a file: pick a folder path.")
  write_id = uuid.uuid4().hex
  array_files = dict(array_files or {})
  bad_paths = [
      name
      for name in array_files
      if not name.endswith(".npy")
      or name.startswith(("/", "."))
      or ".." in pathlib.PurePosixPath(name).parts
      or pathlib.PurePosixPath(name).parts[0] in reserved
  ]
  if bad_paths:
    raise InputError(
        f"array_files path {bad_paths[0]!r} is not a relative .npy path outside the label folders: use e.g. "
        "'UWAV/a_classwise_threhsolds.npy'."
    )
  if replaceable(root):
    _write_whole_root(root, ids, arrays, write_id, marker_text, extra_files, array_files)
  elif array_files:
    raise InputError(
        f"{str(root)!r} holds other files: write the teacher's logits and thresholds into a new or empty folder."
    )
  else:
    _write_into_folder(root, ids, arrays, write_id, marker_text, extra_files)
  logging.info(
      "Wrote %s pseudo labels of %d clips to %s.",
      "SYNTHETIC" if marker_text is not None else "segment",
      len(ids),
      root,
  )
  return root


def _write_whole_root(
    root: pathlib.Path, ids, arrays, write_id, marker_text, extra_files, array_files
) -> None:
  root.parent.mkdir(parents=True, exist_ok=True)
  partial = root.with_name(
      f".{root.name}.partial-{write_id[:12]}"
  )  # mkdir, unlike mkdtemp, keeps the umask's mode
  partial.mkdir()
  old = None
  try:
    _fill_label_folders(partial, ids, arrays, write_id, marker_text)
    for name, array in array_files.items():
      (partial / name).parent.mkdir(parents=True, exist_ok=True)
      np.save(partial / name, array)
    top = sorted({pathlib.PurePosixPath(name).parts[0] for name in array_files})
    entries = ["CLAP", "CLIP", STAMP_FILE, *extra_files, *top] + (
        [MARKER_FILE] if marker_text is not None else []
    )
    for name, text in extra_files.items():
      (partial / name).write_text(text)
    if marker_text is not None:
      (partial / MARKER_FILE).write_text(marker_text)
    stamp = {
        "written_by": "avvp_jax.tasks.llp.pseudo_labels.write_pseudo_labels",
        "write_id": write_id,
        "num_clips": len(ids),
        "entries": sorted(entries),
    }
    (partial / STAMP_FILE).write_text(json.dumps(stamp, indent=2) + "\n")
    if root.exists() and _entries(root):  # an earlier write of ours: move it aside, then delete it
      old = root.with_name(f".{root.name}.old-{write_id[:8]}")
      os.rename(root, old)
    elif root.exists():
      shutil.rmtree(root)  # empty, or only abandoned partial writes
    os.rename(partial, root)
  except BaseException:
    if old is not None and not root.exists():
      os.rename(old, root)  # put the earlier write back
      old = None
    raise
  finally:
    shutil.rmtree(partial, ignore_errors=True)
    if old is not None:
      shutil.rmtree(old, ignore_errors=True)


def _write_into_folder(root: pathlib.Path, ids, arrays, write_id, marker_text, extra_files) -> None:
  for modality in annotations.LABEL_MODALITIES:
    target = root / SUBDIRS[modality]
    if target.is_dir() and os.listdir(target) and _read_stamp(target) is None:
      raise InputError(
          f"{str(target)!r} already holds pseudo labels that avvp_jax did not write (VALOR's?): "
          "write to another folder, or remove them first."
      )
    if target.exists() and not target.is_dir():
      raise InputError(
          f"{str(target)!r} is a file: remove it, or write the pseudo labels to another folder."
      )
  partial = root / f"{_PARTIAL_PREFIX}{write_id[:12]}"
  partial.mkdir()
  try:
    _fill_label_folders(partial / "new", ids, arrays, write_id, marker_text)
    for modality in annotations.LABEL_MODALITIES:
      target = root / SUBDIRS[modality]
      target.parent.mkdir(parents=True, exist_ok=True)
      if target.exists():
        os.rename(target, partial / f"old-{modality}")
      os.rename(partial / "new" / SUBDIRS[modality], target)
    for name, text in extra_files.items():
      _write_text(root / name, text)
    if marker_text is not None:
      marker = root / MARKER_FILE
      existing = marker.read_text() if marker.is_file() else ""
      if marker_text not in existing:
        _write_text(marker, existing + ("\n" if existing else "") + marker_text)
  finally:
    shutil.rmtree(partial, ignore_errors=True)


# --- quality against dense labels -----------------------------------------------------------------------


def _ratio(numerator: float, denominator: float, empty: bool) -> float:
  if denominator > 0:
    return 100.0 * numerator / denominator
  return 100.0 if empty else 0.0


def quality(
    audio: Any, visual: Any, true_audio: Any, true_visual: Any, mask: Any = None
) -> dict[str, dict[str, float]]:
  """How good segment pseudo labels are against dense labels, per modality, in percent.

  Two views of the same labels:
    * "precision", "recall", "f1": pooled over every (clip, second, class) cell of the clips counted:
      precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2 TP / (2 TP + FP + FN). A 0/0 ratio is
      100 when nothing is predicted and nothing is true, else 0.
    * "segment_f1": the official AVVP segment-level F1 of the modality (`metrics.parsing_scores(...)
      ["segment/audio"]` / `["segment/visual"]`: F1 per clip over the classes present in the labels or the
      truth, averaged over clips; a clip with nothing in either counts 100). The figure the papers report
      and UWAV (CVPR 2025, Table 3) gives for VALOR's pseudo labels on LLP: audio 80.5, visual 61.7.

  Args:
    audio, visual: `[N, T, C]` 0/1 pseudo labels (numpy, bool / int / float).
    true_audio, true_visual: `[N, T, C]` 0/1 dense labels.
    mask: optional `[N]`; clips where it is 0 are left out.

  Returns:
    {"audio": {"precision", "recall", "f1", "segment_f1"}, "visual": {...}}, Python floats.

  Raises:
    InputError: shapes that differ or are not `[N, T, C]`, values other than 0 and 1, a mask of the wrong
      shape or one that selects no clip.
  """
  named = {"audio": audio, "visual": visual, "true_audio": true_audio, "true_visual": true_visual}
  arrays = {name: np.asarray(value) for name, value in named.items()}
  shapes = {name: array.shape for name, array in arrays.items()}
  if len(set(shapes.values())) != 1 or arrays["audio"].ndim != 3:
    raise InputError(
        f"quality got shapes {shapes}: pass [N, T, C] pseudo labels and dense labels of the same "
        "clips."
    )
  for name, array in arrays.items():
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_) or not np.all(
        (array == 0) | (array == 1)
    ):
      raise InputError(
          f"quality got {name} with values other than 0 and 1: pass 0/1 labels (threshold "
          "probabilities first)."
      )
  num_clips = arrays["audio"].shape[0]
  keep = np.ones(num_clips, bool) if mask is None else np.asarray(mask)
  if keep.shape != (num_clips,):
    raise InputError(
        f"quality got a mask of shape {keep.shape} for {num_clips} clips: pass a [N] mask."
    )
  keep = keep != 0
  if not keep.any():
    raise InputError(
        "quality got no clip to score (empty labels or a mask of zeros): pass at least one clip."
    )
  from avvp_jax.tasks.llp import metrics  # pylint: disable=g-import-not-at-top  (JAX only when scoring: the module stays numpy)

  official = metrics.parsing_scores(
      *(arrays[name].astype(np.float32) for name in named), mask=keep.astype(np.float32)
  )
  out = {}
  for modality in annotations.LABEL_MODALITIES:
    pred = arrays[modality][keep] > 0
    true = arrays[f"true_{modality}"][keep] > 0
    tp, fp, fn = (float(np.sum(x)) for x in (pred & true, pred & ~true, ~pred & true))
    empty = tp + fp + fn == 0
    out[modality] = {
        "precision": _ratio(tp, tp + fp, empty),
        "recall": _ratio(tp, tp + fn, empty),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn, empty),
        "segment_f1": float(official[f"segment/{modality}"]),
    }
  return out
