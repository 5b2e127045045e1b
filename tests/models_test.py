"""Tests of avvp_jax.models: the registries, the composed model, its outputs and its compute dtype."""

import dataclasses

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from avvp_jax import models
from avvp_jax.errors import InputError
from avvp_jax.tasks.llp import task as llp_task
from configs import common
import models_oracles as oracles

CONTRACT_KEYS = {
    "video_prob",
    "audio_prob",
    "visual_prob",
    "segment_audio_prob",
    "segment_visual_prob",
    "audio_filter_prob",
    "visual_filter_prob",
    "audio_embedding",
    "visual_embedding",
}


class RegistryTest(parameterized.TestCase):

  def test_names(self):
    self.assertIn("han", models.ENCODERS)
    self.assertEqual(set(models.DECODERS), {"mmil", "leap", "dch"})
    self.assertEqual(set(models.REFINERS), {"none", "plsim"})

  def test_unknown_names_raise_input_error(self):
    config = oracles.micro_model_config()
    config.encoder = "transformer"
    with self.assertRaisesRegex(InputError, "config.model.encoder"):
      models.build_model(config, llp_task.META)
    config = oracles.micro_model_config()
    config.decoder = "linear"
    with self.assertRaisesRegex(InputError, "config.model.decoder"):
      models.build_model(config, llp_task.META)
    with self.assertRaisesRegex(InputError, "float16"):
      models.build_model(oracles.micro_model_config(), llp_task.META, dtype="float16")
    config = oracles.micro_model_config()
    config.refiner = "film"
    with self.assertRaisesRegex(InputError, "config.model.refiner 'film' is unknown"):
      models.build_model(config, llp_task.META)

  @parameterized.named_parameters(
      ("input_dims", "han", "mmil", "none", "input_dims"),
      ("han", "han", "mmil", "none", "han"),
      ("mmpyramid", "mmpyramid", "mmil", "none", "mmpyramid"),
      ("link", "link", "mmil", "none", "link"),
      ("han_inside_link", "link", "mmil", "none", "han"),
      ("mmil", "han", "mmil", "none", "mmil"),
      ("leap", "han", "leap", "none", "leap"),
      ("plsim", "han", "mmil", "plsim", "plsim"),
  )
  def test_unknown_key_in_a_section_is_one_input_error(self, encoder, decoder, refiner, section):
    config = oracles.micro_model_config()
    config.encoder, config.decoder, config.refiner = encoder, decoder, refiner
    config[section].num_layer = 2  # a misspelt key
    message = (
        rf"^config\.model\.{section} has key\(s\) num_layer that \w+ does not take: rename or remove them "
        r"\(valid keys: .+\)\.$"
    )
    with self.assertRaisesRegex(InputError, message) as caught:
      models.build_model(config, llp_task.META)
    self.assertNotIn("\n", str(caught.exception))
    valid = str(caught.exception).split("valid keys: ")[1].rstrip(").").split(", ")
    self.assertContainsSubset(set(config[section]) - {"num_layer"}, set(valid))
    self.assertNotIn("dtype", valid)

  def test_a_key_the_builder_sets_is_an_input_error(self):
    config = oracles.micro_model_config("leap")
    config.leap.num_classes = 10  # LLP's 25, given by the builder
    with self.assertRaisesRegex(
        InputError, "config.model.leap has key.s. num_classes that LEAPDecoder"
    ):
      models.build_model(config, llp_task.META)
    config = oracles.micro_model_config()
    config.han.dtype = (
        "bfloat16"  # the compute dtype is build_model's argument (config.compute_dtype)
    )
    with self.assertRaisesRegex(InputError, "config.model.han has key.s. dtype"):
      models.build_model(config, llp_task.META)

  def test_old_link_keys_are_one_input_error(self):
    """A config.json from before the PLSIM section: its LINK keys name the problem on one line."""
    config = oracles.micro_model_config()
    config.encoder = "link"
    config.link.plsim = True
    config.link.plsim_threshold = 0.5
    with self.assertRaisesRegex(
        InputError,
        r"config.model.link has key.s. plsim, plsim_threshold that LINKEncoder "
        r"does not take.*valid keys: tsam, cmim, tsam_temporal_hidden",
    ):
      models.build_model(config, llp_task.META)
    del config["refiner"]
    with self.assertRaisesRegex(InputError, "config.model has no 'refiner'"):
      models.build_model(config, llp_task.META)
    config = oracles.micro_model_config()
    del config["plsim"]
    models.build_model(config, llp_task.META)  # sections of modules not built are not read
    config.refiner = "plsim"
    with self.assertRaisesRegex(InputError, "config.model has no 'plsim'"):
      models.build_model(config, llp_task.META)

  def test_sections_are_the_module_attributes(self):
    config = oracles.micro_model_config()
    for section, module in (
        ("han", models.han.HANEncoder),
        ("mmpyramid", models.mmpyramid.MMPyramidEncoder),
        ("link", models.link.LINKEncoder),
        ("mmil", models.mmil.MMILDecoder),
        ("leap", models.leap.LEAPDecoder),
        ("plsim", models.link.PLSIM),
        ("input_dims", models.embed.InputEmbedding),
    ):
      attributes = {f.name for f in dataclasses.fields(module)} - {"parent", "name"}
      self.assertContainsSubset(set(config[section]), attributes, section)
    self.assertEqual(models.resolve_dtype("bfloat16"), models.COMPUTE_DTYPES["bfloat16"])

  def test_default_config_is_the_official_model(self):
    config = common.get_config().model
    self.assertEqual((config.encoder, config.decoder, config.hidden_dim), ("han", "mmil", 512))
    self.assertEqual((config.han.num_layers, config.han.num_heads, config.han.dropout), (1, 1, 0.1))
    self.assertEqual(
        (config.leap.num_blocks, config.leap.num_heads, config.leap.dropout), (2, 8, 0.2)
    )
    self.assertEqual(config.leap.variant, "official")


class ComposedModelTest(parameterized.TestCase):

  @parameterized.parameters("mmil", "leap")
  def test_contract_outputs(self, decoder):
    config = oracles.micro_model_config(decoder)
    model = models.build_model(config, llp_task.META)
    audio, frames, motion = oracles.micro_inputs(batch=3)
    params = model.init(jax.random.key(0), audio, frames, motion, train=False)["params"]
    self.assertEqual(set(params), {"embed", "encoder", "decoder"})
    outputs = jax.jit(model.apply, static_argnames="train")(
        {"params": params}, audio, frames, motion, train=False
    )
    self.assertContainsSubset(CONTRACT_KEYS, set(outputs))
    for key, value in outputs.items():
      self.assertEqual(value.dtype, jnp.float32, key)
    for key in (
        "video_prob",
        "audio_prob",
        "visual_prob",
        "audio_filter_prob",
        "visual_filter_prob",
    ):
      self.assertEqual(outputs[key].shape, (3, 25), key)
    for key in ("segment_audio_prob", "segment_visual_prob"):
      self.assertEqual(outputs[key].shape, (3, 10, 25), key)
      self.assertTrue(np.all((outputs[key] >= 0) & (outputs[key] <= 1)), key)
    self.assertEqual(outputs["audio_embedding"].shape, (3, 10, 16))

  def test_han_mmil_matches_numpy_oracle(self):
    model = models.build_model(oracles.micro_model_config("mmil"), llp_task.META)
    audio, frames, motion = oracles.micro_inputs()
    params = model.init(jax.random.key(1), audio, frames, motion)["params"]
    with jax.numpy_rank_promotion("raise"):
      got = model.apply({"params": params}, audio, frames, motion, train=False)
    p = oracles.to_numpy(params)
    embedded = oracles.embed(p["embed"], audio, frames, motion)
    encoded = oracles.han_encoder(p["encoder"], *embedded, num_layers=1)
    want = oracles.mmil(p["decoder"], *encoded)
    for key, value in want.items():
      np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-5, err_msg=key)
    np.testing.assert_allclose(got["visual_embedding"], encoded[1], rtol=1e-5, atol=1e-5)

  def test_han_leap_matches_numpy_oracle(self):
    model = models.build_model(oracles.micro_model_config("leap"), llp_task.META)
    audio, frames, motion = oracles.micro_inputs(raw_frames=False)
    params = model.init(jax.random.key(2), audio, frames, motion)["params"]
    with jax.numpy_rank_promotion("raise"):
      got = jax.jit(model.apply, static_argnames="train")(
          {"params": params}, audio, frames, motion, train=False
      )
    p = oracles.to_numpy(params)
    encoded = oracles.han_encoder(
        p["encoder"], *oracles.embed(p["embed"], audio, frames, motion), num_layers=1
    )
    table = models.leap.label_embeddings_lib.load_label_embeddings("packaged")
    want = oracles.leap(p["decoder"], *encoded, table)
    for key in ("segment_audio_prob", "segment_visual_prob", "audio_prob", "visual_prob"):
      np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-5, err_msg=key)

  def test_raw_and_pooled_frames_give_the_same_outputs(self):
    model = models.build_model(oracles.micro_model_config("mmil"), llp_task.META)
    audio, frames, motion = oracles.micro_inputs(raw_frames=True)
    params = model.init(jax.random.key(3), audio, frames, motion)
    raw = model.apply(params, audio, frames, motion)
    pooled = model.apply(params, audio, frames.reshape(2, 10, 8, -1).mean(axis=2), motion)
    for key in raw:
      np.testing.assert_allclose(raw[key], pooled[key], rtol=1e-5, atol=1e-5, err_msg=key)

  def test_without_motion(self):
    config = oracles.micro_model_config("leap", motion=False)
    model = models.build_model(config, llp_task.META)
    audio, frames, _ = oracles.micro_inputs(motion=False)
    params = model.init(jax.random.key(4), audio, frames, None)["params"]
    self.assertEqual(set(params["embed"]), {"fc_a", "fc_v"})
    outputs = model.apply({"params": params}, audio, frames, None)
    self.assertEqual(outputs["segment_visual_prob"].shape, (2, 10, 25))

  def test_bfloat16_compute(self):
    config = oracles.micro_model_config("mmil")
    audio, frames, motion = oracles.micro_inputs()
    model32 = models.build_model(config, llp_task.META)
    model16 = models.build_model(config, llp_task.META, dtype="bfloat16")
    params = model32.init(jax.random.key(5), audio, frames, motion)["params"]
    params16 = jax.eval_shape(model16.init, jax.random.key(5), audio, frames, motion)["params"]
    for leaf in jax.tree.leaves(params16):
      self.assertEqual(leaf.dtype, jnp.float32)
    jaxpr = str(
        jax.make_jaxpr(lambda p: model16.apply({"params": p}, audio, frames, motion))(params)
    )
    self.assertIn("bf16", jaxpr)
    out32 = jax.jit(model32.apply)({"params": params}, audio, frames, motion)
    out16 = jax.jit(model16.apply)({"params": params}, audio, frames, motion)
    for key, value in out16.items():
      self.assertEqual(value.dtype, jnp.float32, key)
    # bfloat16 keeps ~3 significant digits; the probabilities agree to that and are not bit-identical.
    np.testing.assert_allclose(out16["video_prob"], out32["video_prob"], atol=3e-2)
    self.assertGreater(float(np.abs(out16["video_prob"] - out32["video_prob"]).max()), 0.0)


if __name__ == "__main__":
  absltest.main()
