"""CMBS official state_dicts (marmot-xy/CMBS) -> params of `avvp_jax.models.cmbs.CMBS` / `WeakCMBS`.

  params_from_state_dict(state, model="supervised" | "weak", path="state_dict") -> params
  load_official(path, model) -> params       (reads the file; torch is the `parity` extra)

The official scripts save `nn.DataParallel(model).state_dict()` (keys `module.*`, stripped here) of a model
cast to float64 (`model.double()`); the mapping keeps the arrays' dtype (`load_official` reads float32).
Layouts: `Linear.weight [out, in]` -> Dense kernel [in, out]; `nn.MultiheadAttention`'s packed
`in_proj_weight [3D, D]` -> query, key and value kernels; the weak model's bias-free kernel-1 `Conv1d`
`CAS_model.classifier.0.weight [29, D, 1]` -> a bias-free Dense kernel [D, 29]; the stacks' `layers.{i}.*`
-> one array with a leading layer axis (`avvp_jax.models.cmran`).

Keys of modules the official forward never calls are accepted and dropped: each relation module's template
layer (`*.encoder_layer.*`, `*.decoder_layer.*`, of which the stacks are deep copies), each decoder layer's
`self_attn`, the attention's `ave_bottleneck`, the weak model's `classifier`, the supervised model's
`video_norm` and `audio_norm`. A missing or unknown key, or a key whose shape does not fit the model, is a
one-line InputError naming it.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from avvp_jax.convert import common
from avvp_jax.errors import InputError
from avvp_jax.models import cmbs
from avvp_jax.models import lstm

PyTree = Any
State = Mapping[str, np.ndarray]
# flax path -> (the torch keys it is made of, the function of those arrays that makes it)
Plan = dict[tuple[str, ...], tuple[tuple[str, ...], Callable[..., np.ndarray]]]

MODELS = ("supervised", "weak")
TITLES = {"supervised": "CMBS (supv_main_model)", "weak": "CMBS (weak_main_model)"}
FIX = "pass the state_dict saved by CMBS's supv_main.py or weakly_main.py for the model asked for"
ATTENTION = (
    "video_query",
    "video_key",
    "video_value",
    "affine_video_ave",
    "affine_video_3",
    "ave_v_att",
    "affine_audio_1",
    "affine_video_1",
    "affine_bottleneck",
    "affine_v_c_att",
    "affine_video_2",
    "affine_audio_2",
    "affine_v_s_att",
)
ENCODER_LAYERS, DECODER_LAYERS = 2, 1
COMMON_IGNORED = (
    "video_encoder.encoder_layer.",
    "audio_encoder.encoder_layer.",
    "video_decoder.decoder_layer.",
    "audio_decoder.decoder_layer.",
    "spatial_channel_att.ave_bottleneck.",
)
IGNORED = {
    "weak": COMMON_IGNORED + ("classifier.",),
    "supervised": COMMON_IGNORED + ("video_norm.", "audio_norm."),
}
_IGNORED_INFIX = ".self_attn."  # decoder layers' self_attn (encoder layers' is used; see _ignored)


def _ignored(model: str, key: str) -> bool:
  if key.startswith(IGNORED[model]):
    return True
  return (
      key.startswith(("video_decoder.decoder.", "audio_decoder.decoder.")) and _IGNORED_INFIX in key
  )


def _same(x: np.ndarray) -> np.ndarray:
  return x


def _linear(plan: Plan, path: tuple[str, ...], key: str, bias: bool = True) -> None:
  plan[path + ("kernel",)] = ((f"{key}.weight",), lambda w: w.T)
  if bias:
    plan[path + ("bias",)] = ((f"{key}.bias",), _same)


def _norm(plan: Plan, path: tuple[str, ...], key: str) -> None:
  plan[path + ("scale",)] = ((f"{key}.weight",), _same)
  plan[path + ("bias",)] = ((f"{key}.bias",), _same)


def _attention(plan: Plan, path: tuple[str, ...], key: str) -> None:
  for i, part in enumerate(("query", "key", "value")):
    plan[path + (part, "kernel")] = ((f"{key}.in_proj_weight",), lambda w, i=i: np.split(w, 3)[i].T)
    plan[path + (part, "bias")] = ((f"{key}.in_proj_bias",), lambda b, i=i: np.split(b, 3)[i])
  _linear(plan, path + ("out",), f"{key}.out_proj")


def _relation(plan: Plan, name: str, cross_modal: bool, num_layers: int) -> None:
  """`affine_matrix` and the stack `{name}.{encoder|decoder}.layers.{i}.*`, stacked on a leading axis."""
  _linear(plan, (name, "affine_matrix"), f"{name}.affine_matrix")
  stack = "decoder" if cross_modal else "encoder"
  attention = "multihead_attn" if cross_modal else "self_attn"
  per_layer = []
  for i in range(num_layers):
    layer: Plan = {}
    prefix = f"{name}.{stack}.layers.{i}"
    _attention(layer, (attention,), f"{prefix}.{attention}")
    _linear(layer, ("linear1",), f"{prefix}.linear1")
    _linear(layer, ("linear2",), f"{prefix}.linear2")
    _norm(layer, ("norm1",), f"{prefix}.norm1")
    _norm(layer, ("norm2",), f"{prefix}.norm2")
    per_layer.append(layer)
  for sub_path in per_layer[0]:
    parts = [layer[sub_path] for layer in per_layer]
    keys = tuple(key for part_keys, _ in parts for key in part_keys)
    fns = [fn for _, fn in parts]
    plan[(name, stack) + sub_path] = (
        keys,
        lambda *ws, fns=fns: np.stack([fn(w) for fn, w in zip(fns, ws)]),
    )


def plan(model: str) -> Plan:
  """Where each param of the `model` ("supervised" or "weak") comes from in the official state_dict."""
  if model not in MODELS:
    raise InputError(f"CMBS model {model!r} is unknown: use one of {MODELS}.")
  weak = model == "weak"
  result: Plan = {}
  _linear(result, ("v_fc",), "v_fc")
  for name in ATTENTION:
    _linear(result, ("spatial_channel_att", name), f"spatial_channel_att.{name}")
  _norm(result, ("spatial_channel_att", "norm"), "spatial_channel_att.norm")
  for modality in ("video", "audio"):
    _relation(result, f"{modality}_encoder", False, ENCODER_LAYERS)
    _relation(result, f"{modality}_decoder", True, DECODER_LAYERS)
    _linear(result, (f"{modality}_gated",), f"{modality}_gated.0")
    _linear(result, (f"{modality}_cas",), f"{modality}_cas")
  for name in ("AVInter", "VAInter"):
    _attention(result, (name, "video_multihead"), f"{name}.video_multihead")
    _norm(result, (name, "norm1"), f"{name}.norm1")
  if weak:
    result[("CAS_model", "kernel")] = (("CAS_model.classifier.0.weight",), lambda w: w[:, :, 0].T)
  else:
    _linear(result, ("localize_module", "classifier"), "localize_module.classifier")
    _linear(result, ("localize_module", "event_classifier"), "localize_module.event_classifier")
    for rnn in ("audio_rnn", "visual_rnn"):
      _lstm(result, ("audio_visual_rnn_layer", rnn), f"audio_visual_rnn_layer.{rnn}")
  return result


def _lstm(plan_: Plan, path: tuple[str, ...], key: str) -> None:
  """A one-layer bidirectional `nn.LSTM`: params keep torch's names and layouts (`avvp_jax.models.lstm`)."""
  for reverse in (False, True):
    for name in lstm.param_names(0, reverse):
      plan_[path + (name,)] = ((f"{key}.{name}",), _same)


def strip_module_prefix(state: State) -> dict[str, np.ndarray]:
  """DataParallel's `module.` prefix removed (when every key has it)."""
  if state and all(key.startswith("module.") for key in state):
    return {key[len("module.") :]: value for key, value in state.items()}
  return dict(state)


def abstract_params(model: str) -> PyTree:
  """The shapes of the params of the official-sized model."""
  module = cmbs.WeakCMBS() if model == "weak" else cmbs.CMBS()
  audio = jax.ShapeDtypeStruct((1, 10, 128), jnp.float32)
  visual = jax.ShapeDtypeStruct((1, 10, 7, 7, 512), jnp.float32)
  init = lambda a, v: module.init(jax.random.key(0), a, v, train=False)
  return jax.eval_shape(init, audio, visual)["params"]


def params_from_state_dict(
    state: State, model: str = "supervised", path: str = "state_dict"
) -> dict[str, Any]:
  """The official state_dict (numpy arrays; `module.` prefixes allowed) as params of `model`, same dtype.

  Raises:
    InputError: a missing, unknown or misshapen key (named), or an unknown model.
  """
  recipe = plan(model)
  state = strip_module_prefix(state)
  used = {key for keys, _ in recipe.values() for key in keys}
  common.check_keys(state, used, lambda key: _ignored(model, key), path, TITLES[model], FIX)
  expected = {
      tuple(getattr(p, "key") for p in leaf_path): leaf.shape
      for leaf_path, leaf in jax.tree_util.tree_leaves_with_path(abstract_params(model))
  }
  if set(expected) != set(recipe):
    raise RuntimeError(
        f"the CMBS mapping and model disagree on {sorted(set(expected) ^ set(recipe))[:8]}: the "
        "mapping must follow the model's param names."
    )
  params: dict[str, Any] = {}
  for flax_path, (keys, fn) in recipe.items():
    arrays = [np.asarray(state[key]) for key in keys]
    want = expected[flax_path]
    try:
      value = fn(*arrays)
    except (ValueError, IndexError):  # e.g. a packed projection that does not split in three
      value = None
    if value is None or tuple(value.shape) != tuple(want):
      got = ", ".join(f"{key} {tuple(a.shape)}" for key, a in zip(keys, arrays))
      raise InputError(
          f"{path!r} does not fit the official {TITLES[model]}: {got} cannot make "
          f"{'/'.join(flax_path)} of shape {tuple(want)}; {FIX}."
      )
    node = params
    for part in flax_path[:-1]:
      node = node.setdefault(part, {})
    node[flax_path[-1]] = value
  return params


def load_official(path: str | os.PathLike[str], model: str = "supervised") -> dict[str, Any]:
  """The params of the official checkpoint at `path` (float32; torch needed to read it)."""
  state, _ = common.read_checkpoint(path)
  return params_from_state_dict(state, model, os.fspath(path))
