"""Official AVE-ECCV18 state_dicts -> params of `avvp_jax.models.ave.AVENet`.

  official_to_flax(state, model="av_att") -> params      model: "av_att", "dmrn" or "av_att_weak"

`state` maps the official keys (YapengTian/AVE-ECCV18 `att_Net`, `TBMRF_Net`, the weak `att_Net`; official
widths: `att_Net(128, 128, 512, 29)`, `TBMRF_Net(128, 128, 512, 29, 1)`) to numpy arrays. Every key the
official forward reads must be there with its official shape, and no other key may be: anything else is an
InputError naming the key. Layouts: `nn.Linear.weight [out, in]` -> Dense kernel `[in, out]`; the LSTMs'
`weight_ih_l0`, ... keep torch's names and layouts (`avvp_jax.models.lstm`); `nn.LayerNorm.weight` -> scale.

The official repository saves whole pickled modules (`torch.save(net_model, ...)`, e.g. `model/AV_att.pt`):
take `.state_dict()` of the loaded module (numpy arrays) and pass it here. `to_params` is shared with
`avvp_jax.convert.psp`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from avvp_jax.convert import common
from avvp_jax.errors import InputError
from avvp_jax.models import lstm

PyTree = Any
State = Mapping[str, np.ndarray]

MODELS = ("av_att", "dmrn", "av_att_weak")
TITLES = {
    "av_att": "AVE-ECCV18 A+V-att (att_Net)",
    "dmrn": "AVE-ECCV18 DMRN (TBMRF_Net)",
    "av_att_weak": "AVE-ECCV18 weakly supervised A+V-att (models_weakly.att_Net)",
}
# The AVENet attributes of each official model.
MODULES = {
    "av_att": dict(fusion="concat", supervision="full"),
    "dmrn": dict(fusion="dmrn", supervision="full"),
    "av_att_weak": dict(fusion="concat", supervision="weak"),
}
FIX = "pass the state_dict of an official model with the official widths"
HIDDEN, HIDDEN_SIZE, CLASSES, AUDIO, VISUAL, REGIONS = 128, 512, 29, 128, 512, 49


def linear_shapes(name: str, out_dim: int, in_dim: int, bias: bool = True) -> dict[str, tuple]:
  return {f"{name}.weight": (out_dim, in_dim), **({f"{name}.bias": (out_dim,)} if bias else {})}


def lstm_shapes(name: str, input_size: int, hidden_size: int) -> dict[str, tuple]:
  return {f"{name}.{k}": v for k, v in lstm.param_shapes(input_size, hidden_size).items()}


def avga_shapes(
    prefix: str, audio_dim: int = AUDIO, hidden_size: int = HIDDEN_SIZE
) -> dict[str, tuple]:
  """The affine_* keys of the audio-guided visual attention (`prefix`: "" or PSP's "attention.")."""
  return {
      **linear_shapes(f"{prefix}affine_audio", hidden_size, audio_dim),
      **linear_shapes(f"{prefix}affine_video", hidden_size, VISUAL),
      **linear_shapes(f"{prefix}affine_v", REGIONS, hidden_size, bias=False),
      **linear_shapes(f"{prefix}affine_g", REGIONS, hidden_size, bias=False),
      **linear_shapes(f"{prefix}affine_h", 1, REGIONS, bias=False),
  }


def expected_shapes(model: str) -> dict[str, tuple]:
  """Every key the official forward of `model` reads, with its shape."""
  width = 2 * HIDDEN
  shapes = {
      **lstm_shapes("lstm_audio", AUDIO, HIDDEN),
      **lstm_shapes("lstm_video", VISUAL, HIDDEN),
      **avga_shapes(""),
  }
  if model == "dmrn":
    for name in ("U_v.0", "U_v.2", "U_a.0", "U_a.2"):
      shapes.update(linear_shapes(name, width, width))
    shapes.update(linear_shapes("L2", CLASSES, width))
  else:
    shapes.update({**linear_shapes("L1", 64, 2 * width), **linear_shapes("L2", CLASSES, 64)})
  return shapes


def check(
    state: State,
    shapes: Mapping[str, tuple],
    title: str,
    path: str,
    ignored: Callable[[str], bool] = lambda key: False,
) -> None:
  """Every key of `shapes` present with its shape, every other key `ignored`; else a one-line InputError."""
  common.check_keys(state, shapes, ignored, path, title, FIX)
  common.check_shapes(state, shapes, path, title, FIX)


def to_params(
    state: State, shapes: Mapping[str, tuple], module_path: Callable[[str], tuple[str, ...]]
) -> PyTree:
  """The Flax params tree of the keys of `shapes`: `module_path(torch module name)` gives the Flax path.

  LSTM parameters (`weight_ih_l0`, ...) keep their names and layouts; a 2-D `weight` is a Linear's (kernel =
  its transpose), a 1-D `weight` a LayerNorm's scale; `bias` stays `bias`.
  """
  params: dict[str, Any] = {}
  for key in shapes:
    module, name = key.rsplit(".", 1)
    value = np.asarray(state[key], np.float32)
    if name == "weight":
      name, value = ("kernel", value.T) if value.ndim == 2 else ("scale", value)
    node = params
    for part in module_path(module):
      node = node.setdefault(part, {})
    node[name] = np.ascontiguousarray(value)
  return params


def _module_path(module: str) -> tuple[str, ...]:
  if module.startswith("affine_"):
    return ("attention", module)
  if module.startswith(("U_v.", "U_a.")):
    return ("dmrn", module.replace(".", "_"))
  return (module,)


def official_to_flax(state: State, model: str = "av_att", path: str = "state_dict") -> PyTree:
  """The params of `AVENet(**MODULES[model])` from an official `model` state_dict (module docstring).

  Raises:
    InputError: an unknown model, a missing or unknown key, or a wrong shape (each named).
  """
  if model not in MODELS:
    raise InputError(f"AVE-ECCV18 model {model!r} is unknown: use one of {', '.join(MODELS)}.")
  shapes = expected_shapes(model)
  check(state, shapes, TITLES[model], path)
  return to_params(state, shapes, _module_path)
