"""launch/parse.py and `tools.parse_features.parse_files`: JSON records, timelines, .npz input, one-line errors.

Uses a params-only checkpoint of an untrained `configs/han.py:tiny` model (the trained round trip lives in
inference_test.py) and synthetic validation features written in the official layout.
"""

import functools
import json
import os
import struct
import subprocess
import sys
import tempfile
import types

from absl.testing import absltest
import jax
import numpy as np

import avvp_jax
from avvp_jax.tasks.llp import events as events_lib
from avvp_jax.tasks.llp import metrics
from avvp_jax.tasks.llp import timelines
from avvp_jax.tasks.llp import annotations
from avvp_jax.tasks.llp import features as features_lib
from avvp_jax.tasks.llp import synthetic
from avvp_jax.errors import InputError
from avvp_jax.tools import parse_features
from avvp_jax.tasks.llp import task as llp_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configs import han  # pylint: disable=g-import-not-at-top,wrong-import-position

NUM_CLIPS = 5
EVENT_KEYS = {"modality", "label", "onset", "offset", "score"}
LABEL_KEYS = {"label", "score", "audio", "visual"}


def _png_size(path):
  with open(path, "rb") as f:
    header = f.read(24)
  assert header[:8] == b"\x89PNG\r\n\x1a\n", header[:8]
  assert header[12:16] == b"IHDR"
  return struct.unpack(">II", header[16:24])


def _env():
  env = dict(os.environ)
  env.update(
      PYTHONPATH=ROOT + os.pathsep + env.get("PYTHONPATH", ""),
      JAX_PLATFORMS="cpu",
      TF_CPP_MIN_LOG_LEVEL="2",
  )
  return env


@functools.lru_cache(maxsize=1)
def _fixture():
  """Params-only checkpoints of untrained tiny HANs (one model; two seeds, the first of them that model) and
  synthetic val features, shared by the tests."""
  from avvp_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from avvp_jax import models  # pylint: disable=g-import-not-at-top

  # one folder per process: pytest-xdist workers building it side by side must not share it
  root = tempfile.mkdtemp(prefix="parse_cli_fixture_", dir=absltest.get_default_test_tmpdir())
  config = han.get_config("tiny")
  dims = config.model.input_dims
  dummy = (
      np.zeros((1, 10, dims.audio), np.float32),
      np.zeros((1, 10, dims.frames), np.float32),
      np.zeros((1, 10, dims.motion), np.float32),
  )
  init = jax.jit(
      lambda key: models.build_model(config.model, llp_task.META).init(key, *dummy)["params"]
  )
  params = init(jax.random.key(1))
  ckpt = checkpoint.save_params_checkpoint(
      os.path.join(root, "params_ckpt"), config, checkpoint.stack_seeds(params)
  )
  two_seeds = config.copy_and_resolve_references()
  two_seeds.seed, two_seeds.num_seeds = 5, 2
  seeds_ckpt = checkpoint.save_params_checkpoint(
      os.path.join(root, "seeds_ckpt"),
      two_seeds,
      checkpoint.stack_seeds(params, init(jax.random.key(2))),
  )
  data = synthetic.SyntheticLLP(num_train_clips=8, layout="official", frames="raw")
  features = os.path.join(root, "features")
  synthetic.write_features(data, features, "val", range(NUM_CLIPS))
  with open(os.path.join(features, synthetic.MARKER_FILE), "w") as f:
    f.write("SYNTHETIC\n")
  return types.SimpleNamespace(
      root=root,
      checkpoint=ckpt,
      seeds_checkpoint=seeds_ckpt,
      features=features,
      clip_ids=sorted(data.split("val").clip_ids[:NUM_CLIPS]),
  )


class ParseFilesTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    fixture = _fixture()
    cls.root, cls.checkpoint, cls.features, cls.clip_ids = (
        fixture.root,
        fixture.checkpoint,
        fixture.features,
        fixture.clip_ids,
    )
    cls.parser = avvp_jax.load_parser(cls.checkpoint)
    loaded = [features_lib.load_clip(cls.features, "official", "pooled", c) for c in cls.clip_ids]
    cls.inputs = {key: np.stack([clip[key] for clip in loaded]) for key in loaded[0]}

  def assertEventsEqual(self, got, expected):  # pylint: disable=invalid-name
    """Same events; scores equal up to float32 rounding (batch sizes may change XLA's summation order)."""
    spans = lambda events: [(e["modality"], e["label"], e["onset"], e["offset"]) for e in events]
    self.assertEqual(spans(got), spans(expected))
    np.testing.assert_allclose([e["score"] for e in got], [e["score"] for e in expected], rtol=1e-5)

  def _out(self, name):
    return os.path.join(self.create_tempdir().full_path, name)

  def _check_schema(self, records, gate=0.5):
    self.assertEqual([r["clip"] for r in records], self.clip_ids)
    for record in records:
      self.assertEqual(set(record), {"clip", "events", "video_labels", "provenance"})
      for event in record["events"]:
        self.assertEqual(set(event), EVENT_KEYS)
        self.assertIn(event["modality"], metrics.MODALITIES)
        self.assertIn(event["label"], annotations.CLASSES)
        self.assertTrue(0 <= event["onset"] < event["offset"] <= 10, event)
        self.assertEqual(event["onset"], int(event["onset"]))
        self.assertBetween(event["score"], 0.0, 1.0)
      for label in record["video_labels"]:
        self.assertEqual(set(label), LABEL_KEYS)
        self.assertGreaterEqual(label["score"], gate)

  def test_json_records_match_the_library(self):
    out = self._out("events.json")
    summary = parse_features.parse_files(
        self.checkpoint, self.features, out, batch_size=2, threshold=0.45
    )  # padded
    self.assertIn(f"parsed {NUM_CLIPS} clips", summary)
    with open(out) as f:
      records = json.load(f)
    self._check_schema(records, gate=0.45)
    expected = self.parser.parse(
        self.inputs["audio"], self.inputs["frames"], self.inputs["motion"], threshold=0.45
    )
    for record, clip_events in zip(records, expected):
      self.assertEventsEqual(record["events"], clip_events)
    self.assertTrue(any(r["events"] for r in records))
    source = records[0][
        "provenance"
    ]  # a params-only checkpoint has no step; the features carry the marker
    self.assertEqual(
        {k: source[k] for k in ("checkpoint", "step", "seeds", "threshold", "gate_threshold")},
        {
            "checkpoint": os.path.abspath(self.checkpoint),
            "step": None,
            "seeds": None,
            "threshold": 0.45,
            "gate_threshold": None,
        },
    )
    self.assertIs(source["synthetic"], True)
    self.assertEqual(source["package_version"], avvp_jax.__version__)

  def test_seed_of_a_multi_seed_checkpoint(self):
    seeds_checkpoint = _fixture().seeds_checkpoint
    records = {}
    for name, path, seed in (
        ("alone", self.checkpoint, None),
        ("replica", seeds_checkpoint, 5),
        ("ensemble", seeds_checkpoint, None),
    ):
      out = self._out(f"{name}.json")
      parse_features.parse_files(path, self.features, out, seed=seed)
      with open(out) as f:
        records[name] = json.load(f)
    for got, expected in zip(
        records["replica"], records["alone"]
    ):  # replica seed 5 is the one-model checkpoint
      self.assertEventsEqual(got["events"], expected["events"])
    ensemble = avvp_jax.load_parser(seeds_checkpoint)
    self.assertEqual(ensemble.seeds, [5, 6])
    expected = ensemble.parse(self.inputs["audio"], self.inputs["frames"], self.inputs["motion"])
    for record, clip_events in zip(records["ensemble"], expected):
      self.assertEventsEqual(record["events"], clip_events)
    self.assertNotEqual(records["ensemble"], records["alone"])
    with self.assertRaisesRegex(InputError, "seed=4 is not a replica"):
      parse_features.parse_files(seeds_checkpoint, self.features, self._out("bad.json"), seed=4)

  def test_jsonl_and_clip_selection(self):
    out = self._out("events.jsonl")
    parse_features.parse_files(self.checkpoint, self.features, out, clips=self.clip_ids[3:1:-1])
    with open(out) as f:
      records = [json.loads(line) for line in f]
    self.assertEqual([r["clip"] for r in records], self.clip_ids[3:1:-1])
    clip_list = self._out("clips.txt")
    with open(clip_list, "w") as f:
      f.write(f"# chosen clips\n{self.clip_ids[4]}\n\n{self.clip_ids[0]}  trailing words\n")
    out = self._out("subset.json")
    parse_features.parse_files(self.checkpoint, self.features, out, clip_list=clip_list)
    with open(out) as f:
      self.assertEqual([r["clip"] for r in json.load(f)], [self.clip_ids[4], self.clip_ids[0]])

  def test_class_thresholds_change_only_that_class(self):
    low = {"Speech": 0.0}
    out = self._out("events.json")
    parse_features.parse_files(
        self.checkpoint, self.features, out, threshold=low, gate_threshold=low
    )
    with open(out) as f:
      records = json.load(f)
    for record in records:  # with threshold 0, Speech is one whole-clip event per modality
      speech = [
          (e["modality"], e["onset"], e["offset"])
          for e in record["events"]
          if e["label"] == "Speech"
      ]
      self.assertEqual(
          speech, [("audio", 0.0, 10.0), ("visual", 0.0, 10.0), ("audio_visual", 0.0, 10.0)]
      )

  def test_plot_is_a_png_of_the_expected_size(self):
    out, png = self._out("events.json"), self._out("timeline.png")
    parse_features.parse_files(
        self.checkpoint, self.features, out, plot=png, plot_max=3, threshold=0.45
    )
    with open(out) as f:
      records = json.load(f)
    truth = parse_features.ground_truth(None, "val")
    clips = [
        {
            "clip": r["clip"],
            "events": r["events"],
            "truth": events_lib.extract_events(*(x[None] for x in truth[r["clip"]]))[0],
        }
        for r in records[:3]
    ]
    self.assertEqual(_png_size(png), timelines.timeline_figure_size(clips))
    self.assertGreater(len(timelines._timeline_rows(clips[0])), 0)  # pylint: disable=protected-access
    plot_dir = self.create_tempdir().full_path
    parse_features.parse_files(
        self.checkpoint,
        self.features,
        out,
        plot_dir=plot_dir,
        plot_clips=[self.clip_ids[1]],
        split="none",
    )
    self.assertEqual(os.listdir(plot_dir), [f"{self.clip_ids[1]}.png"])
    width, height = _png_size(os.path.join(plot_dir, f"{self.clip_ids[1]}.png"))
    self.assertEqual(
        width, timelines.timeline_figure_size([{"clip": "x", "events": [], "truth": None}])[0]
    )
    self.assertLess(width, _png_size(png)[0])  # no ground-truth column

  def test_npz_single_and_several_clips(self):
    single = self._out("one_clip.npz")
    np.savez(
        single,
        audio=self.inputs["audio"][0],
        visual=self.inputs["frames"][0],
        motion=self.inputs["motion"][0],
    )
    out = self._out("one.json")
    parse_features.parse_files(self.checkpoint, single, out, threshold=0.45)
    with open(out) as f:
      (record,) = json.load(f)
    self.assertEqual(record["clip"], "one_clip")
    several = self._out("clips.npz")
    np.savez(
        several,
        audio=self.inputs["audio"][:3],
        frames=self.inputs["frames"][:3],
        motion=self.inputs["motion"][:3],
        clip_ids=np.array(self.clip_ids[:3]),
    )
    parse_features.parse_files(self.checkpoint, several, out, threshold=0.45)
    with open(out) as f:
      records = json.load(f)
    self.assertEqual([r["clip"] for r in records], self.clip_ids[:3])
    self.assertEventsEqual(records[0]["events"], record["events"])

  def test_bad_inputs(self):
    out = self._out("events.json")
    nan_npz = self._out("nan.npz")
    audio = self.inputs["audio"][0].copy()
    audio[2, 3] = np.nan
    np.savez(nan_npz, audio=audio, frames=self.inputs["frames"][0], motion=self.inputs["motion"][0])
    wrong_npz = self._out("wrong.npz")
    np.savez(
        wrong_npz,
        audio=self.inputs["audio"][0][:, :64],
        frames=self.inputs["frames"][0],
        motion=self.inputs["motion"][0],
    )
    no_motion_npz = self._out("no_motion.npz")
    np.savez(no_motion_npz, audio=self.inputs["audio"][0], frames=self.inputs["frames"][0])
    cases = [
        (
            dict(features=self.features, clips=["Missing0000"]),
            "Missing0000.npy' of clip Missing0000 is missing",
        ),
        (dict(features=nan_npz), "audio holds NaN"),
        (dict(features=wrong_npz), "audio has feature width 64"),
        (dict(features=no_motion_npz), "no motion array"),
        (dict(features=os.path.join(self.root, "nowhere")), "does not exist"),
        (dict(features=self.root), "neither layout"),
        (dict(checkpoint=os.path.join(self.root, "no_checkpoint")), "does not exist"),
        (dict(plot=self._out("x.png"), plot_clips=["notparsed"]), "not parsed"),
        (dict(threshold={"Speach": 0.3}), "unknown classes"),
    ]
    for overrides, pattern in cases:
      kwargs = dict(checkpoint=self.checkpoint, features=self.features, out=out)
      kwargs.update(overrides)
      with self.subTest(pattern):
        with self.assertRaisesRegex(InputError, pattern):
          parse_features.parse_files(**kwargs)


class LauncherTest(absltest.TestCase):
  """The command line itself: a run with a plot, and bad input as one `error:` line with status 2."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.fixture = _fixture()

  def _run(self, *flags):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "launch", "parse.py"), *flags],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        timeout=240,
        check=False,
    )

  def test_run_writes_json_and_plot(self):
    tmp = self.create_tempdir().full_path
    out, png = os.path.join(tmp, "events.json"), os.path.join(tmp, "timeline.png")
    result = self._run(
        f"--checkpoint={self.fixture.checkpoint}",
        f"--features={self.fixture.features}",
        f"--out={out}",
        f"--plot={png}",
        "--plot_max=2",
        "--class_thresholds=Speech=0.4,Dog=0.6",
        "--truth_split=auto",
    )
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    self.assertIn(f"parsed {NUM_CLIPS} clips", result.stdout)
    with open(out) as f:
      self.assertLen(json.load(f), NUM_CLIPS)
    self.assertGreater(_png_size(png)[0], 0)

  def assertOneErrorLine(self, result, pattern):  # pylint: disable=invalid-name
    self.assertEqual(result.returncode, 2, result.stderr[-2000:])
    self.assertNotIn("Traceback", result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    self.assertLen(lines, 1, result.stderr)
    self.assertRegex(lines[0], pattern)

  def test_unknown_checkpoint(self):
    result = self._run(
        "--checkpoint=/nonexistent/ckpt",
        f"--features={self.fixture.features}",
        f"--out={self.create_tempdir().full_path}/e.json",
    )
    self.assertOneErrorLine(result, "Checkpoint path .* does not exist")

  def test_missing_feature_file_and_bad_threshold(self):
    out = f"--out={self.create_tempdir().full_path}/e.json"
    common = (f"--checkpoint={self.fixture.checkpoint}", f"--features={self.fixture.features}", out)
    self.assertOneErrorLine(
        self._run(*common, "--clips=Missing0000"), "Missing0000.npy.* is missing"
    )
    self.assertOneErrorLine(self._run(*common, "--class_thresholds=Speech:0.4"), "not CLASS=VALUE")
    self.assertOneErrorLine(
        self._run(*common, "--replica=3"),
        r"seed=3 is not a replica of this run, which trained " r"seed 0 only",
    )
    old = self._run(
        *common, "--seed=3"
    )  # the deprecated name of --replica: the same, with a warning
    self.assertOneErrorLine(old, r"seed=3 is not a replica of this run")
    self.assertIn("warning: --seed is deprecated; use --replica", old.stderr.splitlines())


if __name__ == "__main__":
  absltest.main()
