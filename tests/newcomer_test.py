"""What a new user meets first (issue 15, "the newcomer's list"): one-line errors, explicit values
honoured, warnings for ignored fields, `--help` exit 0, the plot formats, the `score` range, the
progress bar, the shapes in the launchers' help.

Each test checks what a user sees: the error line, the file written, the value trained with.
"""

import concurrent.futures
import glob
import io
import json
import logging as std_logging
import os
import re
import subprocess
import sys
import tempfile
from unittest import mock

from absl import flags
from absl import logging
from absl.testing import absltest
from absl.testing import parameterized
import jax
from ml_collections import config_flags
import numpy as np

from avvp_jax import checkpoint
from avvp_jax import cli
from avvp_jax import model_parts
from avvp_jax import models
from avvp_jax.tasks.llp import events
from avvp_jax.tasks.llp import metrics
from avvp_jax import reporting
from avvp_jax import sharding
from avvp_jax import state as state_lib
from avvp_jax import tasks
from avvp_jax.tasks.llp import timelines
from avvp_jax.tasks.llp import features
from avvp_jax.tasks.llp import pseudo_labels
from avvp_jax.tasks.llp import run_data
from avvp_jax.errors import InputError
from avvp_jax.models import mmil
from avvp_jax.tasks.llp import task as llp_task
from avvp_jax.tools import evaluate_checkpoint
from avvp_jax.tools import parse_features

from configs_test import CONFIG_NAMES  # pylint: disable=g-bad-import-order
from train_test import ROOT, TIMEOUT_S, _env  # pylint: disable=g-bad-import-order

from configs import han  # pylint: disable=g-import-not-at-top,wrong-import-position

LAUNCHERS = sorted(glob.glob(os.path.join(ROOT, "launch", "*.py")))


def _run(*argv: str) -> subprocess.CompletedProcess:
  return subprocess.run(
      [sys.executable, *argv],
      cwd=ROOT,
      env=_env(),
      capture_output=True,
      text=True,
      timeout=TIMEOUT_S,
  )


# What a refusal on the command line must not wait for (issue 22: refused in under 2 s).
HEAVY_MODULES = ("jax", "jaxlib", "flax", "optax", "orbax", "tensorflow", "torch")


def _refused_without_heavy_imports(test, *argv: str) -> list[str]:
  """Runs `python -X importtime launch/train.py ...argv`; checks it exits 2 having imported none of
  `HEAVY_MODULES`; returns its stderr lines other than the import times."""
  result = _run("-X", "importtime", os.path.join("launch", "train.py"), *argv)
  test.assertEqual(result.returncode, 2, result.stderr[-2000:])
  lines = result.stderr.strip().splitlines()
  imported = {line.rpartition("|")[2].strip() for line in lines if line.startswith("import time:")}
  test.assertNotEmpty(imported)  # -X importtime did report
  test.assertEmpty({name.partition(".")[0] for name in imported} & set(HEAVY_MODULES), argv)
  return [line for line in lines if not line.startswith("import time:")]


def _config_flag(name: str, *overrides: str):
  """`--config=configs/<name>.py ...overrides` parsed as a launcher parses it; the flag holder."""
  argv = ["prog", f"--config={os.path.join(ROOT, 'configs', name)}", *overrides]
  flag_values = flags.FlagValues()
  holder = config_flags.DEFINE_config_file(
      "config", None, "", flag_values=flag_values, lock_config=True, sys_argv=argv
  )
  flag_values(argv)
  return holder


class LauncherTest(absltest.TestCase):
  """The command lines: `--help` exits 0 with the usage; an unknown preset is one line."""

  def test_help_exits_0_with_the_usage_for_every_launcher(self):
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
      results = dict(zip(LAUNCHERS, pool.map(lambda path: _run(path, "--help"), LAUNCHERS)))
    self.assertContainsSubset(
        ["train.py", "evaluate.py", "parse.py", "make_synthetic.py"],
        [os.path.basename(p) for p in results],
    )
    for path, result in results.items():
      self.assertEqual(result.returncode, 0, f"{path}: {result.stderr[-2000:]}")
      self.assertIn(
          "--help", result.stdout, path
      )  # absl's usage: the flags, then the --helpfull hint
      self.assertNotIn("Traceback", result.stdout + result.stderr, path)

  def test_unknown_preset_is_one_line_listing_the_presets(self):
    result = _run(os.path.join("launch", "train.py"), "--config=configs/han.py:small")
    self.assertEqual(result.returncode, 2, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    self.assertLen(lines, 1, result.stderr)
    self.assertRegex(lines[0], r"^error: .*configs/han\.py:small.*unknown preset 'small'.*:tiny")
    self.assertNotIn("Traceback", lines[0])

  def test_unknown_encoder_is_refused_before_any_data_or_workdir(self):
    tmp = self.create_tempdir().full_path
    data_dir, workdir = os.path.join(tmp, "tfds"), os.path.join(tmp, "run")
    result = _run(
        os.path.join("launch", "train.py"),
        "--config=configs/han.py:tiny",
        f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}",
        "--config.model.encoder=nope",
    )
    self.assertEqual(result.returncode, 2, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    self.assertEqual(errors, [lines[-1]], result.stderr)
    self.assertRegex(
        lines[-1], r"^error: config\.model\.encoder 'nope' is unknown: use one of .*'han'"
    )
    for chatter in ("Building", "Reusing", "Config:", "Unable to initialize backend", "Traceback"):
      self.assertNotIn(chatter, result.stderr)
    self.assertFalse(os.path.exists(data_dir))  # refused before any data was built
    self.assertFalse(os.path.exists(workdir))

  def test_unknown_part_and_field_are_refused_before_jax_loads(self):
    for override, pattern in (
        ("--config.model.encoder=nope", r"^error: config\.model\.encoder 'nope' is unknown"),
        ("--config.model.refiner=nope", r"^error: config\.model\.refiner 'nope' is unknown"),
        (
            "--config.optimizer.learning_rat=1e-3",
            r"^error: --config\.optimizer\.learning_rat is not a field of the config",
        ),
    ):
      lines = _refused_without_heavy_imports(self, "--config=configs/han.py:tiny", override)
      self.assertLen(lines, 1, lines)
      self.assertRegex(lines[0], pattern)

  def test_unknown_field_and_missing_file_are_one_line(self):
    cases = {
        "--config.learning_rat=1": (
            r"^error: --config\.learning_rat is not a field of the config; did you mean "
            r"--config\.optimizer\.learning_rate\b"
        ),
        "--config.optimzer.learning_rate=1": (
            r"^error: --config\.optimzer\.learning_rate is not a field of the config; did you mean "
            r"--config\.optimizer\.learning_rate\?$"
        ),
    }
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
      results = dict(
          zip(
              [*cases, "missing"],
              pool.map(
                  lambda argv: _run(os.path.join("launch", "train.py"), *argv),
                  [
                      *(["--config=configs/han.py:tiny", arg] for arg in cases),
                      ["--config=configs/nope.py:tiny"],
                  ],
              ),
          )
      )
    cases["missing"] = r"^error: --config file configs/nope\.py does not exist"
    for name, pattern in cases.items():
      result = results[name]
      self.assertEqual(result.returncode, 2, f"{name}: {result.stderr[-2000:]}")
      lines = result.stderr.strip().splitlines()
      self.assertLen(lines, 1, result.stderr)
      self.assertRegex(lines[0], pattern)

  def test_jax_backend_probe_and_orbax_info_are_quiet_unless_verbose(self):
    def record(name, pathname, level=std_logging.INFO, msg="x", args=None):
      return std_logging.LogRecord(name, level, pathname, 1, msg, args, None)

    probe = record("jax._src.xla_bridge", "/x/jax/_src/xla_bridge.py")
    orbax = record("absl", f"/x/orbax{os.sep}checkpoint/manager.py")
    tfds = record(
        "absl", "/x/tensorflow_datasets/core/dataset_info.py", msg="Load dataset info from %s"
    )
    ours = record("absl", "/x/avvp_jax/train.py")
    self.assertEqual(
        [cli._quiet(r) for r in (probe, orbax, tfds, ours)], [False, False, False, True]
    )
    self.assertTrue(cli._quiet(record("absl", "/x/orbax/c.py", std_logging.WARNING)))
    expected = (
        record(
            "absl",
            "/x/tensorflow_datasets/file_utils.py",
            std_logging.WARNING,
            "Variant folder %s has no %s",
            ("/d", "dataset_info.json"),
        ),
        record(
            "absl",
            "/x/orbax/checkpoint_manager.py",
            std_logging.WARNING,
            "Given directory is read only=%s",
        ),
    )
    self.assertEqual([cli._quiet(r) for r in expected], [False, False])
    with mock.patch.object(cli.logging, "get_verbosity", return_value=logging.DEBUG):  # absl's -v 1
      self.assertTrue(all(cli._quiet(r) for r in (probe, orbax, tfds, *expected)))


class PresetTest(parameterized.TestCase):

  @parameterized.parameters(*CONFIG_NAMES)
  def test_unknown_preset_of_every_config_is_one_line(self, name):
    with self.assertRaises(flags.Error) as caught:
      _config_flag(f"{name}.py:small")
    self.assertIn("Traceback", str(caught.exception))  # what ml_collections puts into the message
    line = cli.flag_error_line(str(caught.exception))
    self.assertNotIn("\n", line)
    self.assertNotIn("Traceback", line)
    self.assertIn(f"configs/{name}.py:small", line)
    self.assertRegex(line, r"unknown preset 'small': the presets are :tiny(, :\w+)* \(or none")

  def test_a_message_without_a_traceback_is_kept(self):
    self.assertEqual(
        cli.flag_error_line("Unknown command line\n flag 'x'"), "Unknown command line flag 'x'"
    )


class ExplicitOverRecipeTest(absltest.TestCase):
  """The synthetic reduced recipe is the default only where the user did not say."""

  def _resolved(self, name, *overrides):
    config = cli.loaded_config(_config_flag(name, *overrides))
    return state_lib.resolve_config(config)

  def test_explicit_num_epochs_wins_on_synthetic_data(self):
    self.assertEqual(state_lib.num_train_epochs(self._resolved("han.py")), 4)  # the reduced recipe
    config = self._resolved("han.py", "--config.num_epochs=1")
    self.assertEqual(state_lib.num_train_epochs(config), 1)
    self.assertEqual(
        (config.num_epochs, config.synthetic_num_epochs), (1, 0)
    )  # config.json says so
    both = self._resolved("han.py", "--config.num_epochs=1", "--config.synthetic_num_epochs=3")
    self.assertEqual(state_lib.num_train_epochs(both), 3)  # the replacement itself was set

  def test_the_log_says_reduced_only_when_something_is(self):
    reduced = self._resolved("han.py")
    self.assertIn("reduced recipe (4 epochs", tasks.of(reduced).recipe(reduced).note)
    for name in ("han.py:tiny", "cmbs.py:tiny"):  # one epoch asked, one epoch trained
      config = self._resolved(name)
      self.assertEqual(tasks.of(config).recipe(config).note, "", name)

  def test_explicit_learning_rate_and_label_table_win(self):
    default = self._resolved("leap_mmpyr.py")
    self.assertEqual(state_lib.peak_learning_rate(default), 3e-4)
    self.assertEqual(default.model.leap.label_embeddings, "learned")
    config = self._resolved(
        "leap_mmpyr.py",
        "--config.optimizer.learning_rate=1e-3",
        "--config.model.leap.label_embeddings=packaged",
    )
    self.assertEqual(state_lib.peak_learning_rate(config), 1e-3)
    self.assertEqual(config.model.leap.label_embeddings, "packaged")
    self.assertEqual(state_lib.num_train_epochs(config), 2)  # not set: still the reduced recipe

  def test_every_replaced_field_has_its_replacement_in_the_configs(self):
    for name in CONFIG_NAMES:
      config = _config_flag(f"{name}.py").value
      for field, (replacement, _) in llp_task.TASK.recipe_replacements.items():
        self.assertIn(replacement, config, name)
        section = config
        for key in field.split("."):
          section = section[key]  # the replaced field exists


class ConfigChecksTest(absltest.TestCase):
  """resolve_config: the empty folder, the layout's input widths, the ignored fields."""

  def test_empty_features_folder_is_one_line_naming_what_it_should_hold(self):
    config = han.get_config("tiny")
    config.data.features_dir = self.create_tempdir().full_path
    with self.assertRaises(InputError) as caught:
      state_lib.resolve_config(config)
    message = str(caught.exception)
    self.assertNotIn("\n", message)
    self.assertIn(config.data.features_dir, message)
    self.assertIn("is empty", message)
    for sub, (rows, width) in features.LAYOUTS["official"].values():
      self.assertIn(f"{sub}/<id>.npy [{rows}, {width}]", message)

  def test_folder_of_the_other_layout_says_so(self):
    root = self.create_tempdir()
    for sub, _ in features.LAYOUTS["clip_clap"].values():
      os.makedirs(os.path.join(root.full_path, sub))
    config = han.get_config("tiny")
    config.data.features_dir = root.full_path
    with self.assertRaisesRegex(
        InputError, r"has no vggish/ folder .*--config.data.layout=clip_clap"
    ):
      state_lib.resolve_config(config)

  def test_clip_clap_input_dims_come_from_the_layout(self):
    config = han.get_config("tiny")
    config.data.layout = "clip_clap"
    resolved = state_lib.resolve_config(config)
    shapes = features.output_shapes("clip_clap")
    self.assertEqual(
        dict(resolved.model.input_dims),
        dict(audio=shapes["audio"][1], frames=shapes["frames"][1], motion=0),
    )
    self.assertEqual(dict(resolved.model.input_dims), dict(audio=768, frames=768, motion=0))
    config.model.input_dims.audio = 1024  # set by hand: kept as given
    self.assertEqual(state_lib.resolve_config(config).model.input_dims.audio, 1024)
    self.assertEqual(state_lib.resolve_config(config).model.input_dims.frames, 2048)

  def test_final_report_names_an_evaluation_split_or_none(self):
    config = han.get_config("tiny")
    self.assertEqual(config.final_report, "test")
    config.final_report = "train"
    with self.assertRaisesRegex(
        InputError, r"^config.final_report='train' is not an evaluation split: use 'val' or 'test'"
    ):
      state_lib.resolve_config(config)
    config.final_report = ""
    self.assertEqual(state_lib.resolve_config(config).final_report, "")
    old = han.get_config("tiny")
    del old["final_report"]  # a config stored before the field existed: no final report, as it ran
    self.assertEqual(state_lib.backfilled(old).final_report, "")

  def test_ignored_fields_warn_once_per_resolution_listing_them(self):
    config = han.get_config("tiny")
    self.assertEqual(state_lib.ignored_fields(config), [])
    config.model.leap.label_embeddings = "glove_for_han.txt"
    config.model.mmpyramid.num_levels = 3
    self.assertEqual(
        state_lib.ignored_fields(config),
        ["model.mmpyramid.num_levels", "model.leap.label_embeddings"],
    )
    with self.assertLogs(level="WARNING") as logs:
      state_lib.resolve_config(config)
    warnings = [r.getMessage() for r in logs.records if "ignored" in r.getMessage()]
    self.assertLen(warnings, 1)
    self.assertIn("model.leap.label_embeddings='glove_for_han.txt'", warnings[0])
    self.assertIn("model.mmpyramid.num_levels=3", warnings[0])
    self.assertIn("reads only model.han, model.mmil", warnings[0])
    with self.assertLogs(level="WARNING") as logs:
      state_lib.resolve_config(config)  # a run resolves its config once: each resolution says it
    self.assertLen([r for r in logs.records if "ignored" in r.getMessage()], 1)

  def test_the_light_name_check_is_the_builders(self):
    # cli refuses an unknown part with model_parts before JAX loads; the builder refuses it with the same line.
    for field in ("encoder", "decoder", "refiner"):
      config = han.get_config()
      config.model[field] = "nope"
      with self.assertRaises(InputError) as light:
        model_parts.check_names(config.model)
      with self.assertRaises(InputError) as built:
        models.build_model(config.model, llp_task.META)
      self.assertEqual(str(light.exception), str(built.exception))
      self.assertIn(f"config.model.{field} 'nope' is unknown", str(light.exception))
    self.assertEqual(
        {field: sorted(registry) for field, registry in model_parts.PARTS.items()},
        {
            "encoder": sorted(models.ENCODERS),
            "decoder": sorted(models.DECODERS),
            "refiner": sorted(models.REFINERS),
        },
    )
    with self.assertRaisesRegex(ValueError, r"encoder builders \['han'\] != avvp_jax.model_parts"):
      models._registry("encoder", {"han": models.ENCODERS["han"].build})

  def test_sections_read_follow_the_builders(self):
    config = han.get_config()
    config.model.encoder, config.model.decoder, config.model.refiner = "link", "leap", "plsim"
    self.assertEqual(models.sections_read(config.model), ("link", "han", "leap", "plsim"))
    config.model.leap.label_embeddings = "learned"
    self.assertEqual(state_lib.ignored_fields(config), [])


class PlotFormatTest(parameterized.TestCase):

  @parameterized.parameters(("png", b"\x89PNG"), ("pdf", b"%PDF"), ("svg", b"<?xml"))
  def test_format_by_extension(self, extension, magic):
    path = os.path.join(self.create_tempdir().full_path, f"timeline.{extension.upper()}")
    clip = {"clip": "abc", "events": [dict(modality="audio", label="Speech", onset=0, offset=3)]}
    timelines.plot_timelines(path, [clip])
    with open(path, "rb") as f:
      self.assertEqual(f.read(len(magic)), magic)

  def test_other_extensions_are_refused_before_parsing(self):
    tmp = self.create_tempdir().full_path
    for name in ("x.jpg", "timeline"):
      with self.assertRaises(InputError) as caught:
        parse_features.parse_files(
            os.path.join(tmp, "no_checkpoint"), tmp, os.path.join(tmp, "e.json"), plot=name
        )
      self.assertRegex(str(caught.exception), r"^--plot '.*' has .*: timelines are written as .png")
    self.assertEqual(os.listdir(tmp), [])


class ScoreTest(absltest.TestCase):
  """`video_labels[].score` is MMIL's attentive pooling (the official global_prob): in [0, 2)."""

  def _mmil(self, params, audio, visual):
    decoder = mmil.MMILDecoder(num_classes=params["fc_prob"]["bias"].shape[0])
    return jax.tree.map(np.asarray, decoder.apply({"params": params}, audio, visual, train=False))

  @staticmethod
  def _official(params, audio, visual):
    """numpy transcription of YapengTian/AVVP-ECCV20 MMIL_Net's pooling (x: [B, T, 2, D])."""
    x = np.stack([audio, visual], axis=2).astype(np.float64)
    dense = lambda name: x @ np.asarray(params[name]["kernel"]) + np.asarray(params[name]["bias"])
    softmax = lambda z, axis: np.exp(z - z.max(axis, keepdims=True)) / np.exp(
        z - z.max(axis, keepdims=True)
    ).sum(axis, keepdims=True)
    frame_prob = 1.0 / (1.0 + np.exp(-dense("fc_prob")))
    temporal_prob = softmax(dense("fc_frame_att"), 1) * frame_prob
    global_prob = (temporal_prob * softmax(dense("fc_av_att"), 2)).sum(axis=2).sum(axis=1)
    return global_prob, temporal_prob[:, :, 0].sum(1), temporal_prob[:, :, 1].sum(1)

  def test_hand_made_case_reaches_two(self):
    # audio attends to second 0, visual to second 1, and each second's modality attention picks the
    # modality that attends to it: both weights ~1, so the score is ~P(audio, 0) + P(visual, 1) ~ 2.
    s = 30.0
    audio = np.zeros((1, 3, 2), np.float32)
    visual = np.zeros((1, 3, 2), np.float32)
    audio[0, 0, 0], visual[0, 1, 1] = s, s
    ones = np.ones((2, 1), np.float32)
    params = {
        "fc_prob": {
            "kernel": np.zeros((2, 1), np.float32),
            "bias": np.full((1,), 20.0, np.float32),
        },
        "fc_frame_att": {"kernel": ones, "bias": np.zeros((1,), np.float32)},
        "fc_av_att": {"kernel": ones, "bias": np.zeros((1,), np.float32)},
    }
    out = self._mmil(params, audio, visual)
    expected = self._official(params, audio, visual)
    np.testing.assert_allclose(out["video_prob"], expected[0], rtol=1e-5)
    self.assertGreater(float(out["video_prob"][0, 0]), 1.99)
    self.assertLessEqual(float(out["audio_prob"][0, 0]), 1.0)
    probs = {k: np.repeat(out[k], 25, axis=-1) for k in ("video_prob", "audio_prob", "visual_prob")}
    labels = events.video_labels(probs)[0]
    self.assertLen(labels, 25)
    self.assertGreater(labels[0]["score"], 1.99)
    self.assertBetween(labels[0]["audio"], 0.0, 1.0)
    self.assertIn("[0, 2)", events.VIDEO_SCORE)

  def test_random_models_stay_in_the_documented_ranges(self):
    rng = np.random.default_rng(0)
    audio, visual = (rng.normal(size=(64, 10, 8)).astype(np.float32) for _ in range(2))
    decoder = mmil.MMILDecoder(num_classes=25)
    params = decoder.init(jax.random.key(0), audio, visual, train=False)["params"]
    params = jax.tree.map(lambda p: np.asarray(p) * 8.0, params)  # sharp attentions
    out = self._mmil(params, audio, visual)
    expected = self._official(params, audio, visual)
    for got, want in zip((out["video_prob"], out["audio_prob"], out["visual_prob"]), expected):
      np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    self.assertGreater(out["video_prob"].max(), 1.0)  # such scores occur
    self.assertLess(out["video_prob"].max(), 2.0)
    self.assertGreaterEqual(out["video_prob"].min(), 0.0)
    for key in ("audio_prob", "visual_prob"):
      self.assertBetween(float(out[key].min()), 0.0, 1.0)
      self.assertBetween(float(out[key].max()), 0.0, 1.0 + 1e-6)


class ParamsOnlyEvaluateTest(absltest.TestCase):
  """`launch/evaluate.py --checkpoint=DIR --split=test`, no --workdir: the report is beside DIR."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    config = state_lib.resolve_config(han.get_config("tiny"))
    mesh = sharding.make_mesh(num_seeds=1)
    tx, _ = state_lib.make_optimizer(config, 1)
    train_state, _ = state_lib.create_train_state(
        config, state_lib.build_model(config), tx, mesh, [0]
    )
    cls.export = os.path.join(tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir()), "converted")
    checkpoint.save_params_checkpoint(cls.export, config, jax.device_get(train_state.params))

  def test_launcher_writes_the_report_beside_the_checkpoint(self):
    result = _run(
        os.path.join("launch", "evaluate.py"), f"--checkpoint={self.export}", "--split=test"
    )
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    path = os.path.join(self.export, "eval_test.json")
    self.assertIn(f"wrote {path}", result.stdout)
    with open(path) as f:
      report = json.load(f)
    self.assertEqual(report["split"], "test")
    self.assertEqual(report["num_clips"], 40)  # the tiny preset's first 40 test clips
    for key in metrics.KEYS:
      self.assertBetween(report[key], 0.0, 100.0)

  def test_read_only_folder_asks_for_out(self):
    with mock.patch.object(evaluate_checkpoint.os, "access", return_value=False):
      with self.assertRaisesRegex(InputError, r"cannot be written .*--out=FILE.json"):
        evaluate_checkpoint.report_path(None, self.export, "test")
    out = os.path.join(self.create_tempdir().full_path, "sub")
    self.assertEqual(
        evaluate_checkpoint.report_path(None, self.export, "val", out + "/r.json"), out + "/r.json"
    )
    self.assertEqual(
        evaluate_checkpoint.report_path(None, self.export, "val"),
        os.path.join(self.export, "eval_val.json"),
    )


class _Terminal(io.StringIO):

  def isatty(self):
    return True


class ProgressTest(absltest.TestCase):

  def test_eta_leaves_the_compile_step_out(self):
    now = [0.0]
    chrono = reporting.Chrono(100, 8, clock=lambda: now[0])
    chrono.start(0)
    now[0] = 600.0  # step 1: ten minutes of compilation
    chrono.compiled(1)
    now[0] += 9 * 2.0  # steps 2-10, 2 s each
    self.assertAlmostEqual(chrono.eta_seconds(10), 90 * 2.0)
    self.assertAlmostEqual(chrono.tick(10)["eta_seconds"], 90 * 2.0)

  def test_log_lines_are_written_above_the_bar_with_the_chronos_eta(self):
    terminal = _Terminal()
    now = [0.0]
    chrono = reporting.Chrono(100, 8, clock=lambda: now[0])
    chrono.start(0)
    handler = logging.get_absl_handler().python_handler
    stream_before = handler.stream
    root = std_logging.getLogger()
    if logging.get_absl_handler() not in root.handlers:  # as app.run installs it in a launcher
      root.addHandler(logging.get_absl_handler())
      self.addCleanup(root.removeHandler, logging.get_absl_handler())
    with mock.patch.object(sys, "stderr", terminal):
      progress = reporting.Progress(100, 0, chrono)
      progress.update()
      now[0] = 600.0
      chrono.compiled(1)
      for _ in range(9):
        progress.update()
      now[0] += 18.0
      progress.report("loss 0.5", "a log line")
      logging.warning("a line for the log")
      progress.update()
      progress.close()
    self.assertIs(handler.stream, stream_before)
    text = terminal.getvalue()
    self.assertIn("ETA 0:03:00", text)  # 90 steps of 2 s: tqdm's own would count the compile step
    self.assertNotRegex(text, r"\d+/100 \[[^\]]*<")  # no tqdm remaining-time field
    lines = [line for line in re.split(r"[\r\n]", text) if "a line for the log" in line]
    self.assertLen(lines, 1)
    self.assertNotIn("step", lines[0].split("a line for the log")[0])  # not glued onto the bar

  def test_first_step_says_compiling_instead_of_nan_clips_per_second(self):
    chrono = reporting.Chrono(8, 8)
    chrono.start(0)
    timing = chrono.tick(1)  # within the compile step: nothing measured yet
    line = f"step 1/8: loss 2.0782, lr 3.00e-04, {timing['clips_per_second']:.0f} clips/s, ETA ?"
    with mock.patch.object(reporting.logging, "info") as info:
      progress = reporting.Progress(8, 0, chrono)
      progress.report(f"loss 2.0 {timing['clips_per_second']:.0f} clips/s", line)
      progress.report("x", "step 2/8: loss 2.0, 53 clips/s, ETA 0:00:01")
    self.assertEqual(
        [call.args[1] for call in info.call_args_list],
        [
            "step 1/8: loss 2.0782, lr 3.00e-04 (with compilation: no rate or ETA yet)",
            "step 2/8: loss 2.0, 53 clips/s, ETA 0:00:01",
        ],
    )


class PseudoLabelLineTest(absltest.TestCase):

  def test_none_and_counts(self):
    config = han.get_config("tiny")
    self.assertEqual(
        run_data.pseudo_label_line(config, None, 64),
        "pseudo labels: none (the model learns from video labels only).",
    )
    audio = np.zeros((3, 10, 25), np.float32)
    visual = np.zeros((3, 10, 25), np.float32)
    audio[0, 2, 1], visual[2, 0, 3] = 1, 1
    labels = pseudo_labels.PseudoLabels(clip_ids=("a", "b", "c"), audio=audio, visual=visual)
    config.data.pseudo_labels = "/data/valor"
    config.loss.name = "leap"
    line = run_data.pseudo_label_line(config, labels, 3)
    self.assertIn("VALOR-layout files from /data/valor", line)
    self.assertIn("segment labels for 3/3 training clips (2 with a positive second)", line)
    self.assertIn("config.loss.audio_pseudo_labels", line)


class HelpShapesTest(absltest.TestCase):

  def test_every_shape_in_the_launchers_docs_is_the_layouts(self):
    stored = {sub: shape for layout in features.LAYOUTS.values() for sub, shape in layout.values()}
    pattern = re.compile(r"([A-Za-z0-9_]+(?:/features)?)/<id>\.npy`?\s*\[(\d+), (\d+)\]")
    seen = set()
    for path in LAUNCHERS + [os.path.join(ROOT, "avvp_jax", "tasks", "llp", "features.py")]:
      with open(path) as f:
        text = f.read()
      for sub, rows, width in pattern.findall(text):
        if sub in stored:
          seen.add(sub)
          self.assertEqual((int(rows), int(width)), stored[sub], f"{path}: {sub}")
    self.assertContainsSubset(["vggish", "res152", "r2plus1d_18", "CLAP/features"], seen)


if __name__ == "__main__":
  absltest.main()
