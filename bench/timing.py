"""The benchmarks' one timer: the median wall time of repeated calls (`python bench/<script>.py` puts this
folder on the path, so a script imports it as `timing`)."""

import statistics
import time
from typing import Callable


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 0) -> float:
  """The median seconds of `repeats` timed calls of `fn()`, after `warmup` untimed ones (compiles, caches)."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)
