"""An epoch's saves: the latest save and a best save of the same state, written twice or linked.

Run from the repository root:

  python bench/bench_saves.py [--config=han] [--repeats=7]

For `--config` at the paper's size (its train state: params, Adam moments, step, dropout key), it makes the
saves of an epoch whose validation improved, as the trainer does (`checkpoint.Checkpointer`): the latest save,
then the best save of the same state, either written again (the behaviour before: `same_as_latest=False`) or
made of hard links to the latest save's files (`same_as_latest=True`, the trainer's now). The two ways
alternate, `--repeats` times each, each in a fresh folder under /tmp, and for each it reports:

  blocking   seconds the two calls hold the training loop (Orbax writes asynchronously after them)
  total      seconds until both saves are finalized on disk
  bytes      bytes written to the disk by the epoch's saves (each file counted once, hard links shared)

Ratios are medians over the repeats (the machine is shared: the two ways alternate).
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

import numpy as np  # pylint: disable=g-import-not-at-top

import bench_train  # pylint: disable=g-import-not-at-top
from avvp_jax import checkpoint  # pylint: disable=g-import-not-at-top
from avvp_jax import sharding  # pylint: disable=g-import-not-at-top
from avvp_jax import state as state_lib  # pylint: disable=g-import-not-at-top


def _bytes_written(*directories):
  seen, total = set(), 0
  for directory in directories:
    for root, _, files in os.walk(directory):
      for name in files:
        info = os.stat(os.path.join(root, name))
        if info.st_ino not in seen:
          seen.add(info.st_ino)
          total += info.st_size
  return total


def epoch_saves(state, linked):
  """(blocking seconds, seconds to finalized, bytes) of one epoch's latest and best saves of `state`."""
  workdir = tempfile.mkdtemp(prefix="bench_saves_")
  try:
    with checkpoint.Checkpointer(workdir) as checkpointer:
      start = time.perf_counter()
      checkpointer.save(125, state, {"epoch": 1, "batches_done": 0})
      checkpointer.save_best(
          125, state, {"epoch": 1, "batches_done": 0}, {"per_seed": []}, same_as_latest=linked
      )
      blocking = time.perf_counter() - start
      checkpointer.wait_until_finished()
      total = time.perf_counter() - start
    written = _bytes_written(
        *(os.path.join(workdir, d) for d in (checkpoint.LATEST_DIRNAME, checkpoint.BEST_DIRNAME))
    )
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  return blocking, total, written


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="han")
  parser.add_argument("--repeats", type=int, default=7)
  args = parser.parse_args()
  config = state_lib.resolve_config(bench_train._config(args.config))  # pylint: disable=protected-access
  seeds = state_lib.run_seeds(config)
  mesh = sharding.make_mesh(num_seeds=len(seeds))
  model = state_lib.build_model(config)
  tx, _ = state_lib.make_optimizer(config, 125)
  state, _ = state_lib.create_train_state(config, model, tx, mesh, seeds)
  epoch_saves(state, False)  # warm-up: Orbax's first save sets up its threads and type handlers
  results = {False: [], True: []}
  for r in range(args.repeats):
    for linked in (False, True) if r % 2 else (True, False):
      results[linked].append(epoch_saves(state, linked))
  with open("/proc/loadavg") as f:
    load = " ".join(f.read().split()[:3])
  print(
      f"{args.config} train state, {args.repeats} alternated repeats, load average {load} (at the end)"
  )
  print("| best save | blocking s | to finalized s | MB written |")
  print("|---|---|---|---|")
  medians = {}
  for linked, rows in results.items():
    medians[linked] = np.median(np.array(rows), axis=0)
    blocking, total, written = medians[linked]
    print(
        f"| {'linked (now)' if linked else 'written again (before)'} | {blocking:.3f} | {total:.3f} "
        f"| {written / 1e6:.1f} |"
    )
  ratio = medians[False] / medians[True]
  print(
      f"before / now: blocking {ratio[0]:.2f}x, to finalized {ratio[1]:.2f}x, bytes {ratio[2]:.2f}x"
  )


if __name__ == "__main__":
  main()
