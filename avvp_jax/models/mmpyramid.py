"""MM-Pyramid: the multimodal pyramid attentional encoder (Yu et al., ACM MM 2022), as LEAP's official code
uses it (jasongief/LEAP `nets/MPAM.py` and `nets/Transformer.py`).

A pyramid of L levels (official 4), level i with dilation d = 2^i, updates the [B, T, D] audio and visual
segments a, v in two steps:

  1. Integrated attention. Three pre-norm transformer layers, each
       x <- x + Dropout(Attention(LayerNorm(x), y, y)),  x <- x + Dropout(FFN(LayerNorm(x))),
     with multi-head attention restricted to segments j with |i - j| <= d (logits elsewhere -1e9):
       a_sa = SelfLayer_a(a, a),  v_sa = SelfLayer_v(v, v),
       a_ca = CrossLayer(a, v),   v_ca = CrossLayer(v, a)     (ONE cross layer serves both directions)
     Only the query passes the LayerNorm; keys/values are the raw inputs. The two results of each modality
     are fused by two sigmoid gates computed from their concatenation:
       a <- sigmoid(W1 [a_sa; a_ca]) * a_sa + sigmoid(W2 [a_sa; a_ca]) * a_ca      (v likewise)
  2. Temporal convolution, one block per modality (no dropout):
       a <- ReLU(a + Conv1x1(ReLU(DilatedConv_k3,d(a))))       (zero padding d keeps T)

Each level reads the previous level's output. The L level outputs of a segment, [L, D], then pass a pre-norm
transformer layer (full self-attention over the levels; one per modality) and are summed with sigmoid weights:
  out_t = sum_l sigmoid(w . h_{t,l} + b) h_{t,l}
(a sigmoid per level, not a softmax: the weights need not sum to 1.)

Defaults are the official ones: 8 heads, FFN width = D = 512, dropout 0.2 on the sublayer outputs and inside
the FFN, 0.1 on the attention weights. Every Dense/Conv is initialised as its PyTorch counterpart (uniform
+-1/sqrt(fan_in), fan_in = in_channels * kernel for the convolutions).

Param names: `levels_{i}/{audio_self,visual_self,cross}/{attn/{query,key,value,out},attn_norm,ffn_in,ffn_out,
ffn_norm}` (official `msa.{i}.{asablock,vsablock,cmablock}.layer`), `levels_{i}/{audio,visual}_gate_{self,cross}`
(official `la1/la2/lv1/lv2`), `levels_{i}/{audio,visual}_tcn/{dilated_conv,pointwise_conv}` (official
`anetwork.{i}.conv1/conv2`), `{audio,visual}_fusion` and `{audio,visual}_fusion_weight` (official
`fusion.{a,v}adaptiveinteraction` and `{a,v}selectfusion`).
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from avvp_jax.errors import InputError
from avvp_jax.models import layers


def _uniform(limit: float) -> nn.initializers.Initializer:
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -limit, limit)

  return init


def window_mask(num_queries: int, num_keys: int, window: int | None) -> jax.Array | None:
  """[Q, K] bool, True where |q - k| <= window; None (no mask) when window is None."""
  if window is None:
    return None
  offsets = jnp.arange(num_queries)[:, None] - jnp.arange(num_keys)[None, :]
  return jnp.abs(offsets) <= window


class PreNormLayer(nn.Module):
  """x + Dropout(Attention(LayerNorm(x), y, y)), then x + Dropout(FFN(LayerNorm(x))): [B, Q, D] -> [B, Q, D].

  Attributes:
    num_heads, attention_dropout: of the attention (`layers.MultiHeadAttention`, four PyTorch-Linear
      projections).
    window: queries see the keys within +-window steps (`window_mask`); None: all keys.
    ffn_dim: FFN hidden width; 0: the input width D (official).
    dropout: on both sublayer outputs and inside the FFN (official 0.2).
    dtype: computation dtype.
  """

  num_heads: int = 8
  window: int | None = None
  ffn_dim: int = 0
  dropout: float = 0.2
  attention_dropout: float = 0.1
  dtype: layers.Dtype | None = None

  @nn.compact
  def __call__(self, x_BxQxD: jax.Array, other_BxKxD: jax.Array, *, train: bool) -> jax.Array:
    dim = x_BxQxD.shape[-1]
    ffn_dim = self.ffn_dim or dim
    drop = lambda y: nn.Dropout(self.dropout)(y, deterministic=not train)
    attention = layers.MultiHeadAttention(
        self.num_heads, self.attention_dropout, packed_init=False, dtype=self.dtype, name="attn"
    )
    mask_QxK = window_mask(x_BxQxD.shape[1], other_BxKxD.shape[1], self.window)
    attended_BxQxD, _ = attention(
        layers.layer_norm("attn_norm", self.dtype)(x_BxQxD),
        other_BxKxD,
        other_BxKxD,
        train=train,
        mask=mask_QxK,
    )
    x_BxQxD = x_BxQxD + drop(attended_BxQxD)
    hidden = layers.layer_norm("ffn_norm", self.dtype)(x_BxQxD)
    hidden = nn.relu(layers.torch_dense(ffn_dim, dim, name="ffn_in", dtype=self.dtype)(hidden))
    return x_BxQxD + drop(
        layers.torch_dense(dim, ffn_dim, name="ffn_out", dtype=self.dtype)(drop(hidden))
    )


class TemporalBlock(nn.Module):
  """ReLU(x + Conv1x1(ReLU(Conv_k,dilation(x)))) over time, [B, T, D] -> [B, T, D] (no dropout, as official).

  Attributes:
    dilation: the dilation d of the first convolution (zero padding d on both sides when kernel_size is 3).
    kernel_size: odd kernel width of the dilated convolution (official 3).
    dtype: computation dtype.
  """

  dilation: int = 1
  kernel_size: int = 3
  dtype: layers.Dtype | None = None

  @nn.compact
  def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
    dim = x_BxTxD.shape[-1]
    pad = self.dilation * (self.kernel_size - 1) // 2

    def conv(name, kernel_size, dilation, padding):
      limit = 1.0 / math.sqrt(dim * kernel_size)  # PyTorch Conv1d: fan_in = in_channels * kernel
      return nn.Conv(
          dim,
          (kernel_size,),
          kernel_dilation=(dilation,),
          padding=[(padding, padding)],
          dtype=self.dtype,
          param_dtype=jnp.float32,
          kernel_init=_uniform(limit),
          bias_init=_uniform(limit),
          name=name,
      )

    hidden_BxTxD = nn.relu(conv("dilated_conv", self.kernel_size, self.dilation, pad)(x_BxTxD))
    return nn.relu(x_BxTxD + conv("pointwise_conv", 1, 1, 0)(hidden_BxTxD))


class PyramidLevel(nn.Module):
  """One pyramid level: integrated (windowed self + cross) attention with sigmoid gates, then a TCN block.

  Attributes:
    dilation: d = 2^i: attention window +-d, convolution dilation d.
    windowed: restrict the attention to +-d (official); False: full attention at every level.
    num_heads, ffn_dim, dropout, attention_dropout: of the three `PreNormLayer`s (ffn_dim 0: the input width).
    kernel_size: of the dilated convolution.
    dtype: computation dtype.
  """

  dilation: int = 1
  windowed: bool = True
  num_heads: int = 8
  ffn_dim: int = 0
  dropout: float = 0.2
  attention_dropout: float = 0.1
  kernel_size: int = 3
  dtype: layers.Dtype | None = None

  @nn.compact
  def __call__(
      self, audio_BxTxD: jax.Array, visual_BxTxD: jax.Array, *, train: bool
  ) -> tuple[jax.Array, jax.Array]:
    dim = audio_BxTxD.shape[-1]
    make = lambda name: PreNormLayer(
        num_heads=self.num_heads,
        window=self.dilation if self.windowed else None,
        ffn_dim=self.ffn_dim,
        dropout=self.dropout,
        attention_dropout=self.attention_dropout,
        dtype=self.dtype,
        name=name,
    )
    audio_self = make("audio_self")(audio_BxTxD, audio_BxTxD, train=train)
    visual_self = make("visual_self")(visual_BxTxD, visual_BxTxD, train=train)
    cross = make("cross")
    visual_cross = cross(visual_BxTxD, audio_BxTxD, train=train)
    audio_cross = cross(audio_BxTxD, visual_BxTxD, train=train)

    def gate(prefix, self_BxTxD, cross_BxTxD):
      both_BxTx2D = jnp.concatenate([self_BxTxD, cross_BxTxD], axis=-1)
      weight = lambda name: jax.nn.sigmoid(
          layers.torch_dense(dim, 2 * dim, name=f"{prefix}_gate_{name}", dtype=self.dtype)(
              both_BxTx2D
          ).astype(jnp.float32)
      )
      return (weight("self") * self_BxTxD + weight("cross") * cross_BxTxD).astype(self_BxTxD.dtype)

    audio_BxTxD = gate("audio", audio_self, audio_cross)
    visual_BxTxD = gate("visual", visual_self, visual_cross)
    tcn = lambda name: TemporalBlock(
        dilation=self.dilation, kernel_size=self.kernel_size, dtype=self.dtype, name=name
    )
    return tcn("audio_tcn")(audio_BxTxD), tcn("visual_tcn")(visual_BxTxD)


class MMPyramidEncoder(nn.Module):
  """The MM-Pyramid encoder: L pyramid levels, then a per-segment attentive fusion of the level outputs.

  Built as `MMPyramidEncoder(**config.model.mmpyramid, dtype=...)`: the section's keys are these attributes.

  Attributes:
    num_levels: L (official 4); level i has dilation 2^i.
    num_heads: attention heads of every layer (official 8).
    ffn_dim: FFN hidden width; 0: the input width D (official, 512).
    dropout: sublayer and FFN dropout (official 0.2).
    attention_dropout: dropout on the attention weights (official 0.1).
    kernel_size: of the dilated temporal convolutions (official 3).
    windowed: attention of level i restricted to +-2^i segments (official); False: unrestricted.
    dtype: computation dtype.
  """

  num_levels: int = 4
  num_heads: int = 8
  ffn_dim: int = 0
  dropout: float = 0.2
  attention_dropout: float = 0.1
  kernel_size: int = 3
  windowed: bool = True
  dtype: layers.Dtype | None = None

  @nn.compact
  def __call__(
      self, audio_BxTxD: jax.Array, visual_BxTxD: jax.Array, *, train: bool
  ) -> tuple[jax.Array, jax.Array]:
    """Returns the encoded (audio_BxTxD, visual_BxTxD)."""
    if self.num_levels < 1:
      raise InputError(f"config.model.mmpyramid.num_levels is {self.num_levels}: use 1 or more.")
    if self.kernel_size < 1 or self.kernel_size % 2 == 0:
      raise InputError(
          f"config.model.mmpyramid.kernel_size is {self.kernel_size}: use an odd width (official 3) "
          "so that the dilated convolution keeps the T segments."
      )
    batch, num_seconds, dim = audio_BxTxD.shape
    audio_levels, visual_levels = [], []
    for i in range(self.num_levels):
      level = PyramidLevel(
          dilation=2**i,
          windowed=self.windowed,
          num_heads=self.num_heads,
          ffn_dim=self.ffn_dim,
          dropout=self.dropout,
          attention_dropout=self.attention_dropout,
          kernel_size=self.kernel_size,
          dtype=self.dtype,
          name=f"levels_{i}",
      )
      audio_BxTxD, visual_BxTxD = level(audio_BxTxD, visual_BxTxD, train=train)
      audio_levels.append(audio_BxTxD)
      visual_levels.append(visual_BxTxD)

    def fuse(prefix, levels_list):
      levels_NxLxD = jnp.stack(levels_list, axis=2).reshape(
          batch * num_seconds, self.num_levels, dim
      )
      layer = PreNormLayer(
          num_heads=self.num_heads,
          window=None,
          ffn_dim=self.ffn_dim,
          dropout=self.dropout,
          attention_dropout=self.attention_dropout,
          dtype=self.dtype,
          name=f"{prefix}_fusion",
      )
      mixed_NxLxD = layer(levels_NxLxD, levels_NxLxD, train=train)
      logit_NxLx1 = layers.torch_dense(1, dim, name=f"{prefix}_fusion_weight", dtype=self.dtype)(
          mixed_NxLxD
      )
      weight_NxLx1 = jax.nn.sigmoid(logit_NxLx1.astype(jnp.float32)).astype(mixed_NxLxD.dtype)
      return (weight_NxLx1 * mixed_NxLxD).sum(axis=1).reshape(batch, num_seconds, dim)

    return fuse("audio", audio_levels), fuse("visual", visual_levels)
