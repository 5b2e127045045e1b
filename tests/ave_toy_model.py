"""A TEST-ONLY tiny AVE model and its loss: the proof that the AVE task's seams hold before the real models land.

`ToyAVEModel` scores each segment's 29 labels from its audio and its spatially pooled visual map and hands the
evaluator `segment_class` by the argmax rule (`decisions.argmax_rule`); `compute_loss` is the masked segment
cross-entropy, or (weak batches, which hold no segment labels) the cross-entropy of the segment-mean scores
against the video label. `config.loss.name = "ave_toy_model"` finds the loss through the task's dispatch;
`build` replaces `avvp_jax.models.build_model` in the tests (the registry builds LLP-shaped models today).
"""

import flax.linen as nn
import jax.numpy as jnp
import optax

from avvp_jax.tasks.ave import decisions


class ToyAVEModel(nn.Module):
  """audio [B, T, 128], visual [B, T, 7, 7, 512] -> segment_logits [B, T, C], segment_class [B, T]."""

  num_labels: int = 29

  @nn.compact
  def __call__(self, audio, visual, train=False, **unused):
    del train, unused
    pooled = jnp.mean(visual, axis=(2, 3))  # [B, T, 512]
    logits = nn.Dense(self.num_labels, name="audio")(audio) + nn.Dense(
        self.num_labels, name="visual"
    )(pooled)
    return {"segment_logits": logits, "segment_class": decisions.argmax_rule(logits)}


def build(model_config, meta, dtype=None):
  """Stands in for `avvp_jax.models.build_model`."""
  del model_config, dtype
  return ToyAVEModel(num_labels=meta.num_classes)


def compute_loss(loss_config, outputs, batch):
  del loss_config
  mask = batch["mask"]
  if "segment_label" in batch:
    ce = optax.softmax_cross_entropy(outputs["segment_logits"], batch["segment_label"]).mean(-1)
    name = "segment_ce"
  else:
    ce = optax.softmax_cross_entropy(outputs["segment_logits"].mean(1), batch["video_label"])
    name = "video_ce"
  loss = jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask), 1.0)
  return loss, {name: loss}
