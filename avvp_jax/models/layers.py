"""Building blocks shared by the encoders and decoders: PyTorch-initialised Dense and multi-head attention.

Both official codes are PyTorch; to start training from the same distributions (and to make converted
checkpoints map one-to-one) every `nn.Linear` of theirs is one `nn.Dense` here, initialised as PyTorch does:
kernel and bias uniform in +-1/sqrt(fan_in). `nn.MultiheadAttention` (HAN) initialises its packed input
projection with Xavier-uniform over the [3D, D] matrix and zero biases; the attention here keeps the four
projections apart (`query`, `key`, `value`, `out`), each a [D, D] kernel, so `in_proj_weight[:D].T` is the
query kernel, `in_proj_weight[D:2D].T` the key kernel and `in_proj_weight[2D:].T` the value kernel.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from avvp_jax.errors import InputError

Dtype = Any

# PyTorch's LayerNorm epsilon (flax's default is 1e-6).
LAYER_NORM_EPSILON = 1e-5
# The logit of a masked-out key (the official codes' `masked_fill(mask == 0, -1e9)`).
MASKED_LOGIT = -1e9


def _uniform(limit: float) -> nn.initializers.Initializer:
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -limit, limit)

  return init


def torch_dense(
    features: int,
    fan_in: int,
    *,
    name: str,
    dtype: Dtype | None = None,
    xavier: bool = False,
    zero_bias: bool = False,
    use_bias: bool = True,
    xavier_fan_out: int | None = None,
) -> nn.Dense:
  """A Dense initialised like `torch.nn.Linear(fan_in, features)`; params stay float32.

  Args:
    features: output width.
    fan_in: input width (PyTorch scales both kernel and bias by it).
    name: the submodule name (chosen to mirror the official parameter name).
    dtype: the computation dtype (None: that of the inputs and params).
    xavier: Xavier-uniform kernel instead (`nn.MultiheadAttention`'s input projection, computed over
      the packed [3 * fan_in, fan_in] matrix, i.e. fan_in + fan_out = 4 * fan_in).
    zero_bias: zero bias (`nn.MultiheadAttention`'s projections).
    use_bias: False: no bias (e.g. a bias-free `nn.Conv1d` of kernel size 1, initialised the same way).
    xavier_fan_out: the fan-out Xavier counts (default 3 * features, the packed matrix above; `features` for
      a plain `init.xavier_uniform` of this layer's weight).
  """
  if xavier:
    fan_out = 3 * features if xavier_fan_out is None else xavier_fan_out
    kernel_init = _uniform(math.sqrt(6.0 / (fan_in + fan_out)))
  else:
    kernel_init = _uniform(1.0 / math.sqrt(fan_in))
  bias_init = nn.initializers.zeros if zero_bias else _uniform(1.0 / math.sqrt(fan_in))
  return nn.Dense(
      features,
      use_bias=use_bias,
      dtype=dtype,
      param_dtype=jnp.float32,
      kernel_init=kernel_init,
      bias_init=bias_init,
      name=name,
  )


def layer_norm(name: str, dtype: Dtype | None = None) -> nn.LayerNorm:
  """LayerNorm with PyTorch's epsilon; statistics in float32, params float32."""
  return nn.LayerNorm(epsilon=LAYER_NORM_EPSILON, dtype=dtype, param_dtype=jnp.float32, name=name)


class MultiHeadAttention(nn.Module):
  """Scaled dot-product attention with separate query/key/value/out projections and an optional key mask.

  Attributes:
    num_heads: heads; the width D of the query must divide by it.
    attention_dropout: dropout on the softmax weights in training (both official codes: 0.1).
    packed_init: initialise as `nn.MultiheadAttention` (Xavier-uniform q/k/v, zero biases, PyTorch-Linear out
      kernel with zero bias: HAN); False: four plain `nn.Linear`s (LEAP's VanillaMultiHeadAttention and
      MM-Pyramid's MultiHeadAttention).
    dtype: computation dtype of the projections and products (softmax runs in float32, or float64 when the
      inputs and params are float64).
  """

  num_heads: int = 1
  attention_dropout: float = 0.0
  packed_init: bool = True
  dtype: Dtype | None = None

  @nn.compact
  def __call__(
      self,
      query_BxQxD: jax.Array,
      key_BxKxD: jax.Array,
      value_BxKxD: jax.Array,
      *,
      train: bool,
      mask: jax.Array | None = None,
  ) -> tuple[jax.Array, jax.Array]:
    """Attends from the queries to the keys/values.

    Args:
      query_BxQxD: the queries [B, Q, D].
      key_BxKxD, value_BxKxD: the keys and values [B, K, D].
      train: training mode (attention dropout).
      mask: bool, broadcastable to [B, H, Q, K] (e.g. [Q, K]): True where a query may see a key; the other
        logits are set to `MASKED_LOGIT` before the softmax (MM-Pyramid's window). None: every key.

    Returns:
      out_BxQxD: the attended values after the output projection (computation dtype);
      logits_BxHxQxK: the scaled scores q.k / sqrt(D / H), before softmax (masked ones at `MASKED_LOGIT`), in
        float32 (float64 when computed in float64).
    """
    batch, num_queries, dim = query_BxQxD.shape
    num_keys = key_BxKxD.shape[1]
    if dim % self.num_heads:
      raise InputError(
          f"attention width {dim} does not divide by num_heads={self.num_heads}: pick a "
          "hidden_dim that is a multiple of the number of heads."
      )
    head_dim = dim // self.num_heads
    project = lambda name, x: torch_dense(
        dim, dim, name=name, dtype=self.dtype, xavier=self.packed_init, zero_bias=self.packed_init
    )(x)
    q_BxQxHxK = project("query", query_BxQxD).reshape(batch, num_queries, self.num_heads, head_dim)
    k_BxTxHxK = project("key", key_BxKxD).reshape(batch, num_keys, self.num_heads, head_dim)
    v_BxTxHxK = project("value", value_BxKxD).reshape(batch, num_keys, self.num_heads, head_dim)
    logits_BxHxQxT = jnp.einsum("bqhk,bthk->bhqt", q_BxQxHxK, k_BxTxHxK) / math.sqrt(head_dim)
    logits_BxHxQxT = logits_BxHxQxT.astype(jnp.promote_types(logits_BxHxQxT.dtype, jnp.float32))
    if mask is not None:
      logits_BxHxQxT = jnp.where(mask, logits_BxHxQxT, MASKED_LOGIT)
    weights_BxHxQxT = jax.nn.softmax(logits_BxHxQxT, axis=-1)
    weights_BxHxQxT = nn.Dropout(self.attention_dropout)(weights_BxHxQxT, deterministic=not train)
    attended_BxQxHxK = jnp.einsum(
        "bhqt,bthk->bqhk", weights_BxHxQxT.astype(v_BxTxHxK.dtype), v_BxTxHxK
    )
    attended_BxQxD = attended_BxQxHxK.reshape(batch, num_queries, dim)
    out_init = dict(xavier=False, zero_bias=self.packed_init)
    out_BxQxD = torch_dense(dim, dim, name="out", dtype=self.dtype, **out_init)(attended_BxQxD)
    return out_BxQxD, logits_BxHxQxT
