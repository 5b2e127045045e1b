"""Reading `torch.save(model)` files without the code that defined the model, and without running any code.

AVE-ECCV18 and PSP save whole pickled modules (`torch.save(net_model, "model/AV_att.pt")`): the pickle names
the official classes (`models.att_Net`, `fully_model.psp_net`, ...), which a user does not have, and an
unpickler calls whatever a pickle names. `read_module_state(path)` reads such a file through `torch.load` with a
restricted unpickler (`pickle_module=`), whose `find_class` resolves only:

  * torch's tensor rebuilders (`torch._utils._rebuild_tensor_v2`, ...), storage classes, `torch.Size`,
    `torch.device`, the dtypes, and `torch.nn.Parameter`;
  * `collections.OrderedDict`, `set` and `frozenset` (a module's `_non_persistent_buffers_set`);
  * `torch.nn` module classes (`torch.nn.modules.linear.Linear`, `torch.nn.DataParallel`, ...) and the classes
    of code this machine does not have (the official modules `models`, `models_fusion`, `models_weakly`,
    `fully_model`, `weakly_model`, or any top-level module not installed here): each becomes an inert
    stand-in (`StandIn`) that only records what the pickle hands it (`__setstate__`), so no `forward`, no
    `__setstate__` of torch's and none of the official code ever runs.

Any other global (`os.system`, `builtins.eval`, `subprocess.Popen`, a numpy function, ...) is refused before it
is looked up: an `InputError` naming the file and the global; nothing it names is called. The stand-ins'
recorded `_parameters`, `_buffers` and `_modules` are then walked into a flat state_dict with the official
dotted names (`lstm_audio.weight_ih_l0`, `psp.v_L1.weight`, ...). A file that holds a state_dict (a mapping of
tensors, possibly under "state_dict" or "model", possibly with DataParallel's `module.` prefixes) is read the
same way and returned as it is, the prefixes stripped.

Both of torch's formats go through the same unpickler: the zip format (torch >= 1.6) and the legacy one the
2018-2021 official releases were written in (whose container-source check only warns).
"""

from __future__ import annotations

import _compat_pickle
import collections
import dataclasses
import importlib.util
import os
import pickle
import sys
import types
import warnings
from typing import Any, Mapping

import numpy as np

from avvp_jax.convert import common
from avvp_jax.errors import InputError

# Modules of the official repositories whose classes a pickled model names (YapengTian/AVE-ECCV18: models.py,
# models_fusion.py, models_weakly.py; jasongief/PSP_CVPR_2021: fully_model.py, weakly_model.py): always
# stand-ins, even where a module of that name happens to be importable.
OFFICIAL_MODULES = frozenset(
    {"models", "models_fusion", "models_weakly", "fully_model", "weakly_model"}
)
# torch's functions a tensor or parameter is rebuilt with, by every torch version that wrote these files.
TORCH_REBUILDERS = frozenset(
    {
        ("torch._utils", "_rebuild_tensor"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_tensor_v3"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch._utils", "_rebuild_parameter_with_state"),
        ("torch.nn.parameter", "Parameter"),
        ("torch", "Size"),
        ("torch", "device"),
        # torch < 0.4 pickled each module's `_backend` as this call; it returns None.
        ("torch.nn.backends.thnn", "_get_thnn_function_backend"),
    }
)
CONTAINERS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
}
STATE_DICT_WRAPPERS = ("state_dict", "model")


class StandIn:
  """An inert record of a pickled object of a class this reader does not run.

  Unpickling calls `__new__` (with the pickle's arguments, if any), then `__setstate__`: both only store
  what they are given. Subclasses (one per pickled class, `stand_in`) carry the class's pickled name.
  """

  pickled_name = ""

  def __new__(cls, *args, **kwargs):
    obj = super().__new__(cls)
    obj.pickled_args = (args, kwargs)
    obj.pickled_state = None
    return obj

  def __init__(self, *args, **kwargs):  # a REDUCE calls the class: record, never act
    del args, kwargs

  def __setstate__(self, state: Any) -> None:
    self.pickled_state = state


_STAND_INS: dict[str, type[StandIn]] = {}


def stand_in(module: str, name: str) -> type[StandIn]:
  """The stand-in class of the pickled class `module.name` (one per name)."""
  dotted = f"{module}.{name}"
  if dotted not in _STAND_INS:
    _STAND_INS[dotted] = type(name, (StandIn,), {"pickled_name": dotted, "__module__": __name__})
  return _STAND_INS[dotted]


def _installed(module: str) -> bool:
  """Whether the top-level package of `module` exists here (found, never imported: nothing runs)."""
  top = module.split(".", 1)[0]
  if top in sys.modules:
    return True
  try:
    return importlib.util.find_spec(top) is not None
  except (ImportError, ValueError):
    return False


def _torch_global(module: str, name: str) -> Any | None:
  """The torch object `module.name` when it is one the reader allows; None otherwise. torch is imported."""
  import torch  # pylint: disable=g-import-not-at-top  (lazy: torch is the `parity` extra)

  if (module, name) in TORCH_REBUILDERS:
    owner = sys.modules.get(module) or importlib.import_module(module)
    return getattr(owner, name, None)
  value = (
      vars(torch).get(name) if module == "torch" else None
  )  # no lazy import of a torch submodule
  if isinstance(value, torch.dtype) or (
      name.endswith("Storage") and isinstance(value, type) and value.__module__.startswith("torch")
  ):
    return value
  return None


def _is_torch_module_class(module: str, name: str) -> bool:
  """`module.name` is an `nn.Module` subclass of torch.nn (looked up in torch's already imported modules)."""
  import torch  # pylint: disable=g-import-not-at-top  (lazy, as above)

  if not module.startswith("torch.nn."):
    return False
  owner = sys.modules.get(module)
  value = getattr(owner, name, None) if owner is not None else None
  return isinstance(value, type) and issubclass(value, torch.nn.Module)


class RestrictedUnpickler(pickle.Unpickler):
  """A `pickle.Unpickler` whose `find_class` allows only what the module docstring lists.

  `path` names the file in the refusal; torch.load builds it with the file's stream only, so the path is set
  on the class (`restricted_pickle_module`).
  """

  path = "checkpoint"

  def find_class(self, module: str, name: str) -> Any:
    # Python 2's names (`__builtin__.set`; protocol 2, which torch.save writes, keeps them), as pickle's own
    # find_class maps them (the C unpickler does not say which protocol it reads: map always).
    if (module, name) in _compat_pickle.NAME_MAPPING:
      module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
      module = _compat_pickle.IMPORT_MAPPING[module]
    if (module, name) in CONTAINERS:
      return CONTAINERS[(module, name)]
    if module == "torch" or module.startswith("torch."):
      value = _torch_global(module, name)
      if value is not None:
        return value
      if _is_torch_module_class(module, name):
        return stand_in(module, name)
    elif name.isidentifier() and (module in OFFICIAL_MODULES or not _installed(module)):
      return stand_in(module, name)
    raise InputError(
        f"checkpoint {self.path!r} asks its unpickler for {module}.{name}, which a saved model never needs "
        "(only torch tensors, torch.nn modules and the official model classes are read): refused, nothing "
        "was run; pass the file the official training script saved."
    )


def restricted_pickle_module(path: str) -> types.SimpleNamespace:
  """What `torch.load(pickle_module=...)` takes: `Unpickler` (the restricted one, naming `path`) and `load`."""
  unpickler = type("RestrictedUnpickler", (RestrictedUnpickler,), {"path": path})

  def load(file, **kwargs):
    return unpickler(file, **kwargs).load()

  return types.SimpleNamespace(__name__=__name__, Unpickler=unpickler, load=load)


@dataclasses.dataclass(frozen=True)
class PickledModel:
  """What `read_module_state` found in a file.

  Attributes:
    state: the flat state_dict (official dotted names) as numpy arrays, in the file's dtypes.
    class_name: the pickled class of the saved module ("models.att_Net", "fully_model.psp_net", ...); "" for a
      file holding a state_dict.
  """

  state: dict[str, np.ndarray]
  class_name: str = ""


def _as_numpy(value: Any, key: str, path: str) -> np.ndarray:
  import torch  # pylint: disable=g-import-not-at-top  (lazy, as above)

  if not isinstance(value, torch.Tensor):
    raise InputError(
        f"checkpoint {path!r} holds {type(value).__name__} for {key!r} where a tensor belongs: pass the "
        "file the official training script saved."
    )
  return value.detach().cpu().numpy().copy()


def _module_state(module: StandIn, prefix: str, path: str, out: dict[str, np.ndarray]) -> None:
  """Adds the parameters and persistent buffers of the pickled `module` and its children to `out`."""
  state = module.pickled_state
  if not isinstance(state, Mapping) or "_parameters" not in state:
    raise InputError(
        f"checkpoint {path!r} holds a {module.pickled_name} without torch module state at "
        f"{prefix.rstrip('.') or 'its top'}: pass the file the official training script saved."
    )
  skipped = set(state.get("_non_persistent_buffers_set") or ())
  tensors = list((state.get("_parameters") or {}).items()) + [
      item for item in (state.get("_buffers") or {}).items() if item[0] not in skipped
  ]
  for name, value in tensors:
    if value is not None:
      out[prefix + name] = _as_numpy(value, prefix + name, path)
  for name, child in (state.get("_modules") or {}).items():
    if child is None:
      continue
    if not isinstance(child, StandIn):
      raise InputError(
          f"checkpoint {path!r} holds {type(child).__name__} as the submodule {prefix + name!r}: pass the "
          "file the official training script saved."
      )
    _module_state(child, f"{prefix}{name}.", path, out)


def strip_module_prefix(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """DataParallel's `module.` prefix removed (when every key has it)."""
  if state and all(key.startswith("module.") for key in state):
    return {key[len("module.") :]: value for key, value in state.items()}
  return dict(state)


def read_module_state(path: str | os.PathLike[str]) -> PickledModel:
  """The state_dict of a whole pickled module (or of a saved state_dict) at `path`, read without running code.

  Raises:
    InputError: a missing file, one torch cannot read, a refused global (named), or content that is neither a
      module nor a mapping of tensors.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise InputError(
        f"checkpoint {path!r} does not exist: pass the .pt (or .pth.tar) file the official training "
        "script saved."
    )
  torch = common.import_torch()
  try:
    with (
        warnings.catch_warnings()
    ):  # the legacy format's "Couldn't retrieve source code for container"
      warnings.simplefilter("ignore")
      loaded = torch.load(
          path, map_location="cpu", pickle_module=restricted_pickle_module(path), weights_only=False
      )
  except InputError:
    raise
  except Exception as error:  # pylint: disable=broad-except  (torch raises many types for a bad file)
    raise InputError(
        f"checkpoint {path!r} could not be read by torch.load ({type(error).__name__}: "
        f"{str(error).splitlines()[0] if str(error) else ''}): pass the file the official training script "
        "saved."
    ) from error
  if isinstance(loaded, StandIn):
    state: dict[str, np.ndarray] = {}
    _module_state(loaded, "", path, state)
    inner = loaded  # a pickled nn.DataParallel: the class of the model it wraps
    while inner.pickled_name.endswith("DataParallel"):
      child = (inner.pickled_state.get("_modules") or {}).get("module")
      if not isinstance(child, StandIn):
        break
      inner = child
    return PickledModel(strip_module_prefix(state), inner.pickled_name)
  for wrapper in STATE_DICT_WRAPPERS:
    if isinstance(loaded, Mapping) and isinstance(loaded.get(wrapper), Mapping):
      loaded = loaded[wrapper]
      break
  if isinstance(loaded, Mapping) and loaded:
    state = {str(key): _as_numpy(value, str(key), path) for key, value in loaded.items()}
    return PickledModel(strip_module_prefix(state))
  raise InputError(
      f"checkpoint {path!r} holds a {type(loaded).__name__}, neither a pickled model nor a state_dict: pass "
      "the file the official training script saved."
  )
