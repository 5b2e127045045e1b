"""Tests of avvp_jax.tasks.llp.losses against loop-by-loop numpy transcriptions of the official formulas."""

import math

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from configs import common
from avvp_jax.tasks.llp import losses
from avvp_jax.tasks.llp import pseudo_labels
from avvp_jax.errors import InputError

B, T, C, D = 3, 10, 25, 8
EPS = 1e-7


def _config(name):
  config = common.get_config().loss
  config.name = name
  return config


def _random_case(seed, with_pseudo_labels=False, dtype=np.float32):
  rng = np.random.default_rng(seed)
  outputs = {
      "video_prob": rng.uniform(size=(B, C)),
      "audio_prob": rng.uniform(size=(B, C)),
      "visual_prob": rng.uniform(size=(B, C)),
      "segment_audio_prob": rng.uniform(size=(B, T, C)),
      "segment_visual_prob": rng.uniform(size=(B, T, C)),
      "audio_embedding": rng.normal(size=(B, T, D)),
      "visual_embedding": rng.normal(size=(B, T, D)),
  }
  outputs["video_prob"][0, :3] = [0.0, 1.0, 1e-9]  # exercise the clamp
  outputs["audio_embedding"][1, 2] = 0.0  # a zero vector in the cosine
  outputs = {k: v.astype(dtype) for k, v in outputs.items()}
  batch = {"label": (rng.uniform(size=(B, C)) < 0.2).astype(np.float32)}
  if with_pseudo_labels:
    batch[pseudo_labels.AUDIO_BATCH_KEY] = (rng.uniform(size=(B, T, C)) < 0.15).astype(np.float32)
    batch[pseudo_labels.VISUAL_BATCH_KEY] = (rng.uniform(size=(B, T, C)) < 0.15).astype(np.float32)
  return outputs, batch


# --- numpy oracles, one scalar at a time ------------------------------------------------------------


def _np_bce(prob, target):
  """torch.nn.BCELoss (mean) of probabilities clamped in float32 (1 - 1e-7 rounds to 1 - 2**-23)."""
  prob = np.clip(np.asarray(prob, np.float32), np.float32(EPS), np.float32(1 - EPS))
  prob = prob.astype(np.float64).ravel()
  target = np.asarray(target, np.float64).ravel()
  total = 0.0
  for p, y in zip(prob, target):
    total += -(y * math.log(p) + (1 - y) * math.log(1 - p))
  return total / len(prob)


def _np_han(outputs, label, s_a=1.0, s_v=0.9):
  label = np.asarray(label, np.float64)
  return (
      _np_bce(outputs["video_prob"], label)
      + _np_bce(outputs["audio_prob"], s_a * label + (1 - s_a) * 0.5)
      + _np_bce(outputs["visual_prob"], s_v * label + (1 - s_v) * 0.5)
  )


def _np_cosine(a, v):
  sim = np.zeros((a.shape[0], a.shape[0]))
  for i in range(a.shape[0]):
    for j in range(v.shape[0]):
      na = max(math.sqrt(sum(x * x for x in a[i])), 1e-12)
      nv = max(math.sqrt(sum(x * x for x in v[j])), 1e-12)
      sim[i, j] = sum(x * y for x, y in zip(a[i], v[j])) / (na * nv)
  return sim


def _np_official_target(pa, pv, eps=0.01):
  """LEAP's released avss target: sigmoid(log(Pa Pv^T / most events in a segment)) + eps."""
  most = max(max(row.sum() for row in pa), max(row.sum() for row in pv))
  if most == 0:
    most = 1e-8
  target = np.zeros((pa.shape[0], pv.shape[0]))
  for i in range(pa.shape[0]):
    for j in range(pv.shape[0]):
      x = float(np.dot(pa[i], pv[j])) / most
      target[i, j] = (0.0 if x == 0 else 1.0 / (1.0 + math.exp(-math.log(x)))) + eps
  return target


def _np_paper_target(pa, pv):
  """The paper's EIoU: events shared by audio segment i and visual segment j over their union."""
  target = np.zeros((pa.shape[0], pv.shape[0]))
  for i in range(pa.shape[0]):
    for j in range(pv.shape[0]):
      audio_events = {c for c in range(pa.shape[1]) if pa[i, c] > 0}
      visual_events = {c for c in range(pv.shape[1]) if pv[j, c] > 0}
      union = audio_events | visual_events
      target[i, j] = len(audio_events & visual_events) / len(union) if union else 0.0
  return target


def _np_avss(outputs, pa, pv, kind="official", eps=0.01):
  total = 0.0
  for b in range(pa.shape[0]):
    sim = np.maximum(
        _np_cosine(
            np.asarray(outputs["audio_embedding"][b], np.float64),
            np.asarray(outputs["visual_embedding"][b], np.float64),
        ),
        0.0,
    )
    target = (
        _np_official_target(pa[b], pv[b], eps)
        if kind == "official"
        else _np_paper_target(pa[b], pv[b])
    )
    total += ((sim - target) ** 2).mean()
  return total / pa.shape[0]


def _np_fallback_segments(segment_prob, video_prob):
  out = np.zeros(segment_prob.shape)
  for b in range(segment_prob.shape[0]):
    for t in range(segment_prob.shape[1]):
      for c in range(segment_prob.shape[2]):
        out[b, t, c] = float(segment_prob[b, t, c] >= 0.5 and video_prob[b, c] >= 0.5)
  return out


def _f64(x):
  return np.asarray(x, np.float64)


class HanLossTest(parameterized.TestCase):

  @parameterized.parameters(0, 1, 2)
  def test_matches_numpy_oracle(self, seed):
    outputs, batch = _random_case(seed)
    loss, terms = losses.compute_loss(_config("han"), outputs, batch)
    np.testing.assert_allclose(float(loss), _np_han(outputs, batch["label"]), rtol=1e-5)
    np.testing.assert_allclose(
        float(terms["visual"]),
        _np_bce(outputs["visual_prob"], 0.9 * batch["label"] + 0.05),
        rtol=1e-5,
    )
    self.assertEqual(set(terms), {"video", "audio", "visual"})

  def test_smoothing_from_config(self):
    outputs, batch = _random_case(3)
    config = _config("han")
    config.audio_smoothing, config.visual_smoothing = 0.8, 0.7
    loss, _ = losses.compute_loss(config, outputs, batch)
    np.testing.assert_allclose(float(loss), _np_han(outputs, batch["label"], 0.8, 0.7), rtol=1e-5)

  def test_mask_drops_padding(self):
    outputs, batch = _random_case(4)
    batch["mask"] = np.array([1.0, 1.0, 0.0], np.float32)
    loss, _ = losses.compute_loss(_config("han"), outputs, batch)
    first_two = {k: v[:2] for k, v in outputs.items()}
    np.testing.assert_allclose(float(loss), _np_han(first_two, batch["label"][:2]), rtol=1e-5)

  def test_unknown_name(self):
    outputs, batch = _random_case(0)
    with self.assertRaisesRegex(InputError, "config.loss.name"):
      losses.compute_loss(_config("nope"), outputs, batch)


class AvssTargetTest(absltest.TestCase):
  """Hand-worked segment labels, T = 2 and C = 3."""

  def setUp(self):
    super().setUp()
    # audio: segment 0 = {0, 1}, segment 1 = {}; visual: segment 0 = {1}, segment 1 = {1, 2}.
    self.pa = np.array([[[1, 1, 0], [0, 0, 0]]], np.float32)
    self.pv = np.array([[[0, 1, 0], [0, 1, 1]]], np.float32)

  def test_paper_iou(self):
    target = losses.avss_target(self.pa, self.pv, "paper")
    # (a0, v0): {1} / {0, 1} = 1/2; (a0, v1): {1} / {0, 1, 2} = 1/3; a1 is empty: 0 / |v_j| = 0.
    np.testing.assert_allclose(np.asarray(target)[0], [[1 / 2, 1 / 3], [0.0, 0.0]], rtol=1e-6)

  def test_official(self):
    target = losses.avss_target(self.pa, self.pv, "official", eps=0.01)
    # most events in one segment: max(2, 2) = 2; x = shared / 2 -> x / (1 + x) + 0.01.
    x = np.array([[0.5, 0.5], [0.0, 0.0]])
    np.testing.assert_allclose(np.asarray(target)[0], x / (1 + x) + 0.01, rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(target)[0], _np_official_target(self.pa[0], self.pv[0]), rtol=1e-6
    )

  def test_no_events_at_all(self):
    empty = np.zeros((1, 2, 3), np.float32)
    np.testing.assert_allclose(
        np.asarray(losses.avss_target(empty, empty, "official", 0.01)),
        np.full((1, 2, 2), 0.01),
        rtol=1e-6,
    )
    np.testing.assert_array_equal(
        np.asarray(losses.avss_target(empty, empty, "paper")), np.zeros((1, 2, 2))
    )

  def test_random_against_oracles(self):
    rng = np.random.default_rng(7)
    pa = (rng.uniform(size=(2, T, C)) < 0.2).astype(np.float32)
    pv = (rng.uniform(size=(2, T, C)) < 0.2).astype(np.float32)
    for b in range(2):
      np.testing.assert_allclose(
          np.asarray(losses.avss_target(pa, pv, "paper"))[b],
          _np_paper_target(pa[b], pv[b]),
          rtol=1e-6,
      )
      np.testing.assert_allclose(
          np.asarray(losses.avss_target(pa, pv, "official", 0.01))[b],
          _np_official_target(pa[b], pv[b]),
          rtol=1e-6,
      )

  def test_unknown_kind(self):
    with self.assertRaisesRegex(InputError, "avss_target"):
      losses.avss_target(self.pa, self.pv, "both")


class LeapLossTest(parameterized.TestCase):

  @parameterized.parameters("official", "paper")
  def test_with_pseudo_labels(self, kind):
    outputs, batch = _random_case(10, with_pseudo_labels=True)
    config = _config("leap")
    config.avss_target = kind
    config.segment_weight, config.avss_weight = 0.7, 1.3
    loss, terms = losses.compute_loss(config, outputs, batch)
    pa, pv = batch[pseudo_labels.AUDIO_BATCH_KEY], batch[pseudo_labels.VISUAL_BATCH_KEY]
    expected = {
        "video": _np_bce(outputs["video_prob"], batch["label"]),
        "audio": _np_bce(outputs["audio_prob"], pa.max(axis=1)),
        "visual": _np_bce(outputs["visual_prob"], pv.max(axis=1)),
        "audio_segment": _np_bce(outputs["segment_audio_prob"], pa),
        "visual_segment": _np_bce(outputs["segment_visual_prob"], pv),
        "avss": _np_avss(outputs, pa, pv, kind),
    }
    self.assertEqual(set(terms), set(expected))
    for name, value in expected.items():
      np.testing.assert_allclose(float(terms[name]), value, rtol=1e-5, err_msg=name)
    total = (
        expected["video"]
        + expected["audio"]
        + expected["visual"]
        + 0.7 * (expected["audio_segment"] + expected["visual_segment"])
        + 1.3 * expected["avss"]
    )
    np.testing.assert_allclose(float(loss), total, rtol=1e-5)

  def _no_pseudo_label_config(self, segment_loss):
    config = _config("leap")
    config.audio_pseudo_labels = config.visual_pseudo_labels = config.avss_from_pseudo_labels = (
        False
    )
    config.audio_segment_loss = config.visual_segment_loss = segment_loss
    return config

  @parameterized.parameters(False, True)
  def test_without_pseudo_labels(self, segment_loss):
    outputs, batch = _random_case(11)
    # Make the own-prediction avss target non-trivial: a few confident video-level and segment predictions.
    outputs["audio_prob"][:, :5] = 0.9
    outputs["visual_prob"][:, 3:8] = 0.8
    loss, terms = losses.compute_loss(self._no_pseudo_label_config(segment_loss), outputs, batch)
    label = batch["label"]
    pa = _np_fallback_segments(outputs["segment_audio_prob"], outputs["audio_prob"])
    pv = _np_fallback_segments(outputs["segment_visual_prob"], outputs["visual_prob"])
    self.assertGreater(pa.sum(), 0)
    self.assertGreater(pv.sum(), 0)
    per_second = lambda y: np.repeat(y[:, None, :], T, axis=1)  # the official per-second copy
    expected = {
        "video": _np_bce(outputs["video_prob"], label),
        "audio": _np_bce(outputs["audio_prob"], label),  # smoothing 1.0
        "visual": _np_bce(outputs["visual_prob"], 0.9 * label + 0.05),
        "audio_segment": _np_bce(outputs["segment_audio_prob"], per_second(label))
        if segment_loss
        else 0.0,
        "visual_segment": (
            _np_bce(outputs["segment_visual_prob"], per_second(0.9 * label + 0.05))
            if segment_loss
            else 0.0
        ),
        "avss": _np_avss(outputs, pa, pv, "official"),
    }
    for name, value in expected.items():
      np.testing.assert_allclose(float(terms[name]), value, rtol=1e-5, atol=1e-7, err_msg=name)
    np.testing.assert_allclose(float(loss), sum(expected.values()), rtol=1e-5)

  def test_flags_are_independent(self):
    # Pseudo labels for the BCEs, the avss target from the model's own predictions (one official combination).
    outputs, batch = _random_case(13, with_pseudo_labels=True)
    outputs["audio_prob"][:, :5] = 0.9
    config = _config("leap")
    config.avss_from_pseudo_labels = False
    config.visual_pseudo_labels = False
    _, terms = losses.compute_loss(config, outputs, batch)
    pa_own = _np_fallback_segments(outputs["segment_audio_prob"], outputs["audio_prob"])
    pv_own = _np_fallback_segments(outputs["segment_visual_prob"], outputs["visual_prob"])
    pa = batch[pseudo_labels.AUDIO_BATCH_KEY]
    np.testing.assert_allclose(
        float(terms["avss"]), _np_avss(outputs, pa_own, pv_own, "official"), rtol=1e-5
    )
    np.testing.assert_allclose(
        float(terms["audio"]), _np_bce(outputs["audio_prob"], pa.max(axis=1)), rtol=1e-5
    )
    np.testing.assert_allclose(
        float(terms["visual"]),
        _np_bce(outputs["visual_prob"], 0.9 * batch["label"] + 0.05),
        rtol=1e-5,
    )
    self.assertEqual(losses.needs_pseudo_labels(config), ["audio_pseudo_labels"])
    self.assertEqual(losses.needs_pseudo_labels(self._no_pseudo_label_config(True)), [])
    self.assertEqual(losses.needs_pseudo_labels(_config("han")), [])

  def test_missing_pseudo_labels_are_refused_naming_the_flag(self):
    outputs, batch = _random_case(12, with_pseudo_labels=True)
    del batch[pseudo_labels.VISUAL_BATCH_KEY]
    with self.assertRaisesRegex(InputError, "visual_pseudo_labels is True.*pseudo labels"):
      losses.compute_loss(_config("leap"), outputs, batch)
    outputs, batch = _random_case(12)
    with self.assertRaisesRegex(InputError, "config.loss.audio_pseudo_labels"):
      losses.compute_loss(_config("leap"), outputs, batch)


class TransformTest(parameterized.TestCase):

  @parameterized.parameters(("han", False), ("leap", False), ("leap", True))
  def test_jit_matches_eager_and_gradient_is_finite(self, name, with_pseudo_labels):
    outputs, batch = _random_case(20, with_pseudo_labels)
    config = _config(name)
    if not with_pseudo_labels:
      config.audio_pseudo_labels = config.visual_pseudo_labels = config.avss_from_pseudo_labels = (
          False
      )

    def loss_fn(outs):
      return losses.compute_loss(config, outs, batch)[0]

    outputs = jax.tree.map(jnp.asarray, outputs)
    eager = loss_fn(outputs)
    jitted = jax.jit(loss_fn)(outputs)
    np.testing.assert_allclose(float(jitted), float(eager), rtol=1e-6)
    grads = jax.grad(loss_fn)(outputs)
    for key, grad in grads.items():
      self.assertTrue(np.all(np.isfinite(np.asarray(grad))), key)
    self.assertGreater(float(jnp.abs(grads["audio_prob"]).sum()), 0.0)
    if name == "leap":
      self.assertGreater(float(jnp.abs(grads["audio_embedding"]).sum()), 0.0)
      # The fallback avss target comes from the predictions but passes no gradient into them.
      self.assertEqual(grads["segment_audio_prob"].dtype, jnp.float32)

  @parameterized.parameters("han", "leap")
  def test_bfloat16_outputs(self, name):
    outputs, batch = _random_case(21, with_pseudo_labels=True)
    outputs16 = {k: jnp.asarray(v, jnp.bfloat16) for k, v in outputs.items()}
    loss, terms = jax.jit(lambda o: losses.compute_loss(_config(name), o, batch))(outputs16)
    self.assertEqual(loss.dtype, jnp.float32)
    for value in terms.values():
      self.assertEqual(value.dtype, jnp.float32)
    # Same as the float32 loss of the bf16-rounded inputs.
    rounded = {k: np.asarray(v.astype(jnp.float32)) for k, v in outputs16.items()}
    reference, _ = losses.compute_loss(_config(name), rounded, batch)
    np.testing.assert_allclose(float(loss), float(reference), rtol=1e-6)
    self.assertTrue(np.isfinite(float(loss)))


if __name__ == "__main__":
  absltest.main()
