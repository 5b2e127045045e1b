"""What produced an output: the package version, the source commit, the checkpoint and its step.

Every report a launcher writes (`eval_<split>.json`, the events JSON of `launch/parse.py` and
`launch/parse_video.py`) names what produced it with these helpers, so a number can be traced back to the
code and the checkpoint behind it:

  provenance.package()            # {"package_version": "0.1.0", "commit": "a1d5d2b..." or None}
  provenance.checkpoint_step(p)   # the train step of the checkpoint `checkpoint.resolve(p)` finds, or None
  provenance.thresholds(0.5)      # a threshold argument as JSON (number, list or {class: value})
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from typing import Any, Mapping

import numpy as np

import avvp_jax

# The repository root of a source checkout: the folder above the package.
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(avvp_jax.__file__)))


@functools.lru_cache(maxsize=None)
def source_commit(root: str = SOURCE_ROOT) -> str | None:
  """The git commit (HEAD, 40 hex digits) of the checkout `root`; None when `root` is not the top of a git
  checkout (an installed wheel, a copy), when git is missing, or when git fails.
  """
  git = shutil.which("git")
  if git is None or not os.path.isdir(root):
    return None
  try:
    result = subprocess.run(
        [git, "-C", root, "rev-parse", "--show-toplevel", "HEAD"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
  except (OSError, subprocess.SubprocessError):
    return None
  lines = result.stdout.split()
  if result.returncode != 0 or len(lines) != 2:
    return None
  toplevel, commit = lines
  # A package copied into another repository (e.g. a venv inside a project) is not that repository's code.
  if os.path.realpath(toplevel) != os.path.realpath(root):
    return None
  return commit


def package() -> dict[str, Any]:
  """{"package_version": `avvp_jax.__version__`, "commit": `source_commit()`}."""
  return {"package_version": avvp_jax.__version__, "commit": source_commit()}


def checkpoint_step(path: str | os.PathLike[str] | None) -> int | None:
  """The train step of the checkpoint at `path` (a workdir: its best save, else its latest; a step folder);
  None for a params-only (e.g. converted) checkpoint, or when `path` is None.
  """
  if path is None:
    return None
  from avvp_jax import checkpoint  # pylint: disable=g-import-not-at-top  (orbax, only when asked)

  return checkpoint.resolve(os.fspath(path)).step


def thresholds(value: Any) -> Any:
  """A threshold argument (one number, `[C]` numbers, {class name: value}, or None) as JSON."""
  if value is None:
    return None
  if isinstance(value, Mapping):
    return {str(k): float(v) for k, v in value.items()}
  array = np.asarray(value, np.float64)
  return float(array) if array.ndim == 0 else array.tolist()


def parse_record(
    parser: Any, threshold: Any, gate_threshold: Any, synthetic: bool | None
) -> dict[str, Any]:
  """The "provenance" of a parsed record (`launch/parse.py`, `launch/parse_video.py`).

  Args:
    parser: the `inference.Parser` that parsed it.
    threshold, gate_threshold: the threshold arguments used (None gate: the threshold).
    synthetic: whether the parsed features are synthetic (None: not known, e.g. an .npz file).

  Returns:
    {"checkpoint": the parser's source, "step": its train step (None: params-only or built in memory),
    "seeds": the ensemble's seeds (None: one model), "threshold", "gate_threshold", "synthetic",
    "package_version", "commit"}.
  """
  return {
      "checkpoint": parser.source,
      "step": checkpoint_step(parser.source),
      "seeds": parser.seeds,
      "threshold": thresholds(threshold),
      "gate_threshold": thresholds(gate_threshold),
      "synthetic": synthetic,
      **package(),
  }
