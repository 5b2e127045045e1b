"""avvp_jax.video.resnet (ResNet-152) against a plain-torch transcription of torchvision's `resnet152`, and
`image_transforms.resnet_transform` against a numpy transcription of its recipe.

The torch oracle below is written from torchvision's `torchvision/models/resnet.py` (`Bottleneck`, `ResNet`,
`_make_layer`, layers [3, 8, 36, 3]) with torch.nn layers only (torchvision is not a dependency), so its
`state_dict()` has torchvision's keys; random weights and non-trivial BatchNorm statistics, eval mode. The
full-depth network runs on ONE 64x64 image (ResNet-152 at 224x224 is ~11 GFLOP; real sizes are for bench).

The transform oracle transcribes Pillow's bilinear resampling for 8-bit images (`libImaging/Resample.c`:
triangle filter stretched by the scale when shrinking, coefficients normalised then fixed-point with 22
bits, one horizontal and one vertical pass, each rounded and clipped to uint8), torchvision's `Resize(256)`
size rule and `CenterCrop(224)` origin, and `ToTensor` + `Normalize` in float64. Pillow decides itself
which pass comes first (it varies with the sizes across versions), so the oracle computes both orders
and the transform must match one of them. torch is the `parity` extra, required here.
"""

import functools
import math

from absl.testing import absltest
import jax
import numpy as np
import torch
from torch import nn

from avvp_jax.errors import InputError
from avvp_jax.video import image_transforms
from avvp_jax.video import resnet

PRECISION_BITS = 32 - 8 - 2  # Pillow's Resample.c for 8-bit images


# --- the torch oracle (torchvision's ResNet-152, transcribed) ------------------------------------------


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, stride=1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, stride=1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.relu = nn.ReLU(inplace=True)
    self.downsample = downsample

  def forward(self, x):
    identity = x
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    if self.downsample is not None:
      identity = self.downsample(x)
    return self.relu(out + identity)


class TorchResNet(nn.Module):
  """torchvision's ResNet with Bottleneck blocks; `forward` stops at the average pool (`fc` is kept only so
  the state_dict has it, as torchvision's file does)."""

  def __init__(self, layers=(3, 8, 36, 3)):
    super().__init__()
    self.inplanes = 64
    self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.relu = nn.ReLU(inplace=True)
    self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    self.layer1 = self._make_layer(64, layers[0])
    self.layer2 = self._make_layer(128, layers[1], stride=2)
    self.layer3 = self._make_layer(256, layers[2], stride=2)
    self.layer4 = self._make_layer(512, layers[3], stride=2)
    self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    self.fc = nn.Linear(512 * 4, 1000)

  def _make_layer(self, planes, blocks, stride=1):
    downsample = None
    if stride != 1 or self.inplanes != planes * 4:
      downsample = nn.Sequential(
          nn.Conv2d(self.inplanes, planes * 4, kernel_size=1, stride=stride, bias=False),
          nn.BatchNorm2d(planes * 4),
      )
    layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
    self.inplanes = planes * 4
    layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)

  def forward(self, x):
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return torch.flatten(self.avgpool(x), 1)


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
  """New draws for every weight and BatchNorm statistic (none left at a default a converter could get right
  by chance): conv weights normal with std 1/sqrt(fan_in), BatchNorm scale 1 +- 0.2, bias +-0.2, running
  mean +-0.2, running variance in [0.5, 1.5]. Returns the model in eval mode."""
  generator = torch.Generator().manual_seed(seed)
  uniform = lambda n, low, high: low + (high - low) * torch.rand(n, generator=generator)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, (nn.Conv2d, nn.Conv3d)):
        fan_in = module.weight[0].numel()
        module.weight.copy_(
            torch.randn(module.weight.shape, generator=generator) / math.sqrt(fan_in)
        )
      elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm3d)):
        n = module.num_features
        module.weight.copy_(uniform(n, 0.8, 1.2))
        module.bias.copy_(uniform(n, -0.2, 0.2))
        module.running_mean.copy_(uniform(n, -0.2, 0.2))
        module.running_var.copy_(uniform(n, 0.5, 1.5))
  return model.eval()


def numpy_state_dict(model: nn.Module) -> dict[str, np.ndarray]:
  return {key: value.numpy() for key, value in model.state_dict().items()}


# --- the transform oracle (Pillow's bilinear resize, torchvision's Resize / CenterCrop) -----------------


@functools.lru_cache(maxsize=None)
def pillow_bilinear_weights(in_size: int, out_size: int) -> np.ndarray:
  """`[out_size, in_size]` int64 fixed-point weights of Pillow's bilinear filter (precompute_coeffs +
  normalize_coeffs_8bpc)."""
  scale = in_size / out_size
  filterscale = max(scale, 1.0)
  support = 1.0 * filterscale  # the triangle's support is 1
  weights = np.zeros((out_size, in_size), np.int64)
  for xx in range(out_size):
    center = (xx + 0.5) * scale
    xmin = max(int(center - support + 0.5), 0)
    xmax = min(int(center + support + 0.5), in_size)
    x = np.arange(xmin, xmax)
    w = np.maximum(1.0 - np.abs((x - center + 0.5) / filterscale), 0.0)
    w /= w.sum()
    weights[xx, xmin:xmax] = np.trunc(w * (1 << PRECISION_BITS) + np.where(w < 0, -0.5, 0.5))
  return weights


def pillow_pass(image: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
  """One resampling pass along `axis` (0: rows, 1: columns) of a `[H, W, 3]` uint8 image."""
  acc = np.moveaxis(np.tensordot(image.astype(np.int64), weights, axes=([axis], [1])), -1, axis)
  return np.clip((acc + (1 << (PRECISION_BITS - 1))) >> PRECISION_BITS, 0, 255).astype(np.uint8)


def pillow_resizes(image: np.ndarray, height: int, width: int) -> list[np.ndarray]:
  """Both pass orders of Pillow's bilinear resize of `[H, W, 3]` uint8 to `[height, width, 3]`."""
  h, w = image.shape[:2]
  horizontal = lambda x: x if width == w else pillow_pass(x, pillow_bilinear_weights(w, width), 1)
  vertical = lambda x: x if height == h else pillow_pass(x, pillow_bilinear_weights(h, height), 0)
  return [vertical(horizontal(image)), horizontal(vertical(image))]


def recipe_normalize(image: np.ndarray, mean, std) -> np.ndarray:
  return (image.astype(np.float64) / 255.0 - np.asarray(mean)) / np.asarray(std)


def cadene_recipe(frame: np.ndarray) -> list[np.ndarray]:
  """Cadene's TransformImage for resnet152 on one `[H, W, 3]` frame, per Pillow pass order: Resize(256) of
  the short side (long side truncated), CenterCrop(224) at round((size - 224) / 2), ToTensor, Normalize.
  """
  h, w = frame.shape[:2]
  size = int(math.floor(224 / 0.875))
  if w <= h:
    new_h, new_w = int(size * h / w), size
  else:
    new_h, new_w = size, int(size * w / h)
  top, left = int(round((new_h - 224) / 2.0)), int(round((new_w - 224) / 2.0))
  resized = [frame] if (new_h, new_w) == (h, w) else pillow_resizes(frame, new_h, new_w)
  return [
      recipe_normalize(
          r[top : top + 224, left : left + 224], [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
      )
      for r in resized
  ]


def closest(output: np.ndarray, candidates: list[np.ndarray]) -> float:
  return min(float(np.abs(output - c).max()) for c in candidates)


class ResNetTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    torch.manual_seed(0)
    cls.torch_model = randomize(TorchResNet())
    cls.state_dict = numpy_state_dict(cls.torch_model)

  def test_matches_torchvision_transcription_full_depth(self):
    variables = resnet.params_from_state_dict(self.state_dict)
    images = np.random.RandomState(1).randn(1, 64, 64, 3).astype(np.float32)
    out = np.asarray(resnet.embed(variables, images))
    with torch.no_grad():
      expected = self.torch_model(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
    self.assertEqual(out.shape, (1, resnet.FEATURES))
    self.assertGreater(np.abs(expected).max(), 0.1)  # not a dead network
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())

  def test_state_dict_has_every_torchvision_parameter(self):
    params = sum(p.numel() for p in self.torch_model.parameters())
    self.assertEqual(params, 60_192_808)  # torchvision's ResNet152_Weights.IMAGENET1K_V1 num_params
    converted = resnet.params_from_state_dict(self.state_dict)
    flat = jax.tree_util.tree_leaves_with_path(converted)
    wanted = [k for k in self.state_dict if not k.startswith("fc.") and "num_batches" not in k]
    self.assertLen(flat, len(wanted))  # one variable per key: 155 BatchNorms x 4 + 155 convs
    kernel = converted["params"]["layer3_5"]["conv2"]["kernel"]
    np.testing.assert_array_equal(
        kernel, self.state_dict["layer3.5.conv2.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(
        converted["batch_stats"]["layer2_0"]["downsample_1"]["var"],
        self.state_dict["layer2.0.downsample.1.running_var"],
    )

  def test_cadene_last_linear_and_no_counters_accepted(self):
    renamed = {
        k.replace("fc.", "last_linear.", 1) if k.startswith("fc.") else k: v
        for k, v in self.state_dict.items()
        if not k.endswith("num_batches_tracked")
    }
    a = resnet.params_from_state_dict(renamed)
    b = resnet.params_from_state_dict(self.state_dict)
    jax.tree.map(np.testing.assert_array_equal, a, b)

  def test_bad_state_dicts_are_one_line_errors(self):
    missing = dict(self.state_dict)
    del missing["layer3.17.bn2.running_mean"]
    extra = dict(self.state_dict, **{"layer5.0.conv1.weight": np.zeros((1, 1, 1, 1), np.float32)})
    misshaped = dict(self.state_dict)
    misshaped["layer1.0.conv2.weight"] = np.zeros((64, 64, 1, 3), np.float32)
    cases = [
        (missing, "layer3.17.bn2.running_mean"),
        (extra, "layer5.0.conv1.weight"),
        (misshaped, "layer1.0.conv2.weight"),
        ([1, 2], "state_dict"),
    ]
    for state_dict, culprit in cases:
      with self.assertRaisesRegex(InputError, culprit) as raised:
        resnet.params_from_state_dict(state_dict)
      self.assertNotIn("\n", str(raised.exception))

  def test_init_params_is_torchvisions_init(self):
    variables = resnet.init_params(jax.random.key(3))
    expected = jax.tree.map(lambda x: x.shape, resnet.template())
    self.assertEqual(jax.tree.map(lambda x: x.shape, variables), expected)
    kernel = variables["params"]["layer3_0"]["conv2"]["kernel"]  # [3, 3, 256, 256]
    self.assertAlmostEqual(kernel.std(), math.sqrt(2.0 / (9 * 256)), delta=0.01 * kernel.std())
    self.assertAlmostEqual(kernel.mean(), 0.0, delta=0.01 * kernel.std())
    np.testing.assert_array_equal(variables["params"]["bn1"]["scale"], np.ones(64))
    np.testing.assert_array_equal(variables["batch_stats"]["layer4_2"]["bn3"]["var"], np.ones(2048))
    np.testing.assert_array_equal(variables["batch_stats"]["bn1"]["mean"], np.zeros(64))
    # (the same draw for the same key, another for another: tests/video_r2plus1d_test.py, a smaller net)


class ResNetTransformTest(absltest.TestCase):

  def test_size_rules_hand_worked(self):
    self.assertEqual(image_transforms.RESNET_RESIZE, 256)
    self.assertEqual(
        image_transforms.short_side_size(240, 320, 256), (256, 341)
    )  # 341.33 truncated
    self.assertEqual(image_transforms.short_side_size(1280, 720, 256), (455, 256))  # 455.11
    self.assertEqual(image_transforms.short_side_size(300, 300, 256), (256, 256))
    # (341 - 224) / 2 = 58.5 and (455 - 224) / 2 = 115.5: Python's round takes the even neighbour
    self.assertEqual(image_transforms.center_crop_origin(256, 341, 224), (16, 58))
    self.assertEqual(image_transforms.center_crop_origin(455, 256, 224), (116, 16))

  def test_matches_recipe(self):
    rng = np.random.RandomState(0)
    # LLP's 320x240 frames (upsampled), a small odd one, a portrait and a large landscape (shrunk), a
    # square, and one whose short side is already 256 (no resize)
    for h, w in [(240, 320), (37, 53), (480, 270), (720, 1280), (301, 301), (256, 300)]:
      frames = rng.randint(0, 256, (2 if h * w < 1e5 else 1, h, w, 3)).astype(np.uint8)
      out = image_transforms.resnet_transform(frames)
      self.assertEqual(out.shape, (len(frames), 224, 224, 3))
      self.assertEqual(out.dtype, np.float32)
      for frame, image in zip(frames, out):
        self.assertLess(closest(image, cadene_recipe(frame)), 1e-6, (h, w))
    self.assertIs(resnet.resnet_transform, image_transforms.resnet_transform)

  def test_bad_frames(self):
    for frames in [np.zeros((2, 8, 8, 3), np.float32), np.zeros((8, 8, 3), np.uint8)]:
      with self.assertRaisesRegex(InputError, "uint8 RGB frames"):
        image_transforms.resnet_transform(frames)


if __name__ == "__main__":
  absltest.main()
