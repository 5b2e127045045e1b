"""N seeds in one program against N runs one after another, and the mean ± std table of any config.

Run from the repository root:

  python bench/bench_seeds.py --config=configs/han.py [--num_seeds=5] [--mode=both] [--root=/tmp/bench_seeds]
      [--set=num_epochs=2 --set=...]

Modes:
  together   one `launch/train.py --config.num_seeds=N` process (seeds S..S+N-1 in one jitted program),
             then `launch/evaluate.py` on the test split; prints the wall time of the training process
             and the table of the 10 metrics: mean ± std over the seeds, and the seed ensemble, for the
             validation (last epoch) and test splits (test: each replica's best validation state).
  separate   N `launch/train.py --config.seed=s` processes, one after another (the same config and
             seeds); prints their total wall time and each run's last validation segment-level Type@AV
             beside the matching replica of the together run (when that run is in --root).
  both       together, then separate, then the ratio of the wall times.

Wall times are whole processes (Python start, dataset, compilation, training, validation, checkpoints),
what a user waits for. `--set=key=value` passes `--config.key=value` to every run. Without
`config.data.features_dir` the runs use the embedded SYNTHETIC data, and the table says so. The numbers
are for the machine it runs on.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from avvp_jax.tasks.llp import metrics  # pylint: disable=g-import-not-at-top,wrong-import-position

SUMMARY = re.compile(r"validation \(\d+ clips, [\d.]+s\): (.*)$")
PER_SEED = re.compile(r"validation segment/type per seed: (.*)$")


def _run(command: list[str], log_path: str) -> float:
  """Runs a launcher to completion (its output to `log_path`); returns its wall time in seconds."""
  start = time.perf_counter()
  with open(log_path, "w") as log:
    done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False)
  seconds = time.perf_counter() - start
  if done.returncode != 0:
    raise SystemExit(f"error: {' '.join(command)} exited with {done.returncode}: see {log_path}")
  return seconds


def _last_validation(log_path: str, pattern: re.Pattern[str] = SUMMARY) -> dict[str, str]:
  """The last validation line (of `pattern`) a training log holds, as {key: value text}."""
  lines = [m.group(1) for m in map(pattern.search, open(log_path).read().splitlines()) if m]
  if not lines:
    raise SystemExit(f"error: no validation line in {log_path}")
  return dict(item.split("=", 1) for item in lines[-1].split(", "))


def _train_command(args, workdir: str, *flags: str) -> list[str]:
  return [
      sys.executable,
      os.path.join("launch", "train.py"),
      f"--config={args.config}",
      f"--workdir={workdir}",
      *(f"--config.{item}" for item in args.set),
      *flags,
  ]


def together(args) -> float:
  workdir = os.path.join(args.root, "together")
  seconds = _run(
      _train_command(
          args, workdir, f"--config.seed={args.first_seed}", f"--config.num_seeds={args.num_seeds}"
      ),
      os.path.join(args.root, "together_train.log"),
  )
  _run(
      [
          sys.executable,
          os.path.join("launch", "evaluate.py"),
          f"--workdir={workdir}",
          "--split=test",
      ],
      os.path.join(args.root, "together_evaluate.log"),
  )
  seed = args.first_seed
  with open(os.path.join(workdir, "eval_test.json")) as f:
    test = json.load(f)
  val = _last_validation(os.path.join(args.root, "together_train.log"))
  print(
      f"\n{args.num_seeds} seeds ({seed}..{seed + args.num_seeds - 1}) in one program: {seconds:.0f} s "
      f"(whole training process); data: {test['data']}\n"
  )
  print(
      "| metric | validation, last epoch (mean ± std) | test (mean ± std) | test, seed ensemble |"
  )
  print("|---|---|---|---|")
  for key in metrics.KEYS:
    print(
        f"| {key} | {val[key].replace('±', ' ± ')} | {test[key]:.2f} ± {test['std'][key]:.2f} "
        f"| {test['ensemble'][key]:.2f} |"
    )
  print(
      "\nper seed, test segment/type: "
      + ", ".join(f"{e['seed']}: {e['segment/type']:.2f}" for e in test["per_seed"])
  )
  return seconds


def separate(args) -> float:
  together_log = os.path.join(args.root, "together_train.log")
  together_val = _last_validation(together_log, PER_SEED) if os.path.isfile(together_log) else None
  total = 0.0
  seed0 = args.first_seed
  for k in range(args.num_seeds):
    seed = seed0 + k
    log_path = os.path.join(args.root, f"separate_{seed}_train.log")
    seconds = _run(
        _train_command(args, os.path.join(args.root, f"separate_{seed}"), f"--config.seed={seed}"),
        log_path,
    )
    total += seconds
    alone = _last_validation(log_path)["segment/type"]
    note = ""
    if together_val is not None:
      note = f"; replica {seed} of the one-program run: {together_val[str(seed)]}"
    print(
        f"seed {seed} alone: {seconds:.0f} s, last validation segment/type {alone}{note}",
        flush=True,
    )
  print(f"\n{args.num_seeds} separate runs one after another: {total:.0f} s")
  return total


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/han.py")
  parser.add_argument("--num_seeds", type=int, default=5)
  parser.add_argument(
      "--first_seed", type=int, default=0, help="config.seed of the runs (the first seed)"
  )
  parser.add_argument("--mode", choices=("together", "separate", "both"), default="both")
  parser.add_argument(
      "--root", default="/tmp/bench_seeds", help="workdirs and logs; must not hold old runs"
  )
  parser.add_argument(
      "--set", action="append", default=[], help="key=value: --config.key=value for every run"
  )
  args = parser.parse_args()
  if os.path.isdir(args.root) and any(
      name.startswith(("together", "separate_")) for name in os.listdir(args.root)
  ):
    raise SystemExit(
        f"error: {args.root} holds earlier runs (they would resume): pass a fresh --root."
    )
  os.makedirs(args.root, exist_ok=True)
  print(f"{os.cpu_count()} CPU cores; config {args.config} {' '.join(args.set)}", flush=True)
  together_s = together(args) if args.mode in ("together", "both") else None
  separate_s = separate(args) if args.mode in ("separate", "both") else None
  if together_s and separate_s:
    print(
        f"\n{args.num_seeds} seeds: one program {together_s:.0f} s, one after another {separate_s:.0f} s: "
        f"{separate_s / together_s:.2f}x"
    )


if __name__ == "__main__":
  main()
