"""Times a supervised AVE training epoch (3,339 clips) of A+V-att, DMRN, PSP and CMBS: our jitted train step beside
a PyTorch transcription of each official training step, in one process, interleaved step by step.

Run from the repository root (needs torch, the `parity` extra):

  python bench/ave_epoch.py [--models=ave,dmrn,psp,cmbs] [--steps=0] [--cmbs_torch_dtypes=float64,float32]
      [--profile]

For each model, at its official batch size (A+V-att and DMRN 64, PSP 128, CMBS 64):
  * ours: the trainer's pieces of the model's run card (configs/ave.py, dmrn.py, psp.py, cmbs.py: model, loss,
    optimizer with its schedule and clipping, `train.make_train_step` jitted by `train.jit_train_step`), one
    replica, on device-resident batches. An epoch is ceil(3,339 / batch) steps with the last batch padded and
    masked, as the trainer trains it (`config.data.keep_partial_batch`).
  * official: the training step of the official main written in PyTorch on the official forward of
    tests/ave_torch_oracles.py / tests/cmbs_torch_oracle.py, in train mode (dropout on), on host tensors:
    `zero_grad`, forward, the official loss, `backward`, (CMBS: `clip_grad_norm_(0.5)`), Adam's `step`.
    A+V-att / DMRN (AVE-ECCV18 supervised_main.py): MultiLabelSoftMarginLoss on the softmax, Adam 1e-3, a
    per-iteration StepLR. PSP (PSP_CVPR_2021 fully_supervised_main.py): CrossEntropy over segments + 100 x
    AVPS (the loader's soft targets, leaking buffer included, made on the host beforehand, as its loader
    does), Adam 1e-3. CMBS (supv_main.py): the four-term loss, gradient-norm clip 0.5, Adam 7e-4, in float64
    as the official code runs it (`model.double()`), and, with `--cmbs_torch_dtypes`, in float32 too (the
    precision ours runs in). Epochs are the official loaders': AVE-ECCV18 and PSP drop the last partial batch
    (52 x 64 and 26 x 128 = 3,328 clips), CMBS's DataLoader keeps it (53 steps, the last of 11 clips).
    torch uses as many threads as the process has cores (XLA's CPU client uses them all too).
  * inputs: SYNTHETIC features (`avvp_jax.tasks.ave.synthetic`, audio [10, 128] and visual [10, 7, 7, 512]
    float32) of the first rows of the real training split, with their real labels; a few distinct batches,
    cycled. Timing does not depend on the values (no data-dependent shapes).
  * interleaving: step i of ours, then step i of each official variant, then step i + 1 ..., each timed to
    completion (wall and process CPU time), so load from other jobs on a shared machine falls on all alike;
    untimed warm-up steps of each first (`WARMUP_STEPS`). The epoch time is the sum of its steps' times.

Parameter counts: the official ones include the modules its forward never calls (PSP's `v_classify`,
`a_classify`, `linear_v`; CMBS's `encoder_layer`, `decoder_layer`, ...), which ours leaves out.

`--steps=N` times only the first N steps of each and extrapolates the epoch from their median (a smoke run, or
the CMBS figures, whose whole interleaved epoch takes about 40 minutes on a 2-core CPU).

Prints a markdown table per model and variant: steps per epoch, epoch seconds, steps/s, clips/s, the speed
ratio ours / official (clips/s over clips/s: above 1, ours is faster), median step (wall and CPU), FLOPs per
clip of our compiled step (XLA's cost analysis: forward, backward and the optimizer update), the achieved
GFLOP/s of each variant at those FLOPs, and their share of the CPU's nominal float32 peak (bench/bench_flops.py;
the float64 row runs at half that peak at most). `--profile` adds where our step's time goes
(`bench_flops.profile_step`) and the official step's top PyTorch operators (`torch.profiler`).
"""

import argparse
import math
import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path[:0] = [BENCH, ROOT, os.path.join(ROOT, "tests")]

import bench_flops  # pylint: disable=g-import-not-at-top  (bench/ and tests/ are on sys.path from here on)
import bench_train  # pylint: disable=g-import-not-at-top
import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

AVE_TRAIN_CLIPS = 3_339  # the rows of train_order.h5
NUM_DISTINCT = 3  # distinct batches per side, cycled through the epoch
# Untimed steps of each side first: XLA's first run of the compiled step, PyTorch's Adam state and oneDNN's
# kernels (its first few steps run up to 2x slower).
WARMUP_STEPS = 2

# name -> (run card, official batch, whether the official loader drops the last partial batch)
MODELS = {
    "ave": ("ave", 64, True),
    "dmrn": ("dmrn", 64, True),
    "psp": ("psp", 128, True),
    "cmbs": ("cmbs", 64, False),
}


# --- data ------------------------------------------------------------------------------------------


def host_batches(batch_size: int, count: int) -> list[dict[str, np.ndarray]]:
  """`count` host batches of SYNTHETIC features for the first rows of the real training split, real labels."""
  from avvp_jax.tasks.ave import annotations  # pylint: disable=g-import-not-at-top
  from avvp_jax.tasks.ave import synthetic  # pylint: disable=g-import-not-at-top

  rows, orders = annotations.load_splits()
  drawn = synthetic.SyntheticAVE(0, rows)
  segment_labels, video_labels, event_masks = (
      rows.segment_labels(),
      rows.video_labels(),
      rows.event_mask(),
  )
  out = []
  for k in range(count):
    chosen = orders["train"][k * batch_size : (k + 1) * batch_size]
    clips = [drawn.features(int(row)) for row in chosen]
    out.append(
        {
            "audio": np.stack([c["audio"] for c in clips]),
            "visual": np.stack([c["visual"] for c in clips]),
            "segment_label": segment_labels[chosen],
            "video_label": video_labels[chosen],
            "event_mask": event_masks[chosen],
            "mask": np.ones(batch_size, np.float32),
            "index": np.arange(batch_size, dtype=np.int32),
        }
    )
  return out


def padded(batch: dict[str, np.ndarray], num_real: int) -> dict[str, np.ndarray]:
  """`batch` as the input pipeline pads a last partial batch: rows from `num_real` on zero, mask 0, index -1."""
  out = {key: value.copy() for key, value in batch.items()}
  for key, value in out.items():
    value[num_real:] = -1 if key == "index" else 0
  return out


# --- ours ------------------------------------------------------------------------------------------


class Ours:
  """The run card's jitted train step (one replica) on device-resident batches."""

  label = "ours (JAX, float32)"

  def __init__(self, name: str, batches: list[dict[str, np.ndarray]]):
    from avvp_jax import sharding  # pylint: disable=g-import-not-at-top
    from avvp_jax import state as state_lib  # pylint: disable=g-import-not-at-top
    from avvp_jax import train  # pylint: disable=g-import-not-at-top

    config = bench_train._config(MODELS[name][0], num_seeds=1)  # pylint: disable=protected-access
    self.batch_size = config.batch_size
    self.steps_per_epoch = math.ceil(AVE_TRAIN_CLIPS / self.batch_size)
    self.clips_per_epoch = AVE_TRAIN_CLIPS
    mesh = sharding.make_mesh(num_seeds=1)
    model = state_lib.build_model(config)
    tx, _ = state_lib.make_optimizer(config, self.steps_per_epoch)
    self.state, abstract = state_lib.create_train_state(
        config, model, tx, mesh, state_lib.run_seeds(config)
    )
    self.step_fn = train.jit_train_step(train.make_train_step(config, model, tx), mesh, abstract)
    self.num_params = sum(int(np.prod(x.shape[1:])) for x in jax.tree.leaves(self.state.params))
    place = lambda b: sharding.global_batch(mesh, {k: v[None] for k, v in b.items()}, seeds=True)
    self.batches = [place(b) for b in batches]
    last_real = AVE_TRAIN_CLIPS - (self.steps_per_epoch - 1) * self.batch_size
    self.last = place(padded(batches[0], last_real)) if last_real < self.batch_size else None
    self.compiled = self.step_fn.lower(self.state, self.batches[0]).compile()
    self.cost = bench_train.step_cost(self.step_fn, self.state, self.batches[0])
    self.wall, self.cpu = [], []

  def batch(self, i: int):
    if self.last is not None and i == self.steps_per_epoch - 1:
      return self.last
    return self.batches[i % len(self.batches)]

  def step(self, i: int) -> None:
    self.state, metrics = self.compiled(self.state, self.batch(i))
    jax.block_until_ready((self.state, metrics))
    self.loss = metrics["loss"]

  def finite(self) -> bool:
    return bool(np.isfinite(np.asarray(jax.device_get(self.loss))).all())

  def profile(self) -> str:
    rows, op_ms, wall_ms = bench_flops.profile_step(
        dict(compiled=self.compiled, state=self.state, batches=self.batches[:2]), steps=3
    )
    lines = [
        f"ours: XLA op time {op_ms:.0f} ms per step summed over threads, {wall_ms:.0f} ms wall per step",
        "",
        "| where | ms/step | share |",
        "|---|---|---|",
    ]
    lines += [f"| {what} | {ms:.1f} | {100 * share:.0f}% |" for what, ms, share in rows]
    return "\n".join(lines)


# --- official --------------------------------------------------------------------------------------


class Official:
  """A PyTorch transcription of the official main's training step on the official forward (train mode)."""

  def __init__(self, name: str, batches: list[dict[str, np.ndarray]], dtype: str = "float32"):
    import torch  # pylint: disable=g-import-not-at-top  (the parity extra: only this script needs it)

    self.torch, self.name = torch, name
    _, self.batch_size, drop_last = MODELS[name]
    self.dtype = getattr(torch, dtype)
    official_precision = "float64" if name == "cmbs" else "float32"
    self.label = f"official (PyTorch, {dtype})" + (
        "" if dtype == official_precision else ", not the official precision"
    )
    full, rest = divmod(AVE_TRAIN_CLIPS, self.batch_size)
    self.steps_per_epoch = full + (0 if drop_last or not rest else 1)
    self.clips_per_epoch = full * self.batch_size + (0 if drop_last else rest)
    self.last_real = rest if (rest and not drop_last) else None
    torch.manual_seed(0)
    self.model, self.loss_fn, make_optimizer, self.after = self._build()
    self.model.to(self.dtype).train()
    self.optimizer = make_optimizer(self.model.parameters())
    self.scheduler = (
        torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=15000, gamma=0.1)
        if name in ("ave", "dmrn")
        else None
    )
    self.num_params = sum(p.numel() for p in self.model.parameters())
    # PSP: the official loader's AVPS targets for successive batches, its stale buffer included.
    if name == "psp":
      import ave_torch_oracles  # pylint: disable=g-import-not-at-top  (tests/: the official code)

      targets = ave_torch_oracles.official_avps_targets([b["segment_label"] for b in batches])
    else:
      targets = [None] * len(batches)
    self.batches = [self._tensors(b, t) for b, t in zip(batches, targets)]
    if self.last_real is not None:
      self.last = {key: value[: self.last_real] for key, value in self.batches[0].items()}
    self.wall, self.cpu = [], []

  def _build(self):
    """(model, loss(model outputs, batch) -> scalar, optimizer factory, hook between backward and step)."""
    import ave_torch_oracles  # pylint: disable=g-import-not-at-top  (tests/: the official forwards)
    import cmbs_torch_oracle  # pylint: disable=g-import-not-at-top

    torch = self.torch
    nn = torch.nn
    if self.name in ("ave", "dmrn"):  # supervised_main.py
      model = ave_torch_oracles.AttNet() if self.name == "ave" else ave_torch_oracles.TBMRFNet()
      criterion = nn.MultiLabelSoftMarginLoss()
      loss = lambda out, b: criterion(out, b["labels"])
      return model, loss, lambda p: torch.optim.Adam(p, lr=1e-3), None
    if self.name == "psp":  # fully_supervised_main.py
      model = ave_torch_oracles.PSPNet(fully=True, threshold=0.099)
      criterion = nn.CrossEntropyLoss()

      def loss(out, b):
        _, score, cross_att, _, _ = out
        cross_entropy = criterion(score.permute(0, 2, 1), b["segment_class"])
        return cross_entropy + 100 * ave_torch_oracles.avps_loss(cross_att, b["avps_target"])

      return model, loss, lambda p: torch.optim.Adam(p, lr=1e-3), None
    model = cmbs_torch_oracle.SupvMainModel()  # supv_main.py with configs/main.json
    loss = lambda out, b: cmbs_torch_oracle.supervised_loss(out, b["labels"])[0]
    clip = lambda: nn.utils.clip_grad_norm_(self.model.parameters(), 0.5)
    return model, loss, lambda p: torch.optim.Adam(p, lr=7e-4), clip

  def _tensors(self, batch: dict[str, np.ndarray], avps_target: np.ndarray | None) -> dict:
    """The tensors the official loader hands the step (made before the clock starts)."""
    torch = self.torch
    out = {
        "audio": torch.from_numpy(batch["audio"]).to(self.dtype),
        "visual": torch.from_numpy(batch["visual"]).to(self.dtype),
        "labels": torch.from_numpy(batch["segment_label"]).to(self.dtype),
    }
    if avps_target is not None:  # PSP's loader: class indices and the AVPS soft targets
      out["segment_class"] = torch.from_numpy(batch["segment_label"].argmax(-1))
      out["avps_target"] = torch.from_numpy(avps_target).to(self.dtype)
    return out

  def step(self, i: int) -> None:
    last = self.last_real is not None and i == self.steps_per_epoch - 1
    b = self.last if last else self.batches[i % len(self.batches)]
    self.model.zero_grad()
    if self.name == "cmbs":
      out = self.model(b["visual"], b["audio"])
    else:
      out = self.model(b["audio"], b["visual"])
    loss = self.loss_fn(out, b)
    loss.backward()
    if self.scheduler is not None:
      # torch warns of this order (scheduler before optimizer); the official script silences warnings too.
      with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        self.scheduler.step()  # AVE-ECCV18 steps its StepLR before the optimizer, per iteration
    if self.after is not None:
      self.after()
    self.optimizer.step()
    self.loss = float(loss.detach())

  def finite(self) -> bool:
    return math.isfinite(self.loss)

  def profile(self, steps: int = 2) -> str:
    from torch import profiler  # pylint: disable=g-import-not-at-top

    with profiler.profile(activities=[profiler.ProfilerActivity.CPU]) as prof:
      for i in range(steps):
        self.step(i)
    return (
        f"{self.label}: top operators over {steps} steps (self CPU time)\n\n"
        + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    )


# --- timing ----------------------------------------------------------------------------------------


def _timed_step(runner, i: int) -> None:
  start, cpu_start = time.perf_counter(), time.process_time()
  runner.step(i)
  runner.wall.append(time.perf_counter() - start)
  runner.cpu.append(time.process_time() - cpu_start)


def time_interleaved(runners: list, steps: int, warmup: int = WARMUP_STEPS) -> None:
  """`warmup` untimed steps of each, then step i of each in turn (a whole epoch each, or the first `steps`)."""
  for i in range(warmup):
    for runner in runners:
      runner.step(i)
  for i in range(max(steps or r.steps_per_epoch for r in runners)):
    for runner in runners:
      if i < (min(steps, runner.steps_per_epoch) if steps else runner.steps_per_epoch):
        _timed_step(runner, i)
  for runner in runners:
    if not runner.finite():
      raise RuntimeError(f"{runner.label}: non-finite loss {runner.loss}")


def summary(name: str, runner, ours: Ours, peak_gflops: float) -> dict:
  timed = len(runner.wall)
  whole = timed == runner.steps_per_epoch
  epoch_s = sum(runner.wall) if whole else float(np.median(runner.wall)) * runner.steps_per_epoch
  clips_s = runner.clips_per_epoch / epoch_s
  flop_per_clip = ours.cost["flops"] / ours.batch_size
  return dict(
      model=name,
      variant=runner.label,
      params_m=runner.num_params / 1e6,
      batch=runner.batch_size,
      steps=runner.steps_per_epoch,
      clips=runner.clips_per_epoch,
      epoch_s=epoch_s,
      measured=whole,
      timed=timed,
      steps_s=runner.steps_per_epoch / epoch_s,
      clips_s=clips_s,
      wall_ms=1e3 * float(np.median(runner.wall)),
      cpu_ms=1e3 * float(np.median(runner.cpu)),
      mflop_clip=flop_per_clip / 1e6,
      gflop_s=flop_per_clip * clips_s / 1e9,
      peak_share=flop_per_clip * clips_s / 1e9 / peak_gflops if peak_gflops else float("nan"),
  )


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
      "--models", default="ave,dmrn,psp,cmbs", help=f"comma-separated, of {', '.join(MODELS)}"
  )
  parser.add_argument(
      "--steps",
      type=int,
      default=0,
      help="time only the first N steps of each, extrapolate the epoch (0: all)",
  )
  parser.add_argument(
      "--cmbs_torch_dtypes",
      default="float64,float32",
      help="the official CMBS step's precisions (float64: as the official code runs it)",
  )
  parser.add_argument(
      "--profile", action="store_true", help="where each step's time goes, after the timing"
  )
  args = parser.parse_args()
  import torch  # pylint: disable=g-import-not-at-top

  threads = len(os.sched_getaffinity(0))
  torch.set_num_threads(threads)
  info = bench_flops.cpu_info()
  peak = bench_flops.nominal_cpu_peak(info) if jax.default_backend() == "cpu" else None
  peak_gflops = peak["gflops"] if peak else 0.0
  device = jax.devices()[0]
  print(
      f"devices: {jax.device_count()} x {device.device_kind} ({device.platform}), {os.cpu_count()} CPU cores "
      f"({info['model']}); jax {jax.__version__}, torch {torch.__version__} with {torch.get_num_threads()} "
      f"threads; load average {os.getloadavg()[0]:.1f}",
      flush=True,
  )
  if peak:
    print(
        f"nominal float32 peak: {peak_gflops:.0f} GFLOP/s ({peak['cores']} cores x {peak['ghz']:.2f} GHz x "
        f"{peak['flops_per_cycle']} FLOPs/cycle, {peak['isa']})",
        flush=True,
    )
  rows, profiles = [], []
  for name in args.models.split(","):
    if name not in MODELS:
      raise SystemExit(f"--models: unknown model {name!r}; use {', '.join(MODELS)}")
    start = time.perf_counter()
    batches = host_batches(MODELS[name][1], NUM_DISTINCT)
    ours = Ours(name, batches)
    dtypes = args.cmbs_torch_dtypes.split(",") if name == "cmbs" else ["float32"]
    officials = [Official(name, batches, dtype) for dtype in dtypes]
    del batches
    runners = [ours, *officials]
    time_interleaved(runners, args.steps)
    model_rows = [summary(name, r, ours, peak_gflops) for r in runners]
    for row in model_rows[1:]:
      row["ratio"] = model_rows[0]["clips_s"] / row["clips_s"]
      row["cpu_ratio"] = row["cpu_ms"] / model_rows[0]["cpu_ms"]  # equal batches: CPU time per clip
    rows += model_rows
    for row in model_rows:
      print(row, flush=True)
    print(
        f"{name}: {time.perf_counter() - start:.0f} s in all, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    if args.profile:
      profiles += [f"{name}: " + r.profile() for r in runners]
  print(
      f"\nSupervised AVE training epoch of {AVE_TRAIN_CLIPS:,} clips (SYNTHETIC features, real shapes), "
      f"{'whole epochs' if not args.steps else f'extrapolated from the first {args.steps} steps'}, "
      "interleaved step by step; ratio = ours clips/s / official clips/s (above 1: ours faster); FLOPs per clip "
      "of our compiled step (XLA), GFLOP/s of each variant at that count.\n"
  )
  print(
      "| model | variant | params | batch | steps/epoch | epoch | steps/s | clips/s | ratio ours/official "
      "| CPU-time ratio | step (median wall / CPU) | FLOPs/clip | GFLOP/s | % of nominal peak |"
  )
  print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    ratio = f"{r['ratio']:.2f}" if "ratio" in r else "-"
    cpu_ratio = f"{r['cpu_ratio']:.2f}" if "cpu_ratio" in r else "-"
    print(
        f"| {r['model']} | {r['variant']} | {r['params_m']:.2f}M | {r['batch']} | {r['steps']} ({r['clips']:,} clips) "
        f"| {r['epoch_s']:.1f} s | {r['steps_s']:.2f} | {r['clips_s']:.0f} | {ratio} | {cpu_ratio} "
        f"| {r['wall_ms']:.0f} / {r['cpu_ms']:.0f} ms | {r['mflop_clip']:,.0f} M | {r['gflop_s']:.0f} "
        f"| {100 * r['peak_share']:.0f}% |"
    )
  for text in profiles:
    print("\n" + text)


if __name__ == "__main__":
  main()
