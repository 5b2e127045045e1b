"""The official decision rules of AVE models: scores -> one label per segment (`segment_class`).

Each AVE model keeps its paper's rule and hands the evaluator `segment_class` int32 [B, T] (0-27 an event
class, 28 = `annotations.BACKGROUND`), computed by one of these pure jnp functions:

  argmax_rule       29-way argmax per segment: AVE and DMRN (AVE-ECCV18 `compute_acc`), PSP (PSP_CVPR_2021
                    measure.py `compute_acc`), fully and weakly supervised alike.
  event_gate_rule   event / background per segment by `sigmoid(event_logit) > 0.5`, every event segment given
                    the video's one class (argmax of its class scores): CMBS (`compute_accuracy_supervised` of
                    marmot-xy/CMBS supv_main.py and weakly_main.py) and CPSP.

CMBS's weak evaluation calls the same function with its audio-visual gate, a probability in (0, 1), in place
of the event logit: the sigmoid of a positive number exceeds 0.5, so every segment is foreground and every
segment gets the video's class. Pass that gate as `event_logit` to reproduce it.

Ties go to the lowest index, as numpy's and PyTorch's argmax do on CPU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from avvp_jax.tasks.ave import annotations

BACKGROUND = annotations.BACKGROUND


def argmax_rule(segment_scores: jax.Array) -> jax.Array:
  """The label of each segment by the argmax of its 29 scores (28 = background).

  Args:
    segment_scores: [B, T, 29] logits or probabilities (any monotone map gives the same labels).

  Returns:
    segment_class [B, T] int32.
  """
  return jnp.argmax(segment_scores, axis=-1).astype(jnp.int32)


def event_gate_rule(event_logit: jax.Array, class_scores: jax.Array) -> jax.Array:
  """Background where `sigmoid(event_logit) <= 0.5`, else the video's class (the argmax of `class_scores`).

  Args:
    event_logit: [B, T] per-segment event logits (CMBS weak: its gate probabilities, see the module docstring).
    class_scores: [B, K] the video's class scores (K = 28 event classes in CMBS).

  Returns:
    segment_class [B, T] int32.
  """
  video_class = jnp.argmax(class_scores, axis=-1).astype(jnp.int32)
  is_event = jax.nn.sigmoid(event_logit.astype(jnp.float32)) > 0.5
  return jnp.where(is_event, video_class[:, None], jnp.int32(BACKGROUND))
