"""Times the AVVP metrics on a whole LLP test set (1,200 clips), against the plain-Python oracle.

Run from the repository root:

  python bench/bench_metrics.py

The predictions are the real test set's dense labels, perturbed (seconds flipped, events shifted), so
the event structure is realistic. Reports the compile time, the steady-state time of `parsing_scores`
(host checks + one jitted call + transfer) and of the jitted core alone, and the time of the oracle in
tests/metrics_test.py (one clip, class and event at a time, as the official code does).
"""

import os
import pathlib
import sys
import time

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from avvp_jax import metrics  # pylint: disable=g-import-not-at-top
from avvp_jax.data import annotations  # pylint: disable=g-import-not-at-top
import metrics_test  # pylint: disable=g-import-not-at-top


def _median_seconds(fn, repeats):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def main():
  split, _ = annotations.load_split("test")
  rng = np.random.default_rng(0)
  labels = (metrics_test._perturb(rng, split.audio_labels), metrics_test._perturb(rng, split.visual_labels),  # pylint: disable=protected-access
            split.audio_labels, split.visual_labels)
  device_labels = [jax.device_put(x) for x in labels]
  mask = jax.device_put(np.ones(len(split), np.float32))

  start = time.perf_counter()
  jax.block_until_ready(metrics._score_sums(*device_labels, mask))  # pylint: disable=protected-access
  compile_s = time.perf_counter() - start
  metrics.parsing_scores(*labels)  # warm the host-side checks too

  core_s = _median_seconds(
      lambda: jax.block_until_ready(metrics._score_sums(*device_labels, mask)), repeats=20)  # pylint: disable=protected-access
  full_s = _median_seconds(lambda: metrics.parsing_scores(*labels), repeats=20)
  oracle_s = _median_seconds(lambda: metrics_test.oracle_scores(*labels), repeats=3)

  ours = metrics.parsing_scores(*labels)
  reference = metrics_test.oracle_scores(*labels)
  worst = max(abs(ours[k] - reference[k]) for k in metrics.KEYS)

  print(f"AVVP metrics on {len(split)} clips x {annotations.NUM_SECONDS} s x {annotations.NUM_CLASSES} "
        f"classes; backend {jax.default_backend()} ({jax.devices()[0].device_kind}), "
        f"{os.cpu_count()} CPU cores")
  print(f"{'what':<44}{'time':>12}")
  print(f"{'compile (first jitted call)':<44}{compile_s * 1e3:>10.1f}ms")
  print(f"{'jitted core (_score_sums), median of 20':<44}{core_s * 1e3:>10.2f}ms")
  print(f"{'parsing_scores (checks+core+fetch), median':<44}{full_s * 1e3:>10.2f}ms")
  print(f"{'plain-Python oracle, median of 3':<44}{oracle_s * 1e3:>10.1f}ms")
  print(f"speed-up of parsing_scores over the oracle: {oracle_s / full_s:.0f}x; "
        f"largest difference: {worst:.2e} percentage points")
  for key in metrics.KEYS:
    print(f"  {key:<22}{ours[key]:9.4f}  (oracle {reference[key]:9.4f})")


if __name__ == "__main__":
  main()
