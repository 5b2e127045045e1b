"""The official image preprocessing of the two visual extractors, on uint8 frames `[N, H, W, 3]` (RGB).

Both recipes are torchvision transforms on PIL images (the official scripts open each JPEG frame with PIL
and `convert('RGB')`); here the resize is PIL's, called exactly as torchvision calls it, and the crop,
`ToTensor` (/ 255 in float32) and `Normalize` ((x - mean) / std in float32) are numpy. Outputs are NHWC.

* ResNet-152 (`resnet_transform`): Cadene's `pretrainedmodels.utils.TransformImage(model)` for
  resnet152 (what `LoadTransformImage(model)` applies in AVVP-ECCV20 `scripts/extract_rgb_feat.py`):
  input_size [3, 224, 224], scale 0.875, so `Resize(int(math.floor(224 / 0.875)))` = `Resize(256)`: the
  SHORT side to 256, the long side to `int(256 * long / short)` (truncated), PIL bilinear (PIL
  antialiases when it shrinks); `CenterCrop(224)` at `int(round((size - 224) / 2))` (Python's round:
  halves to even); `ToTensor`; RGB kept (input_space RGB), range [0, 1] (input_range [0, 1]);
  `Normalize` with ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).
* R(2+1)D-18 (`r2plus1d_transform`): the official `scripts/utils.py` `TransformImage()`:
  `Resize((112, 112))` (both sides, the aspect ratio is NOT kept), PIL bilinear; `ToTensor`;
  `Normalize` with Kinetics' mean (0.43216, 0.394666, 0.37645) and std (0.22803, 0.22145, 0.216989).
  The 80 transformed frames of a window then go in as 10 clips of 8 (`r2plus1d.clips_from_frames`).

Where pixels can still differ from the official features: the frames themselves (the official ones went
through ffmpeg's JPEG encoder and PIL's decoder) and Pillow's version (its resampling code changed over
the years by at most a grey level).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image

from avvp_jax.errors import InputError

RESNET_SIZE = 224
RESNET_SCALE = 0.875  # Cadene's TransformImage default: resize to 224 / 0.875, then crop 224
RESNET_RESIZE = int(math.floor(RESNET_SIZE / RESNET_SCALE))  # 256
RESNET_MEAN = (0.485, 0.456, 0.406)
RESNET_STD = (0.229, 0.224, 0.225)

R2PLUS1D_SIZE = 112
R2PLUS1D_MEAN = (0.43216, 0.394666, 0.37645)
R2PLUS1D_STD = (0.22803, 0.22145, 0.216989)


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
  """torchvision's `Resize(size)` output `(height, width)` for an int `size`: the short side becomes
  `size`, the long side `int(size * long / short)` (truncated); a square stays square."""
  if width <= height:
    return int(size * height / width), size
  return size, int(size * width / height)


def center_crop_origin(height: int, width: int, crop: int) -> tuple[int, int]:
  """torchvision's `CenterCrop(crop)` top-left corner: `int(round((size - crop) / 2))` per axis."""
  return int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0))


def _check_frames(frames: np.ndarray, what: str) -> np.ndarray:
  frames = np.asarray(frames)
  if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
    raise InputError(
        f"{what} takes uint8 RGB frames [N, H, W, 3], got {frames.dtype} {list(frames.shape)}; "
        "decode the video with avvp_jax.video.read_clip."
    )
  return frames


def _pil_resize(frame: np.ndarray, height: int, width: int) -> np.ndarray:
  """PIL's bilinear resize of one `[H, W, 3]` uint8 frame to `[height, width, 3]`, as torchvision's
  `Resize` calls it on a PIL image (`img.resize((width, height), Image.BILINEAR)`)."""
  if frame.shape[:2] == (
      height,
      width,
  ):  # torchvision returns such an image as it is (PIL would copy it)
    return frame
  image = Image.fromarray(np.ascontiguousarray(frame))  # uint8 [H, W, 3]: mode RGB
  return np.asarray(image.resize((width, height), Image.BILINEAR))


def normalize(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
  """`ToTensor` then `Normalize`, in float32 as torch computes them: `(x / 255 - mean) / std`.

  Args:
    images: `[..., 3]` uint8.

  Returns:
    `[..., 3]` float32.
  """
  x = images.astype(np.float32) / np.float32(255)
  return (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def resnet_transform(frames: np.ndarray) -> np.ndarray:
  """Cadene's `TransformImage` for ResNet-152 (see the module docstring).

  Args:
    frames: `[N, H, W, 3]` uint8 RGB, the video's own size (H, W >= 1).

  Returns:
    `[N, 224, 224, 3]` float32, normalised: the input of `resnet.embed`.
  """
  frames = _check_frames(frames, "the ResNet-152 transform")
  height, width = short_side_size(frames.shape[1], frames.shape[2], RESNET_RESIZE)
  top, left = center_crop_origin(height, width, RESNET_SIZE)
  out = np.empty((frames.shape[0], RESNET_SIZE, RESNET_SIZE, 3), np.uint8)
  for i, frame in enumerate(frames):
    resized = _pil_resize(frame, height, width)
    out[i] = resized[top : top + RESNET_SIZE, left : left + RESNET_SIZE]
  return normalize(out, RESNET_MEAN, RESNET_STD)


def r2plus1d_transform(frames: np.ndarray) -> np.ndarray:
  """The official `scripts/utils.py` `TransformImage` for R(2+1)D-18 (see the module docstring).

  Args:
    frames: `[N, H, W, 3]` uint8 RGB, the video's own size.

  Returns:
    `[N, 112, 112, 3]` float32, normalised; `r2plus1d.clips_from_frames` makes `[N / 8, 8, 112, 112, 3]`.
  """
  frames = _check_frames(frames, "the R(2+1)D-18 transform")
  out = np.empty((frames.shape[0], R2PLUS1D_SIZE, R2PLUS1D_SIZE, 3), np.uint8)
  for i, frame in enumerate(frames):
    out[i] = _pil_resize(frame, R2PLUS1D_SIZE, R2PLUS1D_SIZE)
  return normalize(out, R2PLUS1D_MEAN, R2PLUS1D_STD)
