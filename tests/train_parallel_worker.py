"""Subprocess worker for tests/train_multihost_test.py: train steps on fixed global batches.

Modes (the test sets the device count in the environment before this process starts JAX):
  devices    8 simulated CPU devices in one process: K steps on a 1-device mesh and on the 8-device mesh,
             from the same initial state and global batches; writes both param trees.
  multihost  one of two processes on loopback (`jax.distributed.initialize`, gloo collectives, 2 CPU
             devices each): every process feeds its half of each global batch through
             `jax.make_array_from_process_local_data`; process 0 writes the params.

`run_steps` is also imported by the test for the single-process reference.
"""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

NUM_STEPS = 3
GLOBAL_BATCH = 8


def make_config(name: str = "han", optimizer: str = "sgd"):
  """The tiny preset of configs/<name>.py with a global batch of 8.

  optimizer "sgd" (lr 0.5) makes the update linear in the gradient, so params compare at 1e-5. With Adam,
  a gradient that is zero in exact arithmetic (e.g. the bias of a softmax over modalities, which a shift
  cannot change) is float noise of either sign, and Adam turns that noise into a full +-lr step in the
  one-device and in the N-device run alike; those params then differ by ~lr, not because the gradient
  all-reduce is wrong.
  """
  import importlib  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f"configs.{name}").get_config("tiny")
  config.unlock()
  config.batch_size = GLOBAL_BATCH
  config.optimizer.name = optimizer
  if optimizer == "sgd":
    config.optimizer.learning_rate = 0.5
  return config


def global_batches(config, num_steps: int = NUM_STEPS, batch_size: int = GLOBAL_BATCH):
  """Deterministic random global batches of the config's input shapes (numpy, host)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from avvp_jax import train  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1234)
  shapes = {key: x.shape[1:] for key, x in zip(("audio", "frames", "motion"), train.dummy_inputs(config))
            if x is not None}
  batches = []
  for step in range(num_steps):
    batch = {key: rng.normal(size=(batch_size, *shape)).astype(np.float32) for key, shape in shapes.items()}
    batch["label"] = (rng.random((batch_size, 25)) < 0.15).astype(np.float32)
    batch["label"][:, step % 25] = 1.0
    batch["index"] = np.arange(step * batch_size, (step + 1) * batch_size, dtype=np.int32)
    batches.append(batch)
  return batches


def run_steps(config, mesh, host_slice=slice(None)):
  """Initialises the state on `mesh` and takes NUM_STEPS steps; returns (params as numpy, losses)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from avvp_jax import train  # pylint: disable=g-import-not-at-top
  model = train.build_model(config)
  tx, _ = train.make_optimizer(config, steps_per_epoch=2)
  init_rng, dropout_rng = jax.random.split(jax.random.key(config.seed))
  state, abstract_state = train.create_train_state(config, model, tx, mesh, init_rng)
  step_fn = train.jit_train_step(train.make_train_step(config, model, tx), mesh, abstract_state)
  losses = []
  for batch in global_batches(config):
    host_batch = {key: value[host_slice] for key, value in batch.items()}
    state, metrics = step_fn(state, train.global_batch(mesh, host_batch), dropout_rng)
    losses.append(float(metrics["loss"]))
  params = jax.tree.map(lambda x: np.asarray(jax.device_get(x)), state.params)
  return params, np.asarray(losses)


def _flat(params):
  import jax  # pylint: disable=g-import-not-at-top
  return {jax.tree_util.keystr(path): value for path, value in jax.tree_util.tree_leaves_with_path(params)}


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("mode", choices=("devices", "multihost"))
  parser.add_argument("--out", required=True)
  parser.add_argument("--config", default="han")
  parser.add_argument("--process_id", type=int, default=0)
  parser.add_argument("--port", type=int, default=0)
  args = parser.parse_args()

  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  if args.mode == "multihost":
    jax.config.update("jax_num_cpu_devices", 2)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{args.port}", num_processes=2,
                               process_id=args.process_id)
  from avvp_jax import train  # pylint: disable=g-import-not-at-top

  config = make_config(args.config)
  if args.mode == "devices":
    assert jax.device_count() == 8, jax.devices()
    params_1, losses_1 = run_steps(config, train.make_mesh(jax.devices()[:1]))
    params_8, losses_8 = run_steps(config, train.make_mesh())
    arrays = {f"one/{k}": v for k, v in _flat(params_1).items()}
    arrays.update({f"eight/{k}": v for k, v in _flat(params_8).items()})
    arrays.update({"one_losses": losses_1, "eight_losses": losses_8})
    np.savez(args.out, **arrays)
  else:
    assert jax.process_count() == 2 and jax.device_count() == 4, (jax.process_count(), jax.devices())
    per_host = GLOBAL_BATCH // jax.process_count()
    rows = slice(jax.process_index() * per_host, (jax.process_index() + 1) * per_host)
    params, losses = run_steps(config, train.make_mesh(), rows)
    if jax.process_index() == 0:
      np.savez(args.out, losses=losses, **{f"params/{k}": v for k, v in _flat(params).items()})
    jax.distributed.shutdown()


if __name__ == "__main__":
  main()
