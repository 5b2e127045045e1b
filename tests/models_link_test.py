"""Tests of avvp_jax.models.link (LINK's TSAM, CMIM, PLSIM and encoder) against numpy oracles of eq. 1-6, 13-17."""

import dataclasses

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from avvp_jax import models
from avvp_jax.errors import InputError
from avvp_jax.models import han
from avvp_jax.models import label_embeddings
from avvp_jax.models import link
from avvp_jax.tasks.llp import task as llp_task
import models_oracles as oracles

DIM = 16


def _segments(seed=0, batch=2, seconds=10):
  rng = np.random.default_rng(seed)
  return tuple(rng.normal(size=(batch, seconds, DIM)).astype(np.float32) for _ in range(2))


# --- numpy oracles (float64), per segment / per channel with explicit loops where the equations index --------


def tsam_oracle(p, x, temporal_mlp="across_time", spatial="pool"):
  """CBAM with segments as channels: temporal weight per segment, then a channel weight from time pooling."""
  mlp = lambda prefix, z: oracles.dense(
      p[f"{prefix}_out"], oracles.relu(oracles.dense(p[f"{prefix}_in"], z))
  )
  b, t, d = x.shape
  avg_t = np.array([[x[i, s].mean() for s in range(t)] for i in range(b)])  # [B, T]
  max_t = np.array([[x[i, s].max() for s in range(t)] for i in range(b)])
  if temporal_mlp == "across_time":
    w_t = oracles.sigmoid(mlp("temporal_mlp", avg_t) + mlp("temporal_mlp", max_t))
  else:
    w_t = oracles.sigmoid(
        mlp("temporal_mlp", avg_t[..., None]) + mlp("temporal_mlp", max_t[..., None])
    )[..., 0]
  x1 = x * w_t[:, :, None]
  avg_d, max_d = x1.mean(axis=1), x1.max(axis=1)  # [B, D]
  if spatial == "mlp":
    avg_d, max_d = mlp("spatial_mlp", avg_d), mlp("spatial_mlp", max_d)
  w_s = oracles.sigmoid(avg_d + max_d)
  return x1 * w_s[:, None, :], w_t, w_s


def cmim_oracle(p, a, v):
  """Eq. 4-6: f_ac = f_a + alpha2 softmax(f_a f_v^T)(beta2 f_v); outputs f_a + f_ac (visual likewise)."""
  f_ac = a + p["alpha2"] * oracles.softmax(a @ v.transpose(0, 2, 1), axis=-1) @ (p["beta2"] * v)
  f_vc = v + p["alpha1"] * oracles.softmax(v @ a.transpose(0, 2, 1), axis=-1) @ (p["beta1"] * a)
  return a + f_ac, v + f_vc


def plsim_oracle(p, a, v, audio_label, visual_label, table):
  """Eq. 13-17 with the mean class-name embedding of each segment's labels (zeros for none)."""
  mlp = lambda prefix, z: oracles.dense(
      p[f"{prefix}_out"], oracles.relu(oracles.dense(p[f"{prefix}_in"], z))
  )
  out = []
  for name, x, label in (("audio", a, audio_label), ("visual", v, visual_label)):
    e = np.zeros(label.shape[:2] + (table.shape[1],))
    for i in range(label.shape[0]):
      for t in range(label.shape[1]):
        classes = np.flatnonzero(label[i, t])
        if classes.size:
          e[i, t] = table[classes].mean(axis=0)
    out.append(x * mlp(f"{name}_scale", e) + mlp(f"{name}_shift", e) + x)
  return out


def _labels(seed, batch=2, seconds=10, rate=0.15):
  rng = np.random.default_rng(seed)
  return (rng.random((batch, seconds, 25)) < rate).astype(np.float32)


def _randomise_scalars(params, seed=5):
  """Non-trivial CMIM scalars (alpha starts at 0, beta at 1) so that every term of eq. 4-6 shows."""
  rng = np.random.default_rng(seed)
  return {
      **params,
      "cmim": {name: jnp.asarray(rng.uniform(0.3, 1.5), jnp.float32) for name in params["cmim"]},
  }


class TSAMTest(parameterized.TestCase):

  @parameterized.parameters(("across_time", "pool"), ("per_segment", "mlp"))
  def test_matches_numpy_oracle(self, temporal_mlp, spatial):
    x, _ = _segments()
    module = link.TSAM(temporal_mlp=temporal_mlp, spatial=spatial)
    params = module.init(jax.random.key(0), x)["params"]
    got, got_t, got_s = module.apply({"params": params}, x)
    want, want_t, want_s = tsam_oracle(oracles.to_numpy(params), x, temporal_mlp, spatial)
    self.assertEqual(got_t.shape, (2, 10))
    self.assertEqual(got_s.shape, (2, DIM))
    np.testing.assert_allclose(got_t, want_t, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_s, want_s, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

  def test_mlp_shapes(self):
    x, _ = _segments()
    params = link.TSAM(temporal_hidden=3).init(jax.random.key(0), x)["params"]
    self.assertEqual(params["temporal_mlp_in"]["kernel"].shape, (10, 3))
    self.assertEqual(params["temporal_mlp_out"]["kernel"].shape, (3, 10))
    self.assertNotIn("spatial_mlp_in", params)

  def test_bad_settings_raise_input_error(self):
    x, _ = _segments()
    with self.assertRaisesRegex(InputError, "tsam_temporal_mlp"):
      link.TSAM(temporal_mlp="both").init(jax.random.key(0), x)
    with self.assertRaisesRegex(InputError, "tsam_spatial"):
      link.TSAM(spatial="conv").init(jax.random.key(0), x)


class CMIMTest(absltest.TestCase):

  def test_matches_numpy_oracle(self):
    a, v = (x * 0.3 for x in _segments(1))
    module = link.CMIM()
    params = module.init(jax.random.key(0), a, v)["params"]
    self.assertEqual(
        {k: float(x) for k, x in params.items()},
        {"alpha1": 0.0, "alpha2": 0.0, "beta1": 1.0, "beta2": 1.0},
    )
    np.testing.assert_allclose(module.apply({"params": params}, a, v)[0], 2 * a, rtol=1e-6)
    params = {"alpha1": 0.7, "alpha2": -0.4, "beta1": 1.3, "beta2": 0.6}
    got_a, got_v = module.apply({"params": jax.tree.map(jnp.float32, params)}, a, v)
    want_a, want_v = cmim_oracle(params, a.astype(np.float64), v.astype(np.float64))
    np.testing.assert_allclose(got_a, want_a, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_v, want_v, rtol=1e-5, atol=1e-5)


def _plsim(**kwargs):
  """PLSIM as `models.build_model` builds it (its class-name tables loaded for LLP's classes)."""
  model_config = ml_collections.ConfigDict({"plsim": kwargs})
  return models.REFINERS["plsim"].build(model_config, llp_task.META, None)


class PLSIMTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.audio, self.visual = _segments(2)
    self.table = label_embeddings.load_label_embeddings("packaged")

  def test_given_labels_match_numpy_oracle(self):
    labels = (_labels(3), _labels(4))
    module = _plsim(hidden_dim=12)
    params = module.init(
        jax.random.key(0), self.audio, self.visual, None, train=False, segment_labels=labels
    )["params"]
    self.assertEqual(
        set(params),
        {
            f"{m}_{k}_{io}"
            for m in ("audio", "visual")
            for k in ("scale", "shift")
            for io in ("in", "out")
        },
    )
    self.assertEqual(params["audio_scale_in"]["kernel"].shape, (384, 12))
    got_a, got_v, extras = module.apply(
        {"params": params},
        self.audio,
        self.visual,
        None,
        train=True,
        segment_labels=labels,
        video_label=np.zeros((2, 25), np.float32),
    )
    want_a, want_v = plsim_oracle(
        oracles.to_numpy(params), self.audio, self.visual, *labels, self.table
    )
    np.testing.assert_allclose(got_a, want_a, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_v, want_v, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(
        extras["plsim_audio_label"], labels[0]
    )  # given labels are never gated

  def test_own_predictions_gated_only_in_training(self):
    rng = np.random.default_rng(6)
    first_pass = {
        "segment_audio_prob": rng.random((2, 10, 25)).astype(np.float32),
        "segment_visual_prob": rng.random((2, 10, 25)).astype(np.float32),
    }
    weak = (rng.random((2, 25)) < 0.3).astype(np.float32)
    module = _plsim(threshold=0.7)
    params = module.init(jax.random.key(0), self.audio, self.visual, first_pass, train=False)[
        "params"
    ]
    run = lambda train: module.apply(
        {"params": params}, self.audio, self.visual, first_pass, train=train, video_label=weak
    )
    own_a = (first_pass["segment_audio_prob"] >= 0.7).astype(np.float64)
    own_v = (first_pass["segment_visual_prob"] >= 0.7).astype(np.float64)
    test_a, test_v, test_extras = run(False)
    np.testing.assert_array_equal(test_extras["plsim_visual_label"], own_v)
    want = plsim_oracle(oracles.to_numpy(params), self.audio, self.visual, own_a, own_v, self.table)
    np.testing.assert_allclose(test_a, want[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(test_v, want[1], rtol=1e-5, atol=1e-5)
    train_a, _, train_extras = run(True)
    np.testing.assert_array_equal(train_extras["plsim_audio_label"], own_a * weak[:, None, :])
    want = plsim_oracle(
        oracles.to_numpy(params),
        self.audio,
        self.visual,
        own_a * weak[:, None, :],
        own_v,
        self.table,
    )
    np.testing.assert_allclose(train_a, want[0], rtol=1e-5, atol=1e-5)
    ungated = _plsim(threshold=0.7, train_gate=False).apply(
        {"params": params}, self.audio, self.visual, first_pass, train=True, video_label=weak
    )
    np.testing.assert_array_equal(ungated[2]["plsim_audio_label"], own_a)

  def test_missing_labels_raise_input_error(self):
    with self.assertRaisesRegex(InputError, "segment_labels"):
      _plsim().init(jax.random.key(0), self.audio, self.visual, None, train=False)


def _link_config(tsam=True, cmim=True, plsim=True):
  config = oracles.micro_model_config("mmil")
  config.encoder = "link"
  config.refiner = "plsim" if plsim else "none"
  config.link.tsam, config.link.cmim = tsam, cmim
  return config


class LINKModelTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.inputs = oracles.micro_inputs(raw_frames=False)

  def test_full_model_matches_numpy_oracle(self):
    """embed -> TSAM -> CMIM -> HAN -> MMIL first pass -> own labels -> PLSIM -> MMIL, all in numpy."""
    model = models.build_model(_link_config(), llp_task.META)
    params = model.init(jax.random.key(0), *self.inputs)["params"]
    self.assertEqual(set(params), {"embed", "encoder", "decoder", "refiner"})
    self.assertEqual(
        set(params["encoder"]), {"audio_tsam", "visual_tsam", "cmim", "han", "similarity_mu"}
    )
    params = {**params, "encoder": _randomise_scalars(params["encoder"])}
    with jax.numpy_rank_promotion("raise"):
      got = model.apply({"params": params}, *self.inputs, train=False)
    p = oracles.to_numpy(params)
    a, v = oracles.embed(p["embed"], *self.inputs)
    a, _, _ = tsam_oracle(p["encoder"]["audio_tsam"], a)
    v, _, _ = tsam_oracle(p["encoder"]["visual_tsam"], v)
    a, v = cmim_oracle(p["encoder"]["cmim"], a, v)
    a, v = oracles.han_encoder(p["encoder"]["han"], a, v, num_layers=1)
    first = oracles.mmil(p["decoder"], a, v)
    own_a = (first["segment_audio_prob"] >= 0.5).astype(np.float64)
    own_v = (first["segment_visual_prob"] >= 0.5).astype(np.float64)
    table = label_embeddings.load_label_embeddings("packaged")
    want = oracles.mmil(p["decoder"], *plsim_oracle(p["refiner"], a, v, own_a, own_v, table))
    for key, value in want.items():
      np.testing.assert_allclose(got[key], value, rtol=2e-5, atol=2e-5, err_msg=key)
    np.testing.assert_allclose(
        got["first_pass_segment_audio_prob"], first["segment_audio_prob"], rtol=2e-5, atol=2e-5
    )
    np.testing.assert_allclose(got["audio_embedding"], a, rtol=2e-5, atol=2e-5)
    np.testing.assert_array_equal(got["plsim_visual_label"], own_v)
    self.assertEqual(float(got["similarity_mu"]), 0.0)

  def test_all_parts_off_is_han_mmil(self):
    model = models.build_model(_link_config(tsam=False, cmim=False, plsim=False), llp_task.META)
    params = model.init(jax.random.key(1), *self.inputs)["params"]
    self.assertEqual(set(params), {"embed", "encoder", "decoder"})
    self.assertEqual(set(params["encoder"]), {"han", "similarity_mu"})
    got = model.apply({"params": params}, *self.inputs, train=False)
    p = oracles.to_numpy(params)
    want = oracles.mmil(
        p["decoder"],
        *oracles.han_encoder(
            p["encoder"]["han"], *oracles.embed(p["embed"], *self.inputs), num_layers=1
        ),
    )
    for key, value in want.items():
      np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-5, err_msg=key)
    self.assertNotIn("first_pass_video_prob", got)

  def test_han_is_configured_by_the_han_section_alone(self):
    """LINKEncoder declares no HAN attribute: its `han` is HANEncoder(**config.model.han)."""
    han_fields = {f.name for f in dataclasses.fields(han.HANEncoder)} - {"parent", "name", "dtype"}
    self.assertEmpty(han_fields & {f.name for f in dataclasses.fields(link.LINKEncoder)})
    config = _link_config(tsam=False, cmim=False, plsim=False)
    config.han.update(
        num_layers=2, num_heads=2, ffn_dim=24, stacking="stacked", share_modalities=False
    )
    model = models.build_model(config, llp_task.META)
    self.assertIsInstance(model.encoder.han, han.HANEncoder)
    for key, value in config.han.items():
      self.assertEqual(getattr(model.encoder.han, key), value, key)
    params = model.init(jax.random.key(3), *self.inputs)["params"]
    self.assertEqual(
        set(params["encoder"]["han"]),
        {"audio_layers_0", "audio_layers_1", "visual_layers_0", "visual_layers_1"},
    )
    self.assertEqual(
        params["encoder"]["han"]["audio_layers_1"]["linear1"]["kernel"].shape, (DIM, 24)
    )
    got = model.apply({"params": params}, *self.inputs, train=False)
    p = oracles.to_numpy(params)
    encoded = oracles.han_encoder(
        p["encoder"]["han"],
        *oracles.embed(p["embed"], *self.inputs),
        num_layers=2,
        num_heads=2,
        stacking="stacked",
        share=False,
    )
    for key, value in oracles.mmil(p["decoder"], *encoded).items():
      np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-5, err_msg=key)

  def test_han_with_no_layers_is_skipped(self):
    config = _link_config(plsim=False)
    config.han.num_layers = 0
    params = models.build_model(config, llp_task.META).init(jax.random.key(4), *self.inputs)[
        "params"
    ]
    self.assertEqual(set(params["encoder"]), {"audio_tsam", "visual_tsam", "cmim", "similarity_mu"})

  def test_given_pseudo_labels_reach_plsim_and_others_ignore_them(self):
    labels = (_labels(7), _labels(8))
    model = models.build_model(_link_config(tsam=False, cmim=False), llp_task.META)
    params = model.init(jax.random.key(2), *self.inputs)["params"]
    given = model.apply(
        {"params": params},
        *self.inputs,
        train=True,
        segment_labels=labels,
        rngs={"dropout": jax.random.key(0)},
    )
    np.testing.assert_array_equal(given["plsim_audio_label"], labels[0])
    han_model = models.build_model(oracles.micro_model_config("mmil"), llp_task.META)
    han_params = han_model.init(jax.random.key(2), *self.inputs)["params"]
    plain = han_model.apply({"params": han_params}, *self.inputs)
    ignored = han_model.apply(
        {"params": han_params}, *self.inputs, segment_labels=labels, video_label=labels[0][:, 0]
    )
    np.testing.assert_array_equal(plain["video_prob"], ignored["video_prob"])


if __name__ == "__main__":
  absltest.main()
