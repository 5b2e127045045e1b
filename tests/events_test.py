"""avvp_jax.tasks.llp.events: hand-worked event extraction, runs, thresholds and video labels, against loop oracles."""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from avvp_jax.tasks.llp import events as events_lib
from avvp_jax.tasks.llp import metrics
from avvp_jax.tasks.llp import annotations
from avvp_jax.errors import InputError

T, C = annotations.NUM_SECONDS, annotations.NUM_CLASSES
SPEECH, DOG, CAR = (annotations.CLASS_INDEX[n] for n in ("Speech", "Dog", "Car"))


def _probs(num_clips=1, seg_audio=None, seg_visual=None, gate=None):
  """Probabilities under the model's output names: everything 0.1 (negative), gates 0.9 (open), unless given."""
  out = {
      "segment_audio_prob": np.full((num_clips, T, C), 0.1, np.float32),
      "segment_visual_prob": np.full((num_clips, T, C), 0.1, np.float32),
      "audio_filter_prob": np.full((num_clips, C), 0.9, np.float32),
      "visual_filter_prob": np.full((num_clips, C), 0.9, np.float32),
  }
  for key, value in (("segment_audio_prob", seg_audio), ("segment_visual_prob", seg_visual)):
    for (clip, cls, seconds), prob in (value or {}).items():
      out[key][clip, list(seconds), cls] = prob
  for (clip, cls), prob in (gate or {}).items():
    out["audio_filter_prob"][clip, cls] = prob
    out["visual_filter_prob"][clip, cls] = prob
  return out


def _spans(events, modality=None):
  return [
      (e["modality"], e["label"], e["onset"], e["offset"])
      for e in events
      if modality is None or e["modality"] == modality
  ]


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
    events = events_lib.events_from_probabilities(
        _probs(seg_audio={(0, SPEECH, range(7, 10)): 0.8})
    )[0]
    self.assertEqual(_spans(events), [("audio", "Speech", 7.0, 10.0)])
    self.assertAlmostEqual(events[0]["score"], 0.8, places=6)

  def test_whole_clip_event(self):
    events = events_lib.events_from_probabilities(_probs(seg_visual={(0, DOG, range(10)): 0.6}))[0]
    self.assertEqual(_spans(events), [("visual", "Dog", 0.0, 10.0)])

  def test_audio_only_and_visual_only_give_no_audio_visual_event(self):
    probs = _probs(
        num_clips=2,
        seg_audio={(0, SPEECH, range(0, 4)): 0.9},
        seg_visual={(1, CAR, range(5, 8)): 0.7},
    )
    audio_clip, visual_clip = events_lib.events_from_probabilities(probs)
    self.assertEqual(_spans(audio_clip), [("audio", "Speech", 0.0, 4.0)])
    self.assertEqual(_spans(visual_clip), [("visual", "Car", 5.0, 8.0)])

  def test_audio_visual_is_the_overlap_with_min_score(self):
    probs = _probs(seg_audio={(0, DOG, range(0, 5)): 0.9}, seg_visual={(0, DOG, range(3, 8)): 0.6})
    probs["segment_visual_prob"][
        0, 4, DOG
    ] = 0.7  # the visual probability is the smaller one at seconds 3, 4
    events = events_lib.events_from_probabilities(probs)[0]
    # Ordered by onset, then modality (audio, visual, audio_visual).
    self.assertEqual(
        _spans(events),
        [
            ("audio", "Dog", 0.0, 5.0),
            ("visual", "Dog", 3.0, 8.0),
            ("audio_visual", "Dog", 3.0, 5.0),
        ],
    )
    by_modality = {e["modality"]: e["score"] for e in events}
    self.assertAlmostEqual(
        by_modality["audio_visual"], (0.6 + 0.7) / 2, places=6
    )  # mean of min(a, v)
    self.assertAlmostEqual(by_modality["visual"], (0.6 + 0.7 + 0.6 * 3) / 5, places=6)
    self.assertAlmostEqual(by_modality["audio"], 0.9, places=6)

  def test_overlapping_classes_and_split_runs(self):
    probs = _probs(seg_audio={(0, SPEECH, (0, 1, 4, 9)): 0.95, (0, CAR, range(1, 6)): 0.55})
    events = events_lib.events_from_probabilities(probs)[0]
    self.assertEqual(
        _spans(events),
        [
            ("audio", "Speech", 0.0, 2.0),
            ("audio", "Car", 1.0, 6.0),
            ("audio", "Speech", 4.0, 5.0),
            ("audio", "Speech", 9.0, 10.0),
        ],
    )

  def test_threshold_is_inclusive(self):
    events = events_lib.events_from_probabilities(_probs(seg_audio={(0, SPEECH, (2,)): 0.5}))[0]
    self.assertEqual(_spans(events), [("audio", "Speech", 2.0, 3.0)])

  @parameterized.parameters((0.49, False), (0.4999, False), (0.5, True), (0.51, True))
  def test_video_level_gate(self, gate, kept):
    probs = _probs(
        seg_audio={(0, SPEECH, range(10)): 0.99},
        seg_visual={(0, SPEECH, range(10)): 0.99},
        gate={(0, SPEECH): gate},
    )
    events = events_lib.events_from_probabilities(probs)[0]
    self.assertLen(events, 3 if kept else 0)

  def test_gate_uses_each_modalitys_filter(self):
    probs = _probs(seg_audio={(0, DOG, range(3)): 0.9}, seg_visual={(0, DOG, range(3)): 0.9})
    probs["visual_filter_prob"][
        0, DOG
    ] = 0.3  # e.g. a LEAP "modality" filter closing the visual gate
    self.assertEqual(
        _spans(events_lib.events_from_probabilities(probs)[0]), [("audio", "Dog", 0.0, 3.0)]
    )

  def test_per_class_thresholds(self):
    probs = _probs(seg_audio={(0, SPEECH, range(0, 3)): 0.4, (0, DOG, range(0, 3)): 0.4})
    self.assertEqual(events_lib.events_from_probabilities(probs)[0], [])
    events = events_lib.events_from_probabilities(probs, threshold={"Speech": 0.35})[0]
    self.assertEqual(_spans(events), [("audio", "Speech", 0.0, 3.0)])
    per_class = np.full(C, 0.5)
    per_class[DOG] = 0.4
    self.assertEqual(
        _spans(events_lib.events_from_probabilities(probs, threshold=per_class)[0]),
        [("audio", "Dog", 0.0, 3.0)],
    )
    self.assertLen(
        events_lib.events_from_probabilities(probs, threshold=0.3)[0], 2
    )  # global override

  def test_per_class_gate_threshold(self):
    probs = _probs(
        seg_audio={(0, SPEECH, range(2)): 0.9, (0, DOG, range(2)): 0.9},
        gate={(0, SPEECH): 0.45, (0, DOG): 0.45},
    )
    self.assertEqual(events_lib.events_from_probabilities(probs)[0], [])
    events = events_lib.events_from_probabilities(probs, gate_threshold={"Dog": 0.4})[0]
    self.assertEqual(_spans(events), [("audio", "Dog", 0.0, 2.0)])

  def test_default_predictions_equal_the_metrics_module(self):
    rng = np.random.default_rng(0)
    probs = {
        "segment_audio_prob": rng.random((6, T, C), np.float32),
        "segment_visual_prob": rng.random((6, T, C), np.float32),
        "audio_filter_prob": rng.random((6, C), np.float32),
        "visual_filter_prob": rng.random((6, C), np.float32),
    }
    probs["audio_filter_prob"][0, :5] = 0.5  # exactly at the threshold
    expected = metrics.segment_predictions(
        probs["segment_audio_prob"],
        probs["segment_visual_prob"],
        probs["audio_filter_prob"],
        probs["visual_filter_prob"],
    )
    got = events_lib.segment_predictions(probs)
    for e, g in zip(expected, got):
      np.testing.assert_array_equal(np.asarray(e) > 0, g)
    # The per-class path with every class at 0.5 agrees too.
    got = events_lib.segment_predictions(
        probs, threshold=np.full(C, 0.5), gate_threshold={"Speech": 0.5}
    )
    for e, g in zip(expected, got):
      np.testing.assert_array_equal(np.asarray(e) > 0, g)

  def test_random_predictions_against_a_loop_oracle(self):
    rng = np.random.default_rng(1)
    pred_audio = rng.random((5, T, C)) < 0.4
    pred_visual = rng.random((5, T, C)) < 0.4
    prob_audio = rng.random((5, T, C))
    prob_visual = rng.random((5, T, C))
    events = events_lib.extract_events(pred_audio, pred_visual, prob_audio, prob_visual)
    for n in range(5):
      expected = []
      for m, (pred, prob) in enumerate(
          (
              (pred_audio, prob_audio),
              (pred_visual, prob_visual),
              (pred_audio & pred_visual, np.minimum(prob_audio, prob_visual)),
          )
      ):
        for c in range(C):
          for start, end in _oracle_runs(pred[n, :, c]):
            expected.append((start, m, c, end, float(np.mean(prob[n, start:end, c]))))
      expected.sort()
      got = [
          (
              int(e["onset"]),
              metrics.MODALITIES.index(e["modality"]),
              annotations.CLASS_INDEX[e["label"]],
              int(e["offset"]),
              e["score"],
          )
          for e in events[n]
      ]
      self.assertEqual([g[:4] for g in got], [e[:4] for e in expected])
      np.testing.assert_allclose([g[4] for g in got], [e[4] for e in expected], rtol=1e-12)

  def test_no_events(self):
    self.assertEqual(events_lib.events_from_probabilities(_probs(num_clips=3)), [[], [], []])

  @parameterized.parameters(
      ({"Not_a_class": 0.3},), (1.5,), (-0.1,), (float("nan"),), ([0.5, 0.5],)
  )
  def test_bad_thresholds(self, threshold):
    with self.assertRaises(InputError):
      events_lib.events_from_probabilities(_probs(), threshold=threshold)

  def test_video_labels(self):
    probs = _probs()
    probs.update(
        video_prob=np.full((1, C), 0.2, np.float32),
        audio_prob=np.zeros((1, C), np.float32),
        visual_prob=np.zeros((1, C), np.float32),
    )
    probs["video_prob"][0, DOG], probs["video_prob"][0, SPEECH] = 0.7, 0.9
    labels = events_lib.video_labels(probs)[0]
    self.assertEqual(
        [(x["label"], x["score"]) for x in labels],
        [("Speech", np.float32(0.9)), ("Dog", np.float32(0.7))],
    )


class RunsTest(absltest.TestCase):
  """`events_lib.runs` against a plain loop over every clip and class."""

  def test_hand_worked_runs(self):
    positive = np.zeros((2, T, 3), bool)
    positive[0, 0, 1] = positive[0, 2:5, 1] = True  # two runs of class 1, the first at second 0
    positive[1, 8:, 0] = True  # a run reaching the clip's end: end T (exclusive)
    clip, cls, start, end = events_lib.runs(positive)
    self.assertEqual(list(zip(clip, cls, start, end)), [(0, 1, 0, 1), (0, 1, 2, 5), (1, 0, 8, T)])

  def test_random_runs_against_a_loop_oracle(self):
    positive = np.random.default_rng(2).random((4, T, C)) < 0.5
    expected = [
        (n, c, start, end)
        for n in range(4)
        for c in range(C)
        for start, end in _oracle_runs(positive[n, :, c])
    ]
    self.assertEqual([tuple(map(int, r)) for r in zip(*events_lib.runs(positive))], expected)
    self.assertEqual(
        [len(x) for x in events_lib.runs(np.zeros((2, T, C), np.float32))], [0, 0, 0, 0]
    )


if __name__ == "__main__":
  absltest.main()
