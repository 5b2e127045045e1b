r"""Whole runs, the official PyTorch code against avvp_jax, phase by phase, on the same CPU.

    python bench/bench_vs_official.py --official=DIR --features=DIR [--model=han|leap_mmpyr] [--epochs=3] \
        [--clips=2000] [--eval_clips=0] [--repeats=1] [--test] [--rerun] [--threads=2] \
        [--official_python=PYTHON]

--official is a checkout of YapengTian/AVVP-ECCV20 (`--model=han`, main_avvp.py) or jasongief/LEAP
(`--model=leap_mmpyr`, main_leap.py): a work tree, or a bare git directory (what the `fetch` tool writes; the
files are read with `git show`). --features is an LLP features folder in the official layout with its
`labels/` (what `launch/make_synthetic.py --out=DIR` writes); a missing or empty folder is filled first with
`launch/make_synthetic.py --num_train_clips=--clips --num_eval_clips=--eval_clips`: SYNTHETIC features, said
so in the output. The official code needs pandas and torch (and imports torchvision.transforms):
--official_python names an interpreter that has them (default: this one).

What runs, whole processes, back to back (with --repeats, official and ours alternate):
  official  its training for --epochs epochs with its validation and best-model save every epoch
            (`main_avvp.py` with the paper recipe, batch 16; `main_leap.py` with run_leap_train.sh's flags,
            batch 32), then with --test its own test process (`--mode test`), as its README runs them.
  ours      `launch/train.py --config=configs/han.py` (or `configs/leap_mmpyr.py`) on the same features,
            `--config.num_epochs=--epochs`, the same recipe (LEAP: the same GloVe label table file and
            the same pseudo-label files), and with --test its test report in the same process
            (`config.final_report=test`; without --test, none). A fresh compilation cache per run, so
            every run of ours compiles as a first run does; TFDS builds are kept in one folder per bench
            run, so only the first run of ours builds the dataset (its own phase below).
  rerun     with --rerun, after each run of ours the same command again in a fresh workdir with that
            run's compilation cache (what a second run in the same place finds); the output gives, per
            pair, the time from the command to the end of the first step (start-up and compile) both times.

The official checkout is copied to a temporary folder (only its .py, .csv, .sh and small .pt files) and
patched there for a CPU run, nothing else; each patch is printed:
  - `.to('cuda')` -> `.to('cpu')` and `.cuda()` dropped (no GPU here);
  - the fixed annotation paths of the evaluation (`data/AVVP_eval_audio.csv`, `../data/`) and LEAP's fixed
    pseudo-label folders (`../data/CLAP|CLIP/segment_pseudo_labels`) point into --features;
  - where the interpreter has no working torchvision: a stand-in `torchvision.transforms.Compose` (the only
    torchvision name the training code uses) in the copy.
Every other path is passed as the scripts' own arguments. The DataLoaders keep their 12 training workers.

Phases come from timestamps taken inside each process without printing: this file is also the runner
(`--hooked`, standard library only, so it runs under --official_python) that wraps, before the script's
`main()` starts, the functions that begin and end each phase, and appends one JSON line per event to a
file. Official: the first `optimizer.zero_grad()` (the first batch is in hand), `eval()` (validation),
`torch.save()` (saves), `main()`. Ours: the first `sharding.global_batch()` (the first batch is in hand),
`Chrono.compiled` (the end of the compile step), `train._validate` (validation), `Checkpointer.save /
save_best / __exit__` (saves, and the wait for asynchronous saves), `streams.build_once` (the TFDS build),
`evaluate_checkpoint` (the test report) and `train.train_and_evaluate`. Then per run:
  start-up      process start to the first batch in hand (imports, data, model and optimizer set-up)
  compile       ours: the first step, compile included (the official code has none)
  steps         the rest of the training loop: the first batch to the end of training, less compile,
                validation and saves
  validation    every validation, metrics included
  saves         checkpoint writes (ours: the last asynchronous save's wait too)
  test report   official: its whole second process; ours: the final report in the same process
  other         the rest: exit, cleanup, log flushes
  total         the command(s) from start to exit

Threads: torch is held to --threads intra-op threads (`OMP_NUM_THREADS`, `MKL_NUM_THREADS` and
`torch.set_num_threads`), and both sides run under `taskset` on the first --threads cores (the whole CPU on
a 2-core machine), so JAX/XLA uses the same cores.

Measured figures (a quiet 2-core x86-64 CPU, 2,000 SYNTHETIC training clips, val 649, test 1,200; the tables
per phase: docs/benchmarks.md): HAN 10 epochs, official 287.5 s, ours 117.5 s (2.45x; per epoch 2.54x);
MM-Pyramid + LEAP 1 epoch and the test report, official 223.5 s, ours 210.5 s (1.06x).
"""

import contextlib
import functools
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# --- the runner (standard library only: it also runs under the official code's interpreter) -------------


class _Recorder:
  """Appends one JSON line per event to `path`: {"event", "begin", "end"} in `time.time()` seconds."""

  def __init__(self, path: str):
    self._file = open(path, "a", encoding="utf-8")  # pylint: disable=consider-using-with

  def record(self, event: str, begin: float, end: float | None = None) -> None:
    self._file.write(json.dumps({"event": event, "begin": begin, "end": end or begin}) + "\n")
    self._file.flush()

  def span(self, event: str, fn):
    """`fn`, recording the span of each call as `event`."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
      begin = time.time()
      try:
        return fn(*args, **kwargs)
      finally:
        self.record(event, begin, time.time())

    return wrapped

  def first_call(self, event: str, owner, name: str) -> None:
    """Records the moment `owner.name` is first called as `event`, then puts the original back."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapped(*args, **kwargs):
      self.record(event, time.time())
      setattr(owner, name, original)
      return original(*args, **kwargs)

    setattr(owner, name, wrapped)


def _run_official(recorder: _Recorder, script: str, argv: list[str], threads: int) -> None:
  """Imports the official script as a module, wraps its phase functions, then calls its `main()`."""
  sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
  import torch  # pylint: disable=import-outside-toplevel  (the official interpreter's)

  torch.set_num_threads(threads)
  module = importlib.import_module(os.path.splitext(os.path.basename(script))[0])
  module.eval = recorder.span("validation", module.eval)
  torch.save = recorder.span("save", torch.save)
  recorder.first_call("first_batch", torch.optim.Optimizer, "zero_grad")
  sys.argv = [script] + argv
  recorder.span("main", module.main)()


def _hook_ours(recorder: _Recorder) -> None:
  """Wraps the trainer's phase functions (called once the launcher has imported them)."""
  # pylint: disable=import-outside-toplevel
  from avvp_jax import checkpoint
  from avvp_jax import reporting
  from avvp_jax import sharding
  from avvp_jax import train
  from avvp_jax.data import streams
  from avvp_jax.tools import evaluate_checkpoint

  # pylint: enable=import-outside-toplevel
  streams.build_once = recorder.span("data_build", streams.build_once)
  train._validate = recorder.span("validation", train._validate)  # pylint: disable=protected-access
  train.train_and_evaluate = recorder.span("main", train.train_and_evaluate)
  evaluate_checkpoint.evaluate_checkpoint = recorder.span(
      "test_report", evaluate_checkpoint.evaluate_checkpoint
  )
  for name in ("save", "save_best", "__exit__"):
    setattr(
        checkpoint.Checkpointer,
        name,
        recorder.span("save", getattr(checkpoint.Checkpointer, name)),
    )
  recorder.first_call("first_batch", sharding, "global_batch")
  recorder.first_call("compiled", reporting.Chrono, "compiled")


def _run_ours(recorder: _Recorder, script: str, argv: list[str]) -> None:
  """Loads launch/train.py as a module and runs it as its `__main__` does, hooks added at its runtime set-up
  (by then it has imported the trainer, and JAX's environment is set as it would be)."""
  spec = importlib.util.spec_from_file_location("avvp_jax_launch_train", script)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  from absl import app  # pylint: disable=import-outside-toplevel
  from avvp_jax import cli  # pylint: disable=import-outside-toplevel

  setup_runtime = cli.setup_runtime

  def setup_then_hook(*args, **kwargs):
    result = setup_runtime(*args, **kwargs)
    _hook_ours(recorder)
    return result

  cli.setup_runtime = setup_then_hook
  sys.argv = [script] + argv
  app.run(module.main, flags_parser=cli.parse_flags)


def hooked_main(args: list[str]) -> None:
  """`--hooked official|ours EVENTS THREADS SCRIPT ARGS...`: runs SCRIPT with its phases recorded."""
  side, events, threads, script, argv = args[0], args[1], int(args[2]), args[3], args[4:]
  recorder = _Recorder(events)
  if side == "official":
    _run_official(recorder, script, argv, threads)
  else:
    _run_ours(recorder, script, argv)


# --- phases from the events -----------------------------------------------------------------------------

PHASES = ("start-up", "compile", "steps", "validation", "saves", "test report", "other", "total")


def read_events(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def phases(events: list[dict], start: float, end: float, test_seconds: float | None = None) -> dict:
  """Seconds per phase of one run (see the module docstring).

  Args:
    events: the training process's events (`read_events`): first_batch, compiled (ours), main, validation,
      save, data_build, test_report (ours).
    start, end: the training process's launch and exit (`time.time()`).
    test_seconds: the official side's separate test process, whole (None: none, or ours' in-process report).

  Returns:
    {phase: seconds} over PHASES (compile 0.0 without a "compiled" event), plus "data build" (inside
    start-up) and "clips/s" left to the caller.
  """
  points = {}
  for e in events:
    points.setdefault(e["event"], e)  # the first of each
  if "first_batch" not in points or "main" not in points:
    raise ValueError("the run recorded no first batch or no main(): it did not train (see its log)")
  first = points["first_batch"]["begin"]
  main_end = max(e["end"] for e in events if e["event"] == "main")

  def inside(name: str, lo: float, hi: float) -> float:
    return sum(
        e["end"] - e["begin"] for e in events if e["event"] == name and lo <= e["begin"] <= hi
    )

  compile_s = points["compiled"]["begin"] - first if "compiled" in points else 0.0
  validation = inside("validation", first, main_end)
  saves = inside("save", first, main_end)
  test = inside("test_report", main_end, end) if test_seconds is None else test_seconds
  out = {
      "start-up": first - start,
      "compile": compile_s,
      "steps": (main_end - first) - compile_s - validation - saves,
      "validation": validation,
      "saves": saves,
      "test report": test,
      "total": (end - start) + (test_seconds or 0.0),
      "data build": inside("data_build", start, first),
  }
  out["other"] = out["total"] - sum(out[p] for p in PHASES if p not in ("other", "total"))
  return out


def table(rows: list[tuple[str, dict, dict]]) -> str:
  """Per-phase seconds, official against ours, and official / ours; rows: (label, official, ours)."""
  lines = []
  for label, official, ours in rows:
    lines.append(f"{label}:")
    lines.append(f"  {'phase':<13}{'official s':>12}{'avvp_jax s':>12}{'ratio':>8}")
    for phase in PHASES + ("data build",):
      a, b = official.get(phase, 0.0), ours.get(phase, 0.0)
      ratio = f"{a / b:.2f}x" if b > 0.05 and a > 0.05 else "-"
      name = "  (data build)" if phase == "data build" else phase
      lines.append(f"  {name:<13}{a:>12.1f}{b:>12.1f}{ratio:>8}")
  return "\n".join(lines)


# --- the official checkout, copied and patched --------------------------------------------------------

_KEEP = (".py", ".csv", ".sh", ".pt")
_MAX_BYTES = (
    5 << 20
)  # checkpoints (MMIL_Net.pt) are left out; the GloVe label table (35 kB) is kept


def copy_checkout(official: str, dest: str) -> None:
  """The checkout's small source and data files into `dest`, from a work tree or a bare git directory."""
  if os.path.isdir(os.path.join(official, "objects")) and os.path.exists(
      os.path.join(official, "HEAD")
  ):
    git = ["git", f"--git-dir={official}"]
    listing = subprocess.run(
        git + ["ls-tree", "-r", "-l", "HEAD"], check=True, capture_output=True, text=True
    ).stdout
    for line in listing.splitlines():
      meta, path = line.split("\t", 1)
      size = meta.split()[3]
      if not path.endswith(_KEEP) or not size.isdigit() or int(size) > _MAX_BYTES:
        continue  # other files, blobs the snapshot lacks ("BAD"), checkpoints
      blob = subprocess.run(git + ["show", f"HEAD:{path}"], capture_output=True, check=True)
      os.makedirs(os.path.join(dest, os.path.dirname(path)), exist_ok=True)
      with open(os.path.join(dest, path), "wb") as f:
        f.write(blob.stdout)
    return
  for folder, dirs, files in os.walk(official):
    dirs[:] = [d for d in dirs if d not in (".git", "video", "frame")]
    for name in files:
      src = os.path.join(folder, name)
      if name.endswith(_KEEP) and os.path.getsize(src) <= _MAX_BYTES:
        rel = os.path.relpath(src, official)
        os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
        shutil.copy(src, os.path.join(dest, rel))


def _patch(dest: str, rel: str, old: str, new: str, why: str, log: list[str]) -> None:
  path = os.path.join(dest, rel)
  with open(path, encoding="utf-8") as f:
    text = f.read()
  count = text.count(old)
  if not count:
    raise ValueError(f"{rel}: `{old}` not found: not the checkout this bench patches")
  with open(path, "w", encoding="utf-8") as f:
    f.write(text.replace(old, new))
  log.append(f"{rel}: `{old}` -> `{new}` ({count}x; {why})")


_TORCHVISION_STANDIN = '''"""Stand-in written by bench/bench_vs_official.py: the official code only uses transforms.Compose."""
'''
_TRANSFORMS_STANDIN = '''"""Stand-in written by bench/bench_vs_official.py."""


class Compose:
  def __init__(self, transforms):
    self.transforms = transforms

  def __call__(self, sample):
    for transform in self.transforms:
      sample = transform(sample)
    return sample
'''


def patch_checkout(dest: str, model: str, features: str, python: str) -> list[str]:
  """CPU patches of the copied checkout (see the module docstring); returns one line per patch."""
  labels = os.path.join(features, "labels")
  log = []
  if model == "han":
    main = "main_avvp.py"
    _patch(dest, main, ".to('cuda')", ".to('cpu')", "no GPU", log)
    for kind in ("audio", "visual"):
      old = f'"data/AVVP_eval_{kind}.csv"'
      _patch(
          dest, main, old, repr(os.path.join(labels, f"AVVP_eval_{kind}.csv")), "--features", log
      )
  else:
    main = "main_leap.py"
    _patch(dest, main, ".to('cuda')", ".to('cpu')", "no GPU", log)
    _patch(dest, "nets/Transformer.py", ".cuda()", "", "no GPU", log)
    _patch(dest, main, "data_dir = '../data/'", f"data_dir = {labels + '/'!r}", "--features", log)
    for modality in ("CLAP", "CLIP"):
      old = f'"../data/{modality}/segment_pseudo_labels"'
      new = repr(os.path.join(features, modality, "segment_pseudo_labels"))
      _patch(dest, "dataloader_leap_add_label.py", old, new, "--features", log)
  probe = subprocess.run(
      [python, "-c", "from torchvision import transforms"], capture_output=True, cwd="/"
  )
  if probe.returncode:
    os.makedirs(os.path.join(dest, "torchvision"))
    with open(os.path.join(dest, "torchvision", "__init__.py"), "w", encoding="utf-8") as f:
      f.write(_TORCHVISION_STANDIN)
    with open(os.path.join(dest, "torchvision", "transforms.py"), "w", encoding="utf-8") as f:
      f.write(_TRANSFORMS_STANDIN)
    with open(os.path.join(dest, "torchvision", "utils.py"), "w", encoding="utf-8") as f:
      f.write('"""Stand-in (unused)."""\n')
    log.append(
        "torchvision/ (new, in the copy): a stand-in transforms.Compose; this interpreter's torchvision "
        "does not import"
    )
  return log


# --- the two sides' commands ----------------------------------------------------------------------------


def official_args(model: str, features: str, epochs: int, save_dir: str, mode: str) -> list[str]:
  """main_avvp.py / main_leap.py arguments: the paper recipe (run_leap_train.sh's flags for LEAP)."""
  feats = [
      f"--audio_dir={os.path.join(features, 'vggish')}/",
      f"--video_dir={os.path.join(features, 'res152')}/",
      f"--st_dir={os.path.join(features, 'r2plus1d_18')}/",
  ]
  labels = os.path.join(features, "labels")
  csvs = [
      f"--label_train={labels}/AVVP_train.csv",
      f"--label_val={labels}/AVVP_val_pd.csv",
      f"--label_test={labels}/AVVP_test_pd.csv",
  ]
  if model == "han":
    return (
        feats
        + csvs
        + [
            f"--mode={mode}",
            "--batch-size=16",
            f"--epochs={epochs}",
            "--lr=3e-4",
            f"--model_save_dir={save_dir}/",
        ]
    )
  flags_on = ["--v_pseudo_flag", "--a_pseudo_flag"]
  if mode == "train":
    flags_on += [
        "--temporal_a_loss_flag",
        "--temporal_v_loss_flag",
        "--loss_temporal_wei=1",
        "--avss_loss_flag",
        "--loss_avss_wei=1",
        "--use_pseudo_label",
        "--eps=0.01",
    ]
  return (
      feats
      + csvs
      + [f"--mode={mode}"]
      + flags_on
      + [
          "--lv_layer_num=2",
          "--la_layer_num=2",
          "--avl_head=8",
          "--lr=1e-4",
          "--batch_size=32",
          f"--epochs={epochs}",
          "--model=MMPyr_LEAP_pretrained",
          f"--model_save_dir={save_dir}",
      ]
  )


def ours_args(model, features, epochs, workdir, data_dir, cache, test, checkout) -> list[str]:
  """launch/train.py arguments: the run card's recipe on the same features."""
  args = [
      f"--config={os.path.join(ROOT, 'configs', model + '.py')}",
      f"--workdir={workdir}",
      f"--config.data.features_dir={features}",
      f"--config.data.labels_dir={os.path.join(features, 'labels')}",
      f"--config.data.data_dir={data_dir}",
      f"--config.num_epochs={epochs}",
      f"--config.final_report={'test' if test else ''}",
      f"--compilation_cache={cache}",
  ]
  if model == "leap_mmpyr":
    table_file = os.path.join(checkout, "glove", "6B", "300d", "llp_label_glove_embeddings.pt")
    args += [
        f"--config.data.pseudo_labels={features}",
        f"--config.model.leap.label_embeddings={table_file}",
    ]
  return args


def run_process(cmd: list[str], cwd: str, env: dict, log_path: str) -> tuple[float, float]:
  """Runs `cmd` to its end with its output in `log_path`; returns (start, end) in `time.time()`."""
  with open(log_path, "w", encoding="utf-8") as log:
    start = time.time()
    code = subprocess.run(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    end = time.time()
  if code:
    with open(log_path, encoding="utf-8") as f:
      tail = f.read()[-3000:]
    raise RuntimeError(f"{' '.join(cmd[:6])} ... exited with {code}; log {log_path}:\n{tail}")
  return start, end


def uptime() -> str:
  with contextlib.suppress(OSError):
    with open("/proc/loadavg", encoding="utf-8") as f:
      return "load average " + " ".join(f.read().split()[:3])
  return "load average unknown"


def main(argv: list[str]) -> None:
  # pylint: disable=import-outside-toplevel
  from absl import app
  from absl import flags

  # pylint: enable=import-outside-toplevel
  f = flags.FLAGS
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  model, epochs, features = f.model, f.epochs, os.path.abspath(f.features)
  python = f.official_python or sys.executable
  work = tempfile.mkdtemp(prefix="bench_vs_official_")
  print(f"work folder {work}; {uptime()} before; {os.cpu_count()} CPUs here")
  if not os.path.isdir(features) or not os.listdir(features):
    print(f"features: writing SYNTHETIC ones to {features} ({f.clips} training clips)")
    subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "launch", "make_synthetic.py"),
            f"--out={features}",
            f"--num_train_clips={f.clips}",
            f"--num_eval_clips={f.eval_clips}",
        ],
        check=True,
    )
  synthetic = os.path.exists(os.path.join(features, "SYNTHETIC.txt"))
  counts = {}
  for split, name in (
      ("train", "AVVP_train.csv"),
      ("val", "AVVP_val_pd.csv"),
      ("test", "AVVP_test_pd.csv"),
  ):
    with open(os.path.join(features, "labels", name), encoding="utf-8") as csv:
      counts[split] = sum(1 for _ in csv) - 1
  print(
      f"features {features}: {'SYNTHETIC' if synthetic else 'real'}, clips "
      + ", ".join(f"{k} {v}" for k, v in counts.items())
  )
  checkout = os.path.join(work, "official")
  copy_checkout(os.path.abspath(f.official), checkout)
  print(f"official code copied from {f.official} to {checkout}; patches:")
  for line in patch_checkout(checkout, model, features, python):
    print("  " + line)
  cores = ",".join(str(i) for i in range(min(f.threads, os.cpu_count() or 1)))
  env = dict(os.environ)
  env.update(
      OMP_NUM_THREADS=str(f.threads),
      MKL_NUM_THREADS=str(f.threads),
      PYTHONPATH=ROOT,
      PYTHONUNBUFFERED="1",
  )
  # A fresh compilation cache per run of ours: an inherited JAX_COMPILATION_CACHE_DIR would win over it.
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  taskset = ["taskset", "-c", cores] if shutil.which("taskset") else []
  script = os.path.abspath(__file__)
  official_main = os.path.join(checkout, "main_avvp.py" if model == "han" else "main_leap.py")
  rows, reruns = [], []
  for repeat in range(f.repeats):
    sides = {}
    for side in ("official", "ours") if repeat % 2 == 0 else ("ours", "official"):
      folder = os.path.join(work, f"{side}_{repeat}")
      os.makedirs(folder)
      events = os.path.join(folder, "events.jsonl")
      if side == "official":
        cmd = taskset + [
            python,
            script,
            "--hooked",
            "official",
            events,
            str(f.threads),
            official_main,
        ]
        start, end = run_process(
            cmd + official_args(model, features, epochs, folder, "train"),
            checkout,
            env,
            os.path.join(folder, "train.log"),
        )
        test_seconds = None
        if f.test:
          test_start, test_end = run_process(
              taskset
              + [python, official_main]
              + official_args(model, features, epochs, folder, "test"),
              checkout,
              env,
              os.path.join(folder, "test.log"),
          )
          test_seconds = test_end - test_start
        sides[side] = phases(read_events(events), start, end, test_seconds)
      else:
        cmd = taskset + [
            sys.executable,
            script,
            "--hooked",
            "ours",
            events,
            str(f.threads),
            os.path.join(ROOT, "launch", "train.py"),
        ]
        args = ours_args(
            model,
            features,
            epochs,
            os.path.join(folder, "workdir"),
            os.path.join(work, "tfds"),
            os.path.join(folder, "xla_cache"),
            f.test,
            checkout,
        )
        start, end = run_process(cmd + args, ROOT, env, os.path.join(folder, "train.log"))
        sides[side] = phases(read_events(events), start, end)
        if f.rerun:  # the same command again in a fresh workdir, its compilation cache now filled
          again = os.path.join(work, f"ours_{repeat}_rerun")
          os.makedirs(again)
          args[args.index(f"--workdir={os.path.join(folder, 'workdir')}")] = (
              f"--workdir={os.path.join(again, 'workdir')}"
          )
          cmd[cmd.index(events)] = os.path.join(again, "events.jsonl")
          start, end = run_process(cmd + args, ROOT, env, os.path.join(again, "train.log"))
          reruns.append(
              (
                  repeat,
                  sides[side],
                  phases(read_events(os.path.join(again, "events.jsonl")), start, end),
              )
          )
      print(f"  run {repeat + 1} {side}: {sides[side]['total']:.1f} s; {uptime()}", flush=True)
    rows.append((f"run {repeat + 1}", sides["official"], sides["ours"]))
  steps_per_epoch = -(-counts["train"] // (16 if model == "han" else 32))  # the last batch too
  print(
      f"\n{model}: {epochs} epoch(s) of {counts['train']} "
      f"{'SYNTHETIC ' if synthetic else ''}training clips ({steps_per_epoch} steps each), "
      f"validation on {counts['val']} clips every epoch"
      + (f", test report on {counts['test']} clips" if f.test else "")
      + f"; torch {f.threads} threads, both sides on cores {cores}; seconds:"
  )
  print(table(rows))
  for label, official, ours in rows:
    per_epoch = lambda p: (p["steps"] + p["compile"] + p["validation"] + p["saves"]) / epochs
    print(
        f"{label}: whole run {official['total'] / ours['total']:.2f}x, per epoch (steps, compile, "
        f"validation, saves) {per_epoch(official):.1f} s vs {per_epoch(ours):.1f} s: "
        f"{per_epoch(official) / per_epoch(ours):.2f}x"
    )
  for repeat, first, again in reruns:
    to_step = lambda p: p["start-up"] + p["compile"]
    print(
        f"run {repeat + 1} ours, rerun with its compilation cache filled: the first step done "
        f"{to_step(first):.1f} s -> {to_step(again):.1f} s after the command "
        f"({to_step(first) / to_step(again):.2f}x sooner; start-up {first['start-up']:.1f} -> "
        f"{again['start-up']:.1f} s, compile {first['compile']:.1f} -> {again['compile']:.1f} s), "
        f"whole run {first['total']:.1f} -> {again['total']:.1f} s"
    )
  print(f"{uptime()} after; logs and events under {work}")


def _define_flags() -> None:
  from absl import flags  # pylint: disable=import-outside-toplevel

  flags.DEFINE_string("official", None, "Official checkout: a work tree or a bare git directory.")
  flags.DEFINE_string("features", None, "LLP features folder (official layout, with labels/).")
  flags.DEFINE_enum(
      "model", "han", ["han", "leap_mmpyr"], "HAN (AVVP-ECCV20) or MM-Pyramid+LEAP (LEAP)."
  )
  flags.DEFINE_integer("epochs", 3, "Training epochs, both sides.")
  flags.DEFINE_integer(
      "clips", 2000, "Training clips of a SYNTHETIC set written when --features is empty."
  )
  flags.DEFINE_integer("eval_clips", 0, "Its val/test clips (first N); 0: all.")
  flags.DEFINE_integer("repeats", 1, "Runs of each side (alternating order).")
  flags.DEFINE_bool("test", True, "Also the test report (official: its --mode test process).")
  flags.DEFINE_bool(
      "rerun",
      False,
      "After each run of ours, the same command again in a fresh workdir with that run's compilation cache.",
  )
  flags.DEFINE_integer("threads", 2, "torch threads, and the cores both sides run on.")
  flags.DEFINE_string("official_python", "", "Interpreter with torch and pandas; empty: this one.")
  flags.mark_flags_as_required(["official", "features"])


if __name__ == "__main__":
  if len(sys.argv) > 1 and sys.argv[1] == "--hooked":
    hooked_main(sys.argv[2:])
  else:
    from absl import app as absl_app  # pylint: disable=g-import-not-at-top

    _define_flags()
    absl_app.run(main)
