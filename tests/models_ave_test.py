"""AVE-ECCV18's A+V-att, DMRN and weak A+V-att (avvp_jax.models.ave), their converter and loss, against PyTorch
transcriptions of the official forwards (tests/ave_torch_oracles.py) with random weights (the `parity` extra).
"""

import functools

from absl.testing import absltest
from absl.testing import parameterized
import jax
import numpy as np
import torch

from avvp_jax.convert import ave as convert_ave
from avvp_jax.errors import InputError
from avvp_jax.models import ave
from avvp_jax.tasks.ave.losses import ave as ave_loss
import ave_torch_oracles as oracles

TOL = dict(rtol=1e-5, atol=1e-5)


def reference(model: str, seed: int = 0) -> torch.nn.Module:
  torch.manual_seed(seed)
  module = {
      "av_att": lambda: oracles.AttNet(),
      "dmrn": lambda: oracles.TBMRFNet(),
      "av_att_weak": lambda: oracles.AttNet(weak=True),
  }[model]()
  return oracles.randomize(module, seed)


class AVENetTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.enter_context(jax.numpy_rank_promotion("raise"))

  @parameterized.named_parameters(("av_att", "av_att"), ("dmrn", "dmrn"))
  def test_supervised_matches_official(self, model):
    torch_model = reference(model)
    audio, visual = oracles.inputs()
    segment_label, _ = oracles.labels()
    with torch.no_grad():
      prob = torch_model(torch.from_numpy(audio), torch.from_numpy(visual))
      want_loss = torch.nn.MultiLabelSoftMarginLoss()(prob, torch.from_numpy(segment_label))
    params = convert_ave.official_to_flax(oracles.state_dict(torch_model), model)
    flax_model = ave.AVENet(**convert_ave.MODULES[model])
    out = flax_model.apply({"params": params}, audio, visual, train=False)
    np.testing.assert_allclose(out["segment_prob"], prob.numpy(), **TOL)
    log_prob = jax.nn.log_softmax(out["segment_logits"])  # the logits, up to a constant per segment
    np.testing.assert_allclose(log_prob, np.log(prob.numpy()), **TOL)
    np.testing.assert_array_equal(out["segment_class"], prob.numpy().argmax(-1))
    self.assertEqual(out["segment_class"].dtype, np.int32)
    self.assertEqual(out["visual_attention"].shape, (2, 10, 49))
    np.testing.assert_allclose(out["visual_attention"].sum(-1), 1.0, **TOL)
    self.assertNotIn("video_prob", out)
    got_loss, terms = ave_loss.loss(out, {"segment_label": segment_label, "mask": np.ones(2)})
    np.testing.assert_allclose(got_loss, want_loss.numpy(), **TOL)
    self.assertEqual(set(terms), {"multilabel_soft_margin"})

  def test_weak_matches_official(self):
    torch_model = reference("av_att_weak")
    audio, visual = oracles.inputs()
    _, video_label = oracles.labels()
    with torch.no_grad():
      video_prob, score = torch_model(torch.from_numpy(audio), torch.from_numpy(visual))
      want_loss = torch.nn.MultiLabelSoftMarginLoss()(video_prob, torch.from_numpy(video_label))
    params = convert_ave.official_to_flax(oracles.state_dict(torch_model), "av_att_weak")
    out = ave.AVENet(supervision="weak").apply({"params": params}, audio, visual)
    np.testing.assert_allclose(out["video_prob"], video_prob.numpy(), **TOL)
    np.testing.assert_allclose(out["segment_logits"], score.numpy(), **TOL)
    np.testing.assert_array_equal(out["segment_class"], score.numpy().argmax(-1))
    got_loss, _ = ave_loss.loss(out, {"video_label": video_label}, supervision="weak")
    np.testing.assert_allclose(got_loss, want_loss.numpy(), **TOL)

  @parameterized.named_parameters(
      ("av_att", "av_att"), ("dmrn", "dmrn"), ("av_att_weak", "av_att_weak")
  )
  def test_converted_tree_is_the_model_tree(self, model):
    audio, visual = oracles.inputs(batch=1)
    module = ave.AVENet(**convert_ave.MODULES[model])
    init = jax.eval_shape(module.init, jax.random.key(0), audio, visual)
    converted = convert_ave.official_to_flax(oracles.state_dict(reference(model)), model)
    shapes = lambda tree: jax.tree.map(np.shape, tree)
    self.assertEqual(shapes(init["params"]), shapes(converted))

  def test_init_is_the_official_one(self):
    audio, visual = oracles.inputs(batch=1)
    params = jax.jit(ave.AVENet(fusion="dmrn").init)(jax.random.key(0), audio, visual)["params"]
    xavier = lambda fan_in, fan_out: np.sqrt(6 / (fan_in + fan_out))
    bounds = {  # TBMRF_Net: xavier on L2 only, torch's default +-1/sqrt(fan_in) elsewhere
        ("L2", "kernel"): xavier(256, 29),
        ("L2", "bias"): 1 / np.sqrt(256),
        ("dmrn", "U_v_0", "kernel"): 1 / np.sqrt(256),
        ("attention", "affine_video", "kernel"): 1 / np.sqrt(512),
        ("attention", "affine_h", "kernel"): 1 / np.sqrt(49),
        ("lstm_video", "weight_ih_l0"): 1 / np.sqrt(128),
    }
    for path, bound in bounds.items():
      value = np.abs(functools.reduce(lambda tree, key: tree[key], path, params)).max()
      self.assertBetween(value, 0.9 * bound, bound, msg=str(path))

  def test_masked_loss_ignores_padded_clips(self):
    rng = np.random.default_rng(3)
    prob = jax.nn.softmax(rng.normal(size=(3, 10, 29)), axis=-1)
    segment_label, video_label = oracles.labels(batch=3)
    padded = {"segment_label": segment_label, "mask": np.array([1.0, 1.0, 0.0])}
    got, _ = ave_loss.loss({"segment_prob": prob}, padded)
    want = torch.nn.MultiLabelSoftMarginLoss()(
        torch.from_numpy(np.array(prob[:2])), torch.from_numpy(segment_label[:2])
    )
    np.testing.assert_allclose(got, want.numpy(), **TOL)
    weak, _ = ave_loss.loss(
        {"video_prob": prob[:, 0]},
        {"video_label": video_label, "mask": np.array([1.0, 0.0, 1.0])},
        supervision="weak",
    )
    want_weak = torch.nn.MultiLabelSoftMarginLoss()(
        torch.from_numpy(np.array(prob[[0, 2], 0])), torch.from_numpy(video_label[[0, 2]])
    )
    np.testing.assert_allclose(weak, want_weak.numpy(), **TOL)

  def test_bad_state_dict_is_one_line_input_error_naming_the_key(self):
    state = oracles.state_dict(reference("av_att"))
    missing = dict(state)
    del missing["lstm_video.bias_hh_l0_reverse"]
    with self.assertRaisesRegex(
        InputError, r"^[^\n]*missing lstm_video\.bias_hh_l0_reverse[^\n]*$"
    ):
      convert_ave.official_to_flax(missing, "av_att")
    wrong = dict(state, **{"affine_g.weight": np.zeros((49, 256), np.float32)})
    with self.assertRaisesRegex(InputError, r"^[^\n]*affine_g\.weight \(49, 256\)[^\n]*$"):
      convert_ave.official_to_flax(wrong, "av_att")
    with self.assertRaisesRegex(InputError, r"missing U_a\.0\.bias"):
      convert_ave.official_to_flax(state, "dmrn")  # an A+V-att file is no DMRN one
    with self.assertRaisesRegex(InputError, "unknown"):
      convert_ave.official_to_flax(state, "att")

  def test_bad_settings_raise_input_error(self):
    audio, visual = oracles.inputs(batch=1)
    with self.assertRaisesRegex(InputError, "fusion"):
      ave.AVENet(fusion="sum").init(jax.random.key(0), audio, visual)
    with self.assertRaisesRegex(InputError, "supervision"):
      ave_loss.loss({}, {}, supervision="strong")


if __name__ == "__main__":
  absltest.main()
