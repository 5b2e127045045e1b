"""Subprocess worker for tests/train_multihost_test.py: train steps on fixed global batches.

Modes (the test sets the device count in the environment before this process starts JAX):
  devices    8 simulated CPU devices in one process: K steps on a 1-device mesh and on the 8-device mesh
             (one seed: 1 x 8 data devices; SEEDS: 2 seed x 4 data devices), from the same initial states
             and global batches; writes the param trees.
  multihost  one of two processes on loopback (`jax.distributed.initialize`, gloo collectives, 2 CPU
             devices each) training the SEEDS replicas on a 2 seed x 2 data mesh: every process feeds its
             half of each global batch (for both seeds) through `jax.make_array_from_process_local_data`;
             process 0 writes the params.

`run_steps` is also imported by the test for the single-process reference.
"""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

NUM_STEPS = 3
GLOBAL_BATCH = 8
SEEDS = (
    5,
    6,
)  # the multi-seed runs' replicas (not starting at 0, so seed and replica index differ)


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


def global_batches(config, seeds=(0,), num_steps: int = NUM_STEPS, batch_size: int = GLOBAL_BATCH):
  """Deterministic random global batches `[S, B, ...]` of the config's input shapes (numpy, host).

  Replica s's rows depend only on its seed, so a 1-seed run of seed k sees replica k's batches.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top

  per_seed = [_seed_batches(config, seed, num_steps, batch_size) for seed in seeds]
  return [
      {key: np.stack([batches[step][key] for batches in per_seed]) for key in per_seed[0][step]}
      for step in range(num_steps)
  ]


def _seed_batches(config, seed, num_steps, batch_size):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from avvp_jax import state as state_lib  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng([1234, seed])
  shapes = {
      key: x.shape[1:]
      for key, x in zip(("audio", "frames", "motion"), state_lib.dummy_inputs(config))
      if x is not None
  }
  batches = []
  for step in range(num_steps):
    batch = {
        key: rng.normal(size=(batch_size, *shape)).astype(np.float32)
        for key, shape in shapes.items()
    }
    batch["label"] = (rng.random((batch_size, 25)) < 0.15).astype(np.float32)
    batch["label"][:, step % 25] = 1.0
    batch["index"] = np.arange(step * batch_size, (step + 1) * batch_size, dtype=np.int32)
    batches.append(batch)
  return batches


def run_steps(config, mesh, host_slice=slice(None), seeds=(0,)):
  """Initialises one replica per seed on `mesh` and takes NUM_STEPS steps.

  Returns (seed-stacked params as numpy, losses [NUM_STEPS, S]); `host_slice` picks this host's clips.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from avvp_jax import state as state_lib  # pylint: disable=g-import-not-at-top
  from avvp_jax import sharding  # pylint: disable=g-import-not-at-top
  from avvp_jax import train  # pylint: disable=g-import-not-at-top

  model = state_lib.build_model(config)
  tx, _ = state_lib.make_optimizer(config, steps_per_epoch=2)
  state, abstract_state = state_lib.create_train_state(config, model, tx, mesh, seeds)
  step_fn = train.jit_train_step(train.make_train_step(config, model, tx), mesh, abstract_state)
  losses = []
  for batch in global_batches(config, seeds):
    host_batch = {key: value[:, host_slice] for key, value in batch.items()}
    state, metrics = step_fn(state, sharding.global_batch(mesh, host_batch, seeds=True))
    losses.append(np.asarray(jax.device_get(metrics["loss"])))
  params = jax.tree.map(lambda x: np.asarray(jax.device_get(x)), state.params)
  return params, np.asarray(losses)


def _flat(params):
  import jax  # pylint: disable=g-import-not-at-top

  return {
      jax.tree_util.keystr(path): value
      for path, value in jax.tree_util.tree_leaves_with_path(params)
  }


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
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{args.port}", num_processes=2, process_id=args.process_id
    )
  from avvp_jax import sharding  # pylint: disable=g-import-not-at-top

  config = make_config(args.config)
  if args.mode == "devices":
    assert jax.device_count() == 8, jax.devices()
    runs = {
        "one": dict(mesh=sharding.make_mesh(jax.devices()[:1])),
        "eight": dict(mesh=sharding.make_mesh()),
        "seeds_one": dict(
            mesh=sharding.make_mesh(jax.devices()[:1], num_seeds=len(SEEDS)), seeds=SEEDS
        ),
        "seeds_eight": dict(mesh=sharding.make_mesh(num_seeds=len(SEEDS)), seeds=SEEDS),
    }
    assert dict(runs["seeds_eight"]["mesh"].shape) == {"seed": 2, "data": 4}, runs["seeds_eight"][
        "mesh"
    ]
    arrays = {}
    for name, kwargs in runs.items():
      params, losses = run_steps(config, **kwargs)
      arrays.update({f"{name}/{k}": v for k, v in _flat(params).items()})
      arrays[f"{name}_losses"] = losses
    np.savez(args.out, **arrays)
  else:
    assert jax.process_count() == 2 and jax.device_count() == 4, (
        jax.process_count(),
        jax.devices(),
    )
    per_host = GLOBAL_BATCH // jax.process_count()
    rows = slice(jax.process_index() * per_host, (jax.process_index() + 1) * per_host)
    mesh = sharding.make_mesh(num_seeds=len(SEEDS))
    assert dict(mesh.shape) == {"seed": 2, "data": 2}, mesh
    params, losses = run_steps(config, mesh, rows, seeds=SEEDS)
    if jax.process_index() == 0:
      np.savez(args.out, losses=losses, **{f"params/{k}": v for k, v in _flat(params).items()})
    jax.distributed.shutdown()


if __name__ == "__main__":
  main()
