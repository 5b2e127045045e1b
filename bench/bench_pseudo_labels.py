"""Start-up cost of the training clips' pseudo labels: read file by file, or from the build's stacked copy.

Run from the repository root:

  python bench/bench_pseudo_labels.py [--clips=2000] [--repeats=5]

Writes a SYNTHETIC pseudo-label folder of `--clips` clips in VALOR's layout (two `[10, 25]` `.npy` files per
clip, `pseudo_labels.write_pseudo_labels`) under /tmp, then times `pseudo_labels.load_pseudo_labels` as a
trainer's start calls it: the first start with a cache folder (every file read and checked, the stacked copy
written), then, alternated `--repeats` times, a start without the cache (file by file, as before) and one
reading the copy. Prints the medians and their ratio; the arrays of both ways are checked equal.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # pylint: disable=g-import-not-at-top

from avvp_jax.tasks.llp import pseudo_labels  # pylint: disable=g-import-not-at-top


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--clips", type=int, default=2000)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  n = args.clips
  work = tempfile.mkdtemp(prefix="bench_pseudo_labels_")
  try:
    root, cache = os.path.join(work, "labels"), os.path.join(work, "build")
    ids = [f"c{i:010d}" for i in range(n)]  # SYNTHETIC clip ids and labels
    rng = np.random.default_rng(0)
    audio, visual = ((rng.random((n, 10, 25)) < 0.05).astype(np.int64) for _ in range(2))
    pseudo_labels.write_pseudo_labels(root, ids, audio, visual, marker_text="SYNTHETIC")
    weak = np.maximum(audio.max(1), visual.max(1))
    start = time.perf_counter()
    pseudo_labels.load_pseudo_labels(root, ids, weak_labels=weak, cache_dir=cache)
    first = time.perf_counter() - start
    files, cached = [], []
    for r in range(args.repeats):
      for use_cache in (False, True) if r % 2 == 0 else (True, False):
        start = time.perf_counter()
        labels = pseudo_labels.load_pseudo_labels(
            root, ids, weak_labels=weak, cache_dir=cache if use_cache else None
        )
        (cached if use_cache else files).append(time.perf_counter() - start)
        np.testing.assert_array_equal(labels.audio, audio.astype(np.float32))
        np.testing.assert_array_equal(labels.visual, visual.astype(np.float32))
  finally:
    shutil.rmtree(work, ignore_errors=True)
  with open("/proc/loadavg") as f:
    load = " ".join(f.read().split()[:3])
  print(
      f"{n} clips (load average {load}): file by file {np.median(files):.3f} s, first start with the "
      f"copy written {first:.3f} s, from the copy {np.median(cached):.3f} s: "
      f"{np.median(files) / np.median(cached):.1f}x"
  )


if __name__ == "__main__":
  main()
