r"""Writes the SYNTHETIC LLP-structured dataset to disk in the real features' layout, or a SYNTHETIC video.

    python launch/make_synthetic.py --out=./llp_synthetic [--num_train_clips=2000] \
        [--splits=train,val,test] [--num_eval_clips=0] [--layout=official] [--data_seed=0] [--labels_dir=]
    python launch/make_synthetic.py --video --out=demo.mp4 [--video_seconds=10]

With --video it writes one SYNTHETIC video instead (H.264 + AAC, 29.97 fps: a frame counter over moving colour
bars and a 440-Hz tone; avvp_jax/video/synthetic.py; needs the `video` extra), something to try
launch/extract_features.py and launch/parse_video.py on. It holds no LLP event: parsed events mean nothing.

Writes, for every clip of the chosen splits (the same clips and features `avvp_jax.tasks.llp.synthetic` gives
the trainer when no features are configured):
  official layout:  OUT/vggish/<id>.npy [10, 128], OUT/res152/<id>.npy [80, 2048],
                    OUT/r2plus1d_18/<id>.npy [10, 512]
  clip_clap layout: OUT/CLAP/features/<id>.npy [64, 768] (VALOR's CLAP maps), OUT/CLIP/features/<id>.npy
                    [10, 768]
float32, `<id>` the first 11 characters of the clip's filename; OUT/labels/ with the real annotation rows
of exactly those clips (unless --nowrite_labels); and OUT/SYNTHETIC.txt, OUT/labels/SYNTHETIC.txt saying
that the features are synthetic; and (unless --nopseudo_labels) SIMULATED VALOR-like segment pseudo labels of
the same clips in VALOR's layout, OUT/CLAP/segment_pseudo_labels/<id>.npy (audio) and
OUT/CLIP/segment_pseudo_labels/<id>.npy (visual), [10, 25] int64 0/1, with their precision, recall and F1 against
the dense labels in OUT/pseudo_label_quality.json (see avvp_jax/tasks/llp/synthetic.py). Then train on the real-data
path with
`--config.data.features_dir=OUT --config.data.labels_dir=OUT/labels`.

Flags:
  --out              (required) the folder to fill (created).
  --num_train_clips  size of the seeded training subset; -1: all 10,000 real training clips.
  --splits           comma-separated splits to write (train, val, test).
  --num_eval_clips   write only the first N validation and test clips (file order); 0: all of them.
  --layout           official (VGGish / ResNet-152 / R(2+1)D-18) or clip_clap (CLAP / CLIP).
  --data_seed        the dataset seed (training subset, drawn training labels, every feature).
  --labels_dir       the real annotation files to start from; empty: the packaged ones.
  --write_labels     also write OUT/labels/ (default true).
  --pseudo_labels    also write the SIMULATED pseudo labels (default true).
  --video            write a SYNTHETIC video to --out (a .mp4 file) instead of features.
  --video_seconds    its length in seconds (default 10: one 10-s window).

Old names, deprecated (they warn): --output_dir (now --out), --seed (now --data_seed).

Bad input prints one line `error: ...` to stderr and exits with status 2.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

from avvp_jax import cli  # pylint: disable=g-import-not-at-top

_OUT = flags.DEFINE_string("out", None, "Folder to write the synthetic features into (required).")
_NUM_TRAIN_CLIPS = flags.DEFINE_integer(
    "num_train_clips", 2000, "Training clips (seeded subset of the real ones); -1: all."
)
_SPLITS = flags.DEFINE_list("splits", ["train", "val", "test"], "Splits to write.")
_NUM_EVAL_CLIPS = flags.DEFINE_integer("num_eval_clips", 0, "First N val/test clips only; 0: all.")
_LAYOUT = flags.DEFINE_string("layout", "official", "official or clip_clap.")
_DATA_SEED = flags.DEFINE_integer("data_seed", 0, "Dataset seed.")
_LABELS_DIR = flags.DEFINE_string(
    "labels_dir", "", "Real AVVP_*.csv files; empty: the packaged ones."
)
_WRITE_LABELS = flags.DEFINE_bool(
    "write_labels", True, "Also write OUT/labels/ for exactly these clips."
)
_PSEUDO_LABELS = flags.DEFINE_bool(
    "pseudo_labels",
    True,
    "Also write SIMULATED VALOR-like segment pseudo labels "
    "(OUT/CLAP/segment_pseudo_labels/, OUT/CLIP/segment_pseudo_labels/).",
)
_VIDEO = flags.DEFINE_bool(
    "video", False, "Write a SYNTHETIC video to --out (.mp4) instead of features."
)
_VIDEO_SECONDS = flags.DEFINE_float("video_seconds", 10.0, "The video's length in seconds.")
cli.deprecated_alias("output_dir", "out")
cli.deprecated_alias("seed", "data_seed")
cli.required(_OUT)


def make_synthetic() -> None:
  """Generates and writes the chosen splits; raises InputError on bad flags."""
  import pathlib  # pylint: disable=g-import-not-at-top
  from avvp_jax.tasks.llp import annotations  # pylint: disable=g-import-not-at-top
  from avvp_jax.tasks.llp import synthetic  # pylint: disable=g-import-not-at-top
  from avvp_jax.errors import InputError  # pylint: disable=g-import-not-at-top

  if not _OUT.value:
    raise InputError("--out is empty: name the folder to write the synthetic features into.")
  splits = [s.strip() for s in _SPLITS.value if s.strip()]
  unknown = [s for s in splits if s not in annotations.SPLITS]
  if unknown or not splits:
    raise InputError(
        f"--splits={','.join(_SPLITS.value)}: name one or more of {', '.join(annotations.SPLITS)}."
    )
  if _NUM_EVAL_CLIPS.value < 0:
    raise InputError(f"--num_eval_clips={_NUM_EVAL_CLIPS.value} must be >= 0 (0: all clips).")
  num_train = None if _NUM_TRAIN_CLIPS.value == -1 else _NUM_TRAIN_CLIPS.value
  data = synthetic.SyntheticLLP(
      num_train_clips=num_train,
      seed=_DATA_SEED.value,
      layout=_LAYOUT.value,
      frames="raw",
      labels_dir=_LABELS_DIR.value or None,
  )
  output_dir = pathlib.Path(_OUT.value).expanduser()
  output_dir.mkdir(parents=True, exist_ok=True)
  logging.info("SYNTHETIC data: writing %s to %s", data.description, output_dir)

  written = {}
  for split in splits:
    split_data = data.split(split)
    count = len(split_data)
    if split != "train" and _NUM_EVAL_CLIPS.value:
      count = min(count, _NUM_EVAL_CLIPS.value)
    start = time.perf_counter()
    synthetic.write_features(data, output_dir, split, range(count))
    seconds = time.perf_counter() - start
    written[split] = split_data.filenames[:count]
    logging.info(
        "SYNTHETIC %s: %d clips written in %.1f s (%.0f clips/s).",
        split,
        count,
        seconds,
        count / max(seconds, 1e-9),
    )

  counts = {split: len(names) for split, names in written.items()}
  (output_dir / synthetic.MARKER_FILE).write_text(
      synthetic.marker_text(data, counts, "Synthetic features")
  )
  if _PSEUDO_LABELS.value:
    write_simulated_pseudo_labels(data, output_dir, written)
  if _WRITE_LABELS.value:
    labels_out = output_dir / "labels"
    rows = synthetic.write_labels(data, labels_out, written)
    (labels_out / synthetic.MARKER_FILE).write_text(
        synthetic.marker_text(
            data, counts, "Real LLP annotation rows of the clips of a SYNTHETIC feature set"
        )
    )
    logging.info(
        "SYNTHETIC data: labels of exactly these clips in %s (%s).",
        labels_out,
        ", ".join(f"{name} {n} rows" for name, n in rows.items()),
    )
    logging.info(
        "SYNTHETIC data ready: train with --config.data.features_dir=%s "
        "--config.data.labels_dir=%s --config.data.layout=%s",
        output_dir,
        labels_out,
        data.layout,
    )
  else:
    logging.info("SYNTHETIC data ready in %s (layout %s).", output_dir, data.layout)


def write_simulated_pseudo_labels(data, output_dir, written) -> None:
  """Writes the SIMULATED pseudo labels of the written clips in VALOR's layout, with their quality."""
  import json  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from avvp_jax.tasks.llp import pseudo_labels  # pylint: disable=g-import-not-at-top
  from avvp_jax.tasks.llp import simulated_teacher  # pylint: disable=g-import-not-at-top
  from avvp_jax.tasks.llp import synthetic  # pylint: disable=g-import-not-at-top

  start = time.perf_counter()
  simulated = simulated_teacher.simulated_pseudo_labels(data, tuple(written))
  ids, audio, visual, report = (
      [],
      [],
      [],
      {
          "synthetic": True,
          "data": f"SIMULATED: {data.description}",
          "targets": simulated_teacher.PSEUDO_LABEL_TARGET_F1,
      },
  )
  for split, names in written.items():
    count = len(names)
    split_audio, split_visual = (x[:count] for x in simulated.labels[split])
    ids += list(names)
    audio.append(split_audio)
    visual.append(split_visual)
    truth = data.dense_labels(split)
    report[split] = {
        "clips": count,
        **pseudo_labels.quality(split_audio, split_visual, truth[0][:count], truth[1][:count]),
    }
  logging.info("%s", simulated.summary())
  counts = {split: len(names) for split, names in written.items()}
  root = pseudo_labels.write_pseudo_labels(
      output_dir,
      ids,
      np.concatenate(audio),
      np.concatenate(visual),
      marker_text=synthetic.marker_text(
          data,
          counts,
          "SIMULATED segment pseudo labels (a synthetic VALOR-like "
          "teacher on the hidden dense labels)",
      ),
      extra_files={"pseudo_label_quality.json": json.dumps(report, indent=2) + "\n"},
  )
  logging.info(
      "SIMULATED (SYNTHETIC) pseudo labels of %d clips written to %s/{%s,%s} in %.1f s (quality: "
      "%s/pseudo_label_quality.json); train LEAP on them with --config.data.pseudo_labels=%s",
      len(ids),
      root,
      pseudo_labels.AUDIO_SUBDIR,
      pseudo_labels.VISUAL_SUBDIR,
      time.perf_counter() - start,
      root,
      root,
  )


def make_video() -> None:
  """Writes the SYNTHETIC video of --video to --out; raises InputError on bad flags."""
  from avvp_jax.errors import InputError  # pylint: disable=g-import-not-at-top

  synthetic_video = cli.video_module("synthetic")
  if not _OUT.value.endswith(".mp4"):
    raise InputError(f"--out={_OUT.value}: with --video, name an .mp4 file to write.")
  if not 0 < _VIDEO_SECONDS.value <= 600:
    raise InputError(f"--video_seconds={_VIDEO_SECONDS.value:g} must be in (0, 600].")
  path = os.path.expanduser(_OUT.value)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  synthetic_video.make_video(path, _VIDEO_SECONDS.value)
  logging.info(
      "SYNTHETIC video (%g s: a frame counter over colour bars and a tone; no LLP event) written to %s.",
      _VIDEO_SECONDS.value,
      path,
  )


def main(argv: list[str]) -> None:
  cli.no_arguments(argv)
  from avvp_jax.errors import InputError  # pylint: disable=g-import-not-at-top

  try:
    make_video() if _VIDEO.value else make_synthetic()
  except InputError as error:
    cli.fail(str(error))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
