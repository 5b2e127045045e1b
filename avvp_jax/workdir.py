"""The workdir contract: one run per workdir, trained with one config, its continuations on the record.

Length: the field tables, the stored config with its history and the lock are one contract (`claim`
uses all three under one lock); each part is short, and split they would import one another.

What a training workdir holds beside the checkpoints (`avvp_jax.checkpoint` has the full layout):

  WORKDIR/config.json           the config of the run's first start; never rewritten
  WORKDIR/config_history.jsonl  append-only: one JSON line per start of a run in the workdir (the first
                                included): time, host, pid, argv, and the fields that changed since the
                                previous start, each with its old and new value
  WORKDIR/.lock                 while a trainer runs: JSON host, pid and since when (removed on exit)

Before anything is written, `claim` compares the given config with the stored one. The fields of
`MUST_MATCH` (the model and its parameters' shapes, the data and its order, the loss, the optimizer and its
schedule, the seeds) must be equal: a continued run has to take the steps the stored run would have taken,
else `config.json` would lie about what the finished epochs were trained with. A mismatch is one
`InputError` naming every differing field with both values. The fields of `MAY_CHANGE` (how long to train,
logging, evaluation and checkpoint cadence, profiling, test hooks) may differ and go into the history;
`current_config` is `config.json` with the history's changes applied, the config of the latest start, which
`launch/train.py --workdir=W` (no --config) continues. A field in neither table must match, except the
sections of `config.model` that neither config's model reads (`models.sections_read`, same encoder,
decoder and refiner), and the sections `config.data.<family>` of the task families other than the run's
(`tasks.TASKS`, e.g. `data.ave` in an LLP run, a section added to configs/common.py after the run was stored):
they change nothing and are recorded like a `MAY_CHANGE` field.

The lock is taken atomically (a complete file hard-linked into place, or `O_CREAT | O_EXCL` where the
filesystem has no hard links) and removed on exit, errors and clean stops included. A lock whose process
is gone (same host, pid not running, or a pid that started after the lock was written) is taken over with
a warning; a lock from another host cannot be checked and is refused with how to remove it. With several
processes only process 0 holds it (and writes the history). On URL workdirs (gs://...) the lock is checked
and written, but not atomically.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
import time
import uuid
from typing import Any, Iterator, Mapping

from absl import logging
from etils import epath
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

from avvp_jax import checkpoint as checkpoint_lib
from avvp_jax import models
from avvp_jax import state as state_lib
from avvp_jax import tasks
from avvp_jax.errors import InputError

HISTORY_FILENAME = "config_history.jsonl"
LOCK_FILENAME = ".lock"

# A continued run must match the stored run in these fields (a section name covers its fields), each with
# the reason. The most specific entry of MUST_MATCH and MAY_CHANGE decides; a field in neither must match.
MUST_MATCH = {
    "model": "the architecture and the parameters' shapes",
    "data": "which clips, features, labels and pseudo labels train, and their order",
    "loss": "what the gradients are of",
    "optimizer": "the update rule, its state's shapes and the learning-rate schedule",
    "task": "the task family: its data, the model's outputs and the losses",
    "seed": "the initialisation, the dropout stream and the data order",
    "num_seeds": "the replicas: the leading axis of every saved array",
    "batch_size": "the batches, the steps per epoch and so the schedule and the saved data position",
    "compute_dtype": "the arithmetic of every step",
    "synthetic_learning_rate": "the peak learning rate on the synthetic data",
    "synthetic_label_embeddings": "LEAP's label table on the synthetic data (a model input)",
    "checkpoint.best_metric": "the ranking the stored best save and best scores were chosen by",
    "checkpoint.best_rule": "how ties ranked when the stored best save was chosen",
    "eval_thresholds": "the segment thresholds validation scored with, so which epoch is the best",
}
# ... and may differ in these: they change how long the run trains and what it reports or saves, not the
# steps it takes. Each change is recorded in WORKDIR/config_history.jsonl.
MAY_CHANGE = {
    "num_epochs": (
        "trains longer (or stops earlier); the step schedule is per epoch and does not depend on it "
        "(optimizer.schedule='warmup_cosine' anneals over the run's epochs: `check` refuses a change there)"
    ),
    "synthetic_num_epochs": "the same, on the synthetic data",
    "eval_batch_size": "evaluation pads and masks: every clip counts once whatever the batch",
    "eval_every_epochs": "when validation runs (and so which epochs may become the best)",
    "log_every_steps": "reporting only",
    "checkpoint.every_epochs": "how often full saves are made",
    "checkpoint.every_steps": "how often mid-epoch saves are made",
    "checkpoint.keep": "how many latest saves are kept",
    "debug": "test hooks",
    "profile": "a trace of some steps; no effect on training",
    "data.data_dir": "where the data build is cached; a build is keyed by its inputs",
    "data.eval_in_memory_mb": "whether evaluation batches are read again or kept in memory; same batches",
    "evals": "what else is scored at each validation; the steps and the ranking do not change",
    "final_report": "what is scored after training; the training does not change",
}

ABSENT = "<absent>"  # a field one of the two configs does not have (written before it existed)
_HELD: set[str] = set()  # lock files this process holds


# --- fields ----------------------------------------------------------------------------------------


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """`{"a": {"b": 1}}` -> `{"a.b": 1}` (a config as JSON data, one entry per leaf field)."""
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping) and value:
      out.update(flatten(value, name + "."))
    else:
      out[name] = value
  return out


def may_change(name: str) -> bool:
  """Whether the dotted field `name` may differ on a continued run (the most specific table entry decides)."""
  best, allowed = -1, False
  for table, verdict in ((MUST_MATCH, False), (MAY_CHANGE, True)):
    for entry in table:
      if (name == entry or name.startswith(entry + ".")) and len(entry) > best:
        best, allowed = len(entry), verdict
  return allowed


def _json(config: ml_collections.ConfigDict | Mapping[str, Any]) -> dict[str, Any]:
  """A config as the JSON data `config.json` holds (tuples as lists, ...)."""
  if isinstance(config, ml_collections.ConfigDict):
    return json.loads(config.to_json_best_effort(sort_keys=True))
  return json.loads(json.dumps(config, sort_keys=True))


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
  """The leaf fields whose values differ: dotted name -> (old value, new value), `ABSENT` for a missing one."""
  old, new = flatten(_json(old)), flatten(_json(new))
  return {
      name: (old.get(name, ABSENT), new.get(name, ABSENT))
      for name in sorted(set(old) | set(new))
      if old.get(name, ABSENT) != new.get(name, ABSENT)
  }


def _show(value: Any) -> str:
  return value if value == ABSENT else json.dumps(value)


# --- the stored config and its history ---------------------------------------------------------------


def _path(workdir: str, name: str) -> epath.Path:
  return epath.Path(checkpoint_lib.absolute(workdir)) / name


def stored_config(workdir: str) -> ml_collections.ConfigDict | None:
  """The config of the workdir's first start (`config.json`), or None for a workdir without one."""
  if not _path(workdir, checkpoint_lib.CONFIG_FILENAME).is_file():
    return None
  config = checkpoint_lib.load_config(workdir)
  state_lib.backfill(config)  # fields written before they existed hold the values that run had
  return config


def history(workdir: str) -> list[dict[str, Any]]:
  """The entries of `config_history.jsonl`, oldest first ([] when there is none)."""
  path = _path(workdir, HISTORY_FILENAME)
  if not path.is_file():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _set(tree: dict[str, Any], name: str, value: Any) -> None:
  *parents, leaf = name.split(".")
  for parent in parents:
    tree = tree.setdefault(parent, {})
  if value == ABSENT:
    tree.pop(leaf, None)
  else:
    tree[leaf] = value


def current_config(workdir: str) -> ml_collections.ConfigDict:
  """The config of the workdir's latest start: `config.json` with the history's changes applied.

  Raises:
    InputError: the workdir holds no `config.json`.
  """
  stored = stored_config(workdir)
  if stored is None:
    raise InputError(
        f"{checkpoint_lib.absolute(workdir)} holds no {checkpoint_lib.CONFIG_FILENAME}: it is no training "
        "workdir yet; give --config to start a run there."
    )
  tree = _json(stored)
  for entry in history(workdir):
    for name, change in entry.get("changed", {}).items():
      _set(tree, name, change["new"])
  return ml_collections.ConfigDict(tree)


def check(workdir: str, config: ml_collections.ConfigDict) -> dict[str, tuple[Any, Any]]:
  """Checks `config` (resolved, `state.resolve_config`) against the workdir's stored run; reads only.

  Returns:
    The fields that change against the latest start (all of them `MAY_CHANGE` ones): name -> (old, new);
    empty for a new workdir.

  Raises:
    InputError: one line naming every `MUST_MATCH` field that differs from `config.json`, with both values,
      and how to proceed.
  """
  stored = stored_config(workdir)
  if stored is None:
    return {}
  unread = _unread_model_sections(stored, config) + _other_tasks_data_sections(stored, config)
  refused = {
      name: c
      for name, c in differences(stored, config).items()
      if not may_change(name) and name.split(".")[:2] not in unread
  }
  if stored.optimizer.get("schedule") == "warmup_cosine":  # its cosine spans the run's epochs
    epochs = state_lib.num_train_epochs(stored), state_lib.num_train_epochs(config)
    if epochs[0] != epochs[1]:
      refused["the epochs optimizer.schedule='warmup_cosine' anneals over"] = epochs
  if refused:
    workdir = checkpoint_lib.absolute(workdir)
    shown = "; ".join(
        f"{name} is {_show(a)} there, {_show(b)} here" for name, (a, b) in refused.items()
    )
    raise InputError(
        f"{workdir} holds a run trained with another config: {shown}. These fields must match the stored "
        "run (they change the model, its data or its training): train into a new --workdir, or leave "
        f"--config out to continue the stored run (launch/train.py --workdir={workdir})."
    )
  return differences(current_config(workdir), config)


def _unread_model_sections(
    stored: ml_collections.ConfigDict, config: ml_collections.ConfigDict
) -> list[list[str]]:
  """`[["model", section], ...]`: the model sections neither run's model reads (`models.sections_read`),
  when both build the same model: a change there changes nothing (it is recorded, not refused)."""
  parts = ("encoder", "decoder", "refiner")
  if any(stored.model.get(p) != config.model.get(p) for p in parts):
    return []
  read = set(models.sections_read(stored.model)) | set(models.sections_read(config.model))
  sections = set(stored.model) | set(config.model)
  return [
      ["model", name]
      for name in sorted(sections)
      if name not in read
      and name != "input_dims"
      and isinstance(config.model.get(name, stored.model.get(name)), ml_collections.ConfigDict)
  ]


def _other_tasks_data_sections(
    stored: ml_collections.ConfigDict, config: ml_collections.ConfigDict
) -> list[list[str]]:
  """`[["data", family], ...]`: the data sections of the task families other than the run's (same task in
  both configs): another family's fields change nothing in this run."""
  if stored.get("task") != config.get("task"):
    return []
  own = tasks.data_section(
      config.get("task")
  )  # a variant (ave_cmm) reads its family's section (ave)
  return [
      ["data", name] for name in sorted({tasks.data_section(n) for n in tasks.TASKS}) if name != own
  ]


def _now() -> str:
  return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _append(path: epath.Path, line: str) -> None:
  """Appends one line: a real append on a local disk; on a URL (no appends there) the file is rewritten."""
  if "://" in str(path):
    path.write_text((path.read_text() if path.exists() else "") + line + "\n")
    return
  with open(path, "a") as f:
    f.write(line + "\n")


# --- the lock ----------------------------------------------------------------------------------------


def _process_state(pid: int) -> tuple[bool, float | None]:
  """(whether `pid` runs on this host, when it started in Unix seconds or None when unknown)."""
  if pid <= 0:  # no process of ours (and os.kill(0 or -1, ...) would address groups)
    return False, None
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False, None
  except PermissionError:  # runs, as another user
    pass
  try:  # Linux: the state and start time of the process
    with open(f"/proc/{pid}/stat") as f:
      fields = f.read().rsplit(")", 1)[1].split()
    with open("/proc/stat") as f:
      boot = next(float(line.split()[1]) for line in f if line.startswith("btime"))
  except (OSError, StopIteration, IndexError, ValueError):
    return True, None
  if fields[0] in ("Z", "X"):  # a zombie: exited, not yet reaped
    return False, None
  return True, boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


class Lock:
  """`WORKDIR/.lock`: one trainer per workdir (see the module docstring). Use `acquire` and `release`."""

  def __init__(self, workdir: str):
    self.workdir = checkpoint_lib.absolute(workdir)
    self.path = os.path.join(self.workdir, LOCK_FILENAME)
    self.held = False
    self._record = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": _now(),
        "since_unix": time.time(),
        "token": uuid.uuid4().hex,
    }

  def _read(self) -> dict[str, Any] | None:
    """The lock's record; None when there is no lock. A half-written one is waited for a moment."""
    path = epath.Path(self.path)
    for _ in range(20):
      try:
        text = path.read_text()
      except FileNotFoundError:
        return None
      try:
        record = json.loads(text)
        if isinstance(record, dict):
          return record
      except ValueError:
        pass
      time.sleep(0.05)
    raise InputError(
        f"{self.path} is no lock written by avvp_jax (unreadable): if no trainer runs on "
        f"{self.workdir}, delete it and rerun."
    )

  def _create(self) -> bool:
    """Writes the lock if there is none, atomically; whether it was written."""
    text = json.dumps(self._record, indent=2) + "\n"
    if "://" in self.path:  # object stores: no atomic create-if-absent through epath
      path = epath.Path(self.path)
      if path.exists():
        return False
      path.write_text(text)
      return True
    temporary = f"{self.path}.{self._record['token']}.tmp"
    with open(temporary, "w") as f:
      f.write(text)
    try:
      os.link(temporary, self.path)  # atomic, and the lock appears complete
      return True
    except FileExistsError:
      return False
    except OSError:  # no hard links on this filesystem
      try:
        descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        return False
      with os.fdopen(descriptor, "w") as f:
        f.write(text)
      return True
    finally:
      os.unlink(temporary)

  def _describe(self, record: Mapping[str, Any]) -> str:
    return f"host {record.get('host')}, pid {record.get('pid')}, since {record.get('since')}"

  def _check_stale(self, record: Mapping[str, Any]) -> None:
    """Returns when the lock's holder is known to be gone; raises InputError when it may still run."""
    host = record.get("host")
    if host != self._record["host"]:
      raise InputError(
          f"{self.workdir} is locked by a trainer on another host ({self._describe(record)}), which this "
          f"host ({self._record['host']}) cannot check: if it no longer runs (the host is gone or the run "
          f"was killed), delete {self.path} and rerun."
      )
    pid = int(record.get("pid", -1))
    running, started = _process_state(pid)
    if (
        pid == os.getpid()
    ):  # this very process holds no such lock: a former process with the same pid
      running = self.path in _HELD
    elif (
        running and started is not None
    ):  # a pid reused by a process started after the lock was taken
      running = started <= float(record.get("since_unix", started)) + 1.0
    if running:
      raise InputError(
          f"{self.workdir} is in use by another trainer ({self._describe(record)}; {self.path}): wait for "
          "it to finish or stop it (Ctrl-C or SIGTERM saves and releases the workdir), or train into "
          "another --workdir."
      )

  def acquire(self) -> None:
    """Takes the lock, taking over a stale one with a warning.

    Raises:
      InputError: another trainer holds it (one line naming it), or one on another host may.
    """
    epath.Path(self.workdir).mkdir(parents=True, exist_ok=True)
    for _ in range(3):
      if self._create():
        self.held = True
        _HELD.add(self.path)
        return
      record = self._read()
      if record is None:  # released meanwhile
        continue
      self._check_stale(record)
      logging.warning(
          "Taking over the stale lock of %s: its trainer (%s) no longer runs.",
          self.workdir,
          self._describe(record),
      )
      self._remove_if(record)
    raise InputError(f"could not take the lock {self.path}: other trainers keep taking it.")

  def _remove_if(self, record: Mapping[str, Any]) -> None:
    """Removes the lock file if it still holds `record` (moved away atomically first, then compared)."""
    if "://" in self.path:
      epath.Path(self.path).unlink(missing_ok=True)
      return
    moved = f"{self.path}.{self._record['token']}.old"
    try:
      os.rename(self.path, moved)
    except FileNotFoundError:
      return
    try:
      with open(moved) as f:
        found = json.loads(f.read() or "null")
    except ValueError:
      found = None
    if found != dict(record):  # someone else's new lock: put it back
      with contextlib.suppress(FileExistsError):
        os.link(moved, self.path)
    os.unlink(moved)

  def release(self) -> None:
    """Removes the lock if this process holds it."""
    if not self.held:
      return
    self.held = False
    _HELD.discard(self.path)
    with contextlib.suppress(FileNotFoundError, InputError):
      record = self._read()
      if record is not None and record.get("token") == self._record["token"]:
        epath.Path(self.path).unlink(missing_ok=True)


# --- a run's claim on its workdir -------------------------------------------------------------------


class Run:
  """A started run's hold on its workdir: what changed against the latest start, and its record.

  Attributes:
    workdir: the absolute workdir.
    changes: the `MAY_CHANGE` fields that differ from the latest start: name -> (old, new).
  """

  def __init__(self, workdir: str, config: ml_collections.ConfigDict, changes: dict[str, Any]):
    self.workdir, self.config, self.changes = workdir, config, changes

  def record_start(self) -> None:
    """Writes `config.json` on the workdir's first start, and appends this start to the history.

    Called once the run's data and model are built (so a run that stops on bad input leaves neither).
    Process 0 writes; a no-op elsewhere.
    """
    if jax.process_index() != 0:
      return
    if not _path(self.workdir, checkpoint_lib.CONFIG_FILENAME).is_file():
      checkpoint_lib.save_config(self.workdir, self.config)
    entry = {
        "run": len(history(self.workdir)) + 1,
        "time": _now(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "argv": list(sys.argv),
        "changed": {name: {"old": a, "new": b} for name, (a, b) in self.changes.items()},
    }
    _append(_path(self.workdir, HISTORY_FILENAME), json.dumps(entry, sort_keys=True))
    if self.changes:
      logging.info(
          "Continuing %s with changed fields (recorded in %s): %s.",
          self.workdir,
          HISTORY_FILENAME,
          ", ".join(f"{n} {_show(a)} -> {_show(b)}" for n, (a, b) in self.changes.items()),
      )


def _all_processes_agree(ok: bool) -> bool:
  """Process 0's `ok`, on every process (a collective: every process calls it)."""
  if jax.process_count() == 1:
    return ok
  return bool(multihost_utils.broadcast_one_to_all(np.int32(ok)))


@contextlib.contextmanager
def claim(workdir: str, config: ml_collections.ConfigDict) -> Iterator[Run]:
  """Checks `config` against the workdir's stored run, then holds the workdir's lock until the block ends.

  Nothing is written when the check fails. The lock is released when the block ends, however it ends (an
  error, a clean stop), and a workdir that was created for the lock and is still empty is removed again.

  Args:
    workdir: the training workdir (absolute, or made so).
    config: the resolved run config (`state.resolve_config`).

  Yields:
    The `Run`; call its `record_start()` once the run is set up.

  Raises:
    InputError: the config does not match the stored run (`check`), or the workdir is locked.
  """
  workdir = checkpoint_lib.absolute(workdir)
  changes = check(workdir, config)  # every process: reads only
  existed = epath.Path(workdir).exists()
  lock = Lock(workdir)
  error = None
  if jax.process_index() == 0:
    try:
      lock.acquire()
      changes = check(workdir, config)  # again under the lock: a run may have started meanwhile
    except InputError as e:
      lock.release()
      error = e
  if not _all_processes_agree(error is None):
    raise error or InputError(f"process 0 could not claim {workdir}: see its error.")
  try:
    yield Run(workdir, config, changes)
  finally:
    lock.release()
    if not existed and jax.process_index() == 0:
      with contextlib.suppress(OSError):
        if not any(epath.Path(workdir).iterdir()):
          epath.Path(workdir).rmdir()
