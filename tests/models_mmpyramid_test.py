"""Tests of avvp_jax.models.mmpyramid (MM-Pyramid encoder) against a numpy oracle written from its equations."""

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from avvp_jax import models
from avvp_jax.errors import InputError
from avvp_jax.models import layers
from avvp_jax.models import mmpyramid
from avvp_jax.tasks.llp import task as llp_task
import models_oracles as oracles

DIM = 16


def _segments(seed=0, batch=2, seconds=10):
  rng = np.random.default_rng(seed)
  return tuple(rng.normal(size=(batch, seconds, DIM)).astype(np.float32) for _ in range(2))


# --- numpy oracle (float64), written from the module docstring's equations ------------------------------------


def _windowed_attention(p, query, key, num_heads, window):
  b, nq, d = query.shape
  nk = key.shape[1]
  hd = d // num_heads
  split = (
      lambda name, x, n: oracles.dense(p[name], x)
      .reshape(b, n, num_heads, hd)
      .transpose(0, 2, 1, 3)
  )
  q, k, v = split("query", query, nq), split("key", key, nk), split("value", key, nk)
  logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd)
  if window is not None:
    for i in range(nq):  # explicit loops: the mask as the official code builds it
      for j in range(nk):
        if abs(i - j) > window:
          logits[:, :, i, j] = -1e9
  heads = oracles.softmax(logits, axis=-1) @ v
  return oracles.dense(p["out"], heads.transpose(0, 2, 1, 3).reshape(b, nq, d))


def _prenorm_layer(p, x, y, num_heads, window):
  x = x + _windowed_attention(
      p["attn"], oracles.layer_norm(p["attn_norm"], x), y, num_heads, window
  )
  hidden = oracles.relu(oracles.dense(p["ffn_in"], oracles.layer_norm(p["ffn_norm"], x)))
  return x + oracles.dense(p["ffn_out"], hidden)


def _conv1d(p, x, dilation):
  """Zero-padded dilated 1-D convolution over time, with explicit taps: x [B, T, D], kernel [K, D, D]."""
  kernel, bias = p["kernel"], p["bias"]
  taps = kernel.shape[0]
  pad = dilation * (taps - 1) // 2
  padded = np.pad(x, ((0, 0), (pad, pad), (0, 0)))
  out = np.zeros(x.shape[:2] + (kernel.shape[-1],))
  for t in range(x.shape[1]):
    for k in range(taps):
      out[:, t] += padded[:, t + k * dilation] @ kernel[k]
  return out + bias


def _level(p, a, v, dilation, num_heads, windowed=True):
  window = dilation if windowed else None
  a_sa = _prenorm_layer(p["audio_self"], a, a, num_heads, window)
  v_sa = _prenorm_layer(p["visual_self"], v, v, num_heads, window)
  a_ca = _prenorm_layer(p["cross"], a, v, num_heads, window)
  v_ca = _prenorm_layer(p["cross"], v, a, num_heads, window)
  out = []
  for name, sa, ca in (("audio", a_sa, a_ca), ("visual", v_sa, v_ca)):
    both = np.concatenate([sa, ca], axis=-1)
    x = (
        oracles.sigmoid(oracles.dense(p[f"{name}_gate_self"], both)) * sa
        + oracles.sigmoid(oracles.dense(p[f"{name}_gate_cross"], both)) * ca
    )
    tcn = p[f"{name}_tcn"]
    hidden = oracles.relu(_conv1d(tcn["dilated_conv"], x, dilation))
    out.append(oracles.relu(x + _conv1d(tcn["pointwise_conv"], hidden, 1)))
  return out


def mmpyramid_oracle(p, a, v, num_levels=4, num_heads=8, windowed=True):
  a_levels, v_levels = [], []
  for i in range(num_levels):
    a, v = _level(p[f"levels_{i}"], a, v, 2**i, num_heads, windowed)
    a_levels.append(a)
    v_levels.append(v)
  out = []
  for name, levels in (("audio", a_levels), ("visual", v_levels)):
    fused = np.zeros_like(levels[0])
    for t in range(levels[0].shape[1]):  # per segment: attention over its L level outputs
      stack = np.stack([level[:, t] for level in levels], axis=1)  # [B, L, D]
      mixed = _prenorm_layer(p[f"{name}_fusion"], stack, stack, num_heads, None)
      weight = oracles.sigmoid(oracles.dense(p[f"{name}_fusion_weight"], mixed))  # [B, L, 1]
      fused[:, t] = (weight * mixed).sum(axis=1)
    out.append(fused)
  return out


class MaskedAttentionTest(parameterized.TestCase):
  """`layers.MultiHeadAttention` with the window mask is MM-Pyramid's windowed attention."""

  @parameterized.named_parameters(
      ("all_keys", 10, None),
      ("window_0", 10, 0),
      ("window_1", 10, 1),
      ("window_4", 10, 4),
      ("fewer_queries", 4, 2),
  )
  def test_matches_explicit_mask_oracle(self, num_queries, window):
    query, key = _segments(3)
    query = query[:, :num_queries]
    module = layers.MultiHeadAttention(num_heads=2, attention_dropout=0.1, packed_init=False)
    mask = mmpyramid.window_mask(num_queries, key.shape[1], window)
    params = module.init(jax.random.key(0), query, key, key, train=False, mask=mask)["params"]
    self.assertEqual(set(params), {"query", "key", "value", "out"})
    with jax.numpy_rank_promotion("raise"):
      got, logits = module.apply({"params": params}, query, key, key, train=False, mask=mask)
    want = _windowed_attention(oracles.to_numpy(params), query, key, 2, window)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    self.assertEqual(logits.shape, (2, 2, num_queries, 10))
    outside = np.array(
        [
            [abs(i - j) > window if window is not None else False for j in range(10)]
            for i in range(num_queries)
        ]
    )
    np.testing.assert_array_equal(np.asarray(logits)[:, :, outside], layers.MASKED_LOGIT)
    self.assertTrue(np.all(np.asarray(logits)[:, :, ~outside] > layers.MASKED_LOGIT))
    if window is None:  # no mask: the plain attention, bit for bit
      plain, _ = module.apply({"params": params}, query, key, key, train=False)
      np.testing.assert_array_equal(got, plain)

  def test_pytorch_linear_init(self):
    """packed_init=False: four nn.Linear(D, D), kernel and bias uniform in +-1/sqrt(D) (the official layout)."""
    query, _ = _segments()
    module = layers.MultiHeadAttention(num_heads=2, packed_init=False)
    params = module.init(
        jax.random.key(1), query, query, query, train=False, mask=mmpyramid.window_mask(10, 10, 1)
    )
    for name, dense in params["params"].items():
      for leaf in dense.values():
        self.assertLessEqual(float(np.abs(leaf).max()), 1.0 / np.sqrt(DIM), name)
        self.assertGreater(float(np.abs(leaf).max()), 0.5 / np.sqrt(DIM), name)


class MMPyramidTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.audio, self.visual = _segments()

  def _init(self, module, seed=0):
    # Eager (not jitted): op-by-op init and apply of this micro model compile far faster than one big jit.
    return module.init(jax.random.key(seed), self.audio, self.visual, train=False)["params"]

  @parameterized.named_parameters(("official", 4, 8, True), ("two_levels_unwindowed", 2, 2, False))
  def test_matches_numpy_oracle(self, num_levels, num_heads, windowed):
    module = mmpyramid.MMPyramidEncoder(
        num_levels=num_levels, num_heads=num_heads, ffn_dim=24, windowed=windowed
    )
    params = self._init(module)
    with jax.numpy_rank_promotion("raise"):
      got_a, got_v = module.apply({"params": params}, self.audio, self.visual, train=False)
    want_a, want_v = mmpyramid_oracle(
        oracles.to_numpy(params), self.audio, self.visual, num_levels, num_heads, windowed
    )
    self.assertEqual(got_a.shape, (2, 10, DIM))
    np.testing.assert_allclose(got_a, want_a, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(got_v, want_v, rtol=2e-5, atol=2e-5)

  def test_window_mask(self):
    mask = np.asarray(mmpyramid.window_mask(5, 5, 1))
    want = np.array([[abs(i - j) <= 1 for j in range(5)] for i in range(5)])
    np.testing.assert_array_equal(mask, want)
    self.assertIsNone(mmpyramid.window_mask(5, 5, None))

  def test_level_zero_sees_only_neighbours(self):
    """With one level (window +-1, dilation 1) segment 0's output ignores segments 3 and beyond."""
    module = mmpyramid.MMPyramidEncoder(num_levels=1, num_heads=2, ffn_dim=24)
    params = self._init(module)
    changed = self.audio.copy()
    changed[:, 3:] += 5.0
    before, _ = module.apply({"params": params}, self.audio, self.visual, train=False)
    after, _ = module.apply({"params": params}, changed, self.visual, train=False)
    np.testing.assert_allclose(before[:, 0], after[:, 0], rtol=1e-6, atol=1e-6)
    self.assertGreater(float(np.abs(before[:, 2] - after[:, 2]).max()), 1e-3)

  def test_param_tree_and_init(self):
    params = self._init(mmpyramid.MMPyramidEncoder(num_heads=2, ffn_dim=24))
    self.assertEqual(
        set(params),
        {
            "levels_0",
            "levels_1",
            "levels_2",
            "levels_3",
            "audio_fusion",
            "visual_fusion",
            "audio_fusion_weight",
            "visual_fusion_weight",
        },
    )
    self.assertEqual(
        set(params["levels_0"]),
        {
            "audio_self",
            "visual_self",
            "cross",
            "audio_gate_self",
            "audio_gate_cross",
            "visual_gate_self",
            "visual_gate_cross",
            "audio_tcn",
            "visual_tcn",
        },
    )
    kernel = params["levels_2"]["audio_tcn"]["dilated_conv"]["kernel"]
    self.assertEqual(kernel.shape, (3, DIM, DIM))
    self.assertLessEqual(float(np.abs(kernel).max()), 1.0 / np.sqrt(3 * DIM))
    self.assertEqual(params["levels_0"]["audio_gate_self"]["kernel"].shape, (2 * DIM, DIM))
    self.assertEqual(set(params["levels_0"]["cross"]["attn"]), {"query", "key", "value", "out"})
    default_ffn = self._init(
        mmpyramid.MMPyramidEncoder(num_levels=1, num_heads=2)
    )  # ffn_dim 0: the width D
    self.assertEqual(default_ffn["levels_0"]["cross"]["ffn_in"]["kernel"].shape, (DIM, DIM))
    self.assertEqual(default_ffn["audio_fusion"]["ffn_out"]["kernel"].shape, (DIM, DIM))

  def test_dropout_only_in_training(self):
    module = mmpyramid.MMPyramidEncoder(num_levels=1, num_heads=2, ffn_dim=24)
    variables = {"params": self._init(module)}
    run = lambda seed: module.apply(
        variables,
        self.audio,
        self.visual,
        train=True,
        rngs={"dropout": jax.random.key(seed, impl="rbg")},
    )[0]
    np.testing.assert_array_equal(run(1), run(1))
    self.assertGreater(float(np.abs(run(1) - run(2)).max()), 1e-4)

  def test_built_from_config(self):
    config = oracles.micro_model_config("mmil")
    config.encoder = "mmpyramid"
    config.mmpyramid.num_heads = 2
    config.mmpyramid.num_levels = 2
    model = models.build_model(config, llp_task.META)
    audio, frames, motion = oracles.micro_inputs(raw_frames=False)
    params = model.init(jax.random.key(0), audio, frames, motion)["params"]
    self.assertIn("levels_1", params["encoder"])
    self.assertNotIn("levels_2", params["encoder"])
    outputs = model.apply({"params": params}, audio, frames, motion, train=False)
    self.assertEqual(outputs["segment_audio_prob"].shape, (2, 10, 25))
    self.assertEqual(outputs["audio_embedding"].dtype, jnp.float32)

  def test_bad_settings_raise_input_error(self):
    with self.assertRaisesRegex(InputError, "num_heads"):
      self._init(mmpyramid.MMPyramidEncoder(num_heads=3))
    with self.assertRaisesRegex(InputError, "num_levels"):
      self._init(mmpyramid.MMPyramidEncoder(num_levels=0))
    with self.assertRaisesRegex(InputError, "kernel_size"):
      self._init(mmpyramid.MMPyramidEncoder(kernel_size=2))


if __name__ == "__main__":
  absltest.main()
