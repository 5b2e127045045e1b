"""The AVE localizers on the trainer: registry, run cards, the task's loss dispatch, seeds without an ensemble."""

import dataclasses
import importlib
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import jax
import numpy as np

from avvp_jax import model_parts
from avvp_jax import models
from avvp_jax import state as state_lib
from avvp_jax import train
from avvp_jax.errors import InputError
from avvp_jax.tasks.ave import task as ave_task
from avvp_jax.tasks.ave.losses import ave as ave_loss
from avvp_jax.tasks.ave.losses import cmbs as cmbs_loss
from avvp_jax.tasks.ave.losses import psp as psp_loss
from avvp_jax.tools import evaluate_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

RUN_CARDS = {"ave": ave_loss, "dmrn": ave_loss, "psp": psp_loss, "cmbs": cmbs_loss}


def _config(name, preset="tiny"):
  return importlib.import_module(f"configs.{name}").get_config(preset)


def _batch(rng, supervision, batch_size=3, prob_label=False):
  """A training batch of the AVE batch contract: random features, one event class per clip."""
  labels = rng.integers(0, 29, size=(batch_size, 10))
  video = np.zeros((batch_size, 29), np.float32)
  video[np.arange(batch_size), labels[:, 0] % 28] = 1.0
  batch = {
      "audio": rng.uniform(0, 2, (batch_size, 10, 128)).astype(np.float32),
      "visual": rng.uniform(0, 3, (batch_size, 10, 7, 7, 512)).astype(np.float32),
      "video_label": video,
      "mask": np.ones((batch_size,), np.float32),
  }
  if supervision == "full":
    batch["segment_label"] = np.eye(29, dtype=np.float32)[labels]
    batch["event_mask"] = (labels != 28).astype(np.float32)
  if prob_label:
    batch["prob_label"] = np.eye(29, dtype=np.float32)[labels].mean(1)
  return batch


class LocalizersTest(parameterized.TestCase):

  @parameterized.product(name=sorted(RUN_CARDS), supervision=("full", "weak"))
  def test_task_loss_is_the_official_loss_of_the_batch_setting(self, name, supervision):
    config = state_lib.resolve_config(
        _config(name, "weak_tiny" if supervision == "weak" else "tiny")
    )
    meta = ave_task.TASK.meta(config)
    self.assertEqual(meta.supervision, supervision)
    model = state_lib.build_model(config)
    rng = np.random.default_rng(0)
    batch = _batch(rng, supervision)
    params = model.init(jax.random.key(0), batch["audio"], batch["visual"], train=False)["params"]
    outputs = state_lib.apply_model(
        model, params, batch, input_keys=ave_task.TASK.input_keys, train=False
    )
    value, terms = ave_task.TASK.loss(config.loss, outputs, batch)
    expected, expected_terms = RUN_CARDS[name].loss(
        outputs,
        batch,
        supervision=supervision,
        **({"weak_target": "video_label"} if name == "psp" and supervision == "weak" else {}),
    )
    np.testing.assert_allclose(value, expected, rtol=1e-6)
    self.assertEqual(sorted(terms), sorted(expected_terms))
    self.assertTrue(np.isfinite(value))

  def test_psp_weak_target_is_the_video_label_unless_prob_labels_are_given(self):
    config = state_lib.resolve_config(_config("psp", "weak_tiny"))
    model = state_lib.build_model(config)
    rng = np.random.default_rng(1)
    batch = _batch(rng, "weak", prob_label=True)
    params = model.init(jax.random.key(0), batch["audio"], batch["visual"], train=False)["params"]
    outputs = model.apply({"params": params}, batch["audio"], batch["visual"], train=False)
    with_prob, _ = ave_task.TASK.loss(config.loss, outputs, batch)
    np.testing.assert_allclose(
        with_prob,
        psp_loss.loss(outputs, batch, supervision="weak", weak_target="proportion")[0],
        rtol=1e-6,
    )
    del batch["prob_label"]
    without, _ = ave_task.TASK.loss(config.loss, outputs, batch)
    np.testing.assert_allclose(
        without,
        psp_loss.loss(outputs, batch, supervision="weak", weak_target="video_label")[0],
        rtol=1e-6,
    )
    self.assertNotAlmostEqual(float(with_prob), float(without), places=4)

  def test_parts_that_do_not_go_together_are_one_line(self):
    config = _config("psp").model
    config.decoder = "mmil"
    with self.assertRaisesRegex(InputError, r"^config.model.encoder 'psp' is an event localizer"):
      model_parts.check_names(config)
    config = _config("han").model
    config.decoder = "dch"
    with self.assertRaisesRegex(InputError, r"^config.model.decoder 'dch' is the official head"):
      models.build_model(config, ave_task.META)

  def test_cmbs_builds_its_weak_network_in_the_weak_setting(self):
    config = _config("cmbs").model
    full = models.build_model(config, ave_task.META)
    weak = models.build_model(config, dataclasses.replace(ave_task.META, supervision="weak"))
    self.assertEqual(type(full).__name__, "CMBS")
    self.assertEqual(type(weak).__name__, "WeakCMBS")

  def test_run_cards_follow_the_official_recipes(self):
    recipes = {
        name: (
            c.optimizer.learning_rate,
            c.batch_size,
            c.num_epochs,
            tuple(c.optimizer.decay_epochs),
        )
        for name, c in ((n, _config(n, None)) for n in ("ave", "psp", "cmbs"))
    }
    self.assertEqual(recipes["ave"], (1e-3, 64, 300, (288,)))
    self.assertEqual(recipes["psp"], (1e-3, 128, 300, (60, 120)))
    self.assertEqual(recipes["cmbs"], (7e-4, 64, 200, (10, 20, 30)))
    self.assertEqual(_config("cmbs", None).optimizer.grad_clip_norm, 0.5)
    self.assertEqual(tuple(_config("psp", "weak").optimizer.decay_epochs), (80, 160))
    self.assertEqual(_config("dmrn", None).model.ave.fusion, "dmrn")

  def test_milestone_schedule_is_pytorch_multisteplr_per_epoch(self):
    config = state_lib.resolve_config(_config("psp", None))
    schedule = state_lib.learning_rate_schedule(config, steps_per_epoch=7)
    rates = [float(schedule(epoch * 7)) for epoch in range(200)]
    expected = [1e-3 * 0.8 ** ((epoch >= 60) + (epoch >= 120)) for epoch in range(200)]
    np.testing.assert_allclose(rates, expected, rtol=1e-6)
    config.optimizer.decay_epochs = (120, 60)
    with self.assertRaisesRegex(InputError, "increasing positive epochs"):
      state_lib.learning_rate_schedule(config, steps_per_epoch=7)

  def test_two_seeds_report_mean_and_per_seed_but_no_ensemble_of_decisions(self):
    config = _config("ave", "tiny")
    config.num_seeds = 2
    workdir = tempfile.mkdtemp(prefix="ave_seeds_")
    train.train_and_evaluate(config, workdir)
    report = evaluate_checkpoint.evaluate_checkpoint(config, workdir, "test")
    self.assertNotIn("ensemble", report)
    self.assertLen(report["per_seed"], 2)
    self.assertAlmostEqual(
        report["accuracy"], np.mean([s["accuracy"] for s in report["per_seed"]]), places=6
    )
    self.assertEqual(report["task"], "ave")

  def test_launcher_refuses_a_localizer_with_another_decoder_before_jax_loads(self):
    result = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            os.path.join(ROOT, "launch", "train.py"),
            "--config=configs/cmbs.py:tiny",
            "--config.model.decoder=mmil",
        ],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
        capture_output=True,
        text=True,
        timeout=120,
    )
    self.assertEqual(result.returncode, 2)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    self.assertLen(errors, 1)
    self.assertIn("is an event localizer", errors[0])
    self.assertNotRegex(result.stderr, r"(?m)\|\s+(jax|flax|tensorflow)$")


if __name__ == "__main__":
  absltest.main()
