r"""Extracts LLP's official-layout features (VGGish, ResNet-152, R(2+1)D-18) or AVE's released layout
(VGGish, VGG-19 pool5) from your own videos.

  python launch/extract_features.py --videos=DIR --out=FEATURES_DIR [--weights_dir=DIR | --weights=random]
  python launch/extract_features.py --layout=ave --videos=DIR --out=FEATURES_DIR [...]

Needs the `video` extra: pip install -e ".[video]".

Writes `FEATURES_DIR/vggish/<id>.npy` [10, 128], `res152/<id>.npy` [80, 2048] and `r2plus1d_18/<id>.npy`
[10, 512] per 10-s window (a video of up to 10 s is the clip `<file stem>`; a longer one gives
`<stem>__0_10`, `<stem>__10_20`, ...; the last window padded), and `extraction.json` (per video: its clips,
their valid seconds, and failures). The folder trains and evaluates with
`launch/train.py --config.data.features_dir=FEATURES_DIR` (with labels for its clips) and parses with
`launch/parse.py --features=FEATURES_DIR`.

Decoding follows the official scripts (frames at 8 fps, 80 picked per window by
np.round(np.linspace(0, n - 1, 80)); audio at 16 kHz, channels averaged); see avvp_jax/video/decode.py for
where the decoded pixels can differ from the official JPEG frames.

With --layout=ave: `FEATURES_DIR/audio_feature.h5` [N, 10, 128] and `visual_feature.h5` [N, 10, 7, 7, 512]
(dataset `avadataset`, float32; each second's map the mean of 16 frames' VGG-19 pool5 maps, as AVE-ECCV18
made its features), `clips.txt` (row order), `test_order.h5` (every row; train/val empty),
`Annotations.template.txt` (rows to label) and `extraction.json`; see avvp_jax/video/ave_extract.py and
docs/videos.md "AVE features". The folder is `config.data.features_dir` of an AVE run.

Flags:
  --layout       official (default: LLP's official layout) or ave (AVE's released layout).
  --videos       (required) a folder of videos (.mp4, .mkv, .webm, .avi, .mov, ...), one video file, or a
                 comma-separated list of files.
  --out          (required) the features folder to write (created; rerunning skips the videos already done).
  --weights      pretrained (default: the official files, from --weights_dir or torch's download cache,
                 downloaded there when missing) or random (random networks for smoke runs: the folder and
                 every summary then say RANDOM WEIGHTS).
  --weights_dir  a folder with resnet152-b121ed2d.pth, r2plus1d_18-91a641e6.pth and the VGGish file
                 (vgg19-dcbb9e9d.pth and the VGGish file with --layout=ave) (offline hosts; see the
                 README's "Videos" section for the URLs).
  --vgg          with --layout=ave, whose VGG-19 weights: torchvision (default, vgg19-dcbb9e9d.pth, ImageNet
                 mean/std) or keras (vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 with Keras's caffe
                 preprocessing: the network the released AVE features came from).
  --frame_batch  ResNet-152 frames per accelerator call (default 80: a whole window); with --layout=ave
                 VGG-19's (default 16 of a window's 160: VGG-19's first maps are 224x224x64 per frame,
                 about 13 MB, so 80 frames need several GB; raise it on an accelerator).

A video that cannot be used (unreadable, no video stream, no audio track, no frames) is reported and
skipped; the rest go on. Bad flags print one line `error: ...` and exit with status 2.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from avvp_jax import cli  # pylint: disable=g-import-not-at-top

_VIDEOS = flags.DEFINE_string(
    "videos", None, "Folder of videos, one video file, or a comma-separated list (required)."
)
_OUT = flags.DEFINE_string("out", None, "Features folder to write (official layout) (required).")
_WEIGHTS = flags.DEFINE_enum(
    "weights", "pretrained", ["pretrained", "random"], "Official weights, or random networks."
)
_VGG = flags.DEFINE_string(
    "vgg",
    "torchvision",
    "AVE's VGG-19 weights: torchvision or keras (the released features' network).",
)
_WEIGHTS_DIR = flags.DEFINE_string(
    "weights_dir", None, "Folder with the weight files (default: torch's download cache)."
)
_FRAME_BATCH = flags.DEFINE_integer(
    "frame_batch",
    None,
    "ResNet-152 frames per call (default 80); VGG-19's with --layout=ave (default 16).",
)
_LAYOUT = flags.DEFINE_string(
    "layout", "official", "official (LLP's official layout) or ave (AVE's released layout)."
)
LAYOUTS = ("official", "ave")
cli.required(_VIDEOS, _OUT)


def main(argv: list[str]) -> None:
  cli.no_arguments(argv)
  if _FRAME_BATCH.value is not None and _FRAME_BATCH.value < 1:
    cli.fail(f"--frame_batch={_FRAME_BATCH.value} must be positive.")
  if _LAYOUT.value not in LAYOUTS:
    cli.fail(f"--layout={_LAYOUT.value!r} is unknown: use {' or '.join(LAYOUTS)}.")
  if _LAYOUT.value != "ave" and _VGG.value != "torchvision":
    cli.fail(f"--vgg={_VGG.value} picks AVE's VGG-19: it goes with --layout=ave.")
  from avvp_jax.errors import InputError  # pylint: disable=g-import-not-at-top  (after flag checks)

  extract = cli.video_module("extract")
  try:
    extract.list_videos(_VIDEOS.value)  # a bad --videos fails before the networks load
    if _LAYOUT.value == "ave":
      ave_extract = cli.video_module("ave_extract")
      extractor = ave_extract.AveExtractor(
          _WEIGHTS.value,
          weights_dir=_WEIGHTS_DIR.value,
          frame_batch=_FRAME_BATCH.value or ave_extract.FRAME_BATCH,
          network=_VGG.value,
      )
      summary = ave_extract.extract_folder(_VIDEOS.value, _OUT.value, extractor)
    else:
      extractor = extract.FeatureExtractor(
          _WEIGHTS.value, weights_dir=_WEIGHTS_DIR.value, frame_batch=_FRAME_BATCH.value or 80
      )
      summary = extract.extract_folder(_VIDEOS.value, _OUT.value, extractor)
  except InputError as error:
    cli.fail(str(error))
  for name, reason in summary.failures.items():
    print(f"failed: {name}: {reason}", file=sys.stderr)
  print(summary.describe())


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
