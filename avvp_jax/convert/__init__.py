"""Official PyTorch checkpoints -> avvp_jax checkpoints: HAN, VALOR (VALOR+, VALOR++), JoMoLD and LEAP (the LLP
task), and AVE-ECCV18's A+V-att, DMRN and weak A+V-att, PSP and CMBS, each supervised and weak (the AVE task).

  convert_official(path, out_dir, model="auto", config=None, label_embeddings=None, num_heads=None) -> out_dir
  load_official(path, model="auto", ...) -> Converted(model, config, params, label_table)

`model` is one of `MODELS`, or "auto": picked from the file's keys (`detect_model`); a checkpoint of another
model than the one asked for is refused. The mappings, the keys each model's forward reads and those it
ignores are in `avvp_jax.convert.han` (HAN: YapengTian/AVVP-ECCV20 `MMIL_Net`; VALOR: Franklin905/VALOR;
JoMoLD: MCG-NJU/JoMoLD, whose file wraps the state_dict under "model") and `avvp_jax.convert.leap` (LEAP:
jasongief/LEAP `AVVPNet`, MM-Pyramid + LEAP; its class-name table is not in the state_dict, so LEAP needs
`label_embeddings`, e.g. the official `llp_label_glove_embeddings.pt`). The AVE task's localizers ("av_att",
"dmrn", "av_att_weak", "psp", "psp_weak", "cmbs", "cmbs_weak") are `avvp_jax.convert.localizers`: AVE-ECCV18
and PSP save whole pickled modules, read by `avvp_jax.convert.torch_pickle`'s restricted unpickler (no
official code needed, none run; a file asking for anything else is refused), CMBS a DataParallel state_dict.

The written folder is a params-only checkpoint (`avvp_jax.checkpoint.save_params_checkpoint`):
`out_dir/config.json` + `out_dir/params/`, plus `out_dir/label_embeddings.npy` for LEAP (named by the
config's `model.leap.label_embeddings`, so the folder holds all the model needs while it stays where it was
written). It is written to a temporary folder beside `out_dir` and renamed when complete: a failed
conversion leaves nothing behind. `launch/evaluate.py --checkpoint=OUT_DIR` and `avvp_jax.load_parser(OUT_DIR)`
(an AVE localizer: `avvp_jax.load_localizer(OUT_DIR)`) read it.

torch is needed only to read the file: the `parity` extra (`pip install -e .[parity]`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

from absl import logging
import ml_collections
import numpy as np

from avvp_jax.convert import common as convert_common
from avvp_jax.convert import han as convert_han
from avvp_jax.convert import leap as convert_leap
from avvp_jax.convert import localizers
from avvp_jax.convert import torch_pickle
from avvp_jax.errors import InputError

PyTree = Any

LLP_MODELS = ("han", "leap", "valor", "jomold")
MODELS = LLP_MODELS + localizers.MODELS
AUTO = "auto"
TITLES = {**convert_han.TITLES, "leap": convert_leap.TITLE, **localizers.TITLES}
LABEL_EMBEDDINGS_FILE = "label_embeddings.npy"
# Key prefixes only one model's file has, in the order they are tried.
SIGNATURES = (
    ("leap", ("MMP.", "AVL.")),
    ("valor", ("hat_encoder.final_norm_a.", "hat_encoder.final_norm_v.")),
    ("han", ("audio_encoder.", "visual_encoder.", "cmt_encoder.")),
    ("jomold", ("hat_encoder.norm1.", "hat_encoder.norm2.")),
)
# What JoMoLD's main.py saves beside "model".
JOMOLD_WRAPPER = frozenset({"optimizer", "scheduler"})


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
  """The tensors of a PyTorch checkpoint as float32 numpy arrays (see `convert_common.read_checkpoint`)."""
  return convert_common.read_checkpoint(path)[0]


@dataclasses.dataclass(frozen=True)
class Converted:
  """An official checkpoint in avvp_jax form.

  Attributes:
    model: which official model it was (one of `MODELS`).
    config: the config of the same model in avvp_jax (its base config's other sections kept).
    params: one model's params tree for `avvp_jax.models.build_model(config.model)` (no seed axis).
    label_table: LEAP only, the [25, D] float32 class-name table; None for the others.
  """

  model: str
  config: ml_collections.ConfigDict
  params: PyTree
  label_table: np.ndarray | None = None


def detect_model(
    state: Mapping[str, np.ndarray], wrapper: frozenset[str] = frozenset()
) -> str | None:
  """The official model whose keys `state` has (`wrapper`: the keys of the dict the file wrapped it in).

  Returns one of `MODELS`, or None when no model's signature is there (a HAN-shaped state_dict without its
  unused modules, or something else).
  """
  if wrapper & JOMOLD_WRAPPER and any(key.startswith(convert_han.LAYERS_PREFIX) for key in state):
    return "jomold"
  for model, prefixes in SIGNATURES:
    if any(key.startswith(prefixes) for key in state):
      return model
  return None


def _signature_key(state: Mapping[str, np.ndarray], model: str) -> str:
  prefixes = dict(SIGNATURES)[model]
  return next(
      (key for key in sorted(state) if key.startswith(prefixes)),
      "its wrapper's optimizer/scheduler",
  )


def _detect(
    state: Mapping[str, np.ndarray], wrapper: frozenset[str], class_name: str
) -> tuple[str | None, str, bool]:
  """(model, evidence, certain) of either task's official models (`localizers.detect`, then `detect_model`)."""
  model, evidence = localizers.detect(state, class_name)
  if model is not None:
    return model, evidence, localizers.certain(model, evidence)
  model = detect_model(state, wrapper)
  return model, (f"it has {_signature_key(state, model)}" if model else ""), True


def resolve_model(
    requested: str,
    state: Mapping[str, np.ndarray],
    wrapper: frozenset[str],
    path: str,
    class_name: str = "",
) -> str:
  """`requested`, checked against the keys (and a pickled module's class); for "auto" the detected model.

  Raises:
    InputError: an unknown name, a file of another model than `requested`, one of no known model, or (auto) a
      state_dict of A+V-att or of the weak A+V-att, whose keys are the same.
  """
  if requested not in MODELS + (AUTO,):
    raise InputError(f"--model={requested!r} is unknown: use one of {', '.join(MODELS + (AUTO,))}.")
  detected, evidence, sure = _detect(state, wrapper, class_name)
  if requested == AUTO:
    if detected is not None and sure:
      return detected
    if detected is not None:
      twin = localizers.SAME_KEYS[detected]
      raise InputError(
          f"checkpoint {path!r} is a state_dict of {TITLES[detected]} or of {TITLES[twin]}, whose keys are "
          f"the same: pass --model={detected} or --model={twin}."
      )
    if any(key.startswith(convert_han.LAYERS_PREFIX) for key in state):
      return "han"  # HAN-shaped, without the unused modules of the official HAN's file
    raise InputError(
        f"checkpoint {path!r} is none of the official models converted here (keys "
        f"{convert_common.names(state)}): pass a checkpoint of one of {', '.join(MODELS)}, or --model."
    )
  if detected is not None and detected != requested:
    if not sure and requested == localizers.SAME_KEYS[detected]:
      return requested  # a state_dict of one of the two A+V-att models: the name decides
    article = "an" if TITLES[detected][0] in "AEIOU" else "a"
    raise InputError(
        f"checkpoint {path!r} is {article} {TITLES[detected]} checkpoint ({evidence}), not "
        f"{TITLES[requested]}: pass --model={detected} or --model=auto."
    )
  return requested


def _read(path: str, model: str) -> tuple[dict[str, np.ndarray], frozenset[str], str]:
  """(state, wrapper keys, pickled class) of the file: a localizer's through `torch_pickle` (whole pickled
  modules or state_dicts, in the file's dtypes), an LLP model's through `torch.load(weights_only=True)`; for
  "auto" the latter, then the former when the file is a pickled module."""
  if model in localizers.MODELS:
    pickled = torch_pickle.read_module_state(path)
    return pickled.state, frozenset(), pickled.class_name
  try:
    state, wrapper = convert_common.read_checkpoint(path)
    return state, wrapper, ""
  except InputError:
    if model != AUTO or not os.path.isfile(path):
      raise
  pickled = torch_pickle.read_module_state(path)  # e.g. AVE-ECCV18's or PSP's torch.save(model)
  return pickled.state, frozenset(), pickled.class_name


def load_official(
    path: str | os.PathLike[str],
    model: str = AUTO,
    config: ml_collections.ConfigDict | None = None,
    *,
    label_embeddings: str | None = None,
    num_heads: int | None = None,
) -> Converted:
  """Reads an official checkpoint and returns the same model in avvp_jax form.

  Args:
    path: the `.pt` file the official training script saved.
    model: one of `MODELS`, or "auto" (from the keys, or a pickled module's class).
    config: the base config (data, optimizer, ... sections); None: `configs/han.py` (HAN, VALOR, JoMoLD),
      `configs/leap_mmpyr.py` (LEAP), or an AVE localizer's run card (`localizers.CONFIGS`). Its model section
      is replaced by the checkpoint's architecture (an AVE localizer's: also `data.ave.supervision`).
    label_embeddings: LEAP only, and needed for it: the class-name table it was trained with (the official
      `llp_label_glove_embeddings.pt`, or that table as .npy).
    num_heads: attention heads, which the files do not hold: VALOR and LEAP only (None: 8, their official
      runs'); HAN and JoMoLD have one.

  Raises:
    InputError: unreadable file, a checkpoint of another model, missing or unknown keys or wrong shapes (each
      named), or a label table that does not fit.
  """
  path = os.fspath(path)
  if model not in MODELS + (AUTO,):
    resolve_model(model, {}, frozenset(), path)  # raises: unknown name
  state, wrapper, class_name = _read(path, model)
  model = resolve_model(model, state, wrapper, path, class_name)
  if model in localizers.MODELS:
    given = [
        f"--{flag}"
        for flag, value in (("label_embeddings", label_embeddings), ("num_heads", num_heads))
        if value
    ]
    if given:
      raise InputError(
          f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} for LLP models, but {path!r} is a "
          f"{TITLES[model]} checkpoint, whose architecture the file fixes: leave {' and '.join(given)} out."
      )
    config, params = localizers.official_to_flax(state, model, config, path)
    return Converted(model, config, params)
  state = {key: np.asarray(value, np.float32) for key, value in state.items()}
  if model == "leap":
    config, params, table = convert_leap.load_official(
        path, label_embeddings, config, num_heads, state=state
    )
    return Converted(model, config, params, table)
  if label_embeddings:
    raise InputError(
        f"--label_embeddings is for LEAP, but {path!r} is a {TITLES[model]} checkpoint, whose decoder "
        "reads no class names: leave it out."
    )
  config, params = convert_han.load_official(path, model, config, num_heads, state=state)
  return Converted(model, config, params)


def convert_official(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    model: str = AUTO,
    config: ml_collections.ConfigDict | None = None,
    *,
    label_embeddings: str | None = None,
    num_heads: int | None = None,
) -> str:
  """`load_official`, then writes the params checkpoint `out_dir` (module docstring), all or nothing.

  Returns the absolute `out_dir`.
  """
  converted = load_official(
      path, model, config, label_embeddings=label_embeddings, num_heads=num_heads
  )
  files, config_paths = {}, {}
  if converted.label_table is not None:
    files[LABEL_EMBEDDINGS_FILE] = converted.label_table
    config_paths["model.leap.label_embeddings"] = LABEL_EMBEDDINGS_FILE
  out_dir = convert_common.write_checkpoint(
      out_dir, converted.config, converted.params, files, config_paths
  )
  logging.info("Wrote the converted %s checkpoint to %s", TITLES[converted.model], out_dir)
  return out_dir


def load_official_han(
    path: str | os.PathLike[str], config: ml_collections.ConfigDict | None = None
) -> tuple[ml_collections.ConfigDict, PyTree]:
  """(config, params) of an official HAN (`MMIL_Net`) state_dict: `load_official(path, "han", config)`."""
  converted = load_official(path, "han", config)
  return converted.config, converted.params


def convert_official_han(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: ml_collections.ConfigDict | None = None,
) -> str:
  """`convert_official(path, out_dir, "han", config)`."""
  return convert_official(path, out_dir, "han", config)
