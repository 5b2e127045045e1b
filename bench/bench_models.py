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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top

import bench_train  # pylint: disable=g-import-not-at-top  (bench/ is the script's folder)

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


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--configs", default=",".join(DESCRIPTIONS))
  parser.add_argument("--batches", default="16,32")
  parser.add_argument("--steps", type=int, default=10)
  args = parser.parse_args()
  print(
      f"devices: {jax.device_count()} x {jax.devices()[0].device_kind} ({jax.devices()[0].platform}), "
      f"{os.cpu_count()} CPU cores"
  )
  rows = []
  for name in args.configs.split(","):
    for batch_size in (int(b) for b in args.batches.split(",")):
      row = dict(
          config=name,
          batch=batch_size,
          **bench_train.time_step(_config(name, batch_size), args.steps, with_pseudo_labels=True),
      )
      rows.append(row)
      print(row, flush=True)
  print()
  print(
      "| config | model | params | batch | compile | train step | clips/s | 10k-clip epoch (steps only) |"
  )
  print("|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(
        f"| {r['config']} | {DESCRIPTIONS.get(r['config'], r['config'])} | {r['params_m']:.2f}M | {r['batch']} "
        f"| {r['compile_s']:.1f} s | {r['step_ms']:.0f} ms | {r['step_clips_s']:.0f} | {r['epoch_s']:.0f} s |"
    )


if __name__ == "__main__":
  main()
