"""Data parallelism of the train step: 8 simulated devices, and two real processes on loopback.

Both run `tests/train_parallel_worker.py` in fresh processes (the device count must be set before JAX
starts) and compare against a single-device run of the same global batches: the 8-device test within the
worker (a 1-device and an 8-device mesh, for one seed and for two seeds on a 2 seed x 4 data mesh), the
2-process test (two seeds on a 2 x 2 mesh) against a run in this process. The steps use plain SGD so params
compare at 1e-5 (see `train_parallel_worker.make_config` for why not Adam).
"""

import os
import socket
import subprocess
import sys

from absl.testing import absltest
import jax
import numpy as np

import launch_env
import train_parallel_worker as worker
from avvp_jax import state as state_lib
from avvp_jax import sharding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "train_parallel_worker.py")
TIMEOUT_S = 240


def _env(**extra: str) -> dict[str, str]:
  env = dict(os.environ)
  launch_env.without_forced_devices(env)
  env.update(
      PYTHONPATH=ROOT + os.pathsep + env.get("PYTHONPATH", ""),
      TF_CPP_MIN_LOG_LEVEL="2",
      JAX_PLATFORMS="cpu",
      **extra,
  )
  return env


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class TrainDataParallelTest(absltest.TestCase):

  def test_eight_devices_equal_one_device(self):
    out = os.path.join(self.create_tempdir().full_path, "params.npz")
    result = subprocess.run(
        [sys.executable, WORKER, "devices", f"--out={out}"],
        cwd=ROOT,
        env=_env(XLA_FLAGS=launch_env.xla_flags(device_count=8)),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    arrays = np.load(out)
    for single, sharded in (("one", "eight"), ("seeds_one", "seeds_eight")):
      one = {k[len(single) + 1 :]: arrays[k] for k in arrays.files if k.startswith(single + "/")}
      eight = {
          k[len(sharded) + 1 :]: arrays[k] for k in arrays.files if k.startswith(sharded + "/")
      }
      self.assertNotEmpty(one)
      self.assertEqual(sorted(one), sorted(eight))
      np.testing.assert_allclose(
          arrays[f"{sharded}_losses"], arrays[f"{single}_losses"], rtol=1e-5, atol=1e-6
      )
      losses = arrays[f"{single}_losses"]  # [steps, seeds]
      self.assertFalse(np.allclose(losses[0], losses[-1]))  # the steps learn
      for key in one:
        np.testing.assert_allclose(
            eight[key], one[key], rtol=1e-5, atol=1e-5, err_msg=f"{sharded} {key}"
        )
    # The two replicas differ (their own initialisation and batches).
    self.assertFalse(
        np.allclose(arrays["seeds_one_losses"][:, 0], arrays["seeds_one_losses"][:, 1])
    )

  def test_two_processes_equal_one_process(self):
    out = os.path.join(self.create_tempdir().full_path, "params.npz")
    port = _free_port()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                WORKER,
                "multihost",
                f"--out={out}",
                f"--process_id={i}",
                f"--port={port}",
            ],
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
      outputs = [p.communicate(timeout=TIMEOUT_S) for p in procs]
    finally:
      for p in procs:
        if p.poll() is None:
          p.kill()
          p.wait()
    for i, (p, (_, stderr)) in enumerate(zip(procs, outputs)):
      self.assertEqual(p.returncode, 0, f"process {i}: {stderr[-3000:]}")

    config = worker.make_config()
    ref_params, ref_losses = worker.run_steps(
        config, sharding.make_mesh(jax.devices()[:1], num_seeds=2), seeds=worker.SEEDS
    )
    arrays = np.load(out)
    np.testing.assert_allclose(arrays["losses"], ref_losses, rtol=1e-5, atol=1e-6)
    ref = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_leaves_with_path(ref_params)}
    got = {k[len("params/") :]: arrays[k] for k in arrays.files if k.startswith("params/")}
    self.assertEqual(sorted(got), sorted(ref))
    for key in ref:
      np.testing.assert_allclose(got[key], ref[key], rtol=1e-5, atol=1e-5, err_msg=key)
    # The steps changed the params (the comparison is not of two untouched initialisations).
    init_params, _ = _initial_params(config)
    self.assertTrue(any(not np.allclose(ref[k], init_params[k]) for k in ref))


def _initial_params(config):
  model = state_lib.build_model(config)
  tx, _ = state_lib.make_optimizer(config, 2)
  state, _ = state_lib.create_train_state(
      config, model, tx, sharding.make_mesh(jax.devices()[:1], num_seeds=2), worker.SEEDS
  )
  return {
      jax.tree_util.keystr(p): np.asarray(v)
      for p, v in jax.tree_util.tree_leaves_with_path(state.params)
  }, state


if __name__ == "__main__":
  absltest.main()
