r"""Parses clips into audio, visual and audio-visual events with a trained model.

  python launch/parse.py --checkpoint=DIR --features=PATH --out=events.json [--plot=timeline.png]

Flags:
  --checkpoint   (required) a training workdir (its best save, else its latest), a step folder of one, or a
                 params-only checkpoint folder (e.g. a converted official HAN).
  --replica      a multi-seed checkpoint's replica to use (the seed it was trained with); default: the seed
                 ensemble, the mean of the replicas' probabilities.
  --features     (required) a features folder in either layout (official: vggish/ res152/ r2plus1d_18/;
                 clip_clap: CLAP/features/ CLIP/features/; each with <clip id>.npy), or one .npz file holding
                 `audio`, `frames` (or `visual`) and, for models with a motion stream, `motion`: one clip
                 ([T, D] arrays) or several ([N, T, D]; optional `clip_ids` [N] strings).
  --clips, --clip_list   which clips of a folder (comma-separated ids, or a file with one id per line);
                 default: every clip of the folder's audio sub-folder, in name order.
  --out          (required) the JSON file to write: a list with one record per clip, {"clip", "events":
                 [{"modality", "label", "onset", "offset", "score"}], "video_labels": [{"label", "score",
                 "audio", "visual"}]}; a name ending in .jsonl writes one record per line instead. An
                 event's score is its mean segment probability; a video label's score is the
                 model's whole-video score (the official gate), not a probability: in [0, 2) for
                 MMIL models (HAN, MM-Pyramid, LINK), 0 or 1 for LEAP; its audio and visual are
                 probabilities in [0, 1].
  --threshold, --gate_threshold, --class_thresholds   segment / video-level thresholds (default 0.5, the
                 official rule) and per-class overrides, e.g. --class_thresholds=Speech=0.4,Dog=0.6.
  --plot         a picture of the timelines of the clips named by --plot_clips (default: the first
                 --plot_max): .png, .pdf or .svg by the file's extension (others are an error);
  --plot_dir     a folder for one PNG per such clip (<clip id>.png).
  --labels_dir, --truth_split   ground truth drawn beside the prediction: the dense labels of
                 `--truth_split` (val or test) in --labels_dir (default: the packaged LLP files);
                 --truth_split=auto (default) looks each clip up in val then test; --truth_split=none draws
                 no ground truth.

Old names, deprecated (they warn): --seed (now --replica), --split (now --truth_split).

Clips are read in batches of --batch_size (features loaded on worker threads while the previous batch
runs), each batch goes through one jitted call, and a tqdm bar shows progress on a terminal. Bad input
prints one line `error: ...` to stderr and exits with status 2.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

from avvp_jax import cli  # pylint: disable=g-import-not-at-top
from avvp_jax import official  # the 0.5 of the official code (a leaf module: no JAX at start-up)

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, cli.PARSING_HELP["checkpoint"])
_FEATURES = flags.DEFINE_string(
    "features", None, "Features folder (either layout) or one .npz file (required)."
)
_OUT = flags.DEFINE_string(
    "out", None, "JSON file to write (.jsonl: one record per line) (required)."
)
_CLIPS = flags.DEFINE_list(
    "clips", None, "Clip ids to parse from a features folder (default: all)."
)
_CLIP_LIST = flags.DEFINE_string(
    "clip_list", None, "File with one clip id per line (instead of --clips)."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, cli.PARSING_HELP["batch_size"])
_THRESHOLD = flags.DEFINE_float("threshold", official.THRESHOLD, cli.PARSING_HELP["threshold"])
_GATE_THRESHOLD = flags.DEFINE_float("gate_threshold", None, cli.PARSING_HELP["gate_threshold"])
_CLASS_THRESHOLDS = flags.DEFINE_list("class_thresholds", [], cli.PARSING_HELP["class_thresholds"])
_PLOT = flags.DEFINE_string(
    "plot", None, "Picture of the plotted clips' timelines: .png, .pdf or .svg by its extension."
)
_PLOT_DIR = flags.DEFINE_string("plot_dir", None, cli.PARSING_HELP["plot_dir"])
_PLOT_CLIPS = flags.DEFINE_list(
    "plot_clips", None, "Clip ids to plot (default: the first --plot_max)."
)
_PLOT_MAX = flags.DEFINE_integer("plot_max", 4, "Clips plotted when --plot_clips is not given.")
_LABELS_DIR = flags.DEFINE_string(
    "labels_dir", None, "Folder with AVVP_*.csv (default: the packaged LLP files)."
)
_TRUTH_SPLIT = flags.DEFINE_enum(
    "truth_split",
    "auto",
    ["auto", "val", "test", "none"],
    "Dense labels drawn as ground truth: auto looks clips up in val, then test.",
)
_TITLE = flags.DEFINE_string("title", None, cli.PARSING_HELP["title"])
_REPLICA = flags.DEFINE_integer("replica", None, cli.PARSING_HELP["replica"])
cli.deprecated_alias("split", "truth_split")
cli.deprecated_alias("seed", "replica")
cli.required(_CHECKPOINT, _FEATURES, _OUT)


def main(argv: list[str]) -> None:
  cli.no_arguments(argv)
  if _CLIPS.value and _CLIP_LIST.value:
    cli.fail("pass either --clips or --clip_list, not both.")
  if _BATCH_SIZE.value < 1:
    cli.fail(f"--batch_size={_BATCH_SIZE.value} must be positive.")
  from avvp_jax.errors import InputError  # pylint: disable=g-import-not-at-top
  from avvp_jax.tools import parse_features  # pylint: disable=g-import-not-at-top

  try:
    summary = parse_features.parse_files(
        checkpoint=_CHECKPOINT.value,
        features=_FEATURES.value,
        out=_OUT.value,
        clips=_CLIPS.value,
        clip_list=_CLIP_LIST.value,
        batch_size=_BATCH_SIZE.value,
        threshold=cli.segment_thresholds(_THRESHOLD.value, _CLASS_THRESHOLDS.value),
        gate_threshold=_GATE_THRESHOLD.value,
        plot=_PLOT.value,
        plot_dir=_PLOT_DIR.value,
        plot_clips=_PLOT_CLIPS.value,
        plot_max=_PLOT_MAX.value,
        labels_dir=_LABELS_DIR.value,
        split=_TRUTH_SPLIT.value,
        title=_TITLE.value,
        seed=_REPLICA.value,
    )
  except InputError as error:
    cli.fail(str(error))
  logging.info("%s", summary)
  print(summary)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
