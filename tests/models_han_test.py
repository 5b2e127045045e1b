"""Tests of avvp_jax.models.han (HAN encoder) against a numpy oracle of the paper's equations."""

from absl.testing import absltest
from absl.testing import parameterized
import jax
import numpy as np

from avvp_jax.errors import InputError
from avvp_jax.models import han
import models_oracles as oracles

DIM = 16


def _segments(seed=0, batch=2, seconds=10):
  rng = np.random.default_rng(seed)
  return (
      rng.normal(size=(batch, seconds, DIM)).astype(np.float32),
      rng.normal(size=(batch, seconds, DIM)).astype(np.float32),
  )


def _init(module, audio, visual, seed=0):
  return module.init(jax.random.key(seed), audio, visual, train=False)["params"]


def _dropout_key(seed):
  # RBG keys: XLA compiles their dropout masks several times faster on CPU than threefry's.
  return jax.random.key(seed, impl="rbg")


class HANEncoderTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("official_one_layer", 1, 1, "official", True),
      ("two_heads", 1, 2, "official", True),
      ("official_two_layers", 2, 1, "official", True),
      ("stacked_two_layers", 2, 1, "stacked", True),
      ("separate_modalities", 2, 2, "stacked", False),
  )
  def test_matches_numpy_oracle(self, num_layers, num_heads, stacking, share):
    audio, visual = _segments()
    module = han.HANEncoder(
        num_layers=num_layers,
        num_heads=num_heads,
        ffn_dim=24,
        stacking=stacking,
        share_modalities=share,
    )
    params = _init(module, audio, visual)
    got_a, got_v = module.apply({"params": params}, audio, visual, train=False)
    want_a, want_v = oracles.han_encoder(
        oracles.to_numpy(params), audio, visual, num_layers, num_heads, stacking, share
    )
    np.testing.assert_allclose(got_a, want_a, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_v, want_v, rtol=1e-5, atol=1e-5)

  def test_param_tree_mirrors_official_names(self):
    audio, visual = _segments()
    params = _init(han.HANEncoder(ffn_dim=24), audio, visual)
    self.assertEqual(set(params), {"layers_0"})
    layer = params["layers_0"]
    self.assertEqual(set(layer), {"self_attn", "cm_attn", "linear1", "linear2", "norm1", "norm2"})
    self.assertEqual(set(layer["cm_attn"]), {"query", "key", "value", "out"})
    self.assertEqual(layer["linear1"]["kernel"].shape, (DIM, 24))
    self.assertEqual(layer["linear2"]["kernel"].shape, (24, DIM))
    # nn.MultiheadAttention init: Xavier-uniform over the packed [3D, D] matrix, zero biases.
    limit = np.sqrt(6.0 / (4 * DIM))
    for name in ("query", "key", "value"):
      self.assertLessEqual(float(np.abs(layer["self_attn"][name]["kernel"]).max()), limit)
      np.testing.assert_array_equal(layer["self_attn"][name]["bias"], 0.0)
    np.testing.assert_array_equal(layer["self_attn"]["out"]["bias"], 0.0)
    unshared = _init(han.HANEncoder(num_layers=2, share_modalities=False), audio, visual)
    self.assertEqual(
        set(unshared), {"audio_layers_0", "visual_layers_0", "audio_layers_1", "visual_layers_1"}
    )
    self.assertEqual(
        unshared["visual_layers_1"]["linear1"]["kernel"].shape, (DIM, DIM)
    )  # ffn_dim 0: the width D

  def test_stacking_differs_from_official_with_two_layers(self):
    audio, visual = _segments()
    official = han.HANEncoder(num_layers=2, stacking="official")
    params = _init(official, audio, visual)
    stacked = han.HANEncoder(num_layers=2, stacking="stacked")
    out_official = official.apply({"params": params}, audio, visual, train=False)
    out_stacked = stacked.apply({"params": params}, audio, visual, train=False)
    self.assertGreater(float(np.abs(out_official[0] - out_stacked[0]).max()), 1e-3)
    # Official: only the last layer acts, on the embedded inputs.
    last = han.HANEncoder(num_layers=1)
    out_last = last.apply({"params": {"layers_0": params["layers_1"]}}, audio, visual, train=False)
    np.testing.assert_allclose(out_official[0], out_last[0], rtol=1e-6, atol=1e-6)
    # With one layer the two choices coincide.
    one = _init(han.HANEncoder(num_layers=1), audio, visual)
    np.testing.assert_allclose(
        han.HANEncoder(num_layers=1, stacking="stacked").apply(
            {"params": one}, audio, visual, train=False
        )[1],
        han.HANEncoder(num_layers=1).apply({"params": one}, audio, visual, train=False)[1],
        rtol=1e-6,
        atol=1e-6,
    )

  def test_dropout_only_in_training(self):
    audio, visual = _segments()
    module = han.HANEncoder()
    params = {"params": _init(module, audio, visual)}
    eval_1 = module.apply(params, audio, visual, train=False)
    eval_2 = module.apply(params, audio, visual, train=False, rngs={"dropout": _dropout_key(5)})
    np.testing.assert_array_equal(eval_1[0], eval_2[0])
    apply = jax.jit(module.apply, static_argnames="train")
    train_1 = apply(params, audio, visual, train=True, rngs={"dropout": _dropout_key(1)})
    train_1b = apply(params, audio, visual, train=True, rngs={"dropout": _dropout_key(1)})
    train_2 = apply(params, audio, visual, train=True, rngs={"dropout": _dropout_key(2)})
    np.testing.assert_array_equal(train_1[0], train_1b[0])
    self.assertGreater(float(np.abs(train_1[0] - train_2[0]).max()), 1e-3)
    self.assertGreater(float(np.abs(train_1[0] - eval_1[0]).max()), 1e-3)

  def test_init_is_deterministic(self):
    audio, visual = _segments()
    first = _init(han.HANEncoder(), audio, visual, seed=7)
    second = _init(han.HANEncoder(), audio, visual, seed=7)
    jax.tree.map(np.testing.assert_array_equal, first, second)

  def test_bad_settings_raise_input_error(self):
    audio, visual = _segments()
    with self.assertRaisesRegex(InputError, "stacking"):
      _init(han.HANEncoder(stacking="chained"), audio, visual)
    with self.assertRaisesRegex(InputError, "num_heads"):
      _init(han.HANEncoder(num_heads=3), audio, visual)


if __name__ == "__main__":
  absltest.main()
