"""How far from the physical limit the HAN and LEAP train steps run: FLOPs per clip, achieved GFLOP/s, peak.

Run from the repository root:

  python bench/bench_flops.py [--configs=han,leap] [--steps=20] [--prng=threefry2x32,rbg,unsafe_rbg]
      [--no_dropout_variant] [--profile] [--peak_only]

Prints markdown tables:
  * peak: the device's peak FLOP rate three ways. On a CPU: nominal = cores x clock x FLOPs per cycle per core,
    from /proc/cpuinfo (the clock is its `cpu MHz`, the base or TSC clock under a hypervisor; the SIMD width
    from the flags: AVX-512 16 float32 lanes, AVX/AVX2 8, SSE 4; FMA counts 2 FLOPs per lane, and two FMA
    units per core are assumed for AVX-512 and AVX2+FMA cores, as on Xeon Scalable server parts from Ice Lake
    on and on client cores since Haswell: some Skylake/Cascade Lake Xeons have one 512-bit unit); measured
    = an FMA-bound kernel (16 independent vector FMA chains per core, compiled here with `cc -march=native`
    when a compiler exists), run on 1 core and on every core at once, which checks the assumed units and shows
    the real (turbo) clock; and the f32 GEMM rate of XLA itself (a 2048^3 jitted `jnp.dot`, best of 10; 8192^3 and bf16
    on an accelerator, beside the datasheet figures of known GPUs).
  * steps: for each config (full model, the paper's batch: HAN 16, LEAP 32), the FLOPs of one train step from
    XLA's cost analysis of the compiled program (`jax.jit(step).lower(...).compile().cost_analysis()["flops"]`:
    2 per multiply-add of every dot, 1 per elementwise op; forward, backward and the Adam update) per clip;
    the median wall time of `--steps` steps on device-resident random batches and the process CPU time per step;
    the achieved GFLOP/s (FLOPs per step / median step time) and its share of each peak.
  * PRNG: the step time with the dropout keys of `jax_default_prng_impl` = threefry2x32 (the default), and each
    other `--prng` implementation, and (`--no_dropout_variant`, on by default) with every dropout rate 0: the
    bound on what any random-number change could gain. The variants are compiled in one process and timed
    round-robin, one step each in turn, so load from other jobs falls on all alike: read the ratios.
  * checks: the step loop under `jax.transfer_guard("disallow")` (no implicit host<->device transfer inside
    it), and jit's cache holds one program after full and padded batches (no recompile).
  * profile (`--profile`, CPU only): one `jax.profiler` trace of a few steps; the time of every XLA op of the
    step, matched to its HLO instruction and grouped by what it computes (forward / backward matmuls and other
    ops, dropout's random bits and masks, the optimizer update outside the model), summed over XLA's threads.

The numbers are for the machine it runs on; on a shared machine, read the ratios within one run.
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_train  # pylint: disable=g-import-not-at-top  (bench/ is the script's folder; sets sys.path)
import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

DEFAULT_PRNG = "threefry2x32"

# Datasheet dense peaks (TFLOP/s) of accelerators JAX may see: float32 on the CUDA cores, TF32 and bf16 on the
# tensor cores (SXM parts). XLA's f32 dots on these GPUs run as TF32 at JAX's default matmul precision.
GPU_DATASHEET_TFLOPS = {
    "H200": {"f32": 67.0, "tf32": 495.0, "bf16": 989.0},
    "H100": {"f32": 67.0, "tf32": 495.0, "bf16": 989.0},
    "A100": {"f32": 19.5, "tf32": 156.0, "bf16": 312.0},
}

_FMA_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
typedef float vec __attribute__((vector_size(VEC_BYTES)));
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
int main(int argc, char **argv) {
  long iters = atol(argv[1]);
  vec a[16], b = {0}, c = {0};
  b += 0.999999f; c += 1e-7f;
  for (int k = 0; k < 16; k++) { a[k] = (vec){0}; a[k] += (float)k; }
  double start = now();
  for (long i = 0; i < iters; i++) {
#pragma GCC unroll 16
    for (int k = 0; k < 16; k++) a[k] = a[k] * b + c;  /* 16 independent FMA chains */
  }
  double seconds = now() - start;
  float sink = 0;
  for (int k = 0; k < 16; k++) for (int j = 0; j < (int)(VEC_BYTES / 4); j++) sink += a[k][j];
  printf("%.6f %g\n", (double)iters * 16 * (VEC_BYTES / 4) * 2 / seconds / 1e9, sink);
  return 0;
}
"""


# --- peak ----------------------------------------------------------------------------------------------


def cpu_info() -> dict:
  """Model name, flags, clock (MHz) and usable cores of this CPU, from /proc/cpuinfo and the affinity mask."""
  info = {"model": "unknown", "flags": set(), "mhz": None, "cores": len(os.sched_getaffinity(0))}
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and info["model"] == "unknown":
          info["model"] = value
        elif key == "flags" and not info["flags"]:
          info["flags"] = set(value.split())
        elif key == "cpu MHz" and info["mhz"] is None:
          info["mhz"] = float(value)
  except OSError:
    pass
  threads_per_core = 1
  try:  # lscpu knows SMT; hyperthreads share their core's FMA units
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"Thread\(s\) per core:\s*(\d+)", out)
    threads_per_core = int(match.group(1)) if match else 1
    match = re.search(r"CPU max MHz:\s*([\d.]+)", out)
    info["max_mhz"] = float(match.group(1)) if match else None
  except OSError:
    info["max_mhz"] = None
  info["threads_per_core"] = threads_per_core
  return info


def nominal_cpu_peak(info: dict) -> dict:
  """cores x clock x FLOPs/cycle; FLOPs/cycle = float32 lanes x 2 (FMA) x FMA units, from the SIMD flags."""
  flags = info["flags"]
  if "avx512f" in flags:
    isa, lanes, units = "AVX-512", 16, 2
  elif "avx2" in flags and "fma" in flags:
    isa, lanes, units = "AVX2+FMA", 8, 2
  elif "avx" in flags:
    isa, lanes, units = "AVX (separate add and multiply ports)", 8, 1
  else:
    isa, lanes, units = "SSE (separate add and multiply ports)", 4, 1
  flops_per_cycle = lanes * 2 * units
  cores = max(1, info["cores"] // info["threads_per_core"])
  ghz = (info["mhz"] or 0.0) / 1e3
  return dict(
      isa=isa,
      lanes=lanes,
      fma_units=units,
      flops_per_cycle=flops_per_cycle,
      cores=cores,
      ghz=ghz,
      gflops=cores * ghz * flops_per_cycle,
      gflops_per_core=ghz * flops_per_cycle,
  )


def measured_fma_peak(info: dict, seconds: float = 0.4, repeats: int = 3) -> dict | None:
  """GFLOP/s of an FMA-bound float32 kernel on one core and on every core (one process each); None without cc."""
  compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
  if compiler is None:
    return None
  vec_bytes = 64 if "avx512f" in info["flags"] else 32 if "avx" in info["flags"] else 16
  folder = tempfile.mkdtemp(prefix="bench_flops_")
  try:
    source, binary = os.path.join(folder, "fma.c"), os.path.join(folder, "fma")
    with open(source, "w") as f:
      f.write(_FMA_SOURCE)
    build = subprocess.run(
        [
            compiler,
            "-O2",
            "-march=native",
            "-ffp-contract=fast",
            f"-DVEC_BYTES={vec_bytes}",
            source,
            "-o",
            binary,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if build.returncode != 0:
      return None
    rate = float(
        subprocess.run(
            [binary, "1000000"], capture_output=True, text=True, check=True
        ).stdout.split()[0]
    )
    iters = str(max(1, int(seconds * rate * 1e9 / (16 * (vec_bytes // 4) * 2))))

    def run(copies: int) -> float:
      procs = [
          subprocess.Popen([binary, iters], stdout=subprocess.PIPE, text=True)
          for _ in range(copies)
      ]
      return sum(float(p.communicate()[0].split()[0]) for p in procs)

    one = max(run(1) for _ in range(repeats))
    every = max(run(info["cores"]) for _ in range(repeats))
    return dict(one_core=one, all_cores=every, vec_bytes=vec_bytes, copies=info["cores"])
  finally:
    shutil.rmtree(folder, ignore_errors=True)


def gemm_ceiling(dtype=jnp.float32, n: int | None = None, repeats: int = 10) -> dict:
  """GFLOP/s of one jitted n x n x n `jnp.dot` (best of `repeats`): what XLA's dot reaches on this device."""
  if n is None:
    n = 2048 if jax.default_backend() == "cpu" else 8192
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
  dot = jax.jit(jnp.dot)
  jax.block_until_ready(dot(a, a))
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(dot(a, a))
    best = min(best, time.perf_counter() - start)
  return dict(n=n, dtype=jnp.dtype(dtype).name, gflops=2 * n**3 / best / 1e9)


def peaks(measure_fma: bool = True) -> tuple[list[tuple[str, float, str]], dict]:
  """Rows (what, GFLOP/s, how) of the device's peaks, and the named figures the step table divides by."""
  rows, ref = [], {}
  device = jax.devices()[0]
  if device.platform == "cpu":
    info = cpu_info()
    nominal = nominal_cpu_peak(info)
    ref["nominal"] = nominal["gflops"]
    rows.append(
        (
            "nominal peak, float32",
            nominal["gflops"],
            f"{nominal['cores']} cores x {nominal['ghz']:.2f} GHz (/proc/cpuinfo) x {nominal['flops_per_cycle']} "
            f"FLOPs/cycle ({nominal['isa']}: {nominal['lanes']} lanes x 2 (FMA) x {nominal['fma_units']} FMA "
            f"units, assumed); {info['model']}",
        )
    )
    if measure_fma:
      fma = measured_fma_peak(info)
      if fma is not None:
        ref["fma"] = fma["all_cores"]
        ghz = fma["one_core"] / nominal["flops_per_cycle"]
        per_cycle = fma["one_core"] / nominal["ghz"]
        one_unit = nominal["lanes"] * 2
        units = (
            f"more than one FMA unit can give ({one_unit}): {nominal['fma_units']} units confirmed"
            if per_cycle > 1.05 * one_unit
            else f"not above what one FMA unit gives ({one_unit}): a loaded machine, " "or one unit"
        )
        rows.append(
            (
                "measured FMA-bound kernel, 1 core",
                fma["one_core"],
                f"{fma['vec_bytes'] * 8}-bit vector FMAs, 16 chains: {per_cycle:.0f} FLOPs per {nominal['ghz']:.2f} "
                f"GHz cycle, {units}; {nominal['flops_per_cycle']} FLOPs/cycle at an effective {ghz:.2f} GHz "
                "(turbo, or less on a loaded host)",
            )
        )
        rows.append(
            (
                f"measured FMA-bound kernel, {fma['copies']} cores",
                fma["all_cores"],
                f"{fma['copies']} copies at once (best of 3)",
            )
        )
    gemm = gemm_ceiling()
    ref["gemm"] = gemm["gflops"]
    rows.append((f"XLA f32 GEMM {gemm['n']}^3", gemm["gflops"], "jitted jnp.dot, best of 10"))
  else:
    for dtype in (jnp.float32, jnp.bfloat16):
      gemm = gemm_ceiling(dtype)
      ref.setdefault("gemm", gemm["gflops"])
      rows.append(
          (
              f"XLA {gemm['dtype']} GEMM {gemm['n']}^3",
              gemm["gflops"],
              "jitted jnp.dot at the default matmul precision, best of 10",
          )
      )
    for name, sheet in GPU_DATASHEET_TFLOPS.items():
      if name in device.device_kind:
        ref["nominal"] = sheet["tf32"] * 1e3
        rows.extend(
            (f"datasheet {kind} dense", value * 1e3, device.device_kind)
            for kind, value in sheet.items()
        )
  return rows, ref


# --- steps -----------------------------------------------------------------------------------------------


def _set_dropout(config, rate: float) -> None:
  for section in config.model.values():
    if hasattr(section, "keys"):
      for key in ("dropout", "attention_dropout"):
        if key in section:
          section[key] = rate


def build_variant(name: str, prng: str = DEFAULT_PRNG, dropout: float | None = None) -> dict:
  """The jitted step of config `name` (PRNG impl `prng`, optionally every dropout rate set), compiled, with its
  state and device-resident full and padded batches."""
  jax.config.update("jax_default_prng_impl", prng)
  try:  # the key implementation is read when the state is made and the step traced: both happen here
    config = bench_train._config(name)  # pylint: disable=protected-access
    if dropout is not None:
      _set_dropout(config, dropout)
    mesh, state, step_fn, num_params = bench_train._setup(config)  # pylint: disable=protected-access
    rng = np.random.default_rng(0)
    batches = [bench_train.seed_batch(mesh, config, rng, 1) for _ in range(2)]
    padded = bench_train.seed_batch(mesh, config, rng, 1, num_real=config.batch_size // 2)
    compiled = step_fn.lower(state, batches[0]).compile()
    state, metrics = compiled(state, batches[0])
    jax.block_until_ready(metrics)
  finally:
    jax.config.update("jax_default_prng_impl", DEFAULT_PRNG)
  return dict(
      config=config,
      step_fn=step_fn,
      compiled=compiled,
      state=state,
      batches=batches,
      padded=padded,
      num_params=num_params,
      cost=bench_train.step_cost(step_fn, state, batches[0]),
      wall=[],
      cpu=[],
  )


def time_round_robin(variants: dict, steps: int) -> None:
  """`steps` steps of every variant, one step of each in turn; appends wall and process-CPU seconds."""
  for i in range(steps):
    for v in variants.values():
      batch = v["batches"][i % len(v["batches"])]
      start, cpu_start = time.perf_counter(), time.process_time()
      v["state"], metrics = v["compiled"](v["state"], batch)
      jax.block_until_ready(metrics)
      v["wall"].append(time.perf_counter() - start)
      v["cpu"].append(time.process_time() - cpu_start)


def check_step_loop(v: dict, steps: int = 3) -> str:
  """Runs the jitted step on full and padded batches under `transfer_guard("disallow")`; checks jit's cache."""
  state = v["state"]
  with jax.transfer_guard("disallow"):
    for i in range(steps):
      state, metrics = v["step_fn"](state, v["padded"] if i == steps - 1 else v["batches"][i % 2])
    jax.block_until_ready(metrics)
  v["state"] = state
  cache = getattr(v["step_fn"], "_cache_size", None)
  programs = f"{cache()} program(s) in jit's cache" if cache else "jit cache size not exposed"
  return f"{steps} steps (the last on a padded batch) ran with no implicit host<->device transfer; {programs}"


# --- profile ---------------------------------------------------------------------------------------------


def _parse_hlo(text: str) -> dict[str, dict]:
  """ENTRY instructions of an HLO module: name -> {opcode, op_name, calls_dot}."""
  bodies, current, entry = collections.defaultdict(list), None, None
  for line in text.splitlines():
    if line and not line.startswith((" ", "}")):
      match = re.match(r"(ENTRY )?%?(\S+)", line)
      current = match.group(2) if match else None
      if match and match.group(1):
        entry = current
    elif current and line.startswith(" "):
      bodies[current].append(line)
  has_dot = {
      name: any(re.search(r" (dot|convolution)\(", l) for l in lines)
      for name, lines in bodies.items()
  }
  out = {}
  for line in bodies.get(entry, []):
    match = re.match(r"\s+(?:ROOT )?%(\S+) = (.*)$", line)
    if not match:
      continue
    name, rest = match.groups()
    if rest.startswith("("):  # tuple shape: skip to its closing parenthesis
      depth = 0
      for k, ch in enumerate(rest):
        depth += (ch == "(") - (ch == ")")
        if depth == 0:
          rest = rest[k + 1 :].lstrip()
          break
    else:
      rest = rest.split(" ", 1)[1] if " " in rest else ""
    opcode = rest.split("(", 1)[0]
    calls = re.findall(r"calls=%(\S+?)[,\s]", line)
    op_name = re.search(r'op_name="([^"]*)"', line)
    out[name] = dict(
        opcode=opcode,
        op_name=op_name.group(1) if op_name else "",
        dot=opcode in ("dot", "convolution") or any(has_dot.get(c, False) for c in calls),
    )
  return out


def _category(instruction: dict) -> str:
  op_name = instruction["op_name"]
  if re.search(r"Dropout|_bernoulli|_uniform|threefry|random_bits", op_name):
    return "dropout: random bits, masks"
  kind = "matmuls" if instruction["dot"] else "other ops"
  if "transpose(jvp(" in op_name:
    return f"backward {kind}"
  if "jvp(" in op_name:
    return f"forward {kind}"
  return f"optimizer update, gradient norm ({kind})"


def traced_op_ms(
    compiled, state, batches, steps: int, classify
) -> tuple[dict[str, float], float, object]:
  """Runs `steps` steps of `compiled` under `jax.profiler` and sums its XLA ops' time per class.

  Args:
    compiled: a compiled train step `(state, batch) -> (state, metrics)`.
    state, batches: its inputs (the batches cycled).
    steps: timed steps.
    classify: maps an instruction record (`opcode`, `op_name`, `dot`, of `_parse_hlo`) to a class name.

  Returns:
    ({class: ms per step}, wall ms per step, the state after the steps).
  """
  instructions = _parse_hlo(compiled.as_text())
  folder = tempfile.mkdtemp(prefix="bench_trace_")
  try:
    with jax.profiler.trace(folder, create_perfetto_trace=True):
      start = time.perf_counter()
      for i in range(steps):
        state, metrics = compiled(state, batches[i % len(batches)])
        jax.block_until_ready(metrics)
      wall = (time.perf_counter() - start) / steps
    trace = glob.glob(os.path.join(folder, "**", "perfetto_trace.json.gz"), recursive=True)
    events = json.load(gzip.open(trace[0]))["traceEvents"] if trace else []
  finally:
    shutil.rmtree(folder, ignore_errors=True)
  totals = collections.defaultdict(float)
  for event in events:
    if event.get("ph") == "X" and event.get("name") in instructions:
      totals[classify(instructions[event["name"]])] += event.get("dur", 0.0) / 1e3 / steps
  return dict(totals), 1e3 * wall, state


def profile_step(v: dict, steps: int = 5) -> tuple[list[tuple[str, float, float]], float, float]:
  """(category, ms per step, share) of the step's XLA op time in a profiler trace, the op time and the wall."""
  totals, wall_ms, v["state"] = traced_op_ms(
      v["compiled"], v["state"], v["batches"][:2], steps, _category
  )
  op_ms = sum(totals.values())
  rows = [
      (k, ms, ms / op_ms if op_ms else 0.0)
      for k, ms in sorted(totals.items(), key=lambda kv: -kv[1])
  ]
  return rows, op_ms, wall_ms


# --- main ------------------------------------------------------------------------------------------------


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--configs", default="han,leap")
  parser.add_argument("--steps", type=int, default=20, help="timed steps per variant (round-robin)")
  parser.add_argument(
      "--prng",
      default="threefry2x32,rbg,unsafe_rbg",
      help="jax_default_prng_impl values to compare (the first is the reference)",
  )
  parser.add_argument(
      "--no_dropout_variant",
      action=argparse.BooleanOptionalAction,
      default=True,
      help="also time the step with every dropout rate 0",
  )
  parser.add_argument(
      "--profile", action="store_true", help="profile the default step (CPU backend)"
  )
  parser.add_argument("--peak_only", action="store_true")
  parser.add_argument("--no_measure_fma", action="store_true", help="skip the compiled FMA kernel")
  args = parser.parse_args()
  device = jax.devices()[0]
  print(
      f"devices: {jax.device_count()} x {device.device_kind} ({device.platform}), {os.cpu_count()} CPU cores; "
      f"jax {jax.__version__}; load average {os.getloadavg()[0]:.1f}",
      flush=True,
  )

  peak_rows, ref = peaks(measure_fma=not args.no_measure_fma)
  print("\n| peak | GFLOP/s | derivation |\n|---|---|---|")
  for what, gflops, how in peak_rows:
    print(f"| {what} | {gflops:,.0f} | {how} |")
  if args.peak_only:
    return

  prngs = [p for p in args.prng.split(",") if p] or [DEFAULT_PRNG]
  step_rows, prng_rows, check_lines, profiles = [], [], [], []
  for name in args.configs.split(","):
    variants = {impl: build_variant(name, impl) for impl in prngs}
    if args.no_dropout_variant:
      variants["no dropout (rates 0)"] = build_variant(name, prngs[0], dropout=0.0)
    time_round_robin(variants, args.steps)
    base = variants[prngs[0]]
    wall, cpu = float(np.median(base["wall"])), float(np.median(base["cpu"]))
    config = base["config"]
    flops = base["cost"]["flops"]
    step_rows.append(
        dict(
            config=name,
            batch=config.batch_size,
            params_m=base["num_params"] / 1e6,
            mflop_clip=flops / config.batch_size / 1e6,
            gflop_step=flops / 1e9,
            wall_ms=1e3 * wall,
            cpu_ms=1e3 * cpu,
            clips_s=config.batch_size / wall,
            gflop_s=flops / wall / 1e9,
            gflop_cpu_s=flops / cpu / 1e9,
            prng=prngs[0],
        )
    )
    for label, v in variants.items():
      prng_rows.append(
          (
              name,
              label,
              1e3 * float(np.median(v["wall"])),
              float(np.median(v["wall"])) / wall,
              1e3 * float(np.median(v["cpu"])),
              float(np.median(v["cpu"])) / cpu,
          )
      )
    check_lines.append(f"{name}: " + check_step_loop(base))
    if args.profile and device.platform == "cpu":
      profiles.append((name, *profile_step(base)))
    print(f"{name}: done", flush=True)

  print(
      "\n| config | params | batch | FLOPs/clip (XLA) | FLOPs/step | step (median) | CPU time/step | clips/s "
      "| achieved GFLOP/s | " + " | ".join(f"% of {k}" for k in ref) + " |"
  )
  print("|---|---|---|---|---|---|---|---|---|" + "---|" * len(ref))
  for r in step_rows:
    shares = " | ".join(f"{100 * r['gflop_s'] / value:.0f}%" for value in ref.values())
    print(
        f"| {r['config']} | {r['params_m']:.2f}M | {r['batch']} | {r['mflop_clip']:.0f} M | {r['gflop_step']:.2f} G "
        f"| {r['wall_ms']:.1f} ms | {r['cpu_ms']:.1f} ms | {r['clips_s']:.0f} | {r['gflop_s']:.0f} | {shares} |"
    )
  print(
      "\npeaks: "
      + ", ".join(f"{k} {v:,.0f} GFLOP/s" for k, v in ref.items())
      + "; CPU time/step is the process's CPU seconds (all threads) per step."
  )

  print("\n| config | dropout keys | step (median wall) | ratio | CPU time/step | ratio |")
  print("|---|---|---|---|---|---|")
  for name, label, wall_ms, wall_ratio, cpu_ms, cpu_ratio in prng_rows:
    print(
        f"| {name} | {label} | {wall_ms:.1f} ms | {wall_ratio:.3f} | {cpu_ms:.1f} ms | {cpu_ratio:.3f} |"
    )
  print(f"\n({args.steps} steps of each variant, round-robin in one process; ratio to {prngs[0]}.)")

  print()
  for line in check_lines:
    print(line)
  for name, rows, op_ms, wall_ms in profiles:
    print(
        f"\n{name}: XLA op time {op_ms:.1f} ms per step summed over threads, {wall_ms:.1f} ms wall per step "
        "(profiled)\n\n| where | ms/step | share |\n|---|---|---|"
    )
    for category, ms, share in rows:
      print(f"| {category} | {ms:.1f} | {100 * share:.0f}% |")


if __name__ == "__main__":
  main()
