"""`avvp_jax.tools.pseudo_label_maker` and launch/make_pseudo_labels.py: a teacher's pseudo labels, end to end.

The two-stage recipe on the embedded SYNTHETIC data: a tiny HAN (`configs/han.py:tiny`) is trained, its pseudo
labels are made, and a `configs/leap.py:tiny` run trains on them (the same programs configs_test.py trains, so
a test session compiles them once). The same teacher then labels a SYNTHETIC features folder in the official
layout (as launch/make_synthetic.py writes it): the files are checked against the rule applied by hand to the
teacher's own probabilities, quality.json against `pseudo_labels.quality` of the files read back. The rule
and the threshold tuning are also checked on hand-made arrays.
"""

import functools
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import types

from absl.testing import absltest
import numpy as np

import avvp_jax
import launch_env
from avvp_jax.tools import pseudo_label_maker
from avvp_jax.tasks.llp import annotations
from avvp_jax.tasks.llp import features as features_lib
from avvp_jax.tasks.llp import pseudo_labels
from avvp_jax.tasks.llp import synthetic
from avvp_jax.tasks.llp import task as llp_task
from avvp_jax.tasks.llp import uwav
from avvp_jax.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configs import han  # pylint: disable=g-import-not-at-top,wrong-import-position
from configs import leap  # pylint: disable=g-import-not-at-top,wrong-import-position
from configs import uwav as uwav_config  # pylint: disable=g-import-not-at-top,wrong-import-position

NUM_TRAIN, NUM_EVAL = 16, 8  # clips of the features folder per split
SPLITS = ("train", "val", "test")
THRESHOLD = {"audio": 0.45, "visual": 0.55}
NEAR = 1e-5  # probabilities this close to a threshold may flip with the batch's summation order


def _launch(*flags):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  launch_env.without_forced_devices(env)
  return subprocess.run(
      [sys.executable, os.path.join(ROOT, "launch", "make_pseudo_labels.py"), *flags],
      cwd=ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
  )


@functools.lru_cache(maxsize=1)
def _fixture():
  """A tiny HAN trained on the embedded data, a SYNTHETIC features folder, the teacher's probabilities on it,
  and its pseudo labels of that folder."""
  from avvp_jax import train  # pylint: disable=g-import-not-at-top

  root = tempfile.mkdtemp(prefix="avvp_make_pseudo_labels_")
  features = os.path.join(root, "features")
  labels_dir = os.path.join(features, "labels")
  data = synthetic.SyntheticLLP(num_train_clips=NUM_TRAIN)
  written = {}
  for split in SPLITS:
    count = NUM_TRAIN if split == "train" else NUM_EVAL
    synthetic.write_features(data, features, split, range(count))
    written[split] = data.split(split).filenames[:count]
  synthetic.write_labels(data, labels_dir, written)
  counts = {split: len(names) for split, names in written.items()}
  pathlib.Path(features, synthetic.MARKER_FILE).write_text(
      synthetic.marker_text(data, counts, "Synthetic features")
  )
  fixture = types.SimpleNamespace(
      root=root,
      features=features,
      labels=labels_dir,
      teacher=os.path.join(root, "han"),
      out=os.path.join(root, "pseudo"),
  )
  train.train_and_evaluate(han.get_config("tiny"), fixture.teacher)

  # The teacher's probabilities, computed here independently of the maker (clip by clip from the files).
  parser = avvp_jax.load_parser(fixture.teacher)
  fixture.splits = {s: annotations.load_split(s, labels_dir)[0] for s in SPLITS}
  fixture.probs = {}
  for split, data_split in fixture.splits.items():
    clips = [features_lib.load_clip(features, "official", "pooled", c) for c in data_split.clip_ids]
    pad = NUM_TRAIN - len(
        clips
    )  # every batch [16, ...], as the maker pads them: one compilation serves both
    inputs = {
        k: np.stack([clip[k] for clip in clips] + [np.zeros_like(clips[0][k])] * pad)
        for k in clips[0]
    }
    probs = parser.predict(inputs["audio"], inputs["frames"], inputs["motion"])
    fixture.probs[split] = {k: v[: len(clips)] for k, v in probs.items()}
  fixture.report = pseudo_label_maker.make_pseudo_labels(
      fixture.teacher,
      fixture.out,
      features_dir=features,
      labels_dir=labels_dir,
      threshold=THRESHOLD,
      progress=False,
  )
  return fixture


class RuleTest(absltest.TestCase):

  def test_apply_rule_keeps_weak_classes_above_threshold(self):
    prob = np.zeros((1, 3, 4), np.float32)
    prob[0, :, 0] = [0.2, 0.5, 0.9]  # class 0 in the weak label: seconds 1 and 2 pass 0.5
    prob[0, :, 1] = 0.99  # class 1 confident but not in the weak label: dropped
    prob[0, :, 2] = [0.3, 0.31, 0.1]  # class 2 weak, its own threshold 0.3: seconds 0 and 1
    weak = np.array([[1, 0, 1, 0]])
    got = pseudo_label_maker.apply_rule(prob, weak, np.array([0.5, 0.5, 0.3, 0.5]))
    expected = np.zeros((1, 3, 4), bool)
    expected[0, 1:, 0] = True
    expected[0, :2, 2] = True
    np.testing.assert_array_equal(got, expected)
    with self.assertRaisesRegex(InputError, "apply_rule"):
      pseudo_label_maker.apply_rule(prob, weak[:, :3], 0.5)

  def test_tune_thresholds_by_hand(self):
    # Class 0: true in seconds 0-1; probabilities 0.9, 0.7 (true), 0.6, 0.1 (false). Thresholds <= 0.6 keep the
    # false 0.6 (F1 2*2/(4+1) = 0.8), (0.6, 0.7] keep exactly the truth (F1 1), above 0.7 lose a true second.
    # Class 1: never true, probabilities <= 0.3: any threshold above 0.3 gives 0/0 = 1; the closest to the
    # default 0.5 is 0.5 itself. Class 2: no true second and outside the weak label: untunable, keeps 0.42.
    prob = np.zeros((1, 4, 3), np.float32)
    prob[0, :, 0] = [0.9, 0.7, 0.6, 0.1]
    prob[0, :, 1] = [0.3, 0.2, 0.1, 0.0]
    prob[0, :, 2] = 0.99
    true = np.zeros((1, 4, 3))
    true[0, :2, 0] = 1
    weak = np.array([[1, 1, 0]])
    got = pseudo_label_maker.tune_thresholds(prob, true, weak, default=[0.5, 0.5, 0.42])
    np.testing.assert_allclose(
        got, [0.65, 0.5, 0.42], atol=1e-6
    )  # 0.65 and 0.7 tie; 0.65 is closer to 0.5
    got = pseudo_label_maker.tune_thresholds(
        prob, true, weak, default=0.9, grid=(0.2, 0.4, 0.7, 0.8)
    )
    np.testing.assert_allclose(got, [0.7, 0.8, 0.9], atol=1e-6)

  def test_modality_thresholds(self):
    both = pseudo_label_maker.modality_thresholds(0.3)
    self.assertEqual(set(both), {"audio", "visual"})
    np.testing.assert_allclose(both["visual"], np.full(25, 0.3))
    split = pseudo_label_maker.modality_thresholds({"audio": {"Speech": 0.2}, "visual": 0.7})
    self.assertAlmostEqual(float(split["audio"][annotations.CLASS_INDEX["Speech"]]), 0.2)
    self.assertAlmostEqual(float(split["audio"][1]), 0.5)
    np.testing.assert_allclose(split["visual"], np.full(25, 0.7))
    with self.assertRaisesRegex(InputError, r"must lie in \[0, 1\]"):
      pseudo_label_maker.modality_thresholds({"visual": 1.5})


class MakePseudoLabelsTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.fixture = _fixture()

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.fixture.root, ignore_errors=True)
    _fixture.cache_clear()
    super().tearDownClass()

  def _expected(self, split):
    """The rule by hand on the teacher's probabilities; and where a cell is too close to its threshold to say."""
    data, probs = self.fixture.splits[split], self.fixture.probs[split]
    weak = data.weak_labels[:, None, :] > 0
    expected, near = {}, {}
    for m in ("audio", "visual"):
      prob = probs[f"segment_{m}_prob"]
      expected[m] = (prob >= THRESHOLD[m]) & weak
      near[m] = np.abs(prob - THRESHOLD[m]) < NEAR
    return expected, near

  def test_files_follow_the_rule_within_the_weak_labels(self):
    for split in SPLITS:
      data = self.fixture.splits[split]
      loaded = pseudo_labels.load_pseudo_labels(self.fixture.out, data.filenames, data.weak_labels)
      self.assertEqual(loaded.positives_outside_weak, 0)
      self.assertTrue(loaded.synthetic)
      expected, near = self._expected(split)
      for m in ("audio", "visual"):
        got = getattr(loaded, m) > 0
        np.testing.assert_array_equal(got[~near[m]], expected[m][~near[m]], err_msg=f"{split} {m}")
    train_prob = self.fixture.probs["train"]["segment_audio_prob"]
    outside = (train_prob >= THRESHOLD["audio"]) & (
        self.fixture.splits["train"].weak_labels[:, None, :] == 0
    )
    self.assertTrue(
        outside.any()
    )  # the weak-label filter removed something: the test is not vacuous
    self.assertTrue(expected["audio"].any())

  def test_quality_json_matches_the_files_against_the_dense_labels(self):
    with open(os.path.join(self.fixture.out, "quality.json")) as f:
      report = json.load(f)
    self.assertTrue(report["synthetic"])
    self.assertIn("SYNTHETIC", report["data"])
    self.assertIn("SYNTHETIC", pathlib.Path(self.fixture.out, "SYNTHETIC.txt").read_text())
    self.assertEqual(report["thresholds"]["audio"]["Speech"], 0.45)
    self.assertEqual(report["thresholds"]["visual"]["Dog"], 0.55)
    self.assertIsNone(report["thresholds_tuned_on"])
    self.assertEqual(report["teacher"]["model"], "han/mmil")
    self.assertNotIn("quality", report["splits"]["train"])  # no dense labels to score train against
    self.assertEqual(report["splits"]["train"]["num_clips"], NUM_TRAIN)
    for split in ("val", "test"):
      data = self.fixture.splits[split]
      loaded = pseudo_labels.load_pseudo_labels(self.fixture.out, data.filenames)
      expected = pseudo_labels.quality(
          loaded.audio, loaded.visual, data.audio_labels, data.visual_labels
      )
      for m in ("audio", "visual"):
        for key in ("precision", "recall", "f1", "segment_f1"):
          self.assertAlmostEqual(
              report["splits"][split]["quality"][m][key], expected[m][key], places=3
          )
        self.assertEqual(report["splits"][split]["positives"][m], int(getattr(loaded, m).sum()))
        self.assertBetween(report["splits"][split]["teacher_segment_f1"][m], 0.0, 100.0)

  def test_tune_on_val(self):
    out = os.path.join(self.fixture.root, "tuned")
    report = pseudo_label_maker.make_pseudo_labels(
        self.fixture.teacher,
        out,
        features_dir=self.fixture.features,
        labels_dir=self.fixture.labels,
        threshold=THRESHOLD,
        tune_on_val=True,
        splits=("train", "val"),
        progress=False,
    )
    val = self.fixture.splits["val"]
    self.assertEqual(report["thresholds_tuned_on"], "val")
    self.assertIn("optimistic", report["note"])
    self.assertEqual(set(report["splits"]), {"train", "val"})
    for m in ("audio", "visual"):
      expected = pseudo_label_maker.tune_thresholds(
          self.fixture.probs["val"][f"segment_{m}_prob"],
          getattr(val, f"{m}_labels"),
          val.weak_labels,
          THRESHOLD[m],
      )
      np.testing.assert_allclose(
          [report["thresholds"][m][c] for c in annotations.CLASSES], expected, atol=1e-4
      )
    self.assertLen(pseudo_labels.load_pseudo_labels(out, val.filenames), NUM_EVAL)

  def test_uwav_layout(self):
    """--uwav: the teacher's logits (of its probabilities), thresholds fitted on val by the official rule, the
    labels by UWAV's rule, all read back; a folder without them is one line for a UWAV student."""
    out = os.path.join(self.fixture.root, "uwav")
    report = pseudo_label_maker.make_pseudo_labels(
        self.fixture.teacher,
        out,
        features_dir=self.fixture.features,
        labels_dir=self.fixture.labels,
        splits=("train", "val"),
        progress=False,
        uwav_layout=True,
    )
    self.assertIn("UWAV", report["rule"])
    val = self.fixture.splits["val"]
    for m in ("audio", "visual"):
      logits = {
          split: np.stack(
              [
                  np.load(pathlib.Path(out, uwav.LOGIT_DIRS[m], f"{clip}.npy"))
                  for clip in self.fixture.splits[split].clip_ids
              ]
          )
          for split in ("train", "val")
      }
      for split in ("train", "val"):
        np.testing.assert_allclose(
            logits[split],
            uwav.logits_from_prob(self.fixture.probs[split][f"segment_{m}_prob"]),
            atol=1e-3,
        )
      thresholds = np.load(pathlib.Path(out, uwav.THRESHOLD_FILES[m]))
      np.testing.assert_array_equal(
          thresholds,
          uwav.fit_thresholds(logits["val"], getattr(val, f"{m}_labels"), val.weak_labels),
      )
      for split in ("train", "val"):
        loaded = pseudo_labels.load_pseudo_labels(out, self.fixture.splits[split].filenames)
        np.testing.assert_array_equal(
            getattr(loaded, m),
            uwav.hard_labels(logits[split], self.fixture.splits[split].weak_labels, thresholds),
        )
    config = uwav_config.get_config("tiny")
    config.data.pseudo_labels = self.fixture.out  # VALOR's layout only: no logits
    with self.assertRaisesRegex(InputError, r"UWAV/a_segmentwise_logits' is missing.*--uwav"):
      llp_task.TASK.check_config(config)
    config.data.pseudo_labels = out
    llp_task.TASK.check_config(config)
    with self.assertRaisesRegex(InputError, "drop tune_on_val"):
      pseudo_label_maker.make_pseudo_labels(
          self.fixture.teacher,
          os.path.join(self.fixture.root, "never_uwav"),
          tune_on_val=True,
          uwav_layout=True,
          progress=False,
      )

  def test_uwav_student_trains_on_our_teacher(self):
    """The UWAV recipe end to end on the embedded SYNTHETIC data: HAN teacher -> --uwav -> configs/uwav.py:tiny."""
    from avvp_jax import train  # pylint: disable=g-import-not-at-top

    out = os.path.join(self.fixture.root, "embedded_uwav")
    pseudo_label_maker.make_pseudo_labels(
        self.fixture.teacher, out, progress=False, uwav_layout=True
    )
    config = uwav_config.get_config("tiny")
    config.data.pseudo_labels = out
    scores = train.train_and_evaluate(config, os.path.join(self.fixture.root, "uwav_student"))
    self.assertBetween(scores["segment/type"], 0.0, 100.0)

  def test_embedded_synthetic_data_and_leap_trains_on_them(self):
    from avvp_jax import train  # pylint: disable=g-import-not-at-top

    out = os.path.join(self.fixture.root, "embedded")
    report = pseudo_label_maker.make_pseudo_labels(
        self.fixture.teacher, out, progress=False
    )  # no features_dir
    self.assertTrue(report["synthetic"])
    self.assertIn("SYNTHETIC", report["data"])
    self.assertTrue(pathlib.Path(out, "SYNTHETIC.txt").is_file())
    config = leap.get_config("tiny")
    config.data.pseudo_labels = out
    data = synthetic.SyntheticLLP(num_train_clips=config.data.synthetic_train_clips)
    for (
        split
    ) in SPLITS:  # the clips the teacher's config describes: those a tiny run trains and scores
      expected = (
          config.data.synthetic_train_clips
          if split == "train"
          else config.data.synthetic_eval_clips
      )
      self.assertEqual(report["splits"][split]["num_clips"], expected)
    loaded = pseudo_labels.load_for_split(out, data.split("train"))
    self.assertTrue(loaded.synthetic)
    self.assertEqual(loaded.positives_outside_weak, 0)
    scores = train.train_and_evaluate(config, os.path.join(self.fixture.root, "leap"))
    self.assertBetween(scores["segment/type"], 0.0, 100.0)

  def test_bad_input_is_one_line_and_writes_nothing(self):
    out = os.path.join(self.fixture.root, "never")
    common = dict(
        features_dir=self.fixture.features, labels_dir=self.fixture.labels, progress=False
    )
    clip_clap = os.path.join(self.fixture.root, "clip_clap")
    for sub, _ in features_lib.LAYOUTS["clip_clap"].values():
      os.makedirs(os.path.join(clip_clap, sub), exist_ok=True)
    extra_labels = os.path.join(self.fixture.root, "extra_labels")
    shutil.copytree(self.fixture.labels, extra_labels, dirs_exist_ok=True)
    with open(os.path.join(extra_labels, "AVVP_train.csv"), "a") as f:
      f.write("zzzzzzzzzzz_0_10\tSpeech\n")
    from avvp_jax import checkpoint  # pylint: disable=g-import-not-at-top

    config, params = checkpoint.restore_params(self.fixture.teacher)
    config.data.features_dir = self.fixture.features
    folder_teacher = checkpoint.save_params_checkpoint(
        os.path.join(self.fixture.root, "folder_teacher"), config, params
    )
    cases = [
        (("/nonexistent/han", out), common, "does not exist"),
        (
            (self.fixture.teacher, out),
            dict(common, features_dir=clip_clap),
            "holds 'clip_clap' features of widths",
        ),
        (
            (self.fixture.teacher, out),
            dict(common, labels_dir=extra_labels),
            "clip zzzzzzzzzzz .* has no features",
        ),
        ((folder_teacher, out), dict(common, features_dir=None), "was trained on the features in"),
        (
            (self.fixture.teacher, self.fixture.features),
            common,
            "already holds files this tool did not write",
        ),
        ((self.fixture.teacher, out), dict(common, splits=("val", "test")), "name train"),
        (
            (self.fixture.teacher, out),
            dict(common, splits=("train",), tune_on_val=True),
            "needs the val split",
        ),
        ((self.fixture.teacher, out), dict(common, threshold={"audio": 1.5}), "must lie in"),
    ]
    for args, kwargs, message in cases:
      with self.assertRaisesRegex(InputError, message):
        pseudo_label_maker.make_pseudo_labels(*args, **kwargs)
    self.assertFalse(os.path.exists(out))

  def test_launcher(self):
    out = os.path.join(self.fixture.root, "launched")
    result = _launch(
        f"--checkpoint={self.fixture.teacher}",
        f"--features={self.fixture.features}",
        f"--labels_dir={self.fixture.labels}",
        f"--out={out}",
        "--visual_threshold=0.7",
        "--class_thresholds=audio:Speech=0.3,Dog=0.6,visual:Car=0.2",
        "--splits=train,val",
    )
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertIn("SYNTHETIC pseudo labels of train 16, val 8 clips", result.stdout)
    self.assertRegex(result.stdout, r"val +audio +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+")
    self.assertIn(f"--config.data.pseudo_labels={out}", result.stdout)
    with open(os.path.join(out, "quality.json")) as f:
      thresholds = json.load(f)["thresholds"]
    self.assertEqual(
        (thresholds["audio"]["Speech"], thresholds["audio"]["Dog"], thresholds["audio"]["Car"]),
        (0.3, 0.6, 0.5),
    )
    self.assertEqual((thresholds["visual"]["Speech"], thresholds["visual"]["Car"]), (0.7, 0.2))

    bad = _launch(
        f"--checkpoint={self.fixture.teacher}",
        f"--features_dir={self.fixture.root}",  # the deprecated name of --features: it warns
        f"--out={out}2",
    )
    self.assertEqual(bad.returncode, 2)
    lines = bad.stderr.strip().splitlines()
    self.assertIn("warning: --features_dir is deprecated; use --features", lines)
    self.assertRegex(lines[-1], r"^error: --features .* holds neither layout")
    self.assertNotIn("Traceback", bad.stderr)
    missing = _launch(f"--checkpoint={self.fixture.teacher}")
    self.assertEqual(
        (missing.returncode, missing.stderr.strip()),
        (2, "error: --out is required (see python launch/make_pseudo_labels.py --help)."),
    )


if __name__ == "__main__":
  absltest.main()
