"""SYNTHETIC videos made with PyAV: a frame counter in the pixels over moving colour bars, and a tone.

For trying the video path without a video at hand (`launch/make_synthetic.py --video=demo.mp4`) and for the
tests, which read the frame numbers back to check the decoder's frame picks: frame i shows i in binary as
`BITS` black and white blocks along the top (`frame_number` reads it), over colour bars that move one block
per second, with a sine tone on every audio channel. Nothing in such a video is an LLP event: a parser's
events on it mean nothing.
"""

import fractions

import av
import numpy as np

BITS = 10  # frame numbers up to 1023 (34 s at 29.97 fps)
BLOCK = 16  # pixels per bit block (a macroblock: no codec bleeding across bits)
SIZE = (BITS * BLOCK, 96)  # (W, H)
TONE_AMPLITUDE = 0.5
ODD_RATE = fractions.Fraction(30000, 1001)


def picture(index: int, seconds: float, size: tuple[int, int] = SIZE) -> np.ndarray:
  """uint8 `[H, W, 3]`: frame `index` (at `seconds`): its number in bits over moving colour bars."""
  width, height = size
  bars = np.array(
      [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255]], np.uint8
  )
  column = (np.arange(width) // BLOCK + int(seconds)) % len(bars)
  image = np.broadcast_to(bars[column][None], (height, width, 3)).copy()
  for bit in range(min(BITS, width // BLOCK)):
    value = 255 if (index >> (BITS - 1 - bit)) & 1 else 0
    image[: 2 * BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = value
  return image


def frame_number(image: np.ndarray) -> int:
  """The frame number `picture` drew into `image` uint8 `[H, W, 3]` (block centres, lossy-safe)."""
  number = 0
  for bit in range(BITS):
    centre = image[4 : 2 * BLOCK - 4, bit * BLOCK + 4 : (bit + 1) * BLOCK - 4]
    number = 2 * number + int(centre.mean() > 127)
  return number


def tone(num_samples: int, sample_rate: int, tone_hz: float) -> np.ndarray:
  """float64 `[num_samples]`: TONE_AMPLITUDE * sin(2 pi f n / rate)."""
  return TONE_AMPLITUDE * np.sin(2 * np.pi * tone_hz * np.arange(num_samples) / sample_rate)


def tone_int16(num_samples: int, sample_rate: int, tone_hz: float) -> np.ndarray:
  """int16 `[num_samples]`: the tone as written to a 16-bit PCM track (round(32767 x))."""
  return np.round(32767 * tone(num_samples, sample_rate, tone_hz)).astype(np.int16)


def make_video(
    path: str,
    seconds: float,
    fps: fractions.Fraction | int = ODD_RATE,
    size: tuple[int, int] = SIZE,
    audio: bool = True,
    tone_hz: float = 440.0,
    sample_rate: int = 44100,
    channels: int = 2,
    audio_codec: str = "aac",
    video: bool = True,
) -> str:
  """Write a synthetic video (`picture` frames, a `tone` on each channel); returns `path`.

  Args:
    path: the file (.mp4 for AAC; .mkv for "pcm_s16le").
    seconds: its length.
    fps: the frame rate (a Fraction for NTSC rates).
    size: (W, H).
    audio: write an audio track.
    tone_hz: the tone's frequency.
    sample_rate: the audio track's rate.
    channels: 1 or 2 (the same tone on each).
    audio_codec: "aac" or "pcm_s16le".
    video: write the video track (False: an audio-only file).
  """
  fps = fractions.Fraction(fps)
  with av.open(path, mode="w") as container:
    if video:
      stream = container.add_stream("libx264", rate=fps)
      stream.width, stream.height = size
      stream.pix_fmt = "yuv420p"
      stream.options = {"crf": "12", "preset": "ultrafast", "g": "30"}
    if audio:
      layout = "stereo" if channels == 2 else "mono"
      sound = container.add_stream(audio_codec, rate=sample_rate, layout=layout)
    num_frames = int(round(seconds * fps)) if video else 0
    for i in range(num_frames):
      frame = av.VideoFrame.from_ndarray(picture(i, float(i / fps), size), format="rgb24")
      frame.pts = i
      frame.time_base = 1 / fps
      for packet in stream.encode(frame):
        container.mux(packet)
    if video:
      for packet in stream.encode(None):
        container.mux(packet)
    if audio:
      total = int(round(seconds * sample_rate))
      chunk = 1024
      if audio_codec == "aac":
        samples = tone(total, sample_rate, tone_hz).astype(np.float32)
        fmt = "fltp"
      else:
        samples = tone_int16(total, sample_rate, tone_hz)
        fmt = "s16"
      for start in range(0, total, chunk):
        piece = samples[start : start + chunk]
        if fmt == "fltp":
          array = np.repeat(piece[None], channels, axis=0)  # planar [C, n]
        else:
          array = np.repeat(piece[:, None], channels, axis=1).reshape(1, -1)  # packed [1, n * C]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(array), format=fmt, layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = start
        frame.time_base = fractions.Fraction(1, sample_rate)
        for packet in sound.encode(frame):
          container.mux(packet)
      for packet in sound.encode(None):
        container.mux(packet)
  return path
