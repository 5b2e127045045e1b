"""The post-norm relation layers CMBS borrows from CMRAN (marmot-xy/CMBS `model/models.py`, `main_model.py`).

A relation layer updates segments x [B, T, D] with one attention and a feed-forward block, each with a
residual and a post-LayerNorm:

  x <- LayerNorm(x + Dropout(Attention(x, keys)))
  x <- LayerNorm(x + Dropout(W2 Dropout(ReLU(W1 x))))

where the keys (and values) are x itself in an encoder layer (`EncoderLayer`, attention `self_attn`) and the
memory followed by x, [memory; x] along time, in a decoder layer (`DecoderLayer`, attention `multihead_attn`).
Facts of the official code kept here:
  * attention is `nn.MultiheadAttention(D, 4, dropout=0.1)` (dropout on the attention weights), every other
    dropout 0.1; D is the model width (256) and the feed-forward width is a parameter (1024 or 2048);
  * the official `DecoderLayer` also builds a `self_attn` that its forward never calls: not created here;
  * a stack (`Encoder`, `Decoder`) holds `copy.deepcopy`s of ONE layer, so every layer of a stack starts from
    the same weights. `RelationModule` makes the stack an `nn.scan` over the layer that does not split the
    params rng: each layer has its own params, stacked on a leading layer axis [L, ...], all initialised
    equal (dropout masks differ per layer);
  * `InternalTemporalRelationModule` (an encoder of 2 layers) and `CrossModalRelationAttModule` (a decoder of
    1 layer) first map their input to D with a Linear, `affine_matrix`.

Param names mirror the official ones: `affine_matrix`, then `encoder` or `decoder` holding
`{self_attn | multihead_attn}/{query,key,value,out}`, `linear1`, `linear2`, `norm1`, `norm2`, each [L, ...].
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from avvp_jax.models import layers


class RelationLayer(nn.Module):
  """One post-norm relation layer (encoder or decoder); an `nn.scan` body: `(x, memory) -> (x, None)`.

  Attributes:
    num_heads: attention heads (official 4).
    ffn_dim: hidden width of the feed-forward block.
    cross_modal: False: self-attention over x (`self_attn`); True: attention from x to [memory; x]
      (`multihead_attn`).
    dropout: dropout on the attention weights, the attention output and in and after the feed-forward block.
    deterministic: no dropout (eval).
    dtype: computation dtype.
  """

  num_heads: int = 4
  ffn_dim: int = 1024
  cross_modal: bool = False
  dropout: float = 0.1
  deterministic: bool = True
  dtype: layers.Dtype | None = None

  @nn.compact
  def __call__(self, x_BxTxD: jax.Array, memory_BxSxD: jax.Array | None) -> tuple[jax.Array, None]:
    dim = x_BxTxD.shape[-1]
    train = not self.deterministic
    drop = lambda y: nn.Dropout(self.dropout)(y, deterministic=self.deterministic)
    if self.cross_modal:
      keys_BxKxD = jnp.concatenate([memory_BxSxD, x_BxTxD], axis=1)
      name = "multihead_attn"
    else:
      keys_BxKxD, name = x_BxTxD, "self_attn"
    attention = layers.MultiHeadAttention(
        self.num_heads, self.dropout, packed_init=True, dtype=self.dtype, name=name
    )
    attended_BxTxD, _ = attention(x_BxTxD, keys_BxKxD, keys_BxKxD, train=train)
    x_BxTxD = layers.layer_norm("norm1", self.dtype)(x_BxTxD + drop(attended_BxTxD))
    hidden_BxTxF = nn.relu(
        layers.torch_dense(self.ffn_dim, dim, name="linear1", dtype=self.dtype)(x_BxTxD)
    )
    ffn_BxTxD = layers.torch_dense(dim, self.ffn_dim, name="linear2", dtype=self.dtype)(
        drop(hidden_BxTxF)
    )
    return layers.layer_norm("norm2", self.dtype)(x_BxTxD + drop(ffn_BxTxD)), None


class RelationModule(nn.Module):
  """`affine_matrix` to the model width, then a stack of relation layers that start from equal weights.

  The official `InternalTemporalRelationModule` is `RelationModule(num_layers=2)` (`encoder`) and
  `CrossModalRelationAttModule` is `RelationModule(num_layers=1, cross_modal=True)` (`decoder`).

  Attributes:
    d_model: the model width D (official 256).
    num_layers: layers of the stack.
    ffn_dim: feed-forward width of each layer.
    cross_modal: decoder layers (attending to [memory; x]) instead of encoder layers.
    num_heads, dropout: per layer, see `RelationLayer`.
    dtype: computation dtype.
  """

  d_model: int = 256
  num_layers: int = 2
  ffn_dim: int = 1024
  cross_modal: bool = False
  num_heads: int = 4
  dropout: float = 0.1
  dtype: layers.Dtype | None = None

  @nn.compact
  def __call__(
      self, x_BxTxC: jax.Array, memory_BxSxD: jax.Array | None = None, *, train: bool
  ) -> jax.Array:
    """Maps x [B, T, C] to [B, T, D], then runs the stack (a decoder attends to `memory` [B, S, D]).

    Returns:
      [B, T, D].
    """
    x_BxTxD = layers.torch_dense(
        self.d_model, x_BxTxC.shape[-1], name="affine_matrix", dtype=self.dtype
    )(x_BxTxC)
    stack = nn.scan(
        RelationLayer,
        variable_axes={"params": 0},
        split_rngs={"params": False, "dropout": True},
        in_axes=nn.broadcast,
        length=self.num_layers,
    )
    x_BxTxD, _ = stack(
        num_heads=self.num_heads,
        ffn_dim=self.ffn_dim,
        cross_modal=self.cross_modal,
        dropout=self.dropout,
        deterministic=not train,
        dtype=self.dtype,
        name="decoder" if self.cross_modal else "encoder",
    )(x_BxTxD, memory_BxSxD)
    return x_BxTxD
