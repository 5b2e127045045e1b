"""Tests of the LINK loss (`avvp_jax.tasks.llp.losses.link_loss`, S-LOSS's eq. 11 weight) against numpy oracles."""

import math

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from avvp_jax.tasks.llp import losses
from avvp_jax.tasks.llp import pseudo_labels
from avvp_jax.errors import InputError
from configs import common

B, T, C, D = 3, 10, 25, 8
EPS = 1e-7


def _config(**overrides):
  config = common.get_config().loss
  config.name = "link"
  for key, value in overrides.items():
    setattr(config, key, value)
  return config


def _outputs(seed=0, first_pass=True):
  rng = np.random.default_rng(seed)
  prob = lambda *shape: rng.uniform(0.02, 0.98, size=shape).astype(np.float32)
  outputs = {
      "video_prob": prob(B, C),
      "audio_prob": prob(B, C),
      "visual_prob": prob(B, C),
      "segment_audio_prob": prob(B, T, C),
      "segment_visual_prob": prob(B, T, C),
      "audio_embedding": rng.normal(size=(B, T, D)).astype(np.float32),
      "visual_embedding": rng.normal(size=(B, T, D)).astype(np.float32),
      "similarity_mu": np.float32(0.3),
  }
  if first_pass:
    outputs.update(
        {
            "first_pass_video_prob": prob(B, C),
            "first_pass_audio_prob": prob(B, C),
            "first_pass_visual_prob": prob(B, C),
        }
    )
  return outputs


def _batch(seed=1, with_pseudo=True):
  rng = np.random.default_rng(seed)
  batch = {
      "label": (rng.random((B, C)) < 0.2).astype(np.float32),
      "mask": np.array([1, 1, 0], np.float32),
  }
  if with_pseudo:
    batch[pseudo_labels.AUDIO_BATCH_KEY] = (rng.random((B, T, C)) < 0.1).astype(np.float32)
    batch[pseudo_labels.VISUAL_BATCH_KEY] = (rng.random((B, T, C)) < 0.1).astype(np.float32)
  return batch


# --- numpy oracle (float64), pair by pair for eq. 11 -----------------------------------------------------------


def _bce(prob, target):
  prob = np.clip(prob.astype(np.float64), EPS, 1 - EPS)
  return -(target * np.log(prob) + (1 - target) * np.log(1 - prob))


def _weight_oracle(s, mu):
  e = math.exp(abs(1.0 - mu))
  if s <= -0.2:
    return 1.0
  if s < 0:
    return e
  return e + (1 - e) * s


def link_loss_oracle(outputs, batch, similarity="weighted", first_pass_weight=1.0, avss_weight=1.0):
  mask = batch["mask"]
  mean = lambda per_clip: (per_clip * mask).sum() / mask.sum()
  per_clip = lambda x: x.reshape(x.shape[0], -1).mean(axis=1)
  pa, pv = batch[pseudo_labels.AUDIO_BATCH_KEY], batch[pseudo_labels.VISUAL_BATCH_KEY]
  ta, tv, y = pa.max(axis=1), pv.max(axis=1), batch["label"]
  loss = mean(per_clip(_bce(outputs["video_prob"], y))) + mean(
      per_clip(_bce(outputs["audio_prob"], ta))
  )
  loss += mean(per_clip(_bce(outputs["visual_prob"], tv)))
  loss += mean(per_clip(_bce(outputs["segment_audio_prob"], pa))) + mean(
      per_clip(_bce(outputs["segment_visual_prob"], pv))
  )
  first = (
      mean(per_clip(_bce(outputs["first_pass_video_prob"], y)))
      + mean(per_clip(_bce(outputs["first_pass_audio_prob"], ta)))
      + mean(per_clip(_bce(outputs["first_pass_visual_prob"], tv)))
  )
  loss += first_pass_weight * first
  if similarity == "off":
    return loss
  unit = lambda x: x / np.linalg.norm(x.astype(np.float64), axis=-1, keepdims=True)
  a, v = unit(outputs["audio_embedding"]), unit(outputs["visual_embedding"])
  per_clip_values = np.zeros(B)
  for b in range(B):
    most = max(pa[b].sum(-1).max(), pv[b].sum(-1).max())
    for i in range(T):
      for j in range(T):
        s = float(a[b, i] @ v[b, j])
        shared = float(pa[b, i] @ pv[b, j])
        x = shared / most if most > 0 else 0.0
        target = x / (1 + x) + 0.01
        weight = (
            _weight_oracle(s, float(outputs["similarity_mu"])) if similarity == "weighted" else 1.0
        )
        per_clip_values[b] += weight * (max(s, 0.0) - target) ** 2 / (T * T)
  return loss + avss_weight * mean(per_clip_values)


class SimilarityWeightTest(absltest.TestCase):

  def test_hand_worked_values(self):
    e = math.exp(1.0)  # mu = 0: e^|1 - 0|
    s = np.array([-0.9, -0.2, -0.1999, -0.05, 0.0, 0.25, 1.0], np.float32)
    want = [1.0, 1.0, e, e, e, e + (1 - e) * 0.25, 1.0]
    np.testing.assert_allclose(losses.similarity_weight(s, 0.0), want, rtol=1e-6)
    np.testing.assert_allclose(
        losses.similarity_weight(s, 1.0), np.ones(7), rtol=1e-6
    )  # e^0 = 1 everywhere
    np.testing.assert_allclose(
        losses.similarity_weight(np.float32(-0.1), 3.0), math.exp(2.0), rtol=1e-6
    )

  def test_gradient_reaches_mu_not_similarity(self):
    d_s, d_mu = jax.grad(lambda s, mu: losses.similarity_weight(s, mu).sum(), argnums=(0, 1))(
        jnp.array([-0.1, 0.5]), jnp.float32(0.25)
    )
    np.testing.assert_array_equal(d_s, [0.0, 0.0])
    e = math.exp(0.75)  # d/dmu of e^|1 - mu| at mu < 1 is -e^(1 - mu)
    np.testing.assert_allclose(d_mu, -e + -e * (1 - 0.5), rtol=1e-5)


class LINKLossTest(parameterized.TestCase):

  @parameterized.parameters(("weighted", 1.0), ("plain", 0.5), ("off", 0.0))
  def test_matches_numpy_oracle(self, similarity, first_pass_weight):
    outputs, batch = _outputs(), _batch()
    config = _config(
        link_similarity=similarity, link_first_pass_weight=first_pass_weight, avss_weight=0.7
    )
    loss, terms = jax.jit(lambda o, b: losses.compute_loss(config, o, b))(outputs, batch)
    want = link_loss_oracle(outputs, batch, similarity, first_pass_weight, avss_weight=0.7)
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    self.assertEqual("similarity" in terms, similarity != "off")
    self.assertIn("first_pass", terms)

  def test_plain_similarity_is_leaps_avss(self):
    outputs, batch = _outputs(first_pass=False), _batch()
    _, link_terms = losses.compute_loss(_config(link_similarity="plain"), outputs, batch)
    leap_config = _config()
    leap_config.name = "leap"
    leap_loss, leap_terms = losses.compute_loss(leap_config, outputs, batch)
    np.testing.assert_allclose(link_terms["similarity"], leap_terms["avss"], rtol=1e-6)
    link_loss, _ = losses.compute_loss(_config(link_similarity="plain"), outputs, batch)
    np.testing.assert_allclose(
        link_loss, leap_loss, rtol=1e-6
    )  # no first pass: LINK-plain is LEAP's loss
    self.assertNotIn("first_pass", link_terms)

  def test_without_pseudo_labels_falls_back_like_leap(self):
    outputs, batch = _outputs(first_pass=False), _batch(with_pseudo=False)
    off = {flag: False for flag in losses.PSEUDO_LABEL_FLAGS}  # configs/link.py's recipe
    _, terms = losses.compute_loss(_config(link_similarity="plain", **off), outputs, batch)
    self.assertEqual(float(terms["audio_segment"]), 0.0)
    leap_config = _config(**off)
    leap_config.name = "leap"
    _, leap_terms = losses.compute_loss(leap_config, outputs, batch)
    for key in ("video", "audio", "visual", "audio_segment"):
      np.testing.assert_allclose(terms[key], leap_terms[key], rtol=1e-6, err_msg=key)
    np.testing.assert_allclose(terms["similarity"], leap_terms["avss"], rtol=1e-6)

  def test_mu_gets_a_gradient(self):
    outputs, batch = _outputs(), _batch()
    grad = jax.grad(
        lambda mu: losses.compute_loss(_config(), {**outputs, "similarity_mu": mu}, batch)[0]
    )(jnp.float32(0.3))
    self.assertLess(float(grad), 0.0)  # a larger weight costs more: the loss pushes mu toward 1

  def test_bad_settings_raise_input_error(self):
    with self.assertRaisesRegex(InputError, "link_similarity"):
      losses.compute_loss(_config(link_similarity="cosine"), _outputs(), _batch())
    outputs = _outputs()
    del outputs["similarity_mu"]
    with self.assertRaisesRegex(InputError, "similarity_mu"):
      losses.compute_loss(_config(), outputs, _batch())


if __name__ == "__main__":
  absltest.main()
