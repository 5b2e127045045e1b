"""Tests of avvp_jax.best_tracker: per-replica bests, ties, the merged best state, the JSON round trip."""

import json
import math

from absl.testing import absltest
import jax.numpy as jnp
import numpy as np

from avvp_jax import best_tracker
from avvp_jax.errors import InputError

KEYS = ("segment/type", "event/type")


def scores(value, other=0.0):
  return {"segment/type": value, "event/type": other}


class BestTrackerTest(absltest.TestCase):

  def test_each_replica_keeps_its_own_best_epoch_and_state(self):
    tracker = best_tracker.BestTracker("segment/type", seeds=[3, 4, 5], keys=KEYS)
    state1 = {"w": jnp.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])}
    improved = tracker.update(10, [scores(50.0), scores(40.0), scores(30.0)], state1)
    np.testing.assert_array_equal(improved, [True, True, True])
    state2 = {"w": state1["w"] + 10.0}
    improved = tracker.update(20, [scores(49.0), scores(40.0, 7.0), scores(31.0)], state2)
    np.testing.assert_array_equal(
        improved, [False, True, True]
    )  # a tie (replica 1) keeps the later epoch
    np.testing.assert_array_equal(tracker.state["w"], [[1.0, 1.0], [12.0, 12.0], [13.0, 13.0]])
    self.assertEqual(tracker.steps, [10, 20, 20])
    self.assertEqual(tracker.scores, [50.0, 40.0, 31.0])
    self.assertEqual(tracker.metrics[1], {"segment/type": 40.0, "event/type": 7.0})
    self.assertIn("seeds 4, 5: ", tracker.describe(improved))
    self.assertIn("for seed 4: 40.00 at step 20", tracker.describe(np.array([False, True, False])))

  def test_strict_rule_keeps_the_first_best(self):
    """VALOR's `if F > best_F`: a tie keeps the earlier epoch and its state; ">=" takes the later one."""
    later = best_tracker.BestTracker("segment/type", seeds=[0, 1], keys=KEYS)
    first = best_tracker.BestTracker("segment/type", seeds=[0, 1], keys=KEYS, rule=">")
    epochs = [  # (step, per-replica scores): replica 0 ties its best at step 30, replica 1 improves
        (10, [scores(50.0, 1.0), scores(20.0)]),
        (20, [scores(49.0), scores(25.0)]),
        (30, [scores(50.0, 2.0), scores(26.0)]),
    ]
    for step, per_seed in epochs:
      state = {"w": jnp.full((2, 1), float(step))}
      improved_later = later.update(step, per_seed, state)
      improved_first = first.update(step, per_seed, state)
    np.testing.assert_array_equal(improved_later, [True, True])
    np.testing.assert_array_equal(improved_first, [False, True])
    self.assertEqual(later.steps, [30, 30])
    self.assertEqual(first.steps, [10, 30])
    self.assertEqual(first.metrics[0], {"segment/type": 50.0, "event/type": 1.0})
    np.testing.assert_array_equal(first.state["w"], [[10.0], [30.0]])
    np.testing.assert_array_equal(later.state["w"], [[30.0], [30.0]])

  def test_last_rule_keeps_the_last_epoch(self):
    """MA's code saves the model after its last epoch, whatever the validation said: "last"."""
    tracker = best_tracker.BestTracker("segment/type", seeds=[0, 1], keys=KEYS, rule="last")
    for step, values in ((10, (50.0, 20.0)), (20, (40.0, 30.0)), (30, (10.0, 25.0))):
      improved = tracker.update(
          step, [scores(v) for v in values], {"w": jnp.full((2, 1), 1.0 * step)}
      )
      np.testing.assert_array_equal(improved, [True, True])
    self.assertEqual((tracker.steps, tracker.scores), ([30, 30], [10.0, 25.0]))
    np.testing.assert_array_equal(tracker.state["w"], [[30.0], [30.0]])

  def test_unknown_rule_is_one_line(self):
    with self.assertRaisesRegex(
        InputError, r"^config.checkpoint.best_rule '>>' is unknown: use '>='"
    ):
      best_tracker.BestTracker("segment/type", seeds=[0], keys=KEYS, rule=">>")

  def test_json_round_trip(self):
    tracker = best_tracker.BestTracker("segment/type", seeds=[0, 1], keys=KEYS)
    fresh = json.loads(json.dumps(tracker.state_dict()))  # -inf before any validation survives JSON
    tracker.update(5, [scores(12.5, 3.0), scores(-math.inf)], {"w": jnp.zeros((2, 1))})
    saved = json.loads(json.dumps(tracker.state_dict()))
    restored = best_tracker.BestTracker("segment/type", seeds=[0, 1], keys=KEYS)
    restored.load_state_dict(saved, state={"w": jnp.ones((2, 1))})
    self.assertEqual(restored.state_dict(), tracker.state_dict())
    self.assertEqual(restored.metrics_record(), tracker.metrics_record())
    self.assertEqual(
        restored.metrics_record()["per_seed"][0],
        {"seed": 0, "step": 5, "segment/type": 12.5, "event/type": 3.0},
    )
    np.testing.assert_array_equal(restored.state["w"], np.ones((2, 1)))
    empty = best_tracker.BestTracker("segment/type", seeds=[0, 1], keys=KEYS)
    empty.load_state_dict(fresh)
    self.assertEqual(empty.scores, [-math.inf, -math.inf])
    self.assertEqual(empty.metrics_record()["per_seed"][1], {"seed": 1, "step": -1})

  def test_other_number_of_replicas_is_refused(self):
    tracker = best_tracker.BestTracker("segment/type", seeds=[0, 1], keys=KEYS)
    with self.assertRaisesRegex(ValueError, "number of replicas"):
      tracker.load_state_dict({"best_scores": [1.0], "best_steps": [1], "best_metrics": [None]})
    with self.assertRaisesRegex(ValueError, "validation reports"):
      tracker.update(1, [scores(1.0)], {"w": jnp.zeros((2,))})


if __name__ == "__main__":
  absltest.main()
