"""R(2+1)D-18 motion features: torchvision's `video.r2plus1d_18` in Flax, the pooled 512-d vector before `fc`.

The official LLP script (AVVP-ECCV20 `scripts/extract_3D_feat.py`) loads
`torchvision.models.video.r2plus1d_18(pretrained=True)` (the Kinetics-400 file, `WEIGHT_FILE`), keeps
`nn.Sequential(*list(model.children())[:-1])` (everything up to and including the average pool) and
`.squeeze()`s the output: one 512-d vector per clip of 8 frames. The 80 selected frames of a 10-s window,
each preprocessed by `image_transforms.r2plus1d_transform`, go in as 10 clips of 8 consecutive frames
(`images[i // 8, :, i % 8] = frame i`): `clips_from_frames` does that grouping, `[80, ...] -> [10, 8, ...]`.

The architecture, as torchvision builds it (`VideoResNet` with `R2Plus1dStem`, `Conv2Plus1D`, BasicBlock
[2, 2, 2, 2]): the stem is a 1x7x7 convolution (3 -> 45, stride (1, 2, 2), padding (0, 3, 3)), BatchNorm,
ReLU, a 3x1x1 convolution (45 -> 64, padding (1, 0, 0)), BatchNorm, ReLU. Each `Conv2Plus1D(in, out, mid,
stride)` is a 1x3x3 convolution (in -> mid, stride (1, s, s), padding (0, 1, 1)), BatchNorm, ReLU, a 3x1x1
convolution (mid -> out, stride (s, 1, 1), padding (1, 0, 0)), with mid = (in * out * 27) // (in * 9 +
3 * out) from the BLOCK's in and out widths (the same mid for both its convolutions). A BasicBlock is
Conv2Plus1D -> BatchNorm -> ReLU -> Conv2Plus1D -> BatchNorm, plus the shortcut (a 1x1x1 convolution
of stride (s, s, s) + BatchNorm on the first block of stages 2-4), then ReLU. Stages of 64, 128, 256,
512 channels, stride 2 from the second on (in time too); `AdaptiveAvgPool3d(1)` is the mean over time
and space. BatchNorm3d runs in inference mode (running statistics, eps 1e-5). Clips are
NTHWC (`[N, 8, 112, 112, 3]`); Flax kernels `[T, H, W, in, out]` are torch's `[out, in, T, H, W]`
transposed.

Parameters: `params_from_state_dict` maps torchvision's keys one to one (`stem.0.weight`, `stem.1.*`,
`stem.3.weight`, `stem.4.*`, `layer1.0.conv1.0.0.weight`, `layer1.0.conv1.0.1.*`, `layer1.0.conv1.0.3.weight`,
`layer1.0.conv1.1.*`, ..., `layer2.0.downsample.0.weight`, `layer2.0.downsample.1.*`): the Flax modules are
named after the torch module path with "_" for "." (the converter is `resnet.variables_from_state_dict`);
`fc.*` and `num_batches_tracked` are ignored. `init_params(rng)` draws torchvision's random init (for
`--weights=random`: the architecture is real, the features are not).
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

from flax import linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from avvp_jax.errors import InputError
from avvp_jax.video import image_transforms
from avvp_jax.video import resnet
from avvp_jax.video import weights

Variables = resnet.Variables

# The official file: torchvision's `model_urls['r2plus1d_18']` (torchvision 0.4-0.12, which the official
# script's `pretrained=True` used) and `R2Plus1D_18_Weights.KINETICS400_V1` in torchvision >= 0.13 (the
# same URL, "_file_size": 120.318 MB). 31,505,325 parameters with the classifier.
WEIGHT_FILE = weights.WeightFile(
    name="r2plus1d_18-91a641e6.pth",
    url="https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth",
    source=(
        "torchvision's Kinetics-400 R(2+1)D-18 (video.r2plus1d_18, KINETICS400_V1), about 120 MB, as "
        "the official scripts/extract_3D_feat.py loads it with pretrained=True"
    ),
)
WEIGHT_FILE_MB = 120  # about (torchvision: 120.318 MB)
FEATURES = 512
CLIP_FRAMES = 8  # frames per clip: the 80 frames of a 10-s window are 10 clips
IMAGE_SIZE = 112
STAGES = (2, 2, 2, 2)  # BasicBlocks per stage (R(2+1)D-18)
WIDTHS = (64, 128, 256, 512)
STEM_MID = 45
IGNORED_PREFIXES = ("fc.",)


def midplanes(in_planes: int, out_planes: int) -> int:
  """torchvision's `Conv2Plus1D` hidden width: the (2+1)D factorisation keeps a full 3x3x3 conv's
  parameter count: (in * out * 27) // (in * 9 + 3 * out), e.g. 144 for 64 -> 64."""
  return (in_planes * out_planes * 3 * 3 * 3) // (in_planes * 3 * 3 + 3 * out_planes)


class BasicBlock(nn.Module):
  """torchvision's video `BasicBlock` with `Conv2Plus1D` convolutions (module names are torch's paths).

  `[N, T, H, W, C] -> [N, T / stride, H / stride, W / stride, width]`.
  """

  in_planes: int
  width: int
  stride: int = 1
  downsample: bool = False
  precision: Any = "highest"

  def _conv2plus1d(self, x, stride: int, prefix: str):
    # torchvision computes `midplanes` once per block, from the block's input width, for both convs.
    p, mid, s = self.precision, midplanes(self.in_planes, self.width), stride
    x = resnet.conv(mid, (1, 3, 3), (1, s, s), (0, 1, 1), f"{prefix}_0_0", p)(x)
    x = nn.relu(resnet.batch_norm(f"{prefix}_0_1")(x))
    return resnet.conv(self.width, (3, 1, 1), (s, 1, 1), (1, 0, 0), f"{prefix}_0_3", p)(x)

  @nn.compact
  def __call__(self, x):
    out = self._conv2plus1d(x, self.stride, "conv1")
    out = nn.relu(resnet.batch_norm("conv1_1")(out))
    out = self._conv2plus1d(out, 1, "conv2")
    out = resnet.batch_norm("conv2_1")(out)
    if self.downsample:
      s = (self.stride,) * 3
      x = resnet.conv(self.width, (1, 1, 1), s, (0, 0, 0), "downsample_0", self.precision)(x)
      x = resnet.batch_norm("downsample_1")(x)
    return nn.relu(out + x)


class R2Plus1D(nn.Module):
  """torchvision's `r2plus1d_18` up to `AdaptiveAvgPool3d(1)` (no `fc`).

  Attributes:
    stages: BasicBlocks per stage; (2, 2, 2, 2) is R(2+1)D-18 (a smaller tuple is a test variant).
    widths: each stage's width, (64, 128, 256, 512) in R(2+1)D-18 (the last one is the feature width);
      stem_width: the stem's (2+1)D hidden width (45). Narrower values make a cheap smoke-test variant
      (random weights only).
    precision: of every convolution (`jax.lax.Precision`); "highest" keeps float32 on GPUs and TPUs,
      None takes the backend's (faster) default.
  """

  stages: Sequence[int] = STAGES
  widths: Sequence[int] = WIDTHS
  stem_width: int = STEM_MID
  precision: Any = "highest"

  @nn.compact
  def __call__(self, clips):
    """Pooled features of normalised clips.

    Args:
      clips: `[N, T, H, W, 3]` float32, each frame normalised as `image_transforms.r2plus1d_transform` does
        (`[N, 8, 112, 112, 3]` for the official features).

    Returns:
      `[N, 512]` float32: the mean over time and space of the last feature map.
    """
    p = self.precision
    x = resnet.conv(self.stem_width, (1, 7, 7), (1, 2, 2), (0, 3, 3), "stem_0", p)(clips)
    x = nn.relu(resnet.batch_norm("stem_1")(x))
    x = resnet.conv(self.widths[0], (3, 1, 1), (1, 1, 1), (1, 0, 0), "stem_3", p)(x)
    x = nn.relu(resnet.batch_norm("stem_4")(x))
    in_planes = self.widths[0]
    for stage, (blocks, width) in enumerate(zip(self.stages, self.widths)):
      for block in range(blocks):
        stride = 2 if stage > 0 and block == 0 else 1
        downsample = block == 0 and (stride != 1 or in_planes != width)
        x = BasicBlock(in_planes, width, stride, downsample, p, name=f"layer{stage + 1}_{block}")(x)
        in_planes = width
    return jnp.mean(x, axis=(1, 2, 3))


MODEL = R2Plus1D()
# The official preprocessing (scripts/utils.py TransformImage): uint8 [N, H, W, 3] -> float32
# [N, 112, 112, 3]; then `clips_from_frames`.
r2plus1d_transform = image_transforms.r2plus1d_transform


def clips_from_frames(frames: np.ndarray | jax.Array) -> np.ndarray | jax.Array:
  """The official grouping of a window's frames into clips: frame i goes to clip i // 8, position i % 8.

  Args:
    frames: `[80, H, W, 3]` (any leading multiple of 8: `[8 * K, ...]`), e.g. `r2plus1d_transform`'s output.

  Returns:
    `[10, 8, H, W, 3]` (`[K, 8, ...]`), the official `images[i // 8, :, i % 8]` in NTHWC.
  """
  if frames.shape[0] % CLIP_FRAMES:
    raise InputError(
        f"R(2+1)D clips take a multiple of {CLIP_FRAMES} frames, got {frames.shape[0]}; "
        "select 80 frames per 10-s window."
    )
  return frames.reshape((frames.shape[0] // CLIP_FRAMES, CLIP_FRAMES) + tuple(frames.shape[1:]))


def template(module: nn.Module = MODEL) -> Variables:
  """`resnet.variable_shapes` of `module` (R(2+1)D-18) on one clip of 8 112x112 RGB frames."""
  return resnet.variable_shapes(module, (1, CLIP_FRAMES, IMAGE_SIZE, IMAGE_SIZE, 3))


def params_from_state_dict(state_dict: Mapping[str, Any], module: nn.Module = MODEL) -> Variables:
  """Flax variables of `module` (R(2+1)D-18) from torchvision's state_dict (see the module docstring); a
  missing, unexpected or misshaped key is an `InputError` naming it."""
  return resnet.variables_from_state_dict(
      state_dict, template(module), IGNORED_PREFIXES, f"R(2+1)D-18 ({WEIGHT_FILE.name})"
  )


def init_params(rng: jax.Array, module: nn.Module = MODEL) -> Variables:
  """Random R(2+1)D-18 variables drawn as torchvision initialises the network (RANDOM weights)."""
  return resnet.random_variables(template(module), rng)


@functools.partial(jax.jit, static_argnames="module")
def embed(variables: Variables, clips: jax.Array, module: nn.Module = MODEL) -> jax.Array:
  """`[N, 8, 112, 112, 3]` normalised clips -> `[N, 512]` features (jitted; recompiles per N)."""
  return module.apply(variables, clips)
