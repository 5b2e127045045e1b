"""Times training of HAN and LEAP at the papers' sizes: the jitted train step, and an epoch with input.

Run from the repository root:

  python bench/bench_train.py [--configs=han,leap] [--steps=20] [--input_steps=40]

For each config (full model size, the paper's batch):
  * step: compile time, then the median time of `--steps` jitted train steps on device-resident random
    batches of the real feature shapes -> clips/s of the step alone;
  * epoch with input: `--input_steps` steps fed by the real input path (`run_data.prepare_run` over the embedded
    synthetic data: tf.data reading, per-host batching, `global_batch`), timed end to end and
    extrapolated to one LLP epoch of 10,000 clips (stated as an extrapolation in the table).
Prints a table. The numbers are for the machine it runs on (the devices JAX sees).
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np

from avvp_jax import state as state_lib  # pylint: disable=g-import-not-at-top
from avvp_jax import sharding  # pylint: disable=g-import-not-at-top
from avvp_jax.data import run_data  # pylint: disable=g-import-not-at-top
from avvp_jax import train  # pylint: disable=g-import-not-at-top

LLP_TRAIN_CLIPS = 10_000


def _config(name):
  import importlib  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f"configs.{name}").get_config()
  config.unlock()
  return config


def _setup(config):
  seeds = state_lib.run_seeds(config)
  mesh = sharding.make_mesh(num_seeds=len(seeds))
  model = state_lib.build_model(config)
  tx, _ = state_lib.make_optimizer(config, LLP_TRAIN_CLIPS // config.batch_size)
  state, abstract = state_lib.create_train_state(config, model, tx, mesh, seeds)
  step_fn = train.jit_train_step(train.make_train_step(config, model, tx), mesh, abstract)
  num_params = sum(int(np.prod(x.shape[1:])) for x in jax.tree.leaves(state.params))
  return mesh, state, step_fn, num_params


def random_batch(config, rng, with_pseudo_labels=False):
  """A host batch of random features in the config's input shapes (and VALOR-style pseudo labels)."""
  audio, frames, motion = state_lib.dummy_inputs(config, batch_size=config.batch_size)
  batch = {"audio": rng.normal(size=audio.shape), "frames": rng.normal(size=frames.shape),
           "label": (rng.random((config.batch_size, 25)) < 0.1),
           "index": np.arange(config.batch_size)}
  if with_pseudo_labels:
    from avvp_jax.data import pseudo_labels  # pylint: disable=g-import-not-at-top
    for key in (pseudo_labels.AUDIO_BATCH_KEY, pseudo_labels.VISUAL_BATCH_KEY):
      batch[key] = rng.random((config.batch_size, 10, 25)) < 0.05
  if motion is not None:
    batch["motion"] = rng.normal(size=motion.shape)
  return {k: np.asarray(v, np.int32 if k == "index" else np.float32) for k, v in batch.items()}


def _stack(batches):
  """Per-seed host batches stacked on a leading seed axis."""
  return {key: np.stack([b[key] for b in batches]) for key in batches[0]}


def time_step(config, steps, with_pseudo_labels=False):
  """Compile time and median time of `config`'s jitted train step on device-resident random batches."""
  mesh, state, step_fn, num_params = _setup(config)
  rng = np.random.default_rng(0)
  num_seeds = len(state_lib.run_seeds(config))
  batches = [sharding.global_batch(mesh, _stack([random_batch(config, rng, with_pseudo_labels)
                                              for _ in range(num_seeds)]), seeds=True) for _ in range(4)]
  start = time.perf_counter()
  state, metrics = step_fn(state, batches[0])
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  times = []
  for i in range(steps):
    start = time.perf_counter()
    state, metrics = step_fn(state, batches[i % len(batches)])
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  step_s = float(np.median(times))
  return dict(params_m=num_params / 1e6, compile_s=compile_s, step_ms=1e3 * step_s,
              step_clips_s=config.batch_size * num_seeds / step_s,  # over all replicas
              epoch_s=LLP_TRAIN_CLIPS / (config.batch_size / step_s))


def time_input_epoch(config, steps):
  """Steps through the real input path; returns measured clips/s and the extrapolated 10k-clip epoch."""
  mesh, state, step_fn, _ = _setup(config)
  config = state_lib.resolve_config(config)
  seeds = state_lib.run_seeds(config)
  data = run_data.prepare_run(config)
  iterator = data.seed_train_batches(seeds, 0)
  state, metrics = step_fn(state, sharding.global_batch(mesh, next(iterator), seeds=True))  # compile + first read
  jax.block_until_ready(metrics)
  done, start = 0, time.perf_counter()
  epoch = 0
  while done < steps:
    for host_batch in iterator:
      state, metrics = step_fn(state, sharding.global_batch(mesh, host_batch, seeds=True))
      done += 1
      if done >= steps:
        break
    epoch += 1
    iterator = data.seed_train_batches(seeds, epoch)
  jax.block_until_ready(metrics)
  seconds = time.perf_counter() - start
  clips_s = done * config.batch_size / seconds
  return dict(input_clips_s=clips_s, epoch_s=LLP_TRAIN_CLIPS / clips_s, input_steps=done,
              data=data.description)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--configs", default="han,leap")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--input_steps", type=int, default=40)
  args = parser.parse_args()
  print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind} ({jax.devices()[0].platform}), "
        f"{os.cpu_count()} CPU cores")
  rows = []
  for name in args.configs.split(","):
    config = _config(name)
    row = dict(config=name, batch=config.batch_size, **time_step(config, args.steps))
    if args.input_steps > 0:
      row.update(time_input_epoch(config, args.input_steps))
    rows.append(row)
    print(row, flush=True)
  print()
  print("| config | params | batch | compile | step | step clips/s | with input clips/s | 10k-clip epoch |")
  print("|---|---|---|---|---|---|---|---|")
  for r in rows:
    epoch = (f"{r['epoch_s']:.0f} s (extrapolated from {r['input_steps']} steps)" if "input_steps" in r else "-")
    with_input = f"{r['input_clips_s']:.0f}" if "input_clips_s" in r else "-"
    print(f"| {r['config']} | {r['params_m']:.2f}M | {r['batch']} | {r['compile_s']:.1f} s | {r['step_ms']:.1f} ms "
          f"| {r['step_clips_s']:.0f} | {with_input} | {epoch} |")


if __name__ == "__main__":
  main()
