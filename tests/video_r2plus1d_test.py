"""avvp_jax.video.r2plus1d (R(2+1)D-18) against a plain-torch transcription of torchvision's `r2plus1d_18`,
the official frame-to-clip grouping, and `image_transforms.r2plus1d_transform` against its recipe.

The torch oracle is written from torchvision's `torchvision/models/video/resnet.py` (`Conv2Plus1D`,
`BasicBlock`, `R2Plus1dStem`, `VideoResNet._make_layer`, layers [2, 2, 2, 2]) with torch.nn layers only, so
its `state_dict()` has torchvision's keys; it is cut as the official `scripts/extract_3D_feat.py` cuts it,
`nn.Sequential(*list(model.children())[:-1])` then `.squeeze()`. Random weights and BatchNorm statistics,
eval mode, one [1, 3, 8, 32, 32] clip (the real 112x112 size is for bench). The transform oracle is the
recipe of the official `scripts/utils.py` (`Resize((112, 112))`, `ToTensor`, `Normalize`) with the Pillow
resampling transcription of tests/video_resnet_test.py. torch is the `parity` extra, required here.
"""

from absl.testing import absltest
import jax
import numpy as np
import torch
from torch import nn

from avvp_jax.errors import InputError
from avvp_jax.video import image_transforms
from avvp_jax.video import r2plus1d
from avvp_jax.video import resnet
import video_resnet_test as shared  # the same randomiser and Pillow transcription


class Conv2Plus1D(nn.Sequential):

  def __init__(self, in_planes, out_planes, midplanes, stride=1, padding=1):
    super().__init__(
        nn.Conv3d(
            in_planes,
            midplanes,
            kernel_size=(1, 3, 3),
            stride=(1, stride, stride),
            padding=(0, padding, padding),
            bias=False,
        ),
        nn.BatchNorm3d(midplanes),
        nn.ReLU(inplace=True),
        nn.Conv3d(
            midplanes,
            out_planes,
            kernel_size=(3, 1, 1),
            stride=(stride, 1, 1),
            padding=(padding, 0, 0),
            bias=False,
        ),
    )


class BasicBlock(nn.Module):

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    midplanes = (inplanes * planes * 3 * 3 * 3) // (inplanes * 3 * 3 + 3 * planes)
    super().__init__()
    self.conv1 = nn.Sequential(
        Conv2Plus1D(inplanes, planes, midplanes, stride),
        nn.BatchNorm3d(planes),
        nn.ReLU(inplace=True),
    )
    self.conv2 = nn.Sequential(Conv2Plus1D(planes, planes, midplanes), nn.BatchNorm3d(planes))
    self.relu = nn.ReLU(inplace=True)
    self.downsample = downsample

  def forward(self, x):
    residual = x if self.downsample is None else self.downsample(x)
    return self.relu(self.conv2(self.conv1(x)) + residual)


class R2Plus1dStem(nn.Sequential):

  def __init__(self):
    super().__init__(
        nn.Conv3d(3, 45, kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
        nn.BatchNorm3d(45),
        nn.ReLU(inplace=True),
        nn.Conv3d(45, 64, kernel_size=(3, 1, 1), stride=(1, 1, 1), padding=(1, 0, 0), bias=False),
        nn.BatchNorm3d(64),
        nn.ReLU(inplace=True),
    )


class VideoResNet(nn.Module):

  def __init__(self, layers=(2, 2, 2, 2), num_classes=400):
    super().__init__()
    self.inplanes = 64
    self.stem = R2Plus1dStem()
    self.layer1 = self._make_layer(64, layers[0], stride=1)
    self.layer2 = self._make_layer(128, layers[1], stride=2)
    self.layer3 = self._make_layer(256, layers[2], stride=2)
    self.layer4 = self._make_layer(512, layers[3], stride=2)
    self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
    self.fc = nn.Linear(512, num_classes)

  def _make_layer(self, planes, blocks, stride=1):
    downsample = None
    if stride != 1 or self.inplanes != planes:
      downsample = nn.Sequential(
          nn.Conv3d(self.inplanes, planes, kernel_size=1, stride=(stride,) * 3, bias=False),
          nn.BatchNorm3d(planes),
      )
    layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
    self.inplanes = planes
    layers += [BasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def avvp_recipe(frame: np.ndarray) -> list[np.ndarray]:
  """The official scripts/utils.py TransformImage on one `[H, W, 3]` frame, per Pillow pass order."""
  resized = [frame] if frame.shape[:2] == (112, 112) else shared.pillow_resizes(frame, 112, 112)
  return [
      shared.recipe_normalize(r, [0.43216, 0.394666, 0.37645], [0.22803, 0.22145, 0.216989])
      for r in resized
  ]


class R2Plus1DTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    torch.manual_seed(0)
    cls.torch_model = shared.randomize(VideoResNet(), seed=5)
    cls.state_dict = shared.numpy_state_dict(cls.torch_model)

  def test_matches_torchvision_transcription(self):
    variables = r2plus1d.params_from_state_dict(self.state_dict)
    clips = np.random.RandomState(1).randn(1, 8, 32, 32, 3).astype(np.float32)
    out = np.asarray(r2plus1d.embed(variables, clips))
    body = nn.Sequential(*list(self.torch_model.children())[:-1])  # the official cut
    with torch.no_grad():
      expected = body(torch.from_numpy(clips.transpose(0, 4, 1, 2, 3))).squeeze().numpy()
    self.assertEqual(out.shape, (1, r2plus1d.FEATURES))
    self.assertGreater(np.abs(expected).max(), 0.1)
    np.testing.assert_allclose(out[0], expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())

  def test_batch_rows_are_independent(self):
    variables = r2plus1d.params_from_state_dict(self.state_dict)
    clips = np.random.RandomState(2).randn(2, 8, 32, 32, 3).astype(np.float32)
    batched = np.asarray(r2plus1d.embed(variables, clips))
    alone = np.asarray(r2plus1d.embed(variables, clips[1:]))
    self.assertEqual(batched.shape, (2, r2plus1d.FEATURES))
    np.testing.assert_allclose(batched[1:], alone, rtol=1e-5, atol=1e-6)

  def test_state_dict_has_every_torchvision_parameter(self):
    params = sum(p.numel() for p in self.torch_model.parameters())
    self.assertEqual(
        params, 31_505_325
    )  # torchvision's R2Plus1D_18_Weights.KINETICS400_V1 num_params
    self.assertEqual(r2plus1d.midplanes(64, 64), 144)
    self.assertEqual(
        r2plus1d.midplanes(64, 128), 230
    )  # layer2.0: both convs take the block's in width
    converted = r2plus1d.params_from_state_dict(self.state_dict)
    np.testing.assert_array_equal(
        converted["params"]["layer2_0"]["conv2_0_0"]["kernel"],
        self.state_dict["layer2.0.conv2.0.0.weight"].transpose(2, 3, 4, 1, 0),
    )
    self.assertEqual(
        converted["params"]["layer2_0"]["conv2_0_0"]["kernel"].shape, (1, 3, 3, 128, 230)
    )
    np.testing.assert_array_equal(
        converted["batch_stats"]["stem_4"]["mean"], self.state_dict["stem.4.running_mean"]
    )

  def test_bad_state_dicts_are_one_line_errors(self):
    missing = dict(self.state_dict)
    del missing["stem.3.weight"]
    extra = dict(self.state_dict, **{"layer4.2.conv1.0.0.weight": np.zeros((1,), np.float32)})
    misshaped = dict(self.state_dict)
    misshaped["layer3.1.conv1.0.3.weight"] = np.zeros((256, 576, 1, 1, 3), np.float32)
    for state_dict, culprit in [
        (missing, "stem.3.weight"),
        (extra, "layer4.2.conv1.0.0.weight"),
        (misshaped, "layer3.1.conv1.0.3.weight"),
    ]:
      with self.assertRaisesRegex(InputError, culprit) as raised:
        r2plus1d.params_from_state_dict(state_dict)
      self.assertNotIn("\n", str(raised.exception))

  def test_init_params(self):
    variables = r2plus1d.init_params(jax.random.key(0))
    expected = jax.tree.map(lambda x: x.shape, r2plus1d.template())
    self.assertEqual(jax.tree.map(lambda x: x.shape, variables), expected)
    kernel = variables["params"]["layer1_0"]["conv1_0_0"]["kernel"]  # [1, 3, 3, 64, 144]
    self.assertAlmostEqual(kernel.std(), np.sqrt(2.0 / (9 * 144)), delta=0.02 * kernel.std())
    again = r2plus1d.init_params(jax.random.key(0))
    jax.tree.map(np.testing.assert_array_equal, variables, again)
    small = {"params": {"conv": {"kernel": jax.ShapeDtypeStruct((1, 3, 3, 64, 144), np.float32)}}}
    same = resnet.random_variables(small, jax.random.key(0))["params"]["conv"]["kernel"]
    other = resnet.random_variables(small, jax.random.key(1))["params"]["conv"]["kernel"]
    np.testing.assert_array_equal(
        same, kernel
    )  # the first kernel drawn: the same key, the same draw
    self.assertFalse(np.array_equal(kernel, other))
    out = r2plus1d.embed(variables, np.ones((1, 8, 32, 32, 3), np.float32))
    self.assertTrue(np.isfinite(np.asarray(out)).all())


class ClipsAndTransformTest(absltest.TestCase):

  def test_clips_from_frames_is_the_official_grouping(self):
    frames = np.random.RandomState(0).randn(80, 4, 5, 3).astype(np.float32)
    official = np.zeros((80 // 8, 3, 8, 4, 5), np.float32)  # images[i // 8, :, i % 8] = img (CHW)
    for i, frame in enumerate(frames):
      official[i // 8, :, i % 8] = frame.transpose(2, 0, 1)
    np.testing.assert_array_equal(
        r2plus1d.clips_from_frames(frames), official.transpose(0, 2, 3, 4, 1)
    )
    with self.assertRaisesRegex(InputError, "multiple of 8"):
      r2plus1d.clips_from_frames(frames[:79])

  def test_transform_matches_recipe(self):
    rng = np.random.RandomState(0)
    # LLP's 320x240 frames (aspect not kept), a tiny one (upsampled), a portrait, and 112x112 (no resize)
    for h, w in [(240, 320), (37, 53), (300, 170), (112, 112)]:
      frames = rng.randint(0, 256, (2, h, w, 3)).astype(np.uint8)
      out = image_transforms.r2plus1d_transform(frames)
      self.assertEqual(out.shape, (2, 112, 112, 3))
      self.assertEqual(out.dtype, np.float32)
      for frame, image in zip(frames, out):
        self.assertLess(shared.closest(image, avvp_recipe(frame)), 1e-6, (h, w))
    self.assertIs(r2plus1d.r2plus1d_transform, image_transforms.r2plus1d_transform)
    self.assertEqual(
        image_transforms.r2plus1d_transform(np.zeros((0, 9, 9, 3), np.uint8)).shape[0], 0
    )
    with self.assertRaisesRegex(InputError, "uint8 RGB frames"):
      image_transforms.r2plus1d_transform(np.zeros((1, 9, 9, 4), np.uint8))


if __name__ == "__main__":
  absltest.main()
