"""LEAP: label semantic-based projection decoding (Zhou et al., "Label-anticipated Event Disentanglement for
Audio-Visual Video Parsing", ECCV 2024, Sec. 3.2).

The C = 25 class-name embeddings L [C, D_label] are projected to queries Q = fc_l(L) [C, D]. For each
modality m (audio, visual) with encoded segments F_m [B, T, D], N = 2 blocks iterate

  Q <- Q + MultiHeadCrossAttention(Q, F_m, F_m)        (eq. 2-3, 8 heads)
  Q <- Q + FFN(Q)                                      (eq. 4-5, FFN = W2 ReLU(W1 .))

each sublayer with dropout, a residual and LayerNorm. Then

  segment_m_prob [B, T, C] = sigmoid(mean over heads of the last block's attention logits q.k / sqrt(d))  (eq. 6)
  m_prob         [B, C]    = sigmoid(fc_la / fc_lv(Q_m))    the video-level probability per modality     (eq. 7)
  video_prob     [B, C]    = union of the thresholded audio and visual predictions                     (eq. 8)

Two variants (`variant`):
  "official" (default): what jasongief/LEAP (`nets/Transformer.py`, `VanillaTransformerLayer`, the code behind
    the paper's numbers) computes: pre-norm sublayers x + Dropout(f(LayerNorm(x))) with only the query
    normalised (keys/values are the raw segments); dropout 0.2 on sublayer outputs and inside the FFN and 0.1
    on the attention weights; and the eq. 6 logits come from a SECOND pass of the block's attention, with the
    same weights, from the already-updated queries (after the attention residual, before the FFN; the query
    is not normalised in that pass).
  "paper": the text's post-norm form x <- LayerNorm(x + Dropout(f(x))), the logits being those of the block's
    own attention pass (from the block's input queries).

Outputs (cf. jasongief/LEAP `main_network_temporal_add_label.py` `AVVPNet.forward` and `main_leap.py` `eval`):
  * `video_prob` is the official `global_prob`: the 0/1 union a + v - a * v of a = [audio_prob >= 0.5] and
    v = [visual_prob >= 0.5] (`official.THRESHOLD`). It is piecewise constant, so its BCE (the
    official loss3) passes no gradient, exactly as in PyTorch, where the thresholding leaves the graph.
    `video_prob_soft` = 1 - (1 - p_a)(1 - p_v) is offered for losses that want a differentiable whole-video
    term.
  * the official evaluation gates the segment predictions of BOTH modalities with that union
    (`Pa = (a_frame_prob >= 0.5) * o`, `Pv = ... * o`, with `o = global_prob >= 0.5`), so by default
    (`filter="union"`) `audio_filter_prob = visual_filter_prob = video_prob`; `filter="modality"` gates each
    modality by its own video-level probability instead.

Param names: `fc_l`, `fc_la`, `fc_lv` as in the official code; block i of the audio (visual) branch is
`audio_blocks_{i}` (`visual_blocks_{i}`; official `la_cma_network.{i}` / `lv_cma_network.{i}`) holding
`cross_attn/{query,key,value,out}` (official `self_attn.linears.{0,1,2,3}`), `ffn_in`/`ffn_out` (official
`feed_forward.w_1`/`w_2`) and `attn_norm`/`ffn_norm` (official `sublayer.0.norm`/`sublayer.1.norm`); with
learned label embeddings, `label_embedding` [C, learned_label_dim].
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from avvp_jax import official
from avvp_jax.errors import InputError
from avvp_jax.models import label_embeddings as label_embeddings_lib
from avvp_jax.models import layers

VARIANTS = ("official", "paper")
FILTERS = ("union", "modality")


class LEAPBlock(nn.Module):
  """One label-to-segment block: cross-attention from [B, C, D] label queries to [B, T, D] segments, then FFN.

  Attributes:
    num_heads: attention heads (official 8).
    ffn_dim: FFN hidden width; 0: the query width D (official, 512).
    dropout: dropout on the sublayer outputs and inside the FFN (official 0.2).
    attention_dropout: dropout on the attention weights (official 0.1).
    variant: "official" (pre-norm, logits from a second pass) or "paper" (post-norm).
    dtype: computation dtype.
  """

  num_heads: int = 8
  ffn_dim: int = 0
  dropout: float = 0.2
  attention_dropout: float = 0.1
  variant: str = "official"
  dtype: layers.Dtype | None = None

  @nn.compact
  def __call__(
      self, labels_BxCxD: jax.Array, segments_BxTxD: jax.Array, *, train: bool
  ) -> tuple[jax.Array, jax.Array]:
    """Returns the updated labels_BxCxD and the attention logits_BxHxCxT (float32, pre-softmax)."""
    dim = labels_BxCxD.shape[-1]
    ffn_dim = self.ffn_dim or dim
    attention = layers.MultiHeadAttention(
        self.num_heads,
        self.attention_dropout,
        packed_init=False,
        dtype=self.dtype,
        name="cross_attn",
    )
    attn_norm = layers.layer_norm("attn_norm", self.dtype)
    ffn_norm = layers.layer_norm("ffn_norm", self.dtype)
    drop = lambda y: nn.Dropout(self.dropout)(y, deterministic=not train)

    def ffn(x_BxCxD):
      hidden_BxCxF = nn.relu(
          layers.torch_dense(ffn_dim, dim, name="ffn_in", dtype=self.dtype)(x_BxCxD)
      )
      return layers.torch_dense(dim, ffn_dim, name="ffn_out", dtype=self.dtype)(drop(hidden_BxCxF))

    if self.variant == "official":
      attended_BxCxD, _ = attention(
          attn_norm(labels_BxCxD), segments_BxTxD, segments_BxTxD, train=train
      )
      labels_BxCxD = labels_BxCxD + drop(attended_BxCxD)
      _, logits_BxHxCxT = attention(labels_BxCxD, segments_BxTxD, segments_BxTxD, train=train)
      labels_BxCxD = labels_BxCxD + drop(ffn(ffn_norm(labels_BxCxD)))
    elif self.variant == "paper":
      attended_BxCxD, logits_BxHxCxT = attention(
          labels_BxCxD, segments_BxTxD, segments_BxTxD, train=train
      )
      labels_BxCxD = attn_norm(labels_BxCxD + drop(attended_BxCxD))
      labels_BxCxD = ffn_norm(labels_BxCxD + drop(ffn(labels_BxCxD)))
    else:
      raise InputError(
          f"config.model.leap.variant {self.variant!r} is unknown: use one of {VARIANTS}."
      )
    return labels_BxCxD, logits_BxHxCxT


class LEAPDecoder(nn.Module):
  """LEAP decoding of [B, T, D] audio and visual segments into the output dict (see the module docstring).

  Built as `LEAPDecoder(**config.model.leap, num_classes=..., label_table=..., dtype=...)`: the section's keys
  are these attributes (all but num_classes, label_table and dtype; `models.build_model` loads the table for
  the task's class names).

  Attributes:
    num_classes: C, the task's classes; the label table's rows.
    num_blocks: N blocks per modality (official 2).
    num_heads, ffn_dim, dropout, attention_dropout, variant: per block, see `LEAPBlock` (ffn_dim 0: D).
    label_embeddings: "packaged", "learned", a .npy path or a GloVe text path (see `label_embeddings.py`).
    label_table: the [C, L] class-name embeddings `label_embeddings` names (None with "learned").
    learned_label_dim: width of the learned table ("learned" only).
    filter: "union" (official) or "modality": which video-level probabilities gate segment predictions.
    dtype: computation dtype.
  """

  num_classes: int = 0
  num_blocks: int = 2
  num_heads: int = 8
  ffn_dim: int = 0
  dropout: float = 0.2
  attention_dropout: float = 0.1
  variant: str = "official"
  label_embeddings: str = label_embeddings_lib.PACKAGED
  learned_label_dim: int = label_embeddings_lib.PACKAGED_DIM
  label_table: Any = None
  filter: str = "union"
  dtype: layers.Dtype | None = None

  def label_queries_table(self) -> jax.Array:
    """The [C, D_label] label embeddings (a constant, or the learned parameter)."""
    if self.label_embeddings == label_embeddings_lib.LEARNED:
      return self.param(
          "label_embedding",
          nn.initializers.normal(stddev=1.0),
          (self.num_classes, self.learned_label_dim),
          jnp.float32,
      )
    if self.label_table is None:
      raise InputError(
          "LEAPDecoder was built without its label table: build it with avvp_jax.models.build_model, "
          "which loads config.model.leap.label_embeddings for the task's class names."
      )
    table_CxL = jnp.asarray(self.label_table, jnp.float32)
    if table_CxL.ndim != 2 or table_CxL.shape[0] != self.num_classes:
      raise InputError(
          f"LEAP's label table has shape {tuple(table_CxL.shape)}: expected [{self.num_classes}, L], "
          "one row per class."
      )
    return table_CxL

  @nn.compact
  def __call__(
      self, audio_BxTxD: jax.Array, visual_BxTxD: jax.Array, *, train: bool
  ) -> dict[str, jax.Array]:
    if self.variant not in VARIANTS:
      raise InputError(
          f"config.model.leap.variant {self.variant!r} is unknown: use one of {VARIANTS}."
      )
    if self.filter not in FILTERS:
      raise InputError(
          f"config.model.leap.filter {self.filter!r} is unknown: use one of {FILTERS}."
      )
    if self.num_blocks < 1:
      raise InputError(f"config.model.leap.num_blocks is {self.num_blocks}: use 1 or more.")
    batch, _, dim = audio_BxTxD.shape
    table_CxL = self.label_queries_table()
    queries_CxD = layers.torch_dense(dim, table_CxL.shape[-1], name="fc_l", dtype=self.dtype)(
        table_CxL
    )
    queries_BxCxD = jnp.broadcast_to(queries_CxD, (batch,) + queries_CxD.shape)

    def branch(prefix: str, segments_BxTxD: jax.Array) -> tuple[jax.Array, jax.Array]:
      labels_BxCxD, logits_BxHxCxT = queries_BxCxD, None
      for i in range(self.num_blocks):
        block = LEAPBlock(
            num_heads=self.num_heads,
            ffn_dim=self.ffn_dim,
            dropout=self.dropout,
            attention_dropout=self.attention_dropout,
            variant=self.variant,
            dtype=self.dtype,
            name=f"{prefix}_blocks_{i}",
        )
        labels_BxCxD, logits_BxHxCxT = block(labels_BxCxD, segments_BxTxD, train=train)
      return labels_BxCxD, logits_BxHxCxT.mean(axis=1).transpose(0, 2, 1)

    audio_labels_BxCxD, audio_logits_BxTxC = branch("audio", audio_BxTxD)
    visual_labels_BxCxD, visual_logits_BxTxC = branch("visual", visual_BxTxD)
    video_head = lambda name, x: layers.torch_dense(1, dim, name=name, dtype=self.dtype)(x)[..., 0]
    audio_prob_BxC = jax.nn.sigmoid(video_head("fc_la", audio_labels_BxCxD).astype(jnp.float32))
    visual_prob_BxC = jax.nn.sigmoid(video_head("fc_lv", visual_labels_BxCxD).astype(jnp.float32))
    audio_hit = (audio_prob_BxC >= official.THRESHOLD).astype(jnp.float32)
    visual_hit = (visual_prob_BxC >= official.THRESHOLD).astype(jnp.float32)
    video_prob_BxC = jax.lax.stop_gradient(audio_hit + visual_hit - audio_hit * visual_hit)
    if self.filter == "union":
      audio_filter_BxC = visual_filter_BxC = video_prob_BxC
    else:
      audio_filter_BxC, visual_filter_BxC = audio_prob_BxC, visual_prob_BxC
    return {
        "video_prob": video_prob_BxC,
        "video_prob_soft": 1.0 - (1.0 - audio_prob_BxC) * (1.0 - visual_prob_BxC),
        "audio_prob": audio_prob_BxC,
        "visual_prob": visual_prob_BxC,
        "segment_audio_prob": jax.nn.sigmoid(audio_logits_BxTxC),
        "segment_visual_prob": jax.nn.sigmoid(visual_logits_BxTxC),
        "segment_audio_logits": audio_logits_BxTxC,
        "segment_visual_logits": visual_logits_BxTxC,
        "audio_filter_prob": audio_filter_BxC,
        "visual_filter_prob": visual_filter_BxC,
        "audio_label_embedding": audio_labels_BxCxD.astype(jnp.float32),  # official la_f [B, C, D]
        "visual_label_embedding": visual_labels_BxCxD.astype(
            jnp.float32
        ),  # official lv_f [B, C, D]
    }
