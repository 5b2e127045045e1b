"""ResNet-152 frame features: torchvision's `resnet152` in Flax, the pooled 2048-d vector before `fc`.

The official LLP script (AVVP-ECCV20 `scripts/extract_rgb_feat.py`) runs Cadene's
`pretrainedmodels.resnet152('imagenet')` with `last_linear = Identity()`: torchvision's ResNet-152 (built by
`torchvision.models.resnet152`, then `fc` renamed `last_linear`) holding torchvision's ImageNet-1k file
(`WEIGHT_FILE`), on 80 frames of a 10-s clip preprocessed by `image_transforms.resnet_transform`. Its output is
the global average of the last feature map: `[80, 2048]` per clip.

The architecture, as torchvision builds it: a 7x7/2 convolution (64, zero padding 3), BatchNorm, ReLU, a
3x3/2 max pool (padding 1), then Bottleneck blocks [3, 8, 36, 3] of widths 64, 128, 256, 512 (x4 out),
each 1x1 -> 3x3 (the stride here, "v1.5") -> 1x1, BatchNorm (inference: running statistics, eps 1e-5)
after every convolution, a 1x1 strided projection + BatchNorm on the first block of each stage; the
residual sum, then ReLU. Images are NHWC (`[N, H, W, 3]`); Flax kernels HWIO are torch's OIHW transposed.

Parameters: `params_from_state_dict` maps torchvision's state_dict keys (`conv1.weight`, `bn1.running_mean`,
`layer1.0.downsample.0.weight`, ...) one to one onto Flax's `{"params", "batch_stats"}` variables; the
classifier (`fc.*` in torchvision's file, `last_linear.*` in a Cadene model's state_dict) is ignored, and
so are `num_batches_tracked` counters. `init_params(rng)` draws torchvision's random init (for
`--weights=random`: the architecture is real, the features are not).

The converter below (`variables_from_state_dict`) is shared with `avvp_jax.video.r2plus1d`: both name their
Flax modules after the torch module path, with "_" for ".", so each variable has exactly one torch key.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

import flax
from flax import linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from avvp_jax.errors import InputError
from avvp_jax.video import image_transforms
from avvp_jax.video import weights

Variables = Any  # {"params": ..., "batch_stats": ...}, nested dicts of arrays

# The official file: Cadene's pretrainedmodels (`models/torchvision_models.py`, model_urls['resnet152'])
# downloads torchvision's original ImageNet-1k ResNet-152 file. torchvision >= 0.13 lists the same
# IMAGENET1K_V1 weights re-saved as resnet152-394f9c45.pth ("_file_size": 230.434 MB); both have these
# keys. 60,192,808 parameters with the classifier.
WEIGHT_FILE = weights.WeightFile(
    name="resnet152-b121ed2d.pth",
    url="https://download.pytorch.org/models/resnet152-b121ed2d.pth",
    source=(
        "torchvision's ImageNet-1k ResNet-152 v1, about 230 MB, as Cadene's "
        "pretrainedmodels.resnet152('imagenet') downloads it for the official LLP features"
    ),
)
WEIGHT_FILE_MB = 230  # about (torchvision: 230.434 MB for the re-saved copy of the same weights)
FEATURES = 2048
IMAGE_SIZE = 224
STAGES = (3, 8, 36, 3)  # Bottleneck blocks per stage (ResNet-152)
WIDTHS = (64, 128, 256, 512)
EXPANSION = 4
BATCH_NORM_EPS = 1e-5
IGNORED_PREFIXES = ("fc.", "last_linear.")  # the classifier: torchvision's name, Cadene's name


# --- the network --------------------------------------------------------------------------------------


def kaiming_fan_out(key, shape, dtype=jnp.float32):
  """torchvision's convolution init, `kaiming_normal_(mode="fan_out", nonlinearity="relu")`, for a Flax
  kernel `[*window, in, out]`: normal with std sqrt(2 / (out * prod(window)))."""
  return nn.initializers.variance_scaling(2.0, "fan_out", "normal")(key, shape, dtype)


def conv(
    features: int,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    name: str,
    precision: Any,
) -> nn.Conv:
  """A bias-free convolution with torch's zero padding (`padding` per spatial axis, both sides)."""
  return nn.Conv(
      features,
      tuple(kernel),
      strides=tuple(stride),
      padding=tuple((p, p) for p in padding),
      use_bias=False,
      kernel_init=kaiming_fan_out,
      precision=precision,
      name=name,
  )


def batch_norm(name: str) -> nn.BatchNorm:
  """BatchNorm in inference mode: torch's running statistics, eps 1e-5, on the last (channel) axis."""
  return nn.BatchNorm(use_running_average=True, epsilon=BATCH_NORM_EPS, name=name)


class Bottleneck(nn.Module):
  """torchvision's `Bottleneck`: 1x1 -> 3x3 (strided) -> 1x1 (`width * 4` out), BatchNorm after each,
  plus a projected shortcut (`downsample`: strided 1x1 + BatchNorm) when the shape changes.

  `[N, H, W, C] -> [N, H / stride, W / stride, width * 4]`.
  """

  width: int
  stride: int = 1
  downsample: bool = False
  precision: Any = "highest"

  @nn.compact
  def __call__(self, x):
    p = self.precision
    out = nn.relu(batch_norm("bn1")(conv(self.width, (1, 1), (1, 1), (0, 0), "conv1", p)(x)))
    s = (self.stride, self.stride)
    out = nn.relu(batch_norm("bn2")(conv(self.width, (3, 3), s, (1, 1), "conv2", p)(out)))
    out = batch_norm("bn3")(conv(self.width * EXPANSION, (1, 1), (1, 1), (0, 0), "conv3", p)(out))
    if self.downsample:
      x = conv(self.width * EXPANSION, (1, 1), s, (0, 0), "downsample_0", p)(x)
      x = batch_norm("downsample_1")(x)
    return nn.relu(out + x)


class ResNet(nn.Module):
  """torchvision's ImageNet ResNet with Bottleneck blocks, up to the global average pool (no `fc`).

  Attributes:
    stages: Bottleneck blocks per stage; (3, 8, 36, 3) is ResNet-152 (a smaller tuple is a test variant).
    widths: each stage's Bottleneck width (its output is 4x); (64, 128, 256, 512) is ResNet-152's, the
      stem has `widths[0]` channels. Narrower early stages with the last kept at 512 (2048 features)
      make a cheap smoke-test variant (random weights only).
    precision: of every convolution (`jax.lax.Precision`); "highest" keeps float32 on GPUs and TPUs
      (their default is TF32 / bfloat16 passes); None takes the backend's default, faster there.
  """

  stages: Sequence[int] = STAGES
  widths: Sequence[int] = WIDTHS
  precision: Any = "highest"

  @nn.compact
  def __call__(self, images):
    """Pooled features of normalised images.

    Args:
      images: `[N, H, W, 3]` float32, normalised as `image_transforms.resnet_transform` does
        (`[N, 224, 224, 3]` for the official features; other sizes run too).

    Returns:
      `[N, 2048]` float32: the mean over the last `[N, H / 32, W / 32, 2048]` feature map.
    """
    p = self.precision
    x = conv(self.widths[0], (7, 7), (2, 2), (3, 3), "conv1", p)(images)
    x = nn.relu(batch_norm("bn1")(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    in_features = self.widths[0]
    for stage, (blocks, width) in enumerate(zip(self.stages, self.widths)):
      for block in range(blocks):
        stride = 2 if stage > 0 and block == 0 else 1
        downsample = block == 0 and (stride != 1 or in_features != width * EXPANSION)
        x = Bottleneck(width, stride, downsample, p, name=f"layer{stage + 1}_{block}")(x)
        in_features = width * EXPANSION
    return jnp.mean(x, axis=(1, 2))


MODEL = ResNet()
# The official preprocessing (Cadene's TransformImage): uint8 [N, H, W, 3] -> float32 [N, 224, 224, 3].
resnet_transform = image_transforms.resnet_transform


# --- parameters ---------------------------------------------------------------------------------------

_FLAX_TO_TORCH = {
    ("params", "kernel"): "weight",
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}


def torch_key(path: Sequence[str]) -> str:
  """The torch state_dict key of a Flax variable: ("params", "layer1_0", "conv1", "kernel") ->
  "layer1.0.conv1.weight" (module names are torch's module path with "_" for ".")."""
  collection, *modules, leaf = path
  return ".".join([m.replace("_", ".") for m in modules] + [_FLAX_TO_TORCH[(collection, leaf)]])


def torch_to_flax(array: np.ndarray, flax_ndim: int) -> np.ndarray:
  """torch layout -> Flax layout: a conv weight `[out, in, *window]` becomes `[*window, in, out]`; vectors
  stay."""
  if flax_ndim <= 1:
    return array
  return np.transpose(array, tuple(range(2, array.ndim)) + (1, 0))


def flax_to_torch(array: np.ndarray) -> np.ndarray:
  """The inverse of `torch_to_flax`: a Flax kernel `[*window, in, out]` -> torch `[out, in, *window]`."""
  if array.ndim <= 1:
    return array
  n = array.ndim
  return np.transpose(array, (n - 1, n - 2) + tuple(range(n - 2)))


def _paths(tree) -> list[tuple[tuple[str, ...], Any]]:
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(tree))
  return sorted(flat.items())


def variables_from_state_dict(
    state_dict: Mapping[str, Any],
    template: Variables,
    ignored_prefixes: Sequence[str],
    model_name: str,
) -> Variables:
  """Flax variables shaped like `template` from a torch state_dict with one key per variable.

  Args:
    state_dict: torch key -> array (numpy, or anything `np.asarray` takes: torch CPU tensors too).
    template: the Flax variables (`jax.eval_shape` of the module's init) naming what must be there.
    ignored_prefixes: keys to skip (the classifier); `*.num_batches_tracked` are skipped as well.
    model_name: for the messages.

  Returns:
    `{"params": ..., "batch_stats": ...}` of float32 arrays in Flax layout, on JAX's default device (put
    there once, so that repeated `embed` calls do not copy the weights again).

  Raises:
    InputError: a key missing, an unexpected key, or a shape that does not match, named in one line.
  """
  if not isinstance(state_dict, Mapping):
    raise InputError(
        f"{model_name}: expected a state_dict (a mapping of key -> array), got {type(state_dict).__name__}; "
        "pass the file's state_dict as avvp_jax.video.weights.load_state_dict reads it."
    )
  used = set()
  flat = {}
  for path, leaf in _paths(template):
    key = torch_key(path)
    if key not in state_dict:
      raise InputError(
          f"{model_name}: the state_dict has no key {key!r} ({len(state_dict)} keys); "
          f"is this the official file ({model_name})?"
      )
    array = np.asarray(state_dict[key], dtype=np.float32)
    expected = tuple(flax_to_torch(np.empty(leaf.shape, np.bool_)).shape)
    if tuple(array.shape) != expected:
      raise InputError(
          f"{model_name}: {key!r} has shape {tuple(array.shape)}, expected {expected}; "
          "is this the official file?"
      )
    flat[path] = torch_to_flax(array, len(leaf.shape))
    used.add(key)
  extra = sorted(
      key
      for key in state_dict
      if key not in used
      and not key.endswith("num_batches_tracked")
      and not any(key.startswith(prefix) for prefix in ignored_prefixes)
  )
  if extra:
    shown = ", ".join(repr(key) for key in extra[:4]) + (", ..." if len(extra) > 4 else "")
    raise InputError(
        f"{model_name}: unexpected key {shown} in the state_dict ({len(extra)} not in the "
        "architecture); is this the official file?"
    )
  return jax.device_put(flax.traverse_util.unflatten_dict(flat))


def random_variables(template_variables: Variables, rng: jax.Array) -> Variables:
  """torchvision's random init of variables shaped like `template_variables`, without running the network:
  conv kernels normal with std sqrt(2 / fan_out) (`kaiming_normal_(mode="fan_out")`), BatchNorm scale 1,
  bias 0, running mean 0, running variance 1. Drawn by numpy from `rng`'s key data (fast on a CPU: one
  Generator, no per-leaf dispatch), returned as float32 arrays on JAX's default device."""
  generator = np.random.default_rng(np.asarray(jax.random.key_data(rng)).ravel().tolist())
  flat = {}
  for path, leaf in _paths(template_variables):
    shape = tuple(leaf.shape)
    if path[-1] == "kernel":
      fan_out = int(np.prod(shape[:-2])) * shape[-1]
      value = generator.standard_normal(shape, dtype=np.float32) * np.float32(
          np.sqrt(2.0 / fan_out)
      )
    elif path[-1] in ("scale", "var"):
      value = np.ones(shape, np.float32)
    else:
      value = np.zeros(shape, np.float32)
    flat[path] = value
  return jax.device_put(flax.traverse_util.unflatten_dict(flat))


@functools.lru_cache(maxsize=16)
def variable_shapes(module: nn.Module, input_shape: tuple[int, ...]) -> Variables:
  """The variables' shapes (`jax.ShapeDtypeStruct` leaves) of `module` on a float32 input of `input_shape`,
  without computing anything (the template every converter of this package fills)."""
  example = jax.ShapeDtypeStruct(input_shape, jnp.float32)
  return jax.eval_shape(functools.partial(module.init, jax.random.key(0)), example)


def template(module: nn.Module = MODEL) -> Variables:
  """`variable_shapes` of `module` (ResNet-152) on one 224x224 RGB image."""
  return variable_shapes(module, (1, IMAGE_SIZE, IMAGE_SIZE, 3))


def params_from_state_dict(state_dict: Mapping[str, Any], module: nn.Module = MODEL) -> Variables:
  """Flax variables of `module` (ResNet-152) from torchvision's / Cadene's state_dict (see the module
  docstring); a missing, unexpected or misshaped key is an `InputError` naming it."""
  return variables_from_state_dict(
      state_dict, template(module), IGNORED_PREFIXES, f"ResNet-152 ({WEIGHT_FILE.name})"
  )


def init_params(rng: jax.Array, module: nn.Module = MODEL) -> Variables:
  """Random ResNet-152 variables drawn as torchvision initialises the network (RANDOM weights)."""
  return random_variables(template(module), rng)


@functools.partial(jax.jit, static_argnames="module")
def embed(variables: Variables, images: jax.Array, module: nn.Module = MODEL) -> jax.Array:
  """`[N, 224, 224, 3]` normalised images -> `[N, 2048]` features (jitted; recompiles per N)."""
  return module.apply(variables, images)
