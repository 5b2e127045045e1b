"""The official LEAP checkpoint -> avvp_jax (encoder "mmpyramid", decoder "leap").

jasongief/LEAP (`main_network_temporal_add_label.py`, class `AVVPNet`: the MM-Pyramid encoder of
`nets/MPAM.py` and `nets/Transformer.py`, then the LEAP decoder) released `MMPyr_LEAP_pretrained.pt`, a
bare `state_dict` (`main_leap.py`: `torch.save(model.state_dict(), ...)`). Its keys and what they become:

  fc_a, fc_v, fc_st, fc_fusion                   embed/{fc_a, fc_v, fc_st, fc_fusion}
  MMP.capture.msa.{i}.{asablock,vsablock,cmablock}.layer.*
                                                 encoder/levels_{i}/{audio_self, visual_self, cross}: a
                                                 `TransformerLayer` whose self_attn.linears.{0,1,2,3} are
                                                 attn/{query,key,value,out}, feed_forward.w_1/w_2 ffn_in/
                                                 ffn_out, sublayer.0/1.norm attn_norm/ffn_norm
  MMP.capture.msa.{i}.{la1, la2, lv1, lv2}       levels_{i}/{audio,visual}_gate_{self,cross}
  MMP.capture.{a,v}network.{i}.conv1/conv2       levels_{i}/{audio,visual}_tcn/{dilated_conv, pointwise_conv}
                                                 (plain Conv1d, no weight norm); `net.0`/`net.2` are the same
                                                 two modules registered again by `nn.Sequential`: accepted
                                                 when equal to conv1/conv2, refused otherwise
  MMP.fusion.{a,v}adaptiveinteraction.*          encoder/{audio,visual}_fusion (a `TransformerLayer`)
  MMP.fusion.{a,v}selectfusion                   encoder/{audio,visual}_fusion_weight
  fc_l, fc_la, fc_lv                             decoder/{fc_l, fc_la, fc_lv}
  AVL.{la,lv}_cma_network.{i}.*                  decoder/{audio,visual}_blocks_{i} (a `VanillaTransformerLayer`:
                                                 self_attn.linears.* cross_attn/*, the rest as above)

Never used by the official forward, accepted and dropped: the templates the layers are deep-copied from
(`AVL.{multiheadattn,feedforward}`, `MMP.capture.{multiheadattn,feedforward}`, `MMP.fusion.{multiheadattn,
feedforward}`) and every attention's own `self_attn.layer_norm`. Not in the file: the attention heads
(`--mmp_head 8 --avl_head 8` in the official run script; `num_heads`, default 8) and the [25, D] class-name
table the decoder starts from, which the official loader reads from `glove/6B/300d/llp_label_glove_embeddings.pt`
(`label_embeddings`: that .pt, or the same table as .npy, see `avvp_jax.models.label_embeddings`).
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
from avvp_jax.errors import InputError
from avvp_jax.models import label_embeddings as label_embeddings_lib

PyTree = Any

TITLE = "LEAP (AVVPNet)"
FIX = "pass MMPyr_LEAP_pretrained.pt as saved by jasongief/LEAP's main_leap.py"
DEFAULT_HEADS = 8  # official run script: --mmp_head 8 --avl_head 8
KERNEL_SIZE = 3  # TemporalBlock's dilated convolution (padding = dilation keeps T only for 3)
EMBEDDINGS = ("fc_a", "fc_v", "fc_st", "fc_fusion")
HEADS = ("fc_l", "fc_la", "fc_lv")
MSA = "MMP.capture.msa."
BLOCKS = {"audio": "AVL.la_cma_network.", "visual": "AVL.lv_cma_network."}
TCNS = {"audio": "MMP.capture.anetwork.", "visual": "MMP.capture.vnetwork."}
LEVEL_LAYERS = {
    "audio_self": "asablock.layer",
    "visual_self": "vsablock.layer",
    "cross": "cmablock.layer",
}
GATES = {
    "audio_gate_self": "la1",
    "audio_gate_cross": "la2",
    "visual_gate_self": "lv1",
    "visual_gate_cross": "lv2",
}
FUSION = {"audio": "MMP.fusion.a", "visual": "MMP.fusion.v"}
IGNORED_PREFIXES = (
    "AVL.multiheadattn.",
    "AVL.feedforward.",
    "MMP.capture.multiheadattn.",
    "MMP.capture.feedforward.",
    "MMP.fusion.multiheadattn.",
    "MMP.fusion.feedforward.",
)
# `nn.Sequential(conv1, relu1, conv2)` registers the two convolutions again under `net.0` and `net.2`.
ALIASES = {"net.0": "conv1", "net.2": "conv2"}


def _ignored(key: str) -> bool:
  return key.startswith(IGNORED_PREFIXES) or ".self_attn.layer_norm." in key


def _alias_target(key: str) -> str | None:
  """conv1/conv2 key of a `MMP.capture.{a,v}network.{i}.net.{0,2}.*` key, else None."""
  for prefix in TCNS.values():
    if key.startswith(prefix):
      index, _, rest = key[len(prefix) :].partition(".")
      for alias, name in ALIASES.items():
        if rest.startswith(alias + "."):
          return f"{prefix}{index}.{name}{rest[len(alias):]}"
  return None


def _layer_shapes(prefix: str, dim: int, ffn: int) -> dict[str, tuple[int, ...]]:
  """Shapes of one `TransformerLayer`/`VanillaTransformerLayer` at `prefix` (the keys its forward reads)."""
  shapes = {}
  for j in range(4):
    shapes.update(common.linear_shapes(f"{prefix}.self_attn.linears.{j}", dim, dim))
  shapes.update(common.linear_shapes(f"{prefix}.feed_forward.w_1", ffn, dim))
  shapes.update(common.linear_shapes(f"{prefix}.feed_forward.w_2", dim, ffn))
  for j in range(2):
    shapes.update(common.norm_shapes(f"{prefix}.sublayer.{j}.norm", dim))
  return shapes


def official_dims(state: Mapping[str, np.ndarray], path: str = "checkpoint") -> dict[str, int]:
  """Widths, pyramid levels and decoder blocks read off the official shapes.

  Raises:
    InputError: a missing key or a shape that does not fit `AVVPNet`, named.
  """
  levels = common.layer_indices(state, MSA)
  blocks = {modality: common.layer_indices(state, prefix) for modality, prefix in BLOCKS.items()}
  if not levels or not blocks["audio"]:
    raise InputError(
        f"checkpoint {path!r} is not an official {TITLE} state_dict: no {MSA}0.* or "
        f"{BLOCKS['audio']}0.* keys; {FIX}."
    )
  if len(blocks["audio"]) != len(blocks["visual"]):
    raise InputError(
        f"checkpoint {path!r} has {len(blocks['audio'])} audio and {len(blocks['visual'])} visual "
        "LEAP blocks (AVL.la_cma_network / lv_cma_network): avvp_jax's decoder has one num_blocks "
        f"for both; {FIX}."
    )
  need = [
      "fc_a.weight",
      "fc_v.weight",
      "fc_st.weight",
      "fc_l.weight",
      f"{TCNS['audio']}0.conv1.weight",
      f"{MSA}0.asablock.layer.feed_forward.w_1.weight",
      f"{BLOCKS['audio']}0.feed_forward.w_1.weight",
  ]
  missing = [key for key in need if key not in state]
  if missing:
    raise InputError(
        f"checkpoint {path!r} is not an official {TITLE} state_dict: missing {common.names(missing)}; "
        f"{FIX}."
    )
  hidden, audio = state["fc_a.weight"].shape
  return dict(
      audio=int(audio),
      frames=int(state["fc_v.weight"].shape[1]),
      motion=int(state["fc_st.weight"].shape[1]),
      hidden=int(hidden),
      label_dim=int(state["fc_l.weight"].shape[1]),
      mmp_ffn=int(state[f"{MSA}0.asablock.layer.feed_forward.w_1.weight"].shape[0]),
      leap_ffn=int(state[f"{BLOCKS['audio']}0.feed_forward.w_1.weight"].shape[0]),
      levels=len(levels),
      blocks=len(blocks["audio"]),
  )


def expected_shapes(dims: Mapping[str, int]) -> dict[str, tuple[int, ...]]:
  """Every key the official forward of `AVVPNet` with `dims` reads, and its shape."""
  h, f, g = dims["hidden"], dims["mmp_ffn"], dims["leap_ffn"]
  shapes = {
      **common.linear_shapes("fc_a", h, dims["audio"]),
      **common.linear_shapes("fc_v", h, dims["frames"]),
      **common.linear_shapes("fc_st", h, dims["motion"]),
      **common.linear_shapes("fc_fusion", h, 2 * h),
      **common.linear_shapes("fc_l", h, dims["label_dim"]),
      **common.linear_shapes("fc_la", 1, h),
      **common.linear_shapes("fc_lv", 1, h),
  }
  for i in range(dims["levels"]):
    for official in LEVEL_LAYERS.values():
      shapes.update(_layer_shapes(f"{MSA}{i}.{official}", h, f))
    for official in GATES.values():
      shapes.update(common.linear_shapes(f"{MSA}{i}.{official}", h, 2 * h))
    for prefix in TCNS.values():
      shapes.update(
          {
              f"{prefix}{i}.conv1.weight": (h, h, KERNEL_SIZE),
              f"{prefix}{i}.conv1.bias": (h,),
              f"{prefix}{i}.conv2.weight": (h, h, 1),
              f"{prefix}{i}.conv2.bias": (h,),
          }
      )
  for prefix in FUSION.values():
    shapes.update(_layer_shapes(f"{prefix}adaptiveinteraction", h, f))
    shapes.update(common.linear_shapes(f"{prefix}selectfusion", 1, h))
  for prefix in BLOCKS.values():
    for i in range(dims["blocks"]):
      shapes.update(_layer_shapes(f"{prefix}{i}", h, g))
  return shapes


def check_state(state: Mapping[str, np.ndarray], path: str) -> dict[str, int]:
  """Checks keys, shapes and the conv aliases of an official LEAP state_dict; returns its dims."""
  dims = official_dims(state, path)
  expected = expected_shapes(dims)
  aliases = {key: _alias_target(key) for key in state}
  aliases = {key: target for key, target in aliases.items() if target is not None}
  common.check_keys(state, expected, lambda key: _ignored(key) or key in aliases, path, TITLE, FIX)
  common.check_shapes(state, expected, path, TITLE, FIX)
  differing = [
      key
      for key, target in aliases.items()
      if target not in state or not np.array_equal(state[key], state[target])
  ]
  if differing:
    raise InputError(
        f"checkpoint {path!r} has {common.names(differing)} differing from the conv1/conv2 tensors "
        f"they alias in the official TemporalBlock (the same modules); {FIX}."
    )
  return dims


def _layer(state: Mapping[str, np.ndarray], prefix: str, attention: str = "attn") -> dict[str, Any]:
  """A `TransformerLayer` at `prefix` as a `PreNormLayer` / `LEAPBlock` params dict."""
  linears = [common.dense(state, f"{prefix}.self_attn.linears.{j}") for j in range(4)]
  return {
      attention: dict(zip(("query", "key", "value", "out"), linears)),
      "attn_norm": common.norm(state, f"{prefix}.sublayer.0.norm"),
      "ffn_norm": common.norm(state, f"{prefix}.sublayer.1.norm"),
      "ffn_in": common.dense(state, f"{prefix}.feed_forward.w_1"),
      "ffn_out": common.dense(state, f"{prefix}.feed_forward.w_2"),
  }


def official_to_flax(state: Mapping[str, np.ndarray], dims: Mapping[str, int]) -> dict[str, Any]:
  """The params tree of `avvp_jax.models` (encoder "mmpyramid", decoder "leap") from checked tensors."""
  encoder: dict[str, Any] = {}
  for i in range(dims["levels"]):
    level = {ours: _layer(state, f"{MSA}{i}.{official}") for ours, official in LEVEL_LAYERS.items()}
    level.update(
        {ours: common.dense(state, f"{MSA}{i}.{official}") for ours, official in GATES.items()}
    )
    for modality, prefix in TCNS.items():
      level[f"{modality}_tcn"] = {
          "dilated_conv": common.conv1d(state, f"{prefix}{i}.conv1"),
          "pointwise_conv": common.conv1d(state, f"{prefix}{i}.conv2"),
      }
    encoder[f"levels_{i}"] = level
  for modality, prefix in FUSION.items():
    encoder[f"{modality}_fusion"] = _layer(state, f"{prefix}adaptiveinteraction")
    encoder[f"{modality}_fusion_weight"] = common.dense(state, f"{prefix}selectfusion")
  decoder: dict[str, Any] = {name: common.dense(state, name) for name in HEADS}
  for modality, prefix in BLOCKS.items():
    for i in range(dims["blocks"]):
      decoder[f"{modality}_blocks_{i}"] = _layer(state, f"{prefix}{i}", attention="cross_attn")
  params = {
      "embed": {name: common.dense(state, name) for name in EMBEDDINGS},
      "encoder": encoder,
      "decoder": decoder,
  }
  return common.float32_tree(params)


def official_config(
    dims: Mapping[str, int],
    label_embeddings: str,
    base: ml_collections.ConfigDict | None = None,
    num_heads: int | None = None,
) -> ml_collections.ConfigDict:
  """`base` (default `configs/leap_mmpyr.py`) with the model section set to the official LEAP of `dims`."""
  num_heads = DEFAULT_HEADS if num_heads is None else num_heads
  if num_heads < 1 or dims["hidden"] % num_heads:
    raise InputError(
        f"--num_heads={num_heads} does not divide the checkpoint's width {dims['hidden']}: pass the "
        "--mmp_head/--avl_head it was trained with (the official run script: 8)."
    )
  config = common.official_model_config(base, "leap_mmpyr", "mmpyramid", "leap", dims)
  section = config.model
  section.mmpyramid.num_levels = dims["levels"]
  section.mmpyramid.num_heads = num_heads
  section.mmpyramid.ffn_dim = 0 if dims["mmp_ffn"] == dims["hidden"] else dims["mmp_ffn"]
  section.mmpyramid.kernel_size = KERNEL_SIZE
  section.mmpyramid.windowed = True  # level i attends within +-2^i segments
  section.leap.num_blocks = dims["blocks"]
  section.leap.num_heads = num_heads
  section.leap.ffn_dim = 0 if dims["leap_ffn"] == dims["hidden"] else dims["leap_ffn"]
  section.leap.variant = (
      "official"  # pre-norm blocks, segment logits from the second attention pass
  )
  section.leap.filter = (
      "union"  # the official eval gates both modalities with the thresholded union
  )
  section.leap.label_embeddings = label_embeddings
  with config.unlocked():
    config.num_seeds = 1  # one model: a params checkpoint of one replica
  return config


def load_label_table(source: str, dims: Mapping[str, int]) -> np.ndarray:
  """The [25, label_dim] class-name table of `source`; refuses one of another width than the checkpoint's fc_l."""
  if not source:
    raise InputError(
        "the LEAP state_dict does not hold its class-name table: pass --label_embeddings="
        "llp_label_glove_embeddings.pt (jasongief/LEAP glove/6B/300d/, what the official run used)."
    )
  table = label_embeddings_lib.load_label_embeddings(source)
  if table.shape != (annotations.NUM_CLASSES, dims["label_dim"]):
    raise InputError(
        f"label embeddings {source!r} are {table.shape[1]}-d, but the checkpoint's fc_l reads "
        f"{dims['label_dim']}-d ones: pass the table the model was trained with (the official run: "
        "glove/6B/300d/llp_label_glove_embeddings.pt)."
    )
  return table


def load_official(
    path: str | os.PathLike[str],
    label_embeddings: str,
    config: ml_collections.ConfigDict | None = None,
    num_heads: int | None = None,
    state: Mapping[str, np.ndarray] | None = None,
) -> tuple[ml_collections.ConfigDict, PyTree, np.ndarray]:
  """Reads the official LEAP state_dict; returns (config, params, label table) of the same model.

  Args:
    path: `MMPyr_LEAP_pretrained.pt` (or any `AVVPNet` state_dict).
    label_embeddings: the class-name table it was trained with (`llp_label_glove_embeddings.pt`, or a .npy of
      it); the returned config's `model.leap.label_embeddings` names this source.
    config: the base config; None: `configs/leap_mmpyr.py`. Its model section is replaced.
    num_heads: attention heads of MM-Pyramid and of the LEAP blocks (not in the file); None: 8, as the
      official run script.
    state: the file's tensors when already read (`convert_common.read_checkpoint`).

  Returns:
    (config, params, table): params is the `{"embed", "encoder", "decoder"}` tree of
    `avvp_jax.models.build_model(config.model)` (float32 `jax.Array`s); table the [25, D] float32 labels.

  Raises:
    InputError: unreadable file, missing or unknown keys, a wrong shape (each named), or a table that does not
      fit the checkpoint.
  """
  path = os.fspath(path)
  if state is None:
    state, _ = common.read_checkpoint(path)
  dims = check_state(state, path)
  table = load_label_table(label_embeddings, dims)
  source = label_embeddings
  if source != label_embeddings_lib.PACKAGED:
    source = os.path.abspath(os.path.expanduser(source))
  config = official_config(dims, source, config, num_heads)
  params = official_to_flax(state, dims)
  common.check_tree(params, config, TITLE)
  logging.info(
      "Converted %s (%s: %d levels, %d blocks, %d-d labels): %d tensors used, %d unused ignored.",
      path,
      TITLE,
      dims["levels"],
      dims["blocks"],
      dims["label_dim"],
      len(expected_shapes(dims)),
      len(state) - len(expected_shapes(dims)),
  )
  return config, jax.tree.map(jax.numpy.asarray, params), table
