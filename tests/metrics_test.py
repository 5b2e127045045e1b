"""Tests of avvp_jax.tasks.llp.metrics against a plain-Python transcription of the official rules and hand-worked clips.

The oracle below is written from the rules of the official LLP evaluation (YapengTian/AVVP-ECCV20,
`utils/eval_metrics.py` and `main_avvp.py:eval`), one clip, one class, one event at a time, in float64.
`official_loop_scores` is a second, independent oracle: the official numpy code itself, transcribed, run
clip by clip as its evaluation loop does (bench/bench_metrics.py times it against ours).
"""

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from avvp_jax.tasks.llp import metrics
from avvp_jax.tasks.llp import annotations
from avvp_jax.errors import InputError

T = 10
C = 25
TOLERANCE_PP = 1e-4  # the spec: within 1e-4 of a percentage point of the official numbers


# ----------------------------------------------------------------------------------------------------
# The oracle: plain Python, float64, loops everywhere.


def _runs(seq):
  """Maximal runs of 1s in a list of 0/1 as (start, end) with end exclusive."""
  runs = []
  start = None
  for t, value in enumerate(seq):
    if value and start is None:
      start = t
    elif not value and start is not None:
      runs.append((start, t))
      start = None
  if start is not None:
    runs.append((start, len(seq)))
  return runs


def _iou_at_least_half(a, b):
  inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
  union = (a[1] - a[0]) + (b[1] - b[0]) - inter
  return inter / union >= 0.5


def _event_counts(pred_seq, true_seq):
  pred_events, true_events = _runs(pred_seq), _runs(true_seq)
  tp = sum(1 for p in pred_events if any(_iou_at_least_half(p, g) for g in true_events))
  fp = len(pred_events) - tp
  fn = sum(1 for g in true_events if not any(_iou_at_least_half(p, g) for p in pred_events))
  return tp, fp, fn


def _segment_counts(pred_seq, true_seq):
  tp = sum(1 for p, g in zip(pred_seq, true_seq) if p and g)
  fp = sum(1 for p, g in zip(pred_seq, true_seq) if p and not g)
  fn = sum(1 for p, g in zip(pred_seq, true_seq) if g and not p)
  return tp, fp, fn


def _mean_f1(counts_per_class):
  """Mean F1 over classes predicted or true; 1.0 when there is none."""
  f1s = [
      2 * tp / (2 * tp + fp + fn) for tp, fp, fn in counts_per_class if tp + fp > 0 or tp + fn > 0
  ]
  return sum(f1s) / len(f1s) if f1s else 1.0


def _oracle_clip(pa, pv, ta, tv):
  """One clip's official values; arguments are [C][T] nested lists of 0/1."""
  pav = [[a * v for a, v in zip(ra, rv)] for ra, rv in zip(pa, pv)]
  tav = [[a * v for a, v in zip(ra, rv)] for ra, rv in zip(ta, tv)]
  out = {}
  for level, count in (("segment", _segment_counts), ("event", _event_counts)):
    per_modality = {
        "audio": [count(pa[c], ta[c]) for c in range(len(pa))],
        "visual": [count(pv[c], tv[c]) for c in range(len(pa))],
        "audio_visual": [count(pav[c], tav[c]) for c in range(len(pa))],
    }
    for modality, counts in per_modality.items():
      out[f"{level}/{modality}"] = _mean_f1(counts)
    pooled = [
        tuple(x + y for x, y in zip(a, v))
        for a, v in zip(per_modality["audio"], per_modality["visual"])
    ]
    out[f"{level}/event"] = _mean_f1(pooled)
  return out


def oracle_clip_values(pred_audio, pred_visual, true_audio, true_visual):
  """Per-clip official values: dict key -> float64 [N] (no type keys)."""
  as_lists = [
      np.asarray(x).astype(int).transpose(0, 2, 1).tolist()
      for x in (pred_audio, pred_visual, true_audio, true_visual)
  ]
  per_clip = [_oracle_clip(*clip) for clip in zip(*as_lists)]
  return {key: np.array([clip[key] for clip in per_clip], np.float64) for key in per_clip[0]}


def oracle_scores(pred_audio, pred_visual, true_audio, true_visual):
  """The ten official numbers in percent, as the official eval prints them (before rounding)."""
  values = oracle_clip_values(pred_audio, pred_visual, true_audio, true_visual)
  scores = {key: 100 * float(np.mean(v)) for key, v in values.items()}
  for level in ("segment", "event"):
    scores[f"{level}/type"] = (
        scores[f"{level}/audio_visual"] + scores[f"{level}/audio"] + scores[f"{level}/visual"]
    ) / 3.0
  return scores


# ----------------------------------------------------------------------------------------------------
# The official code, transcribed: YapengTian/AVVP-ECCV20 `utils/eval_metrics.py` (`to_vec`, `extract_event`,
# `event_wise_metric`, `segment_level`, `event_level`) and the per-video loop of `main_avvp.py:eval`, numpy
# call for numpy call. Changes: the hard-coded 10 seconds and 25 classes are the arrays' T and C; the
# blocks the official code repeats per modality (and per F list) are loops over the modalities; the model
# forward and the per-video pandas look-ups that build the dense ground truth are left out (the dense
# labels are given). Predictions are int and ground truth float64, as there.


def _official_to_vec(start, end, num_seconds):
  x = np.zeros(num_seconds)
  for i in range(start, end):
    x[i] = 1
  return x


def _official_extract_event(seq, num_seconds):
  x = []
  i = 0
  while i < num_seconds:
    if seq[i] == 1:
      start = i
      if i + 1 == num_seconds:
        i = i + 1
        end = i
        x.append(_official_to_vec(start, end, num_seconds))
        break
      for j in range(i + 1, num_seconds):
        if seq[j] != 1:
          i = j + 1
          end = j
          x.append(_official_to_vec(start, end, num_seconds))
          break
        else:
          i = j + 1
          if i == num_seconds:
            end = i
            x.append(_official_to_vec(start, end, num_seconds))
            break
    else:
      i += 1
  return x


def _official_event_wise_metric(event_p, event_gt):
  tp = fp = fn = 0
  if event_p is not None:
    for x1 in event_p:
      if event_gt is not None:
        flag = True
        for x2 in event_gt:
          if np.sum(x1 * x2) >= 0.5 * np.sum(x1 + x2 - x1 * x2):
            tp += 1
            flag = False
            break
        if flag:
          fp += 1
      else:
        fp += 1
  if event_gt is not None:
    for x1 in event_gt:
      if event_p is not None:
        flag = True
        for x2 in event_p:
          if np.sum(x1 * x2) >= 0.5 * np.sum(x1 + x2 - x1 * x2):
            flag = False
            break
        if flag:
          fn += 1
      else:
        fn += 1
  return tp, fp, fn


def _official_mean_f1(tp, fp, fn):
  f = []
  for ii in range(len(fp)):
    if (tp + fp)[ii] != 0 or (tp + fn)[ii] != 0:
      f.append(2 * tp[ii] / (2 * tp[ii] + (fn + fp)[ii]))
  return 1.0 if len(f) == 0 else sum(f) / len(f)


def _official_levels(counts):
  """(f_a, f_v, f, f_av) from per-modality (TP, FP, FN) [C] arrays; f pools audio and visual."""
  (tp_a, fp_a, fn_a), (tp_v, fp_v, fn_v), (tp_av, fp_av, fn_av) = counts
  return (
      _official_mean_f1(tp_a, fp_a, fn_a),
      _official_mean_f1(tp_v, fp_v, fn_v),
      _official_mean_f1(tp_a + tp_v, fp_a + fp_v, fn_a + fn_v),
      _official_mean_f1(tp_av, fp_av, fn_av),
  )


def _official_segment_level(so_a, so_v, so_av, gt_a, gt_v, gt_av):
  counts = [
      (np.sum(so * gt, axis=1), np.sum(so * (1 - gt), axis=1), np.sum((1 - so) * gt, axis=1))
      for so, gt in ((so_a, gt_a), (so_v, gt_v), (so_av, gt_av))
  ]
  return _official_levels(counts)


def _official_event_level(so_a, so_v, so_av, gt_a, gt_v, gt_av):
  num_classes, num_seconds = so_a.shape
  pairs = ((so_a, gt_a), (so_v, gt_v), (so_av, gt_av))
  counts = [tuple(np.zeros(num_classes) for _ in range(3)) for _ in pairs]
  for n in range(num_classes):
    for (so, gt), (tp_m, fp_m, fn_m) in zip(pairs, counts):
      event_p = _official_extract_event(so[n, :], num_seconds) if np.sum(so[n, :]) != 0 else None
      event_gt = _official_extract_event(gt[n, :], num_seconds) if np.sum(gt[n, :]) != 0 else None
      tp, fp, fn = _official_event_wise_metric(event_p, event_gt)
      tp_m[n] += tp
      fp_m[n] += fp
      fn_m[n] += fn
  return _official_levels(counts)


def official_loop_scores(pred_audio, pred_visual, true_audio, true_visual):
  """The ten numbers as the official `eval` loop computes them, one video at a time (inputs [N, T, C] 0/1)."""
  f_seg = {m: [] for m in ("a", "v", "", "av")}
  f_event = {m: [] for m in ("a", "v", "", "av")}
  for i in range(np.shape(pred_audio)[0]):
    so_a = np.transpose(np.asarray(pred_audio[i]).astype(np.int_))
    so_v = np.transpose(np.asarray(pred_visual[i]).astype(np.int_))
    so_av = so_a * so_v
    gt_a = np.transpose(np.asarray(true_audio[i], np.float64))
    gt_v = np.transpose(np.asarray(true_visual[i], np.float64))
    gt_av = gt_a * gt_v
    for lists, level in ((f_seg, _official_segment_level), (f_event, _official_event_level)):
      for key, value in zip(lists, level(so_a, so_v, so_av, gt_a, gt_v, gt_av)):
        lists[key].append(value)
  scores = {}
  for name, lists in (("segment", f_seg), ("event", f_event)):
    scores[f"{name}/audio"] = 100 * np.mean(np.array(lists["a"]))
    scores[f"{name}/visual"] = 100 * np.mean(np.array(lists["v"]))
    scores[f"{name}/audio_visual"] = 100 * np.mean(np.array(lists["av"]))
    scores[f"{name}/type"] = (
        scores[f"{name}/audio_visual"] + scores[f"{name}/audio"] + scores[f"{name}/visual"]
    ) / 3.0
    scores[f"{name}/event"] = 100 * np.mean(np.array(lists[""]))
  return {key: float(value) for key, value in scores.items()}


# ----------------------------------------------------------------------------------------------------
# Random clips.


def _random_runs(rng, n, num_seconds, num_classes):
  """A few classes per clip, each with one to three random runs (touching 0 and T often)."""
  labels = np.zeros((n, num_seconds, num_classes), np.float32)
  for i in range(n):
    for c in rng.choice(num_classes, size=rng.integers(1, min(4, num_classes + 1)), replace=False):
      for _ in range(rng.integers(1, 4)):
        start = rng.integers(0, num_seconds)
        end = rng.integers(start + 1, num_seconds + 1) if rng.random() < 0.7 else num_seconds
        labels[i, start:end, c] = 1
  return labels


def _random_labels(rng, n, num_seconds=T, num_classes=C):
  """Clips of varied kinds: empty, full, iid at a random density, sparse runs."""
  kind = rng.integers(0, 4, size=n)
  density = rng.choice([0.02, 0.1, 0.3, 0.6, 0.9], size=(n, 1, 1))
  iid = (rng.random((n, num_seconds, num_classes)) < density).astype(np.float32)
  runs = _random_runs(rng, n, num_seconds, num_classes)
  labels = np.where((kind == 2)[:, None, None], iid, runs)
  labels[kind == 0] = 0
  labels[kind == 1] = 1
  return labels


def _perturb(rng, labels):
  """Predictions near the truth: flip seconds, shift by one second, drop or add a class."""
  n = labels.shape[0]
  flip_rate = rng.choice([0.0, 0.05, 0.2], size=(n, 1, 1))
  flips = rng.random(labels.shape) < flip_rate
  out = np.where(flips, 1 - labels, labels)
  shift = rng.integers(-1, 2, size=n)
  shifted = out.copy()
  shifted[shift == 1, 1:] = out[shift == 1, :-1]
  shifted[shift == -1, :-1] = out[shift == -1, 1:]
  return shifted.astype(np.float32)


def _random_set(seed, n, num_seconds=T, num_classes=C):
  rng = np.random.default_rng(seed)
  true_audio = _random_labels(rng, n, num_seconds, num_classes)
  true_visual = np.where(
      rng.random((n, 1, 1)) < 0.5, true_audio, _random_labels(rng, n, num_seconds, num_classes)
  )
  pred_audio = np.where(
      rng.random((n, 1, 1)) < 0.7,
      _perturb(rng, true_audio),
      _random_labels(rng, n, num_seconds, num_classes),
  )
  pred_visual = np.where(
      rng.random((n, 1, 1)) < 0.7,
      _perturb(rng, true_visual),
      _random_labels(rng, n, num_seconds, num_classes),
  )
  return pred_audio, pred_visual, true_audio, true_visual


def _empty(n=1):
  """Four zero label arrays [n, T, C]: pred_audio, pred_visual, true_audio, true_visual."""
  return [np.zeros((n, T, C), np.float32) for _ in range(4)]


class _MetricsTestCase(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.enter_context(jax.numpy_rank_promotion("raise"))

  def assertScores(self, actual, expected):
    self.assertEqual(set(actual), set(metrics.KEYS))
    for key in metrics.KEYS:
      self.assertAlmostEqual(actual[key], expected[key], delta=TOLERANCE_PP, msg=key)


class OracleAgreementTest(_MetricsTestCase):

  def test_random_clips_match_the_oracle(self):
    labels = _random_set(seed=0, n=2000)
    self.assertScores(metrics.parsing_scores(*labels), oracle_scores(*labels))

  def test_random_clip_values_match_the_oracle(self):
    labels = _random_set(seed=1, n=1500)
    actual = jax.device_get(metrics.clip_scores(*labels))
    expected = oracle_clip_values(*labels)
    for key, values in expected.items():
      np.testing.assert_allclose(actual[key], values, rtol=0, atol=1e-6, err_msg=key)
    for level in ("segment", "event"):
      type_values = (
          expected[f"{level}/audio"]
          + expected[f"{level}/visual"]
          + expected[f"{level}/audio_visual"]
      ) / 3
      np.testing.assert_allclose(actual[f"{level}/type"], type_values, rtol=0, atol=1e-6)

  def test_the_random_sets_cover_every_case(self):
    pred_audio, pred_visual, true_audio, true_visual = _random_set(seed=0, n=2000)
    clips_without_anything = np.all(
        (pred_audio + pred_visual + true_audio + true_visual) == 0, axis=(1, 2)
    )
    self.assertGreater(clips_without_anything.sum(), 10)
    self.assertGreater(np.all(true_audio == 1, axis=(1, 2)).sum(), 10)
    self.assertGreater(true_audio[:, 0].sum(), 100)
    self.assertGreater(true_audio[:, -1].sum(), 100)
    self.assertGreater(pred_visual[:, -1].sum(), 100)
    values = oracle_clip_values(pred_audio, pred_visual, true_audio, true_visual)
    # Neither trivial nor degenerate: perfect, zero and intermediate clips are all there.
    for key in ("event/audio", "event/event", "segment/audio_visual"):
      self.assertGreater(np.sum(values[key] == 1.0), 50, key)
      self.assertGreater(np.sum(values[key] == 0.0), 50, key)
      self.assertGreater(np.sum((values[key] > 0) & (values[key] < 1)), 50, key)

  @parameterized.parameters((4, 3), (1, 2), (10, 1), (31, 2), (32, 3))
  def test_other_shapes_match_the_oracle(self, num_seconds, num_classes):
    n = (
        300 if num_seconds <= 10 else 80
    )  # the float64 oracle is slow on long clips; 80 still cover every case
    labels = _random_set(seed=num_seconds, n=n, num_seconds=num_seconds, num_classes=num_classes)
    self.assertScores(metrics.parsing_scores(*labels), oracle_scores(*labels))

  def test_the_official_code_transcription_agrees(self):
    labels = _random_set(seed=4, n=400)
    official = official_loop_scores(*labels)
    self.assertScores(official, oracle_scores(*labels))
    self.assertScores(metrics.parsing_scores(*labels), official)

  def test_real_test_set_against_itself_is_perfect(self):
    split, _ = annotations.load_split("test")
    scores = metrics.parsing_scores(
        split.audio_labels, split.visual_labels, split.audio_labels, split.visual_labels
    )
    self.assertScores(scores, {key: 100.0 for key in metrics.KEYS})

  def test_real_test_set_perturbed_matches_the_oracle(self):
    split, _ = annotations.load_split("test")
    rng = np.random.default_rng(7)
    pred_audio = _perturb(rng, split.audio_labels)
    pred_visual = _perturb(rng, split.visual_labels)
    labels = (pred_audio, pred_visual, split.audio_labels, split.visual_labels)
    scores = metrics.parsing_scores(*labels)
    self.assertScores(scores, oracle_scores(*labels))
    self.assertLess(scores["event/audio"], 99.0)  # the perturbation did something


class HandWorkedClipsTest(_MetricsTestCase):
  """One clip at a time, with the expected numbers worked out by hand (percent)."""

  def test_no_event_at_all_scores_100(self):
    self.assertScores(metrics.parsing_scores(*_empty()), {key: 100.0 for key in metrics.KEYS})

  def test_only_false_positives(self):
    pa, pv, ta, tv = _empty()
    pa[0, 0:3, 4] = 1  # audio predicted, nothing true
    expected = {
        "segment/audio": 0.0,
        "segment/visual": 100.0,
        "segment/audio_visual": 100.0,
        "segment/type": 200 / 3,
        "segment/event": 0.0,
    }
    expected.update({key.replace("segment", "event"): value for key, value in expected.items()})
    self.assertScores(metrics.parsing_scores(pa, pv, ta, tv), expected)

  def test_only_false_negatives(self):
    pa, pv, ta, tv = _empty()
    tv[0, 7:10, 2] = 1  # visual true, nothing predicted
    expected = {
        "segment/audio": 100.0,
        "segment/visual": 0.0,
        "segment/audio_visual": 100.0,
        "segment/type": 200 / 3,
        "segment/event": 0.0,
    }
    expected.update({key.replace("segment", "event"): value for key, value in expected.items()})
    self.assertScores(metrics.parsing_scores(pa, pv, ta, tv), expected)

  def test_classes_are_averaged_then_clips(self):
    pa, pv, ta, tv = _empty(n=2)
    pa[0, 0:10, 0] = ta[0, 0:10, 0] = 1  # class 0 perfect
    ta[0, 0:5, 1] = 1  # class 1 missed
    # clip 1 is empty: it counts 1.0.
    scores = metrics.parsing_scores(pa, pv, ta, tv)
    self.assertAlmostEqual(scores["segment/audio"], 100 * (0.5 + 1.0) / 2, delta=TOLERANCE_PP)
    self.assertAlmostEqual(scores["event/audio"], 100 * (0.5 + 1.0) / 2, delta=TOLERANCE_PP)
    self.assertAlmostEqual(scores["segment/visual"], 100.0, delta=TOLERANCE_PP)

  @parameterized.named_parameters(
      # (predicted run, true run, expected event F1, expected segment F1)
      ("iou_exactly_half_inside", (2, 4), (2, 6), 100.0, 100 * 4 / 6),
      ("iou_exactly_half_shifted", (1, 5), (2, 7), 100.0, 100 * 6 / 9),
      ("iou_below_half", (2, 4), (2, 7), 0.0, 100 * 4 / 7),
      ("touching_the_end", (7, 10), (5, 10), 100.0, 100 * 6 / 8),
      ("touching_the_start", (0, 1), (0, 2), 100.0, 100 * 2 / 3),
      ("one_second_events_one_apart", (0, 1), (1, 2), 0.0, 0.0),
  )
  def test_iou_rule(self, pred_run, true_run, event_f1, segment_f1):
    pa, pv, ta, tv = _empty()
    pa[0, pred_run[0] : pred_run[1], 9] = 1
    ta[0, true_run[0] : true_run[1], 9] = 1
    scores = metrics.parsing_scores(pa, pv, ta, tv)
    self.assertAlmostEqual(scores["event/audio"], event_f1, delta=TOLERANCE_PP)
    self.assertAlmostEqual(scores["segment/audio"], segment_f1, delta=TOLERANCE_PP)
    self.assertScores(scores, oracle_scores(pa, pv, ta, tv))

  def test_a_predicted_event_overlapping_two_true_events(self):
    pa, pv, ta, tv = _empty()
    pa[0, 0:10, 3] = 1
    ta[0, 0:4, 3] = ta[0, 5:10, 3] = 1
    # The prediction reaches IoU 5/10 with the second true event: one TP. The first true event
    # (IoU 4/10) is missed: one FN. F1 = 2 / (2 + 1).
    scores = metrics.parsing_scores(pa, pv, ta, tv)
    self.assertAlmostEqual(scores["event/audio"], 100 * 2 / 3, delta=TOLERANCE_PP)
    self.assertAlmostEqual(scores["segment/audio"], 100 * 18 / 19, delta=TOLERANCE_PP)

  def test_tp_counts_predictions_and_fn_counts_truths(self):
    pa, pv, ta, tv = _empty()
    ta[0, 0:4, 5] = 1
    pa[0, 0:2, 5] = pa[0, 3:4, 5] = 1
    # First prediction: IoU 2/4 -> TP; second: IoU 1/4 -> FP. The true event was found -> no FN.
    # F1 = 2 * 1 / (2 * 1 + 1 + 0).
    scores = metrics.parsing_scores(pa, pv, ta, tv)
    self.assertAlmostEqual(scores["event/audio"], 100 * 2 / 3, delta=TOLERANCE_PP)
    # Two true events, each half-covered by one long prediction per event: two TP, no FN, no FP.
    pa, pv, ta, tv = _empty()
    ta[0, 0:2, 5] = ta[0, 6:8, 5] = 1
    pa[0, 0:4, 5] = pa[0, 5:9, 5] = 1
    scores = metrics.parsing_scores(pa, pv, ta, tv)
    self.assertAlmostEqual(scores["event/audio"], 100.0, delta=TOLERANCE_PP)

  def test_event_at_av_pools_audio_and_visual_counts(self):
    pa, pv, ta, tv = _empty()
    pa[0, 0:5, 0] = ta[0, 0:5, 0] = 1  # audio: one TP event, 5 TP seconds
    tv[0, 0:2, 0] = 1  # visual: one FN event, 2 FN seconds
    scores = metrics.parsing_scores(pa, pv, ta, tv)
    expected = {
        "segment/audio": 100.0,
        "segment/visual": 0.0,
        "segment/audio_visual": 0.0,  # truth AV = seconds 0-1 of class 0, none predicted
        "segment/type": 100 / 3,
        "segment/event": 100 * 10 / 12,  # pooled: TP 5, FN 2; not the mean (100 + 0) / 2
        "event/audio": 100.0,
        "event/visual": 0.0,
        "event/audio_visual": 0.0,
        "event/type": 100 / 3,
        "event/event": 100 * 2 / 3,  # pooled: TP 1, FN 1
    }
    self.assertScores(scores, expected)

  def test_audio_visual_is_the_and_of_both_modalities(self):
    pa, pv, ta, tv = _empty()
    pa[0, 0:6, 1] = 1
    pv[0, 3:10, 1] = 1  # predicted AV: seconds 3-5
    ta[0, 2:6, 1] = 1
    tv[0, 0:10, 1] = 1  # true AV: seconds 2-5
    scores = metrics.parsing_scores(pa, pv, ta, tv)
    self.assertAlmostEqual(scores["segment/audio_visual"], 100 * 6 / 7, delta=TOLERANCE_PP)
    self.assertAlmostEqual(scores["event/audio_visual"], 100.0, delta=TOLERANCE_PP)  # IoU 3/4
    self.assertScores(scores, oracle_scores(pa, pv, ta, tv))

  def test_type_is_the_mean_of_the_three_types(self):
    labels = _random_set(seed=3, n=200)
    scores = metrics.parsing_scores(*labels)
    for level in ("segment", "event"):
      self.assertAlmostEqual(
          scores[f"{level}/type"],
          (scores[f"{level}/audio"] + scores[f"{level}/visual"] + scores[f"{level}/audio_visual"])
          / 3,
          delta=1e-9,
      )


class SegmentPredictionsTest(_MetricsTestCase):

  def test_thresholds_keep_exactly_half(self):
    segment_audio = np.full((1, T, C), 0.2, np.float32)
    segment_audio[0, 0, 0] = 0.5  # kept
    segment_audio[0, 1, 0] = np.nextafter(np.float32(0.5), np.float32(0))  # dropped
    segment_audio[0, 2, 0] = 0.9  # kept
    segment_audio[0, 3, 1] = 0.9  # class 1 gated away
    segment_visual = np.full((1, T, C), 0.7, np.float32)
    audio_filter = np.zeros((1, C), np.float32)
    audio_filter[0, 0] = 0.5  # boundary: kept
    audio_filter[0, 1] = np.nextafter(np.float32(0.5), np.float32(0))
    visual_filter = np.zeros((1, C), np.float32)
    visual_filter[0, 7] = 0.99
    pred_audio, pred_visual = metrics.segment_predictions(
        segment_audio, segment_visual, audio_filter, visual_filter
    )
    expected_audio = np.zeros((1, T, C), np.float32)
    expected_audio[0, [0, 2], 0] = 1
    expected_visual = np.zeros((1, T, C), np.float32)
    expected_visual[0, :, 7] = 1
    np.testing.assert_array_equal(pred_audio, expected_audio)
    np.testing.assert_array_equal(pred_visual, expected_visual)

  def test_each_modality_uses_its_own_filter(self):
    rng = np.random.default_rng(5)
    segment_audio, segment_visual = rng.random((2, 8, T, C)).astype(np.float32)
    audio_filter, visual_filter = rng.random((2, 8, C)).astype(np.float32)
    pred_audio, pred_visual = jax.jit(metrics.segment_predictions)(
        segment_audio, segment_visual, audio_filter, visual_filter
    )
    for pred, segment, filt in (
        (pred_audio, segment_audio, audio_filter),
        (pred_visual, segment_visual, visual_filter),
    ):
      expected = np.zeros((8, T, C), np.float32)
      for i in range(8):
        for c in range(C):
          if filt[i, c] >= 0.5:
            expected[i, :, c] = segment[i, :, c] >= 0.5
      np.testing.assert_array_equal(pred, expected)

  def test_threshold_argument(self):
    pred_audio, _ = metrics.segment_predictions(
        np.full((1, T, C), 0.3, np.float32),
        np.zeros((1, T, C), np.float32),
        np.full((1, C), 0.3, np.float32),
        np.zeros((1, C), np.float32),
        threshold=0.3,
    )
    self.assertEqual(float(pred_audio.sum()), T * C)

  def test_per_class_and_gate_thresholds_against_a_loop(self):
    rng = np.random.default_rng(6)
    segment, other = rng.random((2, 4, T, C)).astype(np.float32)
    filt = rng.random((4, C)).astype(np.float32)
    threshold, gate_threshold = rng.random((2, C)).astype(np.float32)
    expected = np.zeros((4, T, C), bool)
    for i in range(4):
      for c in range(C):
        if filt[i, c] >= gate_threshold[c]:
          expected[i, :, c] = segment[i, :, c] >= threshold[c]
    got = metrics.gate(segment, filt, threshold, gate_threshold)
    self.assertIsInstance(got, np.ndarray)  # numpy in, numpy out
    np.testing.assert_array_equal(got, expected)
    pred_audio, _ = metrics.segment_predictions(
        segment, other, filt, filt, threshold=threshold, gate_threshold=gate_threshold
    )
    np.testing.assert_array_equal(pred_audio, expected.astype(np.float32))
    self.assertEqual(metrics.OFFICIAL_THRESHOLD, 0.5)

  def test_bad_shapes_raise(self):
    with self.assertRaisesRegex(InputError, "audio_filter_prob"):
      metrics.segment_predictions(
          np.zeros((2, T, C)), np.zeros((2, T, C)), np.zeros((2, T, C)), np.zeros((2, C))
      )


class MaskAndBatchingTest(_MetricsTestCase):

  def test_mask_excludes_padded_clips(self):
    labels = _random_set(seed=11, n=70)
    junk = _random_set(seed=12, n=26)
    padded = [np.concatenate([x, j]) for x, j in zip(labels, junk)]
    mask = np.concatenate([np.ones(70, np.float32), np.zeros(26, np.float32)])
    self.assertScores(metrics.parsing_scores(*padded, mask=mask), oracle_scores(*labels))
    self.assertScores(metrics.parsing_scores(*padded, mask=mask), metrics.parsing_scores(*labels))
    # The junk does change the unmasked numbers.
    self.assertNotAlmostEqual(
        metrics.parsing_scores(*padded)["event/audio"],
        metrics.parsing_scores(*labels)["event/audio"],
        delta=0.01,
    )

  def test_batched_sums_give_the_whole_set_numbers(self):
    labels = _random_set(seed=13, n=1200)
    batch_size = 128
    totals = {}
    for start in range(0, 1200, batch_size):
      batch = [x[start : start + batch_size] for x in labels]
      real = batch[0].shape[0]
      mask = np.zeros(batch_size, np.float32)
      mask[:real] = 1
      batch = [
          np.pad(x, ((0, batch_size - real), (0, 0), (0, 0)), constant_values=1) for x in batch
      ]
      sums = jax.device_get(metrics.masked_clip_sums(metrics.clip_scores(*batch), mask))
      for key, value in sums.items():
        totals[key] = totals.get(key, 0.0) + float(value)
    self.assertEqual(totals["count"], 1200)
    batched = {key: 100 * totals[key] / totals["count"] for key in metrics.KEYS}
    self.assertScores(batched, oracle_scores(*labels))

  def test_one_compilation_per_shape(self):
    first, second = _random_set(seed=15, n=50), _random_set(seed=16, n=50)
    metrics.parsing_scores(*first)
    size = metrics._checked_score_sums._cache_size()  # pylint: disable=protected-access
    metrics.parsing_scores(*second)
    metrics.parsing_scores(*second, mask=np.ones(50))
    self.assertEqual(metrics._checked_score_sums._cache_size(), size)  # pylint: disable=protected-access

  def test_whole_test_set_in_one_jitted_call(self):
    labels = [jnp.asarray(x) for x in _random_set(seed=14, n=1200)]

    @jax.jit
    def from_probabilities(seg_a, seg_v, filt_a, filt_v, true_a, true_v):
      pred_a, pred_v = metrics.segment_predictions(seg_a, seg_v, filt_a, filt_v)
      values = metrics.clip_scores(pred_a, pred_v, true_a, true_v)
      return metrics.masked_clip_sums(
          values, jnp.ones((values["event/audio"].shape[0],), jnp.float32)
      )

    # Probabilities whose thresholding reproduces the random predictions.
    seg_a = labels[0] * 0.5 + 0.25
    seg_v = labels[1] * 0.5 + 0.25
    ones = jnp.ones((1200, C), jnp.float32)
    sums = jax.device_get(from_probabilities(seg_a, seg_v, ones, ones, labels[2], labels[3]))
    self.assertEqual(float(sums["count"]), 1200)
    expected = oracle_scores(*labels)
    for key in metrics.KEYS:
      self.assertEqual(sums[key].shape, ())
      self.assertAlmostEqual(
          100 * float(sums[key]) / 1200, expected[key], delta=TOLERANCE_PP, msg=key
      )


class PerClassTest(_MetricsTestCase):

  def test_per_class_f1_pools_counts_over_clips(self):
    labels = _random_set(seed=21, n=400)
    labels[2][:, :, 24] = 0  # class 24: never true...
    labels[0][:, :, 24] = 0  # ...nor predicted, in audio
    mask = np.ones(400, np.float32)
    mask[350:] = 0
    actual = metrics.per_class_f1(*labels, mask=mask)
    self.assertEqual(set(actual), set(metrics.PER_CLASS_KEYS))
    pa, pv, ta, tv = (x[:350].astype(int) for x in labels)
    modalities = {"audio": (pa, ta), "visual": (pv, tv), "audio_visual": (pa * pv, ta * tv)}
    for level, count in (("segment", _segment_counts), ("event", _event_counts)):
      for modality, (pred, true) in modalities.items():
        expected = np.full(C, np.nan)
        for c in range(C):
          tp = fp = fn = 0
          for i in range(350):
            d_tp, d_fp, d_fn = count(pred[i, :, c].tolist(), true[i, :, c].tolist())
            tp, fp, fn = tp + d_tp, fp + d_fp, fn + d_fn
          if tp + fp + fn:
            expected[c] = 100 * 2 * tp / (2 * tp + fp + fn)
        np.testing.assert_allclose(
            actual[f"{level}/{modality}"],
            expected,
            rtol=0,
            atol=TOLERANCE_PP,
            err_msg=f"{level}/{modality}",
        )
    self.assertTrue(np.isnan(actual["segment/audio"][24]))

  def test_hand_worked_per_class(self):
    pa, pv, ta, tv = _empty(n=2)
    pa[0, 0:4, 2] = 1
    ta[0, 0:2, 2] = 1  # clip 0, class 2: TP 2, FP 2 seconds; one TP event (IoU 2/4)
    ta[1, 5:10, 2] = 1  # clip 1, class 2: FN 5 seconds, one FN event
    result = metrics.per_class_f1(pa, pv, ta, tv)
    self.assertAlmostEqual(result["segment/audio"][2], 100 * 4 / (4 + 2 + 5), delta=TOLERANCE_PP)
    self.assertAlmostEqual(result["event/audio"][2], 100 * 2 / (2 + 0 + 1), delta=TOLERANCE_PP)
    self.assertTrue(np.all(np.isnan(np.delete(result["segment/audio"], 2))))
    self.assertTrue(np.all(np.isnan(result["segment/visual"])))


class InputErrorTest(_MetricsTestCase):

  def test_mismatched_shapes(self):
    pa, pv, ta, tv = _empty(n=2)
    with self.assertRaisesRegex(InputError, "shapes"):
      metrics.parsing_scores(pa, pv[:1], ta, tv)
    with self.assertRaisesRegex(InputError, "shapes"):
      metrics.parsing_scores(pa[0], pv[0], ta[0], tv[0])

  def test_probabilities_instead_of_labels(self):
    pa, pv, ta, tv = _empty(n=2)
    pa[0, 0, 0] = 0.7
    with self.assertRaisesRegex(InputError, "0 and 1"):
      metrics.parsing_scores(pa, pv, ta, tv)

  def test_clips_longer_than_32_seconds(self):
    labels = [np.zeros((2, 33, C), np.float32) for _ in range(4)]
    with self.assertRaisesRegex(InputError, "at most 32 seconds"):
      metrics.parsing_scores(*labels)

  def test_bad_mask(self):
    labels = _empty(n=2)
    with self.assertRaisesRegex(InputError, "mask"):
      metrics.parsing_scores(*labels, mask=np.ones(3))
    with self.assertRaisesRegex(InputError, "no clip"):
      metrics.parsing_scores(*labels, mask=np.zeros(2))


if __name__ == "__main__":
  absltest.main()
