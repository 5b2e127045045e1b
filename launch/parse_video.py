r"""Parses videos into audio, visual and audio-visual events: decode, extract features, parse, draw.

  python launch/parse_video.py --checkpoint=W video.mp4 [more.mp4 ...] --out=events.json \
      [--plot=timeline.png] [--weights_dir=DIR | --weights=random]

Needs the `video` extra: pip install -e ".[video]". The checkpoint must take the official LLP features
(VGGish [10, 128], ResNet-152 [80, 2048], R(2+1)D-18 [10, 512]): HAN, LEAP, LINK trained on them.

Each video is cut into 10-s windows; each window is parsed as an LLP clip, and events are reported in
seconds of the whole video (an event crossing a window boundary is one event; nothing is reported past the
video's end). See avvp_jax/video/parse.py.

Flags:
  --checkpoint   a training workdir or checkpoint folder (as launch/parse.py).
  --out          the JSON file: a list with one record per video, {"video", "duration_s", "num_windows",
                 "has_audio", "audio", "features", "events": [{"modality", "label", "onset", "offset",
                 "score"}], "windows": [{"start_s", "valid_seconds", "video_labels"}]}.
  --plot         a timeline picture over each whole video (.png, .pdf or .svg).
  --weights, --weights_dir, --frame_batch   the feature extractor's (see launch/extract_features.py);
                 with --weights=random the events mean nothing, and the JSON and the plot say RANDOM
                 WEIGHTS.
  --threshold, --gate_threshold   segment / video-level thresholds (default 0.5, the official rule).

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

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Workdir or checkpoint folder.")
_OUT = flags.DEFINE_string("out", None, "JSON file to write.")
_PLOT = flags.DEFINE_string("plot", None, "Timeline picture over each whole video.")
_WEIGHTS = flags.DEFINE_enum(
    "weights", "pretrained", ["pretrained", "random"], "Official weights, or random networks."
)
_WEIGHTS_DIR = flags.DEFINE_string("weights_dir", None, "Folder with the weight files.")
_FRAME_BATCH = flags.DEFINE_integer("frame_batch", 80, "ResNet-152 frames per call.")
_THRESHOLD = flags.DEFINE_float(
    "threshold", official.THRESHOLD, "Segment probability threshold (official 0.5)."
)
_GATE_THRESHOLD = flags.DEFINE_float(
    "gate_threshold", None, "Video-level gate threshold; default --threshold."
)


def main(argv: list[str]) -> None:
  videos = argv[1:]
  if not videos:
    cli.fail("no video given: python launch/parse_video.py --checkpoint=W video.mp4 --out=X.json")
  for flag in (_CHECKPOINT, _OUT):
    if not flag.value:
      cli.fail(f"--{flag.name} is required (see python launch/parse_video.py --help).")
  from avvp_jax.errors import InputError  # pylint: disable=g-import-not-at-top  (after flag checks)

  parse = cli.video_module("parse")
  try:
    records = parse.parse_video(
        _CHECKPOINT.value,
        videos,
        weights=_WEIGHTS.value,
        weights_dir=_WEIGHTS_DIR.value,
        frame_batch=_FRAME_BATCH.value,
        threshold=_THRESHOLD.value,
        gate_threshold=_GATE_THRESHOLD.value,
        plot=_PLOT.value,
        title=os.path.basename(os.path.normpath(_CHECKPOINT.value)),
    )
    written = [parse.write_records(records, _OUT.value)]
    if _PLOT.value:
      written.append(os.path.abspath(_PLOT.value))
  except InputError as error:
    cli.fail(str(error))
  num_events = sum(len(r["events"]) for r in records)
  videos = f"{len(records)} video{'' if len(records) == 1 else 's'}"
  events = f"{num_events} event{'' if num_events == 1 else 's'}"
  print(f"{videos}, {events}; wrote {', '.join(written)}")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
