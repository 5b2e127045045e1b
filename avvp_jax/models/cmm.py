"""AVE-ECCV18's cross-modal matching network: two towers and the Euclidean distance of their embeddings.

Tian, Shi, Li, Duan and Xu, "Audio-Visual Event Localization in Unconstrained Videos", ECCV 2018, the
cross-modality localization task; YapengTian/AVE-ECCV18 `cmm_train.py` / `cmm_test.py` (`scmm_net`, Keras):

  v = Dense_64(leaky_relu_0.3(Dense_128(visual)))    visual: a segment's 512-d VGG-19 pool5 vector, the 7 x 7
                                                     map averaged (the released visual_feature_vec.h5)
  a = Dense_64(leaky_relu_0.3(Dense_128(audio)))     audio: its 128-d VGGish vector
  d(v, a) = sqrt(max(sum((v - a)^2), 1e-7))          Keras's `K.epsilon()` under the square root

Keras's Dense initialisation (Glorot-uniform kernels, zero biases); no normalisation, no dropout. The official
net sees one (visual, audio) pair at a time; here every pair of a clip's segments is measured at once.

Outputs (float32):
  visual_embedding, audio_embedding   [B, T, E]  the towers' outputs (E = embed_dim = 64)
  pair_distance                       [B, T]     d(v_t, a_t): each segment's own pair, what the loss reads
  cross_distance                      [B, T, T]  d(v_i, a_j): visual segment i against audio segment j, what the
                                                 A2V / V2A localization reads (tasks/ave/cross_modal.py)
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
KERAS_EPSILON = 1e-7  # K.epsilon(), the floor of the squared distance


class Tower(nn.Module):
  """Dense(hidden_dim), LeakyReLU(negative_slope), Dense(embed_dim): [..., D] -> [..., embed_dim]."""

  hidden_dim: int = 128
  embed_dim: int = 64
  negative_slope: float = 0.3
  dtype: Dtype | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    dense = lambda width, name: nn.Dense(
        width,
        kernel_init=nn.initializers.xavier_uniform(),  # Keras's glorot_uniform
        bias_init=nn.initializers.zeros,
        dtype=self.dtype,
        name=name,
    )
    x = dense(self.hidden_dim, "dense_0")(x)
    x = nn.leaky_relu(x, negative_slope=self.negative_slope)
    return dense(self.embed_dim, "dense_1")(x)


def euclidean_distance(x: jax.Array, y: jax.Array, epsilon: float = KERAS_EPSILON) -> jax.Array:
  """sqrt(max(sum((x - y)^2, last axis), epsilon)) in float32: the official `euclidean_distance`."""
  diff = x.astype(jnp.float32) - y.astype(jnp.float32)
  return jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(diff), axis=-1), epsilon))


class CrossModalMatcher(nn.Module):
  """The official two-tower distance net (module docstring).

  Attributes:
    hidden_dim: width of each tower's first Dense (official 128).
    embed_dim: width of the embeddings compared (official 64).
    negative_slope: the LeakyReLU's slope (official Keras alpha 0.3).
    epsilon: the floor of the squared distance (official `K.epsilon()`, 1e-7).
    dtype: computation dtype of the Dense layers; distances are float32.
  """

  hidden_dim: int = 128
  embed_dim: int = 64
  negative_slope: float = 0.3
  epsilon: float = KERAS_EPSILON
  dtype: Dtype | None = None

  @nn.compact
  def __call__(
      self, audio: jax.Array, visual: jax.Array, *, train: bool = False
  ) -> dict[str, jax.Array]:
    """Args: audio [B, T, 128]; visual [B, T, 7, 7, 512] maps (averaged over the grid) or [B, T, 512] vectors.
    `train` changes nothing (no dropout)."""
    del train
    visual_BxTxC = visual.mean(axis=(2, 3)) if visual.ndim == 5 else visual
    tower = lambda name: Tower(
        self.hidden_dim, self.embed_dim, self.negative_slope, dtype=self.dtype, name=name
    )
    visual_BxTxE = tower("visual")(visual_BxTxC)
    audio_BxTxE = tower("audio")(audio)
    cross_BxTxT = euclidean_distance(
        visual_BxTxE[:, :, None, :], audio_BxTxE[:, None, :, :], self.epsilon
    )
    return {
        "visual_embedding": visual_BxTxE.astype(jnp.float32),
        "audio_embedding": audio_BxTxE.astype(jnp.float32),
        "pair_distance": euclidean_distance(visual_BxTxE, audio_BxTxE, self.epsilon),
        "cross_distance": cross_BxTxT,
    }
