"""Times the LLP input pipeline: the TFDS build, then training and evaluation passes (clips/s and MB/s).

Run from the repository root:

  python bench/bench_pipeline.py                       # synthetic data, pooled and raw frames
  python bench/bench_pipeline.py --source=files        # .npy files in the official layout, read and built

`--source=synthetic` builds the embedded SYNTHETIC set (features generated while building); `--source=files`
first writes the synthetic features as official-layout `.npy` files plus a matching labels folder
(`avvp_jax.tasks.llp.synthetic.write_features` / `write_labels`) and builds from those files, which times the
real-feature path (reading, checking, pooling). Each build goes into a fresh temporary data dir.

Phases: "build" (generation or reading + TFRecord writing; clips of all three splits), "train cold" (the
first pass over the training split after the build: the OS page cache still holds the new files, so this
is not a cold-disk figure, which cannot be measured without dropping caches), "train warm" (the median of
the later passes), "eval warm" (padded validation batches). MB/s counts the feature bytes delivered.
"""

import pathlib
import shutil
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from avvp_jax.tasks.llp import batch_keys  # pylint: disable=g-import-not-at-top
from avvp_jax.tasks.llp import pipeline  # pylint: disable=g-import-not-at-top
from avvp_jax.tasks.llp import synthetic  # pylint: disable=g-import-not-at-top
from configs import common  # pylint: disable=g-import-not-at-top

_SOURCE = flags.DEFINE_enum("source", "synthetic", ["synthetic", "files"], "What the build reads.")
_FRAMES = flags.DEFINE_list("frames", ["pooled", "raw"], "Frame modes to time.")
_TRAIN_CLIPS = flags.DEFINE_integer("train_clips", 2000, "Training clips.")
_EVAL_CLIPS = flags.DEFINE_integer(
    "eval_clips", 0, "Validation/test clips (0: all 649 / 1,200; synthetic only)."
)
_BATCH = flags.DEFINE_integer("batch_size", 16, "Training batch (the default config's).")
_EVAL_BATCH = flags.DEFINE_integer("eval_batch_size", 64, "Evaluation batch.")
_PASSES = flags.DEFINE_integer("warm_passes", 3, "Warm training passes (the median is reported).")


def _feature_bytes(batch: dict) -> int:
  return sum(batch[k].nbytes for k in batch_keys.FEATURE_KEYS if k in batch)


def _time_pass(batches) -> tuple[float, int, int]:
  start = time.perf_counter()
  clips = size = 0
  for batch in batches:
    clips += int(batch["mask"].sum())
    size += _feature_bytes(batch)
  return time.perf_counter() - start, clips, size


def _write_files(root: pathlib.Path, frames: str) -> dict:
  data = synthetic.SyntheticLLP(_TRAIN_CLIPS.value, seed=0, layout="official", frames="raw")
  eval_clips = _EVAL_CLIPS.value or 200
  written = {}
  for split in ("train", "val", "test"):
    n = len(data.split(split)) if split == "train" else min(eval_clips, len(data.split(split)))
    synthetic.write_features(data, root / "features", split, range(n))
    written[split] = data.split(split).filenames[:n]
  synthetic.write_labels(data, root / "labels", written)
  return dict(features_dir=str(root / "features"), labels_dir=str(root / "labels"), frames=frames)


def _row(name: str, frames: str, phase: str, seconds: float, clips: int, size: int) -> str:
  return (
      f"| {name:9s} | {frames:6s} | {phase:10s} | {clips:6d} | {seconds:8.2f} | {clips / seconds:9.0f} | "
      f"{size / seconds / 2**20:8.1f} |"
  )


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  rows = []
  for frames in _FRAMES.value:
    root = pathlib.Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    try:
      if _SOURCE.value == "files":
        start = time.perf_counter()
        config = _write_files(root, frames)
        print(
            f"wrote the .npy files ({frames} run) in {time.perf_counter() - start:.1f} s",
            flush=True,
        )
      else:
        config = dict(
            features_dir="",
            synthetic_train_clips=_TRAIN_CLIPS.value,
            synthetic_seed=0,
            synthetic_eval_clips=_EVAL_CLIPS.value,
            frames=frames,
        )
      config.update(data_dir=str(root / "tfds"), layout="official", shuffle_buffer=10_000)
      data_config = common.get_config().data  # configs/common.py's defaults with the fields above
      data_config.update(config)
      start = time.perf_counter()
      data = pipeline.prepare(
          data_config,
          batch_size=_BATCH.value,
          eval_batch_size=_EVAL_BATCH.value,
          seed=0,
          process_index=0,
          process_count=1,
      )
      build_s = time.perf_counter() - start
      total = sum(data.num_clips(s) for s in ("train", "val", "test"))
      per_clip = sum(int(np.prod(s)) * 4 for s in data.feature_shapes.values())
      rows.append(_row(_SOURCE.value, frames, "build", build_s, total, total * per_clip))
      rows.append(_row(_SOURCE.value, frames, "train cold", *_time_pass(data.train_batches(0))))
      warm = sorted(
          (_time_pass(data.train_batches(epoch)) for epoch in range(1, 1 + _PASSES.value)),
          key=lambda r: r[0],
      )
      rows.append(_row(_SOURCE.value, frames, "train warm", *warm[len(warm) // 2]))
      list(data.eval_batches("val"))  # first eval pass
      rows.append(_row(_SOURCE.value, frames, "eval warm", *_time_pass(data.eval_batches("val"))))
      print(f"{frames}: {data.description}", flush=True)
    finally:
      shutil.rmtree(root, ignore_errors=True)
  print(
      f"\nbatch {_BATCH.value} (train, last batch padded and masked), {_EVAL_BATCH.value} (eval, padded); "
      "1 process\n"
  )
  print("| source    | frames | phase      |  clips |    secs |   clips/s |     MB/s |")
  print("|-----------|--------|------------|--------|----------|-----------|----------|")
  print("\n".join(rows))


if __name__ == "__main__":
  app.run(main)
