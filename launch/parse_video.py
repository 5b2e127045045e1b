r"""Parses videos into audio, visual and audio-visual events (LLP) or audio-visual events (AVE): decode,
extract features, parse, draw.

  python launch/parse_video.py --checkpoint=W --videos=video.mp4[,more.mp4 | DIR] --out=events.json \
      [--plot=timeline.png] [--weights_dir=DIR | --weights=random]

Needs the `video` extra: pip install -e ".[video]". The checkpoint's task picks the path:

  an LLP parser (HAN, LEAP, LINK trained on the official LLP features: VGGish [10, 128], ResNet-152
    [80, 2048], R(2+1)D-18 [10, 512]): audio, visual and audio-visual events, as below;
  an AVE localizer (A+V-att, DMRN, PSP, CMBS, on AVE's released layout: VGGish [10, 128], VGG-19 pool5
    [10, 7, 7, 512], extracted as launch/extract_features.py --layout=ave does): one audio-visual track,
    each second an event class or background by the model's official rule, runs of a class the events
    ({"modality": "audio-visual", "label", "onset", "offset", "score"}); background gives no event; the
    windows list each second's label. --threshold, --gate_threshold, --class_thresholds and --batch_size
    are LLP's (the first three are refused here); see avvp_jax/video/ave_parse.py.

Each video is cut into 10-s windows; each window is parsed as an LLP clip, and events are reported in
seconds of the whole video (an event crossing a window boundary is one event; nothing is reported past the
video's end). See avvp_jax/video/parse.py.

Flags:
  --checkpoint   (required) a training workdir (its best save, else its latest), a step folder of one, or a
                 params-only checkpoint folder.
  --replica      a multi-seed checkpoint's replica to use (the seed it was trained with); default: the seed
                 ensemble, the mean of the replicas' probabilities.
  --videos       (required) a folder of videos (.mp4, .mkv, .webm, .avi, .mov, ...), one video file, or a
                 comma-separated list of files, as launch/extract_features.py takes.
  --out          (required) the JSON file: a list with one record per video, {"video", "duration_s",
                 "num_windows", "has_audio", "audio", "features", "events": [{"modality", "label", "onset",
                 "offset", "score"}], "windows": [{"start_s", "valid_seconds", "video_labels"}]}.
  --threshold, --gate_threshold, --class_thresholds   segment / video-level thresholds (default 0.5, the
                 official rule) and per-class overrides, e.g. --class_thresholds=Speech=0.4,Dog=0.6.
  --batch_size   10-s windows per jitted call (a longer video takes several calls).
  --plot         a timeline picture over each whole video (.png, .pdf or .svg), with --title (default: the
                 checkpoint folder's name).
  --plot_dir     a folder for one PNG per video (<video file stem>.png).
  --weights, --weights_dir, --frame_batch, --vgg   the feature extractor's (see
                 launch/extract_features.py; --vgg for an AVE model: the VGG-19 its features came from);
                 with --weights=random the events mean nothing, and the JSON and the plot say RANDOM
                 WEIGHTS.

Every video given is parsed and drawn (launch/parse.py's --plot_clips and --plot_max choose among the clips
of a features folder; here the videos are the choice). Videos given as positional arguments still work but
are deprecated: use --videos.

Bad input prints one line `error: ...` to stderr and exits with status 2.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from avvp_jax import cli  # pylint: disable=g-import-not-at-top
from avvp_jax import official  # the 0.5 of the official code (a leaf module: no JAX at start-up)

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, cli.PARSING_HELP["checkpoint"])
_REPLICA = flags.DEFINE_integer("replica", None, cli.PARSING_HELP["replica"])
_VIDEOS = flags.DEFINE_string(
    "videos", None, "Folder of videos, one video file, or a comma-separated list (required)."
)
_OUT = flags.DEFINE_string("out", None, "JSON file to write (required).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, cli.PARSING_HELP["batch_size"])
_THRESHOLD = flags.DEFINE_float("threshold", official.THRESHOLD, cli.PARSING_HELP["threshold"])
_GATE_THRESHOLD = flags.DEFINE_float("gate_threshold", None, cli.PARSING_HELP["gate_threshold"])
_CLASS_THRESHOLDS = flags.DEFINE_list("class_thresholds", [], cli.PARSING_HELP["class_thresholds"])
_PLOT = flags.DEFINE_string("plot", None, "Timeline picture over each whole video.")
_PLOT_DIR = flags.DEFINE_string("plot_dir", None, cli.PARSING_HELP["plot_dir"])
_TITLE = flags.DEFINE_string("title", None, cli.PARSING_HELP["title"])
_WEIGHTS = flags.DEFINE_enum(
    "weights", "pretrained", ["pretrained", "random"], "Official weights, or random networks."
)
_VGG = flags.DEFINE_string(
    "vgg",
    "torchvision",
    "AVE's VGG-19 weights: torchvision or keras (the released features' network).",
)
_WEIGHTS_DIR = flags.DEFINE_string("weights_dir", None, "Folder with the weight files.")
_FRAME_BATCH = flags.DEFINE_integer(
    "frame_batch",
    None,
    "ResNet-152 frames per call (default 80); VGG-19's for an AVE model (default 16).",
)
cli.required(_CHECKPOINT, _OUT)  # --videos too, unless the deprecated positional videos are given


def videos_from(argv: list[str]) -> str:
  """--videos, or the deprecated positional videos (a one-line warning) as a comma-separated list."""
  positional = argv[1:]
  if positional and _VIDEOS.value:
    cli.fail(f"videos given both as --videos and as arguments {positional}: give --videos only.")
  if positional:
    print(
        "warning: positional video arguments are deprecated; use --videos=" + ",".join(positional),
        file=sys.stderr,
        flush=True,
    )
    return ",".join(positional)
  if not _VIDEOS.value:
    cli.fail("--videos is required (see python launch/parse_video.py --help).")
  return _VIDEOS.value


def main(argv: list[str]) -> None:
  videos = videos_from(argv)
  if _BATCH_SIZE.value < 1:
    cli.fail(f"--batch_size={_BATCH_SIZE.value} must be positive.")
  if _FRAME_BATCH.value is not None and _FRAME_BATCH.value < 1:
    cli.fail(f"--frame_batch={_FRAME_BATCH.value} must be positive.")
  from avvp_jax.errors import InputError  # pylint: disable=g-import-not-at-top  (after flag checks)

  parse = cli.video_module("parse")
  extract = cli.video_module("extract")
  ave_parse = cli.video_module("ave_parse")
  ave_extract = cli.video_module("ave_extract")
  try:
    paths = extract.list_videos(videos)
    task = ave_parse.checkpoint_task(_CHECKPOINT.value)  # the checkpoint's task picks the path
  except InputError as error:
    cli.fail(str(error))
  if task == "ave" and (
      _CLASS_THRESHOLDS.value
      or _GATE_THRESHOLD.value is not None
      or _THRESHOLD.value != official.THRESHOLD
  ):
    cli.fail(
        f"{_CHECKPOINT.value} is an AVE localizer, which labels each second by its own official rule: "
        "drop --threshold, --gate_threshold and --class_thresholds (LLP parsers' options)."
    )
  if task != "ave" and _VGG.value != "torchvision":
    cli.fail(f"--vgg={_VGG.value} picks AVE's VGG-19; {_CHECKPOINT.value} is an LLP model.")
  try:
    thresholds = cli.segment_thresholds(_THRESHOLD.value, _CLASS_THRESHOLDS.value)
  except InputError as error:
    cli.fail(str(error))
  try:
    if task == "ave":
      records = ave_parse.parse_video(
          _CHECKPOINT.value,
          paths,
          seed=_REPLICA.value,
          weights=_WEIGHTS.value,
          weights_dir=_WEIGHTS_DIR.value,
          frame_batch=_FRAME_BATCH.value or ave_extract.FRAME_BATCH,
          network=_VGG.value,
          plot=_PLOT.value,
          plot_dir=_PLOT_DIR.value,
          title=_TITLE.value or os.path.basename(os.path.normpath(_CHECKPOINT.value)),
      )
    else:
      records = parse.parse_video(
          _CHECKPOINT.value,
          paths,
          seed=_REPLICA.value,
          batch_size=_BATCH_SIZE.value,
          weights=_WEIGHTS.value,
          weights_dir=_WEIGHTS_DIR.value,
          frame_batch=_FRAME_BATCH.value or 80,
          threshold=thresholds,
          gate_threshold=_GATE_THRESHOLD.value,
          plot=_PLOT.value,
          plot_dir=_PLOT_DIR.value,
          title=_TITLE.value or os.path.basename(os.path.normpath(_CHECKPOINT.value)),
      )
    written = [parse.write_records(records, _OUT.value)]
    if _PLOT.value:
      written.append(os.path.abspath(_PLOT.value))
    if _PLOT_DIR.value:
      written.append(f"{len(records)} PNG{'' if len(records) == 1 else 's'} in {_PLOT_DIR.value}")
  except InputError as error:
    cli.fail(str(error))
  num_events = sum(len(r["events"]) for r in records)
  videos = f"{len(records)} video{'' if len(records) == 1 else 's'}"
  events = f"{num_events} event{'' if num_events == 1 else 's'}"
  print(f"{videos}, {events}; wrote {', '.join(written)}")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
