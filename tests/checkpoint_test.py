"""Checkpoints: `resolve` on every kind of path, the partial params restore against a full restore, and the
rule that a config's number of seeds is the checkpoint's unless set explicitly.

The saves are written directly (a 2-seed `configs/han.py:tiny` state, seeds 3 and 4), without training.
"""

import os
import sys
import tempfile
from unittest import mock

from absl.testing import absltest
import jax
import numpy as np

from avvp_jax import checkpoint
from avvp_jax import sharding
from avvp_jax import state as state_lib
from avvp_jax.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configs import han  # pylint: disable=g-import-not-at-top,wrong-import-position

BEST_STEP, LATEST_STEP, ONLY_STEP = 2, 5, 4


def _tiny(**fields):
  config = han.get_config("tiny")
  config.unlock()
  for key, value in fields.items():
    config[key] = value
  return config


class CheckpointTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp(
        dir=absltest.get_default_test_tmpdir()
    )  # fresh: no saves of an earlier run
    cls.config = state_lib.resolve_config(_tiny(num_seeds=2, seed=3))
    mesh = sharding.make_mesh(num_seeds=2)
    model = state_lib.build_model(cls.config)
    tx, _ = state_lib.make_optimizer(cls.config, 1)
    cls.best_state, cls.abstract_state = state_lib.create_train_state(
        cls.config, model, tx, mesh, [3, 4]
    )
    # A later state that differs from the best one, so best and latest saves are told apart.
    cls.latest_state = cls.best_state.replace(
        params=jax.tree.map(lambda x: x + 1.0, cls.best_state.params)
    )
    progress = {"epoch": 1, "batches_done": 0}

    cls.workdir = os.path.join(cls.root, "workdir")  # best and latest saves
    checkpoint.save_config(cls.workdir, cls.config)
    with checkpoint.Checkpointer(cls.workdir) as checkpointer:
      checkpointer.save(BEST_STEP, cls.best_state, progress)
      checkpointer.save_best(BEST_STEP, cls.best_state, progress, {"per_seed": []})
      checkpointer.save(LATEST_STEP, cls.latest_state, progress)

    cls.latest_only = os.path.join(cls.root, "latest_only")  # killed before its first validation
    checkpoint.save_config(cls.latest_only, cls.config)
    with checkpoint.Checkpointer(cls.latest_only) as checkpointer:
      checkpointer.save(ONLY_STEP, cls.latest_state, progress)
    # An unfinished save (Orbax writes to a temporary folder, renamed when complete) is not a step.
    os.makedirs(
        os.path.join(
            cls.latest_only, checkpoint.LATEST_DIRNAME, "9.orbax-checkpoint-tmp-123", "state"
        )
    )

    cls.params_dir = checkpoint.save_params_checkpoint(
        os.path.join(cls.root, "exported"),
        cls.config,
        jax.tree.map(np.asarray, cls.best_state.params),
    )

  def _assert_params_equal(self, got, expected):
    self.assertEqual(jax.tree.structure(got), jax.tree.structure(expected))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

  def _assert_one_line_error(self, pattern, fn, *args, **kwargs):
    with self.assertRaisesRegex(InputError, pattern) as raised:
      fn(*args, **kwargs)
    self.assertNotIn("\n", str(raised.exception))
    return str(raised.exception)

  # --- resolve ---

  def test_workdir_with_a_best_save(self):
    source = checkpoint.resolve(self.workdir)
    best_dir = os.path.join(self.workdir, checkpoint.BEST_DIRNAME, str(BEST_STEP))
    self.assertEqual(
        source,
        checkpoint.CheckpointSource(
            kind="workdir",
            path=self.workdir,
            directory=os.path.join(best_dir, "state"),
            step=BEST_STEP,
            workdir=self.workdir,
            config_dir=self.workdir,
            report_dir=self.workdir,
        ),
    )
    self.assertEqual(source.step_dir, best_dir)
    latest = checkpoint.resolve(self.workdir, which="latest")
    self.assertEqual((latest.kind, latest.step), ("workdir", LATEST_STEP))
    self.assertEqual(
        latest.step_dir, os.path.join(self.workdir, checkpoint.LATEST_DIRNAME, str(LATEST_STEP))
    )
    self.assertEqual(checkpoint.find_state_checkpoint(self.workdir), best_dir)
    self.assertEqual(
        checkpoint.find_state_checkpoint(self.workdir, which="latest"), latest.step_dir
    )

  def test_workdir_with_only_latest_saves(self):
    source = checkpoint.resolve(self.latest_only)
    self.assertEqual(
        (source.kind, source.step, source.workdir, source.report_dir),
        ("workdir", ONLY_STEP, self.latest_only, self.latest_only),
    )
    self.assertEqual(
        source.step_dir, os.path.join(self.latest_only, checkpoint.LATEST_DIRNAME, str(ONLY_STEP))
    )
    _, params = checkpoint.restore_params(self.latest_only)
    self._assert_params_equal(params, self.latest_state.params)

  def test_step_folder(self):
    step_dir = os.path.join(self.workdir, checkpoint.LATEST_DIRNAME, str(LATEST_STEP))
    self.assertEqual(
        checkpoint.resolve(step_dir + os.sep),
        checkpoint.CheckpointSource(
            kind="step",
            path=step_dir,
            directory=os.path.join(step_dir, "state"),
            step=LATEST_STEP,
            workdir=self.workdir,
            config_dir=self.workdir,
            report_dir=self.workdir,
        ),
    )
    config, params = checkpoint.restore_params(step_dir)
    self.assertEqual(state_lib.run_seeds(config), [3, 4])
    self._assert_params_equal(params, self.latest_state.params)

  def test_params_only_folder(self):
    source = checkpoint.resolve(self.params_dir)
    self.assertEqual(
        source,
        checkpoint.CheckpointSource(
            kind="params",
            path=self.params_dir,
            directory=os.path.join(self.params_dir, "params"),
            step=None,
            workdir=None,
            config_dir=self.params_dir,
            report_dir=self.params_dir,
        ),
    )
    self.assertIsNone(source.step_dir)
    self.assertIsNone(checkpoint.find_state_checkpoint(self.params_dir))
    _, params = checkpoint.restore_params(self.params_dir)
    self._assert_params_equal(params, self.best_state.params)

  def test_missing_path(self):
    missing = os.path.join(self.root, "no_such_dir")
    self._assert_one_line_error(
        rf"^Checkpoint path {missing} does not exist: pass a training workdir",
        checkpoint.resolve,
        missing,
    )
    self.assertIsNone(checkpoint.find_state_checkpoint(missing))

  def test_empty_folder_names_what_was_looked_for(self):
    empty = self.create_tempdir().full_path
    message = self._assert_one_line_error(
        rf"^No checkpoint in {empty}: ", checkpoint.resolve, empty
    )
    for looked_for in (
        "params/",
        "state/",
        "best/ or checkpoints/",
        f"launch/train.py --workdir={empty}",
    ):
      self.assertIn(looked_for, message)
    self.assertIn(
        "no saves in checkpoints/ (a workdir)",
        self._assert_one_line_error("No checkpoint", checkpoint.resolve, empty, which="latest"),
    )
    self._assert_one_line_error("No checkpoint", checkpoint.restore_params, empty)
    self.assertIsNone(checkpoint.find_state_checkpoint(empty))

  # --- restore ---

  def test_partial_params_restore_equals_the_params_of_a_full_restore(self):
    config, params = checkpoint.restore_params(self.workdir)
    self.assertEqual(config.to_dict(), self.config.to_dict())
    with checkpoint.Checkpointer(self.workdir) as checkpointer:
      full_state, _ = checkpointer.restore_best(self.abstract_state)
    self._assert_params_equal(params, full_state.params)
    self._assert_params_equal(params, self.best_state.params)
    default_layout = sharding.seed_sharded(sharding.make_mesh(num_seeds=2))
    for leaf in jax.tree.leaves(params):
      self.assertIsInstance(leaf, jax.Array)
      self.assertTrue(leaf.sharding.is_equivalent_to(default_layout, leaf.ndim), leaf.sharding)

  def test_params_that_do_not_fit_the_model_are_one_line_errors(self):
    wider = _tiny(num_seeds=2, seed=3)
    wider.model.hidden_dim *= 2
    self._assert_one_line_error(
        r"do not fit the model of the config \(han/mmil\): .* is \(2, \d+.*the model's is",
        checkpoint.restore_params,
        self.workdir,
        wider,
    )
    other_decoder = _tiny(num_seeds=2, seed=3)
    other_decoder.model.decoder = "leap"
    for path in (self.workdir, self.params_dir):
      self._assert_one_line_error(
          r"do not fit the model .*: missing .*; unexpected ",
          checkpoint.restore_params,
          path,
          other_decoder,
      )

  # --- the number of seeds ---

  def test_unset_num_seeds_and_seed_are_the_checkpoints(self):
    source = checkpoint.resolve(self.workdir)
    given = _tiny()  # num_seeds=1, seed=0 by default
    config = checkpoint.checkpoint_config(source, given, explicit={"data.features_dir"})
    self.assertEqual((config.num_seeds, config.seed), (2, 3))
    self.assertEqual((given.num_seeds, given.seed), (1, 0))  # the given config is left as it was
    config, params = checkpoint.restore_params(self.workdir, _tiny(), explicit=())
    self.assertEqual(state_lib.run_seeds(config), [3, 4])
    self._assert_params_equal(params, self.best_state.params)

  def test_an_explicit_seed_is_kept(self):
    config = checkpoint.checkpoint_config(
        checkpoint.resolve(self.workdir), _tiny(seed=7), explicit={"seed"}
    )
    self.assertEqual(state_lib.run_seeds(config), [7, 8])
    config = checkpoint.checkpoint_config(
        checkpoint.resolve(self.workdir), _tiny(num_seeds=2), explicit={"num_seeds"}
    )
    self.assertEqual(state_lib.run_seeds(config), [3, 4])

  def test_an_explicit_other_num_seeds_is_a_one_line_error(self):
    source = checkpoint.resolve(self.workdir)
    pattern = (
        r"holds 2 replica\(s\) \(seeds \[3, 4\]\), but the given config has num_seeds=1: pass "
        r"--config.num_seeds=2 --config.seed=3, or leave --config.num_seeds out"
    )
    self._assert_one_line_error(
        pattern, checkpoint.checkpoint_config, source, _tiny(), explicit={"num_seeds"}
    )
    # A config from Python (explicit=None): every field counts as chosen, as before the rule.
    self._assert_one_line_error(pattern, checkpoint.checkpoint_config, source, _tiny())
    self._assert_one_line_error(pattern, checkpoint.restore_params, self.params_dir, _tiny())

  def test_no_config_given_is_the_stored_one(self):
    config = checkpoint.checkpoint_config(checkpoint.resolve(self.params_dir))
    self.assertEqual(config.to_dict(), self.config.to_dict())


if __name__ == "__main__":
  absltest.main()


def _bytes_on_disk(*directories):
  """The bytes of the files under `directories`, each file (inode) counted once: what was written there."""
  seen, total = set(), 0
  for root, _, files in (walked for d in directories for walked in os.walk(d)):
    for name in files:
      info = os.stat(os.path.join(root, name))
      if info.st_ino not in seen:
        seen.add(info.st_ino)
        total += info.st_size
  return total


class NothingSavedTwiceTest(absltest.TestCase):
  """An epoch whose best state is its latest save writes the train state once: the best save links it."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    config = state_lib.resolve_config(_tiny())
    mesh = sharding.make_mesh(num_seeds=1)
    model = state_lib.build_model(config)
    tx, _ = state_lib.make_optimizer(config, 1)
    cls.state, cls.abstract_state = state_lib.create_train_state(config, model, tx, mesh, [0])
    cls.later_state = cls.state.replace(params=jax.tree.map(lambda x: x + 1.0, cls.state.params))
    cls.bytes_per_epoch, cls.latest_bytes, cls.state_bytes, cls.best_state_bytes = {}, {}, {}, {}
    for linked in (False, True):  # the epoch's saves as the trainer makes them, before and after
      workdir = os.path.join(cls.root, f"linked_{linked}")
      checkpoint.save_config(workdir, config)
      with checkpoint.Checkpointer(workdir) as checkpointer:
        checkpointer.save(8, cls.state, {"epoch": 1})
        checkpointer.save_best(8, cls.state, {"epoch": 1}, {"per_seed": []}, same_as_latest=linked)
        checkpointer.wait_until_finished()
        latest = os.path.join(workdir, checkpoint.LATEST_DIRNAME, "8")
        cls.latest_bytes[linked] = _bytes_on_disk(latest)
        cls.state_bytes[linked] = _bytes_on_disk(os.path.join(latest, checkpoint.STATE_ITEM))
        cls.best_state_bytes[linked] = _bytes_on_disk(
            os.path.join(workdir, checkpoint.BEST_DIRNAME, "8", checkpoint.STATE_ITEM)
        )
        cls.bytes_per_epoch[linked] = _bytes_on_disk(
            *(
                os.path.join(workdir, d)
                for d in (checkpoint.LATEST_DIRNAME, checkpoint.BEST_DIRNAME)
            )
        )
        checkpointer.save(16, cls.later_state, {"epoch": 2})  # deletes the latest save of step 8
      cls.workdir = workdir

  def test_the_best_save_of_the_latest_state_writes_no_second_copy(self):
    written_twice, written_once = self.bytes_per_epoch[False], self.bytes_per_epoch[True]
    # Before: the latest save and, in the best save, a second copy of its state item: every byte of it its
    # own. (Orbax's OCDBT files of one state differ by up to ~10% in size from save to save, as it splits
    # them, so the copy is not compared with the latest save's size.)
    self.assertGreater(self.best_state_bytes[False], 0)
    self.assertGreaterEqual(written_twice - self.latest_bytes[False], self.best_state_bytes[False])
    # After: the latest save, and of the best save only its JSON items and commit markers (a few KiB).
    self.assertLess(written_once - self.latest_bytes[True], 0.05 * self.state_bytes[True])

  def test_a_linked_best_save_outlives_the_latest_save_it_links(self):
    self.assertEqual(os.listdir(os.path.join(self.workdir, checkpoint.LATEST_DIRNAME)), ["16"])
    with checkpoint.Checkpointer(self.workdir) as checkpointer:
      best, progress = checkpointer.restore_best(self.abstract_state)
    self.assertEqual(progress, {"epoch": 1})
    for a, b in zip(jax.tree.leaves(best), jax.tree.leaves(self.state)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    source = checkpoint.resolve(self.workdir)
    self.assertEqual(source.step, 8)
    _, params = checkpoint.restore_params(source)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(self.state.params)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

  def test_without_hard_links_the_best_save_is_a_copy(self):
    workdir = os.path.join(self.root, "no_links")
    with mock.patch.object(os, "link", side_effect=OSError("hard links not supported")):
      with checkpoint.Checkpointer(workdir) as checkpointer:
        checkpointer.save(8, self.state, {"epoch": 1})
        checkpointer.save_best(8, self.state, {"epoch": 1}, {"per_seed": []}, same_as_latest=True)
    with checkpoint.Checkpointer(workdir) as checkpointer:
      best, _ = checkpointer.restore_best(self.abstract_state)
    for a, b in zip(jax.tree.leaves(best), jax.tree.leaves(self.state)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
