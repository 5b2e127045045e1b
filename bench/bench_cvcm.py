"""Times CVCM's train step (configs/cvcm.py at the official sizes) with and without the decoder scoring the
cross-video pair rows, interleaved in one process.

Run from the repository root:

  python bench/bench_cvcm.py [--steps=6] [--repeats=3] [--batch=64] [--profile]

CVCM's step runs the model on 2B rows: the B clips of the batch, then each clip's audio with another clip's
visual streams (avvp_jax/tasks/llp/cvcm_mix.py). Its loss reads the pair rows' encoded segments and MMIL
temporal-attention logits only, so the trainer now asks the decoder to score the first B rows alone
(`scored_rows`, the LLP task's guidance; avvp_jax/models/mmil.py); the class-token co-occurrence head, the
step's costliest part, then runs on B rows instead of 2B. "before" is the same jitted trainer step
(`train.make_train_step`, the mixer, the loss and Adam) with a model wrapper that drops `scored_rows`, i.e.
every row scored, as the trainer did before. Both run on the same device-resident random batches of the
official feature shapes (VGGish [10, 128], pooled ResNet-152 [10, 2048], R(2+1)D-18 [10, 512]) with
modality-level labels, after the warm-up epochs (the contrastive term on), alternating `--steps` steps of each
`--repeats` times. Prints XLA's FLOPs per step of each compiled program, the median step time, clips/s and
the ratio. `--profile` (CPU) then traces 3 steps of the new step with `jax.profiler` and prints the XLA op
time per step by model part (the class-token layer, its projections, HAN's encoder, the embedding, the rest),
matmuls apart from other ops and dropout masks (bench/bench_flops.py reads the trace the same way). The
numbers are for the machine it runs on.
"""

import argparse
import os
import re
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

import bench_flops  # pylint: disable=g-import-not-at-top  (bench/ is the script's folder)
import bench_train  # pylint: disable=g-import-not-at-top

# Model parts by the op names' module paths, the first match winning.
PARTS = (
    ("decoder/class_tokens/av_class_encoder", "class-token layer (HAN layer over the 50 tokens)"),
    ("decoder/class_tokens", "class-token projections (fc_occ_class, fc_occ_prob)"),
    ("encoder", "HAN encoder (2B rows)"),
    ("embed", "input embedding (2B rows)"),
    ("decoder", "MMIL pooling"),
)


def _part(instruction: dict) -> str:
  op_name = instruction["op_name"]
  part = next((label for key, label in PARTS if key in op_name), "loss, optimizer update, the rest")
  if re.search(r"Dropout|_bernoulli|_uniform|threefry|random_bits", op_name):
    return f"{part}: dropout masks"
  return f"{part}: {'matmuls' if instruction['dot'] else 'other ops'}"


def profile(step, state, batches, steps=3):
  """Rows (part, ms per step) of XLA op time in a `jax.profiler` trace of `steps` steps, and the wall ms."""
  compiled = step.lower(state, batches[0]).compile()
  totals, wall_ms, _ = bench_flops.traced_op_ms(compiled, state, batches, steps, _part)
  return sorted(totals.items(), key=lambda kv: -kv[1]), wall_ms


class EveryRowScored:
  """The model as the trainer ran it before: `scored_rows` dropped, so the decoder scores all 2B rows."""

  def __init__(self, model):
    self.model = model

  def apply(self, variables, *args, scored_rows=None, **kwargs):
    del scored_rows
    return self.model.apply(variables, *args, **kwargs)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=6, help="steps of each variant per repeat")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--batch", type=int, default=64, help="clips per step (official 64)")
  parser.add_argument(
      "--steps_per_epoch", type=int, default=8, help="8: the 512-clip SYNTHETIC set"
  )
  parser.add_argument("--profile", action="store_true", help="then profile the new step (CPU)")
  args = parser.parse_args()

  from avvp_jax import sharding  # pylint: disable=g-import-not-at-top
  from avvp_jax import state as state_lib  # pylint: disable=g-import-not-at-top
  from avvp_jax import train  # pylint: disable=g-import-not-at-top
  from avvp_jax.tasks.llp import batch_keys  # pylint: disable=g-import-not-at-top
  from configs import cvcm  # pylint: disable=g-import-not-at-top

  print(
      f"devices: {jax.device_count()} x {jax.devices()[0].device_kind} ({jax.devices()[0].platform}), "
      f"{os.cpu_count()} CPU cores"
  )
  config = cvcm.get_config()
  config.unlock()
  config.batch_size = args.batch
  seeds = state_lib.run_seeds(config)
  mesh = sharding.make_mesh(num_seeds=len(seeds))
  model = state_lib.build_model(config)
  tx, _ = state_lib.make_optimizer(config, args.steps_per_epoch)
  state, abstract = state_lib.create_train_state(config, model, tx, mesh, seeds)
  # After the warm-up epochs: the contrastive term trains (the forward is the same during them).
  state = state.replace(step=state.step + config.loss.cvcm_warm_up_epochs * args.steps_per_epoch)
  steps = {
      name: train.jit_train_step(
          train.make_train_step(config, variant, tx, args.steps_per_epoch), mesh, abstract
      )
      for name, variant in (("before", EveryRowScored(model)), ("now", model))
  }

  rng = np.random.default_rng(0)
  batches = []
  for _ in range(2):
    host = bench_train.random_batch(config, rng, with_pseudo_labels=False)
    for key, keep in zip(batch_keys.MODALITY_LABELS, (0.8, 0.6)):
      host[key] = host["label"] * (rng.random(host["label"].shape) < keep).astype(np.float32)
    batches.append(sharding.global_batch(mesh, {k: v[None] for k, v in host.items()}, seeds=True))

  flops, states, times = {}, {}, {name: [] for name in steps}
  for name, step in steps.items():
    start = time.perf_counter()
    states[name], metrics = step(state, batches[0])
    jax.block_until_ready(metrics)
    flops[name] = bench_train.step_cost(step, state, batches[0])["flops"]
    print(
        f"{name}: compile + first step {time.perf_counter() - start:.1f} s, "
        f"{flops[name] / 1e9:.1f} GFLOP/step, loss {float(metrics['loss'][0]):.4f}",
        flush=True,
    )
  for repeat in range(args.repeats):
    for name, step in steps.items():
      for i in range(args.steps):
        start = time.perf_counter()
        states[name], metrics = step(states[name], batches[i % len(batches)])
        jax.block_until_ready(metrics)
        times[name].append(time.perf_counter() - start)
      print(
          f"repeat {repeat + 1}/{args.repeats} {name}: median {np.median(times[name][-args.steps:]):.2f} s/step",
          flush=True,
      )

  median = {name: float(np.median(t)) for name, t in times.items()}
  print()
  print("| variant | GFLOP per step | median step | clips/s | steps timed |")
  print("|---|---|---|---|---|")
  for name in steps:
    print(
        f"| {name} | {flops[name] / 1e9:.1f} | {median[name]:.2f} s | {args.batch / median[name]:.1f} "
        f"| {len(times[name])} |"
    )
  print(
      f"\nnow / before: {median['before'] / median['now']:.2f}x the clips per second, "
      f"{flops['before'] / flops['now']:.2f}x fewer FLOPs per step"
  )
  if args.profile:
    rows, wall_ms = profile(steps["now"], states["now"], batches)
    print(
        f"\nnow, profiled: {wall_ms:.0f} ms a step (wall), {sum(ms for _, ms in rows):.0f} ms of XLA op time"
    )
    print("| where | ms/step |\n|---|---|")
    for part, ms in rows:
      print(f"| {part} | {ms:.0f} |")


if __name__ == "__main__":
  main()
