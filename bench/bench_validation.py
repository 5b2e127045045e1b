"""Where a validation pass's time goes: the model's forward, the metric sums, the input and the host's share.

Run from the repository root:

  python bench/bench_validation.py [--config=han] [--eval_batch_sizes=64] [--repeats=7]

For each eval batch size: the run card's model (random init, the paper size) scored on the validation split of
the embedded SYNTHETIC LLP set (649 clips; `--features` for another folder in the official layout) as
`launch/train.py` scores it between epochs (`evaluate.run_evaluation` over `data.eval_batches`, the split kept
in memory after its first pass), and, on the same batches, each part alone: the jitted eval step on batches
already on the device, the forward alone, the metric sums (`evaluator.batch_sums`) alone on stored outputs,
`sharding.global_batch` (host batch to device), and the host's float64 totals and scores. Medians of
`--repeats` timed passes after one untimed pass (the compiles). Prints one table; the figures are for the
machine it runs on.
"""

import argparse
import importlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top

from avvp_jax import evaluate as evaluate_lib  # pylint: disable=g-import-not-at-top
from avvp_jax import sharding  # pylint: disable=g-import-not-at-top
from avvp_jax import state as state_lib  # pylint: disable=g-import-not-at-top
from avvp_jax import tasks  # pylint: disable=g-import-not-at-top
import timing  # pylint: disable=g-import-not-at-top  (bench/, the script's folder)


def time_validation(
    name: str, eval_batch_size: int, features: str, repeats: int
) -> dict[str, float]:
  """Seconds per validation pass of config `name` at `eval_batch_size`: the whole pass and each part."""
  config = importlib.import_module(f"configs.{name}").get_config()
  config.unlock()
  config.eval_batch_size = eval_batch_size
  if features:
    config.data.features_dir = features
    config.data.labels_dir = os.path.join(features, "labels")
  config = state_lib.resolve_config(config)
  seeds = state_lib.run_seeds(config)
  mesh = sharding.make_mesh(num_seeds=len(seeds))
  task = tasks.of(config)
  data = task.prepare_data(config)
  model = state_lib.build_model(config)
  tx, _ = state_lib.make_optimizer(config, data.steps_per_epoch)
  state, _ = state_lib.create_train_state(config, model, tx, mesh, seeds)
  evaluator, split = evaluate_lib.run_evaluators(config, task, task.meta(config))[
      evaluate_lib.VALIDATION
  ]
  eval_step = evaluate_lib.make_eval_step(
      evaluator, model, mesh, num_seeds=len(seeds), input_keys=task.input_keys
  )
  on_seeds = lambda fn: sharding.map_seeds(fn, len(seeds), (0, None))
  forward = jax.jit(
      on_seeds(
          lambda p, b: state_lib.apply_model(model, p, b, input_keys=task.input_keys, train=False)
      )
  )
  batch_sums = jax.jit(on_seeds(evaluator.batch_sums))

  host_batches = list(data.eval_batches(split))  # the first pass: read and kept
  device_batches = [sharding.global_batch(mesh, b) for b in host_batches]
  outputs = [forward(state.params, b) for b in device_batches]
  pending = [eval_step(state.params, b) for b in device_batches]
  jax.block_until_ready((outputs, pending))

  params = state.params
  parts = {
      "whole pass (run_evaluation)": lambda: evaluate_lib.run_evaluation(
          eval_step, evaluator, params, data.eval_batches(split), mesh
      ),
      "eval step, batches on device": lambda: jax.block_until_ready(
          [eval_step(params, b) for b in device_batches]
      ),
      "forward alone": lambda: jax.block_until_ready([forward(params, b) for b in device_batches]),
      "metric sums alone": lambda: jax.block_until_ready(
          [batch_sums(o, b) for o, b in zip(outputs, device_batches)]
      ),
      "input (global_batch)": lambda: jax.block_until_ready(
          [sharding.global_batch(mesh, b) for b in host_batches]
      ),
      "host totals and scores": lambda: evaluate_lib.scores_of_batch_sums(evaluator, pending),
  }
  out = {part: timing.median_seconds(fn, repeats, warmup=1) for part, fn in parts.items()}
  out["batches"] = len(host_batches)
  out["clips"] = data.num_eval_clips(split)
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="han")
  parser.add_argument("--eval_batch_sizes", default="64")
  parser.add_argument("--features", default="", help="an LLP features folder (default: SYNTHETIC)")
  parser.add_argument("--repeats", type=int, default=7)
  args = parser.parse_args()
  if not os.path.isfile(
      os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", f"{args.config}.py")
  ):
    parser.error(f"--config={args.config}: no configs/{args.config}.py")
  load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
  print(
      f"validation of configs/{args.config}.py ({jax.default_backend()}, {os.cpu_count()} CPU cores, "
      f"load average {load}); {'features ' + args.features if args.features else 'SYNTHETIC features'}"
  )
  for size in [int(s) for s in args.eval_batch_sizes.split(",")]:
    result = time_validation(args.config, size, args.features, args.repeats)
    print(
        f"eval batch {size}: {result['batches']} batches, {result['clips']} clips; "
        f"median of {args.repeats}:"
    )
    for part, seconds in result.items():
      if part not in ("batches", "clips"):
        print(f"  {part:<32}{seconds * 1e3:>9.1f} ms")


if __name__ == "__main__":
  main()
