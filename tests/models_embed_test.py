"""Tests of avvp_jax.models.embed against a numpy oracle of the official input embedding."""

from absl.testing import absltest
from absl.testing import parameterized
import jax
import numpy as np

from avvp_jax.errors import InputError
from avvp_jax.models import embed
import models_oracles as oracles


def _module(motion=4):
  return embed.InputEmbedding(hidden_dim=16, audio=6, frames=10, motion=motion)


class InputEmbeddingTest(parameterized.TestCase):

  @parameterized.named_parameters(("raw_frames", True), ("pooled_frames", False))
  def test_matches_numpy_oracle(self, raw_frames):
    audio, frames, motion = oracles.micro_inputs(raw_frames=raw_frames)
    module = _module()
    params = module.init(jax.random.key(0), audio, frames, motion)["params"]
    self.assertEqual(set(params), {"fc_a", "fc_v", "fc_st", "fc_fusion"})
    self.assertEqual(params["fc_fusion"]["kernel"].shape, (32, 16))
    got_a, got_v = module.apply({"params": params}, audio, frames, motion)
    want_a, want_v = oracles.embed(oracles.to_numpy(params), audio, frames, motion)
    self.assertEqual(got_a.shape, (2, 10, 16))
    np.testing.assert_allclose(got_a, want_a, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_v, want_v, rtol=1e-5, atol=1e-5)

  def test_raw_and_pooled_frames_agree(self):
    audio, frames, motion = oracles.micro_inputs(raw_frames=True)
    pooled = frames.reshape(2, 10, 8, -1).mean(axis=2)
    module = _module()
    params = module.init(jax.random.key(1), audio, frames, motion)
    raw_out = module.apply(params, audio, frames, motion)
    pooled_out = module.apply(params, audio, pooled, motion)
    for raw, pool in zip(raw_out, pooled_out):
      np.testing.assert_allclose(raw, pool, rtol=1e-5, atol=1e-5)

  def test_without_motion_visual_is_fc_v_of_frames(self):
    audio, frames, _ = oracles.micro_inputs(motion=False)
    module = _module(motion=0)
    params = module.init(jax.random.key(2), audio, frames, None)["params"]
    self.assertEqual(set(params), {"fc_a", "fc_v"})
    _, visual = module.apply({"params": params}, audio, frames, None)
    want = (
        oracles.dense(oracles.to_numpy(params)["fc_v"], frames).reshape(2, 10, 8, 16).mean(axis=2)
    )
    np.testing.assert_allclose(visual, want, rtol=1e-5, atol=1e-5)

  def test_torch_style_initialisation(self):
    # nn.Linear: kernel and bias uniform in +-1/sqrt(fan_in).
    audio, frames, motion = oracles.micro_inputs()
    params = _module().init(jax.random.key(3), audio, frames, motion)["params"]
    for name, fan_in in (("fc_a", 6), ("fc_v", 10), ("fc_st", 4), ("fc_fusion", 32)):
      for leaf in params[name].values():
        self.assertLessEqual(float(np.abs(leaf).max()), 1 / np.sqrt(fan_in))
        self.assertGreater(float(np.abs(leaf).max()), 0.5 / np.sqrt(fan_in))

  def test_bad_inputs_raise_input_error(self):
    audio, frames, motion = oracles.micro_inputs()
    module = _module()
    params = module.init(jax.random.key(0), audio, frames, motion)
    with self.assertRaisesRegex(InputError, "input_dims.audio"):
      module.apply(params, audio[..., :5], frames, motion)
    with self.assertRaisesRegex(InputError, r"8T"):
      module.apply(params, audio, frames[:, :40], motion)
    with self.assertRaisesRegex(InputError, "motion is None"):
      module.apply(params, audio, frames, None)
    with self.assertRaisesRegex(InputError, "input_dims.motion is 0"):
      _module(0).init(jax.random.key(0), audio, frames, motion)


if __name__ == "__main__":
  absltest.main()
