"""Official PyTorch HAN checkpoints -> avvp_jax config and Flax params.

`load_official_han(path) -> (config, params)` reads a `state_dict` saved by the official HAN
(YapengTian/AVVP-ECCV20, `nets/net_audiovisual.py`, class `MMIL_Net`; `main_avvp.py` saves it with
`torch.save(model.state_dict(), "models/MMIL_Net.pt")`) and returns the config and params of the same model
in avvp_jax (encoder "han", decoder "mmil"). `convert_official_han(path, out_dir)` also writes them as a
params-only checkpoint (`avvp_jax.checkpoint.save_params_checkpoint`: `out_dir/config.json` +
`out_dir/params/`) that `launch/evaluate.py` and `launch/parse.py` accept.

The official keys and what they become:
  fc_a, fc_v, fc_st, fc_fusion          the input embeddings (audio, frames, motion, frames+motion fusion)
  hat_encoder.layers.0.*                the HAN layer, shared by both modalities: self_attn and cm_attn
                                        (nn.MultiheadAttention: in_proj_weight/bias = stacked q, k, v;
                                        out_proj), linear1, linear2, norm1, norm2
  fc_prob, fc_frame_att, fc_av_att      the MMIL decoder (segment classifier, temporal and modality attention)
Kept in the file but never used by the official forward, accepted and ignored: `audio_encoder.*`,
`visual_encoder.*`, `cmt_encoder.*` and the encoder's final `hat_encoder.norm1/norm2` (the official
`Encoder` is built without `norm`). A torch Linear `weight [out, in]` is a Flax kernel `[in, out]`.

torch is needed only here, and only to read the file: the `parity` extra (`pip install -e .[parity]`).
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
from typing import Any, Mapping

from absl import logging
import jax
import ml_collections
import numpy as np

from avvp_jax.errors import InputError

PyTree = Any

# Modules of MMIL_Net that its forward never calls: their keys are accepted and dropped.
IGNORED_PREFIXES = ("audio_encoder.", "visual_encoder.", "cmt_encoder.", "hat_encoder.norm1.",
                    "hat_encoder.norm2.")
_LAYER = "hat_encoder.layers.0."
_LINEARS = ("fc_a", "fc_v", "fc_st", "fc_fusion", "fc_prob", "fc_frame_att", "fc_av_att",
            _LAYER + "linear1", _LAYER + "linear2", _LAYER + "self_attn.out_proj",
            _LAYER + "cm_attn.out_proj")
_NORMS = (_LAYER + "norm1", _LAYER + "norm2")
_ATTENTIONS = (_LAYER + "self_attn", _LAYER + "cm_attn")
# Every key the official forward reads.
USED_KEYS = tuple(sorted(
    [f"{name}.{p}" for name in _LINEARS + _NORMS for p in ("weight", "bias")]
    + [f"{name}.{p}" for name in _ATTENTIONS for p in ("in_proj_weight", "in_proj_bias")]))
_SHOW_AT_MOST = 8


def _names(keys) -> str:
  keys = sorted(keys)
  return ", ".join(keys[:_SHOW_AT_MOST]) + (f", ... ({len(keys)} in all)" if len(keys) > _SHOW_AT_MOST else "")


# --- reading the official file ----------------------------------------------------------------------


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
  """The tensors of a PyTorch checkpoint file as float32 numpy arrays, keyed by parameter name.

  Accepts a bare `state_dict`, a dict wrapping one under "state_dict" or "model", and the "module."
  prefix of a DataParallel save.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise InputError(f"checkpoint {path!r} does not exist: pass the .pt file saved by the official "
                     "main_avvp.py (e.g. models/MMIL_Net.pt).")
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise InputError("reading an official PyTorch checkpoint needs torch: install the parity extra "
                     "(pip install -e '.[parity]', which pins torch==2.13.0).") from error
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as error:  # pylint: disable=broad-except  (torch raises many types for a bad file)
    raise InputError(f"checkpoint {path!r} could not be read by torch.load ({type(error).__name__}): "
                     "pass a state_dict saved with torch.save(model.state_dict(), path).") from error
  for wrapper in ("state_dict", "model"):
    if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
      state = state[wrapper]
  if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
    raise InputError(f"checkpoint {path!r} is not a state_dict of tensors: pass the file saved with "
                     "torch.save(model.state_dict(), path).")
  if state and all(key.startswith("module.") for key in state):
    state = {key[len("module."):]: value for key, value in state.items()}
  return {key: value.detach().to(torch.float32).numpy() for key, value in state.items()}


def _check_keys(state: Mapping[str, np.ndarray], path: str) -> None:
  used = set(USED_KEYS)
  missing = used - set(state)
  unknown = {key for key in state if key not in used and not key.startswith(IGNORED_PREFIXES)}
  if missing or unknown:
    parts = []
    if missing:
      parts.append(f"missing {_names(missing)}")
    if unknown:
      parts.append(f"unknown {_names(unknown)}")
    raise InputError(f"checkpoint {path!r} is not an official HAN (MMIL_Net) state_dict: "
                     f"{'; '.join(parts)}; pass the .pt file saved by the official main_avvp.py.")


def official_dims(state: Mapping[str, np.ndarray], path: str = "checkpoint") -> dict[str, int]:
  """Input widths, hidden width, feed-forward width and class count read off the official shapes.

  Raises:
    InputError: when the shapes do not fit together as in `MMIL_Net`.
  """
  hidden, audio = state["fc_a.weight"].shape
  dims = dict(audio=audio, frames=state["fc_v.weight"].shape[1], motion=state["fc_st.weight"].shape[1],
              hidden=hidden, ffn=state[_LAYER + "linear1.weight"].shape[0],
              classes=state["fc_prob.weight"].shape[0])
  h, f, c = hidden, dims["ffn"], dims["classes"]
  expected = {
      "fc_v.weight": (h, dims["frames"]), "fc_st.weight": (h, dims["motion"]),
      "fc_fusion.weight": (h, 2 * h), "fc_prob.weight": (c, h), "fc_frame_att.weight": (c, h),
      "fc_av_att.weight": (c, h), _LAYER + "linear1.weight": (f, h), _LAYER + "linear2.weight": (h, f),
      _LAYER + "self_attn.in_proj_weight": (3 * h, h), _LAYER + "cm_attn.in_proj_weight": (3 * h, h),
      _LAYER + "self_attn.out_proj.weight": (h, h), _LAYER + "cm_attn.out_proj.weight": (h, h),
      _LAYER + "self_attn.in_proj_bias": (3 * h,), _LAYER + "cm_attn.in_proj_bias": (3 * h,),
  }
  for name in _LINEARS:
    expected[f"{name}.bias"] = (expected.get(f"{name}.weight", state[f"{name}.weight"].shape)[0],)
  for name in _NORMS:
    expected[f"{name}.weight"] = expected[f"{name}.bias"] = (h,)
  wrong = [f"{key} {tuple(state[key].shape)} (expected {shape})" for key, shape in sorted(expected.items())
           if tuple(state[key].shape) != shape]
  if wrong:
    raise InputError(f"checkpoint {path!r} has shapes that do not fit the official HAN: "
                     f"{'; '.join(wrong[:_SHOW_AT_MOST])}; pass an MMIL_Net state_dict.")
  return {key: int(value) for key, value in dims.items()}


# --- mapping onto the Flax model --------------------------------------------------------------------


def _dense(state: Mapping[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
  return {"kernel": state[f"{name}.weight"].T, "bias": state[f"{name}.bias"]}


def _attention(state: Mapping[str, np.ndarray], name: str) -> dict[str, dict[str, np.ndarray]]:
  """nn.MultiheadAttention's packed [3D, D] input projection as separate query/key/value Dense params."""
  weights = np.split(state[f"{name}.in_proj_weight"], 3, axis=0)
  biases = np.split(state[f"{name}.in_proj_bias"], 3, axis=0)
  params = {part: {"kernel": w.T, "bias": b} for part, w, b in zip(("query", "key", "value"), weights, biases)}
  params["out"] = _dense(state, f"{name}.out_proj")
  return params


def _norm(state: Mapping[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
  return {"scale": state[f"{name}.weight"], "bias": state[f"{name}.bias"]}


def official_to_flax(state: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """The params tree of `avvp_jax.models` (encoder "han", decoder "mmil") from checked official tensors."""
  layer = {"self_attn": _attention(state, _LAYER + "self_attn"),
           "cm_attn": _attention(state, _LAYER + "cm_attn"),
           "linear1": _dense(state, _LAYER + "linear1"), "linear2": _dense(state, _LAYER + "linear2"),
           "norm1": _norm(state, _LAYER + "norm1"), "norm2": _norm(state, _LAYER + "norm2")}
  params = {
      "embed": {name: _dense(state, name) for name in ("fc_a", "fc_v", "fc_st", "fc_fusion")},
      "encoder": {"layers_0": layer},
      "decoder": {name: _dense(state, name) for name in ("fc_prob", "fc_frame_att", "fc_av_att")},
  }
  return jax.tree.map(lambda x: np.ascontiguousarray(x, dtype=np.float32), params)


def default_han_config() -> ml_collections.ConfigDict:
  """`configs/han.py:get_config()` of the source checkout this package lives in."""
  root = pathlib.Path(__file__).resolve().parents[1]
  path = root / "configs" / "han.py"
  if not path.is_file():
    raise InputError("configs/han.py is not next to this avvp_jax installation: pass a config "
                     "(launch/convert_official.py --config=configs/han.py).")
  import sys  # pylint: disable=g-import-not-at-top
  if str(root) not in sys.path:
    sys.path.insert(0, str(root))  # han.py imports `configs.common`
  spec = importlib.util.spec_from_file_location("configs.han", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def official_han_config(dims: Mapping[str, int],
                        base: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
  """`base` (default `configs/han.py`) with the model section set to the official HAN of `dims`."""
  from avvp_jax.data import annotations  # pylint: disable=g-import-not-at-top
  if dims["classes"] != annotations.NUM_CLASSES:
    raise InputError(f"the checkpoint classifies {dims['classes']} classes, not LLP's "
                     f"{annotations.NUM_CLASSES}: pass an official LLP HAN checkpoint.")
  config = (default_han_config() if base is None else base).copy_and_resolve_references()
  model = config.model
  model.encoder, model.decoder = "han", "mmil"
  model.input_dims.audio = dims["audio"]
  model.input_dims.frames = dims["frames"]
  model.input_dims.motion = dims["motion"]
  model.hidden_dim = dims["hidden"]
  # The official HAN: one layer of one head, shared by both modalities, fed the embedded inputs.
  model.han.num_layers = 1
  model.han.num_heads = 1
  model.han.ffn_dim = 0 if dims["ffn"] == dims["hidden"] else dims["ffn"]
  model.han.stacking = "official"
  model.han.share_modalities = True
  with config.unlocked():
    config.num_seeds = 1  # one model: a params checkpoint of one replica
  return config


def _check_tree(params: PyTree, config: ml_collections.ConfigDict) -> None:
  """The converted tree must have exactly the structure and shapes of the model's own params."""
  from avvp_jax import models  # pylint: disable=g-import-not-at-top
  from avvp_jax import train  # pylint: disable=g-import-not-at-top
  model = models.build_model(config.model)
  abstract = jax.eval_shape(lambda: model.init({"params": jax.random.key(0)},
                                               *train.dummy_inputs(config), train=False))["params"]
  expected = {jax.tree_util.keystr(p): x.shape for p, x in jax.tree_util.tree_leaves_with_path(abstract)}
  got = {jax.tree_util.keystr(p): x.shape for p, x in jax.tree_util.tree_leaves_with_path(params)}
  if expected != got:
    differing = sorted(set(expected.items()) ^ set(got.items()))
    raise RuntimeError(f"the converted params do not fit avvp_jax.models (HAN + MMIL): {differing[:8]}; "
                       "avvp_jax.convert.official_to_flax must follow the model's param names.")


def load_official_han(path: str | os.PathLike[str], config: ml_collections.ConfigDict | None = None
                      ) -> tuple[ml_collections.ConfigDict, PyTree]:
  """Reads an official HAN (`MMIL_Net`) state_dict and returns (config, params) of the same model.

  Args:
    path: the `.pt` file saved by the official `main_avvp.py` (`torch.save(model.state_dict(), ...)`).
    config: the base config (data, optimizer, ... sections); None: `configs/han.py`. Its model section is
      set to the official architecture read off the checkpoint's shapes.

  Returns:
    (config, params): params is the `{"embed", "encoder", "decoder"}` tree of
    `avvp_jax.models.build_model(config.model)`, float32 `jax.Array`s.

  Raises:
    InputError: unreadable file, missing or unknown keys (both named), or shapes that do not fit.
  """
  path = os.fspath(path)
  state = read_state_dict(path)
  _check_keys(state, path)
  dims = official_dims(state, path)
  config = official_han_config(dims, config)
  params = official_to_flax(state)
  _check_tree(params, config)
  ignored = sum(key.startswith(IGNORED_PREFIXES) for key in state)
  logging.info("Converted %s: %d official tensors used, %d of unused modules ignored.", path,
               len(USED_KEYS), ignored)
  return config, jax.tree.map(jax.numpy.asarray, params)


def convert_official_han(path: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                         config: ml_collections.ConfigDict | None = None) -> str:
  """`load_official_han`, then writes `out_dir/config.json` + `out_dir/params/` (a params checkpoint).

  `launch/evaluate.py --checkpoint=OUT_DIR` and `avvp_jax.checkpoint.restore_params(OUT_DIR)` read it.
  Returns the absolute `out_dir`.
  """
  from avvp_jax import checkpoint  # pylint: disable=g-import-not-at-top
  config, params = load_official_han(path, config)
  out_dir = checkpoint.save_params_checkpoint(os.fspath(out_dir), config, checkpoint.stack_seeds(params))
  logging.info("Wrote the converted checkpoint to %s", out_dir)
  return out_dir
