"""HAN: the hybrid attention network encoder (Tian, Li and Xu, ECCV 2020, Sec. 3.2).

One HAN layer updates the segments x of one modality with self-attention and cross-modal attention to the
other modality's segments y, then a feed-forward block, both with a residual and a post-LayerNorm:

  x <- LayerNorm(x + Dropout(CrossAttention(x, y)) + Dropout(SelfAttention(x)))
  x <- LayerNorm(x + Dropout(W2 Dropout(ReLU(W1 x))))

Facts of the official model (YapengTian/AVVP-ECCV20, `nets/net_audiovisual.py`, `HANLayer` and `Encoder`)
kept here by default:
  * attention is `nn.MultiheadAttention(512, 1, dropout=0.1)`: one head, and dropout 0.1 on the attention
    weights; the feed-forward block is linear1 512 -> 512, ReLU, dropout, linear2 512 -> 512;
  * ONE layer's weights serve both modalities: the encoder calls the same layer on (audio, visual) and on
    (visual, audio) (`share_modalities=True`);
  * every layer is fed the embedded inputs, not the previous layer's output, so with several layers only the
    last one counts (`stacking="official"`); `stacking="stacked"` chains them as a usual transformer does
    (JoMoLD); `stacking="sequential"` chains them too, and within a layer the visual update attends to the
    audio that the same layer has just updated (VALOR, Franklin905/VALOR `main_network.py` `Encoder`);
  * the encoder's own `norm1`/`norm2` exist in the checkpoint but are never applied (norm=None): not
    created here;
  * `cross_attention=False` drops the cross-modal term, x <- LayerNorm(x + Dropout(SelfAttention(x))), as
    JoMoLD's `HANLayer(..., with_ca=False)` (MCG-NJU/JoMoLD `nets/net_audiovisual.py`): its noise estimator
    trains so, and its denoising forward runs so on the parameters of a model built with it (the unused
    `cm_attn` weights are then simply not read).

Param names mirror the official ones: `layers_{i}/{self_attn,cm_attn}/{query,key,value,out}`,
`layers_{i}/{linear1,linear2,norm1,norm2}` (with `share_modalities=False`: `audio_layers_{i}` and
`visual_layers_{i}`).
"""

import flax.linen as nn
import jax

from avvp_jax.errors import InputError
from avvp_jax.models import layers

STACKINGS = ("official", "stacked", "sequential")


class HANLayer(nn.Module):
  """One hybrid attention layer: [B, T, D] segments attend to themselves and to the other modality.

  Attributes:
    num_heads: attention heads (official 1).
    ffn_dim: hidden width of the feed-forward block; 0: the input width D (official, 512).
    dropout: dropout on both attention outputs, inside and after the feed-forward block (official 0.1).
    attention_dropout: dropout on the attention weights (official 0.1).
    cross_attention: attend to the other modality (official); False: self-attention only (JoMoLD's with_ca).
    dtype: computation dtype.
  """

  num_heads: int = 1
  ffn_dim: int = 0
  dropout: float = 0.1
  attention_dropout: float = 0.1
  cross_attention: bool = True
  dtype: layers.Dtype | None = None

  @nn.compact
  def __call__(self, x_BxTxD: jax.Array, other_BxSxD: jax.Array, *, train: bool) -> jax.Array:
    dim = x_BxTxD.shape[-1]
    ffn_dim = self.ffn_dim or dim
    attention = lambda name: layers.MultiHeadAttention(
        self.num_heads, self.attention_dropout, packed_init=True, dtype=self.dtype, name=name
    )
    drop = lambda y: nn.Dropout(self.dropout)(y, deterministic=not train)
    residual_BxTxD = x_BxTxD
    if self.cross_attention:
      cross_BxTxD, _ = attention("cm_attn")(x_BxTxD, other_BxSxD, other_BxSxD, train=train)
      residual_BxTxD = residual_BxTxD + drop(cross_BxTxD)
    self_BxTxD, _ = attention("self_attn")(x_BxTxD, x_BxTxD, x_BxTxD, train=train)
    x_BxTxD = layers.layer_norm("norm1", self.dtype)(residual_BxTxD + drop(self_BxTxD))
    hidden_BxTxF = nn.relu(
        layers.torch_dense(ffn_dim, dim, name="linear1", dtype=self.dtype)(x_BxTxD)
    )
    ffn_BxTxD = layers.torch_dense(dim, ffn_dim, name="linear2", dtype=self.dtype)(
        drop(hidden_BxTxF)
    )
    return layers.layer_norm("norm2", self.dtype)(x_BxTxD + drop(ffn_BxTxD))


class HANEncoder(nn.Module):
  """A stack of HAN layers over the audio and visual segments.

  Built from `config.model.han` (`HANEncoder(**config.model.han, dtype=...)`): its keys are these attributes.

  Attributes:
    num_layers: HAN layers (official 1).
    num_heads, ffn_dim, dropout, attention_dropout: per layer, see `HANLayer` (ffn_dim 0: the input width).
    stacking: "official" (each layer reads the embedded inputs; the last layer's output is returned),
      "stacked" (each layer reads the previous layer's outputs) or "sequential" (as "stacked", but the visual
      update reads the audio the same layer has just updated: VALOR).
    share_modalities: one set of layer weights for both modalities (official) or one per modality.
    cross_attention: per layer, see `HANLayer` (False: JoMoLD's noise estimator, self-attention only).
    dtype: computation dtype.
  """

  num_layers: int = 1
  num_heads: int = 1
  ffn_dim: int = 0
  dropout: float = 0.1
  attention_dropout: float = 0.1
  stacking: str = "official"
  share_modalities: bool = True
  cross_attention: bool = True
  dtype: layers.Dtype | None = None

  @nn.compact
  def __call__(
      self, audio_BxTxD: jax.Array, visual_BxTxD: jax.Array, *, train: bool
  ) -> tuple[jax.Array, jax.Array]:
    """Returns the encoded (audio_BxTxD, visual_BxTxD)."""
    if self.stacking not in STACKINGS:
      raise InputError(
          f"config.model.han.stacking {self.stacking!r} is unknown: use one of {STACKINGS}."
      )
    if self.num_layers < 1:
      raise InputError(f"config.model.han.num_layers is {self.num_layers}: use 1 or more.")
    make = lambda name: HANLayer(
        num_heads=self.num_heads,
        ffn_dim=self.ffn_dim,
        dropout=self.dropout,
        attention_dropout=self.attention_dropout,
        cross_attention=self.cross_attention,
        dtype=self.dtype,
        name=name,
    )
    audio_out, visual_out = audio_BxTxD, visual_BxTxD
    for i in range(self.num_layers):
      if self.share_modalities:
        audio_layer = visual_layer = make(f"layers_{i}")
      else:
        audio_layer, visual_layer = make(f"audio_layers_{i}"), make(f"visual_layers_{i}")
      if self.stacking == "official":
        audio_in, visual_in = audio_BxTxD, visual_BxTxD
      else:
        audio_in, visual_in = audio_out, visual_out
      audio_out = audio_layer(audio_in, visual_in, train=train)
      visual_out = visual_layer(
          visual_in, audio_out if self.stacking == "sequential" else audio_in, train=train
      )
    return audio_out, visual_out
