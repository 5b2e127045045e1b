"""CMBS (avvp_jax.models.cmbs), its loss (avvp_jax.tasks.ave.losses.cmbs) and its state_dict mapping
(avvp_jax.convert.cmbs) against a PyTorch transcription of the official forward (tests/cmbs_torch_oracle.py)
with random weights under the official parameter names, in float64 as the official code runs.
"""

import functools

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np
import torch
from torch import nn

from avvp_jax.convert import cmbs as convert_cmbs
from avvp_jax.errors import InputError
from avvp_jax.models import cmbs
from avvp_jax.models import cmran
from avvp_jax.tasks.ave.losses import cmbs as cmbs_loss
import cmbs_torch_oracle as oracle
import torch_oracles

BATCH, SECONDS = 3, 10
PARITY = dict(rtol=1e-12, atol=1e-12)  # float64 against float64 (reached: 2e-15)


def _features(seed=0, batch=BATCH):
  """Realistic ranges: VGGish embeddings ReLU'd (0 to ~2), pool5 maps 0 to ~10 with many zeros."""
  rng = np.random.default_rng(seed)
  audio = rng.uniform(0.0, 2.0, (batch, SECONDS, 128)) * (rng.random((batch, SECONDS, 128)) < 0.7)
  visual = np.clip(rng.normal(-1.0, 3.0, (batch, SECONDS, 7, 7, 512)), 0.0, 10.0)
  return audio, visual


def _labels(seed=0, batch=BATCH):
  """One event class per video, a random span of event segments; background-only video last (weak)."""
  rng = np.random.default_rng(seed)
  segment = np.zeros((batch, SECONDS, 29))
  for b in range(batch):
    start = rng.integers(0, 5)
    stop = rng.integers(start + 1, SECONDS + 1)
    event = np.arange(SECONDS)
    is_event = (event >= start) & (event < stop)
    segment[b, is_event, rng.integers(0, 28)] = 1
    segment[b, ~is_event, 28] = 1
  video = np.zeros((batch, 29))
  video[np.arange(batch), segment[..., :28].sum(1).argmax(-1)] = 1
  video[-1] = 0
  video[-1, 28] = 1  # a background-only video of the weak training set
  return {
      "segment_label": segment.astype(np.float32),
      "video_label": video.astype(np.float32),
      "event_mask": segment[..., :28].max(-1).astype(np.float32),
      "mask": np.ones(batch, np.float32),
  }


def _eval_apply(model):
  """The jitted eval forward (compiling once is cheaper than running op by op here)."""
  return jax.jit(
      lambda params, audio, visual: model.apply({"params": params}, audio, visual, train=False)
  )


def _torch_state(model):
  return {key: value.detach().numpy() for key, value in model.state_dict().items()}


class WeakCMBSTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.torch_model = torch_oracles.randomize(oracle.WeakMainModel(), seed=1).double()
    cls.state = _torch_state(cls.torch_model)
    cls.audio, cls.visual = _features()
    with torch.no_grad():
      cls.want = cls.torch_model(torch.from_numpy(cls.visual), torch.from_numpy(cls.audio))
    with jax.enable_x64(True):
      params = convert_cmbs.params_from_state_dict(cls.state, "weak")
      cls.got = jax.tree.map(
          np.asarray, _eval_apply(cmbs.WeakCMBS())(params, cls.audio, cls.visual)
      )

  def test_outputs_match_official_forward_in_float64(self):
    gate, raw_logits, event_scores = (x.numpy() for x in self.want)
    self.assertEqual(self.got["event_gate"].dtype, np.float64)
    np.testing.assert_allclose(self.got["event_gate"], gate, **PARITY)
    np.testing.assert_allclose(self.got["class_logits"], raw_logits, **PARITY)
    np.testing.assert_allclose(self.got["class_prob"], event_scores, **PARITY)
    # The official weak evaluation: every segment foreground, labelled with the 29-way argmax.
    want_class = oracle.segment_prediction(self.want[0], self.want[1]).numpy()
    np.testing.assert_array_equal(self.got["segment_class"], want_class)
    np.testing.assert_array_equal(
        self.got["segment_class"], np.repeat(raw_logits.argmax(-1)[:, None], SECONDS, 1)
    )
    self.assertEqual(self.got["segment_class"].dtype, np.int32)

  def test_loss_matches_multilabel_soft_margin_on_probabilities(self):
    batch = _labels()
    want = nn.MultiLabelSoftMarginLoss()(
        self.want[2], torch.from_numpy(batch["video_label"]).double()
    )
    with jax.enable_x64(True):
      total, terms = cmbs_loss.loss(self.got, batch, supervision="weak")
      self.assertEqual(set(terms), {"class"})
    with self.assertRaisesRegex(InputError, "supervision 'weakly'"):
      cmbs_loss.loss(self.got, batch, supervision="weakly")
      np.testing.assert_allclose(float(total), want.item(), **PARITY)
    # A padded clip (mask 0) leaves the mean over the real clips unchanged.
    padded = {key: np.concatenate([value, value[:1] * 0]) for key, value in batch.items()}
    outputs = {key: np.concatenate([value, value[:1] + 3]) for key, value in self.got.items()}
    total_padded, _ = cmbs_loss.loss(outputs, padded, supervision="weak")
    np.testing.assert_allclose(float(total_padded), want.item(), rtol=1e-6)

  def test_gate_rule_option(self):
    # every_segment_foreground=False: an event where the gate exceeds 0.5.
    gate = np.array([[0.2, 0.7, 0.5, 0.51]])
    logits = np.array([[0.0] * 5 + [2.0] + [0.0] * 23])
    got = cmbs.weak_segment_classes(gate, logits, every_segment_foreground=False)
    np.testing.assert_array_equal(got, [[cmbs.BACKGROUND, 5, cmbs.BACKGROUND, 5]])
    official = cmbs.weak_segment_classes(gate, logits, every_segment_foreground=True)
    np.testing.assert_array_equal(official, [[5, 5, 5, 5]])
    # A background argmax makes every segment background.
    logits_bg = np.array([[0.0] * 28 + [1.0]])
    official = cmbs.weak_segment_classes(gate, logits_bg, every_segment_foreground=True)
    np.testing.assert_array_equal(official, [[cmbs.BACKGROUND] * 4])

  def test_dropout_only_in_training(self):
    audio, visual = self.audio.astype(np.float32), self.visual.astype(np.float32)
    params = {"params": convert_cmbs.params_from_state_dict(self.state, "weak")}
    train_apply = jax.jit(functools.partial(cmbs.WeakCMBS().apply, train=True))
    key = lambda seed: {"dropout": jax.random.key(seed, impl="rbg")}
    train_1 = train_apply(params, audio, visual, rngs=key(1))["class_logits"]
    train_1b = train_apply(params, audio, visual, rngs=key(1))["class_logits"]
    train_2 = train_apply(params, audio, visual, rngs=key(2))["class_logits"]
    np.testing.assert_array_equal(train_1, train_1b)
    self.assertGreater(float(jnp.abs(train_1 - train_2).max()), 1e-3)
    # Eval (the float64 run of setUpClass, which passed no dropout key) differs by far more than float32 does.
    self.assertGreater(float(np.abs(train_1 - self.got["class_logits"]).max()), 1e-3)


class SupervisedCMBSTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.torch_model = torch_oracles.randomize(oracle.SupvMainModel(), seed=2).double()
    cls.state = _torch_state(cls.torch_model)
    cls.audio, cls.visual = _features(seed=1)
    with torch.no_grad():
      cls.want = cls.torch_model(torch.from_numpy(cls.visual), torch.from_numpy(cls.audio))
    with jax.enable_x64(True):
      params = convert_cmbs.params_from_state_dict(cls.state, "supervised")
      cls.got = jax.tree.map(np.asarray, _eval_apply(cmbs.CMBS())(params, cls.audio, cls.visual))

  def test_outputs_match_official_forward_in_float64(self):
    is_event, event_scores, gate, av_score = (x.numpy() for x in self.want)
    self.assertEqual(self.got["event_logits"].dtype, np.float64)
    np.testing.assert_allclose(self.got["event_logits"], is_event[..., 0].T, **PARITY)
    np.testing.assert_allclose(self.got["class_logits"], event_scores, **PARITY)
    np.testing.assert_allclose(self.got["event_gate"], gate[..., 0].T, **PARITY)
    np.testing.assert_allclose(self.got["av_class_logits"], av_score, **PARITY)
    want_class = oracle.segment_prediction(
        self.want[0].transpose(1, 0)[..., 0], self.want[1]
    ).numpy()
    np.testing.assert_array_equal(self.got["segment_class"], want_class)
    self.assertEqual(self.got["segment_class"].dtype, np.int32)

  def test_segment_class_mixes_events_and_background(self):
    # The rule is only checked if the batch has both kinds of segments: shift the event logits so it does.
    logits = self.got["event_logits"]
    shifted = logits - np.median(logits)
    got = cmbs.segment_classes(shifted > 0, self.got["class_logits"])
    want = oracle.segment_prediction(torch.from_numpy(shifted), self.want[1]).numpy()
    self.assertTrue((want == cmbs.BACKGROUND).any() and (want != cmbs.BACKGROUND).any())
    np.testing.assert_array_equal(got, want)

  def test_loss_matches_official_four_terms(self):
    batch = _labels(seed=1)
    want_total, want_terms = oracle.supervised_loss(
        self.want, torch.from_numpy(batch["segment_label"]).double()
    )
    with jax.enable_x64(True):
      total, terms = cmbs_loss.loss(self.got, batch)
      self.assertEqual(set(terms), set(want_terms))
      for name, value in want_terms.items():
        np.testing.assert_allclose(float(terms[name]), value.item(), **PARITY, err_msg=name)
      np.testing.assert_allclose(float(total), want_total.item(), **PARITY)
    padded = {key: np.concatenate([value, value[:1] * 0]) for key, value in batch.items()}
    outputs = {key: np.concatenate([value, value[:1] + 3]) for key, value in self.got.items()}
    total_padded, _ = cmbs_loss.loss(outputs, padded)
    np.testing.assert_allclose(float(total_padded), want_total.item(), rtol=1e-6)

  def test_lstm_and_unused_keys(self):
    self.assertIn("video_norm.weight", self.state)  # never called: dropped
    with jax.enable_x64(True):
      params = convert_cmbs.params_from_state_dict(self.state, "supervised")
    rnn = params["audio_visual_rnn_layer"]
    self.assertEqual(rnn["audio_rnn"]["weight_ih_l0_reverse"].shape, (4 * 128, 128))
    self.assertEqual(rnn["visual_rnn"]["weight_hh_l0"].shape, (4 * 256, 256))
    self.assertNotIn("video_norm", params)
    with self.assertRaisesRegex(InputError, "unknown.*CAS_model"):
      convert_cmbs.params_from_state_dict(_torch_state(oracle.WeakMainModel()), "supervised")


class ConvertTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.state = _torch_state(oracle.WeakMainModel())

  def test_module_prefix_and_unused_keys(self):
    plain = convert_cmbs.params_from_state_dict(self.state, "weak")
    wrapped = {f"module.{key}": value for key, value in self.state.items()}
    prefixed = convert_cmbs.params_from_state_dict(wrapped, "weak")
    jax.tree.map(np.testing.assert_array_equal, plain, prefixed)
    self.assertIn("video_encoder.encoder_layer.linear1.weight", self.state)  # dropped, never called
    self.assertNotIn("classifier", plain)
    # The deep-copied stacks: both layers start equal in torch, and so in the converted params.
    kernel = plain["video_encoder"]["encoder"]["linear1"]["kernel"]
    self.assertEqual(kernel.shape, (2, 256, 2048))
    np.testing.assert_array_equal(kernel[0], kernel[1])

  def test_load_official_reads_a_data_parallel_file(self):
    path = self.create_tempfile("weak.pth.tar").full_path
    torch.save({f"module.{key}": torch.from_numpy(v) for key, v in self.state.items()}, path)
    loaded = convert_cmbs.load_official(path, "weak")
    jax.tree.map(
        np.testing.assert_array_equal,
        loaded,
        convert_cmbs.params_from_state_dict(self.state, "weak"),
    )
    self.assertEqual(loaded["v_fc"]["kernel"].dtype, np.float32)

  def test_missing_unknown_and_misshapen_keys_are_named(self):
    missing = dict(self.state)
    del missing["audio_decoder.decoder.layers.0.multihead_attn.in_proj_weight"]
    with self.assertRaisesRegex(
        InputError, "missing audio_decoder.decoder.layers.0.multihead_attn"
    ):
      convert_cmbs.params_from_state_dict(missing, "weak")
    unknown = dict(self.state, **{"extra.weight": np.zeros(3)})
    with self.assertRaisesRegex(InputError, "unknown extra.weight"):
      convert_cmbs.params_from_state_dict(unknown, "weak")
    misshapen = dict(self.state, **{"video_cas.weight": np.zeros((28, 256))})
    with self.assertRaisesRegex(InputError, r"video_cas.weight \(28, 256\)") as raised:
      convert_cmbs.params_from_state_dict(misshapen, "weak")
    self.assertNotIn("\n", str(raised.exception))
    flat_conv = dict(self.state, **{"CAS_model.classifier.0.weight": np.zeros((29, 256))})
    with self.assertRaisesRegex(InputError, r"CAS_model.classifier.0.weight \(29, 256\)"):
      convert_cmbs.params_from_state_dict(flat_conv, "weak")
    with self.assertRaisesRegex(InputError, "model 'strong'"):
      convert_cmbs.params_from_state_dict(self.state, "strong")


class FlaxModuleTest(absltest.TestCase):

  def test_stacked_layers_are_separate_params_initialised_equal(self):
    x = np.random.default_rng(0).normal(size=(2, SECONDS, 8)).astype(np.float32)
    for cross_modal, name in ((False, "encoder"), (True, "decoder")):
      module = cmran.RelationModule(d_model=16, num_layers=3, ffn_dim=24, cross_modal=cross_modal)
      memory = x[..., :4].repeat(4, -1) if cross_modal else None
      init = jax.jit(lambda x, m: module.init(jax.random.key(0), x, m, train=False)["params"])
      params = init(x, memory)
      self.assertEqual(params[name]["norm1"]["scale"].shape, (3, 16))
      for leaf in jax.tree.leaves(params[name]):
        np.testing.assert_array_equal(leaf[0], leaf[1])
        np.testing.assert_array_equal(leaf[0], leaf[2])
      # Separate params: changing one layer changes the output.
      apply = jax.jit(lambda p, x, m: module.apply({"params": p}, x, m, train=False))
      changed = jax.tree.map(lambda a: a, params)
      kernel = changed[name]["linear1"]["kernel"]
      changed[name]["linear1"]["kernel"] = kernel.at[1].multiply(-1.0)
      out, out_changed = apply(params, x, memory), apply(changed, x, memory)
      self.assertGreater(float(jnp.abs(out - out_changed).max()), 1e-3)
    # The full model's stacks are such stacks.
    shapes = convert_cmbs.abstract_params("weak")
    self.assertEqual(
        shapes["video_encoder"]["encoder"]["linear1"]["kernel"].shape, (2, 512 // 2, 2048)
    )
    self.assertEqual(shapes["audio_decoder"]["decoder"]["linear1"]["kernel"].shape, (1, 256, 1024))


if __name__ == "__main__":
  absltest.main()
