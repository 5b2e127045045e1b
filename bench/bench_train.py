"""Times training of HAN and LEAP at the papers' sizes: the jitted train step, an epoch with input, or an epoch
on device-resident data (the GPU measurement, bench/gpu.sh).

Run from the repository root:

  python bench/bench_train.py [--configs=han,leap] [--steps=20] [--input_steps=40]
  python bench/bench_train.py --device_resident [--configs=han,leap] [--epoch_clips=10000] [--num_seeds=1,5]

Default mode, for each config (full model size, the paper's batch):
  * step: compile time, then the median time of `--steps` jitted train steps on device-resident random
    batches of the real feature shapes -> clips/s of the step alone, the step's FLOPs per clip from XLA's cost
    analysis of the compiled program, and the achieved GFLOP/s (FLOPs per step / median step time). The
    peak these compare with, and where the time goes: bench/bench_flops.py;
  * epoch with input: `--input_steps` steps fed by the real input path (`run_data.prepare_run` over the embedded
    synthetic data: tf.data reading, per-host batching, `global_batch`), timed end to end and
    extrapolated to one LLP epoch of 10,000 clips (stated as an extrapolation in the table).

`--device_resident`, for each config and each `--num_seeds` N (one program of `config.num_seeds=N` replicas):
a whole epoch of `--epoch_clips` clips, ceil(clips / batch) steps with the last batch padded and masked as the
input pipeline pads it (`config.data.keep_partial_batch`), timed end to end after one compile step, with no
input pipeline: a few distinct random batches of the real shapes (and pseudo labels where the config reads
them) are placed on the device before the clock starts, and the loop fetches nothing until the epoch is
done. Prints steps/s, clips/s (all replicas), the epoch's seconds, FLOPs per clip and the achieved TFLOP/s.
This mode needs no TensorFlow (the GPU image has none): the trainer imports none, and the task's input
pipeline, which does, is never called.

Prints a markdown table. The numbers are for the machine it runs on (the devices JAX sees).
"""

import argparse
import importlib
import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # pylint: disable=g-import-not-at-top
import numpy as np

LLP_TRAIN_CLIPS = 10_000


def _libs():
  """The trainer's modules, imported on first use (they import no TensorFlow: the task reads its data lazily)."""
  from avvp_jax import sharding  # pylint: disable=g-import-not-at-top
  from avvp_jax import state as state_lib  # pylint: disable=g-import-not-at-top
  from avvp_jax import train  # pylint: disable=g-import-not-at-top

  return state_lib, sharding, train


def _config(name, **overrides):
  config = importlib.import_module(f"configs.{name}").get_config()
  config.unlock()
  for key, value in overrides.items():
    config[key] = value
  return config


def _setup(config):
  state_lib, sharding, train = _libs()
  seeds = state_lib.run_seeds(config)
  mesh = sharding.make_mesh(num_seeds=len(seeds))
  model = state_lib.build_model(config)
  tx, _ = state_lib.make_optimizer(config, LLP_TRAIN_CLIPS // config.batch_size)
  state, abstract = state_lib.create_train_state(config, model, tx, mesh, seeds)
  step_fn = train.jit_train_step(train.make_train_step(config, model, tx), mesh, abstract)
  num_params = sum(int(np.prod(x.shape[1:])) for x in jax.tree.leaves(state.params))
  return mesh, state, step_fn, num_params


def random_batch(config, rng, with_pseudo_labels=None, num_real=None):
  """A host training batch of random features in the config's input shapes, as the input pipeline yields it.

  Keys and dtypes are the pipeline's (`audio`, `frames`, (`motion`), `label`, `index` int32, `mask` float32,
  and VALOR-style segment pseudo labels when `with_pseudo_labels`, which defaults to whether the config reads
  them, `config.data.pseudo_labels`). With `num_real` < batch size, it is a padded last batch: the rows from
  `num_real` on are zeros with `mask` 0 and `index` -1.
  """
  state_lib, _, _ = _libs()
  if with_pseudo_labels is None:
    with_pseudo_labels = bool(config.data.pseudo_labels)
  size = config.batch_size
  num_real = size if num_real is None else num_real
  audio, frames, motion = state_lib.dummy_inputs(config, batch_size=size)
  batch = {
      "audio": rng.normal(size=audio.shape),
      "frames": rng.normal(size=frames.shape),
      "label": (rng.random((size, 25)) < 0.1),
  }
  if with_pseudo_labels:
    from avvp_jax.tasks.llp import batch_keys  # pylint: disable=g-import-not-at-top

    for key in batch_keys.PSEUDO_LABELS:
      batch[key] = rng.random((size, 10, 25)) < 0.05
  if motion is not None:
    batch["motion"] = rng.normal(size=motion.shape)
  batch = {k: np.asarray(v, np.float32) for k, v in batch.items()}
  for value in batch.values():
    value[num_real:] = 0
  batch["mask"] = (np.arange(size) < num_real).astype(np.float32)
  batch["index"] = np.where(np.arange(size) < num_real, np.arange(size), -1).astype(np.int32)
  return batch


def _stack(batches):
  """Per-seed host batches stacked on a leading seed axis."""
  return {key: np.stack([b[key] for b in batches]) for key in batches[0]}


def seed_batch(mesh, config, rng, num_seeds, with_pseudo_labels=None, num_real=None):
  """A global `[S, B, ...]` training batch of random clips on the devices of `mesh`."""
  _, sharding, _ = _libs()
  return sharding.global_batch(
      mesh,
      _stack([random_batch(config, rng, with_pseudo_labels, num_real) for _ in range(num_seeds)]),
      seeds=True,
  )


def step_cost(step_fn, state, batch):
  """XLA's cost analysis of the compiled step for these arguments (per step, all replicas).

  At jax 0.10.2 `Compiled.cost_analysis()` is one dict (`flops`, `transcendentals`, `bytes accessed`, and
  per-operand `bytes accessed0{}`... and `utilization..` entries); older releases returned a list of such dicts,
  one per program. After a first call of `step_fn` the lowering and compilation come from jit's cache.
  """
  analysis = step_fn.lower(state, batch).compile().cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return {
      key: float(analysis.get(key, 0.0)) for key in ("flops", "transcendentals", "bytes accessed")
  }


def time_step(config, steps, with_pseudo_labels=None):
  """Compile time, median wall and process-CPU time of `config`'s jitted step on device-resident batches,
  and its FLOPs (XLA's count) per clip and per second."""
  mesh, state, step_fn, num_params = _setup(config)
  state_lib, _, _ = _libs()
  rng = np.random.default_rng(0)
  num_seeds = len(state_lib.run_seeds(config))
  batches = [seed_batch(mesh, config, rng, num_seeds, with_pseudo_labels) for _ in range(4)]
  start = time.perf_counter()
  state, metrics = step_fn(state, batches[0])
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  cost = step_cost(step_fn, state, batches[0])
  times, cpu_times = [], []
  for i in range(steps):
    start, cpu_start = time.perf_counter(), time.process_time()
    state, metrics = step_fn(state, batches[i % len(batches)])
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
    cpu_times.append(time.process_time() - cpu_start)
  step_s = float(np.median(times))
  clips = config.batch_size * num_seeds  # over all replicas
  return dict(
      params_m=num_params / 1e6,
      compile_s=compile_s,
      step_ms=1e3 * step_s,
      cpu_ms=1e3 * float(np.median(cpu_times)),
      step_clips_s=clips / step_s,
      epoch_s=LLP_TRAIN_CLIPS / (config.batch_size / step_s),
      flops_per_step=cost["flops"],
      mflop_per_clip=cost["flops"] / clips / 1e6,
      gflop_s=cost["flops"] / step_s / 1e9,
  )


def time_input_epoch(config, steps):
  """Steps through the real input path; returns measured clips/s and the extrapolated 10k-clip epoch."""
  from avvp_jax.tasks.llp import run_data  # pylint: disable=g-import-not-at-top  (TensorFlow: only this mode)

  state_lib, sharding, _ = _libs()
  mesh, state, step_fn, _ = _setup(config)
  config = state_lib.resolve_config(config)
  seeds = state_lib.run_seeds(config)
  data = run_data.prepare_run(config)
  iterator = data.seed_train_batches(seeds, 0)
  state, metrics = step_fn(
      state, sharding.global_batch(mesh, next(iterator), seeds=True)
  )  # compile + first read
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
  return dict(
      input_clips_s=clips_s,
      epoch_s=LLP_TRAIN_CLIPS / clips_s,
      input_steps=done,
      data=data.description,
  )


def time_resident_epoch(config, epoch_clips, num_distinct=4):
  """One epoch of `epoch_clips` clips per replica on device-resident random batches, timed end to end.

  ceil(epoch_clips / batch) steps; the last batch is padded and masked when the batch does not divide the
  clips (as `config.data.keep_partial_batch` trains it). The first (compile) step runs before the clock.
  """
  state_lib, _, _ = _libs()
  mesh, state, step_fn, num_params = _setup(config)
  num_seeds = len(state_lib.run_seeds(config))
  size = config.batch_size
  steps = math.ceil(epoch_clips / size)
  last_real = epoch_clips - (steps - 1) * size
  rng = np.random.default_rng(0)
  batches = [seed_batch(mesh, config, rng, num_seeds) for _ in range(min(num_distinct, steps))]
  last = seed_batch(mesh, config, rng, num_seeds, num_real=last_real) if last_real < size else None
  jax.block_until_ready((batches, last))
  start = time.perf_counter()
  state, metrics = step_fn(state, batches[0])
  jax.block_until_ready((state, metrics))
  compile_s = time.perf_counter() - start
  cost = step_cost(step_fn, state, batches[0])
  start = time.perf_counter()
  for i in range(steps):
    batch = last if (last is not None and i == steps - 1) else batches[i % len(batches)]
    state, metrics = step_fn(state, batch)
  jax.block_until_ready((state, metrics))
  epoch_s = time.perf_counter() - start
  loss = np.asarray(jax.device_get(metrics["loss"]))
  if not np.isfinite(loss).all():
    raise RuntimeError(f"non-finite loss after the epoch: {loss}")
  return dict(
      params_m=num_params / 1e6,
      seeds=num_seeds,
      batch=size,
      compile_s=compile_s,
      steps=steps,
      epoch_s=epoch_s,
      steps_s=steps / epoch_s,
      clips_s=epoch_clips * num_seeds / epoch_s,
      mflop_per_clip=cost["flops"] / (size * num_seeds) / 1e6,
      tflop_s=cost["flops"] * steps / epoch_s / 1e12,
  )


def _devices_line():
  device = jax.devices()[0]
  return (
      f"devices: {jax.device_count()} x {device.device_kind} ({device.platform}), {os.cpu_count()} CPU cores; "
      f"jax {jax.__version__}"
  )


def main_resident(args):
  print(_devices_line(), flush=True)
  rows = []
  for name in args.configs.split(","):
    for num_seeds in (int(n) for n in args.num_seeds.split(",")):
      config = _config(name, num_seeds=num_seeds)
      row = dict(config=name, **time_resident_epoch(config, args.epoch_clips))
      rows.append(row)
      print(row, flush=True)
  print()
  print(
      f"{args.epoch_clips:,}-clip epochs on device-resident random batches (no input pipeline), "
      f"{_devices_line()}:"
  )
  print()
  print(
      "| config | seeds | batch | compile | steps | epoch | steps/s | clips/s (all seeds) | FLOPs/clip "
      "| achieved TFLOP/s |"
  )
  print("|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(
        f"| {r['config']} | {r['seeds']} | {r['batch']} | {r['compile_s']:.1f} s | {r['steps']} "
        f"| {r['epoch_s']:.2f} s | {r['steps_s']:.0f} | {r['clips_s']:,.0f} | {r['mflop_per_clip']:.0f} M "
        f"| {r['tflop_s']:.3f} |"
    )
  print()
  for r in rows:  # N seeds in one program against N one-seed epochs one after another
    one = next((o for o in rows if o["config"] == r["config"] and o["seeds"] == 1), None)
    if one is not None and r["seeds"] > 1:
      print(
          f"{r['config']}: {r['seeds']} seeds in one program {r['epoch_s']:.2f} s per epoch, against "
          f"{r['seeds']} x {one['epoch_s']:.2f} s = {r['seeds'] * one['epoch_s']:.2f} s one after another: "
          f"{r['seeds'] * one['epoch_s'] / r['epoch_s']:.2f}x"
      )


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--configs", default="han,leap")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--input_steps", type=int, default=40)
  parser.add_argument(
      "--device_resident",
      action="store_true",
      help="time whole epochs on device-resident random batches (see the module docstring)",
  )
  parser.add_argument(
      "--epoch_clips", type=int, default=LLP_TRAIN_CLIPS, help="--device_resident: clips per epoch"
  )
  parser.add_argument(
      "--num_seeds", default="1", help="--device_resident: comma-separated config.num_seeds values"
  )
  args = parser.parse_args()
  if args.device_resident:
    main_resident(args)
    return
  print(_devices_line())
  rows = []
  for name in args.configs.split(","):
    config = _config(name)
    row = dict(config=name, batch=config.batch_size, **time_step(config, args.steps))
    if args.input_steps > 0:
      row.update(time_input_epoch(config, args.input_steps))
    rows.append(row)
    print(row, flush=True)
  print()
  print(
      "| config | params | batch | compile | step | step clips/s | FLOPs/clip | GFLOP/s | with input clips/s "
      "| 10k-clip epoch |"
  )
  print("|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    epoch = (
        f"{r['epoch_s']:.0f} s (extrapolated from {r['input_steps']} steps)"
        if "input_steps" in r
        else "-"
    )
    with_input = f"{r['input_clips_s']:.0f}" if "input_clips_s" in r else "-"
    print(
        f"| {r['config']} | {r['params_m']:.2f}M | {r['batch']} | {r['compile_s']:.1f} s | {r['step_ms']:.1f} ms "
        f"| {r['step_clips_s']:.0f} | {r['mflop_per_clip']:.0f} M | {r['gflop_s']:.0f} | {with_input} | {epoch} |"
    )


if __name__ == "__main__":
  main()
