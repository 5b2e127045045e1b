"""The official event localizers of the AVE task -> avvp_jax checkpoints: AVE-ECCV18, PSP and CMBS.

  official_to_flax(state, model, config=None, path="state_dict") -> (config, params)
  detect(state, class_name="") -> (model or None, certain)

`model` is one of `MODELS`:

  av_att       YapengTian/AVE-ECCV18 `models.att_Net` (supervised_main.py saves `torch.save(net_model)`,
               e.g. model/AV_att.pt)                                       configs/ave.py
  dmrn         its `models_fusion.TBMRF_Net` (supervised_main.py --model_name DMRN)   configs/dmrn.py
  av_att_weak  its `models_weakly.att_Net` (weak_supervised_main.py, model/AV_att_weak.pt)
                                                                           configs/ave.py:weak
  psp          jasongief/PSP_CVPR_2021 `fully_model.psp_net` (fully_supervised_main.py saves the whole module)
                                                                           configs/psp.py
  psp_weak     its `weakly_model.psp_net` (weakly_supervised_main.py)       configs/psp.py:weak
  cmbs         marmot-xy/CMBS `supv_main_model` (supv_main.py saves `nn.DataParallel(model).state_dict()`,
               float64)                                                    configs/cmbs.py
  cmbs_weak    its `weak_main_model` (weakly_main.py)                       configs/cmbs.py:weak

The key mappings and checks are `avvp_jax.convert.ave`, `.psp` and `.cmbs`; the files are read by
`avvp_jax.convert.torch_pickle` (no official code needed, none run). The converted config is the model's run
card (the config file on the right), or a given AVE config whose model section and `data.ave.supervision`
are replaced by the run card's, so `launch/evaluate.py --checkpoint=DIR` scores the model in its setting.
A+V-att and the weak A+V-att have the same keys and shapes: a pickled module tells them apart by its class
(`models.att_Net` or `models_weakly.att_Net`); a bare state_dict of either needs the model named.
"""

from __future__ import annotations

from typing import Any, Mapping

import ml_collections
import numpy as np

from avvp_jax.convert import ave as convert_ave
from avvp_jax.convert import cmbs as convert_cmbs
from avvp_jax.convert import common
from avvp_jax.convert import psp as convert_psp
from avvp_jax.errors import InputError

PyTree = Any
State = Mapping[str, np.ndarray]

MODELS = ("av_att", "dmrn", "av_att_weak", "psp", "psp_weak", "cmbs", "cmbs_weak")
# model -> (configs/<name>.py, its preset)
CONFIGS = {
    "av_att": ("ave", None),
    "dmrn": ("dmrn", None),
    "av_att_weak": ("ave", "weak"),
    "psp": ("psp", None),
    "psp_weak": ("psp", "weak"),
    "cmbs": ("cmbs", None),
    "cmbs_weak": ("cmbs", "weak"),
}
TITLES = {
    **convert_ave.TITLES,
    "psp": convert_psp.TITLES["full"],
    "psp_weak": convert_psp.TITLES["weak"],
    "cmbs": "CMBS fully supervised (supv_main_model)",
    "cmbs_weak": "CMBS weakly supervised (weak_main_model)",
}
# The classes the official scripts pickle (module.class as the pickle names them).
CLASSES = {
    "models.att_Net": "av_att",
    "models_fusion.TBMRF_Net": "dmrn",
    "models_weakly.att_Net": "av_att_weak",
    "fully_model.psp_net": "psp",
    "weakly_model.psp_net": "psp_weak",
    "model.main_model.supv_main_model": "cmbs",
    "model.main_model.weak_main_model": "cmbs_weak",
}
# A key only that model's state_dict has, in the order tried (A+V-att's stands for both A+V-att models).
SIGNATURES = (
    ("cmbs", "localize_module.classifier.weight"),
    ("cmbs_weak", "CAS_model.classifier.0.weight"),
    ("psp", "fa.0.weight"),
    ("psp_weak", "W3.weight"),
    ("dmrn", "U_v.0.weight"),
    ("av_att", "affine_h.weight"),
)
# Models whose state_dicts have the same keys and shapes.
SAME_KEYS = {"av_att": "av_att_weak", "av_att_weak": "av_att"}


def detect(state: State, class_name: str = "") -> tuple[str | None, str]:
  """The official localizer a file holds, and the evidence ("" when there is none).

  Args:
    state: its state_dict.
    class_name: the pickled class of a whole-module file ("" for a state_dict file).

  Returns:
    (model, evidence): from the pickled class when it is an official one ("a pickled models.att_Net"), else
    from a key only that model has ("it has affine_h.weight"; for A+V-att, either A+V-att model); (None, "")
    when neither.
  """
  if class_name in CLASSES:
    return CLASSES[class_name], f"a pickled {class_name}"
  for model, key in SIGNATURES:
    if key in state:
      return model, f"it has {key}"
  return None, ""


def certain(model: str, evidence: str) -> bool:
  """Whether `detect`'s answer names one model (not one of two with the same keys)."""
  return model not in SAME_KEYS or evidence.startswith("a pickled")


def official_config(
    model: str, base: ml_collections.ConfigDict | None = None
) -> ml_collections.ConfigDict:
  """The run card of `model` (`CONFIGS`), or `base` (an AVE config) with the run card's model section and
  supervision.

  Raises:
    InputError: `base` is not an AVE config.
  """
  name, preset = CONFIGS[model]
  card = common.base_config(name, preset)
  if base is None:
    return card
  task = base.get("task", "llp")
  if task != "ave":
    raise InputError(
        f"--config is a {task!r} config, but {TITLES[model]} is an AVE model: pass an AVE config "
        f"(configs/{name}.py{':' + preset if preset else ''}) or leave --config out."
    )
  config = base.copy_and_resolve_references()
  config.model = card.model
  config.data.ave.supervision = card.data.ave.supervision
  return config


def official_to_flax(
    state: State,
    model: str,
    config: ml_collections.ConfigDict | None = None,
    path: str = "state_dict",
) -> tuple[ml_collections.ConfigDict, PyTree]:
  """(config, float32 params) of the official `model` from its state_dict (`module.` prefixes allowed).

  Raises:
    InputError: an unknown model, a missing or unknown key, a wrong shape (each named), a non-AVE `config`.
  """
  if model not in MODELS:
    raise InputError(f"AVE model {model!r} is unknown: use one of {', '.join(MODELS)}.")
  state = convert_cmbs.strip_module_prefix(state)
  if model in convert_ave.MODELS:
    params = convert_ave.official_to_flax(state, model, path)
  elif model.startswith("psp"):
    params = convert_psp.official_to_flax(state, "weak" if model == "psp_weak" else "full", path)
  else:
    params = convert_cmbs.params_from_state_dict(
        state, "weak" if model == "cmbs_weak" else "supervised", path
    )
  config = official_config(model, config)
  params = common.float32_tree(params)
  common.check_tree(params, config, TITLES[model])
  return config, params
