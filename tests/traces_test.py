"""The jitted train and evaluation steps trace once: a run compiles each of them a single time.

Over several steps of the `configs/han.py:tiny` preset (one seed: the default runs' program), the train step sees full batches
and the padded last batch of an epoch, and its own output state comes back as its next input; the
evaluation step sees the initial and the trained params, and full and padded batches. Every batch has the
keys and dtypes the input pipeline yields (`avvp_jax/tasks/llp/pipeline.py`): float32 features and labels,
`index` int32 (-1 on padding), `mask` float32 (0 on padding). `chex.assert_max_traces` fails on a second
trace: a changed dtype or weak type in the state a step returns, a Python scalar in a batch, or a sharding
that differs between calls would all retrace.
"""

import os
import sys
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import numpy as np

from avvp_jax import evaluate as evaluate_lib
from avvp_jax import sharding
from avvp_jax import state as state_lib
from avvp_jax import train
from avvp_jax.tasks.llp import evaluator as llp_evaluator
from avvp_jax.tasks.llp import task as llp_task

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import han  # pylint: disable=g-import-not-at-top,wrong-import-position

NUM_CLASSES = 25


def _host_batch(config, rng, size, num_real, dense_labels):
  """A host batch in the pipeline's layout; rows from `num_real` on are padding."""
  audio, frames, motion = state_lib.dummy_inputs(config, batch_size=size)
  num_seconds = audio.shape[1]
  batch = {
      "audio": rng.normal(size=audio.shape),
      "frames": rng.normal(size=frames.shape),
      "label": rng.random((size, NUM_CLASSES)) < 0.2,
  }
  if motion is not None:
    batch["motion"] = rng.normal(size=motion.shape)
  if dense_labels:
    batch["audio_label"] = rng.random((size, num_seconds, NUM_CLASSES)) < 0.1
    batch["visual_label"] = rng.random((size, num_seconds, NUM_CLASSES)) < 0.1
  batch = {key: np.asarray(value, np.float32) for key, value in batch.items()}
  for value in batch.values():
    value[num_real:] = 0
  real = np.arange(size) < num_real
  batch["index"] = np.where(real, np.arange(size), -1).astype(np.int32)
  batch["mask"] = real.astype(np.float32)
  return batch


class TracesTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    chex.clear_trace_counter()  # the counters are per function, across the parameterized cases

  # Add ("two_seeds", 2) to cover the vmapped multi-seed program too (about 17 s more on 2 CPU cores).
  @parameterized.named_parameters(("one_seed", 1))
  def test_train_and_eval_steps_trace_once(self, num_seeds):
    config = han.get_config("tiny")
    config.unlock()
    config.num_seeds = num_seeds
    config = state_lib.resolve_config(config)
    seeds = state_lib.run_seeds(config)
    mesh = sharding.make_mesh(num_seeds=num_seeds)
    model = state_lib.build_model(config)
    tx, _ = state_lib.make_optimizer(config, 4)
    state, abstract = state_lib.create_train_state(config, model, tx, mesh, seeds)
    initial_params = state.params  # the step does not donate its input state: these stay valid
    rng = np.random.default_rng(0)
    size = config.batch_size

    train_step = train.jit_train_step(
        chex.assert_max_traces(train.make_train_step(config, model, tx), n=1), mesh, abstract
    )
    # An epoch's last batch: 3 real clips, padded and masked.
    for num_real in (size, size, size, 3):
      host = {
          key: np.stack(
              [b[key] for b in [_host_batch(config, rng, size, num_real, False) for _ in seeds]]
          )
          for key in ("audio", "frames", "motion", "label", "index", "mask")
      }
      state, metrics = train_step(state, sharding.global_batch(mesh, host, seeds=True))
    metrics = jax.device_get(metrics)
    self.assertEqual(metrics["loss"].shape, (num_seeds,))
    self.assertTrue(np.isfinite(metrics["loss"]).all())
    np.testing.assert_array_equal(jax.device_get(state.step), [4] * num_seeds)

    evaluator = llp_evaluator.ParsingEvaluator(llp_task.TASK.meta(config))
    traced_sums = chex.assert_max_traces(evaluator.batch_sums, n=1)
    with mock.patch.object(evaluator, "batch_sums", traced_sums):
      eval_step = evaluate_lib.make_eval_step(
          evaluator, model, mesh, num_seeds=num_seeds, input_keys=llp_task.INPUT_KEYS
      )
      eval_size = config.eval_batch_size
      totals = []
      for params, num_real in (
          (initial_params, eval_size),
          (state.params, eval_size),
          (state.params, 5),
      ):
        batch = sharding.global_batch(mesh, _host_batch(config, rng, eval_size, num_real, True))
        totals.append(jax.device_get(eval_step(params, batch)))
    # The padded batch counts its 5 real clips, for every seed.
    np.testing.assert_array_equal(totals[-1]["seeds"]["sums"]["count"], [5] * num_seeds)


if __name__ == "__main__":
  absltest.main()
