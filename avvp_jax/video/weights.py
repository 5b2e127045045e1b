"""The extractors' pretrained weight files: where each comes from, finding it, and reading it.

The networks (`vggish`, `resnet`, `r2plus1d`) are Flax ports of the official PyTorch ones; their weights
are the official PyTorch files, read with `torch.load` (torch is in the `video` extra) and converted by each
module's `params_from_state_dict`. A file is found, in this order:

  1. `weights_dir/<file name>` when `weights_dir` is given (offline hosts: copy the files there);
  2. torch's own download cache, `$TORCH_HOME/hub/checkpoints/<file name>` (default
     `~/.cache/torch/hub/checkpoints/`), where torchvision keeps the same files, or the file's own place
     under `$TORCH_HOME/hub` (`WeightFile.library_cache_path`: torchaudio keeps VGGish's file in
     `hub/torchaudio/models/`);
  3. a download into that cache (`torch.hub.download_url_to_file`, checking the hash prefix that
     torchvision's file names carry), unless `download=False`.

`--weights=random` skips all this (randomly initialised networks, for smoke runs and tests; every output
then says RANDOM WEIGHTS).
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from avvp_jax.errors import InputError

WEIGHT_MODES = ("pretrained", "random")
RANDOM_WEIGHTS_NOTE = "RANDOM WEIGHTS (not pretrained: the features carry no meaning)"


@dataclasses.dataclass(frozen=True)
class WeightFile:
  """One official weight file.

  Attributes:
    name: the file name (as the libraries cache it).
    url: where it is downloaded from.
    source: who publishes it and which model it is (shown in errors).
    library_cache_path: where its own library caches it, relative to `$TORCH_HOME/hub` (also searched);
      None: `checkpoints/<name>`, torchvision's place.
  """

  name: str
  url: str
  source: str
  library_cache_path: str | None = None

  @property
  def hash_prefix(self) -> str | None:
    """The sha256 prefix torchvision-style names end with (`resnet152-b121ed2d.pth` -> "b121ed2d")."""
    match = re.search(r"-([0-9a-f]{8,})\.pth?$", self.name)
    return match.group(1) if match else None


def check_mode(weights: str) -> None:
  if weights not in WEIGHT_MODES:
    raise InputError(
        f"unknown weights {weights!r}: pass --weights=pretrained (the official files) or "
        "--weights=random (random networks, for smoke runs)."
    )


def torch_hub_dir() -> str:
  """torch's hub folder (`$TORCH_HOME/hub`, default `~/.cache/torch/hub`), as torch.hub computes it."""
  torch_home = os.environ.get(
      "TORCH_HOME",
      os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"),
  )
  return os.path.join(torch_home, "hub")


def torch_cache_dir() -> str:
  """torch's download cache for weight files, `$TORCH_HOME/hub/checkpoints` (where downloads go)."""
  return os.path.join(torch_hub_dir(), "checkpoints")


def find(
    weight_file: WeightFile,
    weights_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> str:
  """The path of `weight_file` (see the module docstring for the search order).

  Raises:
    InputError: the file is not in `weights_dir`, or it is not cached and cannot be downloaded; the
      message names the file, its URL and where to put it.
  """
  if weights_dir is not None:
    path = os.path.join(os.path.expanduser(os.fspath(weights_dir)), weight_file.name)
    if not os.path.isfile(path):
      raise InputError(
          f"weight file {weight_file.name} is not in --weights_dir {os.fspath(weights_dir)!r}: "
          f"download it from {weight_file.url} ({weight_file.source}) and put it there."
      )
    return path
  cached = os.path.join(torch_cache_dir(), weight_file.name)
  if os.path.isfile(cached):
    return cached
  if weight_file.library_cache_path is not None:
    library_cached = os.path.join(torch_hub_dir(), weight_file.library_cache_path)
    if os.path.isfile(library_cached):
      return library_cached
  if not download:
    raise InputError(
        f"weight file {weight_file.name} is not in torch's cache {torch_cache_dir()!r}: download it "
        f"from {weight_file.url} ({weight_file.source}), or pass --weights_dir with it."
    )
  import torch.hub  # pylint: disable=g-import-not-at-top  (torch: the optional `video` extra)

  os.makedirs(os.path.dirname(cached), exist_ok=True)
  try:
    torch.hub.download_url_to_file(
        weight_file.url, cached, hash_prefix=weight_file.hash_prefix, progress=True
    )
  except Exception as error:  # pylint: disable=broad-except  (urllib, hash and disk errors alike)
    raise InputError(
        f"could not download weight file {weight_file.name} from {weight_file.url} "
        f"({weight_file.source}): {type(error).__name__}: {error}. On an offline host, copy the file "
        "into a folder and pass --weights_dir=FOLDER."
    ) from None
  return cached


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
  """A PyTorch weight file's state_dict as float32 numpy arrays (tensors only; CPU; `weights_only`).

  Accepts a bare state_dict or one nested under "state_dict" / "model" (as some checkpoints store it).

  Raises:
    InputError: the file cannot be read as a PyTorch state_dict.
  """
  import torch  # pylint: disable=g-import-not-at-top  (torch: the optional `video` extra)

  path = os.fspath(path)
  try:
    loaded = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as error:  # pylint: disable=broad-except  (pickle, zip and I/O errors alike)
    raise InputError(
        f"{path} is not a PyTorch weight file torch.load can read ({type(error).__name__}: "
        f"{' '.join(str(error).split())[:200]}): download it again."
    ) from None
  for key in ("state_dict", "model"):
    if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
      loaded = loaded[key]
  if not isinstance(loaded, dict) or not loaded:
    raise InputError(
        f"{path} holds no state_dict (found {type(loaded).__name__}): download it again."
    )
  return {
      str(name): value.detach().to(torch.float32).numpy()
      for name, value in loaded.items()
      if isinstance(value, torch.Tensor) and value.is_floating_point()
  }
