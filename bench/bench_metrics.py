"""Times the AVVP metrics on the whole LLP test set (1,200 clips) beside the official per-video loop.

Run from the repository root:

  python bench/bench_metrics.py

Labels: the 1,200 real test clips' dense audio and visual labels, from the packaged LLP annotations
(`avvp_jax.tasks.llp.annotations.load_split("test")`). Predictions are SIMULATED: the same labels perturbed
(seconds flipped, clips shifted by a second; `tests/metrics_test.py:_perturb`), so the event structure is
realistic; no model is run.

"official loop": `tests/metrics_test.py:official_loop_scores`, the numpy code of YapengTian/AVVP-ECCV20
(`utils/eval_metrics.py` `segment_level` + `event_level`, called once per video as `main_avvp.py:eval`
does), without the model forward and the per-video pandas look-ups of the ground truth, which the official
loop also runs (so its real cost is higher). "ours": `metrics.parsing_scores` on the same numpy arrays:
shape checks, one jitted call (scores and value checks), one transfer back; timed after compilation. The
compile time is the first call's time (tracing + XLA compilation + one run), reported on its own.
"""

import os
import pathlib
import sys
import time

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from avvp_jax.tasks.llp import metrics  # pylint: disable=g-import-not-at-top
from avvp_jax.tasks.llp import annotations  # pylint: disable=g-import-not-at-top
import metrics_test  # pylint: disable=g-import-not-at-top
import timing  # pylint: disable=g-import-not-at-top  (bench/, the script's folder)

_OURS_REPEATS = 50
_OFFICIAL_REPEATS = 3


def main():
  split, _ = annotations.load_split("test")
  rng = np.random.default_rng(0)
  perturb = metrics_test._perturb  # pylint: disable=protected-access
  labels = (
      perturb(rng, split.audio_labels),
      perturb(rng, split.visual_labels),
      split.audio_labels,
      split.visual_labels,
  )

  start = time.perf_counter()
  ours = metrics.parsing_scores(*labels)
  compile_s = time.perf_counter() - start
  ours_s = timing.median_seconds(lambda: metrics.parsing_scores(*labels), _OURS_REPEATS)
  official_s = timing.median_seconds(
      lambda: metrics_test.official_loop_scores(*labels), _OFFICIAL_REPEATS
  )
  official = metrics_test.official_loop_scores(*labels)
  worst = max(abs(ours[k] - official[k]) for k in metrics.KEYS)

  load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
  print(
      f"AVVP metrics on the {len(split)} LLP test clips x {annotations.NUM_SECONDS} s x "
      f"{annotations.NUM_CLASSES} classes: real dense labels, SIMULATED predictions (the labels perturbed)"
  )
  print(
      f"backend {jax.default_backend()} ({jax.devices()[0].device_kind}), {os.cpu_count()} CPU cores, "
      f"load average {load}"
  )
  print(f"{'what':<58}{'time':>12}")
  print(
      f"{'official per-video numpy loop, median of ' + str(_OFFICIAL_REPEATS):<58}{official_s * 1e3:>10.1f}ms"
  )
  print(
      f"{'ours: parsing_scores after compilation, median of ' + str(_OURS_REPEATS):<58}{ours_s * 1e3:>10.2f}ms"
  )
  print(f"{'ours: first call (trace + compile + run)':<58}{compile_s * 1e3:>10.1f}ms")
  print(
      f"ours is {official_s / ours_s:.0f}x faster than the official loop; largest difference: {worst:.2e} "
      "percentage points"
  )
  for key in metrics.KEYS:
    print(f"  {key:<22}{ours[key]:9.4f}  (official loop {official[key]:9.4f})")


if __name__ == "__main__":
  main()
