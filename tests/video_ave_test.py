"""AVE features from videos: `video.vgg19` against a plain-torch transcription of torchvision's `vgg19`,
`video.ave_frames` (frame selection, resize, normalisation) against numpy / Python transcriptions of the
official script, and `video.ave_extract.extract_folder` writing files the AVE task's readers load.

The torch oracle is written from torchvision's `torchvision/models/vgg.py` (`make_layers(cfgs["E"])`: 3x3
convolutions with padding 1 and ReLU, a 2x2/2 max pool closing each block, the classifier after an adaptive
average pool) with torch.nn layers only, so its `state_dict()` has torchvision's keys. Random weights (torch's
own init, biases drawn too); eval mode.

The selection oracle is the official `video_frame_sample` as a Python loop; the resize oracle is cv2's
INTER_LINEAR rule per output pixel (source coordinate (d + 0.5) * scale - 0.5, clamped taps at the borders),
as a Python loop over pixels.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from absl.testing import absltest
import h5py
import jax
import numpy as np
import torch
from torch import nn

from avvp_jax import checkpoint
from avvp_jax import state as state_lib
from avvp_jax import train
from avvp_jax.errors import InputError
from avvp_jax.tasks.ave import annotations
from avvp_jax.tasks.ave import features as ave_features
from avvp_jax.video import ave_extract
from avvp_jax.video import ave_frames
from avvp_jax.video import ave_parse
from avvp_jax.video import parse as llp_parse
from avvp_jax.video import synthetic
from avvp_jax.video import vgg19

NARROW = dict(widths=(8, 8, 16, 16, 32))
# A cheap VGG with AVE's output width (one convolution per block): the extraction tests' network.
SMOKE = dict(blocks=(1, 1, 1, 1, 1), widths=(4, 4, 8, 8, 512))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from configs import han  # pylint: disable=g-import-not-at-top,wrong-import-position
from configs import psp  # pylint: disable=g-import-not-at-top,wrong-import-position


class TorchVGG(nn.Module):
  """torchvision's VGG (cfg "E" = VGG-19 for blocks (2, 2, 4, 4, 4)), transcribed."""

  def __init__(self, blocks=vgg19.BLOCKS, widths=vgg19.WIDTHS):
    super().__init__()
    layers, in_channels = [], 3
    for convs, width in zip(blocks, widths):
      for _ in range(convs):
        layers += [nn.Conv2d(in_channels, width, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
        in_channels = width
      layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    self.features = nn.Sequential(*layers)
    self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    self.classifier = nn.Sequential(
        nn.Linear(in_channels * 49, 16), nn.ReLU(True), nn.Linear(16, 10)
    )

  def pool5(self, x):
    return self.features(x)


def _torch_model(seed, **variant):
  torch.manual_seed(seed)
  model = TorchVGG(**variant).eval()
  with torch.no_grad():
    for module in model.features:
      if isinstance(module, nn.Conv2d):
        module.bias.normal_(0.0, 0.1)
  return model


def _state_dict(model):
  return {key: value.detach().numpy() for key, value in model.state_dict().items()}


def _relative_error(got, want):
  return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


class VGG19Test(absltest.TestCase):

  def _check(self, variant, size, seed):
    model = _torch_model(seed, **variant)
    images = np.random.default_rng(seed).standard_normal((2, size, size, 3)).astype(np.float32)
    with torch.no_grad():
      want = model.pool5(torch.from_numpy(images).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    module = vgg19.VGG(**variant)
    variables = vgg19.params_from_state_dict(_state_dict(model), module)
    got = np.asarray(vgg19.embed(variables, images, module=module))
    self.assertEqual(
        got.shape, (2, size // 32, size // 32, variant.get("widths", vgg19.WIDTHS)[-1])
    )
    self.assertLess(_relative_error(got, want), 1e-5)

  def test_narrow_variant_matches_torch(self):
    self._check(NARROW, 64, seed=0)

  def test_vgg19_matches_torch(self):
    """The real-weights path: a torchvision-shaped VGG-19 state_dict (random init) converted at load time."""
    self._check({}, 32, seed=1)

  def test_torch_layer_indices(self):
    self.assertEqual(
        vgg19.torch_layer_indices(),
        [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34],
    )

  def test_converter_errors_name_the_key(self):
    state = _state_dict(_torch_model(0, **NARROW))
    module = vgg19.VGG(**NARROW)
    missing = dict(state)
    del missing["features.28.weight"]
    with self.assertRaisesRegex(InputError, r"no key 'features.28.weight'"):
      vgg19.params_from_state_dict(missing, module)
    extra = dict(state, **{"features.40.weight": np.zeros(3, np.float32)})
    with self.assertRaisesRegex(InputError, r"unexpected key 'features.40.weight'"):
      vgg19.params_from_state_dict(extra, module)
    with self.assertRaisesRegex(InputError, r"'features.0.bias' has shape \(8,\), expected \(4,\)"):
      vgg19.params_from_state_dict(state, vgg19.VGG(widths=(4, 8, 16, 16, 32)))

  def test_random_init_statistics(self):
    variables = vgg19.init_params(jax.random.key(3), vgg19.VGG(**NARROW))
    kernel = np.asarray(variables["params"]["features_2"]["kernel"])  # [3, 3, 8, 8]
    self.assertAlmostEqual(float(kernel.std()), np.sqrt(2.0 / (9 * 8)), delta=0.03)
    self.assertTrue(np.all(np.asarray(variables["params"]["features_2"]["bias"]) == 0))


def official_video_frame_sample(frame_interval, video_length, sample_num):
  """AVE-ECCV18's `video_frame_sample`, transcribed."""
  num = []
  for l in range(video_length):
    for i in range(sample_num):
      num.append(int(l * frame_interval + (i * 1.0 / sample_num) * frame_interval))
  return num


def cv2_linear_oracle(image, height, width):
  """cv2.resize INTER_LINEAR per output pixel, in float64, rounded to uint8."""
  in_h, in_w = image.shape[:2]

  def taps(d, in_size, out_size):
    f = np.float32((d + 0.5) * (1.0 / (out_size / in_size)) - 0.5)  # cv2's float fx
    s = int(np.floor(f))
    f = float(f - np.float32(s))
    if s < 0:
      s, f = 0, 0.0
    if s >= in_size - 1:
      s, f = in_size - 1, 0.0
    return s, min(s + 1, in_size - 1), f

  out = np.zeros((height, width, image.shape[2]), np.uint8)
  for y in range(height):
    y0, y1, fy = taps(y, in_h, height)
    for x in range(width):
      x0, x1, fx = taps(x, in_w, width)
      top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
      bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
      out[y, x] = np.clip(np.rint(top * (1 - fy) + bottom * fy), 0, 255)
  return out


class AveFramesTest(absltest.TestCase):

  def test_selection_matches_the_official_expression(self):
    for n in (251, 300, 250, 160, 99, 10, 1007):
      got = ave_frames.segment_frame_indices(n)
      want = official_video_frame_sample(int(n / 10), 10, 16)
      np.testing.assert_array_equal(got.ravel(), want, err_msg=f"n={n}")
      self.assertLess(got.max(), n)

  def test_selection_hand_worked(self):
    # 251 frames: interval 25; second 0 takes int(25 * i / 16), second 1 starts at 25.
    got = ave_frames.segment_frame_indices(251)
    np.testing.assert_array_equal(got[0], [0, 1, 3, 4, 6, 7, 9, 10, 12, 14, 15, 17, 18, 20, 21, 23])
    self.assertEqual(got[1, 0], 25)
    self.assertEqual(got[9, 15], 248)

  def test_short_window_keeps_frame_times(self):
    got = ave_frames.segment_frame_indices(50, frame_interval=25)  # 2 s at 25 fps
    np.testing.assert_array_equal(got[:2].ravel(), official_video_frame_sample(25, 2, 16))
    self.assertTrue(np.all(got[2:] == 49))

  def test_resize_matches_cv2_rule(self):
    rng = np.random.default_rng(0)
    for (h, w), (oh, ow) in (((37, 53), (20, 30)), ((7, 5), (16, 12)), ((30, 40), (30, 40))):
      image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
      got = ave_frames.cv2_linear_resize(image[None], oh, ow)[0]
      np.testing.assert_array_equal(got, cv2_linear_oracle(image.astype(np.float64), oh, ow))

  def test_normalisations(self):
    images = np.random.default_rng(1).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    x = images.astype(np.float64)
    caffe = ave_frames.normalize(images, "caffe")
    want = x[..., ::-1] - np.array([103.939, 116.779, 123.68])
    np.testing.assert_allclose(caffe, want, rtol=0, atol=1e-4)
    torchvision = ave_frames.normalize(images, "torchvision")
    want = (x / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(torchvision, want, rtol=0, atol=1e-5)
    with self.assertRaisesRegex(InputError, "unknown VGG-19 preprocessing 'keras'"):
      ave_frames.normalize(images, "keras")

  def test_transform_is_resize_then_normalise(self):
    frames = np.random.default_rng(2).integers(0, 256, (1, 50, 70, 3), dtype=np.uint8)
    got = ave_frames.vgg_transform(frames)
    self.assertEqual(got.shape, (1, 224, 224, 3))
    resized = cv2_linear_oracle(frames[0].astype(np.float64), 224, 224)
    np.testing.assert_allclose(got[0], ave_frames.normalize(resized[None])[0], atol=1e-6)


class AveExtractTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.folder = tempfile.mkdtemp(prefix="avvp_jax_ave_videos_")
    # SYNTHETIC: 12 s at 10 fps (two windows: 10 s and 2 s) and 3 s at 8 fps without audio (skipped).
    synthetic.make_video(os.path.join(cls.folder, "bars.mp4"), seconds=12, fps=10)
    synthetic.make_video(os.path.join(cls.folder, "mute.mp4"), seconds=3, fps=8, audio=False)
    cls.extractor = ave_extract.AveExtractor("random", module=vgg19.VGG(**SMOKE), frame_batch=160)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.folder, ignore_errors=True)
    super().tearDownClass()

  def test_windows_and_frames(self):
    windows = list(ave_frames.iter_native_windows(os.path.join(self.folder, "bars.mp4")))
    self.assertEqual([w.frames.shape[0] for w in windows], [100, 20])
    self.assertEqual([w.frame_interval for w in windows], [None, 10])
    self.assertEqual([int(w.segment_mask.sum()) for w in windows], [10, 2])

  def test_extract_folder_writes_what_the_ave_readers_load(self):
    out = tempfile.mkdtemp(prefix="avvp_jax_ave_features_")
    self.addCleanup(shutil.rmtree, out, ignore_errors=True)
    summary = ave_extract.extract_folder(self.folder, out, self.extractor, log=lambda _: None)
    self.assertEqual(summary.clips_written, 2)
    self.assertIn("mute.mp4", summary.failures)
    readers = ave_features.open_features(out)
    try:
      self.assertEqual(len(readers["audio"]), 2)
      self.assertEqual(readers["visual"].dtype, np.float32)
      visual = readers["visual"].read(0)
    finally:
      for reader in readers.values():
        reader.close()
    self.assertEqual(visual.shape, (10, 7, 7, 512))
    np.testing.assert_array_equal(annotations.load_order("test", out, 2), [0, 1])
    self.assertEqual(annotations.load_order("train", out, 2).size, 0)
    with open(os.path.join(out, "clips.txt")) as f:
      self.assertEqual(f.read().split(), ["bars__0_10", "bars__10_20"])
    # Second s's map is the mean of the maps of its 16 frames (an independent recomputation).
    window = next(ave_frames.iter_native_windows(os.path.join(self.folder, "bars.mp4")))
    frames = window.frames[official_video_frame_sample(10, 10, 16)[16:32]]
    want = self.extractor.maps(frames).astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(visual[1], want, rtol=1e-5, atol=1e-6)
    with h5py.File(os.path.join(out, "audio_feature.h5")) as h5:
      self.assertEqual(h5["avadataset"].shape, (2, 10, 128))

  def test_folder_without_videos_is_one_line(self):
    empty = tempfile.mkdtemp(prefix="avvp_jax_ave_empty_")
    self.addCleanup(shutil.rmtree, empty, ignore_errors=True)
    with self.assertRaisesRegex(InputError, "holds no video file") as caught:
      ave_extract.extract_folder(empty, os.path.join(empty, "out"), self.extractor)
    self.assertNotIn("\n", str(caught.exception))


class AveParseTest(absltest.TestCase):
  """parse_video with a tiny PSP localizer trained here (configs/psp.py:tiny) on a SYNTHETIC video."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp(prefix="avvp_jax_ave_parse_")
    cls.workdir = os.path.join(cls.root, "psp_tiny")
    train.train_and_evaluate(state_lib.resolve_config(psp.get_config("tiny")), cls.workdir)
    cls.video = synthetic.make_video(os.path.join(cls.root, "bars.mp4"), seconds=12, fps=10)
    cls.extractor = ave_extract.AveExtractor("random", module=vgg19.VGG(**SMOKE))
    # An LLP model's checkpoint: its config is what the AVE path reads first.
    cls.llp = checkpoint.save_params_checkpoint(
        os.path.join(cls.root, "han_export"),
        state_lib.resolve_config(han.get_config("tiny")),
        {"w": np.zeros((1, 2), np.float32)},
    )

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()

  def test_writes_json_events_and_a_png(self):
    plot = os.path.join(self.root, "timeline.png")
    records = ave_parse.parse_video(self.workdir, [self.video], extractor=self.extractor, plot=plot)
    out = llp_parse.write_records(records, os.path.join(self.root, "events.json"))
    with open(out) as f:
      (record,) = json.load(f)
    self.assertEqual(record["num_windows"], 2)
    self.assertEqual([w["valid_seconds"] for w in record["windows"]], [10, 2])
    self.assertIn("RANDOM WEIGHTS", record["features"])
    self.assertEqual(record["provenance"]["task"], "ave")
    labels = [label for w in record["windows"] for label in w["segment_labels"]]
    self.assertEqual(labels[12:], [None] * 8)  # past the video's end
    # The events are the runs of each second's event class (an independent re-reading of the windows).
    runs = []
    for second, label in enumerate(labels[:12]):
      if runs and runs[-1][0] == label and runs[-1][2] == second:
        runs[-1][2] = second + 1
      else:
        runs.append([label, second, second + 1])
    want = [(l, a, b) for l, a, b in runs if l != "background"]
    got = [(e["label"], e["onset"], e["offset"]) for e in record["events"]]
    self.assertEqual(got, want)
    self.assertTrue(all(e["modality"] == "audio-visual" for e in record["events"]))
    with open(plot, "rb") as f:
      self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

  def test_video_events_hand_worked(self):
    background = annotations.BACKGROUND
    classes = np.array([[3, 3, background, 5, 5, 5, 5, 5, 5, 5], [5, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    mask = np.array([[True] * 10, [True, True, True] + [False] * 7])
    events = ave_parse.video_events(classes, mask)
    self.assertEqual(
        [(e["label"], e["onset"], e["offset"]) for e in events],
        [
            (annotations.CLASSES[3], 0, 2),
            (annotations.CLASSES[5], 3, 11),  # across the window boundary: one event
            (annotations.CLASSES[0], 11, 13),  # cut at the video's end
        ],
    )
    prob = np.full((2, 10, 29), 0.1, np.float32)
    prob[0, 0, 3], prob[0, 1, 3] = 0.5, 0.7
    self.assertAlmostEqual(ave_parse.video_events(classes, mask, prob)[0]["score"], 0.6, places=6)

  def test_llp_checkpoint_on_the_ave_path_is_one_line(self):
    with self.assertRaisesRegex(InputError, "holds an LLP model .*not an AVE localizer") as caught:
      ave_parse.parse_video(self.llp, [self.video], extractor=self.extractor)
    self.assertNotIn("\n", str(caught.exception))

  def test_ave_checkpoint_on_the_llp_path_is_one_line(self):
    with self.assertRaisesRegex(InputError, "holds an AVE localizer .*not an LLP parser") as caught:
      llp_parse.parse_video(self.workdir, [self.video])
    self.assertNotIn("\n", str(caught.exception))

  def test_launcher_refuses_llp_thresholds_for_an_ave_checkpoint(self):
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "launch", "parse_video.py"),
            f"--checkpoint={self.workdir}",
            f"--videos={self.video}",
            f"--out={os.path.join(self.root, 'x.json')}",
            "--class_thresholds=Bus=0.3",
            "--weights=random",
        ],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
        capture_output=True,
        text=True,
        timeout=300,
    )
    self.assertEqual(result.returncode, 2)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    self.assertLen(errors, 1)
    self.assertIn("is an AVE localizer", errors[0])


if __name__ == "__main__":
  absltest.main()
