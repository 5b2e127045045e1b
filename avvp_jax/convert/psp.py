"""Official PSP state_dicts -> params of `avvp_jax.models.psp.PSPNet`.

  official_to_flax(state, supervision="full") -> params      supervision: "full" or "weak"

`state` maps the keys of jasongief/PSP_CVPR_2021's `psp_net(128, 512, 128, 29)` (`fully_model.py` or
`weakly_model.py`) to numpy arrays. Every key the official forward reads must be there with its official shape;
the keys of the modules the forward never calls (full: linear_v, v_classify, a_classify, L3, L4; weak:
temperature, W1, W2) are accepted and dropped; any other key is an InputError naming it. Layouts as in
`avvp_jax.convert.ave`; `lstm_a_v.lstm_audio` / `lstm_a_v.lstm_video` become `lstm_audio` / `lstm_video`, the
Sequentials' `fa.0`, `fa.1`, `fv.0`, `fv.1` become `fa_0`, ... The official `model/PSP_fully.pt` and
`PSP_weakly.pt` are pickled whole modules: pass their `.state_dict()` (numpy arrays).
"""

from __future__ import annotations

from typing import Any

from avvp_jax.convert import ave as convert_ave
from avvp_jax.errors import InputError

PyTree = Any

SUPERVISIONS = ("full", "weak")
TITLES = {
    "full": "PSP fully supervised (fully_model.psp_net)",
    "weak": "PSP weakly supervised (weakly_model.psp_net)",
}
IGNORED_PREFIXES = {
    "full": ("linear_v.", "v_classify.", "a_classify.", "L3.", "L4."),
    "weak": ("temperature", "W1.", "W2."),
}
HIDDEN, WIDTH, CLASSES = 128, 256, 29


def expected_shapes(supervision: str) -> dict[str, tuple]:
  """Every key the official forward of the `supervision` model reads, with its shape."""
  linear = convert_ave.linear_shapes
  shapes = {
      **convert_ave.avga_shapes("attention."),
      **convert_ave.lstm_shapes("lstm_a_v.lstm_audio", 128, HIDDEN),
      **convert_ave.lstm_shapes("lstm_a_v.lstm_video", HIDDEN, HIDDEN),
      **linear("L1", 64, WIDTH, bias=False),
      **linear("L2", CLASSES, 64, bias=False),
      "psp.layer_norm.weight": (WIDTH,),
      "psp.layer_norm.bias": (WIDTH,),
  }
  psp = ("v_L1", "v_L2", "a_L1", "a_L2") + (("v_fc", "a_fc") if supervision == "full" else ())
  for name in psp:
    shapes.update(linear(f"psp.{name}", WIDTH, WIDTH, bias=False))
  if supervision == "full":
    shapes.update(
        {
            **linear("fa.0", 256, 128, bias=False),
            **linear("fa.1", HIDDEN, 256, bias=False),
            **linear("fv.0", 256, 512, bias=False),
            **linear("fv.1", HIDDEN, 256, bias=False),
        }
    )
  else:
    shapes.update({**linear("linear_v", HIDDEN, 512), **linear("W3", 1, CLASSES, bias=False)})
  return shapes


def _module_path(module: str) -> tuple[str, ...]:
  if module.startswith("lstm_a_v."):
    return (module.split(".", 1)[1],)
  if module.startswith(("attention.", "psp.")):
    return tuple(module.split("."))
  return (module.replace(".", "_"),)


def official_to_flax(state, supervision: str = "full", path: str = "state_dict") -> PyTree:
  """The params of `PSPNet(supervision=supervision)` from an official state_dict (module docstring).

  Raises:
    InputError: an unknown setting, a missing or unknown key, or a wrong shape (each named).
  """
  if supervision not in SUPERVISIONS:
    raise InputError(f"PSP supervision {supervision!r} is unknown: use one of {SUPERVISIONS}.")
  shapes = expected_shapes(supervision)
  ignored = lambda key: key.startswith(IGNORED_PREFIXES[supervision])
  convert_ave.check(state, shapes, TITLES[supervision], path, ignored)
  return convert_ave.to_params(state, shapes, _module_path)
