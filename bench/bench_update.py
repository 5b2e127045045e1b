"""Between steps: the optimizer update and the step's host path, as ratios within one process.

Run from the repository root:

  python bench/bench_update.py [--config=han] [--cycles=60]

For `--config` at the paper's size and batch (random batches of the real shapes, as `bench/bench_train.py`),
it times these forms of the jitted train step, interleaved step by step: every cycle runs one step of each
form in a rotated order, and a form's figure is the median over the cycles of its step time divided by the
trainer's form's in the same cycle (the machine is shared: only ratios within a cycle are compared):

  trainer      `train.jit_train_step` as the trainer runs it: `optax.adam` over the params tree, no donation
  flatten      `optax.flatten(adam)`: the update on one concatenated vector
  donate       the train state donated to the step (`donate_argnums=0`)
  flatten+donate
  host batch   the trainer's form fed as the trainer feeds it: each step's batch a host numpy batch made a
               global array by `sharding.global_batch` (the others read batches already on the device);
               timed to the step's end, so the transfer is on the step's path here: an upper bound

Then the loop as the trainer runs it: blocks of 8 steps with no wait between them (the next batch is made a
device array while the previous step runs), fed from the host or from the device, alternated: the ratio is
the input's cost on the step's path.

It also checks whether each form computes the trainer's params bit for bit after the timed steps (the
same batches in the same order): a form kept in the trainer must, so that runs and resumes are unchanged.

Prints a markdown table; docs/benchmarks.md has the figures of the 2-core x86-64 CPU.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np
import optax

import bench_train  # pylint: disable=g-import-not-at-top
from avvp_jax import sharding  # pylint: disable=g-import-not-at-top
from avvp_jax import state as state_lib  # pylint: disable=g-import-not-at-top
from avvp_jax import train  # pylint: disable=g-import-not-at-top

BLOCK = 8  # steps per block of the loop measurement


def _form(config, mesh, seeds, flatten, donate):
  """(state, jitted step) of one form: the same initial params for every form."""
  model = state_lib.build_model(config)
  tx, _ = state_lib.make_optimizer(config, 625)
  if flatten:
    tx = optax.flatten(tx)
  state, abstract = state_lib.create_train_state(config, model, tx, mesh, seeds)
  step = train.make_train_step(config, model, tx)
  if not donate:
    return state, train.jit_train_step(step, mesh, abstract)
  state_sharding = jax.tree.map(lambda x: x.sharding, abstract)
  return state, jax.jit(
      sharding.map_seeds(step, len(seeds), (0, 0)),
      in_shardings=(state_sharding, sharding.seed_data_sharded(mesh)),
      out_shardings=(state_sharding, sharding.seed_sharded(mesh)),
      donate_argnums=0,
  )


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="han")
  parser.add_argument("--cycles", type=int, default=60)
  args = parser.parse_args()
  config = state_lib.resolve_config(bench_train._config(args.config))  # pylint: disable=protected-access
  seeds = state_lib.run_seeds(config)
  mesh = sharding.make_mesh(num_seeds=len(seeds))
  rng = np.random.default_rng(0)
  host_batches = [
      bench_train._stack(  # pylint: disable=protected-access
          [bench_train.random_batch(config, rng) for _ in seeds]
      )
      for _ in range(4)
  ]
  device_batches = [sharding.global_batch(mesh, b, seeds=True) for b in host_batches]
  forms = {
      "trainer": (False, False, False),
      "flatten": (True, False, False),
      "donate": (False, True, False),
      "flatten+donate": (True, True, False),
      "host batch": (False, False, True),
  }
  states, steps = {}, {}
  for name, (flatten, donate, _) in forms.items():
    states[name], steps[name] = _form(config, mesh, seeds, flatten, donate)
    states[name], metrics = steps[name](states[name], device_batches[0])  # compile
    jax.block_until_ready(metrics)
  ratios = {name: [] for name in forms}
  medians = {name: [] for name in forms}
  names = list(forms)
  for cycle in range(args.cycles):  # one step of each form per cycle, in a rotated order
    times = {}
    for name in names[cycle % len(names) :] + names[: cycle % len(names)]:
      host, from_host = host_batches[cycle % 4], forms[name][2]
      start = time.perf_counter()
      batch = (
          sharding.global_batch(mesh, host, seeds=True) if from_host else device_batches[cycle % 4]
      )
      states[name], metrics = steps[name](states[name], batch)
      jax.block_until_ready(metrics)
      times[name] = time.perf_counter() - start
    for name in forms:
      ratios[name].append(times[name] / times["trainer"])
      medians[name].append(times[name])
  params = {name: jax.tree.map(np.asarray, states[name].params) for name in forms}
  # The trainer's loop does not wait for a step before assembling the next batch: blocks of `BLOCK` steps
  # without a wait, fed from the host (`global_batch` at each step) or from the device, alternated.
  block_ratios = []
  for cycle in range(args.cycles // 4):
    seconds = {}
    for from_host in (False, True) if cycle % 2 else (True, False):
      state, start = states["trainer"], time.perf_counter()
      for i in range(BLOCK):
        batch = (
            sharding.global_batch(mesh, host_batches[i % 4], seeds=True)
            if from_host
            else device_batches[i % 4]
        )
        state, metrics = steps["trainer"](state, batch)
      jax.block_until_ready(metrics)
      states["trainer"], seconds[from_host] = state, time.perf_counter() - start
    block_ratios.append(seconds[True] / seconds[False])
  with open("/proc/loadavg") as f:
    load = f.read().split()[:3]
  print(
      f"{jax.devices()[0].platform} x{jax.device_count()}, load average {' '.join(load)} (at the end)"
  )
  print(
      f"| form ({args.config}, batch {config.batch_size}) | step ms (median) | time / trainer's "
      "(median, quartiles over cycles) | params bit-equal to the trainer's |"
  )
  print("|---|---|---|---|")
  for name in forms:
    equal = all(
        np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(params["trainer"]), jax.tree.leaves(params[name]))
    )
    print(
        f"| {name} | {1e3 * np.median(medians[name]):.1f} | {np.median(ratios[name]):.3f} "
        f"({np.percentile(ratios[name], 25):.3f}-{np.percentile(ratios[name], 75):.3f}) | {'yes' if equal else 'NO'} |"
    )
  print(
      f"\nThe trainer's loop, {BLOCK} steps without a wait: fed from the host / from the device "
      f"{np.median(block_ratios):.3f} (median of {len(block_ratios)} alternated blocks, quartiles "
      f"{np.percentile(block_ratios, 25):.3f}-{np.percentile(block_ratios, 75):.3f})"
  )


if __name__ == "__main__":
  main()
