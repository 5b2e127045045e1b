"""Compares the jitted train-step time of the parsers at the papers' sizes: HAN, HAN+LEAP, MM-Pyramid,
MM-Pyramid+LEAP and LINK, each at fixed batches (default 16 and 32).

Run from the repository root:

  python bench/bench_models.py [--configs=han,leap,mmpyr,leap_mmpyr,link] [--batches=16,32] [--steps=10]

For each (config, batch): the full model of the config (width 512, the paper's heads/levels/blocks), its
loss and optimizer; one compile, then the median time of `--steps` train steps (forward, loss, backward, Adam
update) on device-resident random batches of the official feature shapes (VGGish [10, 128], pooled ResNet-152
[10, 2048], R(2+1)D-18 [10, 512]) with VALOR-style segment pseudo labels in the batch (the LEAP and LINK losses
then include their segment-level terms; HAN's ignores them). No input pipeline: see bench/bench_train.py for
that. Prints a markdown table; the numbers are for the machine it runs on (the devices JAX sees).
"""

import argparse
import importlib
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np

from avvp_jax import train  # pylint: disable=g-import-not-at-top
from avvp_jax.data import pseudo_labels  # pylint: disable=g-import-not-at-top

LLP_TRAIN_CLIPS = 10_000
DESCRIPTIONS = {
    "han": "HAN + MMIL",
    "leap": "HAN + LEAP",
    "mmpyr": "MM-Pyramid + MMIL",
    "leap_mmpyr": "MM-Pyramid + LEAP",
    "link": "LINK (TSAM, CMIM, HAN, PLSIM, MMIL)",
}


def _config(name, batch_size):
  config = importlib.import_module(f"configs.{name}").get_config()
  config.unlock()
  config.batch_size = batch_size
  return config


def _random_batch(config, rng):
  audio, frames, motion = train.dummy_inputs(config, batch_size=config.batch_size)
  size = config.batch_size
  batch = {"audio": rng.normal(size=audio.shape), "frames": rng.normal(size=frames.shape),
           "label": rng.random((size, 25)) < 0.1, "index": np.arange(size),
           pseudo_labels.AUDIO_BATCH_KEY: rng.random((size, 10, 25)) < 0.05,
           pseudo_labels.VISUAL_BATCH_KEY: rng.random((size, 10, 25)) < 0.05}
  if motion is not None:
    batch["motion"] = rng.normal(size=motion.shape)
  return {k: np.asarray(v, np.int32 if k == "index" else np.float32) for k, v in batch.items()}


def time_step(config, steps):
  """Compile time and median step time of `config`'s jitted train step on random device-resident batches."""
  mesh = train.make_mesh()
  model = train.build_model(config)
  tx, _ = train.make_optimizer(config, LLP_TRAIN_CLIPS // config.batch_size)
  state, abstract = train.create_train_state(config, model, tx, mesh, jax.random.key(0))
  step_fn = train.jit_train_step(train.make_train_step(config, model, tx), mesh, abstract)
  num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
  rng = np.random.default_rng(0)
  batches = [train.global_batch(mesh, _random_batch(config, rng)) for _ in range(2)]
  key = jax.random.key(1)
  start = time.perf_counter()
  state, metrics = step_fn(state, batches[0], key)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  times = []
  for i in range(steps):
    start = time.perf_counter()
    state, metrics = step_fn(state, batches[i % len(batches)], key)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  step_s = float(np.median(times))
  return dict(params_m=num_params / 1e6, compile_s=compile_s, step_ms=1e3 * step_s,
              clips_s=config.batch_size / step_s, epoch_s=LLP_TRAIN_CLIPS / (config.batch_size / step_s))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--configs", default=",".join(DESCRIPTIONS))
  parser.add_argument("--batches", default="16,32")
  parser.add_argument("--steps", type=int, default=10)
  args = parser.parse_args()
  print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind} ({jax.devices()[0].platform}), "
        f"{os.cpu_count()} CPU cores")
  rows = []
  for name in args.configs.split(","):
    for batch_size in (int(b) for b in args.batches.split(",")):
      row = dict(config=name, batch=batch_size, **time_step(_config(name, batch_size), args.steps))
      rows.append(row)
      print(row, flush=True)
  print()
  print("| config | model | params | batch | compile | train step | clips/s | 10k-clip epoch (steps only) |")
  print("|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['config']} | {DESCRIPTIONS.get(r['config'], r['config'])} | {r['params_m']:.2f}M | {r['batch']} "
          f"| {r['compile_s']:.1f} s | {r['step_ms']:.0f} ms | {r['clips_s']:.0f} | {r['epoch_s']:.0f} s |")


if __name__ == "__main__":
  main()
