#!/usr/bin/env bash
# GPU speed of HAN and LEAP training, in one run of under 10 minutes:
#   1. the device's peak: measured f32 and bf16 GEMMs beside its datasheet (bench/bench_flops.py --peak_only);
#   2. 10,000-clip epochs of HAN (batch 16) and LEAP (batch 32) with the data resident on the device (random
#      batches of the real shapes placed there before the clock starts, no input pipeline; the last LEAP batch
#      padded and masked as the pipeline pads it), for 1 seed and for 5 seeds in one program
#      (config.num_seeds=5): steps/s, clips/s, epoch seconds, FLOPs/clip (XLA's cost analysis), achieved
#      TFLOP/s, and the 5-seed program against 5 one-seed epochs (bench/bench_train.py --device_resident);
#   3. the HAN step with dropout keys from threefry2x32 (the default), rbg and unsafe_rbg, and without
#      dropout, timed round-robin in one process (bench/bench_flops.py; skipped when little time is left).
#
# Usage, from anywhere:  bash bench/gpu.sh
# Environment:
#   AVVP_BENCH_DRY_RUN=1   check the script on any backend (a CPU too): 40-clip epochs, seeds 1,2, 3 PRNG steps
#   AVVP_BENCH_CONFIGS     default han,leap          AVVP_BENCH_SEEDS   default 1,5
#   AVVP_BENCH_EPOCH_CLIPS default 10000             AVVP_BENCH_BUDGET_S default 570 (whole script)
#   AVVP_BENCH_PRNG=0      skip stage 3
#   AVVP_SKIP_INSTALL=1    never run pip. Otherwise pip runs only when needed: `pip install -e .[gpu]` when JAX
#                          has no GPU backend, or `pip install --no-deps ml-collections==1.1.0` (a pinned
#                          dependency of the package, pure Python) when only that is missing; the GPU image
#                          holds CUDA JAX, flax, optax, orbax and chex but not ml-collections, and may have no
#                          network. AVVP_WHEELS=DIR installs from a folder of wheels instead (no index).
#   PYTHON                 the interpreter (default python3)
# Nothing is installed into the repository: it runs from the source tree (PYTHONPATH), and TensorFlow is not
# needed (the device-resident epochs read no data).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
BUDGET=${AVVP_BENCH_BUDGET_S:-570}
CONFIGS=${AVVP_BENCH_CONFIGS:-han,leap}
if [[ "${AVVP_BENCH_DRY_RUN:-0}" == 1 ]]; then
  CLIPS=${AVVP_BENCH_EPOCH_CLIPS:-40}; SEEDS=${AVVP_BENCH_SEEDS:-1,2}; PRNG_STEPS=3
else
  CLIPS=${AVVP_BENCH_EPOCH_CLIPS:-10000}; SEEDS=${AVVP_BENCH_SEEDS:-1,5}; PRNG_STEPS=30
fi

left() { echo $((BUDGET - SECONDS)); }
# run_stage NAME MAX_SECONDS COMMAND...: the command under a timeout of min(MAX, time left - 10 s).
run_stage() {
  local name=$1 max=$2; shift 2
  local limit=$(( $(left) - 10 < max ? $(left) - 10 : max ))
  if (( limit < 20 )); then echo "== $name: skipped, ${limit}s left"; return 1; fi
  echo "== $name (at most ${limit}s)"
  timeout -k 5 "$limit" "$@"
  local rc=$?
  if (( rc == 124 || rc == 137 )); then echo "== $name: stopped at its ${limit}s limit"; fi
  return $rc
}

backend() { "$PY" -c 'import jax; print(jax.default_backend())' 2>/dev/null || echo none; }
missing_modules() {
  "$PY" - <<'EOF' 2>/dev/null || echo "python"
import importlib.util
names = ["jax", "flax", "optax", "chex", "ml_collections", "orbax.checkpoint", "etils", "absl", "numpy"]
missing = []
for name in names:
  try:
    found = importlib.util.find_spec(name) is not None
  except (ImportError, ValueError):
    found = False
  if not found:
    missing.append(name)
print(" ".join(missing))
EOF
}
pip_install() {  # pip_install ARGS...: from AVVP_WHEELS when given, else the configured index
  local source=()
  [[ -n "${AVVP_WHEELS:-}" ]] && source=(--no-index --find-links "$AVVP_WHEELS")
  timeout -k 5 $(( $(left) > 200 ? 180 : 60 )) "$PY" -m pip install -q ${source[@]+"${source[@]}"} "$@"
}

echo "== machine"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" --version

if [[ "${AVVP_SKIP_INSTALL:-0}" != 1 ]]; then
  if [[ "$(backend)" != gpu && "${AVVP_BENCH_DRY_RUN:-0}" != 1 ]]; then
    echo "== JAX has no GPU backend here: pip install -e .[gpu]"
    # The package pins Python 3.11 (its tested stack); GPU images may run 3.12, which the pins also support.
    pip_install --ignore-requires-python --no-build-isolation -e ".[gpu]" || echo "pip install -e .[gpu] failed"
  fi
  if [[ " $(missing_modules) " == *" ml_collections "* ]]; then
    echo "== ml_collections is missing: pip install --no-deps ml-collections==1.1.0"
    pip_install --no-deps "ml-collections==1.1.0" || echo "installing ml-collections failed"
  fi
fi
MISSING=$(missing_modules)
if [[ -n "$MISSING" ]]; then
  echo "error: missing Python modules: $MISSING (set AVVP_WHEELS=DIR to a folder of their wheels, or install them)"
  exit 1
fi
BACKEND=$(backend)
if [[ "$BACKEND" != gpu && "${AVVP_BENCH_DRY_RUN:-0}" != 1 ]]; then
  echo "error: JAX's backend is '$BACKEND', not gpu (AVVP_BENCH_DRY_RUN=1 runs the script on it anyway)"
  exit 1
fi
"$PY" - <<'EOF'
import importlib.metadata as md
names = ["jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "chex", "ml-collections", "numpy"]
def version(name):
  try:
    return md.version(name)
  except md.PackageNotFoundError:
    return "-"
print("versions: " + ", ".join(f"{name} {version(name)}" for name in names))
EOF

STATUS=0
run_stage "peak" 90 "$PY" bench/bench_flops.py --peak_only || STATUS=1
run_stage "epochs: $CONFIGS, seeds $SEEDS, $CLIPS clips" 420 \
  "$PY" bench/bench_train.py --device_resident --configs="$CONFIGS" --num_seeds="$SEEDS" --epoch_clips="$CLIPS" \
  || STATUS=1
if [[ "${AVVP_BENCH_PRNG:-1}" != 0 ]]; then
  run_stage "dropout keys (HAN)" 150 "$PY" bench/bench_flops.py --configs=han --steps="$PRNG_STEPS" \
    --no_measure_fma || STATUS=1
fi
echo "== done in ${SECONDS}s (status $STATUS)"
exit $STATUS
