"""Videos in, features and events out: `avvp_jax.video.extract`, `avvp_jax.video.parse` and their launchers.

The networks here have RANDOM weights and, for speed, narrow early stages (`SMOKE_MODULES`: the official
ResNet-152 / R(2+1)D-18 output widths, fewer and thinner blocks); the full-depth ports are checked against
torch transcriptions in video_resnet_test.py / video_r2plus1d_test.py. The videos are SYNTHETIC
(`video_samples`).
"""

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from unittest import mock

from absl.testing import absltest
import numpy as np

from avvp_jax import checkpoint
from avvp_jax import inference
from avvp_jax import reporting
from avvp_jax import state as state_lib
from avvp_jax import train
from avvp_jax.tasks.llp import features as features_lib
from avvp_jax.errors import InputError
from avvp_jax.video import decode
from avvp_jax.video import extract
from avvp_jax.video import parse
from avvp_jax.video import r2plus1d
from avvp_jax.video import resnet
from avvp_jax.video import weights as weights_lib
import video_samples

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configs import han  # pylint: disable=g-import-not-at-top,wrong-import-position

SMOKE_MODULES = {
    "frames": resnet.ResNet(stages=(1, 1, 1, 1), widths=(8, 8, 16, 512)),
    "motion": r2plus1d.R2Plus1D(stages=(1, 1, 1, 1), widths=(8, 8, 16, 512), stem_width=8),
}


@functools.lru_cache(maxsize=1)
def _extractor():
  return extract.FeatureExtractor("random", modules=SMOKE_MODULES, seed=3)


def _file_bytes(folder):
  out = {}
  for base, _, names in os.walk(folder):
    for name in names:
      path = os.path.join(base, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, folder)] = f.read()
  return out


class ExtractTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    cls.extractor = _extractor()
    cls.videos = os.path.join(cls.root, "videos")
    os.makedirs(cls.videos, exist_ok=True)
    for name in (
        "long",
        "short",
        "no_audio",
    ):  # this class's own files (it also rewrites its folder)
      options = dict(video_samples.SAMPLES[name])
      del options["ext"]
      video_samples.make_video(os.path.join(cls.videos, f"{name}.mp4"), **options)
    with open(os.path.join(cls.videos, "notes.mp4"), "w") as f:
      f.write("not a video\n")
    cls.out = os.path.join(cls.root, "features")
    cls.summary = extract.extract_folder(cls.videos, cls.out, cls.extractor, progress=False)

  def test_layout_shapes_and_clip_names(self):
    expected = {"long": ["long__0_10", "long__10_20", "long__20_30"], "short": ["short"]}
    for modality, (folder, shape) in features_lib.LAYOUTS["official"].items():
      names = sorted(os.listdir(os.path.join(self.out, folder)))
      self.assertEqual(names, sorted(f"{c}.npy" for clips in expected.values() for c in clips))
      for name in names:
        array = np.load(os.path.join(self.out, folder, name))
        self.assertEqual(array.shape, shape, (modality, name))
        self.assertEqual(array.dtype, np.float32)
        self.assertTrue(np.isfinite(array).all())
    with open(os.path.join(self.out, extract.MANIFEST)) as f:
      manifest = json.load(f)
    self.assertEqual(manifest["weights"], "random")
    self.assertIn("RANDOM WEIGHTS", manifest["note"])
    long = manifest["videos"]["long.mp4"]
    self.assertEqual([c["clip"] for c in long["clips"]], expected["long"])
    self.assertEqual([c["valid_seconds"] for c in long["clips"]], [10, 10, 2])  # 22 s
    self.assertEqual([c["start_s"] for c in long["clips"]], [0, 10, 20])
    self.assertTrue(long["padded"])
    self.assertEqual(manifest["videos"]["short.mp4"]["clips"][0]["valid_seconds"], 5)

  def test_features_equal_the_extractor_on_the_decoded_windows(self):
    windows = list(decode.iter_windows(os.path.join(self.videos, "long.mp4")))
    k = 1
    window = windows[k]
    np.testing.assert_array_equal(window.frame_indices, decode.frame_indices(80) + 80 * k)
    features = self.extractor.window(window.frames, window.waveform)
    for modality, (folder, _) in features_lib.LAYOUTS["official"].items():
      stored = np.load(os.path.join(self.out, folder, "long__10_20.npy"))
      np.testing.assert_allclose(stored, features[modality], rtol=1e-6, atol=1e-6)
    # The motion features group the 80 frames as 10 clips of 8 (frame i -> clip i // 8): clip 3 alone.
    clip3 = self.extractor.motion(np.repeat(window.frames[24:32], 10, axis=0))
    self.assertFalse(np.allclose(clip3[0], features["motion"][0]))
    one_clip = r2plus1d.embed(
        self.extractor.params["motion"],
        r2plus1d.clips_from_frames(r2plus1d.r2plus1d_transform(window.frames))[3:4],
        module=SMOKE_MODULES["motion"],
    )
    np.testing.assert_allclose(features["motion"][3], np.asarray(one_clip)[0], rtol=1e-5, atol=1e-6)

  def test_failures_are_reported_and_the_rest_goes_on(self):
    self.assertEqual(self.summary.outcomes["long.mp4"], "done")
    self.assertEqual(self.summary.outcomes["short.mp4"], "done")
    self.assertIn("no audio track", self.summary.failures["no_audio.mp4"])
    self.assertIn("notes.mp4", self.summary.failures["notes.mp4"])
    self.assertEqual(set(self.summary.failures), {"no_audio.mp4", "notes.mp4"})
    self.assertEqual(self.summary.clips_written, 4)
    self.assertIn("RANDOM WEIGHTS", self.summary.describe())

  def test_rerun_skips_finished_videos_and_redoes_a_missing_file(self):
    out = os.path.join(self.create_tempdir().full_path, "features")
    shutil.copytree(self.out, out)
    before = _file_bytes(out)
    again = extract.extract_folder(self.videos, out, self.extractor, progress=False)
    self.assertEqual(again.outcomes["long.mp4"], "skipped")
    self.assertEqual(again.outcomes["short.mp4"], "skipped")
    self.assertEqual(again.clips_written, 0)
    after = _file_bytes(out)
    self.assertEqual(
        {k: v for k, v in after.items() if k != extract.MANIFEST},
        {k: v for k, v in before.items() if k != extract.MANIFEST},
    )
    os.remove(os.path.join(out, "res152", "short.npy"))
    third = extract.extract_folder(self.videos, out, self.extractor, progress=False)
    self.assertEqual(third.outcomes["short.mp4"], "done")
    self.assertEqual(third.outcomes["long.mp4"], "skipped")
    with open(os.path.join(out, "res152", "short.npy"), "rb") as f:
      self.assertEqual(f.read(), before[os.path.join("res152", "short.npy")])
    self.assertEmpty([n for _, _, names in os.walk(out) for n in names if ".tmp-" in n])

  def test_an_unexpected_error_in_one_video_is_reported_and_the_rest_goes_on(self):
    def fake(path, stem, *args):
      if stem == "short":
        raise RuntimeError("decoder crashed")
      return {"status": "done", "clips": [], "duration_s": 1.0, "num_windows": 1, "padded": False}

    out = self.create_tempdir().full_path
    with mock.patch.object(extract, "_extract_video", side_effect=fake):
      summary = extract.extract_folder(self.videos, out, self.extractor, progress=False)
    self.assertEqual(summary.outcomes["long.mp4"], "done")
    self.assertRegex(
        summary.failures["short.mp4"], r"short\.mp4: unexpected RuntimeError .*crashed"
    )
    with open(os.path.join(out, extract.MANIFEST)) as f:
      self.assertEqual(json.load(f)["videos"]["short.mp4"]["status"], "failed")

  def test_pretrained_features_do_not_mix_with_random_ones(self):
    with self.assertRaisesRegex(InputError, "random weights"):
      extract.extract_folder(self.videos, self.out, _PretendPretrained(self.extractor))

  def test_bad_inputs(self):
    empty = self.create_tempdir().full_path
    with self.assertRaisesRegex(InputError, "holds no video file"):
      extract.list_videos(empty)
    with self.assertRaisesRegex(InputError, "does not exist"):
      extract.list_videos(os.path.join(empty, "nowhere"))
    long, short = os.path.join(self.videos, "long.mp4"), os.path.join(self.videos, "short.mp4")
    self.assertEqual(
        extract.list_videos(f"{short},{long}"), [short, long]
    )  # a list keeps its order
    with self.assertRaisesRegex(InputError, r"lists '.*nowhere\.mp4', which is not a video file"):
      extract.list_videos(f"{short},{os.path.join(empty, 'nowhere.mp4')}")
    zero = os.path.join(empty, "zero.mp4")
    open(zero, "wb").close()
    summary = extract.extract_folder(empty, os.path.join(empty, "out"), self.extractor)
    self.assertIn("zero.mp4", summary.failures["zero.mp4"])
    with self.assertRaisesRegex(InputError, "weights"):
      extract.FeatureExtractor("imagenet")
    with self.assertRaisesRegex(InputError, "random weights only"):
      extract.FeatureExtractor("pretrained", modules=SMOKE_MODULES)

  def test_missing_weight_file_offline_names_it_and_its_source(self):
    empty = self.create_tempdir().full_path
    with self.assertRaisesRegex(InputError, r"resnet152-b121ed2d\.pth .*download\.pytorch\.org"):
      weights_lib.find(resnet.WEIGHT_FILE, empty)
    os.environ["TORCH_HOME"], previous = empty, os.environ.get("TORCH_HOME")
    try:
      with self.assertRaisesRegex(InputError, r"vggish\.pt .*--weights_dir"):
        weights_lib.find(extract.NETWORKS["audio"].WEIGHT_FILE, download=False)
      cached = os.path.join(empty, "hub", "torchaudio", "models", "vggish.pt")
      os.makedirs(os.path.dirname(cached))
      open(cached, "wb").close()
      self.assertEqual(
          weights_lib.find(extract.NETWORKS["audio"].WEIGHT_FILE, download=False), cached
      )
    finally:
      if previous is None:
        del os.environ["TORCH_HOME"]
      else:
        os.environ["TORCH_HOME"] = previous

  def test_weight_files_are_read(self):
    import torch  # pylint: disable=g-import-not-at-top  (the video extra's torch, only for this file)

    folder = self.create_tempdir().full_path
    state = {"conv1.weight": torch.ones(2, 3), "bn1.num_batches_tracked": torch.tensor(3)}
    path = os.path.join(folder, "w.pth")
    torch.save({"state_dict": state}, path)
    loaded = weights_lib.load_state_dict(path)
    self.assertEqual(set(loaded), {"conv1.weight"})
    np.testing.assert_array_equal(loaded["conv1.weight"], np.ones((2, 3), np.float32))
    with open(os.path.join(folder, "bad.pth"), "w") as f:
      f.write("html error page")
    with self.assertRaisesRegex(InputError, "bad.pth"):
      weights_lib.load_state_dict(os.path.join(folder, "bad.pth"))


class SummaryLineTest(absltest.TestCase):

  def test_counts_are_singular_or_plural(self):
    one = extract.ExtractionSummary(
        out="f", outcomes={"a.mp4": "done"}, clips_written=1, seconds=1.0
    )
    self.assertStartsWith(
        one.describe(), "1 video extracted (1 clip, 1.00 clips/s), 0 already done"
    )
    two = extract.ExtractionSummary(
        out="f", outcomes={"a.mp4": "done", "b.mp4": "done"}, clips_written=2, seconds=1.0
    )
    self.assertStartsWith(two.describe(), "2 videos extracted (2 clips, 2.00 clips/s)")


class _PretendPretrained:
  random = False

  def __init__(self, extractor):
    self._extractor = extractor


class WindowEventsTest(absltest.TestCase):
  """Events over a whole video from per-window probabilities, on a hand-worked two-window case."""

  def test_events_cross_window_boundaries_and_stop_at_the_video_end(self):
    k, t, c = 2, 10, 25
    seg_a = np.zeros((k, t, c), np.float32)
    seg_v = np.zeros((k, t, c), np.float32)
    seg_a[0, 8:, 0] = 0.9  # class 0 audible from 8 s to 13 s, across the boundary
    seg_a[1, :3, 0] = 0.7
    seg_v[1, 4:9, 1] = 0.8  # class 1 visible 14-19 s, but the video ends at 16 s
    seg_v[1, 2, 2] = 0.9  # class 2 visible at 12 s, gated off by its video-level probability
    gates = np.zeros((k, c), np.float32)
    gates[:, :2] = 0.9
    probs = {
        "segment_audio_prob": seg_a,
        "segment_visual_prob": seg_v,
        "audio_filter_prob": gates,
        "visual_filter_prob": gates,
    }
    mask = np.ones((k, t), bool)
    mask[1, 6:] = False  # a 16-s video
    events = parse.window_events(probs, mask)
    self.assertEqual(
        [(e["modality"], e["label"], e["onset"], e["offset"]) for e in events],
        [("audio", "Speech", 8.0, 13.0), ("visual", "Car", 14.0, 16.0)],
    )
    self.assertAlmostEqual(events[0]["score"], (2 * 0.9 + 3 * 0.7) / 5, places=6)


class ParseVideoTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    config = state_lib.resolve_config(han.get_config("tiny"))
    cls.workdir = os.path.join(root, "han_tiny")
    train.train_and_evaluate(config, cls.workdir)
    cls.parser = inference.load_parser(cls.workdir)
    cls.extractor = _extractor()

  def test_records_cover_the_whole_video(self):
    long, no_audio = video_samples.sample("long"), video_samples.sample("no_audio")
    records = parse.parse_video(self.parser, [long, no_audio], extractor=self.extractor)
    self.assertLen(records, 2)
    record = records[0]
    self.assertEqual(record["num_windows"], 3)
    self.assertAlmostEqual(record["duration_s"], 22.0, delta=0.1)
    self.assertEqual([w["start_s"] for w in record["windows"]], [0, 10, 20])
    self.assertEqual([w["valid_seconds"] for w in record["windows"]], [10, 10, 2])
    self.assertIn("RANDOM WEIGHTS", record["features"])
    self.assertEqual(
        {k: record["provenance"][k] for k in ("checkpoint", "step", "synthetic", "threshold")},
        {
            "checkpoint": self.parser.source,
            "step": checkpoint.resolve(self.workdir).step,
            "synthetic": False,
            "threshold": 0.5,
        },
    )
    for event in record["events"]:
      self.assertLessEqual(event["offset"], 22.0)
      self.assertLess(event["onset"], event["offset"])
    self.assertFalse(records[1]["has_audio"])
    self.assertIn("silence", records[1]["audio"])
    # The events are those of the windows' features parsed as clips, laid end to end.
    video = extract.video_features(long, self.extractor)
    probs = self.parser.predict(
        video.features["audio"], video.features["frames"], video.features["motion"]
    )
    self.assertEqual(record["events"], parse.window_events(probs, video.segment_mask))
    json.dumps(records)  # plain JSON types only
    # Two windows per jitted call (the last call padded): the same events and video labels.
    batched = parse.parse_video(self.parser, [long], extractor=self.extractor, batch_size=2)[0]
    self.assertEqual(
        [(e["modality"], e["label"], e["onset"], e["offset"]) for e in batched["events"]],
        [(e["modality"], e["label"], e["onset"], e["offset"]) for e in record["events"]],
    )
    np.testing.assert_allclose(
        [e["score"] for e in batched["events"]], [e["score"] for e in record["events"]], rtol=1e-5
    )
    self.assertEqual(
        [[label["label"] for label in w["video_labels"]] for w in batched["windows"]],
        [[label["label"] for label in w["video_labels"]] for w in record["windows"]],
    )
    with self.assertRaisesRegex(InputError, "batch_size=0 must be positive"):
      parse.parse_video(self.parser, [long], extractor=self.extractor, batch_size=0)

  def test_outputs_json_and_plot(self):
    out = self.create_tempdir().full_path
    records = parse.parse_video(
        self.workdir,
        [video_samples.sample("short"), video_samples.sample("long")],
        extractor=self.extractor,
        plot=f"{out}/timeline.png",
        plot_dir=f"{out}/timelines",
    )
    written = [parse.write_records(records, f"{out}/events.json"), f"{out}/timeline.png"]
    self.assertEqual(sorted(os.listdir(f"{out}/timelines")), ["long.png", "short.png"])
    for name in ("long.png", "short.png"):  # one picture per video
      with open(f"{out}/timelines/{name}", "rb") as f:
        self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
    with open(written[0]) as f:
      stored = json.load(f)
    self.assertEqual(stored, records)
    self.assertEqual(stored[0]["num_windows"], 1)
    self.assertEqual(stored[0]["windows"][0]["valid_seconds"], 5)
    with open(written[1], "rb") as f:
      self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
    with self.assertRaisesRegex(InputError, "extension .gif"):  # refused before any work
      parse.parse_video(self.workdir, ["nowhere.mp4"], plot=f"{out}/timeline.gif")

  def test_launcher_bad_inputs_are_one_line_before_anything_loads(self):
    out = self.create_tempdir().full_path
    text = os.path.join(out, "notes.mp4")
    with open(text, "w") as f:
      f.write("not a video\n")
    launcher = os.path.join(ROOT, "launch", "parse_video.py")
    missing = os.path.join(out, "missing.mp4")
    for args, culprit in (
        ([f"--videos={missing}"], "missing.mp4"),
        ([f"--videos={text}"], "notes.mp4"),
        ([f"--videos={text},{missing}"], "missing.mp4"),
        ([], "--videos is required"),
        ([f"--videos={text}", missing], "give --videos only"),
        ([f"--videos={text}", "--class_thresholds=Speech:0.4"], "not CLASS=VALUE"),
        ([text, "--batch_size=0"], "--batch_size=0 must be positive"),
    ):
      bad = subprocess.run(
          [sys.executable, launcher, f"--checkpoint={self.workdir}", f"--out={out}/x.json", *args],
          capture_output=True,
          text=True,
          env=dict(os.environ, PYTHONPATH=ROOT),
          timeout=300,
      )
      self.assertEqual(bad.returncode, 2, bad.stderr)
      lines = bad.stderr.strip().splitlines()
      if args and not args[0].startswith("--"):  # positional videos: deprecated, one warning line
        self.assertEqual(
            lines[0], f"warning: positional video arguments are deprecated; use --videos={text}"
        )
        lines = lines[1:]
      self.assertEqual(lines, [lines[-1]], bad.stderr)
      self.assertStartsWith(lines[-1], "error: ")
      self.assertIn(culprit, lines[-1])
    self.assertFalse(os.path.exists(f"{out}/x.json"))

  def test_checkpoint_for_other_features_is_refused(self):
    config = self.parser.config.copy_and_resolve_references()
    config.model.input_dims.audio = 768
    with self.assertRaisesRegex(InputError, "official layout"):
      parse._check_parser(inference.Parser(config, self.parser.params))


class VideoProgressTest(absltest.TestCase):

  def test_one_line_per_video_with_an_eta_that_leaves_the_compiling_first_video_out(self):
    lines = []
    clock = iter(
        [0.0, 50.0, 60.0, 70.0]
    )  # construction, then three videos: 50 s (compiling), 10 s, 10 s
    with mock.patch.object(reporting.time, "perf_counter", lambda: next(clock)):
      progress = reporting.VideoProgress(4, lines.append)
      progress.done("a.mp4", "1 window, 2 events")
      progress.done("b.mp4", "2 windows, 0 events")
      progress.total -= 1  # a video done in an earlier run
      progress.done("c.mp4", "1 window, 1 event")
    self.assertEqual(
        lines,
        [
            "video 1/4 a.mp4: 1 window, 2 events in 50.0 s (with compiling the networks); ETA 0:02:30",
            "video 2/4 b.mp4: 2 windows, 0 events in 10.0 s; ETA 0:00:20",
            "video 3/3 c.mp4: 1 window, 1 event in 10.0 s",
        ],
    )


if __name__ == "__main__":
  absltest.main()
