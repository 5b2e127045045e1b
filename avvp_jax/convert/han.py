"""HAN-shaped official checkpoints -> avvp_jax (encoder "han", decoder "mmil"): HAN, VALOR and JoMoLD.

All three are a `MMIL_Net` of the same parts under the same names: the input embeddings `fc_a, fc_v, fc_st,
fc_fusion`, HAN layers `hat_encoder.layers.{i}.*` (self_attn and cm_attn: `nn.MultiheadAttention`, whose
in_proj_weight/bias stack q, k, v; out_proj; linear1, linear2; norm1, norm2), shared by both modalities, and
the MMIL decoder `fc_prob, fc_frame_att, fc_av_att`. What differs, and what it becomes here:

  han     YapengTian/AVVP-ECCV20 `nets/net_audiovisual.py` (`main_avvp.py` saves `models/MMIL_Net.pt`): one
          layer of one head, fed the embedded inputs (`han.stacking="official"`). Unused modules kept in the
          file, ignored: `audio_encoder.*`, `visual_encoder.*`, `cmt_encoder.*`, `hat_encoder.norm1/norm2`.
  valor   Franklin905/VALOR `main_network.py` (`main_avvp.py` saves `models/<name>/checkpoint_best.pt`;
          VALOR: hidden 512, 1 layer; VALOR+: hidden 256, 4 layers; VALOR++: the same on CLAP audio and CLIP
          frames, with R(2+1)D-18 motion): `--nhead 8` heads (not in the file: `num_heads`, default 8),
          feed-forward `--ff_dim 1024`, and layers chained so that the visual update attends to the audio
          the same layer has just updated (`han.stacking="sequential"`). `hat_encoder.final_norm_a/v` are
          applied only with `--norm_where pre_norm`; every released VALOR run is `post_norm`, the layer this
          package implements, so they are ignored. A `pre_norm` save has the same keys and cannot be told
          apart: it is converted as post-norm, which is wrong for it (VALOR's scripts never train one).
          VALOR's [64, D] CLAP feature-map input path is the `clip_clap` data layout's build-time pooling.
  jomold  MCG-NJU/JoMoLD `nets/net_audiovisual.py` (`main.py` saves {"model": state_dict, "optimizer",
          "scheduler", RNG states, "epochs"}: `model` is taken): one head, layers chained as usual
          (`han.stacking="stacked"`, the same as "official" for its default single layer), `hat_encoder.
          norm1/norm2` unused. Its classifier dropout and the contrastive `sims_after` output are training
          aids; `sims_after` is the cosine of our `audio_embedding` and `visual_embedding` over 0.2.

torch is needed only to read the file: the `parity` extra (`pip install -e .[parity]`).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from absl import logging
import jax
import ml_collections
import numpy as np

from avvp_jax.convert import common as common
from avvp_jax.tasks.llp import annotations
from avvp_jax.tasks.llp import features
from avvp_jax.errors import InputError

PyTree = Any

MODELS = ("han", "valor", "jomold")
TITLES = {"han": "HAN (MMIL_Net)", "valor": "VALOR (MMIL_Net)", "jomold": "JoMoLD (MMIL_Net)"}
FIXES = {
    "han": "pass the .pt file saved by the official main_avvp.py",
    "valor": "pass the checkpoint_best.pt saved by VALOR's main_avvp.py",
    "jomold": "pass the checkpoint saved by JoMoLD's main.py (its 'model' entry is converted)",
}
# Heads of the official runs: HAN and JoMoLD hard-code one; VALOR's scripts pass --nhead 8.
DEFAULT_HEADS = {"han": 1, "valor": 8, "jomold": 1}
STACKING = {"han": "official", "valor": "sequential", "jomold": "stacked"}
# Keys of modules that the official forward never calls: accepted and dropped.
IGNORED_PREFIXES = {
    "han": (
        "audio_encoder.",
        "visual_encoder.",
        "cmt_encoder.",
        "hat_encoder.norm1.",
        "hat_encoder.norm2.",
    ),
    "valor": ("hat_encoder.final_norm_a.", "hat_encoder.final_norm_v."),
    "jomold": ("hat_encoder.norm1.", "hat_encoder.norm2."),
}
LAYERS_PREFIX = "hat_encoder.layers."
EMBEDDINGS = ("fc_a", "fc_v", "fc_st", "fc_fusion")
DECODER = ("fc_prob", "fc_frame_att", "fc_av_att")
_LAYER_LINEARS = ("linear1", "linear2", "self_attn.out_proj", "cm_attn.out_proj")
_LAYER_NORMS = ("norm1", "norm2")
_LAYER_ATTENTIONS = ("self_attn", "cm_attn")


def used_keys(num_layers: int) -> tuple[str, ...]:
  """Every key the official forward of a `num_layers`-layer MMIL_Net reads."""
  linears = list(EMBEDDINGS + DECODER)
  norms, attentions = [], []
  for i in range(num_layers):
    layer = f"{LAYERS_PREFIX}{i}."
    linears += [layer + name for name in _LAYER_LINEARS]
    norms += [layer + name for name in _LAYER_NORMS]
    attentions += [layer + name for name in _LAYER_ATTENTIONS]
  return tuple(
      sorted(
          [f"{name}.{p}" for name in linears + norms for p in ("weight", "bias")]
          + [f"{name}.{p}" for name in attentions for p in ("in_proj_weight", "in_proj_bias")]
      )
  )


def num_layers_of(state: Mapping[str, np.ndarray], model: str) -> int:
  """HAN's file has one layer; VALOR and JoMoLD as many as `hat_encoder.layers.{i}` in the file (at least 1)."""
  if model == "han":
    return 1  # further layers are unknown keys
  return max(1, len(common.layer_indices(state, LAYERS_PREFIX)))


def check_keys(state: Mapping[str, np.ndarray], path: str, model: str = "han") -> int:
  """Checks the keys of an official `model` state_dict; returns its number of HAN layers."""
  num_layers = num_layers_of(state, model)
  ignored = lambda key: key.startswith(IGNORED_PREFIXES[model])
  common.check_keys(state, used_keys(num_layers), ignored, path, TITLES[model], FIXES[model])
  return num_layers


def official_dims(
    state: Mapping[str, np.ndarray],
    path: str = "checkpoint",
    model: str = "han",
    num_layers: int = 1,
) -> dict[str, int]:
  """Input widths, hidden width, feed-forward width, class and layer counts read off the official shapes.

  Raises:
    InputError: when the shapes do not fit together as in `MMIL_Net`, naming the keys.
  """
  hidden, audio = state["fc_a.weight"].shape
  first = f"{LAYERS_PREFIX}0."
  dims = dict(
      audio=audio,
      frames=state["fc_v.weight"].shape[1],
      motion=state["fc_st.weight"].shape[1],
      hidden=hidden,
      ffn=state[first + "linear1.weight"].shape[0],
      classes=state["fc_prob.weight"].shape[0],
      layers=num_layers,
  )
  h, f, c = hidden, dims["ffn"], dims["classes"]
  expected = {
      **common.linear_shapes("fc_a", h, audio),
      **common.linear_shapes("fc_v", h, dims["frames"]),
      **common.linear_shapes("fc_st", h, dims["motion"]),
      **common.linear_shapes("fc_fusion", h, 2 * h),
  }
  for name in DECODER:
    expected.update(common.linear_shapes(name, c, h))
  for i in range(num_layers):
    layer = f"{LAYERS_PREFIX}{i}."
    expected.update(
        {
            **common.linear_shapes(layer + "linear1", f, h),
            **common.linear_shapes(layer + "linear2", h, f),
        }
    )
    for name in _LAYER_ATTENTIONS:
      expected.update(
          {
              f"{layer}{name}.in_proj_weight": (3 * h, h),
              f"{layer}{name}.in_proj_bias": (3 * h,),
              **common.linear_shapes(f"{layer}{name}.out_proj", h, h),
          }
      )
    for name in _LAYER_NORMS:
      expected.update(common.norm_shapes(layer + name, h))
  common.check_shapes(state, expected, path, TITLES[model], FIXES[model])
  return {key: int(value) for key, value in dims.items()}


def official_to_flax(state: Mapping[str, np.ndarray], num_layers: int = 1) -> dict[str, Any]:
  """The params tree of `avvp_jax.models` (encoder "han", decoder "mmil") from checked official tensors."""
  encoder = {}
  for i in range(num_layers):
    layer = f"{LAYERS_PREFIX}{i}."
    encoder[f"layers_{i}"] = {
        "self_attn": common.packed_attention(state, layer + "self_attn"),
        "cm_attn": common.packed_attention(state, layer + "cm_attn"),
        "linear1": common.dense(state, layer + "linear1"),
        "linear2": common.dense(state, layer + "linear2"),
        "norm1": common.norm(state, layer + "norm1"),
        "norm2": common.norm(state, layer + "norm2"),
    }
  params = {
      "embed": {name: common.dense(state, name) for name in EMBEDDINGS},
      "encoder": encoder,
      "decoder": {name: common.dense(state, name) for name in DECODER},
  }
  return common.float32_tree(params)


def official_config(
    dims: Mapping[str, int],
    base: ml_collections.ConfigDict | None = None,
    model: str = "han",
    num_heads: int | None = None,
) -> ml_collections.ConfigDict:
  """`base` (default `configs/han.py`) with the model section set to the official `model` of `dims`.

  Raises:
    InputError: for a class count other than LLP's, or heads that do not fit the model.
  """
  if dims["classes"] != annotations.NUM_CLASSES:
    raise InputError(
        f"the checkpoint classifies {dims['classes']} classes, not LLP's "
        f"{annotations.NUM_CLASSES}: pass an official LLP {TITLES[model]} checkpoint."
    )
  if num_heads is None:
    num_heads = DEFAULT_HEADS[model]
  elif model != "valor" and num_heads != DEFAULT_HEADS[model]:
    raise InputError(
        f"--num_heads={num_heads}, but the official {TITLES[model]} has one attention head (fixed in "
        "its code): leave --num_heads out."
    )
  if num_heads < 1 or dims["hidden"] % num_heads:
    raise InputError(
        f"--num_heads={num_heads} does not divide the checkpoint's width {dims['hidden']}: pass the "
        "--nhead it was trained with (VALOR's scripts: 8)."
    )
  config = common.official_model_config(base, "han", "han", "mmil", dims)
  section = config.model
  section.han.num_layers = dims["layers"]
  section.han.num_heads = num_heads
  section.han.ffn_dim = 0 if dims["ffn"] == dims["hidden"] else dims["ffn"]
  section.han.stacking = STACKING[model]
  section.han.share_modalities = True  # one layer serves both modalities in all three
  if model == "jomold":  # its evaluation gates each modality by that modality's video prediction
    section.mmil.filter = "modality"
  layout = features.layout_of_dims(dims)
  if layout is not None and layout != config.data.layout:
    logging.info(
        "The checkpoint's input widths are those of the %r data layout: config.data.layout set to it.",
        layout,
    )
    config.data.layout = layout
  if layout == "clip_clap" and dims["motion"]:
    logging.warning(
        "This model (VALOR++) also reads 512-d R(2+1)D-18 motion features, which the clip_clap "
        "layout does not hold: pass them to the parser; launch/evaluate.py cannot feed them."
    )
  with config.unlocked():
    config.num_seeds = 1  # one model: a params checkpoint of one replica
  return config


def load_official(
    path: str | os.PathLike[str],
    model: str = "han",
    config: ml_collections.ConfigDict | None = None,
    num_heads: int | None = None,
    state: Mapping[str, np.ndarray] | None = None,
) -> tuple[ml_collections.ConfigDict, PyTree]:
  """Reads an official HAN, VALOR or JoMoLD checkpoint and returns (config, params) of the same model.

  Args:
    path: the `.pt` file the official training script saved.
    model: "han", "valor" or "jomold" (see the module docstring; `avvp_jax.convert` picks it from the keys).
    config: the base config (data, optimizer, ... sections); None: `configs/han.py`. Its model section is
      set to the official architecture read off the checkpoint's shapes.
    num_heads: attention heads (VALOR only: not in the file; None: 8, its scripts' --nhead).
    state: the file's tensors when already read (`convert_common.read_checkpoint`).

  Returns:
    (config, params): params is the `{"embed", "encoder", "decoder"}` tree of
    `avvp_jax.models.build_model(config.model)`, float32 `jax.Array`s.

  Raises:
    InputError: unreadable file, missing or unknown keys (both named), or shapes that do not fit.
  """
  if model not in MODELS:
    raise ValueError(f"model {model!r} is not one of {MODELS}")
  path = os.fspath(path)
  if state is None:
    state, _ = common.read_checkpoint(path)
  num_layers = check_keys(state, path, model)
  dims = official_dims(state, path, model, num_layers)
  config = official_config(dims, config, model, num_heads)
  params = official_to_flax(state, num_layers)
  common.check_tree(params, config, TITLES[model])
  ignored = sum(key.startswith(IGNORED_PREFIXES[model]) for key in state)
  logging.info(
      "Converted %s (%s, %d layer(s)): %d official tensors used, %d of unused modules ignored.",
      path,
      TITLES[model],
      num_layers,
      len(used_keys(num_layers)),
      ignored,
  )
  return config, jax.tree.map(jax.numpy.asarray, params)
