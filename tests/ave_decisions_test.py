"""The AVE decision rules and evaluator against numpy transcriptions of the official accuracy functions.

Oracles: AVE-ECCV18 supervised_main.py / PSP_CVPR_2021 measure.py `compute_acc` (a loop over clips and
segments, argmax of scores and of labels, sklearn's accuracy_score = mean of equal pairs), and CMBS's
`compute_accuracy_supervised` (supv_main.py and weakly_main.py: sigmoid > 0.5 foreground, the class argmax on
every foreground segment, 28 elsewhere), transcribed from PyTorch into numpy.
"""

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from avvp_jax.tasks.ave import annotations
from avvp_jax.tasks.ave import decisions
from avvp_jax.tasks.ave import evaluator as evaluator_lib
from avvp_jax.tasks.ave import metrics


def official_compute_acc(labels, x_labels, nb_batch):
  """AVE-ECCV18 / PSP `compute_acc`, in numpy: the fraction of segments whose argmaxes agree."""
  n = int(nb_batch * 10)
  pre_labels = np.zeros(n)
  real_labels = np.zeros(n)
  c = 0
  for i in range(nb_batch):
    for j in range(x_labels.shape[1]):
      pre_labels[c] = np.argmax(x_labels[i, j, :])
      real_labels[c] = np.argmax(labels[i, j, :])
      c += 1
  return float(np.mean(real_labels == pre_labels))  # sklearn accuracy_score


def official_cmbs_accuracy(is_event_scores, event_scores, labels):
  """CMBS `compute_accuracy_supervised`, in numpy (percent)."""
  targets = labels.argmax(-1)
  is_event = 1.0 / (1.0 + np.exp(-is_event_scores.astype(np.float32)))
  scores_pos_ind = is_event > 0.5
  scores_mask = scores_pos_ind == 0
  event_class = event_scores.argmax(-1)
  pred = scores_pos_ind.astype(np.int64)
  pred *= event_class[:, None]
  pred[scores_mask] = 28
  correct = pred == targets
  return correct.sum() * (100.0 / correct.size)


def _labels(rng, batch):
  """Random AVE-like one-hot segment labels: one class per clip, a random event interval."""
  classes = rng.integers(0, 28, batch)
  start = rng.integers(0, 10, batch)
  end = np.minimum(10, start + rng.integers(0, 11, batch))
  segment = np.arange(10)
  event = (segment >= start[:, None]) & (segment < end[:, None])
  return np.eye(29, dtype=np.float32)[np.where(event, classes[:, None], 28)], classes


class _StrictShapes(absltest.TestCase):
  """Implicit rank promotion is an error inside these tests (and only there: a module-level setting would
  reach every test a pytest worker runs after collecting this file)."""

  def setUp(self):
    super().setUp()
    self.enter_context(jax.numpy_rank_promotion("raise"))


class RulesTest(_StrictShapes):

  def test_argmax_rule_scores_as_compute_acc(self):
    rng = np.random.default_rng(0)
    labels, _ = _labels(rng, 37)
    scores = rng.normal(size=(37, 10, 29)).astype(np.float32)
    scores[:, :, 28] += 0.8  # some background predictions
    scores[:5] = np.where(labels[:5] > 0, 5.0, scores[:5])  # some right ones
    pred = decisions.argmax_rule(jnp.asarray(scores))
    self.assertEqual(pred.dtype, jnp.int32)
    totals = metrics.segment_counts(pred, labels, np.ones(37, np.float32))
    self.assertAlmostEqual(
        metrics.accuracy(totals), 100 * official_compute_acc(labels, scores, 37), places=4
    )

  def test_argmax_ties_go_to_the_lowest_index(self):
    scores = np.zeros((1, 10, 29), np.float32)
    scores[0, :, 3] = scores[0, :, 7] = 1.0
    np.testing.assert_array_equal(
        decisions.argmax_rule(scores), np.argmax(scores, -1)
    )  # numpy's rule: 3

  def test_event_gate_rule_scores_as_cmbs(self):
    rng = np.random.default_rng(1)
    labels, classes = _labels(rng, 41)
    event_logit = rng.normal(size=(41, 10)).astype(np.float32)
    class_scores = rng.normal(size=(41, 28)).astype(np.float32)
    class_scores[:20, :] += 3 * np.eye(28, dtype=np.float32)[classes[:20]]
    event_logit[0, 0] = 0.0  # sigmoid exactly 0.5: background
    pred = np.asarray(decisions.event_gate_rule(event_logit, class_scores))
    self.assertEqual(pred[0, 0], 28)
    totals = metrics.segment_counts(pred, labels, np.ones(41, np.float32))
    self.assertAlmostEqual(
        metrics.accuracy(totals),
        official_cmbs_accuracy(event_logit, class_scores, labels),
        places=4,
    )

  def test_cmbs_weak_evaluation_makes_every_segment_foreground(self):
    rng = np.random.default_rng(2)
    labels, _ = _labels(rng, 23)
    gate = rng.uniform(0.0, 1.0, size=(23, 10)).astype(np.float32)  # av_gate: probabilities
    raw_logits = rng.normal(size=(23, 28)).astype(np.float32)
    pred = np.asarray(decisions.event_gate_rule(gate, raw_logits))
    np.testing.assert_array_equal(pred, np.repeat(raw_logits.argmax(-1)[:, None], 10, axis=1))
    self.assertFalse(np.any(pred == 28))
    totals = metrics.segment_counts(pred, labels, np.ones(23, np.float32))
    self.assertAlmostEqual(
        metrics.accuracy(totals), official_cmbs_accuracy(gate, raw_logits, labels), places=4
    )


class EvaluatorTest(_StrictShapes):

  def test_padded_batches_sum_to_the_whole_split(self):
    rng = np.random.default_rng(3)
    labels, _ = _labels(rng, 50)
    scores = rng.normal(size=(50, 10, 29)).astype(np.float32)
    scores[:, :, 28] += 1.0
    evaluator = evaluator_lib.SegmentAccuracyEvaluator(meta=None)
    step = jax.jit(
        lambda s, b: evaluator.batch_sums({"segment_class": decisions.argmax_rule(s)}, b)
    )
    sums = []
    for start in range(0, 50, 16):  # 16, 16, 16, 2 + 14 padding rows of garbage
      stop = min(start + 16, 50)
      pad = 16 - (stop - start)
      batch_scores = np.concatenate([scores[start:stop], rng.normal(size=(pad, 10, 29))])
      batch = {
          "segment_label": np.concatenate([labels[start:stop], np.zeros((pad, 10, 29))]).astype(
              np.float32
          ),
          "mask": np.concatenate([np.ones(stop - start), np.zeros(pad)]).astype(np.float32),
      }
      sums.append(jax.device_get(step(batch_scores.astype(np.float32), batch)))
    totals = jax.tree.map(lambda *xs: np.sum(np.asarray(xs, np.float64), axis=0), *sums)
    report = evaluator.scores(totals)
    self.assertEqual(report["num_clips"], 50)
    self.assertEqual(report["num_segments"], 500)
    self.assertAlmostEqual(
        report["accuracy"], 100 * official_compute_acc(labels, scores, 50), places=4
    )
    # Per-label accuracy: a numpy loop over the segments of each true label.
    true, pred = labels.argmax(-1).ravel(), scores.argmax(-1).ravel()
    for label, name in enumerate(annotations.LABEL_NAMES):
      chosen = true == label
      if chosen.any():
        self.assertAlmostEqual(
            report["per_class"]["accuracy"][name], 100 * np.mean(pred[chosen] == label), places=4
        )
      else:
        self.assertNotIn(name, report["per_class"]["accuracy"])


if __name__ == "__main__":
  absltest.main()
