"""Every config in configs/ loads, documents its fields, locks, and its tiny preset trains end to end."""

import glob
import importlib
import os
import re
import sys

from absl import flags
from absl.testing import absltest
from absl.testing import parameterized
from ml_collections import config_flags

import dataclasses

from avvp_jax import model_parts
from avvp_jax import models
from avvp_jax import tasks
from avvp_jax import train
from avvp_jax.errors import InputError
from avvp_jax.tasks.ave import task as ave_task
from avvp_jax.tasks.llp import task as llp_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CONFIG_NAMES = sorted(
    os.path.splitext(os.path.basename(p))[0]
    for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))
    if os.path.basename(p) not in ("common.py", "__init__.py")
)


def _load(name, arg=None):
  return importlib.import_module(f"configs.{name}").get_config(arg)


def _keys(config):
  """The headline scores of the config's task (its default evaluator's keys)."""
  task = tasks.of(config)
  return task.evaluators[task.default_evaluator].keys


def _tiny_presets(name):
  """The micro presets a config has: "tiny", the AVE run cards' "weak_tiny", JoMoLD's "estimator_tiny"."""
  if name == "jomold":
    return ("tiny", "estimator_tiny")
  return ("tiny", "weak_tiny") if _load(name).task == "ave" else ("tiny",)


def _trained_presets(name):
  """The micro presets a test trains: all of `_tiny_presets`, except the LEAP-headed AVE cards' weak_tiny
  (their weak network takes a LEAP gradient step on every encoder in tests/ave_leap_test.py, and the
  trainer's weak AVE path is trained here by the DCH cards' weak_tiny: CMBS's alone compiles for a minute).
  """
  if name.endswith("_leap") and _load(name).task == "ave":
    return ("tiny",)
  return _tiny_presets(name)


def _with_inputs(config, folder):
  """A stage's inputs a preset cannot name: JoMoLD's stage-3 noise ratios (0.3 everywhere, written here)."""
  if config.loss.get("denoise", False) and not config.loss.noise_ratios:
    from avvp_jax.tasks.llp import denoising  # pylint: disable=g-import-not-at-top

    path = os.path.join(folder, "noise_ratios.npz")
    denoising.write_noise_ratios(path, [0.3] * 25, [0.3] * 25)
    config.loss.noise_ratios = path
  return config


def _leaves(config, prefix=""):
  for key, value in config.items():
    if hasattr(value, "items"):
      yield from _leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}"


class ConfigsTest(parameterized.TestCase):

  def test_the_papers_configs_exist(self):
    self.assertContainsSubset(["han", "leap"], CONFIG_NAMES)

  @parameterized.parameters(*CONFIG_NAMES)
  def test_loads_with_and_without_preset(self, name):
    for arg in (None, *_tiny_presets(name)):
      config = _load(name, arg)
      self.assertGreater(config.num_epochs, 0)
      self.assertGreater(config.batch_size, 0)
      self.assertIn(config.checkpoint.best_metric, _keys(config))
    with self.assertRaisesRegex(ValueError, "preset"):
      _load(name, "no_such_preset")

  def test_paper_recipes(self):
    han, leap = _load("han"), _load("leap")
    self.assertEqual(
        (han.optimizer.name, han.optimizer.learning_rate, han.batch_size, han.num_epochs),
        ("adam", 3e-4, 16, 40),
    )
    self.assertEqual((han.optimizer.decay_every_epochs, han.optimizer.decay_factor), (10, 0.1))
    self.assertEqual(
        (leap.optimizer.name, leap.optimizer.learning_rate, leap.batch_size, leap.num_epochs),
        ("adam", 1e-4, 32, 20),
    )

  def test_ma_recipe(self):
    """MA's official recipe (step1_train_base_model / step3_retrain main_avvp.py) and its stage presets."""
    ma = _load("ma")
    self.assertEqual(
        (ma.optimizer.name, ma.optimizer.learning_rate, ma.batch_size, ma.num_epochs),
        ("adam", 3e-4, 16, 12),
    )
    self.assertEqual((ma.optimizer.decay_every_epochs, ma.optimizer.decay_factor), (10, 0.1))
    self.assertEqual((ma.loss.name, ma.loss.ma_temperature, ma.loss.ma_smoothing), ("ma", 0.2, 0.1))
    self.assertEqual((ma.loss.audio_smoothing, ma.loss.visual_smoothing), (1.0, 0.9))
    self.assertEqual((ma.checkpoint.best_rule, ma.model.mmil.filter), ("last", "modality"))
    self.assertEqual(ma.data.refined_labels, "")
    for preset in ("retrain", "retrain_tiny"):  # stage 3 stops until the refined labels are named
      with self.assertRaisesRegex(InputError, "config.data.refined_labels is required"):
        llp_task.TASK.check_config(_load("ma", preset))
    self.assertEqual(_load("ma", "retrain_tiny").model.hidden_dim, 16)

  @parameterized.parameters(*CONFIG_NAMES)
  def test_every_field_is_documented(self, name):
    """Each field is set somewhere in configs/ with a comment on its line or above its block of lines."""
    lines = "\n".join(
        open(p).read() for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))
    ).splitlines()

    def documented(i):
      if "#" in lines[i]:
        return True
      while i > 0 and lines[i - 1].strip() and not lines[i - 1].strip().startswith("#"):
        i -= 1  # up through the block of assignments this line belongs to
      return i > 0 and lines[i - 1].strip().startswith("#")

    for leaf in _leaves(_load(name)):
      field = leaf.split(".")[-1]
      pattern = re.compile(rf"\b{re.escape(field)}\s*=[^=]")
      self.assertTrue(
          any(pattern.search(line) and documented(i) for i, line in enumerate(lines)),
          f"configs/{name}.py: field {leaf} has no comment where it is set",
      )

  @parameterized.parameters(*CONFIG_NAMES)
  def test_every_model_section_splats_into_its_module(self, name):
    """Every encoder x decoder x refiner builds from the config's sections (their keys are module attributes);
    the localizers for both AVE settings, and parts that do not go together are one line."""
    config = _load(name).model
    for encoder in models.ENCODERS:
      for decoder in models.DECODERS:
        for refiner in models.REFINERS:
          config.encoder, config.decoder, config.refiner = encoder, decoder, refiner
          if model_parts.pairing_line(config):
            with self.assertRaisesRegex(InputError, "config.model"):
              models.build_model(config, llp_task.META)
          elif encoder in model_parts.LOCALIZERS:
            for supervision in ("full", "weak"):
              meta = dataclasses.replace(ave_task.META, supervision=supervision)
              self.assertNotIsInstance(models.build_model(config, meta), models.AVVPModel)
          else:
            self.assertIsInstance(models.build_model(config, llp_task.META), models.AVVPModel)

  @parameterized.parameters(*CONFIG_NAMES)
  def test_locked_through_config_flags(self, name):
    path = os.path.join(ROOT, "configs", f"{name}.py")

    def parse(*overrides):
      argv = ["prog", f"--config={path}:tiny", *overrides]
      flag_values = flags.FlagValues()
      config_flags.DEFINE_config_file(
          "config", None, "", flag_values=flag_values, lock_config=True, sys_argv=argv
      )
      flag_values(argv)
      return flag_values.config

    config = parse("--config.optimizer.learning_rate=0.5")
    self.assertEqual(config.optimizer.learning_rate, 0.5)
    with self.assertRaises(AttributeError):
      config.optimizer.learnin_rate = 1.0
    with self.assertRaisesRegex((flags.Error, AttributeError), "learnin_rate"):
      parse("--config.optimizer.learnin_rate=0.5")

  @parameterized.parameters(*CONFIG_NAMES)
  def test_tiny_preset_trains_end_to_end(self, name):
    for preset in _trained_presets(name):
      workdir = self.create_tempdir().full_path
      config = _with_inputs(_load(name, preset), self.create_tempdir().full_path)
      scores = train.train_and_evaluate(config, workdir)
      for key in _keys(config):
        self.assertBetween(scores[key], 0.0, 100.0)
      self.assertTrue(os.path.isfile(os.path.join(workdir, "config.json")))
      self.assertNotEmpty(os.listdir(os.path.join(workdir, "checkpoints")))


if __name__ == "__main__":
  absltest.main()
