"""The workdir contract: a refused rerun leaves every byte as it was (and evaluation still works), allowed
changes go into the append-only history, `launch/train.py --workdir=W` alone continues the stored run, one
trainer per workdir (a held lock refuses, a stale one is taken over, another host's is refused).

One tiny HAN run (`configs/han.py:tiny`, 1 epoch on the embedded synthetic data) is trained once; every test
works on its own copy.
"""

import glob
import hashlib
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from absl.testing import absltest
import avvp_jax
from avvp_jax import checkpoint
from avvp_jax.tools import evaluate_checkpoint
from avvp_jax.tasks.llp import metrics
from avvp_jax import state as state_lib
from avvp_jax import train
from avvp_jax import workdir as workdir_lib
from avvp_jax.errors import InputError
from train_test import ROOT, TIMEOUT_S, _env, tiny_config  # pylint: disable=g-bad-import-order

LAUNCH = [sys.executable, os.path.join(ROOT, "launch", "train.py")]


def _tree_digest(folder):
  """{relative path: sha256} of every file under `folder` (and every folder, as None)."""
  out = {}
  for base, dirs, files in os.walk(folder):
    for name in dirs:
      out[os.path.relpath(os.path.join(base, name), folder) + "/"] = None
    for name in files:
      path = os.path.join(base, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
  return out


def _run(*flags):
  return subprocess.run(
      LAUNCH + list(flags), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S
  )


class FieldTablesTest(absltest.TestCase):

  def test_every_field_of_every_config_is_decided(self):
    """Each field of each shipped config is named (itself or its section) in exactly one table."""
    tables = set(workdir_lib.MUST_MATCH) | set(workdir_lib.MAY_CHANGE)
    self.assertEmpty(set(workdir_lib.MUST_MATCH) & set(workdir_lib.MAY_CHANGE))
    for path in glob.glob(os.path.join(ROOT, "configs", "*.py")):
      module = importlib.import_module(f"configs.{os.path.basename(path)[:-3]}")
      for preset in (None, "tiny"):
        for name in workdir_lib.flatten(module.get_config(preset).to_dict()):
          parts = name.split(".")
          covered = [".".join(parts[:k]) for k in range(1, len(parts) + 1)]
          self.assertTrue(tables & set(covered), msg=f"{path}:{preset} {name} is in neither table")
    for entry in tables:  # every entry names a field or section of the base config
      self.assertTrue(
          any(
              n == entry or n.startswith(entry + ".")
              for n in workdir_lib.flatten(tiny_config().to_dict())
          ),
          entry,
      )

  def test_the_most_specific_entry_decides(self):
    expected = {
        "model.han.num_layers": False,
        "data.features_dir": False,
        "data.shuffle_buffer": False,
        "data.data_dir": True,  # a cache location inside the must-match data section
        "optimizer.learning_rate": False,
        "batch_size": False,
        "eval_batch_size": True,
        "num_epochs": True,
        "checkpoint.keep": True,
        "checkpoint.best_metric": False,
        "debug.kill_after_steps": True,
        "a_field_added_later": False,  # in neither table: must match
    }
    self.assertEqual({name: workdir_lib.may_change(name) for name in expected}, expected)

  def test_differences_hand_worked(self):
    old = {"a": 1, "b": {"c": [1, 2], "d": "x"}, "gone": 0}
    new = {"a": 1, "b": {"c": (1, 3), "d": "x"}, "new": True}
    self.assertEqual(
        workdir_lib.differences(old, new),
        {
            "b.c": ([1, 2], [1, 3]),
            "gone": (0, workdir_lib.ABSENT),
            "new": (workdir_lib.ABSENT, True),
        },
    )


class WorkdirContractTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    cls.config = tiny_config()
    cls.trained = os.path.join(cls.root, "trained")
    cls.scores = train.train_and_evaluate(cls.config, cls.trained)

  def _copy(self, name):
    workdir = os.path.join(self.root, name)
    shutil.copytree(self.trained, workdir)
    return workdir

  def test_first_run_writes_its_config_and_one_history_line(self):
    stored = json.loads(open(os.path.join(self.trained, "config.json")).read())
    self.assertEqual(stored["model"]["hidden_dim"], 16)
    (entry,) = workdir_lib.history(self.trained)
    self.assertEqual((entry["run"], entry["changed"], entry["pid"]), (1, {}, os.getpid()))
    self.assertFalse(os.path.exists(os.path.join(self.trained, workdir_lib.LOCK_FILENAME)))

  def test_refused_rerun_changes_no_byte_and_the_run_still_evaluates(self):
    workdir = self._copy("refused")
    before = _tree_digest(workdir)
    result = _run(
        "--config=configs/han.py:tiny",
        f"--workdir={workdir}",
        "--config.model.hidden_dim=32",
        "--config.optimizer.learning_rate=0.001",
        "--config.log_every_steps=3",  # allowed alone, but the run is refused as a whole
    )
    self.assertEqual(result.returncode, 2, result.stderr[-3000:])
    self.assertNotIn("Traceback", result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    self.assertLen(errors, 1, result.stderr[-3000:])
    self.assertEqual(result.stderr.strip().splitlines()[-1], errors[0])
    self.assertRegex(errors[0], r"model\.hidden_dim is 16 there, 32 here")
    self.assertRegex(errors[0], r"optimizer\.learning_rate is 0\.0003 there, 0\.001 here")
    self.assertNotIn("log_every_steps", errors[0])
    self.assertIn("new --workdir", errors[0])
    self.assertIn(
        f"leave --config out to continue the stored run (launch/train.py --workdir={workdir})",
        errors[0],
    )
    # In this process too, for the seeds (the replicas' axis) and the data.
    for change in ({"num_seeds": 2}, {"seed": 1}, {"data.synthetic_train_clips": 32}):
      with self.assertRaisesRegex(InputError, f"{list(change)[0]} is"):
        train.train_and_evaluate(tiny_config(**change), workdir)
    self.assertEqual(_tree_digest(workdir), before)
    # What launch/evaluate.py --workdir=W does (its best save with its config.json), and load_parser.
    report = evaluate_checkpoint.evaluate_checkpoint(
        None, workdir, "val", out=os.path.join(self.root, "refused_eval.json")
    )
    self.assertEqual(
        {k: report[k] for k in metrics.KEYS}, {k: self.scores[k] for k in metrics.KEYS}
    )
    parser = avvp_jax.load_parser(workdir)
    self.assertEqual(parser.input_dims, dict(self.config.model.input_dims))

  def test_continued_run_records_its_changes_and_the_launcher_continues_without_config(self):
    workdir = self._copy("continued")
    config_bytes = open(os.path.join(workdir, "config.json"), "rb").read()
    longer = tiny_config(synthetic_num_epochs=2, log_every_steps=4)
    train.train_and_evaluate(longer, workdir)
    step_dir = checkpoint.find_state_checkpoint(workdir, which="latest")
    self.assertEqual(os.path.basename(step_dir), "16")  # trained a second epoch
    self.assertEqual(open(os.path.join(workdir, "config.json"), "rb").read(), config_bytes)
    first, second = workdir_lib.history(workdir)
    self.assertEqual(first["run"], 1)
    self.assertEqual(
        second["changed"],
        {
            "log_every_steps": {"old": 1, "new": 4},
            "synthetic_num_epochs": {"old": 1, "new": 2},
        },
    )
    self.assertEqual(second["argv"], sys.argv)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:  # the continued run appended its lines
      train_steps = [line["step"] for line in map(json.loads, f) if "train/loss" in line]
    self.assertEqual(train_steps, [*range(1, 9), 12, 16])
    current = workdir_lib.current_config(workdir)
    self.assertEqual(
        (current.synthetic_num_epochs, current.log_every_steps, current.model.hidden_dim),
        (2, 4, 16),
    )
    # No --config: the latest start's config, so it is trained already (2 epochs) and only validates.
    result = _run(f"--workdir={workdir}")
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertIn("continuing the run stored in", result.stderr)
    self.assertIn("Already trained for 2 epochs", result.stderr)
    *_, third = workdir_lib.history(workdir)
    self.assertEqual((third["run"], third["changed"]), (3, {}))
    self.assertNotIn("--config", " ".join(third["argv"]))
    self.assertEqual(open(os.path.join(workdir, "config.json"), "rb").read(), config_bytes)

  def test_workdir_of_an_older_config_evaluates_and_continues(self):
    """A config.json written before the schedule, Adam-moment and tie-rule fields: backfilled as it ran."""
    workdir = self._copy("older")
    path = os.path.join(workdir, "config.json")
    stored = json.load(open(path))
    for key in ("schedule", "warmup_epochs", "final_lr_divisor", "b1", "b2", "eps"):
      del stored["optimizer"][key]
    del stored["checkpoint"]["best_rule"]
    with open(path, "w") as f:
      json.dump(stored, f)
    report = evaluate_checkpoint.evaluate_checkpoint(
        None, workdir, "val", out=os.path.join(self.root, "older_eval.json")
    )
    self.assertEqual(
        {k: report[k] for k in metrics.KEYS}, {k: self.scores[k] for k in metrics.KEYS}
    )
    train.train_and_evaluate(tiny_config(synthetic_num_epochs=2), workdir)
    self.assertEqual(
        os.path.basename(checkpoint.find_state_checkpoint(workdir, which="latest")), "16"
    )
    self.assertEqual(
        workdir_lib.history(workdir)[-1]["changed"],
        {"synthetic_num_epochs": {"old": 1, "new": 2}},
    )

  def test_a_held_lock_refuses_a_second_trainer_and_a_stale_one_is_taken_over(self):
    workdir = self._copy("locked")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from avvp_jax import workdir; "
            "workdir.Lock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)",
            workdir,
        ],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
      self.assertEqual(holder.stdout.readline().strip(), "held")
      before = _tree_digest(workdir)
      with self.assertRaisesRegex(
          InputError, rf"is in use by another trainer \(host \S+, pid {holder.pid}, since "
      ):
        train.train_and_evaluate(self.config, workdir)
      self.assertEqual(_tree_digest(workdir), before)
    finally:
      holder.send_signal(signal.SIGKILL)  # gone without releasing the lock
      holder.wait()
    self.assertTrue(os.path.exists(os.path.join(workdir, workdir_lib.LOCK_FILENAME)))
    with self.assertLogs(level="WARNING") as logs:
      train.train_and_evaluate(self.config, workdir)
    self.assertTrue(
        any(f"stale lock of {workdir}" in line and str(holder.pid) in line for line in logs.output),
        logs.output,
    )
    self.assertFalse(os.path.exists(os.path.join(workdir, workdir_lib.LOCK_FILENAME)))


class LockTest(absltest.TestCase):

  def _lock_file(self, workdir, **record):
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, workdir_lib.LOCK_FILENAME), "w") as f:
      json.dump(record, f)

  def test_lock_of_another_host_is_refused_with_how_to_remove_it(self):
    workdir = self.create_tempdir().full_path
    self._lock_file(workdir, host="elsewhere-7", pid=os.getpid(), since="then", since_unix=0.0)
    path = os.path.join(workdir, workdir_lib.LOCK_FILENAME)
    with self.assertRaisesRegex(
        InputError, rf"another host \(host elsewhere-7, .*delete {path} and rerun"
    ):
      workdir_lib.Lock(workdir).acquire()
    self.assertEqual(json.load(open(path))["host"], "elsewhere-7")

  def test_pid_started_after_the_lock_is_not_its_holder(self):
    workdir = self.create_tempdir().full_path
    lock = workdir_lib.Lock(workdir)
    host = lock._record["host"]  # pylint: disable=protected-access
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
      self._lock_file(
          workdir, host=host, pid=sleeper.pid, since="then", since_unix=time.time() - 100
      )
      lock.acquire()  # the pid runs, but it started after the lock was written: a reused pid
      self.assertEqual(
          json.load(open(os.path.join(workdir, workdir_lib.LOCK_FILENAME)))["pid"], os.getpid()
      )
      lock.release()
      self.assertFalse(os.path.exists(os.path.join(workdir, workdir_lib.LOCK_FILENAME)))
      self._lock_file(workdir, host=host, pid=sleeper.pid, since="now", since_unix=time.time())
      with self.assertRaisesRegex(InputError, rf"in use by another trainer \(host {host}, pid"):
        workdir_lib.Lock(workdir).acquire()
    finally:
      sleeper.kill()
      sleeper.wait()

  def test_a_process_does_not_take_its_own_lock_twice(self):
    workdir = self.create_tempdir().full_path
    first = workdir_lib.Lock(workdir)
    first.acquire()
    try:
      with self.assertRaisesRegex(InputError, "in use by another trainer"):
        workdir_lib.Lock(workdir).acquire()
    finally:
      first.release()
    second = workdir_lib.Lock(workdir)  # released: free again
    second.acquire()
    second.release()

  def test_refused_config_check_reads_only(self):
    workdir = self.create_tempdir().full_path
    config = state_lib.resolve_config(tiny_config())
    checkpoint.save_config(workdir, config)
    before = _tree_digest(workdir)
    with self.assertRaisesRegex(InputError, "model.hidden_dim is 16 there, 8 here"):
      with workdir_lib.claim(
          workdir, state_lib.resolve_config(tiny_config(**{"model.hidden_dim": 8}))
      ):
        pass
    self.assertEqual(_tree_digest(workdir), before)

  def test_sections_the_model_does_not_read_may_change_but_read_ones_may_not(self):
    workdir = self.create_tempdir().full_path
    config = state_lib.resolve_config(tiny_config())
    checkpoint.save_config(workdir, config)
    self.assertEqual((config.model.encoder, config.model.decoder), ("han", "mmil"))
    unread = state_lib.resolve_config(tiny_config(**{"model.leap.num_heads": 4}))
    self.assertEqual(
        workdir_lib.check(workdir, unread),
        {"model.leap.num_heads": (config.model.leap.num_heads, 4)},
    )
    with self.assertRaisesRegex(InputError, "model.han.num_layers is"):
      workdir_lib.check(
          workdir,
          state_lib.resolve_config(tiny_config(**{"model.han.num_layers": 3})),
      )
    with self.assertRaisesRegex(InputError, "model.decoder is"):
      workdir_lib.check(workdir, state_lib.resolve_config(tiny_config(**{"model.decoder": "leap"})))


if __name__ == "__main__":
  absltest.main()
