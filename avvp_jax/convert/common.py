"""What the official-checkpoint converters share: reading a PyTorch file, checking its keys and shapes, the
PyTorch -> Flax parameter layouts, the base configs, and an all-or-nothing write of the converted folder.

Used by `avvp_jax.convert.han` (HAN, VALOR, JoMoLD) and `avvp_jax.convert.leap` (LEAP); `avvp_jax.convert`
is the front door. Layouts: a torch `Linear.weight [out, in]` is a Flax Dense kernel `[in, out]`; a
`Conv1d.weight [out, in, k]` is a Flax Conv kernel `[k, in, out]`; `LayerNorm.weight` is the Flax scale.

torch is needed only to read the file: the `parity` extra (`pip install -e .[parity]`).
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import shutil
import sys
import tempfile
from typing import Any, Callable, Iterable, Mapping

import jax
import ml_collections
import numpy as np

from avvp_jax import checkpoint
from avvp_jax import state as state_lib
from avvp_jax.errors import InputError

PyTree = Any
State = Mapping[str, np.ndarray]

SHOW_AT_MOST = 8
# The wrappers a training script may save a state_dict in: {"state_dict": ...} and JoMoLD's {"model": ...}.
WRAPPERS = ("state_dict", "model")


def names(keys: Iterable[str]) -> str:
  """A few of `keys`, sorted, for a one-line message."""
  keys = sorted(keys)
  return ", ".join(keys[:SHOW_AT_MOST]) + (
      f", ... ({len(keys)} in all)" if len(keys) > SHOW_AT_MOST else ""
  )


# --- reading the official file ----------------------------------------------------------------------


def _numpy_globals() -> list[Any]:
  """What `torch.load(weights_only=True)` must be allowed to rebuild numpy arrays (JoMoLD's saved RNG state)."""
  reconstruct = np._core.multiarray._reconstruct  # pylint: disable=protected-access
  allowed = [
      (np.ndarray, "numpy.ndarray"),
      (np.dtype, "numpy.dtype"),
      (reconstruct, "numpy._core.multiarray._reconstruct"),
      (reconstruct, "numpy.core.multiarray._reconstruct"),
  ]
  return allowed + [
      value
      for value in vars(np.dtypes).values()
      if isinstance(value, type) and issubclass(value, np.dtype)
  ]


def import_torch() -> Any:
  """torch, imported on first use (the core install has none), or a one-line InputError naming the extra."""
  try:
    import torch  # pylint: disable=g-import-not-at-top  (lazy: keeps the core install free of torch)
  except ImportError as error:
    raise InputError(
        "reading an official PyTorch checkpoint needs torch: install the parity extra "
        "(pip install -e '.[parity]', which pins torch==2.13.0)."
    ) from error
  return torch


def _torch_load(path: str) -> Any:
  """`torch.load` without running pickled code: tensors, containers and numpy arrays only."""
  torch = import_torch()
  try:
    try:
      return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # pylint: disable=broad-except  (a numpy array inside: allow numpy, nothing else)
      unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
      allowed = _numpy_globals()
      other = unsafe - {name for entry in allowed if isinstance(entry, tuple) for name in entry[1:]}
      if not unsafe or other:
        raise
      with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location="cpu", weights_only=True)
  except Exception as error:  # pylint: disable=broad-except  (torch raises many types for a bad file)
    raise InputError(
        f"checkpoint {path!r} could not be read by torch.load ({type(error).__name__}): pass the "
        "state_dict file the official training script saved."
    ) from error


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], frozenset[str]]:
  """The tensors of a PyTorch checkpoint as float32 numpy arrays, and the keys of the dict wrapping them.

  Accepts a bare `state_dict`, one wrapped under "state_dict" or "model" (JoMoLD saves {"model", "optimizer",
  "scheduler", RNG states, "epochs"}; the other entries are dropped), and DataParallel's "module." prefix.
  The wrapper keys are empty for a bare state_dict.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise InputError(
        f"checkpoint {path!r} does not exist: pass the .pt file saved by the official training "
        "script (e.g. MMIL_Net.pt, MMPyr_LEAP_pretrained.pt, checkpoint_best.pt)."
    )
  import torch  # pylint: disable=g-import-not-at-top  (lazy, as in _torch_load, which has checked it imports)

  state = _torch_load(path)
  wrapper: frozenset[str] = frozenset()
  for name in WRAPPERS:
    if isinstance(state, Mapping) and isinstance(state.get(name), Mapping):
      wrapper = frozenset(str(key) for key in state)
      state = state[name]
      break
  if (
      not isinstance(state, Mapping)
      or not state
      or not all(isinstance(v, torch.Tensor) for v in state.values())
  ):
    raise InputError(
        f"checkpoint {path!r} is not a state_dict of tensors: pass the file saved with "
        "torch.save(model.state_dict(), path) (or a dict holding it under 'model')."
    )
  if all(key.startswith("module.") for key in state):
    state = {key[len("module.") :]: value for key, value in state.items()}
  return {key: value.detach().to(torch.float32).numpy() for key, value in state.items()}, wrapper


# --- checking keys and shapes -----------------------------------------------------------------------


def check_keys(
    state: State,
    used: Iterable[str],
    ignored: Callable[[str], bool],
    path: str,
    model: str,
    fix: str,
) -> None:
  """Every used key present; every other key ignorable. Raises InputError naming the missing and unknown keys.

  Args:
    state: the official tensors.
    used: every key the official forward reads.
    ignored: True for a key the forward never reads (accepted and dropped).
    path, model, fix: the file, the model's name and the fix, for the message.
  """
  used = set(used)
  missing = used - set(state)
  unknown = {key for key in state if key not in used and not ignored(key)}
  if missing or unknown:
    parts = ([f"missing {names(missing)}"] if missing else []) + (
        [f"unknown {names(unknown)}"] if unknown else []
    )
    raise InputError(
        f"checkpoint {path!r} is not an official {model} state_dict: {'; '.join(parts)}; {fix}."
    )


def check_shapes(
    state: State, expected: Mapping[str, tuple[int, ...]], path: str, model: str, fix: str
) -> None:
  """Raises InputError naming every key whose shape differs from `expected`."""
  wrong = [
      f"{key} {tuple(state[key].shape)} (expected {shape})"
      for key, shape in sorted(expected.items())
      if tuple(state[key].shape) != tuple(shape)
  ]
  if wrong:
    raise InputError(
        f"checkpoint {path!r} has shapes that do not fit the official {model}: "
        f"{'; '.join(wrong[:SHOW_AT_MOST])}; {fix}."
    )


def layer_indices(state: State, prefix: str) -> list[int]:
  """The indices i of the keys `{prefix}{i}.*`: 0..n-1 of a complete stack (gaps show as missing keys later)."""
  found = {
      int(key[len(prefix) :].split(".", 1)[0])
      for key in state
      if key.startswith(prefix) and key[len(prefix) :].split(".", 1)[0].isdigit()
  }
  return list(range(max(found) + 1)) if found else []


def linear_shapes(name: str, out_dim: int, in_dim: int) -> dict[str, tuple[int, ...]]:
  return {f"{name}.weight": (out_dim, in_dim), f"{name}.bias": (out_dim,)}


def norm_shapes(name: str, dim: int) -> dict[str, tuple[int, ...]]:
  return {f"{name}.weight": (dim,), f"{name}.bias": (dim,)}


# --- PyTorch -> Flax layouts ------------------------------------------------------------------------


def dense(state: State, name: str) -> dict[str, np.ndarray]:
  """`nn.Linear` `name` as a Flax Dense."""
  return {"kernel": state[f"{name}.weight"].T, "bias": state[f"{name}.bias"]}


def conv1d(state: State, name: str) -> dict[str, np.ndarray]:
  """`nn.Conv1d` `name` ([out, in, k]) as a Flax Conv ([k, in, out])."""
  return {"kernel": state[f"{name}.weight"].transpose(2, 1, 0), "bias": state[f"{name}.bias"]}


def norm(state: State, name: str) -> dict[str, np.ndarray]:
  """`nn.LayerNorm` `name` as a Flax LayerNorm."""
  return {"scale": state[f"{name}.weight"], "bias": state[f"{name}.bias"]}


def packed_attention(state: State, name: str) -> dict[str, dict[str, np.ndarray]]:
  """`nn.MultiheadAttention`'s packed [3D, D] input projection as query/key/value Dense params, plus `out`."""
  weights = np.split(state[f"{name}.in_proj_weight"], 3, axis=0)
  biases = np.split(state[f"{name}.in_proj_bias"], 3, axis=0)
  params = {
      part: {"kernel": w.T, "bias": b}
      for part, w, b in zip(("query", "key", "value"), weights, biases)
  }
  params["out"] = dense(state, f"{name}.out_proj")
  return params


def float32_tree(params: PyTree) -> PyTree:
  return jax.tree.map(lambda x: np.ascontiguousarray(x, dtype=np.float32), params)


# --- configs and the converted tree -----------------------------------------------------------------


def official_model_config(
    base: ml_collections.ConfigDict | None,
    base_name: str,
    encoder: str,
    decoder: str,
    dims: dict[str, int],
) -> ml_collections.ConfigDict:
  """A copy of `base` (default `configs/<base_name>.py`) for an official checkpoint: its encoder, decoder,
  no refiner (the official models have none; a LINK base config's PLSIM is dropped), and the input and
  hidden widths `dims` ("audio", "frames", "motion", "hidden") read from the checkpoint."""
  config = (base_config(base_name) if base is None else base).copy_and_resolve_references()
  model = config.model
  model.encoder, model.decoder, model.refiner = encoder, decoder, "none"
  model.input_dims.audio = dims["audio"]
  model.input_dims.frames = dims["frames"]
  model.input_dims.motion = dims["motion"]
  model.hidden_dim = dims["hidden"]
  return config


def base_config(name: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """`configs/<name>.py:get_config(arg)` of the source checkout this package lives in."""
  root = pathlib.Path(__file__).resolve().parents[2]
  path = root / "configs" / f"{name}.py"
  if not path.is_file():
    raise InputError(
        f"configs/{name}.py is not next to this avvp_jax installation: pass a config "
        f"(launch/convert_official.py --config=configs/{name}.py)."
    )
  if str(root) not in sys.path:
    sys.path.insert(0, str(root))  # the configs import `configs.common`
  spec = importlib.util.spec_from_file_location(f"configs.{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def check_tree(params: PyTree, config: ml_collections.ConfigDict, model: str) -> None:
  """The converted tree must have exactly the structure and shapes of the model's own params."""
  abstract = state_lib.abstract_params(config)  # seed-stacked: [S, ...]
  expected = {
      jax.tree_util.keystr(p): tuple(x.shape[1:])
      for p, x in jax.tree_util.tree_leaves_with_path(abstract)
  }
  got = {
      jax.tree_util.keystr(p): tuple(x.shape)
      for p, x in jax.tree_util.tree_leaves_with_path(params)
  }
  if expected != got:
    differing = sorted(set(expected.items()) ^ set(got.items()))
    raise RuntimeError(
        f"the converted {model} params do not fit avvp_jax.models: {differing[:SHOW_AT_MOST]}; the "
        "converter must follow the model's param names."
    )


def write_checkpoint(
    out_dir: str | os.PathLike[str],
    config: ml_collections.ConfigDict,
    params: PyTree,
    files: Mapping[str, np.ndarray] | None = None,
    config_paths: Mapping[str, str] | None = None,
) -> str:
  """Writes a params checkpoint (`checkpoint.save_params_checkpoint`) and extra .npy files, all or nothing.

  Everything is written into a temporary folder beside `out_dir`, which is renamed to `out_dir` only once
  complete: an error leaves no `out_dir` behind.

  Args:
    out_dir: the folder to create; it must not exist, or be empty.
    config: the converted model's config.
    params: one model's params (no seed axis).
    files: name -> array, saved as `out_dir/<name>` with np.save.
    config_paths: dotted config field -> name of one of `files`: the field is set to that file's final path.

  Returns:
    The absolute `out_dir`.
  """
  out_dir = checkpoint.absolute(os.fspath(out_dir))
  if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
    raise InputError(
        f"--out {out_dir!r} already exists and is not an empty folder: pass a new folder (nothing "
        "is overwritten)."
    )
  parent = os.path.dirname(out_dir)
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.partial-", dir=parent)
  try:
    config = ml_collections.ConfigDict(config.to_dict())
    for name, array in (files or {}).items():
      np.save(os.path.join(staging, name), array)
    for field, name in (config_paths or {}).items():
      section = config
      *parents, leaf = field.split(".")
      for key in parents:
        section = section[key]
      section[leaf] = os.path.join(out_dir, name)
    checkpoint.save_params_checkpoint(staging, config, checkpoint.stack_seeds(params))
    if os.path.isdir(out_dir):
      os.rmdir(out_dir)  # empty (checked above)
    os.rename(staging, out_dir)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return out_dir
