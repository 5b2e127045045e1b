"""avvp_jax: weakly-supervised audio-visual video parsing in JAX/Flax.

The package import is light: it pulls in neither TensorFlow nor the models. Import submodules as needed,
e.g. `from avvp_jax.tasks.llp import metrics`, `from avvp_jax.tasks.llp import annotations`.

Inference entry points, imported on first use (`avvp_jax.inference`):

  parser = avvp_jax.load_parser("workdir/han")   # a workdir or a checkpoint folder
  parser.predict(audio, frames, motion)          # probabilities: video_prob, segment_audio_prob, ...
  parser.parse(audio, frames, motion)            # events in seconds (avvp_jax.tasks.llp.events)
  avvp_jax.predict(config, params, audio, frames, motion)   # functional, jitted
  avvp_jax.predict_ensemble(config, stacked_params, audio, frames, motion)  # mean over seeds
  avvp_jax.parse_video("workdir/han", ["walk.mp4"])   # videos in, events out (the `video` extra)

AVE event localizers (`avvp_jax.tasks.ave.inference`):

  localizer = avvp_jax.load_localizer("workdir/psp")   # a workdir or a checkpoint folder (a converted one too)
  localizer.predict(audio, visual)               # the official outputs + segment_class [B, 10] (28: background)
"""

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> the submodule defining it; loaded lazily by `__getattr__` so `import avvp_jax` stays light.
_LAZY_EXPORTS = {
    "load_parser": "avvp_jax.inference",
    "predict": "avvp_jax.inference",
    "predict_ensemble": "avvp_jax.inference",
    "Parser": "avvp_jax.inference",
    "parse_video": "avvp_jax.video.parse",
    "load_localizer": "avvp_jax.tasks.ave.inference",
    "Localizer": "avvp_jax.tasks.ave.inference",
}

# Old module paths users may hold: `avvp_jax.metrics.parsing_scores` (the LLP metrics live in tasks/llp/).
_LAZY_MODULES = {"metrics": "avvp_jax.tasks.llp.metrics"}

__all__ = ["__version__", *_LAZY_EXPORTS]


def __getattr__(name: str) -> Any:
  if name in _LAZY_MODULES:
    value = importlib.import_module(_LAZY_MODULES[name])
    globals()[name] = value
    return value
  if name in _LAZY_EXPORTS:
    value = getattr(importlib.import_module(_LAZY_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value
  raise AttributeError(f"module 'avvp_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(_LAZY_EXPORTS))
