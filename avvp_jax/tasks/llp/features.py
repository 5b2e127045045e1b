"""LLP feature layouts on disk: where each clip's features live, their shapes, and checked reading (numpy only).

Two layouts, chosen by `config.data.layout`; `LAYOUTS` is the single source of truth for file names and
stored shapes, `output_shapes` for what the dataset holds after build-time pooling, `input_dims` for the
model input widths a layout gives (`layout_of_dims` the way back), and `detect_layout` for the layout a
folder holds.

"official" (Tian et al., ECCV 2020, https://github.com/YapengTian/AVVP-ECCV20, "feature download links"):
  `<features_dir>/vggish/<id>.npy`       [10, 128]   VGGish audio, one vector per second
  `<features_dir>/res152/<id>.npy`       [80, 2048]  ResNet-152 frames, 8 per second
  `<features_dir>/r2plus1d_18/<id>.npy`  [10, 512]   R(2+1)D-18 motion, one vector per second
  With `frames="pooled"` (the default) the 8 frames of each second are averaged at build time to
  [10, 2048]: HAN and LEAP apply a linear layer to every frame and then average each second, and the mean
  commutes with a linear layer, so the model's outputs are unchanged while the data is 8x smaller.

"clip_clap" (VALOR, Lai et al., NeurIPS 2023, https://github.com/Franklin905/VALOR, `CLAP.zip` and
`CLIP.zip` from https://huggingface.co/datasets/NTUBarista/valor_features, unpacked into one folder):
  `<features_dir>/CLAP/features/<id>.npy` [64, 768]  CLAP (HTS-AT, 630k fusion checkpoint) audio feature
      maps: the final-norm tokens of the whole 10 s clip, 2 frequency groups x 32 time steps, token
      f * 32 + t (VALOR `utils/clap_preprocess.py:get_audio_feature_maps`, `utils/clap_utils.py`).
  `<features_dir>/CLIP/features/<id>.npy` [10, 768]  CLIP ViT-L/14 projected image embeddings of 10
      equally spaced frames, L2-normalised (VALOR `utils/clip_preprocess.py:get_image_embedding`).
  VALOR's network (`main_network.py`) maps the [64, 768] audio maps to 10 segments by a bicubic upsampling
  of the 32 time steps to 1024, its linear input layer, a mean over the 2 frequency groups and an
  adaptive average pool to 10. Every step but the linear layer is a fixed linear map whose weights sum to
  one, so it commutes with that layer: the build stores `clap_segment_matrix() @ maps`, [10, 768], and a
  model with a linear audio input layer sees exactly what VALOR's sees. There is no motion stream here
  (VALOR++ also feeds the official R(2+1)D-18 features; this layout does not).

Reading (`load_clip`) checks every file and raises `InputError` naming the clip, the file and the fix for a
missing file, a wrong shape, a non-floating dtype, and NaN or Inf values.
"""

from __future__ import annotations

import functools
import os
import pathlib
from typing import Iterable, Mapping

import numpy as np

from avvp_jax.tasks.llp import annotations
from avvp_jax.tasks.llp import batch_keys
from avvp_jax.errors import InputError

T = annotations.NUM_SECONDS  # 10 one-second segments
FRAMES_PER_SECOND = 8  # ResNet-152 frames of the official layout are extracted at 8 fps
CLAP_FREQ_GROUPS, CLAP_TIME_STEPS = 2, 32  # the 64 tokens of a CLAP feature map, frequency-major

# layout -> modality -> (sub-folder of features_dir holding `<clip id>.npy`, stored per-clip shape).
LAYOUTS: dict[str, dict[str, tuple[str, tuple[int, int]]]] = {
    "official": {
        "audio": ("vggish", (T, 128)),
        "frames": ("res152", (T * FRAMES_PER_SECOND, 2048)),
        "motion": ("r2plus1d_18", (T, 512)),
    },
    "clip_clap": {
        "audio": (os.path.join("CLAP", "features"), (CLAP_FREQ_GROUPS * CLAP_TIME_STEPS, 768)),
        "frames": (os.path.join("CLIP", "features"), (T, 768)),
    },
}
FRAME_MODES = ("pooled", "raw")  # "pooled": [10, Df] (mean per second), "raw": as stored
SOURCES = {
    "official": "https://github.com/YapengTian/AVVP-ECCV20 (README: feature download links)",
    "clip_clap": "https://github.com/Franklin905/VALOR (README: CLAP.zip and CLIP.zip)",
}


def check_layout(layout: str, frames: str = "pooled") -> None:
  """Raises InputError for an unknown layout or frames mode (the one check: the pipeline, the TFDS builder
  and the synthetic generator all call it)."""
  if layout not in LAYOUTS:
    raise InputError(
        f"unknown feature layout {layout!r}: set --config.data.layout (or make_synthetic's --layout) "
        f"to one of {', '.join(LAYOUTS)}."
    )
  if frames not in FRAME_MODES:
    raise InputError(
        f"unknown frames mode {frames!r}: set --config.data.frames to 'pooled' (mean of each "
        "second's frames, exact for HAN/LEAP) or 'raw' (as stored)."
    )


def modalities(layout: str) -> tuple[str, ...]:
  check_layout(layout)
  return tuple(LAYOUTS[layout])


def stored_shapes(layout: str) -> dict[str, tuple[int, int]]:
  """Per-clip shapes of the `.npy` files of `layout`, per modality."""
  check_layout(layout)
  return {m: shape for m, (_, shape) in LAYOUTS[layout].items()}


def output_shapes(layout: str, frames: str = "pooled") -> dict[str, tuple[int, int]]:
  """Per-clip shapes the dataset holds (and batches carry, after `[B]`): audio `[T, Da]`, frames `[T, Df]`
  pooled or `[8T, Df]` raw (official), motion `[T, 512]` (official only)."""
  check_layout(layout, frames)
  shapes = stored_shapes(layout)
  if layout == "clip_clap":
    shapes["audio"] = (T, shapes["audio"][1])  # CLAP maps -> 10 segments (`clap_segment_matrix`)
  if frames == "pooled":
    shapes["frames"] = (T, shapes["frames"][1])
  return shapes


def input_dims(layout: str) -> dict[str, int]:
  """The model input widths `layout`'s features have, as `config.model.input_dims`.

  Returns:
    {"audio": Da, "frames": Df, "motion": Dm} (`batch_keys.FEATURE_KEYS`), 0 for a stream the layout lacks:
    official 128 / 2048 / 512, clip_clap 768 / 768 / 0.
  """
  shapes = output_shapes(layout)
  return {key: int(shapes[key][1]) if key in shapes else 0 for key in batch_keys.FEATURE_KEYS}


def layout_of_dims(dims: Mapping[str, int]) -> str | None:
  """The layout whose audio and frame widths `dims` (model input widths) has; None: no layout's.

  Motion is not compared: a model may read motion features beside a layout that holds none (VALOR++ reads
  R(2+1)D-18 motion beside CLAP / CLIP); `input_dims(layout)` is the exact inverse.
  """
  for layout in LAYOUTS:
    widths = input_dims(layout)
    if (widths["audio"], widths["frames"]) == (dims["audio"], dims["frames"]):
      return layout
  return None


def check_input_dims(
    layout: str, dims: Mapping[str, int], *, where: str, model: str = "the model"
) -> None:
  """Raises InputError unless a model of input widths `dims` takes `layout`'s features (`input_dims`).

  Args:
    layout: the layout of the features at hand.
    dims: the model's `config.model.input_dims` (a missing stream counts as 0).
    where: what holds the features, for the message (e.g. "--features '/data/llp'").
    model: what the model is called in the message (e.g. "the teacher").
  """
  have = input_dims(layout)
  want = {name: int(dims.get(name, 0)) for name in have}
  if have != want:
    raise InputError(
        f"{where} holds {layout!r} features of widths {have} but {model} takes {want}: pass features "
        f"of the layout {model} was trained on."
    )


def feature_path(
    features_dir: str | os.PathLike, layout: str, modality: str, clip: str
) -> pathlib.Path:
  """`<features_dir>/<modality folder>/<clip id>.npy`."""
  return pathlib.Path(features_dir) / LAYOUTS[layout][modality][0] / f"{clip}.npy"


def pool_frames(frames: np.ndarray) -> np.ndarray:
  """`[..., 8T, D]` frames -> `[..., T, D]` float32, the mean of each second's 8 frames."""
  *lead, n, d = frames.shape
  return frames.reshape(*lead, n // FRAMES_PER_SECOND, FRAMES_PER_SECOND, d).mean(
      axis=-2, dtype=np.float32
  )


def _bicubic_matrix(size_in: int, size_out: int, a: float = -0.75) -> np.ndarray:
  """`[size_out, size_in]` weights of 1-D bicubic resampling with half-pixel centres and clamped borders
  (the convolution kernel of Keys with a = -0.75, as `torch.nn.functional.interpolate(mode="bicubic",
  align_corners=False)` computes it)."""
  scale = size_in / size_out
  position = (np.arange(size_out) + 0.5) * scale - 0.5
  base = np.floor(position)
  frac = position - base
  distance = np.abs(
      frac[:, None] - np.arange(-1, 3)[None, :]
  )  # [size_out, 4] to taps base-1 .. base+2
  near = ((a + 2) * distance - (a + 3)) * distance**2 + 1  # |x| <= 1
  far = (((distance - 5) * distance + 8) * distance - 4) * a  # 1 < |x| < 2
  weights = np.where(distance <= 1, near, far)
  taps = np.clip(base[:, None].astype(int) + np.arange(-1, 3)[None, :], 0, size_in - 1)
  matrix = np.zeros((size_out, size_in))
  np.add.at(matrix, (np.repeat(np.arange(size_out), 4), taps.ravel()), weights.ravel())
  return matrix


def _adaptive_pool_matrix(size_in: int, size_out: int) -> np.ndarray:
  """`[size_out, size_in]` weights of adaptive average pooling (bin i: floor(i n / m) .. ceil((i+1) n / m))."""
  matrix = np.zeros((size_out, size_in))
  for i in range(size_out):
    start, end = (i * size_in) // size_out, -(-((i + 1) * size_in) // size_out)
    matrix[i, start:end] = 1.0 / (end - start)
  return matrix


@functools.lru_cache(maxsize=1)
def clap_segment_matrix() -> np.ndarray:
  """`[10, 64]` float64: VALOR's map from a CLAP feature map's 64 tokens to 10 one-second segments.

  Token f * 32 + t (frequency group f, time step t). Time is upsampled 32 -> 1024 bicubically, the two
  frequency groups are averaged, and 1024 -> 10 is an adaptive average pool; rows sum to one.
  """
  upsample = _bicubic_matrix(CLAP_TIME_STEPS, 1024)  # [1024, 32]
  pooled_time = _adaptive_pool_matrix(1024, T) @ upsample  # [10, 32]
  return np.concatenate([pooled_time / CLAP_FREQ_GROUPS] * CLAP_FREQ_GROUPS, axis=1)  # [10, 64]


def clap_segments(maps: np.ndarray) -> np.ndarray:
  """`[..., 64, 768]` CLAP feature maps -> `[..., 10, 768]` float32 segment features (see the docstring)."""
  return np.einsum("tk,...kd->...td", clap_segment_matrix(), maps.astype(np.float64)).astype(
      np.float32
  )


def clap_maps_from_segments(segments: np.ndarray) -> np.ndarray:
  """`[..., 10, 768]` segment features -> `[..., 64, 768]` float32 CLAP maps that `clap_segments` maps back.

  The minimum-norm preimage under `clap_segment_matrix` (its pseudo-inverse): used to write synthetic data
  in VALOR's on-disk form, so reading it back exercises the real CLAP path.
  """
  inverse = np.linalg.pinv(clap_segment_matrix())  # [64, 10]
  return np.einsum("kt,...td->...kd", inverse, segments.astype(np.float64)).astype(np.float32)


def check_array(
    array: np.ndarray,
    expected: tuple[int, ...],
    *,
    clip: str,
    path: os.PathLike | str,
    layout: str,
    modality: str,
) -> np.ndarray:
  """Checks one loaded feature array; returns it as float32. Raises InputError naming clip and file."""
  folder = LAYOUTS[layout][modality][0]
  if not np.issubdtype(array.dtype, np.floating):
    raise InputError(
        f"feature file {str(path)!r} of clip {clip} has dtype {array.dtype}, expected floating point "
        f"(float32) {folder} features of shape {expected}: re-extract this clip's features."
    )
  if array.shape != expected:
    raise InputError(
        f"feature file {str(path)!r} of clip {clip} has shape {array.shape}, expected {expected} for "
        f"{folder} features in the {layout!r} layout: re-extract this file, or set "
        "--config.data.layout to the layout the folder holds."
    )
  finite = np.isfinite(array)
  if not finite.all():
    bad = np.argwhere(~finite)
    first = tuple(int(i) for i in bad[0])
    raise InputError(
        f"feature file {str(path)!r} of clip {clip} holds {array[first]} at index {list(first)} "
        f"({len(bad)} non-finite values): re-extract this clip's features."
    )
  return array.astype(np.float32, copy=False)


def load_clip(
    features_dir: str | os.PathLike,
    layout: str,
    frames: str,
    clip: str,
    filename: str | None = None,
) -> dict[str, np.ndarray]:
  """Reads and checks one clip's features, pooled as the dataset stores them.

  Args:
    features_dir: the features folder of `layout`.
    layout: "official" or "clip_clap".
    frames: "pooled" or "raw" (official frames; clip_clap frames are one per second either way).
    clip: the clip id (11 characters) naming the files.
    filename: the clip's `<id>_<start>_<end>`, for messages.

  Returns:
    modality -> float32 array of `output_shapes(layout, frames)[modality]`.
  """
  check_layout(layout, frames)
  name = f"{clip} ({filename})" if filename else clip
  out = {}
  for modality, (_, shape) in LAYOUTS[layout].items():
    path = feature_path(features_dir, layout, modality, clip)
    try:
      array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
      raise InputError(
          f"feature file {str(path)!r} of clip {name} is missing: add it, or remove the clip from "
          "the label files."
      ) from None
    except (ValueError, OSError, EOFError) as error:
      raise InputError(
          f"feature file {str(path)!r} of clip {name} is not a readable .npy array ({error}): "
          "re-extract or re-download it."
      ) from None
    array = check_array(array, shape, clip=name, path=path, layout=layout, modality=modality)
    if modality == "audio" and layout == "clip_clap":
      array = clap_segments(array)
    elif modality == "frames" and frames == "pooled" and array.shape[0] != T:
      array = pool_frames(array)
    out[modality] = array
  return out


def layout_contents(layout: str) -> str:
  """What a features folder of `layout` holds, for messages: "vggish/<id>.npy [10, 128], ..."."""
  check_layout(layout)
  return ", ".join(
      f"{sub}/<id>.npy [{shape[0]}, {shape[1]}]" for sub, shape in LAYOUTS[layout].values()
  )


def _holds_layout(root: pathlib.Path, layout: str) -> bool:
  """Whether folder `root` has every modality sub-folder of `layout`."""
  return all((root / sub).is_dir() for sub, _ in LAYOUTS[layout].values())


def detect_layout(
    features_dir: str | os.PathLike, *, name: str = "features folder", alternative: str = ""
) -> str:
  """The layout whose modality sub-folders `features_dir` holds (the first of `LAYOUTS` that fits).

  Args:
    features_dir: the folder ("~" is expanded).
    name: what messages call the folder, e.g. the flag that names it ("--features").
    alternative: what else the user may do, ending the fix in messages (", or leave it empty ...").

  Raises:
    InputError: `features_dir` is not a folder, or holds neither layout's sub-folders (listed).
  """
  root = pathlib.Path(features_dir).expanduser()
  if not root.is_dir():
    raise InputError(
        f"{name} {str(root)!r} is not a folder: point it at the LLP features{alternative}."
    )
  for layout in LAYOUTS:
    if _holds_layout(root, layout):
      return layout
  expected = "; ".join(
      f"{layout}: " + ", ".join(f"{sub}/" for sub, _ in folders.values())
      for layout, folders in LAYOUTS.items()
  )
  raise InputError(
      f"{name} {str(root)!r} holds neither layout's sub-folders ({expected}): point it at the folder "
      f"holding them{alternative}."
  )


def check_layout_folders(features_dir: str | os.PathLike, layout: str) -> dict[str, pathlib.Path]:
  """{modality: folder} of `layout`'s folders in `features_dir` (cheap: no file is listed).

  The check every run makes before a dataset build is asked for (`state.resolve_config`), and the
  first part of `check_features_dir`.

  Raises:
    InputError: `features_dir` is not a folder, is empty, or lacks a modality folder of `layout`;
      the message names the folder and what it should hold.
  """
  check_layout(layout)
  root = pathlib.Path(features_dir).expanduser()
  if not root.is_dir():
    raise InputError(
        f"features_dir {str(root)!r} is not a folder: set --config.data.features_dir to the folder "
        f"holding the {layout!r} features ({SOURCES[layout]})."
    )
  others = [name for name in LAYOUTS if name != layout]
  if not any(root.iterdir()):
    raise InputError(
        f"features_dir {str(root)!r} is empty: the {layout!r} layout needs "
        f"{layout_contents(layout)} ({SOURCES[layout]}); fill it, point "
        "--config.data.features_dir at the folder holding them, or leave it empty ('') for the "
        "embedded synthetic data."
    )
  folders = {m: root / sub for m, (sub, _) in LAYOUTS[layout].items()}
  for modality, folder in folders.items():
    if not folder.is_dir():
      hint = ""
      for other in others:
        if _holds_layout(root, other):
          hint = f" (it holds the {other!r} layout's folders: set --config.data.layout={other})"
      raise InputError(
          f"features_dir {str(root)!r} has no {LAYOUTS[layout][modality][0]}/ folder{hint}: the "
          f"{layout!r} layout needs {layout_contents(layout)}; point --config.data.features_dir at "
          "the folder holding them, or set --config.data.layout."
      )
  return folders


def check_features_dir(
    features_dir: str | os.PathLike, layout: str, splits: Mapping[str, annotations.Split]
) -> None:
  """Before a build: the folder holds every modality folder and a file for every clip of every split.

  Raises:
    InputError: naming the missing folder, or the first missing clip (its file, its label file) and how
      many more are missing.
  """
  folders = check_layout_folders(features_dir, layout)
  root = pathlib.Path(features_dir).expanduser()
  present = {m: {entry.name for entry in os.scandir(folder)} for m, folder in folders.items()}
  missing: list[tuple[str, str, str, list[str]]] = []  # (split, filename, clip, modalities missing)
  for split_name, split in splits.items():
    for filename, clip in zip(split.filenames, split.clip_ids):
      absent = [m for m in folders if f"{clip}.npy" not in present[m]]
      if absent:
        missing.append((split_name, filename, clip, absent))
  if not missing:
    return
  split_name, filename, clip, absent = missing[0]
  label_file = annotations.SPLIT_FILES[split_name]
  more = f" ({len(missing) - 1} more clips lack features too)" if len(missing) > 1 else ""
  path = feature_path(root, layout, absent[0], clip)
  if len(absent) == len(folders):
    raise InputError(
        f"clip {clip} ({filename}) is listed in {label_file} but has no features in {str(root)!r}: "
        f"{str(path)!r} is missing{more}; add its features or remove it from the label files."
    )
  raise InputError(
      f"feature file {str(path)!r} of clip {clip} ({filename}, {label_file}) is missing{more}: add "
      "it, or remove the clip from the label files."
  )


def folder_stamp(features_dir: str | os.PathLike, layout: str) -> tuple[int, ...]:
  """Modification times (ns) of the modality folders: part of a build's key, so files added to or removed
  from a folder give a new build."""
  root = pathlib.Path(features_dir).expanduser()
  return tuple(
      (root / sub).stat().st_mtime_ns if (root / sub).is_dir() else -1
      for sub, _ in LAYOUTS[layout].values()
  )


def iter_clips(
    features_dir: str | os.PathLike, layout: str, frames: str, split: annotations.Split
) -> Iterable[tuple[int, dict[str, np.ndarray]]]:
  """(row, features) for every clip of `split` in file order."""
  for row, (filename, clip) in enumerate(zip(split.filenames, split.clip_ids)):
    yield row, load_clip(features_dir, layout, frames, clip, filename)
