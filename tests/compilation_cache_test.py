"""The launchers' persistent compilation cache: `evaluate.py` after training compiles nothing new.

Checked by counting JAX's own compile events (`jax.monitoring`) in the evaluating process: every program it
asks for must be a persistent-cache hit, i.e. the very executable the trainer compiled.
"""

import os
import re
import subprocess
import sys

from absl.testing import absltest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs a launcher (argv[1:]) and prints, at exit, the compile requests that went through the persistent
# cache, the hits among them, and the XLA compilations of the process (hits included).
_COUNTING = """
import atexit, collections, runpy, sys
from jax import monitoring
counts = collections.Counter()
monitoring.register_event_listener(lambda name, **kw: counts.update([name]))
monitoring.register_event_duration_secs_listener(lambda name, secs, **kw: counts.update([name]))
def report():
  print("COMPILES requests=%d hits=%d backend=%d" % (
      counts["/jax/compilation_cache/compile_requests_use_cache"],
      counts["/jax/compilation_cache/cache_hits"],
      counts["/jax/core/compile/backend_compile_duration"]), file=sys.stderr)
atexit.register(report)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _run(env, *argv):
  result = subprocess.run(
      [sys.executable, "-c", _COUNTING, *argv],
      cwd=ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=600,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  requests, hits, backend = map(
      int, re.search(r"COMPILES requests=(\d+) hits=(\d+) backend=(\d+)", result.stderr).groups()
  )
  return requests, hits, backend


class CompilationCacheTest(absltest.TestCase):

  def test_evaluate_after_training_loads_the_trainers_programs(self):
    env = dict(os.environ)
    env["JAX_COMPILATION_CACHE_DIR"] = self.create_tempdir().full_path  # a cache of this test's own
    env.pop(
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", None
    )  # the launchers' default: keep every program
    workdir = self.create_tempdir().full_path
    requests, hits, _ = _run(
        env, "launch/train.py", "--config=configs/han.py:tiny", f"--workdir={workdir}"
    )
    self.assertGreater(requests, hits)  # a fresh cache: the trainer compiles
    requests, hits, backend = _run(
        env, "launch/evaluate.py", f"--workdir={workdir}", "--split=test"
    )
    self.assertGreaterEqual(requests, 1)
    self.assertEqual((hits, backend), (requests, requests))  # every program a hit: nothing compiled


if __name__ == "__main__":
  absltest.main()
