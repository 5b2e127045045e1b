"""CVCM's class-token co-occurrence head (Lin et al., "Exploring Cross-Video and Cross-Modality Signals for
Weakly-Supervised Audio-Visual Video Parsing", NeurIPS 2021; GenjiB/CM-Co-Occurrence-AVVP `nets/net_trans.py`).

CVCM replaces the segment classifier of HAN's MMIL pooling (`fc_prob`) by class tokens: each encoded segment
of each modality is mapped to C tokens of width K (one per class), one HAN layer runs across the C tokens of a
segment, attending to its own modality's tokens (self-attention) and to the other modality's tokens of the
same segment (cross-modal attention), so that classes that occur together can inform each other; a shared
per-modality Dense then scores each token:

  tokens_m[t]  = ReLU(fc_occ_class_m(f[t, m])) reshaped to [C, K]              m in (audio, visual)
  tokens_a[t], tokens_v[t] <- HANEncoder(tokens_a[t], tokens_v[t])             over the C tokens, per segment
  logit[t, m, c] = fc_occ_prob_m(tokens_m[t, c])                                [B, T, 2, C]

The official `MMIL_Net` calls `av_class_encoder = Encoder(HANLayer(d_model=occ_dim, nhead=1,
dim_feedforward=occ_dim, dropout=prob_drop_occ), num_layers=1)` on `[B * T, 25, occ_dim]` tokens (the layer
permutes them so the 25 classes are the sequence): one layer's weights serve both modalities, its attention
weights dropped with the same rate. Parameter names mirror the official ones. The official module also
defines `co_occurrence`, `fc_occ_{a,v,av}_{q,k,v}`, `fc_occ_class_av`, `frame_att_encoder`,
`modality_encoder`, `fc_occ_frame_prob` and `fc_occ_modality_prob`, which its forward never calls: not
created here (as HAN's unused encoder norms).

`MMILDecoder(class_token_dim=K)` builds this head in place of `fc_prob` (avvp_jax/models/mmil.py).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from avvp_jax.models import han
from avvp_jax.models import layers


class ClassTokenCoOccurrence(nn.Module):
  """Segment logits `[B, T, 2, C]` from per-segment class tokens of both modalities (module docstring).

  Attributes:
    num_classes: C, one token per class.
    token_dim: K, the width of a class token (official --occ_dim; run.sh 128).
    dropout: the token HAN layer's dropout, on its attention weights, attention outputs and feed-forward
      block (official --prob_drop_occ; run.sh 0.25).
    dtype: computation dtype.
  """

  num_classes: int
  token_dim: int = 128
  dropout: float = 0.25
  dtype: layers.Dtype | None = None

  @nn.compact
  def __call__(self, audio_BxTxD: jax.Array, visual_BxTxD: jax.Array, *, train: bool) -> jax.Array:
    """Returns the segment logits `[B, T, 2, C]` (audio, visual) before the sigmoid, float32."""
    batch, num_segments, dim = audio_BxTxD.shape
    classes, width = self.num_classes, self.token_dim

    def tokens(name: str, x_BxTxD: jax.Array) -> jax.Array:
      x_BxTxCK = layers.torch_dense(classes * width, dim, name=name, dtype=self.dtype)(x_BxTxD)
      return nn.relu(x_BxTxCK).reshape(batch * num_segments, classes, width)

    audio_NxCxK = tokens("fc_occ_class_a", audio_BxTxD)
    visual_NxCxK = tokens("fc_occ_class_v", visual_BxTxD)
    audio_NxCxK, visual_NxCxK = han.HANEncoder(
        num_layers=1,
        num_heads=1,
        ffn_dim=width,
        dropout=self.dropout,
        attention_dropout=self.dropout,
        dtype=self.dtype,
        name="av_class_encoder",
    )(audio_NxCxK, visual_NxCxK, train=train)

    def score(name: str, tokens_NxCxK: jax.Array) -> jax.Array:
      logit_NxCx1 = layers.torch_dense(1, width, name=name, dtype=self.dtype)(tokens_NxCxK)
      return logit_NxCx1.astype(jnp.float32).reshape(batch, num_segments, classes)

    return jnp.stack(
        [score("fc_occ_prob_a", audio_NxCxK), score("fc_occ_prob_v", visual_NxCxK)], axis=2
    )
