r"""Feature extraction per 10-s clip on this machine: decoding, preprocessing and the three networks at
their official depths (RANDOM weights: the same arithmetic as the pretrained ones), with XLA's FLOPs per
clip beside the achieved rate.

  python bench/bench_extract.py [--repeats=2] [--frame_batch=80]
  python bench/bench_extract.py --layout=ave [--repeats=1] [--frame_batch=16]

--layout=ave times AVE's layout instead (`avvp_jax.video.ave_extract`): the native frames decoded and each
resized to 224x224 (cv2's rule), VGGish, and VGG-19 to pool5 on the window's 160 selected frames (16 per
second, averaged per second).

Needs the `video` extra. The video is SYNTHETIC (tests/video_samples.py: 22 s at 29.97 fps, 160x96,
with a tone); the networks' cost does not depend on the picture size (every frame is resized to 224 or
112). Prints one line per stage (seconds per 10-s window, the median over --repeats after a warm-up) and
the total in clips/s.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import jax
import jax.numpy as jnp

from avvp_jax.video import ave_extract  # pylint: disable=g-import-not-at-top,wrong-import-position
from avvp_jax.video import ave_frames
from avvp_jax.video import decode
from avvp_jax.video import extract
from avvp_jax.video import r2plus1d
from avvp_jax.video import resnet
from avvp_jax.video import vgg19
from avvp_jax.video import vggish
import timing  # pylint: disable=g-import-not-at-top,wrong-import-position  (bench/, the script's folder)
import video_samples  # pylint: disable=g-import-not-at-top,wrong-import-position

_REPEATS = flags.DEFINE_integer("repeats", 2, "Timed repeats per stage (after one warm-up).")
_FRAME_BATCH = flags.DEFINE_integer(
    "frame_batch", None, "ResNet-152 (VGG-19) frames per call; default 80 (16 with --layout=ave)."
)
_LAYOUT = flags.DEFINE_enum("layout", "official", ["official", "ave"], "LLP's layout or AVE's.")


def _flops(fn, *args, **static):
  compiled = jax.jit(fn, static_argnames=tuple(static)).lower(*args, **static).compile()
  analysis = compiled.cost_analysis()
  analysis = analysis[0] if isinstance(analysis, list) else analysis
  return float(analysis.get("flops", float("nan")))


def _report(stages, flops, repeats, decode_windows=3):
  print(f"backend {jax.default_backend()}, {jax.device_count()} device(s), {os.cpu_count()} CPUs")
  total = 0.0
  for name, fn in stages.items():
    seconds = timing.median_seconds(fn, repeats, warmup=1)  # the warm-up compiles
    if name.startswith("decode"):
      seconds /= decode_windows
    total += seconds
    line = f"{name:48s} {seconds:8.3f} s per 10-s clip"
    if name in flops:
      line += f"  {flops[name] / 1e9:7.1f} GFLOP/clip, {flops[name] / seconds / 1e9:6.1f} GFLOP/s"
    print(line)
  print(f"{'total':48s} {total:8.3f} s per 10-s clip = {1 / total:.3f} clips/s")


def ave_main(repeats):
  """AVE's layout: decoding and resizing every frame, VGGish, VGG-19 on 160 frames per window."""
  path = video_samples.sample("long")
  window = next(ave_frames.iter_native_windows(path))
  waveform = decode.read_audio(path)[: decode.SAMPLE_RATE * ave_frames.SECONDS]
  extractor = ave_extract.AveExtractor(
      "random", frame_batch=_FRAME_BATCH.value or ave_extract.FRAME_BATCH
  )
  selected = window.selected().reshape(-1, ave_frames.IMAGE_SIZE, ave_frames.IMAGE_SIZE, 3)
  images = ave_frames.normalize(selected)
  examples = vggish.waveform_to_examples(waveform, alignment=vggish.LLP_ALIGNMENT)
  stages = {
      "decode + resize to 224x224 (every frame, per window)": lambda: list(
          ave_frames.iter_native_windows(path)
      ),
      "VGGish log-mel (10 examples)": lambda: vggish.waveform_to_examples(
          waveform, alignment=vggish.LLP_ALIGNMENT
      ),
      "VGGish network": lambda: extractor.audio(waveform),
      "VGG-19 to pool5 (160 frames, mean per second)": lambda: extractor.visual(window),
  }
  flops = {
      "VGGish network": _flops(vggish.embed, extractor.params["audio"], jnp.asarray(examples)),
      "VGG-19 to pool5 (160 frames, mean per second)": _flops(
          lambda p, x: vgg19.embed(p, x), extractor.params["visual"], jnp.asarray(images)
      ),
  }
  _report(stages, flops, repeats)


def main(argv):
  del argv
  repeats = _REPEATS.value
  if _LAYOUT.value == "ave":
    ave_main(repeats)
    return
  path = video_samples.sample("long")
  window = next(decode.iter_windows(path))
  extractor = extract.FeatureExtractor("random", frame_batch=_FRAME_BATCH.value or 80)
  images = resnet.resnet_transform(window.frames)
  clips = r2plus1d.clips_from_frames(r2plus1d.r2plus1d_transform(window.frames))
  examples = vggish.waveform_to_examples(window.waveform, alignment=vggish.LLP_ALIGNMENT)
  stages = {
      "decode (3 windows of a 22-s video, per window)": lambda: list(decode.iter_windows(path)),
      "resnet_transform (80 frames -> 224x224)": lambda: resnet.resnet_transform(window.frames),
      "r2plus1d_transform (80 frames -> 112x112)": lambda: r2plus1d.r2plus1d_transform(
          window.frames
      ),
      "VGGish log-mel (10 examples)": lambda: vggish.waveform_to_examples(
          window.waveform, alignment=vggish.LLP_ALIGNMENT
      ),
      "VGGish network": lambda: extractor.audio(window.waveform),
      "ResNet-152 network (80 frames)": lambda: extractor.frames(window.frames),
      "R(2+1)D-18 network (10 clips of 8)": lambda: extractor.motion(window.frames),
  }
  flops = {
      "VGGish network": _flops(vggish.embed, extractor.params["audio"], jnp.asarray(examples)),
      "ResNet-152 network (80 frames)": _flops(
          lambda p, x: resnet.embed(p, x), extractor.params["frames"], jnp.asarray(images)
      ),
      "R(2+1)D-18 network (10 clips of 8)": _flops(
          lambda p, x: r2plus1d.embed(p, x), extractor.params["motion"], jnp.asarray(clips)
      ),
  }
  _report(stages, flops, repeats)


if __name__ == "__main__":
  app.run(main)
