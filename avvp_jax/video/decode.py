"""Decoding a video as the official LLP scripts do: 8-fps frames, 80 per 10-s window, 16-kHz audio.

Length: one concept (the official decoding rules) whose three transcriptions (ffmpeg's vsync,
moviepy's audio path, the windows) need their reasons beside them; split, each part would need the
others' notes.

The official pipeline (YapengTian/AVVP-ECCV20 `scripts/`) runs these on each 10-s LLP clip:

  frames  `ffmpeg -i VIDEO -r 8 DIR/%06d.jpg` (`extract_frames.py`); `extract_rgb_feat.py` and
          `extract_3D_feat.py` keep `np.round(np.linspace(0, n - 1, 80))` of the n sorted JPEGs (n
          is 80-83 for a 10-s clip: 82 for the repository's BjCEufrlXm4.mp4).
  audio   moviepy 1.0.3 (`extract_audio.py`): `VideoFileClip(VIDEO).audio.write_audiofile(WAV,
          fps=16000)`; VGGish reads the 16-bit WAV, scales by 1/32768 and averages the channels.

Here the same in one pass with PyAV (its wheels carry ffmpeg), no files written:

- Frames: `ffmpeg -r 8` into the image2 muxer is constant-frame-rate output (`-vsync auto` = cfr, or
  vscfr for a one-stream file): each source frame is dropped or written once or more onto the 1/8-s
  grid by thresholds of -1.1 and 1.1 output frames. `CfrSync` transcribes ffmpeg 4.4's
  `do_video_out`. Checked outside the tests: on BjCEufrlXm4.mp4 it gives 82 frames, each the source
  frame of the same official JPEG; on synthetic videos at 60, 29.97, 25, 23.976, 15, 12.5, 10 and 6
  fps, with and without audio, and with a late first frame, it equals ffmpeg 5.1's JPEGs (same
  count, same source frame each). ffmpeg 9.0 agrees from 23.976 fps up but not at 15 fps and below
  (it dropped the packet duration rule). ffmpeg's `fps=8` filter (`av.filter.Graph`) is not the same
  rule: on BjCEufrlXm4 it gives 80 frames, none from the official frame's source frame (mean abs
  difference 33 grey levels).
- Windows: window k holds the 8-fps frames [80k, 80k + 80); the last window also takes up to
  `MERGE_FRAMES` (3) frames beyond 80, so a 10-s LLP clip (80-83 frames) is one window and its 80
  frames are exactly the official selection. `frame_indices(n)` is the official rule for n >= 80; a
  window with fewer frames (a short video, the end of a long one) keeps its frames at their own
  times and repeats its last frame (the official expression would stretch them over the 10 s);
  `segment_mask` says which seconds lie inside the video.
- Audio is moviepy 1.0.3's: its ffmpeg reader decodes to 16-bit stereo at 44.1 kHz (`-f s16le -ar
  44100 -ac 2`: here PyAV's `AudioResampler`, the same libswresample); moviepy then *picks* the
  nearest 44.1-kHz sample for each 16-kHz one, `x[round(44100 * k / 16000)]` (no low-pass filter:
  the official WAVs alias above 8 kHz; a buffer bug lags the picks by one more input sample every
  ~2.3 s), clips to +-0.99 and writes `int16(32768 * x)` (truncated); VGGish's reader scales by
  1/32768 and averages the two channels (`read_audio`, `moviepy_resample`). Checked outside the
  tests against moviepy 1.0.3 itself: the same WAV sample for sample on BjCEufrlXm4 and the
  synthetic videos.

Where decoded pixels can differ from the official frames:
  - the JPEG round trip: the official frames went through ffmpeg's MJPEG encoder at its defaults
    (yuvj420p, about 200 kbit/s: lossy) and PIL; here the decoded frame goes to RGB directly
    (libswscale's `rgb24`). On BjCEufrlXm4 the mean absolute difference per frame is 0.9-5.6 grey
    levels (rising with the picture's detail; JPEGs from ffmpeg 9.0 differ from the official ones by
    0.5), against 6-29 to any other source frame;
  - the decoder and colour conversion versions (ffmpeg 8.1 in PyAV 18.1 here; the official frames
    are from 2020, ffmpeg 3.4-4.x);
  - the vsync rule of a newer ffmpeg program (see above: only for sources at 15 fps or less).
The audio can differ by the AAC decoder's version and where the ffmpeg program and PyAV disagree on
a track's last samples (the end padding is trimmed to the track's duration here, as the program
does).

Memory: a 10-min 1080p video is 60 windows x 80 x 1080 x 1920 x 3 bytes = 30 GB: `iter_windows`
yields one window at a time (`read_clip` collects them: short videos). Frames stay at the video's
own size: the official path resizes the decoded JPEG with PIL in the networks' transforms, so a
smaller decode would change the pixels; there is no resizing option.
"""

import dataclasses
import math
import os
from typing import Iterator, Sequence

import av
import numpy as np

from avvp_jax.errors import InputError

FPS = 8  # `ffmpeg -r 8`
FRAMES_PER_WINDOW = 80  # `--n_frame_steps 80`
WINDOW_SECONDS = 10  # an LLP clip
SAMPLE_RATE = 16000  # `write_audiofile(fps=16000)`
MOVIEPY_READ_RATE = (
    44100  # moviepy 1.0.3's `VideoFileClip(audio_fps=44100)`: its ffmpeg reader's `-ar`
)
MOVIEPY_CLIP = 0.99  # moviepy's `to_soundarray(quantize=True)` clips to +-0.99 before int16
MERGE_FRAMES = 3  # up to 83 8-fps frames make one window (a 10-s LLP clip gives 80-83)


def frame_indices(num_frames: int, frames_per_window: int = FRAMES_PER_WINDOW) -> np.ndarray:
  """The frames a window keeps: the official `np.round(np.linspace(0, n - 1, 80))`, or padding.

  Args:
    num_frames: n, the 8-fps frames the window has (>= 1).
    frames_per_window: frames kept per window (80).

  Returns:
    int64 `[frames_per_window]`: indices into the window's n frames. For n >= frames_per_window the
    official selection (80 of the 80-83 frames of a 10-s clip); for a shorter window 0 .. n - 1 at
    their own times, then n - 1 repeated (the official expression would stretch them over 10 s).
  """
  if num_frames < 1:
    raise InputError(f"frame_indices needs at least one frame, got num_frames={num_frames}.")
  if num_frames >= frames_per_window:
    return np.round(np.linspace(0, num_frames - 1, frames_per_window)).astype(np.int64)
  return np.minimum(np.arange(frames_per_window), num_frames - 1).astype(np.int64)


def window_frame_counts(total_frames: int, frames_per_window: int = FRAMES_PER_WINDOW) -> list[int]:
  """How many 8-fps frames each window has: 80, the last up to `MERGE_FRAMES` more, or fewer.

  Args:
    total_frames: N, the 8-fps frames of the whole video (>= 1).
    frames_per_window: 80.

  Returns:
    The frame count of each window (they add up to N): `max(1, ceil((N - 3) / 80))` windows.
  """
  num_windows = max(1, math.ceil((total_frames - MERGE_FRAMES) / frames_per_window))
  counts = [frames_per_window] * (num_windows - 1)
  return counts + [total_frames - frames_per_window * (num_windows - 1)]


def _rescale(a: int, b_num: int, b_den: int, c_num: int, c_den: int) -> int:
  """ffmpeg's `av_rescale_q(a, b, c)`: a * b / c rounded to nearest, halves away from zero."""
  num, den = b_num * c_den, b_den * c_num
  if a < 0:
    return -((-a * num + den // 2) // den)
  return (a * num + den // 2) // den


def _lrintf(x: float) -> int:
  """C's `lrintf`: to float32, then to the nearest integer, halves to even."""
  return int(np.rint(np.float32(x)))


class CfrSync:
  """ffmpeg 4.x's constant-frame-rate output (`-vsync cfr`, image2's for `-r 8`), frame by frame.

  A transcription of ffmpeg 4.4 `fftools/ffmpeg.c` `do_video_out` (and the float timestamps of
  `reap_filters`) with the output time base 1/fps: each source frame is written 0, 1 or more times
  onto the output grid; `push` says which, `flush` adds the end's duplicates.

  Args:
    time_base: the video stream's time base (num, den).
    frame_rate: the stream's guessed frame rate (num, den) (`av_guess_frame_rate`: PyAV's
      `stream.guessed_rate`); (0, 1) if unknown.
    start_time: the input file's start time in microseconds (ffmpeg shifts the file to start at 0).
    single_stream: the input file has one stream (vscfr: a late first frame is not duplicated).
    fps: the output frame rate (8).
  """

  def __init__(
      self,
      time_base: tuple[int, int],
      frame_rate: tuple[int, int],
      *,
      start_time: int = 0,
      single_stream: bool = False,
      fps: int = FPS,
  ):
    self._tb = time_base
    self._fps = fps
    self._extra_bits = min(
        max(29 - (fps.bit_length() - 1), 0), 16
    )  # av_clip(29 - av_log2(den), 0, 16)
    self._offset = _rescale(start_time, 1, 1_000_000, *time_base)  # the packets' ts_offset
    rate = frame_rate[0] / frame_rate[1] if frame_rate[0] > 0 else 0.0
    # duration = 1 / (frame_rate * enc tb), then FFMIN with 1 / (ost->frame_rate * enc tb) = 1
    self._duration = min(fps / rate, 1.0) if rate > 0 else 0.0
    self._single_stream = single_stream
    self._sync_opts = 0  # the next output frame's timestamp, in output frames
    self._last_nb0 = [0, 0, 0]
    self._count = 0  # source frames pushed
    self._written = 0  # output frames written
    self._last = None  # index of the previous source frame

  def push(self, pts: int, duration: int = 0) -> list[int]:
    """One decoded source frame in: the source frames (this one or the previous) written for it.

    Args:
      pts: the frame's (best effort) timestamp in time_base units.
      duration: its packet duration in time_base units (0: unknown).

    Returns:
      Source frame indices (0 = the first pushed), one per output frame written now.
    """
    tb_num, tb_den = self._tb
    index = self._count
    self._count += 1
    float_pts = _rescale(pts - self._offset, tb_num, tb_den, 1, self._fps << self._extra_bits)
    float_pts /= float(1 << self._extra_bits)
    # "avoid exact midoints to reduce the chance of rounding differences"
    float_pts += (1.0 if float_pts > 0 else -1.0 if float_pts < 0 else 0.0) / (1 << 17)
    frame_duration = self._duration
    if duration:
      packet_frames = _lrintf(duration * tb_num / tb_den * self._fps)
      if packet_frames > 0:  # no -vf given: a packet longer than half an output frame sets it
        frame_duration = float(packet_frames)
    sync_ipts = float_pts
    delta0 = sync_ipts - self._sync_opts  # drift of this frame against the output grid
    delta = delta0 + frame_duration
    nb0_frames, nb_frames = 0, 1
    if delta0 < 0 < delta:  # starts before the next slot but covers it: clipped
      sync_ipts = self._sync_opts
      frame_duration += delta0
      delta0 = 0.0
    if self._single_stream and self._written == 0 and delta0 >= 0.5:  # vscfr: no initial copies
      delta = frame_duration
      delta0 = 0.0
      self._sync_opts = _lrintf(sync_ipts)
    if delta < -1.1:
      nb_frames = 0
    elif delta > 1.1:
      nb_frames = _lrintf(delta)
      if delta0 > 1.1:
        nb0_frames = _lrintf(delta0 - 0.6)
    nb0_frames = min(nb0_frames, nb_frames)
    self._last_nb0 = [nb0_frames] + self._last_nb0[:2]
    out = [
        self._last if (j < nb0_frames and self._last is not None) else index
        for j in range(nb_frames)
    ]
    self._sync_opts += nb_frames
    self._written += nb_frames
    self._last = index
    return out

  def flush(self) -> list[int]:
    """End of stream: the last frame again, the median of the last three duplicate counts times."""
    if self._last is None:
      return []
    count = sorted(self._last_nb0)[1]  # mid_pred
    self._written += count
    return [self._last] * count


def cfr_frame_sources(
    pts: Sequence[int],
    time_base: tuple[int, int],
    frame_rate: tuple[int, int],
    *,
    durations: Sequence[int] | None = None,
    start_time: int = 0,
    single_stream: bool = False,
    fps: int = FPS,
) -> list[int]:
  """Which source frame each JPEG of `ffmpeg -i VIDEO -r 8 out/%06d.jpg` shows (`CfrSync`).

  Args:
    pts: the decoded source frames' timestamps, in `time_base` units, in decoding order.
    time_base, frame_rate, start_time, single_stream, fps: as `CfrSync`.
    durations: each frame's packet duration in `time_base` units (None: unknown).

  Returns:
    For each output frame in order, the index into `pts` of the source frame it shows.
  """
  sync = CfrSync(time_base, frame_rate, start_time=start_time, single_stream=single_stream, fps=fps)
  sources = []
  for i, frame_pts in enumerate(pts):
    sources += sync.push(frame_pts, durations[i] if durations is not None else 0)
  return sources + sync.flush()


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """What a video file holds, read from its header (`probe`).

  Attributes:
    path: the file.
    width, height: the video's own frame size.
    source_fps: the video stream's frame rate (ffmpeg's guess: 29.97 for 30000/1001).
    duration_s: the video track's duration in seconds from the header (the container's if the track
      has none), which sets the windows' `segment_mask`.
    has_audio: the file has an audio track.
    audio_rate: the audio track's sample rate (0 without one).
    audio_channels: its channels (0 without one).
  """

  path: str
  width: int
  height: int
  source_fps: float
  duration_s: float
  has_audio: bool
  audio_rate: int
  audio_channels: int


@dataclasses.dataclass(frozen=True)
class Window:
  """One 10-s window of a video (`iter_windows`).

  Attributes:
    index: k: the window covers seconds [10k, 10k + 10) of the video.
    frames: uint8 `[80, H, W, 3]`, RGB at the video's own size: the selected 8-fps frames.
    frame_indices: int64 `[80]`: the index of each frame in the video's 8-fps frame stream.
    num_frames: the 8-fps frames the window has (80; 80-83 for a one-window clip; fewer at the end).
    waveform: float32 `[160000]` 16-kHz mono audio, zero-padded past the end; None without audio.
    segment_mask: bool `[10]`: second s lies inside the video (it covers at least half of it).
  """

  index: int
  frames: np.ndarray
  frame_indices: np.ndarray
  num_frames: int
  waveform: np.ndarray | None
  segment_mask: np.ndarray


@dataclasses.dataclass(frozen=True)
class Clip:
  """A decoded video cut into 10-s windows (`read_clip`).

  Attributes:
    path: the file.
    duration_s: the video stream's duration in seconds.
    num_windows: K.
    window_seconds: 10.
    frames: uint8 `[K, 80, H, W, 3]` RGB at the video's own size.
    frame_indices: int64 `[K, 80]`: indices into the 8-fps frame stream.
    num_frames: int64 `[K]`: the 8-fps frames each window has.
    total_frames: N, the 8-fps frames of the whole video (`ffmpeg -r 8` would write N JPEGs).
    waveform: float32 `[K, 160000]` 16-kHz mono, zero-padded at the end; None without audio.
    has_audio: the file has an audio track.
    segment_mask: bool `[K, 10]`: second s of window k lies inside the video (at least half of it).
    source_fps: the video stream's frame rate.
    padded: some window is padded (the video is not a whole number of 10-s windows).
  """

  path: str
  duration_s: float
  num_windows: int
  window_seconds: int
  frames: np.ndarray
  frame_indices: np.ndarray
  num_frames: np.ndarray
  total_frames: int
  waveform: np.ndarray | None
  has_audio: bool
  segment_mask: np.ndarray
  source_fps: float
  padded: bool


def _open(path: str) -> "av.container.InputContainer":
  """av.open with one-line errors naming the file."""
  if not os.path.exists(path):
    raise InputError(f"{path}: no such file; pass the path of a video file.")
  if os.path.isdir(path):
    raise InputError(f"{path} is a folder, not a video file; pass a video file.")
  try:
    return av.open(path, mode="r")
  except av.error.FFmpegError as e:
    raise InputError(
        f"{path} is not a readable video ({type(e).__name__}: {e.strerror}); pass a video file."
    ) from None
  except OSError as e:
    raise InputError(f"{path} cannot be opened ({e}); check the file.") from None


def _video_stream(container, path: str):
  if not container.streams.video:
    kind = "audio only" if container.streams.audio else "no streams"
    raise InputError(f"{path} has no video track ({kind}); pass a video file.")
  return container.streams.video[0]


def probe(path: str) -> VideoInfo:
  """The file's video size, frame rate, duration estimate and audio track, from its header.

  Raises:
    InputError: a missing or unreadable file, or one without a video track.
  """
  with _open(path) as container:
    stream = _video_stream(container, path)
    return _info(container, stream, path)


def _info(container, stream, path: str, duration_s: float | None = None) -> VideoInfo:
  rate = stream.guessed_rate or stream.average_rate
  if duration_s is None:
    if stream.duration is not None:
      duration_s = float(stream.duration * stream.time_base)
    elif container.duration is not None:
      duration_s = container.duration / 1e6
    else:
      duration_s = 0.0
  audio = container.streams.audio[0] if container.streams.audio else None
  return VideoInfo(
      path=path,
      width=stream.codec_context.width,
      height=stream.codec_context.height,
      source_fps=float(rate) if rate else 0.0,
      duration_s=duration_s,
      has_audio=audio is not None,
      audio_rate=audio.rate if audio is not None else 0,
      audio_channels=audio.channels if audio is not None else 0,
  )


def moviepy_resample(
    samples: np.ndarray,
    duration_s: float,
    sample_rate: int = SAMPLE_RATE,
    *,
    buffersize: int = 200000,
    chunksize: int = 2000,
) -> np.ndarray:
  """moviepy 1.0.3's `AudioFileClip(...).write_audiofile(wav, fps=16000)` on decoded audio: the WAV.

  A transcription of `FFMPEG_AudioReader` (its 200000-sample buffer and `buffer_around`),
  `AudioClip.iter_chunks` (2000-sample chunks) and `to_soundarray(quantize=True)`:

    - output sample k (k < int(16000 * duration)) is input sample `round(44100 * (k / 16000))`:
      picked, not filtered;
    - each time the buffer re-centres (about every 100000 input samples, 2.3 s) it keeps one sample
      too many (`conserved = end - start + 1`), so from then on the picks lag one input sample more
      (4 samples, 91 us, by the end of a 10-s clip);
    - values are clipped to +-0.99 and written as int16(32768 x), truncated.

  With `read_audio`'s input this equals moviepy 1.0.3's WAV sample for sample on the repository's
  BjCEufrlXm4.mp4 and the synthetic test videos (AAC and PCM, 44.1 and 48 kHz; checked outside the
  tests with moviepy 1.0.3 and an ffmpeg 9.0 binary).

  Args:
    samples: int16 `[n, 2]`: the audio as moviepy's ffmpeg reader has it (`-ar 44100 -ac 2`).
    duration_s: the clip's duration as moviepy reads it (ffmpeg's "Duration:" line, centiseconds).
    sample_rate: the WAV's rate (16000).
    buffersize, chunksize: moviepy's reader buffer (200000) and write_audiofile's buffersize (2000).

  Returns:
    int16 `[int(sample_rate * duration_s), 2]`: the WAV's samples.
  """
  read_rate = MOVIEPY_READ_RATE
  buffersize = min(int(read_rate * duration_s) + 1, buffersize)
  state = {"pos": 0, "start": 1, "buffer": None}

  def read_chunk(n):
    n = int(round(n))
    chunk = samples[state["pos"] : state["pos"] + n] / 32768.0  # 1.0 * int16 / 2**15
    state["pos"] += n
    return chunk

  def buffer_around(frame):
    new_start = max(0, frame - buffersize // 2)
    buffer = state["buffer"]
    end = state["start"] + buffersize if buffer is not None else None
    if buffer is not None and new_start < end < new_start + buffersize:
      conserved = end - new_start + 1  # moviepy's off-by-one: one sample too many kept
      state["buffer"] = np.vstack([buffer[-conserved:], read_chunk(buffersize - conserved)])
    else:
      if (
          new_start < state["pos"]
      ):  # moviepy would re-open ffmpeg at a time: never in a linear write
        raise AssertionError("moviepy_resample: backward seek")
      state["pos"] = new_start  # skip_chunk
      state["buffer"] = read_chunk(buffersize)
    state["start"] = new_start

  buffer_around(1)
  total = int(sample_rate * duration_s)
  bounds = np.linspace(0, total, total // chunksize + 2, endpoint=True, dtype=int)
  out = []
  for lo, hi in zip(bounds[:-1], bounds[1:]):
    tt = (1.0 / sample_rate) * np.arange(lo, hi)
    in_time = (tt >= 0) & (tt < duration_s)
    result = np.zeros((len(tt), 2))
    if in_time.any():
      frames = np.round(read_rate * tt).astype(int)[in_time]
      if not 0 <= frames.min() - state["start"] < len(state["buffer"]):
        buffer_around(frames.min())
      elif not 0 <= frames.max() - state["start"] < len(state["buffer"]):
        buffer_around(frames.max())
      buffer = state["buffer"]
      indices = frames - state["start"]
      if len(buffer) < buffersize // 2:
        indices = indices - (buffersize // 2 - len(buffer) + 1)
      if len(buffer) and indices.min() >= -len(buffer) and indices.max() < len(buffer):
        result[in_time] = buffer[indices]
      elif len(buffer):  # moviepy's IndexError branch: repeat the last sample
        result[in_time] = buffer[np.minimum(indices, len(buffer) - 1)]
    result = np.maximum(-MOVIEPY_CLIP, np.minimum(MOVIEPY_CLIP, result))
    out.append((32768 * result).astype(np.int16))
  return np.concatenate(out) if out else np.zeros((0, 2), np.int16)


def moviepy_duration(container) -> float:
  """The duration moviepy 1.0.3 reads: ffmpeg's "Duration: HH:MM:SS.cc" line (rounded to 0.01 s)."""
  if container.duration is None:
    return 0.0
  return ((container.duration + 5000) // 10000) / 100.0


def read_audio(path: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray | None:
  """The soundtrack as the official `extract_audio.py` + VGGish's reader see it: float32 mono `[S]`.

  Decoded to 16-bit stereo at 44.1 kHz (moviepy's ffmpeg reader: `-ar 44100 -ac 2`, here PyAV's
  `AudioResampler`, the same libswresample), turned into moviepy's 16-kHz WAV (`moviepy_resample`),
  then read as VGGish does: int16 / 32768, channels averaged.

  Returns:
    float32 `[S]` in [-1, 1), S = int(16000 * duration), or None when the file has no audio track.

  Raises:
    InputError: a missing or unreadable file, or an audio track that fails to decode.
  """
  chunks = []
  with _open(path) as container:
    if not container.streams.audio:
      return None
    stream = container.streams.audio[0]
    duration_s = moviepy_duration(container)
    resampler = av.AudioResampler(format="s16", layout="stereo", rate=MOVIEPY_READ_RATE)
    try:
      for frame in container.decode(stream):
        for out in resampler.resample(frame):
          chunks.append(out.to_ndarray().reshape(-1, 2))
      for out in resampler.resample(None):
        chunks.append(out.to_ndarray().reshape(-1, 2))
    except av.error.FFmpegError as e:
      raise InputError(
          f"{path}: its audio track cannot be decoded ({e.strerror}); check the file."
      ) from None
  samples = np.concatenate(chunks) if chunks else np.zeros((0, 2), np.int16)  # [n, 2] at 44.1 kHz
  if not len(samples):
    raise InputError(f"{path}: its audio track holds no decodable samples; check the file.")
  if (
      stream.duration is not None
  ):  # the ffmpeg program drops the encoder's padding past the track's end
    samples = samples[: int(round(float(stream.duration * stream.time_base) * MOVIEPY_READ_RATE))]
  wav = moviepy_resample(samples, duration_s, sample_rate)
  return (wav / 32768.0).mean(axis=1).astype(np.float32)  # VGGish: wav / 32768.0, np.mean(axis=1)


def _frames_8fps(container, stream, path: str, fps: int = FPS) -> Iterator[np.ndarray]:
  """The frames `ffmpeg -r 8` would write, in order, as uint8 `[H, W, 3]` RGB (`CfrSync`)."""
  stream.thread_type = "AUTO"
  rate = stream.guessed_rate or stream.average_rate
  sync = CfrSync(
      (stream.time_base.numerator, stream.time_base.denominator),
      (rate.numerator, rate.denominator) if rate else (0, 1),
      start_time=container.start_time or 0,
      single_stream=len(container.streams) == 1,
      fps=fps,
  )
  previous = current = None  # (source index, VideoFrame, its RGB array or None)
  next_pts = 0
  try:
    for index, frame in enumerate(container.decode(stream)):
      frame_pts = frame.pts if frame.pts is not None else next_pts
      next_pts = frame_pts + (frame.duration or 1)
      previous, current = current, [index, frame, None]
      for source in sync.push(frame_pts, frame.duration or 0):
        chosen = current if source == index else previous
        if chosen[2] is None:
          chosen[2] = chosen[1].to_ndarray(format="rgb24")
        yield chosen[2]
      if previous is not None:
        previous[1] = None  # free the decoded picture
  except av.error.FFmpegError as e:
    raise InputError(
        f"{path}: a video frame cannot be decoded ({e.strerror}); check the file."
    ) from None
  for _ in sync.flush():
    if current[2] is None:
      current[2] = current[1].to_ndarray(format="rgb24")
    yield current[2]


def _segment_mask(index: int, duration_s: float, window_seconds: int) -> np.ndarray:
  """bool `[window_seconds]`: the video covers at least half of second s of window `index`.

  So a 12.012-s video (360 frames at 29.97 fps) has 12 seconds, a 5.6-s one 6, a 10.03-s clip 10.
  """
  starts = index * window_seconds + np.arange(window_seconds)
  return starts + 0.5 <= duration_s + 1e-9


def iter_windows(
    path: str,
    *,
    window_seconds: int = WINDOW_SECONDS,
    fps: int = FPS,
    frames_per_window: int = FRAMES_PER_WINDOW,
    sample_rate: int = SAMPLE_RATE,
) -> Iterator[Window]:
  """Decode a video one 10-s window at a time (memory: one window's frames, the whole 16-kHz audio).

  Args:
    path: a video file.
    window_seconds: seconds per window (10).
    fps: the frame stream's rate (8, `ffmpeg -r 8`).
    frames_per_window: frames kept per window (80).
    sample_rate: the audio's rate (16000).

  Yields:
    `Window`s in order: frames uint8 `[80, H, W, 3]`, waveform float32 `[160000]`
    (None without audio), masks.

  Raises:
    InputError: a missing file, a file that is not a video, one without a video track (audio only),
    one with no video frames, or one that fails to decode; the message names the file.
  """
  window_frames = window_seconds * fps  # 80 8-fps frames per 10 s
  window_samples = window_seconds * sample_rate
  with _open(path) as container:
    stream = _video_stream(container, path)  # an audio-only file fails before its audio is decoded
    audio = read_audio(path, sample_rate)
    duration_s = _info(container, stream, path).duration_s
    pending = []  # 8-fps frames not yet in a window
    index = 0
    first = 0  # the 8-fps index of pending[0]

    def window(frames: list[np.ndarray], final_duration: float) -> Window:
      local = frame_indices(len(frames), frames_per_window)
      if audio is None:
        waveform = None
      else:
        waveform = np.zeros(window_samples, np.float32)
        piece = audio[index * window_samples : (index + 1) * window_samples]
        waveform[: len(piece)] = piece
      return Window(
          index=index,
          frames=np.stack([frames[i] for i in local]),
          frame_indices=first + local,
          num_frames=len(frames),
          waveform=waveform,
          segment_mask=_segment_mask(index, final_duration, window_seconds),
      )

    for frame in _frames_8fps(container, stream, path, fps):
      pending.append(frame)
      if len(pending) > window_frames + MERGE_FRAMES:  # not the last window: a full one
        yield window(pending[:window_frames], math.inf)
        pending = pending[window_frames:]
        index += 1
        first += window_frames
    if not pending and index == 0:
      raise InputError(f"{path} has a video track with no frames; pass a non-empty video.")
    if pending:
      end_s = max(duration_s, 0.0)
      yield window(pending, end_s if end_s > 0 else (first + len(pending)) / fps)


def read_clip(
    path: str,
    *,
    window_seconds: int = WINDOW_SECONDS,
    fps: int = FPS,
    frames_per_window: int = FRAMES_PER_WINDOW,
    sample_rate: int = SAMPLE_RATE,
) -> Clip:
  """Decode a whole video into 10-s windows (all in memory: use `iter_windows` for long videos).

  Args:
    path: a video file.
    window_seconds, fps, frames_per_window, sample_rate: as `iter_windows` (10, 8, 80, 16000).

  Returns:
    A `Clip`: frames uint8 `[K, 80, H, W, 3]`, waveform float32 `[K, 160000]` (None without audio),
    frame_indices `[K, 80]`, segment_mask `[K, 10]`.

  Raises:
    InputError: as `iter_windows`.
  """
  windows = list(
      iter_windows(
          path,
          window_seconds=window_seconds,
          fps=fps,
          frames_per_window=frames_per_window,
          sample_rate=sample_rate,
      )
  )
  info = probe(path)
  has_audio = windows[0].waveform is not None
  num_frames = np.array([w.num_frames for w in windows], np.int64)
  segment_mask = np.stack([w.segment_mask for w in windows])
  return Clip(
      path=path,
      duration_s=info.duration_s,
      num_windows=len(windows),
      window_seconds=window_seconds,
      frames=np.stack([w.frames for w in windows]),
      frame_indices=np.stack([w.frame_indices for w in windows]),
      num_frames=num_frames,
      total_frames=int(num_frames.sum()),
      waveform=np.stack([w.waveform for w in windows]) if has_audio else None,
      has_audio=has_audio,
      segment_mask=segment_mask,
      source_fps=info.source_fps,
      padded=bool(num_frames[-1] < window_seconds * fps or not segment_mask.all()),
  )
