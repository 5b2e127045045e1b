"""Independent numpy forwards of the AVVP models, written from the papers' equations, for the model tests.

Each function takes a nested dict of numpy params (a Flax param tree converted with `to_numpy`) and computes
in float64. Shared by the tests/models_*_test.py files; not a test itself.
"""

import jax
import ml_collections
import numpy as np

from configs import common

MICRO_DIMS = dict(audio=6, frames=10, motion=4)


def micro_model_config(decoder: str = "mmil", motion: bool = True) -> ml_collections.ConfigDict:
  """The default model config at micro size: D = 16, inputs 6/10/4 wide (motion 0 when `motion` is False)."""
  config = common.get_config().model
  config.decoder = decoder
  config.hidden_dim = 16
  config.input_dims.audio = MICRO_DIMS["audio"]
  config.input_dims.frames = MICRO_DIMS["frames"]
  config.input_dims.motion = MICRO_DIMS["motion"] if motion else 0
  return config


def micro_inputs(
    seed: int = 0, batch: int = 2, seconds: int = 10, raw_frames: bool = True, motion: bool = True
):
  """Random (audio, frames, motion) at micro width; frames [B, 8T, Df] when raw, else [B, T, Df]."""
  rng = np.random.default_rng(seed)
  audio = rng.normal(size=(batch, seconds, MICRO_DIMS["audio"])).astype(np.float32)
  frame_steps = seconds * 8 if raw_frames else seconds
  frames = rng.normal(size=(batch, frame_steps, MICRO_DIMS["frames"])).astype(np.float32)
  motion_array = (
      rng.normal(size=(batch, seconds, MICRO_DIMS["motion"])).astype(np.float32) if motion else None
  )
  return audio, frames, motion_array


def to_numpy(tree):
  return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def dense(p, x):
  return x @ p["kernel"] + p["bias"]


def layer_norm(p, x, eps=1e-5):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def softmax(x, axis):
  e = np.exp(x - x.max(axis=axis, keepdims=True))
  return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def relu(x):
  return np.maximum(x, 0.0)


def attention(p, query, key, value, num_heads):
  """Multi-head scaled dot-product attention; returns (out [B, Q, D], logits [B, H, Q, K])."""
  b, nq, d = query.shape
  nk = key.shape[1]
  hd = d // num_heads
  q = dense(p["query"], query).reshape(b, nq, num_heads, hd).transpose(0, 2, 1, 3)
  k = dense(p["key"], key).reshape(b, nk, num_heads, hd).transpose(0, 2, 1, 3)
  v = dense(p["value"], value).reshape(b, nk, num_heads, hd).transpose(0, 2, 1, 3)
  logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd)
  heads = softmax(logits, axis=-1) @ v  # [B, H, Q, hd]
  out = dense(p["out"], heads.transpose(0, 2, 1, 3).reshape(b, nq, d))
  return out, logits


def embed(p, audio, frames, motion):
  """fc_a(audio); fc_v on every frame then the mean of each second's 8; fc_fusion([frames; fc_st(motion)])."""
  b, t, _ = audio.shape
  a = dense(p["fc_a"], audio)
  f = dense(p["fc_v"], frames)
  if f.shape[1] == 8 * t:
    f = f.reshape(b, t, 8, -1).mean(axis=2)
  if motion is None:
    return a, f
  return a, dense(p["fc_fusion"], np.concatenate([f, dense(p["fc_st"], motion)], axis=-1))


def han_layer(p, x, y, num_heads):
  """HAN eq.: x + CMA(x, y) + SA(x), LayerNorm; then x + FFN(x), LayerNorm."""
  cross, _ = attention(p["cm_attn"], x, y, y, num_heads)
  self_, _ = attention(p["self_attn"], x, x, x, num_heads)
  x = layer_norm(p["norm1"], x + cross + self_)
  return layer_norm(p["norm2"], x + dense(p["linear2"], relu(dense(p["linear1"], x))))


def han_encoder(p, a, v, num_layers, num_heads=1, stacking="official", share=True):
  out_a, out_v = a, v
  for i in range(num_layers):
    pa = p[f"layers_{i}"] if share else p[f"audio_layers_{i}"]
    pv = p[f"layers_{i}"] if share else p[f"visual_layers_{i}"]
    in_a, in_v = (a, v) if stacking == "official" else (out_a, out_v)
    out_a, out_v = han_layer(pa, in_a, in_v, num_heads), han_layer(pv, in_v, in_a, num_heads)
  return out_a, out_v


def mmil(p, a, v):
  """HAN eq. 5-10, written per modality with explicit sums."""
  probs, temporal, logits_av = {}, {}, {}
  for name, f in (("audio", a), ("visual", v)):
    probs[name] = sigmoid(dense(p["fc_prob"], f))  # [B, T, C]
    temporal[name] = softmax(dense(p["fc_frame_att"], f), axis=1)  # over time
    logits_av[name] = dense(p["fc_av_att"], f)
  w_audio = np.exp(logits_av["audio"]) / (np.exp(logits_av["audio"]) + np.exp(logits_av["visual"]))
  w_av = {"audio": w_audio, "visual": 1.0 - w_audio}
  video = sum((temporal[m] * w_av[m] * probs[m]).sum(axis=1) for m in ("audio", "visual"))
  return {
      "video_prob": video,
      "audio_prob": (temporal["audio"] * probs["audio"]).sum(axis=1),
      "visual_prob": (temporal["visual"] * probs["visual"]).sum(axis=1),
      "segment_audio_prob": probs["audio"],
      "segment_visual_prob": probs["visual"],
      "audio_filter_prob": video,
      "visual_filter_prob": video,
  }


def leap_block(p, q, x, num_heads, variant):
  """LEAP block; returns (updated queries [B, C, D], logits [B, H, C, T])."""
  ffn = lambda z: dense(p["ffn_out"], relu(dense(p["ffn_in"], z)))
  if variant == "official":
    attended, _ = attention(p["cross_attn"], layer_norm(p["attn_norm"], q), x, x, num_heads)
    q = q + attended
    _, logits = attention(p["cross_attn"], q, x, x, num_heads)
    return q + ffn(layer_norm(p["ffn_norm"], q)), logits
  attended, logits = attention(p["cross_attn"], q, x, x, num_heads)
  q = layer_norm(p["attn_norm"], q + attended)
  return layer_norm(p["ffn_norm"], q + ffn(q)), logits


def leap(p, a, v, table, num_blocks=2, num_heads=8, variant="official"):
  """LEAP eq. 2-8 for both modalities; `table` is the [C, D_label] label embedding."""
  queries = dense(p["fc_l"], table)
  out = {}
  for name, segments, head in (("audio", a, "fc_la"), ("visual", v, "fc_lv")):
    q = np.broadcast_to(queries, (segments.shape[0],) + queries.shape)
    for i in range(num_blocks):
      q, logits = leap_block(p[f"{name}_blocks_{i}"], q, segments, num_heads, variant)
    out[f"segment_{name}_prob"] = sigmoid(logits.mean(axis=1).transpose(0, 2, 1))
    out[f"{name}_prob"] = sigmoid(dense(p[head], q)[..., 0])
  hit_a = out["audio_prob"] >= 0.5
  hit_v = out["visual_prob"] >= 0.5
  out["video_prob"] = np.logical_or(hit_a, hit_v).astype(np.float64)
  return out
