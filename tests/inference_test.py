"""avvp_jax.inference: input checks, jit/vmap, one compilation, the ensemble mean, and a trained round trip.

The round trip trains the `configs/han.py:tiny` preset on the embedded synthetic data into a real workdir,
loads it with `avvp_jax.load_parser` and parses synthetic validation clips.
"""

import os
import sys
import threading

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

import avvp_jax
from avvp_jax import inference
from avvp_jax.tasks.llp import metrics
from avvp_jax.tasks.llp import annotations
from avvp_jax.errors import InputError
from avvp_jax.tasks.llp import task as llp_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configs import han  # pylint: disable=g-import-not-at-top,wrong-import-position
from configs import leap  # pylint: disable=g-import-not-at-top,wrong-import-position

T, C = annotations.NUM_SECONDS, annotations.NUM_CLASSES


def _spans(events):
  return [(e["modality"], e["label"], e["onset"], e["offset"]) for e in events]


def _init_params(config):
  from avvp_jax import models  # pylint: disable=g-import-not-at-top

  model = models.build_model(config.model, llp_task.META)
  dummy = _clip_inputs(config, 1)
  return jax.jit(lambda key: model.init(key, *dummy, train=False)["params"])(jax.random.key(0))


def _clip_inputs(config, num_clips=None, seed=0):
  rng = np.random.default_rng(seed)
  lead = () if num_clips is None else (num_clips,)
  dims = config.model.input_dims
  audio = rng.standard_normal((*lead, T, dims.audio)).astype(np.float32)
  frames = np.abs(rng.standard_normal((*lead, T, dims.frames))).astype(np.float32)
  motion = (
      np.abs(rng.standard_normal((*lead, T, dims.motion))).astype(np.float32)
      if dims.motion
      else None
  )
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
    self.assertEqual(set(probs), set(inference.OUTPUT_KEYS))
    for key in (
        "video_prob",
        "audio_prob",
        "visual_prob",
        "audio_filter_prob",
        "visual_filter_prob",
    ):
      self.assertEqual(probs[key].shape, (2, C))
    for key in ("segment_audio_prob", "segment_visual_prob"):
      self.assertEqual(probs[key].shape, (2, T, C))
      self.assertTrue(np.all((probs[key] >= 0) & (probs[key] <= 1)))

  def test_matches_the_model_and_single_clip_without_batch_axis(self):
    from avvp_jax import models  # pylint: disable=g-import-not-at-top

    inputs = _clip_inputs(self.config, 2)
    outputs = models.build_model(self.config.model, llp_task.META).apply(
        {"params": self.params}, *inputs, train=False
    )
    probs = self.parser.predict(*inputs)
    np.testing.assert_allclose(
        probs["segment_audio_prob"], outputs["segment_audio_prob"], rtol=1e-6, atol=1e-7
    )
    np.testing.assert_allclose(probs["video_prob"], outputs["video_prob"], rtol=1e-6, atol=1e-7)
    single = self.parser.predict(*(x[1] for x in inputs))
    self.assertEqual(single["segment_visual_prob"].shape, (T, C))
    np.testing.assert_allclose(
        single["segment_visual_prob"], probs["segment_visual_prob"][1], rtol=1e-5, atol=1e-6
    )
    events = self.parser.parse(*(x[1] for x in inputs), threshold=0.0)  # everything positive
    self.assertEqual(len(events), 3 * C)  # one whole-clip event per class and modality
    self.assertTrue(all(e["onset"] == 0.0 and e["offset"] == 10.0 for e in events))

  def test_raw_frames_equal_pooled_frames(self):
    audio, frames, motion = _clip_inputs(self.config, 2)
    raw = (
        np.repeat(frames, 8, axis=1)
        + np.tile(np.linspace(-1, 1, 8, dtype=np.float32), 10)[None, :, None]
    )
    pooled = raw.reshape(2, T, 8, -1).mean(axis=2)
    a = self.parser.predict(audio, raw, motion)["segment_visual_prob"]
    b = self.parser.predict(audio, pooled, motion)["segment_visual_prob"]
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)

  def test_under_jit_and_vmap(self):
    inputs = _clip_inputs(self.config, 2)
    eager = avvp_jax.predict(self.config, self.params, *inputs)
    config = self.config

    @jax.jit
    def caller(params, audio, frames, motion):
      out = avvp_jax.predict(config, params, audio, frames, motion)
      return out["segment_audio_prob"].sum(axis=-1)  # used inside other jitted code

    np.testing.assert_allclose(
        caller(self.params, *inputs), eager["segment_audio_prob"].sum(axis=-1), rtol=1e-5
    )
    mapped = jax.vmap(lambda a, f, m: avvp_jax.predict(config, self.params, a, f, m))(*inputs)
    for key in inference.OUTPUT_KEYS:
      np.testing.assert_allclose(mapped[key], eager[key], rtol=1e-5, atol=1e-6, err_msg=key)
    jitted_vmap = jax.jit(jax.vmap(lambda a, f, m: avvp_jax.predict(config, self.params, a, f, m)))(
        *inputs
    )
    np.testing.assert_allclose(jitted_vmap["video_prob"], eager["video_prob"], rtol=1e-5, atol=1e-6)

  def test_model_built_once_and_no_retrace(self):
    inputs = _clip_inputs(self.config, 2)
    avvp_jax.predict(self.config, self.params, *inputs)
    size = inference._apply._cache_size()  # pylint: disable=protected-access
    copy = han.get_config("tiny")  # an equal config object: the same cached model and compilation
    for _ in range(3):
      avvp_jax.predict(copy, self.params, *_clip_inputs(self.config, 2, seed=1))
    self.assertEqual(inference._apply._cache_size(), size)  # pylint: disable=protected-access

  def test_one_replica_ensemble_equals_the_model(self):
    inputs = _clip_inputs(self.config, 2)
    stacked = jax.tree.map(lambda x: x[None], self.params)  # `[1, ...]`: map_seeds' one-seed form
    one = avvp_jax.predict(self.config, self.params, *inputs)
    ensemble = avvp_jax.predict_ensemble(self.config, stacked, *inputs)
    jitted = jax.jit(lambda p, a, f, m: avvp_jax.predict_ensemble(self.config, p, a, f, m))(
        stacked, *inputs
    )
    for key in inference.OUTPUT_KEYS:
      np.testing.assert_allclose(ensemble[key], one[key], rtol=1e-6, atol=1e-7, err_msg=key)
      np.testing.assert_allclose(jitted[key], one[key], rtol=1e-6, atol=1e-7, err_msg=key)

  def test_no_motion_model_takes_motion_none(self):
    config = leap.get_config("tiny")
    config.unlock()
    config.model.input_dims.update(
        audio=768, frames=768, motion=0
    )  # CLIP/CLAP widths, no motion stream
    params = _init_params(config)
    audio, frames, _ = _clip_inputs(config, 2)
    probs = avvp_jax.predict(config, params, audio, frames, None)
    self.assertEqual(probs["segment_audio_prob"].shape, (2, T, C))
    with self.assertRaisesRegex(InputError, "no motion stream"):
      avvp_jax.predict(config, params, audio, frames, np.zeros((2, T, 512), np.float32))

  def _bad(self, audio=None, frames=None, motion="default", regex=""):
    good = _clip_inputs(self.config, 2)
    audio = good[0] if audio is None else audio
    frames = good[1] if frames is None else frames
    motion = good[2] if isinstance(motion, str) else motion
    size = inference._apply._cache_size()  # pylint: disable=protected-access
    with self.assertRaisesRegex(InputError, regex) as raised:
      self.parser.parse(audio, frames, motion)
    self.assertNotIn("\n", str(raised.exception))
    # Nothing was compiled or run.
    self.assertEqual(inference._apply._cache_size(), size)  # pylint: disable=protected-access

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
    from avvp_jax.tasks.llp import synthetic  # pylint: disable=g-import-not-at-top

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
    pred_audio, pred_visual = (
        np.asarray(x)
        for x in metrics.segment_predictions(
            probs["segment_audio_prob"],
            probs["segment_visual_prob"],
            probs["audio_filter_prob"],
            probs["visual_filter_prob"],
        )
    )
    rebuilt = {m: np.zeros((6, T, C)) for m in metrics.MODALITIES}
    for n, clip_events in enumerate(events):
      for e in clip_events:
        rebuilt[e["modality"]][
            n, int(e["onset"]) : int(e["offset"]), annotations.CLASS_INDEX[e["label"]]
        ] += 1
    np.testing.assert_array_equal(rebuilt["audio"], pred_audio)
    np.testing.assert_array_equal(rebuilt["visual"], pred_visual)
    np.testing.assert_array_equal(rebuilt["audio_visual"], pred_audio * pred_visual)
    single = parser.parse(
        self.inputs["audio"][2], self.inputs["frames"][2], self.inputs["motion"][2]
    )
    self.assertEqual(_spans(single), _spans(events[2]))

  def test_step_folder_and_params_checkpoint_give_the_same_predictions(self):
    from avvp_jax import checkpoint  # pylint: disable=g-import-not-at-top

    parser = avvp_jax.load_parser(self.workdir)
    step_dir = checkpoint.find_state_checkpoint(self.workdir, which="best")
    exported = checkpoint.save_params_checkpoint(
        os.path.join(self.root, "exported"), parser.config, parser.params
    )  # the ensemble's seed-stacked params
    expected = parser.predict(self.inputs["audio"], self.inputs["frames"], self.inputs["motion"])
    for path in (step_dir, exported):
      got = avvp_jax.load_parser(path).predict(
          self.inputs["audio"], self.inputs["frames"], self.inputs["motion"]
      )
      for key in inference.OUTPUT_KEYS:
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
      for leaf, whole in zip(
          jax.tree.leaves(parser.params), stacked
      ):  # replica `seed` of the stacked params
        np.testing.assert_array_equal(np.asarray(leaf), np.asarray(whole)[seed - 3])
    probs = {seed: parser.predict(*inputs) for seed, parser in singles.items()}
    self.assertFalse(
        np.allclose(probs[3]["segment_audio_prob"], probs[4]["segment_audio_prob"])
    )  # two models
    got = ensemble.predict(*inputs)
    functional = avvp_jax.predict_ensemble(ensemble.config, ensemble.params, *inputs)
    for (
        key
    ) in inference.OUTPUT_KEYS:  # every probability, gates included, is the mean over the replicas
      np.testing.assert_allclose(
          got[key], (probs[3][key] + probs[4][key]) / 2, rtol=1e-6, atol=1e-7, err_msg=key
      )
      np.testing.assert_array_equal(np.asarray(functional[key]), got[key])
    one = avvp_jax.predict(
        ensemble.config, checkpoint.select_seed(ensemble.config, ensemble.params, 4), *inputs
    )
    np.testing.assert_array_equal(np.asarray(one["video_prob"]), probs[4]["video_prob"])
    with self.assertRaisesRegex(
        InputError, r"seed=7 is not a replica of this run, which trained seeds 3\.\.4"
    ):
      avvp_jax.load_parser(self.workdir, seed=7)

  def test_unknown_checkpoint_path(self):
    with self.assertRaisesRegex(InputError, "does not exist"):
      avvp_jax.load_parser(os.path.join(self.root, "no_such_dir"))
    empty = os.path.join(self.root, "empty_dir")
    os.makedirs(empty, exist_ok=True)
    with self.assertRaisesRegex(InputError, "No checkpoint"):
      avvp_jax.load_parser(empty)


class PredictBatchesTest(absltest.TestCase):
  """`inference.predict_batches` with a stand-in model: padding, order, the cut, read-ahead."""

  def test_pads_to_one_size_cuts_the_padding_and_keeps_order(self):
    clips = np.arange(7 * 2 * 3, dtype=np.float32).reshape(7, 2, 3) + 1.0  # 7 clips, no zero clip
    jobs = [[0, 1, 2], [3, 4, 5], [6]]
    calls = []

    def predict_fn(audio, frames, motion):
      calls.append((audio.shape, frames.shape, motion.shape))
      return {"total": (audio + frames + motion).sum(axis=(1, 2)), "nonzero": audio[:, 0, 0] != 0}

    read = lambda rows: {"audio": clips[rows], "frames": 2 * clips[rows], "motion": 3 * clips[rows]}
    got = list(inference.predict_batches(predict_fn, read, jobs, 3))
    self.assertEqual([job for job, _ in got], jobs)
    self.assertEqual(calls, [((3, 2, 3),) * 3] * 3)  # the last batch padded to 3 clips too
    total = np.concatenate([probs["total"] for _, probs in got])
    np.testing.assert_array_equal(
        total, 6 * clips.sum(axis=(1, 2))
    )  # the padding's outputs are gone
    self.assertTrue(all(probs["nonzero"].all() for _, probs in got))
    self.assertEqual(list(inference.predict_batches(predict_fn, read, [], 3)), [])

  def test_the_next_job_is_read_while_one_is_consumed(self):
    started = [threading.Event() for _ in range(3)]

    def read(job):
      started[job].set()
      return {"audio": np.ones((1, T, 1), np.float32), "frames": np.ones((1, T, 1), np.float32)}

    def predict_fn(audio, frames, motion):
      self.assertIsNone(motion)
      return {"x": audio[:, 0, 0]}

    for job, _ in inference.predict_batches(predict_fn, read, [0, 1, 2], 1):
      if job + 1 < 3:  # job + 1 is asked for only after this one: it must already be under way
        self.assertTrue(started[job + 1].wait(timeout=30), job)


class PackageImportTest(absltest.TestCase):

  def test_import_is_light(self):
    import subprocess  # pylint: disable=g-import-not-at-top

    code = (
        "import sys, avvp_jax; heavy = [m for m in ('jax', 'flax', 'tensorflow', 'matplotlib', 'orbax') "
        "if m in sys.modules]; assert not heavy, heavy; assert callable(avvp_jax.load_parser); "
        "assert 'tensorflow' not in sys.modules and 'flax' not in sys.modules"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}
    )

  def test_inference_imports_neither_tensorflow_nor_orbax(self):
    import subprocess  # pylint: disable=g-import-not-at-top

    code = (
        "import sys, avvp_jax.inference, avvp_jax.tasks.llp.events, avvp_jax.tasks.llp.timelines; heavy = [m for m in "
        "('tensorflow', 'orbax', 'matplotlib') if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}
    )


if __name__ == "__main__":
  absltest.main()
