"""Tests for avvp_jax.video.decode on synthetic videos made with PyAV (tests/video_samples.py)."""

import math
import os

from absl.testing import absltest
import av
import numpy as np

from avvp_jax.errors import InputError
from avvp_jax.video import decode
import video_samples

# Source frame of each of the 82 official JPEGs of BjCEufrlXm4.mp4 (`ffmpeg -r 8`:
# YapengTian/AVVP-ECCV20 data/LLP_dataset/frame/), found by matching each JPEG's pixels against the
# 300 decoded frames (mean absolute difference 0.9-5.6 grey levels to the match, 6-29 to any other).
OFFICIAL_BJCE_SOURCES = [
    0, 1, 3, 7, 10, 14, 18, 22, 25, 29, 33, 37, 40, 44, 48, 51, 55, 59, 63, 66, 70, 74, 78, 81,
    85, 89, 93, 96, 100, 104, 108, 111, 115, 119, 123, 126, 130, 134, 137, 141, 145, 149, 152,
    156, 160, 164, 167, 171, 175, 179, 182, 186, 190, 194, 197, 201, 205, 209, 212, 216, 220, 224,
    227, 231, 235, 238, 242, 246, 250, 253, 257, 261, 265, 268, 272, 276, 280, 283, 287, 291, 295,
    298,
]  # fmt: skip


def downsampled_sources(num_source: int, source_fps: float, fps: int = 8) -> list[int]:
  """Oracle for ffmpeg's cfr rule when the source is faster than 8/1.1 fps, in closed form.

  Source frame i (at i * 8 / source_fps output frames, lasting d = 8 / source_fps) is dropped iff
  i * 8 / source_fps + d - m < -1.1 for the next output slot m, and never written twice; so output m
  shows the first frame after the previous one with i >= (m - 1.1 - d) * source_fps / 8.
  """
  d = fps / source_fps
  out, i = [], -1
  while True:
    m = len(out)
    i = max(i + 1, math.ceil((m - 1.1 - d) * source_fps / fps))
    if i >= num_source:
      return out
    out.append(i)


class FrameIndicesTest(absltest.TestCase):

  def test_official_rule_literally(self):
    for n in list(range(80, 95)) + [160, 1000]:
      np.testing.assert_array_equal(
          decode.frame_indices(n), np.round(np.linspace(0, n - 1, 80)).astype(int), err_msg=str(n)
      )

  def test_short_windows_keep_their_times_and_repeat_the_last_frame(self):
    np.testing.assert_array_equal(decode.frame_indices(3, 6), [0, 1, 2, 2, 2, 2])
    np.testing.assert_array_equal(decode.frame_indices(1), np.zeros(80))
    self.assertEqual(decode.frame_indices(79)[-2:].tolist(), [78, 78])
    with self.assertRaises(InputError):
      decode.frame_indices(0)

  def test_window_frame_counts(self):
    self.assertEqual(decode.window_frame_counts(1), [1])
    self.assertEqual(decode.window_frame_counts(80), [80])
    self.assertEqual(decode.window_frame_counts(83), [83])  # a 10-s clip is one window
    self.assertEqual(decode.window_frame_counts(84), [80, 4])
    self.assertEqual(decode.window_frame_counts(178), [80, 80, 18])
    self.assertEqual(decode.window_frame_counts(163), [80, 83])


class CfrTest(absltest.TestCase):

  def test_bjce_timestamps_give_the_official_frames(self):
    # BjCEufrlXm4.mp4: 300 frames, pts 384 * i in 1/11488 s, guessed rate 359/12 (29.92 fps).
    pts = [384 * i for i in range(300)]
    sources = decode.cfr_frame_sources(pts, (1, 11488), (359, 12), durations=[384] * 300)
    self.assertEqual(sources, OFFICIAL_BJCE_SOURCES)

  def test_downsampling_matches_the_closed_form(self):
    for num, den in [(30000, 1001), (25, 1), (24000, 1001), (60, 1), (359, 12)]:
      count = 11 * num // den
      pts = list(range(count))  # time base den/num: one unit per frame
      sources = decode.cfr_frame_sources(pts, (den, num), (num, den), durations=[1] * count)
      self.assertEqual(sources, downsampled_sources(count, num / den), msg=f"{num}/{den}")

  def test_upsampling_by_hand(self):
    # 4 fps: a packet lasts two output frames (lrintf(0.25 * 8) = 2): each frame is written twice.
    pts = list(range(8))
    self.assertEqual(
        decode.cfr_frame_sources(pts, (1, 4), (4, 1), durations=[1] * 8),
        [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7],
    )
    # Without packet durations a frame lasts one output frame: frame 0 once, then delta = 2 each.
    self.assertEqual(
        decode.cfr_frame_sources(pts, (1, 4), (4, 1)),
        [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7],
    )

  def test_late_start(self):
    # First frame 0.5 s in (4 output frames): cfr duplicates it onto the empty slots (nb0 copies of
    # the first frame); vscfr (a file with one stream) starts the output at the first frame.
    pts = [15 + i for i in range(30)]  # 30 fps, starting at frame 15
    cfr = decode.cfr_frame_sources(pts, (1, 30), (30, 1), durations=[1] * 30)
    vscfr = decode.cfr_frame_sources(pts, (1, 30), (30, 1), durations=[1] * 30, single_stream=True)
    self.assertEqual(cfr[:7], [0, 0, 0, 0, 1, 2, 3])  # ffmpeg 5.1: the same on a real file
    self.assertEqual(vscfr, downsampled_sources(30, 30.0))


class ReadClipTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.long = decode.read_clip(video_samples.sample("long"))

  def source_frames(self, path):
    with av.open(path) as container:
      return sum(1 for _ in container.decode(video=0))

  def test_long_shapes_windows_and_masks(self):
    clip = self.long
    self.assertEqual(clip.num_windows, 3)
    self.assertEqual(clip.frames.shape, (3, 80, 96, 160, 3))
    self.assertEqual(clip.frames.dtype, np.uint8)
    self.assertEqual(clip.waveform.shape, (3, 160000))
    self.assertEqual(clip.waveform.dtype, np.float32)
    self.assertTrue(clip.has_audio)
    self.assertTrue(clip.padded)
    self.assertAlmostEqual(clip.source_fps, 30000 / 1001)
    self.assertAlmostEqual(clip.duration_s, 659 * 1001 / 30000, places=6)
    oracle = downsampled_sources(659, 30000 / 1001)
    self.assertEqual(clip.total_frames, len(oracle))
    self.assertEqual(clip.num_frames.tolist(), [80, 80, len(oracle) - 160])
    np.testing.assert_array_equal(clip.frame_indices[0], np.arange(80))
    np.testing.assert_array_equal(clip.frame_indices[1], 80 + np.arange(80))
    last = len(oracle) - 160
    np.testing.assert_array_equal(clip.frame_indices[2], 160 + decode.frame_indices(last))
    np.testing.assert_array_equal(
        clip.segment_mask, [[True] * 10, [True] * 10, [True] * 2 + [False] * 8]
    )
    # Audio: 22 s, so the last window holds 2 s of tone, then zeros.
    self.assertGreater(np.abs(clip.waveform[2, :31000]).max(), 0.4)
    self.assertEqual(np.abs(clip.waveform[2, 32200:]).max(), 0.0)

  def test_frame_pixels_show_the_selected_source_frames(self):
    oracle = downsampled_sources(659, 30000 / 1001)
    for k in range(3):
      shown = [video_samples.frame_number(image) for image in self.long.frames[k]]
      self.assertEqual(shown, [oracle[i] for i in self.long.frame_indices[k]], msg=f"window {k}")
    expected = video_samples.picture(oracle[5], oracle[5] * 1001 / 30000)
    self.assertLess(np.abs(self.long.frames[0, 5].astype(int) - expected).mean(), 3.0)

  def test_iter_windows_equals_read_clip(self):
    windows = list(decode.iter_windows(video_samples.sample("long")))
    self.assertLen(windows, 3)
    for k, window in enumerate(windows):
      self.assertEqual(window.index, k)
      np.testing.assert_array_equal(window.frames, self.long.frames[k])
      np.testing.assert_array_equal(window.waveform, self.long.waveform[k])
      np.testing.assert_array_equal(window.segment_mask, self.long.segment_mask[k])

  def test_no_audio(self):
    clip = decode.read_clip(video_samples.sample("no_audio"))
    self.assertFalse(clip.has_audio)
    self.assertIsNone(clip.waveform)
    self.assertEqual(clip.frames.shape[:2], (2, 80))
    self.assertEqual(clip.segment_mask.sum(axis=1).tolist(), [10, 2])  # 12.012 s
    self.assertIsNone(decode.read_audio(video_samples.sample("no_audio")))

  def test_short_video_is_padded(self):
    clip = decode.read_clip(video_samples.sample("short"))
    oracle = downsampled_sources(150, 30000 / 1001)
    n = len(oracle)
    self.assertEqual((clip.num_windows, clip.total_frames), (1, n))
    self.assertTrue(clip.padded)
    np.testing.assert_array_equal(clip.frame_indices[0], np.minimum(np.arange(80), n - 1))
    shown = [video_samples.frame_number(image) for image in clip.frames[0]]
    self.assertEqual(shown, [oracle[min(j, n - 1)] for j in range(80)])
    self.assertEqual(clip.segment_mask[0].tolist(), [True] * 5 + [False] * 5)
    self.assertEqual(np.abs(clip.waveform[0, int(16000 * 5.01) :]).max(), 0.0)

  def test_probe(self):
    info = decode.probe(video_samples.sample("pcm48k"))
    self.assertEqual((info.width, info.height, info.source_fps), (160, 96, 25.0))
    self.assertEqual((info.has_audio, info.audio_rate, info.audio_channels), (True, 48000, 1))


class AudioTest(absltest.TestCase):

  def test_pcm_tone_is_picked_from_the_written_samples(self):
    # Lossless 16-bit PCM at 44.1 kHz: until moviepy's buffer first re-centres (input sample 200000,
    # so 71000 output samples are safe) output k is exactly written sample round(44100 k / 16000).
    waveform = decode.read_audio(video_samples.sample("pcm"))
    self.assertEqual(len(waveform), int(16000 * 12.01))  # moviepy: int(fps * duration)
    written = video_samples.tone_int16(12 * 44100, 44100, 440.0)
    k = np.arange(71000)
    picks = np.round(44100 * ((1.0 / 16000) * k)).astype(
        int
    )  # moviepy's expression (its float halves)
    np.testing.assert_array_equal(waveform[:71000], written[picks] / 32768)
    # Against the analytic tone: picking is off by at most half an input sample (0.5 / 44100 s), the
    # slope is at most 0.5 * 2 pi 440, and the two roundings to 1/32768 add 1/32768 each.
    analytic = 0.5 * np.sin(2 * np.pi * 440 * k / 16000)
    bound = 0.5 * 2 * np.pi * 440 * 0.5 / 44100 + 2 / 32768
    self.assertLess(np.abs(waveform[:71000] - analytic).max(), bound)

  def test_moviepy_buffer_lag(self):
    # A ramp in two channels (n // 20000 and n % 20000, offset to stay under moviepy's 0.99 clip)
    # shows which input sample each output sample took.
    n = np.arange(44100 * 12)
    samples = np.stack([n // 20000 - 10000, n % 20000 - 10000], axis=1).astype(np.int16)
    wav = decode.moviepy_resample(samples, 12.0)
    self.assertEqual(wav.shape, (192000, 2))
    taken = (wav[:, 0].astype(int) + 10000) * 20000 + wav[:, 1].astype(int) + 10000
    nearest = np.round(44100 * ((1.0 / 16000) * np.arange(192000))).astype(int)  # moviepy's picks
    lag = nearest - taken
    steps = np.nonzero(np.diff(lag))[0] + 1  # first output sample of each new lag
    self.assertEqual(lag[0], 0)
    self.assertEqual(set(np.diff(lag).tolist()), {0, 1})  # the lag only grows, one sample at a time
    # A re-centre happens in the 2000-sample chunk (5513 input samples) that first reaches past the
    # buffer's end: input sample 200000 first, then 100000 past the previous re-centre's chunk end.
    chunk = math.ceil(2000 * 44100 / 16000)
    self.assertBetween(nearest[steps[0]], 200000 - chunk, 200000)
    gaps = np.diff(nearest[steps])
    self.assertTrue(np.all((gaps >= 100000 - chunk) & (gaps <= 100000 + chunk)), msg=str(gaps))
    self.assertLen(steps, 4)  # 12 s = 529200 input samples: re-centres near 0.2, 0.3, 0.4, 0.5 M

  def test_quantisation_clips_and_truncates(self):
    samples = np.array([[32767, -32768], [1000, -1000], [32440, -32441]], np.int16)
    samples = np.repeat(samples, 20, axis=0)  # 60 input samples, 1.36 ms
    wav = decode.moviepy_resample(samples, 60 / 44100)
    self.assertEqual(wav[0].tolist(), [32440, -32440])  # +-0.99 * 32768 = 32440.32, truncated
    self.assertEqual(wav[8].tolist(), [1000, -1000])

  def test_resampled_tone_keeps_its_frequency(self):
    # ffmpeg's -ac 2 (libswresample) spreads a mono track over both channels at -3 dB (sqrt(1/2)).
    for name, hz, gain in [("pcm48k", 1000.0, np.sqrt(0.5)), ("long", 440.0, 1.0)]:
      waveform = decode.read_audio(video_samples.sample(name))[16000:64000]  # 3 s
      spectrum = np.abs(np.fft.rfft(waveform * np.hanning(len(waveform))))
      peak = np.argmax(spectrum) * 16000 / len(waveform)
      self.assertAlmostEqual(peak, hz, delta=16000 / len(waveform), msg=name)
      rms = np.sqrt(np.mean(waveform**2))
      self.assertAlmostEqual(rms, gain * 0.5 / np.sqrt(2), delta=0.01, msg=name)


class BadInputTest(absltest.TestCase):

  def assert_one_line_error(self, path, fragment):
    with self.assertRaises(InputError) as caught:
      decode.read_clip(path)
    message = str(caught.exception)
    self.assertIn(path, message)
    self.assertIn(fragment, message)
    self.assertNotIn("\n", message)

  def test_missing_file(self):
    self.assert_one_line_error(os.path.join(self.create_tempdir().full_path, "gone.mp4"), "no such")

  def test_folder(self):
    self.assert_one_line_error(self.create_tempdir().full_path, "folder")

  def test_text_file(self):
    path = self.create_tempfile("x.mp4", content="not a video\n").full_path
    self.assert_one_line_error(path, "not a readable video")

  def test_audio_only(self):
    self.assert_one_line_error(video_samples.sample("audio_only"), "no video track")

  def test_zero_length_video(self):
    folder = self.create_tempdir().full_path
    for ext in ("mp4", "mkv"):
      path = os.path.join(folder, f"empty.{ext}")
      with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
      with self.assertRaises(InputError) as caught:
        decode.read_clip(path)
      self.assertIn(path, str(caught.exception))


if __name__ == "__main__":
  absltest.main()
