"""CVCM against a PyTorch transcription of the official code (GenjiB/CM-Co-Occurrence-AVVP).

* the model (HAN, the class-token co-occurrence layer, the MMIL pooling and the contrastive pooling) on random
  weights, dropout off, against `nets/net_trans.py`'s `MMIL_Net.forward` transcribed;
* the "cvcm" loss on one batch of clips and cross-video pairs against `main_trans.py:train`'s loss, after and
  during the warm-up epochs;
* the partners, the warm-up flag, bad input, and a tiny train on a refined-label file.
"""

import os
import sys

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from avvp_jax import models
from avvp_jax import tasks
from avvp_jax import state as state_lib
from avvp_jax import train
from avvp_jax.convert import common as convert_common
from avvp_jax.errors import InputError
from avvp_jax.tasks.llp import annotations
from avvp_jax.tasks.llp import batch_keys
from avvp_jax.tasks.llp import cvcm_mix
from avvp_jax.tasks.llp import losses
from avvp_jax.tasks.llp import refined_labels
from avvp_jax.tasks.llp import task as llp_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from configs import cvcm as cvcm_config  # pylint: disable=g-import-not-at-top,wrong-import-position
import torch_oracles  # pylint: disable=g-import-not-at-top,wrong-import-position

# Small widths keep the test fast; the transcription takes any (the official run: 512 and --occ_dim 128).
HIDDEN = 64
OCC = 16


# --- PyTorch transcription of nets/net_trans.py and main_trans.py -------------------------------------


class _Encoder(nn.Module):
  """The official `Encoder` of one layer (norm=None): the same layer on (a, v) and on (v, a)."""

  def __init__(self, d_model, dim_feedforward):
    super().__init__()
    self.layers = nn.ModuleList([torch_oracles.HANLayer(d_model, 1, dim_feedforward, dropout=0.0)])

  def forward(self, src_a, src_v):
    return self.layers[0](src_a, src_v), self.layers[0](src_v, src_a)


class ReferenceCVCM(nn.Module):
  """`MMIL_Net` of net_trans.py: the modules its forward calls, under the official names."""

  def __init__(self):
    super().__init__()
    h = HIDDEN
    self.fc_frame_att, self.fc_av_att = nn.Linear(h, 25), nn.Linear(h, 25)
    self.fc_a, self.fc_v = nn.Linear(128, h), nn.Linear(2048, h)
    self.fc_st, self.fc_fusion = nn.Linear(512, h), nn.Linear(2 * h, h)
    self.fc_occ_class_a, self.fc_occ_class_v = nn.Linear(h, 25 * OCC), nn.Linear(h, 25 * OCC)
    self.fc_occ_prob_a, self.fc_occ_prob_v = nn.Linear(OCC, 1), nn.Linear(OCC, 1)
    self.hat_encoder = _Encoder(h, h)  # run.sh --forward_dim 512 = the width
    self.av_class_encoder = _Encoder(OCC, OCC)

  def forward(self, audio, visual, visual_st, a_refine=None, v_refine=None, tmp=1.0):
    x1_audio = self.fc_a(audio)
    vid_s = self.fc_v(visual).permute(0, 2, 1).unsqueeze(-1)
    vid_s = F.avg_pool2d(vid_s, (8, 1)).squeeze(-1).permute(0, 2, 1)
    x2_visual = self.fc_fusion(torch.cat((vid_s, self.fc_st(visual_st)), dim=-1))
    x1, x2 = self.hat_encoder(x1_audio, x2_visual)
    x1_class = self.fc_occ_class_a(x1).relu().view(x1.size(0) * 10, 25, OCC)
    x2_class = self.fc_occ_class_v(x2).relu().view(x2.size(0) * 10, 25, OCC)
    x1_class_att, x2_class_att = self.av_class_encoder(x1_class, x2_class)
    x1_class_att = self.fc_occ_prob_a(x1_class_att).sigmoid().view(x1.size(0), 10, 1, -1)
    x2_class_att = self.fc_occ_prob_v(x2_class_att).sigmoid().view(x2.size(0), 10, 1, -1)
    frame_prob = torch.cat((x1_class_att, x2_class_att), dim=-2)
    x = torch.cat([x1.unsqueeze(-2), x2.unsqueeze(-2)], dim=-2)
    frame_att = torch.softmax(self.fc_frame_att(x), dim=1)
    av_att = torch.softmax(self.fc_av_att(x), dim=2)
    temporal_prob = frame_att * frame_prob
    global_prob = (temporal_prob * av_att).sum(dim=2).sum(dim=1)
    a_prob = temporal_prob[:, :, 0, :].sum(dim=1)
    v_prob = temporal_prob[:, :, 1, :].sum(dim=1)
    if a_refine is None:
      return global_prob, a_prob, v_prob, frame_prob, None
    gg_weight = self.fc_frame_att(x)
    a_related_w = torch.softmax(
        (gg_weight[:, :, 0, :] * a_refine.unsqueeze(1)).sum(-1).unsqueeze(-1), 1
    )
    v_related_w = torch.softmax(
        (gg_weight[:, :, 1, :] * v_refine.unsqueeze(1)).sum(-1).unsqueeze(-1), 1
    )
    a_agg = torch.bmm(x1.permute(0, 2, 1), a_related_w)  # is_a_ori 0
    v_agg = torch.bmm(x2.permute(0, 2, 1), v_related_w)  # is_v_ori 0
    xx1 = F.normalize(a_agg, p=2, dim=1)
    xx2 = F.normalize(v_agg, p=2, dim=1)
    sims = torch.mm(xx1.squeeze(-1), xx2.squeeze(-1).permute(1, 0)) / tmp
    return global_prob, a_prob, v_prob, frame_prob, sims


class LabelSmoothingLoss(nn.Module):
  """main_trans.py's `LabelSmoothingLoss`, as written."""

  def forward(self, pred, gt):
    pa, pv = gt
    pv = (pv != 0).double()
    pa = (pa != 0).double()
    pred = pred.log_softmax(dim=-1)
    my_gt = torch.mm(pa, pv.permute(1, 0)).clamp_(max=1)
    my_gt = my_gt / (my_gt.sum(-1).unsqueeze(1) + 1e-10)
    return torch.mean(torch.sum(-my_gt * pred, dim=-1))


def official_train_loss(model, audio, video, video_st, a_refine, v_refine, rand_idx, epoch):
  """One step of `train` (run.sh: --augment 1, init_epoch 2, smoothing 1 / 1 after, 1 / 0.9 before, delta
  0.85, tmp 1), with the partners `rand_idx` given."""
  criterion, criterion2 = nn.BCELoss(), LabelSmoothingLoss()
  sample_idx = torch.arange(0, audio.size(0), dtype=torch.long)
  audio = torch.cat((audio, audio[sample_idx]), dim=0)
  video = torch.cat((video, video[rand_idx]), dim=0)
  video_st = torch.cat((video_st, video_st[rand_idx]), dim=0)
  a_refine_aug = torch.cat((a_refine, a_refine[sample_idx]), dim=0)
  v_refine_aug = torch.cat((v_refine, v_refine[rand_idx]), dim=0)
  output, a_prob, v_prob, _, sims = model(audio, video, video_st, a_refine_aug, v_refine_aug)
  output = output.clamp(min=1e-7, max=1 - 1e-7)
  a_prob = a_prob.clamp(min=1e-7, max=1 - 1e-7)
  v_prob = v_prob.clamp(min=1e-7, max=1 - 1e-7)
  a, v = (1.0, 1.0) if epoch > 2 else (1.0, 0.9)
  pa = a * a_refine + (1 - a) * 0.5
  pv = v * v_refine + (1 - v) * 0.5
  label_all = torch.logical_or(a_refine, v_refine).float()
  n = pa.size(0)
  terms = {
      "audio": criterion(a_prob[:n], pa.float()),
      "visual": criterion(v_prob[:n], pv.float()),
      "video": criterion(output[:n], label_all),
  }
  pa_aug = a * a_refine_aug + (1 - a) * 0.5
  pv_aug = v * v_refine_aug + (1 - v) * 0.5
  terms["contrastive"] = criterion2(sims, (pa_aug, pv_aug))
  loss = terms["video"] + terms["audio"] + terms["visual"]
  if epoch > 2:
    loss = loss + 0.85 * terms["contrastive"]
  return loss, terms


def _han_layer(state, prefix):
  return {
      "self_attn": convert_common.packed_attention(state, prefix + "self_attn"),
      "cm_attn": convert_common.packed_attention(state, prefix + "cm_attn"),
      "linear1": convert_common.dense(state, prefix + "linear1"),
      "linear2": convert_common.dense(state, prefix + "linear2"),
      "norm1": convert_common.norm(state, prefix + "norm1"),
      "norm2": convert_common.norm(state, prefix + "norm2"),
  }


def official_to_flax(state):
  """The params of configs/cvcm.py's model from the transcription's state_dict."""
  dense = lambda name: convert_common.dense(state, name)
  tokens = {name: dense(name) for name in ("fc_occ_class_a", "fc_occ_class_v")}
  tokens.update({name: dense(name) for name in ("fc_occ_prob_a", "fc_occ_prob_v")})
  tokens["av_class_encoder"] = {"layers_0": _han_layer(state, "av_class_encoder.layers.0.")}
  return convert_common.float32_tree(
      {
          "embed": {name: dense(name) for name in ("fc_a", "fc_v", "fc_st", "fc_fusion")},
          "encoder": {"layers_0": _han_layer(state, "hat_encoder.layers.0.")},
          "decoder": {
              "fc_frame_att": dense("fc_frame_att"),
              "fc_av_att": dense("fc_av_att"),
              "class_tokens": tokens,
          },
      }
  )


class ParityTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.reference = torch_oracles.randomize(ReferenceCVCM(), seed=3)
    state = {k: v.detach().numpy() for k, v in cls.reference.state_dict().items()}
    cls.params = official_to_flax(state)
    cls.config = cvcm_config.get_config()
    cls.config.model.hidden_dim = HIDDEN
    cls.config.model.mmil.class_token_dim = OCC
    cls.model = models.build_model(cls.config.model, llp_task.META)
    cls.apply = staticmethod(
        jax.jit(lambda params, *inputs: cls.model.apply({"params": params}, *inputs))
    )
    rng = np.random.default_rng(7)
    cls.audio = rng.normal(size=(4, 10, 128)).astype(np.float32)
    cls.frames = rng.normal(size=(4, 80, 2048)).astype(np.float32)
    cls.motion = rng.normal(size=(4, 10, 512)).astype(np.float32)
    weak = np.zeros((4, 25), np.float32)
    weak[0, [0, 3]] = weak[1, [7, 11]] = weak[2, [1, 2, 9]] = weak[3, 24] = 1.0
    audio_label, visual_label = weak.copy(), weak.copy()
    audio_label[0, 3] = visual_label[1, 7] = audio_label[2, 1] = visual_label[2, 9] = 0.0
    audio_label[2, 2] = visual_label[2, 2] = 0.0  # dropped from both: the video target clears too
    cls.weak, cls.audio_label, cls.visual_label = weak, audio_label, visual_label

  def _torch(self, *arrays):
    return [torch.from_numpy(np.asarray(a)) for a in arrays]

  def test_params_are_exactly_the_models(self):
    init = jax.eval_shape(
        lambda: self.model.init(
            jax.random.key(0), self.audio[:1], self.frames[:1], self.motion[:1], train=False
        )["params"]
    )
    shapes = lambda tree: jax.tree.map(lambda x: tuple(x.shape), tree)
    self.assertEqual(shapes(init), shapes(self.params))

  def test_forward_matches_the_official_model(self):
    outputs = self.apply(self.params, self.audio, self.frames, self.motion)
    with torch.no_grad():
      global_prob, a_prob, v_prob, frame_prob, _ = self.reference(
          *self._torch(self.audio, self.frames, self.motion)
      )
    for key, want in (
        ("video_prob", global_prob),
        ("audio_prob", a_prob),
        ("visual_prob", v_prob),
        ("segment_audio_prob", frame_prob[:, :, 0]),
        ("segment_visual_prob", frame_prob[:, :, 1]),
    ):
      np.testing.assert_allclose(outputs[key], want.numpy(), rtol=1e-5, atol=1e-6, err_msg=key)
    # The union gate (official eval: both modalities by the whole-video prediction).
    np.testing.assert_array_equal(outputs["audio_filter_prob"], outputs["video_prob"])

  def _batch_and_partners(self, step, steps_per_epoch=10):
    mixer = cvcm_mix.make_mixer(self.config.loss, steps_per_epoch)
    labels = refined_labels.from_drops(
        [f"clip{n}" for n in range(4)],
        self.weak,
        self.weak - self.audio_label,
        self.weak - self.visual_label,
    )
    batch = {
        batch_keys.AUDIO: self.audio,
        batch_keys.FRAMES: self.frames,
        batch_keys.MOTION: self.motion,
        batch_keys.LABEL: self.weak,
        batch_keys.MASK: np.ones(4, np.float32),
        **labels.batch(np.arange(4)),
    }
    return mixer(None, batch, jax.random.key(11), jnp.asarray(step))

  def _compare(self, step, epoch):
    batch = self._batch_and_partners(step)
    partner = np.asarray(batch[losses.CVCM_PARTNER])
    self.assertFalse((partner == np.arange(4)).any())
    outputs = self.apply(
        self.params, batch[batch_keys.AUDIO], batch[batch_keys.FRAMES], batch[batch_keys.MOTION]
    )
    loss, terms = losses.compute_loss(self.config.loss, outputs, batch)
    with torch.no_grad():
      want_loss, want = official_train_loss(
          self.reference,
          *self._torch(self.audio, self.frames, self.motion, self.audio_label, self.visual_label),
          torch.from_numpy(partner.astype(np.int64)),
          epoch,
      )
    for key, value in want.items():
      np.testing.assert_allclose(float(terms[key]), float(value), rtol=2e-5, err_msg=key)
    np.testing.assert_allclose(float(loss), float(want_loss), rtol=2e-5)
    return terms

  def test_scoring_only_the_clips_changes_no_output(self):
    """The train step's forward scores the B clips alone (`scored_rows=B`, the task's guidance for a batch with
    cross-video pairs): its outputs are the full 2B-row forward's first B rows (the embeddings and the
    temporal-attention logits: all 2B), its loss the same, and its program does less work."""
    batch = self._batch_and_partners(25)
    task = tasks.of(self.config)
    self.assertEqual(task.guidance(batch)["scored_rows"], 4)
    forward = jax.jit(
        lambda params, batch, rows: state_lib.apply_model(
            self.model,
            params,
            batch,
            input_keys=task.input_keys,
            train=False,
            guidance={} if rows is None else {"scored_rows": rows},
        ),
        static_argnums=2,
    )
    full, scored = forward(self.params, batch, None), forward(self.params, batch, 4)
    every_row = (
        "temporal_attention_logits",
        "audio_embedding",
        "visual_embedding",
        "audio_input_embedding",
        "visual_input_embedding",
    )
    self.assertEqual(set(scored), set(full))
    for key, value in scored.items():
      want = full[key] if key in every_row else full[key][:4]
      self.assertEqual(value.shape, want.shape, key)
      np.testing.assert_allclose(value, want, rtol=1e-5, atol=1e-6, err_msg=key)
    for step in (19, 25):  # during and after the warm-up
      batch = self._batch_and_partners(step)
      want_loss, want = losses.compute_loss(
          self.config.loss, forward(self.params, batch, None), batch
      )
      loss, terms = losses.compute_loss(self.config.loss, forward(self.params, batch, 4), batch)
      np.testing.assert_allclose(float(loss), float(want_loss), rtol=1e-6)
      for key, value in want.items():
        np.testing.assert_allclose(float(terms[key]), float(value), rtol=1e-6, err_msg=key)
    flops = lambda rows: forward.lower(self.params, batch, rows).compile().cost_analysis()["flops"]
    self.assertLess(flops(4), flops(None))

  def test_loss_after_the_warm_up_matches_the_official(self):
    terms = self._compare(step=25, epoch=3)
    self.assertGreater(float(terms["contrastive"]), 0.0)

  def test_ma_quirk_option_clears_the_dropped_audio_classes(self):
    batch = self._batch_and_partners(25)
    outputs = self.apply(
        self.params, batch[batch_keys.AUDIO], batch[batch_keys.FRAMES], batch[batch_keys.MOTION]
    )
    config = cvcm_config.get_config()
    self.assertFalse(config.loss.ma_drop_clears_video)  # the official OR by default
    config.loss.ma_drop_clears_video = True
    _, terms = losses.compute_loss(config.loss, outputs, batch)
    target = self.weak * self.audio_label  # clip 0's Dog (dropped from audio only) cleared too
    video = np.clip(np.asarray(outputs["video_prob"][:4]), 1e-7, 1 - 1e-7)
    want = -(target * np.log(video) + (1 - target) * np.log1p(-video)).mean()
    np.testing.assert_allclose(float(terms["video"]), want, rtol=2e-5)

  def test_loss_during_the_warm_up_matches_the_official(self):
    self._compare(step=19, epoch=2)  # smoothed visual targets, no contrastive term

  def test_padding_is_no_candidate_and_gradients_are_finite(self):
    batch = self._batch_and_partners(25)
    batch[batch_keys.MASK] = np.array([1, 1, 1, 0], np.float32)
    batch[losses.CVCM_PARTNER] = jnp.array([1, 2, 0, 0], jnp.int32)  # as drawn with clip 3 padding
    outputs = self.apply(
        self.params, batch[batch_keys.AUDIO], batch[batch_keys.FRAMES], batch[batch_keys.MOTION]
    )
    keys = ("audio_embedding", "visual_embedding", "temporal_attention_logits")
    grads = jax.grad(
        lambda x: losses.compute_loss(self.config.loss, {**outputs, **x}, batch)[1]["contrastive"]
    )({k: outputs[k] for k in keys})
    for key in keys:
      grad = np.asarray(grads[key])
      self.assertTrue(np.isfinite(grad).all(), key)
      self.assertFalse(
          grad[[3, 7]].any(), key
      )  # the padding clip's rows and columns count for nothing
      self.assertTrue(grad[:3].any(), key)


class MixerTest(absltest.TestCase):

  def test_partners_are_other_real_clips(self):
    mask = jnp.array([1, 1, 1, 1, 1, 0, 0, 0], jnp.float32)
    keys = jax.random.split(jax.random.key(0), 200)
    partners = np.asarray(jax.vmap(cvcm_mix.draw_partners, (0, None))(keys, mask))  # [200, 8]
    self.assertTrue((partners[:, :5] != np.arange(5)).all())
    self.assertTrue((partners < 5).all())
    seen = np.zeros((8, 8), int)
    np.add.at(seen, (np.broadcast_to(np.arange(8), partners.shape), partners), 1)
    # every other real clip is drawn for every real clip
    self.assertTrue((seen[:5, :5] + np.eye(5, dtype=int) > 0).all())
    alone = cvcm_mix.draw_partners(jax.random.key(0), jnp.array([1, 0, 0], jnp.float32))
    self.assertEqual(int(alone[0]), 0)

  def test_warm_up_flag_and_doubled_streams(self):
    config = cvcm_config.get_config()
    mixer = cvcm_mix.make_mixer(config.loss, steps_per_epoch=5)
    batch = {
        batch_keys.AUDIO: jnp.arange(3.0)[:, None],
        batch_keys.FRAMES: 10 + jnp.arange(3.0)[:, None],
        batch_keys.LABEL: jnp.ones((3, 25)),
    }
    for step, warm in ((0, 1.0), (9, 1.0), (10, 0.0), (99, 0.0)):
      out = mixer(None, batch, jax.random.key(step), jnp.asarray(step))
      self.assertEqual(float(out[losses.CVCM_WARM_UP]), warm)
    partner = np.asarray(out[losses.CVCM_PARTNER])
    np.testing.assert_array_equal(out[batch_keys.AUDIO][:, 0], [0, 1, 2, 0, 1, 2])
    np.testing.assert_array_equal(out[batch_keys.FRAMES][3:, 0], 10 + partner)
    self.assertNotIn(batch_keys.MOTION, out)  # a layout without motion stays without it
    with self.assertRaisesRegex(InputError, "steps per epoch"):
      cvcm_mix.make_mixer(config.loss, steps_per_epoch=0)


class RunTest(absltest.TestCase):

  def test_bad_config_is_one_line(self):
    with self.assertRaisesRegex(InputError, "config.data.refined_labels is required"):
      state_lib.resolve_config(cvcm_config.get_config())
    config = cvcm_config.get_config("tiny")
    config.data.refined_labels = "/no/such/need_to_change.pkl"
    with self.assertRaisesRegex(InputError, "need_to_change.pkl.*does not exist"):
      state_lib.resolve_config(config)
    config.loss.name = "han"
    with self.assertRaisesRegex(InputError, "reads no modality-level labels.*cvcm"):
      state_lib.resolve_config(config)

  def test_scored_rows_out_of_range_or_without_mmil_is_one_line(self):
    config = cvcm_config.get_config("tiny")
    inputs = [np.zeros((4, *spec.shape), np.float32) for spec in llp_task.META.features]
    model = models.build_model(config.model, llp_task.META)
    variables = model.init(jax.random.key(0), *inputs, train=False)
    with self.assertRaisesRegex(InputError, "scored_rows=5 must be between 1 and the 4 rows"):
      model.apply(variables, *inputs, train=False, scored_rows=5)
    config = cvcm_config.get_config("tiny")
    config.model.decoder = "leap"
    model = models.build_model(config.model, llp_task.META)
    with self.assertRaisesRegex(InputError, "scored_rows.*needs config.model.decoder='mmil'"):
      model.init(jax.random.key(0), *inputs, train=False, scored_rows=2)

  def test_tiny_trains_on_refined_labels(self):
    train_split = annotations.load_split("train")[0]
    weak = train_split.weak_labels
    rng = np.random.default_rng(0)
    drop_a = (weak > 0) & (rng.random(weak.shape) < 0.2)
    drop_v = (weak > 0) & (rng.random(weak.shape) < 0.4)
    folder = self.create_tempdir().full_path
    labels = refined_labels.from_drops(train_split.filenames, weak, drop_a, drop_v)
    refined_labels.write_npz(os.path.join(folder, refined_labels.NPZ_FILE), labels)
    config = cvcm_config.get_config("tiny")
    config.data.refined_labels = folder
    config.loss.cvcm_warm_up_epochs = 2  # the warm-up path through the trainer
    config.final_report = ""
    scores = train.train_and_evaluate(config, self.create_tempdir().full_path)
    self.assertBetween(scores["event/type"], 0.0, 100.0)


if __name__ == "__main__":
  absltest.main()
