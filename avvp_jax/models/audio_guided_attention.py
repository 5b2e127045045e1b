"""CMBS's audio-guided spatial-channel attention: a [7, 7] map of visual features per segment -> one vector.

As coded in marmot-xy/CMBS `model/models.py`, `New_Audio_Guided_Attention` (whose docstring says it differs
from the paper's figure). With V the segment's map as N = H W vectors of width C and a its audio vector:

  1. visual self-attention: S = LayerNorm(V + Dropout(softmax(Q K^T) V')), with Q, K = `video_query`,
     `video_key` (C -> C / 4) and V' = `video_value` (C -> C) of V; no 1/sqrt(d) scaling;
  2. self spatial attention on S: a map softmax_N(tanh(w . (relu(`affine_video_3` S_n)
     * relu(`affine_video_ave` mean_n S_n)))) pools S into s (w: `ave_v_att`);
  3. channel attention: g = sigmoid(`affine_v_c_att` relu(`affine_bottleneck` mean_n(relu(`affine_audio_1` a)
     * relu(`affine_video_1` S_n)))); the channel-attended map is V_c = V * (1 + g): the RAW map, scaled;
  4. audio spatial attention on V_c: a map softmax_N(tanh(u . (relu(`affine_video_2` V_c,n)
     * relu(`affine_audio_2` a)))) pools V_c into v (u: `affine_v_s_att`);
  5. out = v + beta * sigmoid(s) * v.

The official module also builds `ave_bottleneck` (Linear 512 -> 256), which its forward never calls: not
created here. Dropout 0.2 acts on the self-attention output only. The softmaxes run in float32 (float64 when
computing in float64) whatever the computation dtype. Param names mirror the official ones.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from avvp_jax.models import layers


def _softmax(logits: jax.Array) -> jax.Array:
  """Softmax over the last axis in at least float32, returned in the logits' dtype."""
  wide = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
  return jax.nn.softmax(wide, axis=-1).astype(logits.dtype)


class AudioGuidedAttention(nn.Module):
  """Audio-guided spatial-channel attention over each segment's feature map.

  Attributes:
    beta: weight of the self-attention gate in step 5 (official: supervised 0.4, weak 0.5).
    hidden_dim: width of the bottleneck and of the spatial-attention queries (official 256).
    latent_dim: the query and key width is C / latent_dim (official 4).
    dropout: dropout on the self-attention output (official 0.2).
    dtype: computation dtype.
  """

  beta: float = 0.4
  hidden_dim: int = 256
  latent_dim: int = 4
  dropout: float = 0.2
  dtype: layers.Dtype | None = None

  @nn.compact
  def __call__(
      self, visual_BxTxHxWxC: jax.Array, audio_BxTxA: jax.Array, *, train: bool
  ) -> jax.Array:
    """Pools each segment's map under the guidance of its audio.

    Args:
      visual_BxTxHxWxC: the visual feature maps [B, T, H, W, C].
      audio_BxTxA: the audio features [B, T, A].
      train: training mode (dropout).

    Returns:
      The attended visual features [B, T, C].
    """
    batch, seconds, height, width, dim = visual_BxTxHxWxC.shape
    audio_dim = audio_BxTxA.shape[-1]
    dense = lambda features, fan_in, name: layers.torch_dense(
        features, fan_in, name=name, dtype=self.dtype
    )
    visual_BxTxNxC = visual_BxTxHxWxC.reshape(batch, seconds, height * width, dim)
    audio_BxTx1xA = audio_BxTxA[:, :, None, :]

    # 1. Visual self-attention over the N positions of each segment.
    query_BxTxNxL = dense(dim // self.latent_dim, dim, "video_query")(visual_BxTxNxC)
    key_BxTxNxL = dense(dim // self.latent_dim, dim, "video_key")(visual_BxTxNxC)
    value_BxTxNxC = dense(dim, dim, "video_value")(visual_BxTxNxC)
    energy_BxTxNxN = jnp.einsum("btnl,btml->btnm", query_BxTxNxL, key_BxTxNxL)
    attended_BxTxNxC = jnp.einsum("btnm,btmc->btnc", _softmax(energy_BxTxNxN), value_BxTxNxC)
    attended_BxTxNxC = nn.Dropout(self.dropout)(attended_BxTxNxC, deterministic=not train)
    self_BxTxNxC = layers.layer_norm("norm", self.dtype)(visual_BxTxNxC + attended_BxTxNxC)

    def pool(map_BxTxNxC, query_BxTxNxH, guide_BxTx1xH, name):
      """softmax_N(tanh(Linear_1(query * guide))) pooling of the map: [B, T, C]."""
      logits_BxTxN = jnp.tanh(dense(1, self.hidden_dim, name)(query_BxTxNxH * guide_BxTx1xH))[
          ..., 0
      ]
      return jnp.einsum("btn,btnc->btc", _softmax(logits_BxTxN), map_BxTxNxC)

    # 2. Self spatial attention, guided by the segment's mean self-attended vector.
    average_BxTx1xH = nn.relu(
        dense(self.hidden_dim, dim, "affine_video_ave")(self_BxTxNxC.mean(axis=2, keepdims=True))
    )
    self_query_BxTxNxH = nn.relu(dense(self.hidden_dim, dim, "affine_video_3")(self_BxTxNxC))
    self_pooled_BxTxC = pool(self_BxTxNxC, self_query_BxTxNxH, average_BxTx1xH, "ave_v_att")

    # 3. Audio-guided channel attention, applied to the raw map.
    audio_query_BxTx1xC = nn.relu(dense(dim, audio_dim, "affine_audio_1")(audio_BxTx1xA))
    video_query_BxTxNxC = nn.relu(dense(dim, dim, "affine_video_1")(self_BxTxNxC))
    joint_BxTxC = (audio_query_BxTx1xC * video_query_BxTxNxC).mean(axis=2)
    bottleneck_BxTxH = nn.relu(dense(self.hidden_dim, dim, "affine_bottleneck")(joint_BxTxC))
    channel_BxTx1xC = jax.nn.sigmoid(
        dense(dim, self.hidden_dim, "affine_v_c_att")(bottleneck_BxTxH)
    )[:, :, None, :]
    channel_BxTxNxC = visual_BxTxNxC * (channel_BxTx1xC + 1)

    # 4. Audio-guided spatial attention over the channel-attended map.
    channel_query_BxTxNxH = nn.relu(dense(self.hidden_dim, dim, "affine_video_2")(channel_BxTxNxC))
    audio_query_BxTx1xH = nn.relu(
        dense(self.hidden_dim, audio_dim, "affine_audio_2")(audio_BxTx1xA)
    )
    pooled_BxTxC = pool(
        channel_BxTxNxC, channel_query_BxTxNxH, audio_query_BxTx1xH, "affine_v_s_att"
    )

    # 5. Gate by the self-attended summary.
    return pooled_BxTxC + self.beta * jax.nn.sigmoid(self_pooled_BxTxC) * pooled_BxTxC
