"""PSP fully and weakly supervised (avvp_jax.models.psp), its converter and losses, against PyTorch
transcriptions of the official forwards and losses (tests/ave_torch_oracles.py) with random weights.
"""

import functools

from absl.testing import absltest
from absl.testing import parameterized
import jax
import numpy as np
import torch

from avvp_jax.convert import psp as convert_psp
from avvp_jax.errors import InputError
from avvp_jax.models import psp
from avvp_jax.tasks.ave.losses import psp as psp_loss
import ave_torch_oracles as oracles

TOL = dict(rtol=1e-5, atol=1e-5)
# Weight gain of the random draw: PSP's logits spread by ~1 (gain 4 would spread them by ~4, where float32's
# own rounding nears the tolerance); about half the PSP weights are pruned either way.
GAIN = 2.0


def reference(supervision: str, seed: int = 0) -> torch.nn.Module:
  torch.manual_seed(seed)
  module = oracles.PSPNet(supervision == "full", psp.THRESHOLDS[supervision])
  return oracles.randomize(module, seed, GAIN)


def run(supervision: str, batch: int = 2):
  torch_model = reference(supervision)
  audio, visual = oracles.inputs(batch)
  with torch.no_grad():
    expected = [x.numpy() for x in torch_model(torch.from_numpy(audio), torch.from_numpy(visual))]
  params = convert_psp.official_to_flax(oracles.state_dict(torch_model), supervision)
  got = jax.jit(psp.PSPNet(supervision).apply)({"params": params}, audio, visual)
  return got, expected, params


class PSPNetTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.enter_context(jax.numpy_rank_promotion("raise"))

  def test_fully_supervised_matches_official(self):
    got, (fusion, out, cross_att, gamma_va, gamma_av), _ = run("full")
    np.testing.assert_allclose(got["fusion"], fusion, **TOL)
    np.testing.assert_allclose(got["segment_logits"], out, **TOL)
    np.testing.assert_allclose(got["av_similarity"], cross_att, **TOL)
    np.testing.assert_allclose(got["psp_visual_weights"], gamma_va, **TOL)
    np.testing.assert_allclose(got["psp_audio_weights"], gamma_av, **TOL)
    np.testing.assert_array_equal(got["segment_class"], out.argmax(-1))
    pruned = float((gamma_va == 0).mean())
    self.assertBetween(pruned, 0.2, 0.8)  # the threshold acts on this draw
    segment_label, _ = oracles.labels()
    target = oracles.official_avps_targets([segment_label])[0]  # first batch: nothing stale yet
    want = torch.nn.CrossEntropyLoss()(
        torch.from_numpy(out).permute(0, 2, 1), torch.from_numpy(segment_label.argmax(-1))
    )
    want_avps = oracles.avps_loss(torch.from_numpy(cross_att), torch.from_numpy(target))
    value, terms = psp_loss.loss(got, {"segment_label": segment_label, "mask": np.ones(2)})
    np.testing.assert_allclose(terms["cross_entropy"], want.numpy(), **TOL)
    np.testing.assert_allclose(terms["avps"], want_avps.numpy(), **TOL)
    np.testing.assert_allclose(value, (want + 100 * want_avps).numpy(), **TOL)

  def test_weakly_supervised_matches_official(self):
    got, (out_avg, score, weight, gamma_va, gamma_av), _ = run("weak")
    np.testing.assert_allclose(got["video_prob"], out_avg, **TOL)
    np.testing.assert_allclose(got["segment_logits"], score, **TOL)
    np.testing.assert_allclose(got["temporal_weight"], weight, **TOL)
    np.testing.assert_allclose(got["psp_visual_weights"], gamma_va, **TOL)
    np.testing.assert_allclose(got["psp_audio_weights"], gamma_av, **TOL)
    self.assertGreater(float((gamma_va == 0).mean()), 0.1)
    self.assertGreater(
        float(gamma_va.sum(-1).max() - gamma_va.sum(-1).min()), 1e-3
    )  # not renormalised
    np.testing.assert_array_equal(
        got["segment_class"], torch.softmax(torch.from_numpy(score), -1).numpy().argmax(-1)
    )
    self.assertNotIn("av_similarity", got)
    segment_label, video_label = oracles.labels()
    # prob_label.h5: the share of event and background segments (background-only clip: one-hot background).
    proportion = segment_label.sum(1) / 10.0
    np.testing.assert_array_equal(proportion[-1], video_label[-1])
    bce = torch.nn.BCELoss()
    for target, option in ((proportion, "proportion"), (video_label, "video_label")):
      value, terms = psp_loss.loss(
          got,
          {"segment_label": segment_label, "video_label": video_label},
          supervision="weak",
          weak_target=option,
      )
      want = bce(torch.from_numpy(out_avg), torch.from_numpy(target))
      np.testing.assert_allclose(value, want.numpy(), **TOL)
      self.assertEqual(set(terms), {"bce"})

  @parameterized.named_parameters(("full", "full"), ("weak", "weak"))
  def test_converted_tree_is_the_model_tree_and_unused_keys_are_dropped(self, supervision):
    audio, visual = oracles.inputs(batch=1)
    init = jax.eval_shape(psp.PSPNet(supervision).init, jax.random.key(0), audio, visual)
    state = oracles.state_dict(reference(supervision))
    unused = [key for key in state if key.startswith(convert_psp.IGNORED_PREFIXES[supervision])]
    self.assertNotEmpty(unused)  # the official file has them
    converted = convert_psp.official_to_flax(state, supervision)
    shapes = lambda tree: jax.tree.map(np.shape, tree)
    self.assertEqual(shapes(init["params"]), shapes(converted))

  def test_bad_state_dict_is_one_line_input_error_naming_the_key(self):
    state = oracles.state_dict(reference("full"))
    missing = {k: v for k, v in state.items() if k != "psp.layer_norm.bias"}
    with self.assertRaisesRegex(InputError, r"^[^\n]*missing psp\.layer_norm\.bias[^\n]*$"):
      convert_psp.official_to_flax(missing, "full")
    wrong = dict(state, **{"fa.0.weight": np.zeros((256, 64), np.float32)})
    with self.assertRaisesRegex(InputError, r"^[^\n]*fa\.0\.weight \(256, 64\)[^\n]*$"):
      convert_psp.official_to_flax(wrong, "full")
    with self.assertRaisesRegex(InputError, r"missing W3\.weight; unknown .*fa\.0\.weight"):
      convert_psp.official_to_flax(state, "weak")  # a fully supervised file is no weak one

  def test_dropout_only_in_training(self):
    rng = np.random.default_rng(0)
    audio, visual = (rng.normal(size=(1, 10, 256)).astype(np.float32) for _ in range(2))
    module = psp.PSPModule(threshold=0.099)  # PSPNet's only dropout is in here
    params = module.init(jax.random.key(0), audio, visual, train=False)
    # RBG keys: XLA compiles their dropout masks several times faster on CPU than threefry's.
    apply = lambda train, seed: module.apply(
        params, audio, visual, train=train, rngs={"dropout": jax.random.key(seed, impl="rbg")}
    )["fusion"]
    evaluated, trained = apply(False, 1), apply(True, 1)
    np.testing.assert_array_equal(evaluated, apply(False, 2))
    self.assertGreater(float(np.abs(trained - evaluated).max()), 1e-3)
    self.assertGreater(float(np.abs(trained - apply(True, 2)).max()), 1e-3)


class AVPSTargetTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.enter_context(jax.numpy_rank_promotion("raise"))

  def test_official_buffer_leaks_and_clean_does_not(self):
    first, _ = oracles.labels(batch=3, seed=1)
    second, _ = oracles.labels(batch=3, seed=2)
    want = oracles.official_avps_targets([first, second])
    buffer = psp_loss.OfficialAVPSTargets()
    got = [buffer(first), buffer(second)]
    np.testing.assert_allclose(got[0], want[0], **TOL)
    np.testing.assert_allclose(got[1], want[1], **TOL)
    clean = np.asarray(psp_loss.avps_target(second))
    np.testing.assert_allclose(clean.sum(-1), 1.0, **TOL)
    self.assertGreater(
        float(np.abs(got[1] - clean).max()), 1e-3
    )  # stale targets of the first batch
    np.testing.assert_allclose(got[1][got[1] != clean], want[0][got[1] != clean], **TOL)

  def test_official_option_reads_the_batch_target(self):
    rng = np.random.default_rng(0)
    outputs = {
        "segment_logits": rng.normal(size=(3, 10, 29)).astype(np.float32),
        "av_similarity": rng.uniform(-1, 1, size=(3, 10)).astype(np.float32),
    }
    segment_label, _ = oracles.labels(batch=3)
    stale = rng.uniform(0, 0.3, size=(3, 10)).astype(np.float32)
    batch = {"segment_label": segment_label, "avps_target": stale}
    _, terms = psp_loss.loss(outputs, batch, avps_targets="official")
    want = oracles.avps_loss(torch.from_numpy(outputs["av_similarity"]), torch.from_numpy(stale))
    np.testing.assert_allclose(terms["avps"], want.numpy(), **TOL)
    with self.assertRaisesRegex(InputError, "avps_target"):
      psp_loss.loss(outputs, {"segment_label": segment_label}, avps_targets="official")

  def test_masked_loss_ignores_padded_clips(self):
    rng = np.random.default_rng(1)
    outputs = {
        "segment_logits": rng.normal(size=(3, 10, 29)).astype(np.float32),
        "av_similarity": rng.uniform(-1, 1, size=(3, 10)).astype(np.float32),
        "video_prob": jax.nn.softmax(rng.normal(size=(3, 29))),
    }
    segment_label, video_label = oracles.labels(batch=3)
    first_two = lambda tree: {k: np.asarray(v)[:2] for k, v in tree.items()}
    for options in (dict(), dict(supervision="weak")):
      padded = {
          "segment_label": segment_label,
          "video_label": video_label,
          "mask": np.array([1, 1, 0]),
      }
      got, _ = psp_loss.loss(outputs, padded, **options)
      want, _ = psp_loss.loss(first_two(outputs), first_two(padded), **options)
      np.testing.assert_allclose(got, want, **TOL)
      changed, _ = psp_loss.loss(outputs, dict(padded, mask=np.ones(3)), **options)
      self.assertGreater(abs(float(changed - got)), 1e-4)
      jitted, _ = jax.jit(functools.partial(psp_loss.loss, **options))(outputs, padded)
      np.testing.assert_allclose(jitted, got, **TOL)


if __name__ == "__main__":
  absltest.main()
