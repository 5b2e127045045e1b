"""Audio-guided visual attention (AVGA) over the 7 x 7 regions of a segment's VGG-19 map, as AVE-ECCV18 codes it.

Tian et al. (ECCV 2018, YapengTian/AVE-ECCV18 `att_Net.forward`, kept as `AVGA` by PSP). For each
segment, with V [49, 512] the regions and a [128] the audio:

  v = relu(affine_video(V))                     [49, S]   (S: hidden_size, 512)
  g = relu(affine_audio(a))                     [S]
  content[r, k] = affine_v(v)[r, k] + affine_g(g)[r]        [49, 49]
  z[r] = affine_h(tanh(content[r]))             [49]
  alpha = softmax_r(z),  attended = sum_r alpha[r] V[r]     [512]

The audio term is the code's `affine_g(a_t).unsqueeze(2)`: affine_g's 49 outputs are indexed by region and
each is added to every one of that region's 49 hidden units, one audio scalar per region (the paper's
equation adds the projected audio vector to each region's hidden vector). A faithful port keeps it: the
official weights were trained so.

`linear` is the PyTorch-initialised Dense the AVE models use (xavier-uniform weights where the official code
re-initialises them, torch's default otherwise).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from avvp_jax.models import layers

Dtype = Any

NUM_REGIONS = 49  # 7 x 7


def linear(
    features: int,
    fan_in: int,
    *,
    name: str,
    use_bias: bool = True,
    xavier: bool = False,
    zero_bias: bool = False,
    dtype: Dtype | None = None,
) -> nn.Dense:
  """`torch.nn.Linear(fan_in, features, bias=use_bias)` as a Dense (kernel [fan_in, features], params float32).

  Args:
    features, fan_in: output and input widths.
    name: the submodule name (the official attribute's).
    use_bias: whether it has a bias.
    xavier: `init.xavier_uniform` on the weight (uniform in +-sqrt(6 / (fan_in + features))); False: torch's
      default, uniform in +-1/sqrt(fan_in).
    zero_bias: a zero bias (the official `bias.data.fill_(0)`); else torch's default +-1/sqrt(fan_in).
    dtype: computation dtype (None: that of the inputs).
  """
  return layers.torch_dense(
      features,
      fan_in,
      name=name,
      dtype=dtype,
      xavier=xavier,
      xavier_fan_out=features,
      zero_bias=zero_bias,
      use_bias=use_bias,
  )


class AVGA(nn.Module):
  """Audio-guided visual attention (module docstring); the official names affine_audio, affine_video,
  affine_v, affine_g, affine_h.

  Attributes:
    hidden_size: S, the width of affine_audio / affine_video (official: 512).
    xavier_init: xavier-uniform weights, as att_Net and PSP re-initialise them; False: torch's default
      (TBMRF_Net, DMRN, re-initialises only its classifier).
    dtype: computation dtype of the Dense layers; the softmax and outputs are float32.
  """

  hidden_size: int = 512
  xavier_init: bool = True
  dtype: Dtype | None = None

  @nn.compact
  def __call__(
      self, audio_BxTxA: jax.Array, visual_BxTxHxWxC: jax.Array
  ) -> tuple[jax.Array, jax.Array]:
    """Attends over the regions of each segment.

    Args:
      audio_BxTxA: the guiding audio [B, T, A] (AVE: the raw 128-d VGGish; PSP fully: its `fa` output).
      visual_BxTxHxWxC: the region maps [B, T, 7, 7, C] (C = 512).

    Returns:
      attended_BxTxC: the attended visual feature of each segment [B, T, C];
      attention_BxTxR: the attention over the R = H * W regions [B, T, R] (sums to 1), float32.
    """
    batch, seconds, height, width, channels = visual_BxTxHxWxC.shape
    regions = height * width
    if regions != NUM_REGIONS:
      raise ValueError(f"AVGA attends over 7 x 7 = 49 regions, got {height} x {width}")
    visual_BxTxRxC = visual_BxTxHxWxC.reshape(batch, seconds, regions, channels)
    dense = lambda features, fan_in, name, bias=True: linear(
        features, fan_in, name=name, use_bias=bias, xavier=self.xavier_init, dtype=self.dtype
    )
    v_BxTxRxS = nn.relu(dense(self.hidden_size, channels, "affine_video")(visual_BxTxRxC))
    g_BxTxS = nn.relu(dense(self.hidden_size, audio_BxTxA.shape[-1], "affine_audio")(audio_BxTxA))
    content_BxTxRxK = (
        dense(regions, self.hidden_size, "affine_v", bias=False)(v_BxTxRxS)
        + dense(regions, self.hidden_size, "affine_g", bias=False)(g_BxTxS)[..., None]
    )
    z_BxTxR = dense(1, regions, "affine_h", bias=False)(jnp.tanh(content_BxTxRxK))[..., 0]
    attention_BxTxR = jax.nn.softmax(z_BxTxR.astype(jnp.float32), axis=-1)
    attended_BxTxC = jnp.einsum(
        "btr,btrc->btc", attention_BxTxR.astype(visual_BxTxRxC.dtype), visual_BxTxRxC
    )
    return attended_BxTxC, attention_BxTxR
