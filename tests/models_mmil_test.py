"""Tests of avvp_jax.models.mmil (attentive MMIL pooling) against numpy oracles and a hand-worked case."""

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from avvp_jax.models import mmil
import models_oracles as oracles


def _segments(seed=0):
  rng = np.random.default_rng(seed)
  return (
      rng.normal(size=(3, 10, 16)).astype(np.float32),
      rng.normal(size=(3, 10, 16)).astype(np.float32),
  )


class MMILDecoderTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.audio, self.visual = _segments()
    self.module = mmil.MMILDecoder(num_classes=25)
    self.params = self.module.init(jax.random.key(0), self.audio, self.visual, train=False)[
        "params"
    ]

  def test_matches_numpy_oracle(self):
    self.assertEqual(set(self.params), {"fc_prob", "fc_frame_att", "fc_av_att"})
    got = self.module.apply({"params": self.params}, self.audio, self.visual, train=False)
    want = oracles.mmil(oracles.to_numpy(self.params), self.audio, self.visual)
    for key, value in want.items():
      self.assertEqual(got[key].dtype, jnp.float32, key)
      np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-6, err_msg=key)

  def test_attention_normalised(self):
    got = self.module.apply({"params": self.params}, self.audio, self.visual, train=False)
    self.assertEqual(got["temporal_attention"].shape, (3, 10, 2, 25))
    np.testing.assert_allclose(got["temporal_attention"].sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(got["modality_attention"].sum(axis=2), 1.0, rtol=1e-5)
    for key in ("video_prob", "audio_prob", "visual_prob"):
      self.assertTrue(np.all((got[key] > 0) & (got[key] < 1)), key)

  def test_hand_worked_constant_heads(self):
    # Zero kernels: uniform attention (1/T over time, 1/2 over modalities) and P = sigmoid(bias), so every
    # video-level probability equals sigmoid(bias of fc_prob), whatever the segments.
    bias = np.linspace(-2.0, 2.0, 25).astype(np.float32)
    params = jax.tree.map(jnp.zeros_like, self.params)
    params["fc_prob"]["bias"] = jnp.asarray(bias)
    params["fc_frame_att"]["bias"] = jnp.full((25,), 3.0)
    got = self.module.apply({"params": params}, self.audio, self.visual, train=False)
    expected = 1.0 / (1.0 + np.exp(-bias))
    for key in ("video_prob", "audio_prob", "visual_prob"):
      np.testing.assert_allclose(
          got[key], np.broadcast_to(expected, (3, 25)), rtol=1e-6, err_msg=key
      )
    np.testing.assert_allclose(got["temporal_attention"], 0.1, rtol=1e-6)
    np.testing.assert_allclose(got["modality_attention"], 0.5, rtol=1e-6)

  def test_filters_are_video_prob(self):
    got = self.module.apply({"params": self.params}, self.audio, self.visual, train=False)
    np.testing.assert_array_equal(got["audio_filter_prob"], got["video_prob"])
    np.testing.assert_array_equal(got["visual_filter_prob"], got["video_prob"])


if __name__ == "__main__":
  absltest.main()
