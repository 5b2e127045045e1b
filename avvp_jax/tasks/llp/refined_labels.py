"""Modality-level video labels (MA's refined labels): read, written, checked and handed to training batches.

MA (Wu and Yang, "Exploring Heterogeneous Clues for Weakly-Supervised Audio-Visual Video Parsing", CVPR 2021,
github.com/Yu-Wu/Modaily-Aware-Audio-Visual-Video-Parsing) decides, for every weak label of every training clip,
whether it belongs to the audio track, the visual track or both, and retrains on the result. Its stage 2
writes `need_to_change.pkl`, which its stage 3 loader reads:

    pickle [visual, audio]: each 25 lists (standard class order) of rows of the training label file
    (`AVVP_train.csv`, 0-based) whose label of that class is dropped from that modality

The official code appends each row as a 0-d torch int64 tensor (a view into its batch's index tensor);
CVCM's release (`../shared/refined_labels/need_to_change_cvcm.pkl`) is such a file. `write_ma_pickle` writes
plain ints, which the official loader's `idx in need_to_change_v[c]` reads the same way.

`read_ma_pickle` reads both without torch and without running code: a restricted unpickler resolves only
torch's tensor rebuilder (`torch._utils._rebuild_tensor_v2`) and storage loader (`torch.storage.
_load_from_bytes`), replaced by numpy readers of torch's legacy storage bytes, and `collections.OrderedDict`;
any other global (`os.system`, a numpy function, ...) is refused with one line naming the file, before it is
looked up.

Our own format, `refined_labels.npz` (written by `launch/refine_labels.py` beside the pickle): `filenames`
[N] str (the training clips), `weak`, `audio`, `visual` [N, 25] uint8 (the weak labels and the modality-level
labels: the weak label less the dropped classes), and `partner` [N] int64 (the stage's exchange partners; -1
when unknown). Being keyed by filename it fits any clip order; MA's rows fit only the list they index.

`load_refined_labels(path, filenames, weak_labels)` gives a `RefinedLabels` of a run's training clips from
either format (a folder holding `refined_labels.npz` or `need_to_change.pkl`, or either file), checked:
a row outside the training split, or a dropped label that is not among the clip's weak labels (a file made
for another clip list), is one `InputError` naming the file. Its `batch(index)` is what `Streams.train_extras`
adds to every training batch (`batch_keys.MODALITY_LABELS`); the "ma" loss reads them.

numpy only (no JAX, no TensorFlow, no torch).
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pathlib
import pickle
import struct
from typing import Any, Sequence

import numpy as np

from avvp_jax.errors import InputError
from avvp_jax.tasks.llp import annotations
from avvp_jax.tasks.llp import batch_keys
from avvp_jax.tasks.llp import synthetic as synthetic_lib

# `config.data.refined_labels` of a config that cannot train without them (configs/ma.py:retrain): the run
# stops with a line asking for the folder.
REQUIRED = "<required>"
NPZ_FILE = "refined_labels.npz"
MA_FILE = "need_to_change.pkl"  # MA's name (its stage 3 loader opens exactly this file)
REPORT_FILE = "refine_report.json"
MODALITIES = ("visual", "audio")  # MA's pickle order

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch's legacy serialization magic number
_STORAGE_DTYPES = {  # torch storage classes of integer tensors -> numpy dtypes (little-endian)
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
}
_SHOW_AT_MOST = 3


# --- the labels -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RefinedLabels:
  """Modality-level video labels of training clips, in row order.

  Attributes:
    filenames: `[N]` the clips' filenames (`<id>_<start>_<end>`).
    weak: `[N, C]` float32 0/1 weak labels.
    audio: `[N, C]` float32 0/1 audio labels (within `weak`).
    visual: `[N, C]` float32 0/1 visual labels (within `weak`).
    partner: `[N]` int64 the exchange partner row of each clip (-1: unknown, e.g. read from MA's pickle).
    source: the file they were read from ("" when built in memory).
    synthetic: made from SYNTHETIC data (the folder's marker).
  """

  filenames: tuple[str, ...]
  weak: np.ndarray
  audio: np.ndarray
  visual: np.ndarray
  partner: np.ndarray | None = None
  source: str = ""
  synthetic: bool = False

  def __len__(self) -> int:
    return len(self.filenames)

  @property
  def dropped(self) -> dict[str, np.ndarray]:
    """{modality: `[N, C]` bool}: the weak labels dropped from that modality."""
    return {
        "audio": (self.weak > 0) & (self.audio == 0),
        "visual": (self.weak > 0) & (self.visual == 0),
    }

  def describe(self) -> str:
    """One log line, e.g. "refined labels: 10000 clips, 3509 visual and 1583 audio labels dropped (from F)"."""
    dropped = self.dropped
    kind = "SYNTHETIC refined labels" if self.synthetic else "refined labels"
    where = f" (from {self.source})" if self.source else ""
    return (
        f"{kind}: {len(self)} clips, {int(dropped['visual'].sum())} visual and "
        f"{int(dropped['audio'].sum())} audio labels dropped of {int(self.weak.sum())} weak labels{where}"
    )

  def batch(self, index: np.ndarray) -> dict[str, np.ndarray]:
    """The batch entries of rows `index` (`[B]` or `[S, B]` int); rows of -1 (padding) get zeros."""
    index = np.asarray(index)
    valid = (index >= 0)[..., None]
    rows = np.where(index >= 0, index, 0)
    return {
        batch_keys.AUDIO_MODALITY_LABEL: np.where(valid, self.audio[rows], 0.0).astype(np.float32),
        batch_keys.VISUAL_MODALITY_LABEL: np.where(valid, self.visual[rows], 0.0).astype(
            np.float32
        ),
    }


def from_drops(
    filenames: Sequence[str],
    weak: np.ndarray,
    drop_audio: np.ndarray,
    drop_visual: np.ndarray,
    partner: np.ndarray | None = None,
    **kwargs: Any,
) -> RefinedLabels:
  """`RefinedLabels` from weak labels `[N, C]` and the dropped labels `[N, C]` of each modality."""
  weak = (np.asarray(weak) > 0).astype(np.float32)
  return RefinedLabels(
      filenames=tuple(filenames),
      weak=weak,
      audio=weak * (1.0 - (np.asarray(drop_audio) > 0)),
      visual=weak * (1.0 - (np.asarray(drop_visual) > 0)),
      partner=None if partner is None else np.asarray(partner, np.int64),
      **kwargs,
  )


# --- MA's pickle, without torch -----------------------------------------------------------------------


def _refuse(path: str, what: str) -> InputError:
  return InputError(
      f"refined-label file {path!r} asks its unpickler for {what}, which MA's need_to_change.pkl never needs "
      "(only integers and torch's integer tensors): refused, nothing was run; pass a file in MA's layout."
  )


def _load_legacy_storage(data: bytes, path: str) -> np.ndarray:
  """The elements of a torch storage saved in torch's legacy format (`torch.save(storage,
  _use_new_zipfile_serialization=False)`, what a pickled tensor's storage holds), as a numpy array.
  """
  stream = io.BytesIO(data)
  found: dict[str, Any] = {}

  class StorageUnpickler(pickle.Unpickler):

    def find_class(self, module: str, name: str) -> Any:
      if module == "torch" and name in _STORAGE_DTYPES:
        return name
      raise _refuse(path, f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
      if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
        raise InputError(
            f"refined-label file {path!r} holds a tensor storage of an unknown kind: pass a file in MA's "
            "layout."
        )
      found["dtype"], found["key"] = _STORAGE_DTYPES[pid[1]], str(pid[2])
      return found["key"]

  try:
    magic = StorageUnpickler(stream).load()
    if magic != _LEGACY_MAGIC:
      raise ValueError("not torch's legacy format")
    StorageUnpickler(stream).load()  # protocol version
    StorageUnpickler(stream).load()  # sys info
    key = StorageUnpickler(stream).load()
    keys = StorageUnpickler(stream).load()
    if keys != [key] or "dtype" not in found:
      raise ValueError("not one storage")
    (count,) = struct.unpack("<q", stream.read(8))
    dtype = np.dtype(found["dtype"])
    raw = stream.read(count * dtype.itemsize)
    if count < 0 or len(raw) != count * dtype.itemsize:
      raise ValueError("truncated")
  except InputError:
    raise
  except Exception as error:  # pylint: disable=broad-except  (any malformed byte string)
    raise InputError(
        f"refined-label file {path!r} holds a tensor storage this reader cannot parse ({error}): pass a file "
        "in MA's layout."
    ) from None
  return np.frombuffer(raw, dtype).astype(np.int64)


def _rebuild_tensor(storage: Any, offset: int, size: Any, stride: Any, *rest: Any) -> np.ndarray:
  """torch's `_rebuild_tensor_v2` for an integer storage: the strided view as a numpy array."""
  del rest  # requires_grad, backward hooks (and metadata)
  size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
  if not size:
    return storage[int(offset)]
  return np.lib.stride_tricks.as_strided(
      storage[int(offset) :], size, tuple(s * storage.itemsize for s in stride)
  ).copy()


def read_ma_pickle(path: str | os.PathLike[str]) -> tuple[list[list[int]], list[list[int]]]:
  """The (visual, audio) lists of MA's `need_to_change.pkl` at `path`: per class, the dropped rows as ints.

  Reads plain ints and 0-d torch integer tensors alike, without torch and without running code.

  Raises:
    InputError: a missing or unreadable file, a refused global, or content other than two lists of 25 lists
      of integers (one line naming the file).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise InputError(
        f"refined-label file {path!r} does not exist: pass MA's need_to_change.pkl or a folder written by "
        "launch/refine_labels.py."
    )

  class MAUnpickler(pickle.Unpickler):

    def find_class(self, module: str, name: str) -> Any:
      if (module, name) in (
          ("torch._utils", "_rebuild_tensor_v2"),
          ("torch._utils", "_rebuild_tensor"),
      ):
        return _rebuild_tensor
      if (module, name) == ("torch.storage", "_load_from_bytes"):
        return lambda data: _load_legacy_storage(data, path)
      if (module, name) == ("collections", "OrderedDict"):
        return collections.OrderedDict
      raise _refuse(path, f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
      raise _refuse(path, f"a persistent object {str(pid)[:40]}")

  try:
    with open(path, "rb") as f:
      loaded = MAUnpickler(f).load()
  except InputError:
    raise
  except Exception as error:  # pylint: disable=broad-except  (pickle raises many types for a bad file)
    raise InputError(
        f"refined-label file {path!r} is not a readable pickle ({type(error).__name__}: {error}): pass MA's "
        "need_to_change.pkl."
    ) from None
  num_classes = annotations.NUM_CLASSES
  if not (
      isinstance(loaded, (list, tuple))
      and len(loaded) == 2
      and all(isinstance(m, (list, tuple)) and len(m) == num_classes for m in loaded)
  ):
    raise InputError(
        f"refined-label file {path!r} is not in MA's layout: expected [visual, audio], each {num_classes} "
        "lists of training rows (MA's need_to_change.pkl)."
    )
  out: tuple[list[list[int]], list[list[int]]] = ([], [])
  for modality, lists in zip(MODALITIES, loaded):
    for c, rows in enumerate(lists):
      values = []
      for row in rows if isinstance(rows, (list, tuple)) else [None]:
        if isinstance(row, np.ndarray) and row.ndim == 0:
          row = row.item()
        if isinstance(row, np.integer):
          row = int(row)
        if not isinstance(row, int) or isinstance(row, bool):
          raise InputError(
              f"refined-label file {path!r} holds {type(row).__name__} among the {modality} rows of "
              f"{annotations.CLASSES[c]}: MA's layout has integer rows only."
          )
        values.append(row)
      out[MODALITIES.index(modality)].append(values)
  return out


def drops_from_ma_lists(
    lists: tuple[Sequence[Sequence[int]], Sequence[Sequence[int]]],
    weak: np.ndarray,
    path: str,
) -> dict[str, np.ndarray]:
  """{modality: `[N, C]` bool} dropped labels of MA's (visual, audio) lists against the `[N, C]` weak labels
  of the training clips the rows index.

  Raises:
    InputError: a row outside [0, N), or a dropped label that is not among the row's weak labels (the file
      was made for another clip list): one line naming the file.
  """
  weak = np.asarray(weak) > 0
  num_clips = len(weak)
  drops = {}
  for modality, per_class in zip(MODALITIES, lists):
    dropped = np.zeros(weak.shape, bool)
    for c, rows in enumerate(per_class):
      rows = np.asarray(list(rows), np.int64)
      outside = rows[(rows < 0) | (rows >= num_clips)]
      if outside.size:
        raise InputError(
            f"refined-label file {path!r} drops the {modality} {annotations.CLASSES[c]} label of row "
            f"{int(outside[0])}, outside the {num_clips} training clips ({outside.size} such rows of that "
            "class): the file was made for another clip list; pass the one made for this training split."
        )
      dropped[rows, c] = True
    stray = np.argwhere(dropped & ~weak)
    if stray.size:
      row, c = (int(i) for i in stray[0])
      raise InputError(
          f"refined-label file {path!r} drops the {modality} {annotations.CLASSES[c]} label of row {row}, "
          f"which has no such weak label ({len(stray)} such rows): the file was made for another clip list; "
          "pass the one made for this training split."
      )
    drops[modality] = dropped
  return drops


def write_ma_pickle(
    path: str | os.PathLike[str], drop_audio: np.ndarray, drop_visual: np.ndarray
) -> None:
  """Writes MA's `need_to_change.pkl` layout from `[N, C]` dropped labels: [visual, audio], each C lists of
  increasing rows as plain ints (the official loaders read it; no torch needed)."""

  def lists(dropped: np.ndarray) -> list[list[int]]:
    dropped = np.asarray(dropped) > 0
    return [[int(r) for r in np.flatnonzero(dropped[:, c])] for c in range(dropped.shape[1])]

  with open(path, "wb") as f:
    pickle.dump([lists(drop_visual), lists(drop_audio)], f, protocol=4)


# --- our format ---------------------------------------------------------------------------------------


def write_npz(path: str | os.PathLike[str], labels: RefinedLabels) -> None:
  """Writes `refined_labels.npz` (module docstring) of `labels`."""
  partner = (
      np.full(len(labels), -1, np.int64)
      if labels.partner is None
      else labels.partner.astype(np.int64)
  )
  with open(path, "wb") as f:
    np.savez(
        f,
        filenames=np.asarray(labels.filenames, dtype=str),
        weak=labels.weak.astype(np.uint8),
        audio=labels.audio.astype(np.uint8),
        visual=labels.visual.astype(np.uint8),
        partner=partner,
    )


def read_npz(path: str | os.PathLike[str]) -> RefinedLabels:
  """The `RefinedLabels` of a `refined_labels.npz` (checked: shapes, 0/1, modality labels within the weak)."""
  path = os.fspath(path)
  try:
    with np.load(path, allow_pickle=False) as data:
      arrays = {key: data[key] for key in ("filenames", "weak", "audio", "visual", "partner")}
  except (OSError, ValueError, KeyError, EOFError) as error:
    raise InputError(
        f"refined-label file {path!r} is not a readable refined_labels.npz ({error}): write it with "
        "launch/refine_labels.py."
    ) from None
  num = len(arrays["filenames"])
  shape = (num, annotations.NUM_CLASSES)
  for key in ("weak", "audio", "visual"):
    value = arrays[key]
    if value.shape != shape or not np.isin(value, (0, 1)).all():
      raise InputError(
          f"refined-label file {path!r} has {key} of shape {value.shape} (or values other than 0/1), "
          f"expected 0/1 {shape}: write it with launch/refine_labels.py."
      )
  for key in ("audio", "visual"):
    if (arrays[key] > arrays["weak"]).any():
      raise InputError(
          f"refined-label file {path!r} has {key} labels outside the weak labels: refined labels only drop "
          "weak labels; write it with launch/refine_labels.py."
      )
  marker = pathlib.Path(path).parent / synthetic_lib.MARKER_FILE
  return RefinedLabels(
      filenames=tuple(str(f) for f in arrays["filenames"]),
      weak=arrays["weak"].astype(np.float32),
      audio=arrays["audio"].astype(np.float32),
      visual=arrays["visual"].astype(np.float32),
      partner=arrays["partner"].astype(np.int64),
      source=path,
      synthetic=marker.is_file(),
  )


# --- a run's training clips ---------------------------------------------------------------------------


def resolve_file(path: str | os.PathLike[str]) -> pathlib.Path:
  """The file `config.data.refined_labels` names: the file itself, or a folder's `refined_labels.npz`
  (else its `need_to_change.pkl`)."""
  path = pathlib.Path(path).expanduser()
  if path.is_dir():
    for name in (NPZ_FILE, MA_FILE):
      if (path / name).is_file():
        return path / name
    raise InputError(
        f"refined-label folder {str(path)!r} has neither {NPZ_FILE} nor {MA_FILE}: write it with "
        "launch/refine_labels.py, or point --config.data.refined_labels at MA's need_to_change.pkl."
    )
  if not path.is_file():
    raise InputError(
        f"refined-label file {str(path)!r} does not exist: pass a folder written by launch/refine_labels.py, "
        "its refined_labels.npz, or MA's need_to_change.pkl."
    )
  return path


def load_refined_labels(
    path: str | os.PathLike[str], filenames: Sequence[str], weak_labels: np.ndarray
) -> RefinedLabels:
  """The refined labels of the training clips `filenames` (in that order) with weak labels `[N, C]`.

  `path`: see `resolve_file`. MA's pickle indexes rows of exactly this clip list (the training split in its
  label-file order); our npz is matched by filename, and its weak labels must be the clips'.

  Raises:
    InputError: a missing or unreadable file, rows outside the list, clips missing from an npz, or labels
      that do not fit the clips' weak labels (a file made for another clip list): one line naming the file.
  """
  file = resolve_file(path)
  weak = (np.asarray(weak_labels) > 0).astype(np.float32)
  if file.suffix == ".npz":
    stored = read_npz(file)
    row = {name: i for i, name in enumerate(stored.filenames)}
    missing = [name for name in filenames if name not in row]
    if missing:
      raise InputError(
          f"refined-label file {str(file)!r} has no labels for {len(missing)} of the {len(filenames)} "
          f"training clips (e.g. {', '.join(missing[:_SHOW_AT_MOST])}): it was made for another clip list; "
          "refine the labels of this run's training split."
      )
    order = np.array([row[name] for name in filenames], np.int64)
    if not np.array_equal(stored.weak[order], weak):
      bad = int(np.flatnonzero((stored.weak[order] != weak).any(axis=1))[0])
      raise InputError(
          f"refined-label file {str(file)!r} has other weak labels for clip {filenames[bad]} than the "
          "training labels: it was made for other label files; refine the labels of this run's training "
          "split."
      )
    return dataclasses.replace(
        stored,
        filenames=tuple(filenames),
        weak=weak,
        audio=stored.audio[order],
        visual=stored.visual[order],
        partner=None,  # rows of the stored list, not of this one
    )
  lists = read_ma_pickle(file)
  drops = drops_from_ma_lists(lists, weak, str(file))
  return from_drops(filenames, weak, drops["audio"], drops["visual"], source=str(file))
