"""avvp_jax.parse: hand-worked event extraction, thresholds, input checks, jit/vmap, and a trained round trip.

The round trip trains the `configs/han.py:tiny` preset on the embedded synthetic data into a real workdir,
loads it with `avvp_jax.load_parser` and parses synthetic validation clips.
"""

import os
import sys

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

import avvp_jax
from avvp_jax import metrics
from avvp_jax import parse
from avvp_jax.data import annotations
from avvp_jax.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configs import han  # pylint: disable=g-import-not-at-top,wrong-import-position
from configs import leap  # pylint: disable=g-import-not-at-top,wrong-import-position

T, C = annotations.NUM_SECONDS, annotations.NUM_CLASSES
SPEECH, DOG, CAR = (annotations.CLASS_INDEX[n] for n in ("Speech", "Dog", "Car"))


def _probs(num_clips=1, seg_audio=None, seg_visual=None, gate=None):
  """`predict`-style probabilities: everything 0.1 (negative) unless given; gates 0.9 (open) unless given."""
  out = {
      "segment_audio": np.full((num_clips, T, C), 0.1, np.float32),
      "segment_visual": np.full((num_clips, T, C), 0.1, np.float32),
      "audio_filter": np.full((num_clips, C), 0.9, np.float32),
      "visual_filter": np.full((num_clips, C), 0.9, np.float32),
  }
  for key, value in (("segment_audio", seg_audio), ("segment_visual", seg_visual)):
    for (clip, cls, seconds), prob in (value or {}).items():
      out[key][clip, list(seconds), cls] = prob
  for (clip, cls), prob in (gate or {}).items():
    out["audio_filter"][clip, cls] = prob
    out["visual_filter"][clip, cls] = prob
  return out


def _spans(events, modality=None):
  return [(e["modality"], e["label"], e["onset"], e["offset"]) for e in events
          if modality is None or e["modality"] == modality]


def _oracle_runs(row):
  """Maximal runs of ones in a 1-D 0/1 row, by a plain loop: [(start, end exclusive)]."""
  runs, start = [], None
  for t, value in enumerate(list(row) + [0]):
    if value and start is None:
      start = t
    elif not value and start is not None:
      runs.append((start, t))
      start = None
  return runs


class EventExtractionTest(parameterized.TestCase):
  """Hand-worked clips through `events_from_probabilities` (the official gate and run rule)."""

  def test_event_touching_second_ten_has_offset_ten(self):
    events = parse.events_from_probabilities(_probs(seg_audio={(0, SPEECH, range(7, 10)): 0.8}))[0]
    self.assertEqual(_spans(events), [("audio", "Speech", 7.0, 10.0)])
    self.assertAlmostEqual(events[0]["score"], 0.8, places=6)

  def test_whole_clip_event(self):
    events = parse.events_from_probabilities(_probs(seg_visual={(0, DOG, range(10)): 0.6}))[0]
    self.assertEqual(_spans(events), [("visual", "Dog", 0.0, 10.0)])

  def test_audio_only_and_visual_only_give_no_audio_visual_event(self):
    probs = _probs(num_clips=2, seg_audio={(0, SPEECH, range(0, 4)): 0.9},
                   seg_visual={(1, CAR, range(5, 8)): 0.7})
    audio_clip, visual_clip = parse.events_from_probabilities(probs)
    self.assertEqual(_spans(audio_clip), [("audio", "Speech", 0.0, 4.0)])
    self.assertEqual(_spans(visual_clip), [("visual", "Car", 5.0, 8.0)])

  def test_audio_visual_is_the_overlap_with_min_score(self):
    probs = _probs(seg_audio={(0, DOG, range(0, 5)): 0.9}, seg_visual={(0, DOG, range(3, 8)): 0.6})
    probs["segment_visual"][0, 4, DOG] = 0.7  # the visual probability is the smaller one at seconds 3, 4
    events = parse.events_from_probabilities(probs)[0]
    # Ordered by onset, then modality (audio, visual, audio_visual).
    self.assertEqual(_spans(events), [("audio", "Dog", 0.0, 5.0), ("visual", "Dog", 3.0, 8.0),
                                      ("audio_visual", "Dog", 3.0, 5.0)])
    by_modality = {e["modality"]: e["score"] for e in events}
    self.assertAlmostEqual(by_modality["audio_visual"], (0.6 + 0.7) / 2, places=6)  # mean of min(a, v)
    self.assertAlmostEqual(by_modality["visual"], (0.6 + 0.7 + 0.6 * 3) / 5, places=6)
    self.assertAlmostEqual(by_modality["audio"], 0.9, places=6)

  def test_overlapping_classes_and_split_runs(self):
    probs = _probs(seg_audio={(0, SPEECH, (0, 1, 4, 9)): 0.95, (0, CAR, range(1, 6)): 0.55})
    events = parse.events_from_probabilities(probs)[0]
    self.assertEqual(_spans(events), [("audio", "Speech", 0.0, 2.0), ("audio", "Car", 1.0, 6.0),
                                      ("audio", "Speech", 4.0, 5.0), ("audio", "Speech", 9.0, 10.0)])

  def test_threshold_is_inclusive(self):
    events = parse.events_from_probabilities(_probs(seg_audio={(0, SPEECH, (2,)): 0.5}))[0]
    self.assertEqual(_spans(events), [("audio", "Speech", 2.0, 3.0)])

  @parameterized.parameters((0.49, False), (0.4999, False), (0.5, True), (0.51, True))
  def test_video_level_gate(self, gate, kept):
    probs = _probs(seg_audio={(0, SPEECH, range(10)): 0.99}, seg_visual={(0, SPEECH, range(10)): 0.99},
                   gate={(0, SPEECH): gate})
    events = parse.events_from_probabilities(probs)[0]
    self.assertLen(events, 3 if kept else 0)

  def test_gate_uses_each_modalitys_filter(self):
    probs = _probs(seg_audio={(0, DOG, range(3)): 0.9}, seg_visual={(0, DOG, range(3)): 0.9})
    probs["visual_filter"][0, DOG] = 0.3  # e.g. a LEAP "modality" filter closing the visual gate
    self.assertEqual(_spans(parse.events_from_probabilities(probs)[0]), [("audio", "Dog", 0.0, 3.0)])

  def test_per_class_thresholds(self):
    probs = _probs(seg_audio={(0, SPEECH, range(0, 3)): 0.4, (0, DOG, range(0, 3)): 0.4})
    self.assertEqual(parse.events_from_probabilities(probs)[0], [])
    events = parse.events_from_probabilities(probs, threshold={"Speech": 0.35})[0]
    self.assertEqual(_spans(events), [("audio", "Speech", 0.0, 3.0)])
    per_class = np.full(C, 0.5)
    per_class[DOG] = 0.4
    self.assertEqual(_spans(parse.events_from_probabilities(probs, threshold=per_class)[0]),
                     [("audio", "Dog", 0.0, 3.0)])
    self.assertLen(parse.events_from_probabilities(probs, threshold=0.3)[0], 2)  # global override

  def test_per_class_gate_threshold(self):
    probs = _probs(seg_audio={(0, SPEECH, range(2)): 0.9, (0, DOG, range(2)): 0.9},
                   gate={(0, SPEECH): 0.45, (0, DOG): 0.45})
    self.assertEqual(parse.events_from_probabilities(probs)[0], [])
    events = parse.events_from_probabilities(probs, gate_threshold={"Dog": 0.4})[0]
    self.assertEqual(_spans(events), [("audio", "Dog", 0.0, 2.0)])

  def test_default_predictions_equal_the_metrics_module(self):
    rng = np.random.default_rng(0)
    probs = {"segment_audio": rng.random((6, T, C), np.float32), "segment_visual": rng.random((6, T, C), np.float32),
             "audio_filter": rng.random((6, C), np.float32), "visual_filter": rng.random((6, C), np.float32)}
    probs["audio_filter"][0, :5] = 0.5  # exactly at the threshold
    expected = metrics.segment_predictions(probs["segment_audio"], probs["segment_visual"],
                                           probs["audio_filter"], probs["visual_filter"])
    got = parse.segment_predictions(probs)
    for e, g in zip(expected, got):
      np.testing.assert_array_equal(np.asarray(e) > 0, g)
    # The per-class path with every class at 0.5 agrees too.
    got = parse.segment_predictions(probs, threshold=np.full(C, 0.5), gate_threshold={"Speech": 0.5})
    for e, g in zip(expected, got):
      np.testing.assert_array_equal(np.asarray(e) > 0, g)

  def test_random_predictions_against_a_loop_oracle(self):
    rng = np.random.default_rng(1)
    pred_audio = rng.random((5, T, C)) < 0.4
    pred_visual = rng.random((5, T, C)) < 0.4
    prob_audio = rng.random((5, T, C))
    prob_visual = rng.random((5, T, C))
    events = parse.extract_events(pred_audio, pred_visual, prob_audio, prob_visual)
    for n in range(5):
      expected = []
      for m, (pred, prob) in enumerate(((pred_audio, prob_audio), (pred_visual, prob_visual),
                                        (pred_audio & pred_visual, np.minimum(prob_audio, prob_visual)))):
        for c in range(C):
          for start, end in _oracle_runs(pred[n, :, c]):
            expected.append((start, m, c, end, float(np.mean(prob[n, start:end, c]))))
      expected.sort()
      got = [(int(e["onset"]), parse.MODALITIES.index(e["modality"]), annotations.CLASS_INDEX[e["label"]],
              int(e["offset"]), e["score"]) for e in events[n]]
      self.assertEqual([g[:4] for g in got], [e[:4] for e in expected])
      np.testing.assert_allclose([g[4] for g in got], [e[4] for e in expected], rtol=1e-12)

  def test_no_events(self):
    self.assertEqual(parse.events_from_probabilities(_probs(num_clips=3)), [[], [], []])

  @parameterized.parameters(({"Not_a_class": 0.3},), (1.5,), (-0.1,), (float("nan"),), ([0.5, 0.5],))
  def test_bad_thresholds(self, threshold):
    with self.assertRaises(InputError):
      parse.events_from_probabilities(_probs(), threshold=threshold)

  def test_video_labels(self):
    probs = _probs()
    probs.update(video=np.full((1, C), 0.2, np.float32), audio=np.zeros((1, C), np.float32),
                 visual=np.zeros((1, C), np.float32))
    probs["video"][0, DOG], probs["video"][0, SPEECH] = 0.7, 0.9
    labels = parse.video_labels(probs)[0]
    self.assertEqual([(x["label"], x["score"]) for x in labels],
                     [("Speech", np.float32(0.9)), ("Dog", np.float32(0.7))])


def _init_params(config):
  from avvp_jax import models  # pylint: disable=g-import-not-at-top
  model = models.build_model(config.model)
  dummy = _clip_inputs(config, 1)
  return jax.jit(lambda key: model.init(key, *dummy, train=False)["params"])(jax.random.key(0))


def _clip_inputs(config, num_clips=None, seed=0):
  rng = np.random.default_rng(seed)
  lead = () if num_clips is None else (num_clips,)
  dims = config.model.input_dims
  audio = rng.standard_normal((*lead, T, dims.audio)).astype(np.float32)
  frames = np.abs(rng.standard_normal((*lead, T, dims.frames))).astype(np.float32)
  motion = np.abs(rng.standard_normal((*lead, T, dims.motion))).astype(np.float32) if dims.motion else None
  return audio, frames, motion


class PredictTest(parameterized.TestCase):
  """The functional and object forms on untrained micro models: shapes, jit, vmap, input checks."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.config = han.get_config("tiny")
    cls.params = _init_params(cls.config)
    cls.parser = avvp_jax.Parser(cls.config, cls.params)

  def test_batched_shapes_and_keys(self):
    probs = self.parser.predict(*_clip_inputs(self.config, 2))
    self.assertEqual(set(probs), set(parse.OUTPUT_KEYS))
    for key in ("video", "audio", "visual", "audio_filter", "visual_filter"):
      self.assertEqual(probs[key].shape, (2, C))
    for key in ("segment_audio", "segment_visual"):
      self.assertEqual(probs[key].shape, (2, T, C))
      self.assertTrue(np.all((probs[key] >= 0) & (probs[key] <= 1)))

  def test_matches_the_model_and_single_clip_without_batch_axis(self):
    from avvp_jax import models  # pylint: disable=g-import-not-at-top
    inputs = _clip_inputs(self.config, 2)
    outputs = models.build_model(self.config.model).apply({"params": self.params}, *inputs, train=False)
    probs = self.parser.predict(*inputs)
    np.testing.assert_allclose(probs["segment_audio"], outputs["segment_audio_prob"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(probs["video"], outputs["video_prob"], rtol=1e-6, atol=1e-7)
    single = self.parser.predict(*(x[1] for x in inputs))
    self.assertEqual(single["segment_visual"].shape, (T, C))
    np.testing.assert_allclose(single["segment_visual"], probs["segment_visual"][1], rtol=1e-5, atol=1e-6)
    events = self.parser.parse(*(x[1] for x in inputs), threshold=0.0)  # everything positive
    self.assertEqual(len(events), 3 * C)  # one whole-clip event per class and modality
    self.assertTrue(all(e["onset"] == 0.0 and e["offset"] == 10.0 for e in events))

  def test_raw_frames_equal_pooled_frames(self):
    audio, frames, motion = _clip_inputs(self.config, 2)
    raw = np.repeat(frames, 8, axis=1) + np.tile(np.linspace(-1, 1, 8, dtype=np.float32), 10)[None, :, None]
    pooled = raw.reshape(2, T, 8, -1).mean(axis=2)
    a = self.parser.predict(audio, raw, motion)["segment_visual"]
    b = self.parser.predict(audio, pooled, motion)["segment_visual"]
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)

  def test_under_jit_and_vmap(self):
    inputs = _clip_inputs(self.config, 2)
    eager = avvp_jax.predict(self.config, self.params, *inputs)
    config = self.config

    @jax.jit
    def caller(params, audio, frames, motion):
      out = avvp_jax.predict(config, params, audio, frames, motion)
      return out["segment_audio"].sum(axis=-1)  # used inside other jitted code

    np.testing.assert_allclose(caller(self.params, *inputs), eager["segment_audio"].sum(axis=-1), rtol=1e-5)
    mapped = jax.vmap(lambda a, f, m: avvp_jax.predict(config, self.params, a, f, m))(*inputs)
    for key in parse.OUTPUT_KEYS:
      np.testing.assert_allclose(mapped[key], eager[key], rtol=1e-5, atol=1e-6, err_msg=key)
    jitted_vmap = jax.jit(jax.vmap(lambda a, f, m: avvp_jax.predict(config, self.params, a, f, m)))(*inputs)
    np.testing.assert_allclose(jitted_vmap["video"], eager["video"], rtol=1e-5, atol=1e-6)

  def test_model_built_once_and_no_retrace(self):
    inputs = _clip_inputs(self.config, 2)
    avvp_jax.predict(self.config, self.params, *inputs)
    size = parse._apply._cache_size()  # pylint: disable=protected-access
    copy = han.get_config("tiny")  # an equal config object: the same cached model and compilation
    for _ in range(3):
      avvp_jax.predict(copy, self.params, *_clip_inputs(self.config, 2, seed=1))
    self.assertEqual(parse._apply._cache_size(), size)  # pylint: disable=protected-access

  def test_no_motion_model_takes_motion_none(self):
    config = leap.get_config("tiny")
    config.unlock()
    config.model.input_dims.update(audio=768, frames=768, motion=0)  # CLIP/CLAP widths, no motion stream
    params = _init_params(config)
    audio, frames, _ = _clip_inputs(config, 2)
    probs = avvp_jax.predict(config, params, audio, frames, None)
    self.assertEqual(probs["segment_audio"].shape, (2, T, C))
    with self.assertRaisesRegex(InputError, "no motion stream"):
      avvp_jax.predict(config, params, audio, frames, np.zeros((2, T, 512), np.float32))

  def _bad(self, audio=None, frames=None, motion="default", regex=""):
    good = _clip_inputs(self.config, 2)
    audio = good[0] if audio is None else audio
    frames = good[1] if frames is None else frames
    motion = good[2] if isinstance(motion, str) else motion
    size = parse._apply._cache_size()  # pylint: disable=protected-access
    with self.assertRaisesRegex(InputError, regex) as raised:
      self.parser.parse(audio, frames, motion)
    self.assertNotIn("\n", str(raised.exception))
    # Nothing was compiled or run.
    self.assertEqual(parse._apply._cache_size(), size)  # pylint: disable=protected-access

  def test_wrong_feature_width(self):
    self._bad(audio=np.zeros((2, T, 64), np.float32), regex="audio has feature width 64")

  def test_wrong_rank(self):
    self._bad(audio=np.zeros((2, 1, T, 128), np.float32), regex="shapes")

  def test_mixed_ranks(self):
    self._bad(audio=np.zeros((T, 128), np.float32), regex="same rank")

  def test_seconds_mismatch(self):
    self._bad(frames=np.zeros((2, 9, 2048), np.float32), regex="frames have 9 steps")
    self._bad(motion=np.zeros((2, 8, 512), np.float32), regex="motion has 8 seconds")

  def test_batch_mismatch(self):
    self._bad(frames=np.zeros((3, T, 2048), np.float32), regex="different numbers of clips")

  def test_integer_dtype(self):
    self._bad(audio=np.zeros((2, T, 128), np.int32), regex="dtype int32")

  @parameterized.parameters(np.nan, np.inf)
  def test_non_finite(self, value):
    audio = _clip_inputs(self.config, 2)[0]
    audio[1, 3, 7] = value
    self._bad(audio=audio, regex="audio holds NaN or infinite")
    self._bad(audio=jnp.asarray(audio), regex="audio holds NaN or infinite")

  def test_missing_motion(self):
    self._bad(motion=None, regex="motion is None")


class TrainedRoundTripTest(absltest.TestCase):
  """A real tiny 2-seed training workdir -> load_parser (ensemble or one seed) -> parse on synthetic clips."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    from avvp_jax import train  # pylint: disable=g-import-not-at-top
    cls.root = absltest.get_default_test_tmpdir()
    cls.workdir = os.path.join(cls.root, "parse_workdir")
    config = han.get_config("tiny")
    config.unlock()
    config.synthetic_num_epochs = 1
    config.seed, config.num_seeds = 3, 2  # replicas with seeds 3 and 4
    train.train_and_evaluate(config, cls.workdir)
    from avvp_jax.data import synthetic  # pylint: disable=g-import-not-at-top
    data = synthetic.SyntheticLLP(num_train_clips=8, layout="official", frames="pooled")
    cls.val = data.split("val")
    cls.inputs = data.features_batch("val", range(6))

  def test_load_parser_and_parse(self):
    parser = avvp_jax.load_parser(self.workdir)
    self.assertEqual(parser.config.model.hidden_dim, 16)
    probs = parser.predict(self.inputs["audio"], self.inputs["frames"], self.inputs["motion"])
    events = parser.parse(self.inputs["audio"], self.inputs["frames"], self.inputs["motion"])
    self.assertLen(events, 6)
    # The events are exactly the runs of what evaluation scores (metrics.segment_predictions).
    pred_audio, pred_visual = (np.asarray(x) for x in metrics.segment_predictions(
        probs["segment_audio"], probs["segment_visual"], probs["audio_filter"], probs["visual_filter"]))
    rebuilt = {m: np.zeros((6, T, C)) for m in parse.MODALITIES}
    for n, clip_events in enumerate(events):
      for e in clip_events:
        rebuilt[e["modality"]][n, int(e["onset"]):int(e["offset"]), annotations.CLASS_INDEX[e["label"]]] += 1
    np.testing.assert_array_equal(rebuilt["audio"], pred_audio)
    np.testing.assert_array_equal(rebuilt["visual"], pred_visual)
    np.testing.assert_array_equal(rebuilt["audio_visual"], pred_audio * pred_visual)
    single = parser.parse(self.inputs["audio"][2], self.inputs["frames"][2], self.inputs["motion"][2])
    self.assertEqual(_spans(single), _spans(events[2]))

  def test_step_folder_and_params_checkpoint_give_the_same_predictions(self):
    from avvp_jax import checkpoint  # pylint: disable=g-import-not-at-top
    parser = avvp_jax.load_parser(self.workdir)
    step_dir = checkpoint.find_state_checkpoint(self.workdir, which="best")
    exported = checkpoint.save_params_checkpoint(os.path.join(self.root, "exported"), parser.config,
                                                 parser.params)  # the ensemble's seed-stacked params
    expected = parser.predict(self.inputs["audio"], self.inputs["frames"], self.inputs["motion"])
    for path in (step_dir, exported):
      got = avvp_jax.load_parser(path).predict(self.inputs["audio"], self.inputs["frames"], self.inputs["motion"])
      for key in parse.OUTPUT_KEYS:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=f"{path}: {key}")

  def test_default_is_the_seed_ensemble_and_seed_picks_one_replica(self):
    from avvp_jax import checkpoint  # pylint: disable=g-import-not-at-top
    inputs = (self.inputs["audio"], self.inputs["frames"], self.inputs["motion"])
    ensemble = avvp_jax.load_parser(self.workdir)
    self.assertEqual(ensemble.seeds, [3, 4])
    singles = {seed: avvp_jax.load_parser(self.workdir, seed=seed) for seed in (3, 4)}
    stacked = jax.tree.leaves(ensemble.params)
    for seed, parser in singles.items():
      self.assertIsNone(parser.seeds)
      for leaf, whole in zip(jax.tree.leaves(parser.params), stacked):  # replica `seed` of the stacked params
        np.testing.assert_array_equal(np.asarray(leaf), np.asarray(whole)[seed - 3])
    probs = {seed: parser.predict(*inputs) for seed, parser in singles.items()}
    self.assertFalse(np.allclose(probs[3]["segment_audio"], probs[4]["segment_audio"]))  # two models
    got = ensemble.predict(*inputs)
    functional = avvp_jax.predict_ensemble(ensemble.config, ensemble.params, *inputs)
    for key in parse.OUTPUT_KEYS:  # every probability, gates included, is the mean over the replicas
      np.testing.assert_allclose(got[key], (probs[3][key] + probs[4][key]) / 2, rtol=1e-6, atol=1e-7, err_msg=key)
      np.testing.assert_array_equal(np.asarray(functional[key]), got[key])
    one = avvp_jax.predict(ensemble.config, checkpoint.select_seed(ensemble.config, ensemble.params, 4), *inputs)
    np.testing.assert_array_equal(np.asarray(one["video"]), probs[4]["video"])
    with self.assertRaisesRegex(InputError, r"seed=7 is not a replica of this run, which trained seeds 3\.\.4"):
      avvp_jax.load_parser(self.workdir, seed=7)

  def test_unknown_checkpoint_path(self):
    with self.assertRaisesRegex(InputError, "does not exist"):
      avvp_jax.load_parser(os.path.join(self.root, "no_such_dir"))
    empty = os.path.join(self.root, "empty_dir")
    os.makedirs(empty, exist_ok=True)
    with self.assertRaisesRegex(InputError, "No checkpoint"):
      avvp_jax.load_parser(empty)


class PackageImportTest(absltest.TestCase):

  def test_import_is_light(self):
    import subprocess  # pylint: disable=g-import-not-at-top
    code = ("import sys, avvp_jax; heavy = [m for m in ('jax', 'flax', 'tensorflow', 'matplotlib', 'orbax') "
            "if m in sys.modules]; assert not heavy, heavy; assert callable(avvp_jax.load_parser); "
            "assert 'tensorflow' not in sys.modules and 'flax' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})


if __name__ == "__main__":
  absltest.main()
