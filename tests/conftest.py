"""pytest glue: absl flags are parsed once so `self.create_tempdir()` works, one JAX compilation cache
serves the whole session, its programs are compiled without LLVM's optimisations, and the session's temporary
files go to a fresh folder (`TEST_TMPDIR`, also TMPDIR), removed when the session ends.

Many tests train the same tiny programs (in this process and in launcher subprocesses, which inherit the
environment); a persistent compilation cache in a fresh folder per session compiles each only once. The
folder is new every session, so no executable outlives the code it was compiled from.
"""

import atexit
import functools
import gc
import os
import shutil
import tempfile

OPT_LEVEL_FLAG = "--xla_backend_optimization_level=0"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix="avvp_jax_test_xla_cache_")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
  atexit.register(functools.partial(shutil.rmtree, _CACHE, ignore_errors=True))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
# The suite's programs are compiled far more than they run (a micro model's train step runs 8 times), so they
# are compiled without LLVM's optimisations: leap:tiny's training takes 19 s of CPU instead of 41 s.
# XLA's own (HLO) passes still run; results move by float rounding only (about 1e-7 relative), as between
# machines. Launcher subprocesses inherit the flag (tests/launch_env.py keeps it), so a run continued in a
# subprocess stays bit for bit the same program.
if OPT_LEVEL_FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {OPT_LEVEL_FLAG}".strip()
# Tests keep fixtures under absltest's default folder (TEST_TMPDIR, else /tmp/absl_testing, shared by every
# run on the machine): a fresh one per session, so no fixture of an earlier run or an older commit is reused.
# pytest-xdist's workers inherit it from the controlling process, as they do the cache.
if "TEST_TMPDIR" not in os.environ:
  _TMP = tempfile.mkdtemp(prefix="avvp_jax_test_tmp_")
  os.environ["TEST_TMPDIR"] = _TMP
  atexit.register(functools.partial(shutil.rmtree, _TMP, ignore_errors=True))
# Every other temporary file of the session goes there too (tests' `tempfile.mkdtemp()` fixtures, launcher
# subprocesses through TMPDIR), so a run leaves nothing behind in /tmp.
os.environ["TMPDIR"] = os.environ["TEST_TMPDIR"]
tempfile.tempdir = os.environ["TEST_TMPDIR"]

from absl import flags  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
  """Each test file's compiled programs and traces go when the file ends: a worker that runs many files
  otherwise keeps every one of them (about 7 GB by the end of a full run). A later file that needs one again
  loads it from the session's persistent cache."""
  yield
  # Imported here, after the file ran: this module leaves JAX's first import to the tests (and its
  # environment settings with it).
  import jax  # pylint: disable=g-import-not-at-top

  jax.clear_caches()
  gc.collect()
