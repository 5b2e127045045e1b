"""Videos in: decoding as the official LLP scripts do, the three official feature extractors, and parsing.

Needs the optional `video` extra (`pip install -e ".[video]"`: PyAV for decoding, torch for reading the
official weight files). The networks are Flax ports run by JAX on whatever accelerator it has.

  clip = avvp_jax.video.read_clip("walk.mp4")        # 10-s windows: frames, 16-kHz audio, masks
  extractor = avvp_jax.video.FeatureExtractor()       # pretrained (downloads into torch's cache)
  records = avvp_jax.parse_video("workdir/han", ["walk.mp4"])   # events in seconds of the video

Modules: `decode` (read_clip, iter_windows, frame_indices), `vggish`, `resnet`, `r2plus1d` (the networks
and their preprocessing), `weights` (finding and reading the weight files), `extract` (FeatureExtractor,
extract_folder), `parse` (parse_video), `synthetic` (SYNTHETIC videos for trying the path and for tests).
AVE's layout: `vgg19` (VGG-19 to pool5), `ave_frames` (AVE's frame selection and resize), `ave_extract`
(AveExtractor, extract_folder for `--layout=ave`), `ave_parse` (parse_video with an AVE localizer).
"""

import importlib
from typing import Any

_LAZY_EXPORTS = {
    "read_clip": "avvp_jax.video.decode",
    "iter_windows": "avvp_jax.video.decode",
    "frame_indices": "avvp_jax.video.decode",
    "FeatureExtractor": "avvp_jax.video.extract",
    "extract_folder": "avvp_jax.video.extract",
    "parse_video": "avvp_jax.video.parse",
}

__all__ = list(_LAZY_EXPORTS)


def __getattr__(name: str) -> Any:
  if name in _LAZY_EXPORTS:
    value = getattr(importlib.import_module(_LAZY_EXPORTS[name]), name)
    globals()[name] = value
    return value
  raise AttributeError(f"module 'avvp_jax.video' has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(_LAZY_EXPORTS))
