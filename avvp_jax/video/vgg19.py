"""VGG-19 frame maps for AVE: torchvision's `vgg19` in Flax, up to pool5 (`[N, 7, 7, 512]` for 224x224).

AVE's released `visual_feature.h5` holds VGG-19 pool5 maps (`block5_pool`, the last max pool before the
classifier), one `[7, 7, 512]` map per second: the mean of 16 frames' maps (`ave_frames`; docs/videos.md
"AVE features" has the evidence). This port is torchvision's ImageNet VGG-19 (configuration "E", no batch
norm), whose weights are converted at load time as the ResNet-152's are:

  16 3x3 convolutions (padding 1, bias, ReLU) in five blocks of [2, 2, 4, 4, 4] with widths 64, 128, 256,
  512, 512, each block closed by a 2x2/2 max pool. torchvision names them `features.<i>` with i the index in
  its `nn.Sequential` (convolution, ReLU, ..., max pool): convolutions at 0, 2, 5, 7, 10, 12, 14, 16, 19, 21,
  23, 25, 28, 30, 32, 34. Here the Flax modules are named `features_<i>` so that `resnet.torch_key` maps each
  variable to its torch key; the classifier (`classifier.*`) and the average pool are not part of pool5.

Images are NHWC; Flax kernels HWIO are torch's OIHW transposed. `init_params(rng)` draws torchvision's random
init (kaiming normal, fan out; biases 0) for `--weights=random` (the architecture is real, the features are
not). NOTE: the official AVE features came from Keras's `VGG19(weights='imagenet')` (the original Caffe
weights, converted) with Caffe's BGR mean-subtraction preprocessing, not from torchvision's weights:
`params_from_keras_h5` reads Keras's file into the same port (`AveExtractor(network="keras")`), the path
for features like the released ones; see `ave_frames` and docs/videos.md.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Mapping, Sequence

from flax import linen as nn
import jax
import numpy as np

from avvp_jax.errors import InputError
from avvp_jax.video import resnet
from avvp_jax.video import weights

Variables = Any  # {"params": ...}, nested dicts of arrays

# torchvision's ImageNet-1k VGG-19 (IMAGENET1K_V1, "_file_size" 548.051 MB, 143,667,240 parameters with the
# classifier, whose 123,642,856 are not used here).
WEIGHT_FILE = weights.WeightFile(
    name="vgg19-dcbb9e9d.pth",
    url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
    source="torchvision's ImageNet-1k VGG-19 (configuration E, no batch norm), about 548 MB",
)
# The official AVE features' network: Keras's `VGG19(weights='imagenet')` (the original Caffe weights of
# Simonyan & Zisserman, converted), read here without Keras by `params_from_keras_h5`; its input is
# `ave_frames.normalize(..., "caffe")`. The file without the classifier, about 80 MB.
KERAS_WEIGHT_FILE = weights.WeightFile(
    name="vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
    url=(
        "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
        "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    ),
    source="Keras's ImageNet VGG-19 without its classifier (the Caffe weights), about 80 MB",
)
IMAGE_SIZE = 224
MAP_SIZE = IMAGE_SIZE // 32  # 7
FEATURES = 512
BLOCKS = (2, 2, 4, 4, 4)  # 3x3 convolutions per block (VGG-19)
WIDTHS = (64, 128, 256, 512, 512)
IGNORED_PREFIXES = ("classifier.",)


def torch_layer_indices(blocks: Sequence[int] = BLOCKS) -> list[int]:
  """The `features.<i>` index of each convolution in torchvision's `nn.Sequential` (conv, ReLU per layer,
  a max pool after each block): [0, 2, 5, 7, 10, ...] for VGG-19."""
  indices, i = [], 0
  for convs in blocks:
    for _ in range(convs):
      indices.append(i)
      i += 2  # the convolution and its ReLU
    i += 1  # the block's max pool
  return indices


class VGG(nn.Module):
  """torchvision's VGG feature stack (`model.features`), ending in the last block's max pool (pool5).

  Attributes:
    blocks: 3x3 convolutions per block; (2, 2, 4, 4, 4) is VGG-19.
    widths: each block's channels; (64, 128, 256, 512, 512) is VGG-19's. Narrower early blocks with the last
      kept at 512 make a cheap test variant (random weights only: the official file fits VGG-19 only).
    precision: of every convolution (`jax.lax.Precision`); "highest" keeps float32 on GPUs and TPUs.
  """

  blocks: Sequence[int] = BLOCKS
  widths: Sequence[int] = WIDTHS
  precision: Any = "highest"

  @nn.compact
  def __call__(self, images):
    """pool5 maps of normalised images.

    Args:
      images: `[N, H, W, 3]` float32, normalised as `ave_frames.vgg_transform` does (`[N, 224, 224, 3]` for
        AVE's features).

    Returns:
      `[N, H / 32, W / 32, widths[-1]]` float32 (`[N, 7, 7, 512]` at 224x224), after the last ReLU and max
      pool, channels last (as Keras's `block5_pool` and the released files have them).
    """
    x = images
    indices = iter(torch_layer_indices(self.blocks))
    for convs, width in zip(self.blocks, self.widths):
      for _ in range(convs):
        x = nn.Conv(
            width,
            (3, 3),
            padding=((1, 1), (1, 1)),
            kernel_init=resnet.kaiming_fan_out,
            bias_init=nn.initializers.zeros,
            precision=self.precision,
            name=f"features_{next(indices)}",
        )(x)
        x = nn.relu(x)
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    return x


MODEL = VGG()


def template(module: nn.Module = MODEL) -> Variables:
  """`resnet.variable_shapes` of `module` (VGG-19) on one 224x224 RGB image."""
  return resnet.variable_shapes(module, (1, IMAGE_SIZE, IMAGE_SIZE, 3))


def params_from_state_dict(state_dict: Mapping[str, Any], module: nn.Module = MODEL) -> Variables:
  """Flax variables of `module` (VGG-19) from torchvision's state_dict (`features.<i>.weight/bias`; the
  classifier is ignored); a missing, unexpected or misshaped key is an `InputError` naming it."""
  return resnet.variables_from_state_dict(
      state_dict, template(module), IGNORED_PREFIXES, f"VGG-19 ({WEIGHT_FILE.name})"
  )


def keras_layer_names(blocks: Sequence[int] = BLOCKS) -> list[str]:
  """Keras's names of the convolutions, in order: block1_conv1, block1_conv2, block2_conv1, ..."""
  return [f"block{b + 1}_conv{c + 1}" for b, convs in enumerate(blocks) for c in range(convs)]


def params_from_keras_h5(path: str | os.PathLike[str], module: nn.Module = MODEL) -> Variables:
  """Flax variables of `module` from a Keras VGG-19 weight file in HDF5 (`KERAS_WEIGHT_FILE`, or any
  `save_weights` h5 of `keras.applications.VGG19`): per convolution `blockB_convC`, the group of that name
  holds (at any depth) its 4-d kernel `[3, 3, in, out]`, already HWIO as Flax's, and its 1-d bias.

  Raises:
    InputError: the file cannot be read, a layer is missing, or a shape does not match.
  """
  import h5py  # pylint: disable=g-import-not-at-top  (h5py only for this file format)

  path = os.fspath(path)
  model = f"VGG-19 ({os.path.basename(path)})"
  shapes = template(module)["params"]
  params = {}
  try:
    h5 = h5py.File(path, "r")
  except OSError as error:
    raise InputError(f"{path} cannot be opened as HDF5 ({error}): download it again.") from None
  with h5:
    root = h5["model_weights"] if "model_weights" in h5 else h5
    for layer, index in zip(keras_layer_names(module.blocks), torch_layer_indices(module.blocks)):
      if layer not in root:
        raise InputError(f"{model}: no layer {layer!r}; is this Keras's VGG-19 weight file?")
      arrays = []
      root[layer].visititems(
          lambda _, item: arrays.append(item) if isinstance(item, h5py.Dataset) else None
      )
      by_rank = {item.ndim: np.asarray(item, np.float32) for item in arrays}
      name = f"features_{index}"
      for rank, leaf in ((4, "kernel"), (1, "bias")):
        expected = tuple(shapes[name][leaf].shape)
        if rank not in by_rank or by_rank[rank].shape != expected:
          found = by_rank[rank].shape if rank in by_rank else None
          raise InputError(
              f"{model}: {layer!r} {leaf} has shape {found}, expected {expected}; is this Keras's "
              "VGG-19 weight file?"
          )
      params[name] = {"kernel": by_rank[4], "bias": by_rank[1]}
  return jax.device_put({"params": params})


def init_params(rng: jax.Array, module: nn.Module = MODEL) -> Variables:
  """Random VGG-19 variables drawn as torchvision initialises the network (RANDOM weights): kernels normal
  with std sqrt(2 / fan_out), biases 0."""
  return resnet.random_variables(template(module), rng)


@functools.partial(jax.jit, static_argnames="module")
def embed(variables: Variables, images: jax.Array, module: nn.Module = MODEL) -> jax.Array:
  """`[N, 224, 224, 3]` normalised images -> `[N, 7, 7, 512]` pool5 maps (jitted; recompiles per N)."""
  return module.apply(variables, images)
