"""VALOR's segment-level pseudo labels, loaded as dense `[N, T, C]` arrays aligned with a split.

VALOR (Lai, Chen and Wang, "Modality-Independent Teachers Meet Weakly-Supervised Audio-Visual Event
Parser", NeurIPS 2023, https://github.com/Franklin905/VALOR) releases per-second pseudo labels made by
CLAP (audio) and CLIP (visual), restricted to each clip's weak labels. LEAP trains with them. The released
`CLAP.zip` and `CLIP.zip` unpack to

    <root>/CLAP/segment_pseudo_labels/<clip id>.npy   audio,  [10, 25] int64, 0/1
    <root>/CLIP/segment_pseudo_labels/<clip id>.npy   visual, [10, 25] int64, 0/1

one file per clip of the whole dataset (train, val and test), named by the first 11 characters of the
clip's `filename`, rows in seconds and columns in the standard class order. `config.data.pseudo_labels`
is `<root>`. The video-level pseudo label of a clip is the maximum over its seconds.

The trainer puts the rows of a batch's clips under `AUDIO_BATCH_KEY` / `VISUAL_BATCH_KEY` (`[B, T, C]`
float32); `avvp_jax.losses` uses them when they are present. This module is numpy only.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Sequence

import numpy as np

from avvp_jax.data import annotations
from avvp_jax.errors import InputError

# Batch keys of the segment-level pseudo labels, `[B, T, C]` float32 in {0, 1}.
AUDIO_BATCH_KEY = "audio_pseudo_label"
VISUAL_BATCH_KEY = "visual_pseudo_label"

# Sub-folders of `config.data.pseudo_labels`, as VALOR's archives unpack.
AUDIO_SUBDIR = "CLAP/segment_pseudo_labels"
VISUAL_SUBDIR = "CLIP/segment_pseudo_labels"

_SHOW_AT_MOST = 5  # clip ids named in an error message


@dataclasses.dataclass(frozen=True)
class PseudoLabels:
  """Segment-level pseudo labels of one split, in the split's file order.

  Attributes:
    clip_ids: `[N]` clip ids, the row order.
    audio: `[N, T, C]` float32 audio pseudo labels.
    visual: `[N, T, C]` float32 visual pseudo labels.
  """
  clip_ids: tuple[str, ...]
  audio: np.ndarray
  visual: np.ndarray

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

  def batch(self, index: np.ndarray) -> dict[str, np.ndarray]:
    """The batch entries of rows `index` (`[B]` or `[S, B]` int); rows of -1 (padding) get zeros."""
    index = np.asarray(index)
    valid = (index >= 0)[..., None, None]
    rows = np.where(index >= 0, index, 0)
    return {AUDIO_BATCH_KEY: np.where(valid, self.audio[rows], 0.0).astype(np.float32),
            VISUAL_BATCH_KEY: np.where(valid, self.visual[rows], 0.0).astype(np.float32)}


def resolve_dirs(root: str | pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
  """The audio and visual pseudo-label folders under `root`, checked to exist."""
  root = pathlib.Path(root).expanduser()
  if not root.is_dir():
    raise InputError(f"pseudo_labels {str(root)!r} is not a folder: point --config.data.pseudo_labels "
                     f"at the folder where VALOR's CLAP.zip and CLIP.zip were unpacked, or leave it empty.")
  dirs = (root / AUDIO_SUBDIR, root / VISUAL_SUBDIR)
  for path in dirs:
    if not path.is_dir():
      raise InputError(f"pseudo_labels folder {str(root)!r} has no {path.relative_to(root)}/: unpack "
                       "VALOR's CLAP.zip (audio) and CLIP.zip (visual) into it.")
  return dirs


def _read_one(path: pathlib.Path) -> np.ndarray:
  try:
    labels = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as error:
    raise InputError(f"pseudo-label file {str(path)!r} is not a readable .npy array ({error}): "
                     "download and unpack VALOR's archive again.") from error
  expected = (annotations.NUM_SECONDS, annotations.NUM_CLASSES)
  if labels.shape != expected:
    raise InputError(f"pseudo-label file {str(path)!r} has shape {labels.shape}, expected {expected} "
                     "(seconds x classes): use VALOR's segment_pseudo_labels files.")
  labels = labels.astype(np.float32)
  if not np.all((labels >= 0.0) & (labels <= 1.0)):
    raise InputError(f"pseudo-label file {str(path)!r} has values outside [0, 1]: use VALOR's "
                     "segment_pseudo_labels files.")
  return labels


def _read_modality(folder: pathlib.Path, clip_ids: Sequence[str], modality: str) -> np.ndarray:
  paths = [folder / f"{clip}.npy" for clip in clip_ids]
  missing = [clip for clip, path in zip(clip_ids, paths) if not path.is_file()]
  if missing:
    shown = ", ".join(missing[:_SHOW_AT_MOST]) + (", ..." if len(missing) > _SHOW_AT_MOST else "")
    raise InputError(f"{len(missing)} of {len(clip_ids)} clips have no {modality} pseudo labels in "
                     f"{str(folder)!r} ({shown}): unpack the complete VALOR archive there, or leave "
                     "config.data.pseudo_labels empty.")
  return np.stack([_read_one(path) for path in paths]) if paths else np.zeros(
      (0, annotations.NUM_SECONDS, annotations.NUM_CLASSES), np.float32)


def load_pseudo_labels(root: str | pathlib.Path, filenames: Sequence[str]) -> PseudoLabels:
  """Reads the pseudo labels of `filenames` (a split's `filename` column) from VALOR's folder `root`.

  Args:
    root: the folder holding `CLAP/segment_pseudo_labels/` and `CLIP/segment_pseudo_labels/`.
    filenames: `[N]` LLP filenames (or clip ids); row i of the result belongs to `filenames[i]`.

  Returns:
    `PseudoLabels` with `[N, T, C]` float32 audio and visual arrays.

  Raises:
    InputError: a folder or a clip's file is missing, unreadable, of the wrong shape or out of [0, 1].
  """
  audio_dir, visual_dir = resolve_dirs(root)
  clip_ids = tuple(annotations.clip_id(name) for name in filenames)
  return PseudoLabels(clip_ids=clip_ids,
                      audio=_read_modality(audio_dir, clip_ids, "audio"),
                      visual=_read_modality(visual_dir, clip_ids, "visual"))


def load_for_split(root: str | pathlib.Path, split: annotations.Split) -> PseudoLabels:
  """`load_pseudo_labels` for the clips of an `annotations.Split`, in its file order."""
  return load_pseudo_labels(root, split.filenames)
