"""Checkpoints: full training state with Orbax, the run's config as JSON, and params-only exports.

Workdir layout written by `avvp_jax.train.train_and_evaluate`:

  WORKDIR/config.json        the run's config (`save_config` / `load_config`), enough to rebuild the model;
                              the first start's, never rewritten (`avvp_jax.workdir`)
  WORKDIR/config_history.jsonl  one JSON line per start of a run: what changed since the previous start
  WORKDIR/.lock               while a trainer runs: its host, pid and start time (`avvp_jax.workdir`)
  WORKDIR/checkpoints/<step>/ latest full-state saves: items `state` (a `TrainState` of `config.num_seeds`
                              replicas, every leaf `[S, ...]`: step, params, optimizer state, dropout key)
                              and `progress` (JSON: epoch, batches done in it, each replica's best score)
  WORKDIR/best/<step>/        the best state of every replica by its own validation
                              `config.checkpoint.best_metric`, each from its own best epoch (items `state`,
                              `progress`, and `metrics`: JSON, per replica its seed, step and 10 metrics);
                              when every replica's best is the latest save of its step, `state` is hard
                              links to that save's files (on a local disk: nothing is written twice)

Params-only layout (what `save_params_checkpoint` writes; `avvp_jax.convert` writes converted official
checkpoints with it):

  DIR/config.json            the config the params belong to
  DIR/params/                an Orbax StandardCheckpointer save of the seed-stacked params tree

Params are always seed-stacked: every leaf has a leading `[num_seeds]` axis (1 for a 1-seed run or a
converted official model); `select_seed` takes one replica out.

Reading: `resolve(path) -> CheckpointSource` is the one place a path is interpreted: a params-only folder (it
holds `params/`), one step folder of a workdir (it holds `state/`), or a workdir, whose best save (else latest)
read-only Orbax managers find in `best/` and `checkpoints/`. The source says what to restore, the step, the
workdir, where its `config.json` lives and where a report of it goes. `restore_params(path) -> (config,
params)` reads any of them; from a training save it restores only the `params` of the `TrainState` (an Orbax
partial restore), the optimizer state stays on disk. `checkpoint_config` is the rule for a given config: the
number of replicas and their seeds are the checkpoint's unless set explicitly. `launch/evaluate.py`,
`avvp_jax.evaluate` and `avvp_jax.load_parser` read checkpoints through these.

Saves are asynchronous: always `close()` a `Checkpointer` (it waits for pending writes) - the trainer does so
in a `finally`, so neither an error nor a normal exit loses a save.

Length: every Orbax use of the package is here (training saves, params-only exports, the path resolver and
the partial params restore with its fit check), so that one file changes when Orbax does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
from typing import Any, Callable, Collection

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
STATE_ITEM = "state"  # the TrainState item of a training save
# Orbax's marker of a committed item, written at its commit.
COMMIT_SUCCESS_FILE = "commit_success.txt"
WORKDIR, STEP, PARAMS = "workdir", "step", "params"  # the kinds of `CheckpointSource`


# --- config ---------------------------------------------------------------------------------------


def absolute(path: str) -> str:
  """`path` made absolute; URLs such as gs://bucket/dir (a TPU pod's shared workdir) are kept as given."""
  return path if "://" in path else os.path.abspath(os.path.expanduser(path))


def save_config(directory: str, config: ml_collections.ConfigDict) -> str:
  """Writes `config` as JSON to `directory/config.json` (process 0 only); returns the path.

  On a local disk the file is written beside and renamed into place, so it is never seen half-written (an
  interrupted write leaves the old file or none).
  """
  path = epath.Path(absolute(directory)) / CONFIG_FILENAME
  if jax.process_index() == 0:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = config.to_json_best_effort(indent=2, sort_keys=True)
    if "://" in str(path):  # object stores write whole objects
      path.write_text(text)
    else:
      temporary = f"{path}.{os.getpid()}.tmp"
      with open(temporary, "w") as f:
        f.write(text)
      os.replace(temporary, path)
  return str(path)


def load_config(path: str) -> ml_collections.ConfigDict:
  """Reads a config written by `save_config`; `path` is the JSON file or the folder holding it."""
  path = epath.Path(absolute(path))
  if path.is_dir():
    path = path / CONFIG_FILENAME
  if not path.is_file():
    raise InputError(
        f"No {CONFIG_FILENAME} at {path}: point to a workdir or checkpoint folder written by "
        "avvp_jax (or pass --config)."
    )
  return ml_collections.ConfigDict(_tuples(json.loads(path.read_text())))


def _tuples(tree: Any) -> Any:
  """JSON's arrays back to the tuples the run cards write (config flags override tuples, never lists)."""
  if isinstance(tree, dict):
    return {key: _tuples(value) for key, value in tree.items()}
  if isinstance(tree, list):
    return tuple(_tuples(value) for value in tree)
  return tree


# --- full training state --------------------------------------------------------------------------


def _manager(directory: str, keep: int) -> ocp.CheckpointManager:
  """A manager that writes: asynchronous saves, the `keep` latest kept."""
  options = ocp.CheckpointManagerOptions(
      preservation_policy=ocp.checkpoint_managers.LatestN(n=keep)
  )
  return ocp.CheckpointManager(directory, options=options)


def _read_only_manager(directory: str) -> ocp.CheckpointManager:
  """A manager that only reads: it lists the finalized steps of `directory` (unfinished saves are not steps).

  The options Orbax would otherwise reset for `read_only` (with a warning each) are set as it wants them; no
  root metadata is written, so no process barrier is passed and any process may call it alone.
  """
  options = ocp.CheckpointManagerOptions(
      read_only=True,
      create=False,
      save_interval_steps=0,
      enable_async_checkpointing=False,
      save_root_metadata=False,
  )
  return ocp.CheckpointManager(directory, options=options)


@dataclasses.dataclass
class LinkSave(ocp.args.CheckpointArgs):
  """Save args of a linked state item: `source`, the finished item folder to link; `finished()`, blocks
  until the save writing `source` is finalized."""

  source: str
  finished: Callable[[], None]


class StateHandler(ocp.StandardCheckpointHandler):
  """The best save's `state` item: written as `StandardCheckpointHandler` writes it, or, for `LinkSave`
  args, made of hard links to the files of another save's finished item (no array bytes written again).

  A linked item holds the very files of the latest save of the same step (the same inodes), so it restores
  with `StandardRestore` as a written one does and outlives that save's deletion. The links are made in
  Orbax's background commit once `LinkSave.finished()` returns; the best save is finalized after them.
  """

  def __init__(self):
    super().__init__()
    # Whether the pending save links: its finalization must not rewrite the shared files.
    self._linked = False

  async def _link(self, args: LinkSave, directory: Any) -> None:
    await asyncio.to_thread(args.finished)
    if hasattr(directory, "await_creation"):  # Orbax's deferred path
      directory = await directory.await_creation()
    for root, _, files in os.walk(args.source):
      target = os.path.join(str(directory), os.path.relpath(root, args.source))
      os.makedirs(target, exist_ok=True)
      for name in files:
        if name == COMMIT_SUCCESS_FILE:  # each save's own: Orbax's commit rewrites it in place
          continue
        try:
          os.link(os.path.join(root, name), os.path.join(target, name))
        except OSError:  # a file system without hard links: a copy
          shutil.copy2(os.path.join(root, name), os.path.join(target, name))

  def finalize(self, directory: epath.Path) -> None:
    if self._linked:  # the linked files were finalized with the save they belong to
      self._linked = False
      return
    super().finalize(directory)

  async def async_save(self, directory, item=None, save_args=None, args=None):
    self._linked = isinstance(args, LinkSave)
    if not self._linked:
      return await super().async_save(directory, item, save_args, args)
    return [
        ocp.future.CommitFutureAwaitingContractedSignals(
            self._link(args, directory), name="link_save"
        )
    ]


def _best_manager(directory: str) -> ocp.CheckpointManager:
  """The best save's manager: as `_manager(directory, 1)`, its `state` item written by `StateHandler`."""
  registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
  handler = StateHandler()
  for args in (ocp.args.StandardSave, ocp.args.StandardRestore, LinkSave):
    registry.add(STATE_ITEM, args, handler)
  options = ocp.CheckpointManagerOptions(preservation_policy=ocp.checkpoint_managers.LatestN(n=1))
  return ocp.CheckpointManager(directory, options=options, handler_registry=registry)


def _can_link(directory: str) -> bool:
  """Hard links serve one process on a local disk (object stores and multi-host saves write copies)."""
  return "://" not in directory and jax.process_count() == 1


class Checkpointer:
  """The latest saves (`WORKDIR/checkpoints`) and the best save (`WORKDIR/best`) of one training run.

  Every process must call `save` (Orbax writes each process's shards and synchronises); only process 0
  writes metadata. Use as a context manager, or call `close()`, so asynchronous saves are finished.

  Nothing is written twice: a best save of the state that the latest save of the same step holds
  (`save_best(..., same_as_latest=True)`) links that save's files (`StateHandler`) on a local disk.
  """

  def __init__(self, workdir: str, *, keep: int = 1):
    self.workdir = absolute(workdir)
    self.latest = _manager(os.path.join(self.workdir, LATEST_DIRNAME), keep)
    self.best = _best_manager(os.path.join(self.workdir, BEST_DIRNAME))
    # A pending best save links a latest save's files: it must end before that save is deleted.
    self._linking = False

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
    if self._linking:  # this save may delete the save a pending best save links
      self.best.wait_until_finished()
      self._linking = False
    self.latest.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), progress=ocp.args.JsonSave(_jsonable(progress))
        ),
    )

  def save_best(
      self,
      step: int,
      best_state: Any,
      progress: dict[str, Any],
      metrics: dict[str, Any],
      *,
      same_as_latest: bool = False,
  ) -> None:
    """Replaces the best save with `best_state` (each replica's best), saved at `step`.

    Args:
      step: the global step when a replica last improved (the save's folder name).
      best_state: the seed-stacked `TrainState` whose replica s is replica s's best state.
      progress: as in `save`.
      metrics: JSON-able: per replica its seed, the step of its best state and its validation metrics.
      same_as_latest: `best_state` is the state that `save` saved at `step` (every replica improved at
        it): on a local disk the best save's state links that save's files instead of writing them again.
    """
    state = ocp.args.StandardSave(best_state)
    if same_as_latest and _can_link(self.workdir):
      source = ocp.step.standard_name_format().build_name(step)
      state = LinkSave(
          os.path.join(self.latest.directory, source, STATE_ITEM), self.latest.wait_until_finished
      )
      self._linking = True
    self.best.save(
        step,
        args=ocp.args.Composite(
            state=state,
            progress=ocp.args.JsonSave(_jsonable(progress)),
            metrics=ocp.args.JsonSave(_jsonable(metrics)),
        ),
    )

  def restore_latest(self, abstract_state: Any) -> tuple[Any, dict[str, Any]] | None:
    """Restores (state, progress) of the latest save onto `abstract_state`'s shardings, or None if none."""
    return self._restore(self.latest, abstract_state)

  def restore_best(self, abstract_state: Any) -> tuple[Any, dict[str, Any]] | None:
    """Restores (best state, progress) of the best save onto `abstract_state`'s shardings, or None."""
    return self._restore(self.best, abstract_state)

  @staticmethod
  def _restore(
      manager: ocp.CheckpointManager, abstract_state: Any
  ) -> tuple[Any, dict[str, Any]] | None:
    step = manager.latest_step()
    if step is None:
      return None
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), progress=ocp.args.JsonRestore()
        ),
    )
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


# --- params-only checkpoints and seeds ------------------------------------------------------------


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
    raise InputError(
        f"params to save must have a leading seed axis of config.num_seeds={num_seeds} on every "
        f"leaf (found leading sizes {sorted(shapes)}): pass stack_seeds(params) for one model."
    )
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
    raise InputError(
        f"seed={seed} is not a replica of this run, which trained {trained}: pick one of those, or "
        "leave the seed unset (the ensemble of a multi-seed run)."
    )
  index = seeds.index(int(seed))
  return jax.tree.map(lambda x: x[index], params)


# --- what a path holds ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CheckpointSource:
  """What a checkpoint path holds, as `resolve` found it.

  Attributes:
    kind: "workdir" (a training workdir: its best save, else its latest), "step" (one save of a workdir,
      `WORKDIR/{best,checkpoints}/STEP`) or "params" (a params-only folder written by `save_params_checkpoint`).
    path: the folder as given, made absolute.
    directory: the Orbax item to restore: `STEP_FOLDER/state` (a seed-stacked `TrainState`) or `DIR/params`.
    step: the save's step; None for params-only (or a step folder whose name is not its step).
    workdir: the training workdir the save belongs to; None for params-only.
    config_dir: the folder whose `config.json` describes the checkpoint's model and replicas.
    report_dir: where an evaluation report of it goes: the workdir, else the params-only folder itself.
  """

  kind: str
  path: str
  directory: str
  step: int | None
  workdir: str | None
  config_dir: str
  report_dir: str

  @property
  def step_dir(self) -> str | None:
    """The step folder holding the `state` item (`WORKDIR/best/STEP`); None for params-only."""
    return None if self.kind == PARAMS else os.path.dirname(self.directory)


def _latest_saved_step(directory: str) -> tuple[int, str] | None:
  """(step, step folder) of the latest finalized save in a manager folder, as a read-only manager finds it."""
  if not epath.Path(directory).is_dir():
    return None
  manager = _read_only_manager(directory)
  try:
    step = manager.latest_step()
  finally:
    manager.close()
  if step is None:
    return None
  return step, str(ocp.step.standard_name_format().find_step(directory, step).path)


def resolve(path: str, which: str = "best") -> CheckpointSource:
  """What `path` holds: a params-only folder, one step folder of a workdir, or a workdir (see the module doc).

  A workdir's saves are the steps Orbax's read-only managers list in `WORKDIR/best` and `WORKDIR/checkpoints`
  (unfinished saves are not steps); its best save is the one step kept in `best/`.

  Args:
    path: the folder to read.
    which: for a workdir, "best" (its best save, else its latest) or "latest" (its latest save).

  Returns:
    The `CheckpointSource`: what to restore, and where its config and a report of it live.

  Raises:
    InputError: `path` does not exist, or holds none of the layouts.
  """
  if which not in ("best", "latest"):
    raise ValueError(f"which={which!r}: use 'best' or 'latest'")
  path = absolute(path)
  folder = epath.Path(path)
  if not folder.is_dir():
    raise InputError(
        f"Checkpoint path {path} does not exist: pass a training workdir, a step folder such as "
        "WORKDIR/best/STEP, or a params checkpoint folder."
    )
  if (folder / PARAMS_DIRNAME).is_dir():
    return CheckpointSource(PARAMS, path, str(folder / PARAMS_DIRNAME), None, None, path, path)
  if (folder / STATE_ITEM).is_dir():  # one step folder: WORKDIR/{best,checkpoints}/STEP
    workdir = str(folder.parent.parent)
    step = int(folder.name) if folder.name.isdigit() else None
    return CheckpointSource(STEP, path, str(folder / STATE_ITEM), step, workdir, workdir, workdir)
  subdirs = (BEST_DIRNAME, LATEST_DIRNAME) if which == "best" else (LATEST_DIRNAME,)
  for sub in subdirs:
    found = _latest_saved_step(os.path.join(path, sub))
    if found is not None:
      step, step_dir = found
      if not (epath.Path(step_dir) / STATE_ITEM).is_dir():
        raise InputError(
            f"The save {step_dir} has no {STATE_ITEM}/ item: it was not written by avvp_jax's trainer; "
            "move it away or pass --checkpoint=PATH to another checkpoint."
        )
      return CheckpointSource(
          WORKDIR, path, os.path.join(step_dir, STATE_ITEM), step, path, path, path
      )
  raise InputError(
      f"No checkpoint in {path}: it holds no {PARAMS_DIRNAME}/ (a params checkpoint), no {STATE_ITEM}/ "
      f"(a step folder) and no saves in {' or '.join(sub + '/' for sub in subdirs)} (a workdir): "
      f"train first (launch/train.py --workdir={path}) or pass --checkpoint=PATH to a checkpoint."
  )


def find_state_checkpoint(workdir: str, which: str = "best") -> str | None:
  """The step folder of a workdir's best (`which="best"`, falling back to latest) or latest save; None if none."""
  try:
    source = resolve(workdir, which)
  except InputError:
    return None
  return source.step_dir if source.kind == WORKDIR else None


# --- restoring params -----------------------------------------------------------------------------


def checkpoint_config(
    source: CheckpointSource,
    config: ml_collections.ConfigDict | None = None,
    explicit: Collection[str] | None = None,
) -> ml_collections.ConfigDict:
  """The config to rebuild `source`'s model with, holding as many replicas as the checkpoint.

  The number of replicas is a property of the checkpoint: `num_seeds` and `seed` that are not in `explicit`
  are taken from the stored `config.json`, so per-seed reports carry the trained seeds. A number of seeds that
  was chosen and differs from the stored one is an error.

  Args:
    source: from `resolve`.
    config: the config to use; None: the stored one (`source.config_dir/config.json`).
    explicit: the dotted names of the fields of `config` its user set (a launcher's `--config.x=y`
      overrides); None: every field counts as set, so the stored seeds are only checked against it.

  Returns:
    `config` (a copy when fields were taken from the checkpoint), or the stored config.

  Raises:
    InputError: no config given and none stored, or a given number of seeds that is not the stored one.
  """
  stored_path = epath.Path(source.config_dir) / CONFIG_FILENAME
  if config is None or not stored_path.is_file():
    return config if config is not None else load_config(source.config_dir)
  stored = load_config(source.config_dir)
  stored_seeds = state_lib.run_seeds(stored)
  stored_values = {"num_seeds": len(stored_seeds), "seed": stored_seeds[0]}
  taken = (
      {}
      if explicit is None
      else {
          key: value
          for key, value in stored_values.items()
          if key not in explicit and config.get(key) != value
      }
  )
  if taken:
    config = config.copy_and_resolve_references()
    with config.unlocked():
      for key, value in taken.items():
        config[key] = value
    logging.info(
        "Using the checkpoint's %s from %s.",
        ", ".join(f"{k}={v}" for k, v in taken.items()),
        stored_path,
    )
  seeds = state_lib.run_seeds(config)
  if len(seeds) != len(stored_seeds):
    raise InputError(
        f"the checkpoint in {source.config_dir} holds {len(stored_seeds)} replica(s) (seeds "
        f"{stored_seeds}), but the given config has num_seeds={len(seeds)}: pass "
        f"--config.num_seeds={len(stored_seeds)} --config.seed={stored_seeds[0]}, or leave "
        "--config.num_seeds out to use the stored number."
    )
  return config


def _saved_tree(directory: str) -> dict[str, Any]:
  """The tree of array metadata (shapes, dtypes) of an Orbax PyTree item, read without restoring it."""
  handler = ocp.PyTreeCheckpointHandler()
  try:
    return handler.metadata(epath.Path(directory)).tree
  finally:
    handler.close()


def _leaf_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {
      jax.tree_util.keystr(path, simple=True, separator="/"): tuple(leaf.shape)
      for path, leaf in leaves
  }


def _check_params_fit(
    directory: str, saved: Any, abstract: Any, config: ml_collections.ConfigDict
) -> None:
  """Raises a one-line InputError naming the first differences when the saved params do not fit the model.

  A partial restore would otherwise leave params the checkpoint lacks unrestored instead of failing.
  """
  saved, wanted = _leaf_shapes(saved), _leaf_shapes(abstract)
  problems = []
  for label, names in (
      ("missing", sorted(set(wanted) - set(saved))),
      ("unexpected", sorted(set(saved) - set(wanted))),
  ):
    if names:
      problems.append(
          f"{label} {', '.join(names[:3])}"
          + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")
      )
  problems += [
      f"{name} is {saved[name]}, the model's is {shape}"
      for name, shape in sorted(wanted.items())
      if name in saved and saved[name] != shape
  ][:3]
  if problems:
    model = f"{config.model.get('encoder')}/{config.model.get('decoder')}"
    raise InputError(
        f"the params in {directory} do not fit the model of the config ({model}): {'; '.join(problems)}: "
        "evaluate with the config the checkpoint was trained with (leave --config out to use its "
        "config.json)."
    )


def _restore_state_params(state_dir: str, abstract_params: Any) -> Any:
  """The `params` of a saved `TrainState` item, restored alone onto `abstract_params`' shardings.

  Orbax 0.12.8's partial restore (`PyTreeRestore(partial_restore=True)`) reads only the leaves present in the
  item, so the optimizer state, step and dropout key stay on disk. It fills leaves the checkpoint lacks with the
  item's own (abstract) values rather than failing: `_check_params_fit` is what catches a mismatch.
  """
  item = {"params": abstract_params}
  args = ocp.args.PyTreeRestore(
      item=item,
      restore_args=ocp.checkpoint_utils.construct_restore_args(item),
      partial_restore=True,
  )
  with ocp.PyTreeCheckpointer() as checkpointer:
    return checkpointer.restore(state_dir, args=args)["params"]


def restore_params(
    path: str | CheckpointSource,
    config: ml_collections.ConfigDict | None = None,
    *,
    explicit: Collection[str] | None = None,
) -> tuple[ml_collections.ConfigDict, Any]:
  """Params for inference from a workdir, a step folder of one, or a params-only checkpoint.

  Args:
    path: a training workdir (its best save, else its latest), a step folder such as
      `WORKDIR/best/1234`, a folder written by `save_params_checkpoint`, or what `resolve` made of one.
    config: the config to rebuild the model with; None: the `config.json` stored with the checkpoint.
    explicit: the fields of `config` its user set; `num_seeds` and `seed` not among them come from the
      checkpoint (`checkpoint_config`). None: all of them.

  Returns:
    (config, params): params seed-stacked (a leading `[config.num_seeds]` axis on every leaf, 1 for a
    1-seed run) and laid out on the default `("seed", "data")` mesh. From a training save only the `params`
    of its `TrainState` are read.

  Raises:
    InputError: when `path` holds no checkpoint avvp_jax can read, or one that does not fit `config`.
  """
  source = path if isinstance(path, CheckpointSource) else resolve(path)
  config = checkpoint_config(source, config, explicit)
  abstract = state_lib.abstract_params(config)
  saved = _saved_tree(source.directory)
  if source.kind != PARAMS:
    if "params" not in saved:
      raise InputError(
          f"The state in {source.directory} holds no params: it was not written by avvp_jax's "
          "trainer; pass --checkpoint=PATH to another checkpoint."
      )
    saved = saved["params"]
  _check_params_fit(source.directory, saved, abstract, config)
  logging.info("Restoring params from %s", source.directory)
  if source.kind == PARAMS:  # the whole item is the params
    with ocp.StandardCheckpointer() as checkpointer:
      return config, checkpointer.restore(source.directory, abstract)
  return config, _restore_state_params(source.directory, abstract)
