"""The standard SYNTHETIC test videos (`avvp_jax.video.synthetic.make_video`), made once per test session.

`sample(name)` gives the path of:

  "long"       22 s, 30000/1001 fps (29.97), H.264 + AAC 44.1 kHz stereo, 440 Hz: 3 windows
  "no_audio"   12 s, 29.97 fps, H.264, no audio track: 2 windows
  "short"      5 s, 29.97 fps, H.264 + AAC: 1 window, padded
  "pcm"        12 s, 29.97 fps, H.264 + 16-bit PCM 44.1 kHz stereo in Matroska (lossless audio: an
               exact oracle), 440 Hz
  "pcm48k"     6 s, 25 fps, H.264 + 16-bit PCM 48 kHz mono, 1000 Hz (resampled to 44.1 kHz)
  "audio_only" 3 s of AAC in an .m4a, no video track
"""

import atexit
import functools
import os
import shutil
import tempfile

from avvp_jax.video.synthetic import frame_number
from avvp_jax.video.synthetic import make_video
from avvp_jax.video.synthetic import picture
from avvp_jax.video.synthetic import tone_int16

__all__ = ["SAMPLES", "frame_number", "make_video", "picture", "sample", "tone_int16"]

SAMPLES = {
    "long": dict(seconds=22, ext="mp4"),
    "no_audio": dict(seconds=12, audio=False, ext="mp4"),
    "short": dict(seconds=5, ext="mp4"),
    "pcm": dict(seconds=12, audio_codec="pcm_s16le", ext="mkv"),
    "pcm48k": dict(
        seconds=6,
        fps=25,
        sample_rate=48000,
        channels=1,
        tone_hz=1000.0,
        audio_codec="pcm_s16le",
        ext="mkv",
    ),
    "audio_only": dict(seconds=3, video=False, ext="m4a"),
}


@functools.cache
def _folder() -> str:
  folder = tempfile.mkdtemp(prefix="avvp_jax_test_videos_")
  atexit.register(shutil.rmtree, folder, ignore_errors=True)
  return folder


@functools.cache
def sample(name: str) -> str:
  """The path of a standard synthetic video (`SAMPLES`), written on first use in this session."""
  options = dict(SAMPLES[name])
  ext = options.pop("ext")
  return make_video(os.path.join(_folder(), f"{name}.{ext}"), **options)
