"""Checkpoints: full training state with Orbax, the run's config as JSON, and params-only exports.

Workdir layout written by `avvp_jax.train.train_and_evaluate`:

  WORKDIR/config.json        the run's config (`save_config` / `load_config`), enough to rebuild the model
  WORKDIR/checkpoints/<step>/ latest full-state saves: items `state` (a `TrainState` of `config.num_seeds`
                              replicas, every leaf `[S, ...]`: step, params, optimizer state, dropout key)
                              and `progress` (JSON: epoch, batches done in it, each replica's best score)
  WORKDIR/best/<step>/        the best state of every replica by its own validation
                              `config.checkpoint.best_metric`, each from its own best epoch (items `state`,
                              `progress`, and `metrics`: JSON, per replica its seed, step and 10 metrics)

Params-only layout (what `save_params_checkpoint` writes; `avvp_jax.convert` writes converted official
checkpoints with it):

  DIR/config.json            the config the params belong to
  DIR/params/                an Orbax StandardCheckpointer save of the seed-stacked params tree

Params are always seed-stacked: every leaf has a leading `[num_seeds]` axis (1 for a 1-seed run or a
converted official model); `select_seed` takes one replica out. `restore_params(path) -> (config, params)`
reads any of the layouts: a workdir (its best save, else its latest), one step folder of a workdir, or a
params-only folder. `launch/evaluate.py --checkpoint=PATH` and `avvp_jax.load_parser` use it.

Saves are asynchronous: always `close()` a `Checkpointer` (it waits for pending writes) - the trainer does so
in a `finally`, so neither an error nor a normal exit loses a save.
"""

from __future__ import annotations

import json
import os
from typing import Any

from absl import logging
from etils import epath
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from avvp_jax import state as state_lib
from avvp_jax.errors import InputError

CONFIG_FILENAME = "config.json"
LATEST_DIRNAME = "checkpoints"
BEST_DIRNAME = "best"
PARAMS_DIRNAME = "params"


# --- config ---------------------------------------------------------------------------------------


def absolute(path: str) -> str:
  """`path` made absolute; URLs such as gs://bucket/dir (a TPU pod's shared workdir) are kept as given."""
  return path if "://" in path else os.path.abspath(os.path.expanduser(path))


def save_config(directory: str, config: ml_collections.ConfigDict) -> str:
  """Writes `config` as JSON to `directory/config.json` (process 0 only); returns the path."""
  path = epath.Path(absolute(directory)) / CONFIG_FILENAME
  if jax.process_index() == 0:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config.to_json_best_effort(indent=2, sort_keys=True))
  return str(path)


def load_config(path: str) -> ml_collections.ConfigDict:
  """Reads a config written by `save_config`; `path` is the JSON file or the folder holding it."""
  path = epath.Path(absolute(path))
  if path.is_dir():
    path = path / CONFIG_FILENAME
  if not path.is_file():
    raise InputError(f"No {CONFIG_FILENAME} at {path}: point to a workdir or checkpoint folder written by "
                     "avvp_jax (or pass --config).")
  return ml_collections.ConfigDict(json.loads(path.read_text()))


# --- full training state --------------------------------------------------------------------------


def _manager(directory: str, keep: int, *, read_only: bool = False) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      preservation_policy=ocp.checkpoint_managers.LatestN(n=keep),
      create=not read_only,
      read_only=read_only,
      enable_async_checkpointing=not read_only,
  )
  return ocp.CheckpointManager(directory, options=options)


class Checkpointer:
  """The latest saves (`WORKDIR/checkpoints`) and the best save (`WORKDIR/best`) of one training run.

  Every process must call `save` (Orbax writes each process's shards and synchronises); only process 0
  writes metadata. Use as a context manager, or call `close()`, so asynchronous saves are finished.
  """

  def __init__(self, workdir: str, *, keep: int = 1):
    self.workdir = absolute(workdir)
    self.latest = _manager(os.path.join(self.workdir, LATEST_DIRNAME), keep)
    self.best = _manager(os.path.join(self.workdir, BEST_DIRNAME), 1)

  def __enter__(self) -> "Checkpointer":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def latest_step(self) -> int | None:
    return self.latest.latest_step()

  def save(self, step: int, state: Any, progress: dict[str, Any]) -> None:
    """Saves the full `state` at `step` among the latest saves.

    Args:
      step: the global training step (the save's folder name).
      state: the seed-stacked `TrainState` (jax.Arrays).
      progress: JSON-able data position and bookkeeping (epoch, batches done, best scores so far).
    """
    self.latest.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                   progress=ocp.args.JsonSave(_jsonable(progress))))

  def save_best(self, step: int, best_state: Any, progress: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Replaces the best save with `best_state` (each replica's best), saved at `step`.

    Args:
      step: the global step when a replica last improved (the save's folder name).
      best_state: the seed-stacked `TrainState` whose replica s is replica s's best state.
      progress: as in `save`.
      metrics: JSON-able: per replica its seed, the step of its best state and its validation metrics.
    """
    self.best.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(best_state),
                                                 progress=ocp.args.JsonSave(_jsonable(progress)),
                                                 metrics=ocp.args.JsonSave(_jsonable(metrics))))

  def restore_latest(self, abstract_state: Any) -> tuple[Any, dict[str, Any]] | None:
    """Restores (state, progress) of the latest save onto `abstract_state`'s shardings, or None if none."""
    return self._restore(self.latest, abstract_state)

  def restore_best(self, abstract_state: Any) -> tuple[Any, dict[str, Any]] | None:
    """Restores (best state, progress) of the best save onto `abstract_state`'s shardings, or None."""
    return self._restore(self.best, abstract_state)

  @staticmethod
  def _restore(manager: ocp.CheckpointManager, abstract_state: Any) -> tuple[Any, dict[str, Any]] | None:
    step = manager.latest_step()
    if step is None:
      return None
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), progress=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["progress"])

  def wait_until_finished(self) -> None:
    self.latest.wait_until_finished()
    self.best.wait_until_finished()

  def close(self) -> None:
    """Waits for pending asynchronous saves and releases the managers."""
    self.latest.close()
    self.best.close()


def _jsonable(tree: dict[str, Any]) -> dict[str, Any]:
  return json.loads(json.dumps(tree, default=lambda x: np.asarray(x).tolist()))


# --- params for inference -------------------------------------------------------------------------


def save_params_checkpoint(directory: str, config: ml_collections.ConfigDict, params: Any) -> str:
  """Writes `config` and seed-stacked params as a params-only checkpoint that `restore_params` reads.

  This is the layout for converted official checkpoints (`avvp_jax.convert`) and for exports:
  `DIR/config.json` + `DIR/params/`. `params` has a leading `[config.num_seeds]` axis on every leaf, as
  `restore_params` returns it (`stack_seeds` adds it to one model's params). Blocks until the write is
  complete. Returns `directory`.
  """
  num_seeds = int(config.get("num_seeds", 1))
  shapes = {leaf.shape[:1] for leaf in jax.tree.leaves(params)}
  if shapes != {(num_seeds,)}:
    raise InputError(f"params to save must have a leading seed axis of config.num_seeds={num_seeds} on every "
                     f"leaf (found leading sizes {sorted(shapes)}): pass stack_seeds(params) for one model.")
  directory = absolute(directory)
  save_config(directory, config)
  params_dir = os.path.join(directory, PARAMS_DIRNAME)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(params_dir, params, force=True)
    checkpointer.wait_until_finished()
  return directory


def stack_seeds(*params: Any) -> Any:
  """One or more models' params (same structure) stacked on a new leading seed axis: `[S, ...]` leaves."""
  return jax.tree.map(lambda *leaves: np.stack([np.asarray(x) for x in leaves]), *params)


def select_seed(config: ml_collections.ConfigDict, params: Any, seed: int) -> Any:
  """The params of the replica trained with `seed` (one of `state_lib.run_seeds(config)`), without the seed axis.

  Raises:
    InputError: when no replica of the run has that seed.
  """
  seeds = state_lib.run_seeds(config)
  if int(seed) not in seeds:
    trained = f"seed {seeds[0]} only" if len(seeds) == 1 else f"seeds {seeds[0]}..{seeds[-1]}"
    raise InputError(f"seed={seed} is not a replica of this run, which trained {trained}: pick one of those, or "
                     "leave the seed unset (the ensemble of a multi-seed run).")
  index = seeds.index(int(seed))
  return jax.tree.map(lambda x: x[index], params)


def _abstract_params(config: ml_collections.ConfigDict) -> Any:
  return state_lib.abstract_params(config)


def _restore_state_params(step_dir: str, config: ml_collections.ConfigDict) -> Any:
  abstract_state = state_lib.abstract_train_state(config)
  with ocp.StandardCheckpointer() as checkpointer:
    state = checkpointer.restore(os.path.join(step_dir, "state"), abstract_state)
  return state.params


def _step_dirs(directory: str) -> list[int]:
  directory = epath.Path(directory)
  if not directory.is_dir():
    return []
  return sorted(int(child.name) for child in directory.iterdir()
                if child.name.isdigit() and (child / "state").is_dir())


def find_state_checkpoint(workdir: str, which: str = "best") -> str | None:
  """The step folder of a workdir's best (`which="best"`, falling back to latest) or latest save."""
  order = (BEST_DIRNAME, LATEST_DIRNAME) if which == "best" else (LATEST_DIRNAME,)
  for sub in order:
    steps = _step_dirs(os.path.join(workdir, sub))
    if steps:
      return os.path.join(workdir, sub, str(steps[-1]))
  return None


def _checked_config(config: ml_collections.ConfigDict | None, directory: str) -> ml_collections.ConfigDict:
  """`config`, or the one stored in `directory`; a given config must have the stored run's number of seeds."""
  stored_path = epath.Path(directory) / CONFIG_FILENAME
  if config is None or not stored_path.is_file():
    return config if config is not None else load_config(directory)
  stored = state_lib.run_seeds(load_config(directory))
  if len(state_lib.run_seeds(config)) != len(stored):
    raise InputError(f"the checkpoint in {directory} holds {len(stored)} replica(s) (seeds {stored}), but the given "
                     f"config has num_seeds={len(state_lib.run_seeds(config))}: pass --config.num_seeds={len(stored)} "
                     f"--config.seed={stored[0]}, or leave --config out to use the stored config.")
  return config


def restore_params(path: str, config: ml_collections.ConfigDict | None = None
                   ) -> tuple[ml_collections.ConfigDict, Any]:
  """Params for inference from a workdir, a step folder of one, or a params-only checkpoint.

  Args:
    path: a training workdir (its best save, else its latest), a step folder such as
      `WORKDIR/best/1234`, or a folder written by `save_params_checkpoint`.
    config: the config to rebuild the model with; None: the `config.json` stored with the checkpoint.

  Returns:
    (config, params): params seed-stacked (a leading `[config.num_seeds]` axis on every leaf, 1 for a
    1-seed run) and laid out on the default `("seed", "data")` mesh.

  Raises:
    InputError: when `path` holds no checkpoint avvp_jax can read.
  """
  path = absolute(path)
  if not epath.Path(path).is_dir():
    raise InputError(f"Checkpoint path {path} does not exist: pass a workdir, a step folder or a params "
                     "checkpoint folder.")
  if (epath.Path(path) / PARAMS_DIRNAME).is_dir():
    config = _checked_config(config, path)
    with ocp.StandardCheckpointer() as checkpointer:
      params = checkpointer.restore(os.path.join(path, PARAMS_DIRNAME), _abstract_params(config))
    return config, params
  if (epath.Path(path) / "state").is_dir():  # one step folder: WORKDIR/{best,checkpoints}/STEP
    step_dir, workdir = path, os.path.dirname(os.path.dirname(path))
  else:
    step_dir, workdir = find_state_checkpoint(path), path
    if step_dir is None:
      raise InputError(f"No checkpoint in {path}: train first (launch/train.py --workdir={path}) or pass "
                       "--checkpoint=PATH to a params checkpoint.")
  config = _checked_config(config, workdir)
  logging.info("Restoring params from %s", step_dir)
  return config, _restore_state_params(step_dir, config)
