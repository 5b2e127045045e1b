"""Tests of avvp_jax.models.leap (LEAP decoder), both variants, against a numpy oracle of eq. 2-8."""

import os

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from avvp_jax import models
from avvp_jax.errors import InputError
from avvp_jax.models import label_embeddings
from avvp_jax.tasks.llp import task as llp_task
import models_oracles as oracles

DIM = 16


def _segments(seed=0):
  rng = np.random.default_rng(seed)
  return (
      rng.normal(size=(2, 10, DIM)).astype(np.float32),
      rng.normal(size=(2, 10, DIM)).astype(np.float32),
  )


def _decoder(**kwargs):
  """The LEAP decoder as `models.build_model` builds it (its class-name table loaded for LLP's classes)."""
  section = {"ffn_dim": 24, **kwargs}
  model_config = ml_collections.ConfigDict({"leap": section})
  return models.DECODERS["leap"].build(model_config, llp_task.META, None)


def _dropout_key(seed):
  # RBG keys: XLA compiles their dropout masks several times faster on CPU than threefry's.
  return jax.random.key(seed, impl="rbg")


class LEAPDecoderTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.audio, self.visual = _segments()

  def _init(self, module, seed=0):
    return module.init(jax.random.key(seed), self.audio, self.visual, train=False)["params"]

  @parameterized.parameters("official", "paper")
  def test_matches_numpy_oracle(self, variant):
    module = _decoder(variant=variant)
    params = self._init(module)
    got = module.apply({"params": params}, self.audio, self.visual, train=False)
    table = label_embeddings.load_label_embeddings("packaged")
    want = oracles.leap(oracles.to_numpy(params), self.audio, self.visual, table, variant=variant)
    for key in ("segment_audio_prob", "segment_visual_prob", "audio_prob", "visual_prob"):
      self.assertEqual(got[key].dtype, jnp.float32)
      np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-5, err_msg=key)
    np.testing.assert_array_equal(got["video_prob"], want["video_prob"])
    self.assertEqual(got["segment_audio_prob"].shape, (2, 10, 25))
    self.assertEqual(got["audio_label_embedding"].shape, (2, 25, DIM))

  def test_variants_differ_on_the_same_params(self):
    params = self._init(_decoder())
    official = _decoder().apply({"params": params}, self.audio, self.visual, train=False)
    paper = _decoder(variant="paper").apply(
        {"params": params}, self.audio, self.visual, train=False
    )
    self.assertGreater(
        float(np.abs(official["segment_audio_prob"] - paper["segment_audio_prob"]).max()), 1e-3
    )

  def test_param_tree(self):
    params = self._init(_decoder())
    self.assertEqual(
        set(params),
        {
            "fc_l",
            "fc_la",
            "fc_lv",
            "audio_blocks_0",
            "audio_blocks_1",
            "visual_blocks_0",
            "visual_blocks_1",
        },
    )
    self.assertEqual(params["fc_l"]["kernel"].shape, (384, DIM))
    self.assertEqual(params["fc_la"]["kernel"].shape, (DIM, 1))
    self.assertEqual(
        set(params["audio_blocks_0"]), {"cross_attn", "ffn_in", "ffn_out", "attn_norm", "ffn_norm"}
    )
    self.assertEqual(params["audio_blocks_0"]["ffn_in"]["kernel"].shape, (DIM, 24))
    default_ffn = self._init(_decoder(num_blocks=1, ffn_dim=0))  # ffn_dim 0: the width D
    self.assertEqual(default_ffn["visual_blocks_0"]["ffn_out"]["kernel"].shape, (DIM, DIM))

  def test_video_prob_is_union_of_thresholded_modalities(self):
    module = _decoder()
    params = self._init(module)
    # Push a few classes over the threshold in each modality through the fc_la / fc_lv biases.
    params["fc_la"]["bias"] = jnp.asarray([0.0])
    got = module.apply({"params": params}, self.audio, self.visual, train=False)
    hit_a, hit_v = got["audio_prob"] >= 0.5, got["visual_prob"] >= 0.5
    np.testing.assert_array_equal(got["video_prob"], (hit_a | hit_v).astype(np.float32))
    np.testing.assert_array_equal(got["audio_filter_prob"], got["video_prob"])
    np.testing.assert_array_equal(got["visual_filter_prob"], got["video_prob"])
    np.testing.assert_allclose(
        got["video_prob_soft"], 1 - (1 - got["audio_prob"]) * (1 - got["visual_prob"]), rtol=1e-6
    )
    by_modality = _decoder(filter="modality").apply(
        {"params": params}, self.audio, self.visual, train=False
    )
    np.testing.assert_array_equal(by_modality["audio_filter_prob"], got["audio_prob"])
    np.testing.assert_array_equal(by_modality["visual_filter_prob"], got["visual_prob"])

  def test_video_prob_passes_no_gradient(self):
    module = _decoder()
    params = self._init(module)
    loss = lambda p, key: module.apply({"params": p}, self.audio, self.visual, train=False)[
        key
    ].sum()
    zero = jax.jit(jax.grad(lambda p: loss(p, "video_prob")))(params)
    self.assertEqual(max(float(np.abs(g).max()) for g in jax.tree.leaves(zero)), 0.0)
    grads = jax.jit(jax.grad(lambda p: loss(p, "segment_audio_prob")))(params)
    self.assertGreater(
        float(np.abs(grads["audio_blocks_1"]["cross_attn"]["key"]["kernel"]).max()), 0.0
    )

  def test_learned_label_embeddings(self):
    module = _decoder(label_embeddings="learned", learned_label_dim=12)
    params = self._init(module)
    self.assertEqual(params["label_embedding"].shape, (25, 12))
    self.assertEqual(params["fc_l"]["kernel"].shape, (12, DIM))
    before = module.apply({"params": params}, self.audio, self.visual, train=False)
    want = oracles.leap(
        oracles.to_numpy(params), self.audio, self.visual, np.asarray(params["label_embedding"])
    )
    np.testing.assert_allclose(before["audio_prob"], want["audio_prob"], rtol=1e-5, atol=1e-5)
    params["label_embedding"] = params["label_embedding"] * 2.0
    after = module.apply({"params": params}, self.audio, self.visual, train=False)
    self.assertGreater(
        float(np.abs(before["segment_visual_prob"] - after["segment_visual_prob"]).max()), 1e-4
    )

  def test_npy_file_embeddings(self):
    table = np.random.default_rng(3).normal(size=(25, 7)).astype(np.float32)
    path = os.path.join(self.create_tempdir().full_path, "labels.npy")
    np.save(path, table)
    module = _decoder(label_embeddings=path, variant="paper")
    params = self._init(module)
    self.assertEqual(params["fc_l"]["kernel"].shape, (7, DIM))
    got = module.apply({"params": params}, self.audio, self.visual, train=False)
    want = oracles.leap(oracles.to_numpy(params), self.audio, self.visual, table, variant="paper")
    np.testing.assert_allclose(
        got["segment_visual_prob"], want["segment_visual_prob"], rtol=1e-5, atol=1e-5
    )

  def test_dropout_only_in_training(self):
    module = _decoder()
    params = {"params": self._init(module)}
    eval_1 = module.apply(params, self.audio, self.visual, train=False)["audio_prob"]
    eval_2 = module.apply(params, self.audio, self.visual, train=False)["audio_prob"]
    np.testing.assert_array_equal(eval_1, eval_2)
    apply = jax.jit(module.apply, static_argnames="train")
    run = lambda seed: apply(
        params, self.audio, self.visual, train=True, rngs={"dropout": _dropout_key(seed)}
    )["audio_prob"]
    np.testing.assert_array_equal(run(1), run(1))
    self.assertGreater(float(np.abs(run(1) - run(2)).max()), 1e-4)

  def test_bad_settings_raise_input_error(self):
    with self.assertRaisesRegex(InputError, "variant"):
      self._init(_decoder(variant="v2"))
    with self.assertRaisesRegex(InputError, "filter"):
      self._init(_decoder(filter="none"))
    with self.assertRaisesRegex(InputError, "does not exist"):
      self._init(_decoder(label_embeddings="/nonexistent/labels.npy"))


if __name__ == "__main__":
  absltest.main()
