"""Parity of the LEAP converter (avvp_jax.convert.leap) with a PyTorch LEAP written to the official names.

The reference below is our own PyTorch transcription of jasongief/LEAP's `AVVPNet`
(`main_network_temporal_add_label.py`, `nets/MPAM.py`, `nets/Transformer.py`): the same module tree, so its
`state_dict()` has exactly the official keys, including the never-used templates (`AVL.multiheadattn`,
`MMP.capture.feedforward`, ...), every attention's unused `layer_norm`, and the TemporalBlock convolutions
registered twice (`conv1`/`conv2` and `net.0`/`net.2`). The facts it follows:
  * embedding as HAN: fc_a; fc_v on the 80 frames, then the mean of each second's 8; fc_fusion([frames, fc_st]);
  * MM-Pyramid, `MMP(video, audio)`: level i (dilation 2^i) runs three `TransformerLayer`s
    q <- q + Drop(Attn(LN(q), k, v)); q <- q + Drop(FFN(LN(q))) with attention masked outside |i - j| <= 2^i:
    self layers on each modality and ONE cross layer in both directions, all from the level's inputs; gates
    e1 = sigmoid(l1([sa; ca])), e2 = sigmoid(l2([sa; ca])), out = e1 * sa + e2 * ca; then per modality
    ReLU(x + conv2(ReLU(conv1_dilated(x)))). The level outputs of each second pass a full-attention
    `TransformerLayer` and are summed with weights sigmoid(selectfusion(.));
  * LEAP: f_l = fc_l(labels); per modality 2 `VanillaTransformerLayer`s from the label queries to the segments,
    whose returned logits come from a second attention pass of the updated queries; segment probabilities are
    the sigmoid of the head-mean of the last block's logits, video-level ones sigmoid(fc_la / fc_lv(queries)),
    and the global prediction the union of the two thresholded at 0.5.
Every parameter is drawn at random (the deep-copied layers start equal in PyTorch). torch is the `parity`
extra (`pip install -e .[test,parity]`), required here.
"""

import collections
import copy
import glob
import json
import math
import os
import pathlib
import re
import subprocess
import sys
from unittest import mock

from absl.testing import absltest
import jax
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import leap_official

import avvp_jax
from avvp_jax import checkpoint
from avvp_jax import convert
from avvp_jax import models
from avvp_jax.errors import InputError
from avvp_jax.tasks.llp import task as llp_task

ROOT = pathlib.Path(__file__).resolve().parents[1]
HIDDEN, AUDIO, FRAMES, MOTION, LABEL_DIM, CLASSES, LEVELS, HEADS = (
    512,
    128,
    2048,
    512,
    300,
    25,
    4,
    8,
)


# --- the reference: official module names, official forward ------------------------------------------------


class _Attention(nn.Module):
  """`MultiHeadAttention` (returns softmax weights) or `VanillaMultiHeadAttention` (returns the logits)."""

  def __init__(self, heads, dim, masksize=1, vanilla=False, dropout=0.1):
    super().__init__()
    self.d_k, self.h, self.masksize, self.vanilla = dim // heads, heads, masksize, vanilla
    self.linears = nn.ModuleList([nn.Linear(dim, dim) for _ in range(4)])
    self.layer_norm = nn.LayerNorm(dim)  # never used
    self.dropout = nn.Dropout(dropout)

  def forward(self, query, key, value):
    batch = query.size(0)
    query, key, value = [
        linear(x).view(batch, -1, self.h, self.d_k).transpose(1, 2)
        for linear, x in zip(self.linears, (query, key, value))
    ]
    scores = torch.matmul(query, key.transpose(-2, -1)) / math.sqrt(self.d_k)
    if not self.vanilla and self.masksize != 1:
      half = int(self.masksize / 2)
      mask = torch.ones(scores.size())
      for i in range(mask.shape[2]):
        if i - half > 0:
          mask[:, :, i, : i - half] = 0
        if i + half + 1 < mask.shape[3]:
          mask[:, :, i, half + i + 1 :] = 0
      scores = scores.masked_fill(mask == 0, -1e9)
    weights = self.dropout(F.softmax(scores, dim=-1))
    x = torch.matmul(weights, value).transpose(1, 2).contiguous().view(batch, -1, self.h * self.d_k)
    return self.linears[-1](x), scores if self.vanilla else weights


class _FeedForward(nn.Module):

  def __init__(self, dim, ffn, dropout=0.2):
    super().__init__()
    self.w_1, self.w_2, self.dropout = nn.Linear(dim, ffn), nn.Linear(ffn, dim), nn.Dropout(dropout)

  def forward(self, x):
    return self.w_2(self.dropout(F.relu(self.w_1(x))))


class _Sublayer(nn.Module):

  def __init__(self, dim, dropout=0.2):
    super().__init__()
    self.norm, self.dropout = nn.LayerNorm(dim), nn.Dropout(dropout)

  def forward(self, x, sublayer):
    return x + self.dropout(sublayer(self.norm(x)))


class _Layer(nn.Module):
  """`TransformerLayer`, or with `vanilla` `VanillaTransformerLayer` (also returns a second pass's logits)."""

  def __init__(self, dim, self_attn, feed_forward, vanilla=False):
    super().__init__()
    self.self_attn, self.feed_forward, self.vanilla = self_attn, feed_forward, vanilla
    self.sublayer = nn.ModuleList([_Sublayer(dim), _Sublayer(dim)])

  def forward(self, q, k, v):
    q = self.sublayer[0](q, lambda x: self.self_attn(x, k, v)[0])
    if self.vanilla:
      attn = self.self_attn(q, k, v)[1]
      return self.sublayer[1](q, self.feed_forward), attn
    return self.sublayer[1](q, self.feed_forward)


class _Holder(nn.Module):
  """`SelfAttentionBlock` / `CrossAttentionBlock`: a `.layer`."""

  def __init__(self, layer):
    super().__init__()
    self.layer = layer


class _IntegrateBlock(nn.Module):

  def __init__(self, vself, aself, cross, dim):
    super().__init__()
    self.vsablock, self.asablock, self.cmablock = _Holder(vself), _Holder(aself), _Holder(cross)
    self.lv1, self.lv2 = nn.Linear(2 * dim, dim), nn.Linear(2 * dim, dim)
    self.la1, self.la2 = nn.Linear(2 * dim, dim), nn.Linear(2 * dim, dim)

  def forward(self, video, audio):
    v_sa = self.vsablock.layer(video, video, video)
    a_sa = self.asablock.layer(audio, audio, audio)
    v_cma = self.cmablock.layer(video, audio, audio)
    a_cma = self.cmablock.layer(audio, video, video)
    v_sq, a_sq = torch.cat((v_sa, v_cma), -1), torch.cat((a_sa, a_cma), -1)
    v_out = torch.sigmoid(self.lv1(v_sq)) * v_sa + torch.sigmoid(self.lv2(v_sq)) * v_cma
    a_out = torch.sigmoid(self.la1(a_sq)) * a_sa + torch.sigmoid(self.la2(a_sq)) * a_cma
    return v_out, a_out


class _TemporalBlock(nn.Module):

  def __init__(self, dim, dilation):
    super().__init__()
    self.conv1 = nn.Conv1d(dim, dim, 3, stride=1, padding=dilation, dilation=dilation)
    self.relu1 = nn.ReLU()
    self.conv2 = nn.Conv1d(dim, dim, 1)
    self.net = nn.Sequential(self.conv1, self.relu1, self.conv2)
    self.relu = nn.ReLU()

  def forward(self, x):
    return self.relu(self.net(x) + x)


class _Capture(nn.Module):

  def __init__(self, dim, ffn, levels, heads):
    super().__init__()
    self.multiheadattn = _Attention(heads, dim)
    self.feedforward = _FeedForward(dim, ffn)
    make = lambda i: _Layer(
        dim, _Attention(heads, dim, masksize=2**i * 2), copy.deepcopy(self.feedforward)
    )
    self.vnetwork = nn.Sequential(*[_TemporalBlock(dim, 2**i) for i in range(levels)])
    self.anetwork = nn.Sequential(*[_TemporalBlock(dim, 2**i) for i in range(levels)])
    self.msa = nn.Sequential(
        *[_IntegrateBlock(make(i), make(i), make(i), dim) for i in range(levels)]
    )

  def forward(self, v, a):
    v_list, a_list = [], []
    for i in range(len(self.vnetwork)):
      v_msa, a_msa = self.msa[i](v, a)
      v = self.vnetwork[i](v_msa.permute(0, 2, 1)).permute(0, 2, 1)
      a = self.anetwork[i](a_msa.permute(0, 2, 1)).permute(0, 2, 1)
      v_list.append(v)
      a_list.append(a)
    v, a = torch.stack(v_list, dim=2), torch.stack(a_list, dim=2)
    return v.reshape(-1, v.size(2), v.size(3)), a.reshape(-1, a.size(2), a.size(3))


class _Fusion(nn.Module):

  def __init__(self, dim, ffn, heads):
    super().__init__()
    self.dim = dim
    self.multiheadattn = _Attention(heads, dim)
    self.feedforward = _FeedForward(dim, ffn)
    self.vadaptiveinteraction = _Layer(
        dim, copy.deepcopy(self.multiheadattn), copy.deepcopy(self.feedforward)
    )
    self.aadaptiveinteraction = _Layer(
        dim, copy.deepcopy(self.multiheadattn), copy.deepcopy(self.feedforward)
    )
    self.vselectfusion, self.aselectfusion = nn.Linear(dim, 1), nn.Linear(dim, 1)

  def forward(self, v_stage, a_stage):
    v = self.vadaptiveinteraction(v_stage, v_stage, v_stage)
    a = self.aadaptiveinteraction(a_stage, a_stage, a_stage)
    v_weight, a_weight = torch.sigmoid(self.vselectfusion(v)), torch.sigmoid(self.aselectfusion(a))
    v_out = torch.bmm(v.permute(0, 2, 1), v_weight).view(-1, 10, self.dim)
    a_out = torch.bmm(a.permute(0, 2, 1), a_weight).view(-1, 10, self.dim)
    return v_out, a_out


class _MMP(nn.Module):

  def __init__(self, dim, ffn, levels, heads):
    super().__init__()
    self.capture, self.fusion = _Capture(dim, ffn, levels, heads), _Fusion(dim, ffn, heads)

  def forward(self, video, audio):
    return self.fusion(*self.capture(video, audio))


class _AVL(nn.Module):

  def __init__(self, dim, ffn, layers, heads):
    super().__init__()
    self.multiheadattn = _Attention(heads, dim, vanilla=True)
    self.feedforward = _FeedForward(dim, ffn)
    make = lambda: _Layer(
        dim, copy.deepcopy(self.multiheadattn), copy.deepcopy(self.feedforward), vanilla=True
    )
    self.lv_cma_network = nn.Sequential(*[make() for _ in range(layers)])
    self.la_cma_network = nn.Sequential(*[make() for _ in range(layers)])

  def forward(self, v, a, label):
    lv, la = label, label
    for i in range(len(self.lv_cma_network)):
      lv, lv_attn = self.lv_cma_network[i](lv, v, v)
      la, la_attn = self.la_cma_network[i](la, a, a)
    return lv, lv_attn, la, la_attn


class ReferenceLeap(nn.Module):
  """The official AVVPNet forward (MM-Pyramid + LEAP) under the official parameter names."""

  def __init__(self, levels=LEVELS, heads=HEADS, label_dim=LABEL_DIM, blocks=2):
    super().__init__()
    self.fc_a, self.fc_v = nn.Linear(AUDIO, HIDDEN), nn.Linear(FRAMES, HIDDEN)
    self.fc_st, self.fc_fusion = nn.Linear(MOTION, HIDDEN), nn.Linear(2 * HIDDEN, HIDDEN)
    self.MMP = _MMP(HIDDEN, HIDDEN, levels, heads)  # pylint: disable=invalid-name  (the official name)
    self.fc_l = nn.Linear(label_dim, HIDDEN)
    self.AVL = _AVL(HIDDEN, HIDDEN, blocks, heads)  # pylint: disable=invalid-name
    self.fc_la, self.fc_lv = nn.Linear(HIDDEN, 1), nn.Linear(HIDDEN, 1)

  def forward(self, audio, visual, visual_st, label):
    f_l = self.fc_l(label)
    f_a = self.fc_a(audio)
    vid_s = (
        F.avg_pool2d(self.fc_v(visual).permute(0, 2, 1).unsqueeze(-1), (8, 1))
        .squeeze(-1)
        .permute(0, 2, 1)
    )
    f_v = self.fc_fusion(torch.cat((vid_s, self.fc_st(visual_st)), dim=-1))
    v_o, a_o = self.MMP(f_v, f_a)
    lv_f, lv_attn, la_f, la_attn = self.AVL(v_o, a_o, f_l)
    a_prob = torch.sigmoid(self.fc_la(la_f).squeeze(-1))
    v_prob = torch.sigmoid(self.fc_lv(lv_f).squeeze(-1))
    a_hit, v_hit = (a_prob >= 0.5).float(), (v_prob >= 0.5).float()
    return {
        "video_prob": a_hit + v_hit - a_hit * v_hit,
        "audio_prob": a_prob,
        "visual_prob": v_prob,
        "segment_audio_prob": torch.sigmoid(la_attn.mean(dim=1).permute(0, 2, 1)),
        "segment_visual_prob": torch.sigmoid(lv_attn.mean(dim=1).permute(0, 2, 1)),
        "audio_embedding": a_o,
        "visual_embedding": v_o,
        "audio_label_embedding": la_f,
        "visual_label_embedding": lv_f,
    }


def _randomise(model, seed):
  """Every parameter drawn anew (deep-copied layers start equal): LayerNorm scale 1 +- 0.2 and bias +-0.2,
  Linear and Conv1d weights and biases uniform in +-1/sqrt(fan_in)."""
  generator = torch.Generator().manual_seed(seed)
  draw = lambda shape: torch.rand(shape, generator=generator) * 2 - 1
  with torch.no_grad():
    for module in model.modules():  # each module once, although conv1 is also net.0
      if isinstance(module, nn.LayerNorm):
        module.weight.copy_(1.0 + 0.2 * draw(module.weight.shape))
        module.bias.copy_(0.2 * draw(module.bias.shape))
      elif isinstance(module, (nn.Linear, nn.Conv1d)):
        limit = 1.0 / math.sqrt(module.weight[0].numel())
        module.weight.copy_(limit * draw(module.weight.shape))
        module.bias.copy_(limit * draw(module.bias.shape))
  return model


def _label_table(seed=0, dim=LABEL_DIM):
  """A table in the format of the official llp_label_glove_embeddings.pt (key -> [dim] float32 tensor)."""
  generator = torch.Generator().manual_seed(seed)
  return collections.OrderedDict(
      (key, torch.randn(dim, generator=generator)) for key in leap_official.LEAP_KEYS
  )


def _write_official(directory, seed=0, levels=LEVELS, heads=HEADS):
  """(reference, MMPyr_LEAP_pretrained.pt path, llp_label_glove_embeddings.pt path, [25, 300] table)."""
  torch.manual_seed(seed)
  model = _randomise(ReferenceLeap(levels, heads), seed).eval()
  path = os.path.join(directory, "MMPyr_LEAP_pretrained.pt")
  torch.save(model.state_dict(), path)
  table = _label_table(seed)
  labels = os.path.join(directory, "llp_label_glove_embeddings.pt")
  torch.save(table, labels)
  return model, path, labels, np.stack([value.numpy() for value in table.values()])


def _inputs(seed=1, batch=2, steps=10):
  rng = np.random.default_rng(seed)
  return (
      rng.normal(size=(batch, steps, AUDIO)).astype(np.float32),
      rng.normal(size=(batch, 8 * steps, FRAMES)).astype(np.float32),
      rng.normal(size=(batch, steps, MOTION)).astype(np.float32),
  )


def _reference_outputs(reference, table, inputs):
  audio, frames, motion = map(torch.from_numpy, inputs)
  labels = torch.from_numpy(table)[None].expand(audio.shape[0], -1, -1)
  with torch.no_grad():
    return {key: value.numpy() for key, value in reference(audio, frames, motion, labels).items()}


def _assert_outputs_match(testcase, got, expected):
  for key, value in expected.items():
    if key == "video_prob":
      np.testing.assert_array_equal(np.asarray(got[key]), value, err_msg=key)
    else:
      np.testing.assert_allclose(np.asarray(got[key]), value, atol=1e-5, rtol=1e-5, err_msg=key)
  testcase.assertGreater(
      float(np.std(expected["segment_audio_prob"])), 1e-2
  )  # not saturated: a real check


class OfficialKeysTest(absltest.TestCase):

  def test_reference_has_the_official_names(self):
    keys = set(ReferenceLeap().state_dict())
    for key in (
        "fc_a.weight",
        "fc_fusion.bias",
        "fc_l.weight",
        "fc_la.bias",
        "fc_lv.weight",
        "MMP.capture.multiheadattn.linears.0.weight",
        "MMP.capture.feedforward.w_1.weight",
        "MMP.capture.vnetwork.3.conv1.weight",
        "MMP.capture.vnetwork.3.net.0.weight",
        "MMP.capture.anetwork.0.net.2.bias",
        "MMP.capture.msa.0.asablock.layer.self_attn.linears.3.bias",
        "MMP.capture.msa.2.cmablock.layer.sublayer.1.norm.weight",
        "MMP.capture.msa.1.lv2.weight",
        "MMP.capture.msa.0.vsablock.layer.self_attn.layer_norm.weight",
        "MMP.fusion.aadaptiveinteraction.feed_forward.w_2.weight",
        "MMP.fusion.vselectfusion.bias",
        "MMP.fusion.multiheadattn.linears.1.weight",
        "MMP.fusion.feedforward.w_1.bias",
        "AVL.multiheadattn.linears.2.weight",
        "AVL.feedforward.w_2.bias",
        "AVL.la_cma_network.1.self_attn.linears.0.weight",
        "AVL.lv_cma_network.0.sublayer.0.norm.bias",
    ):
      self.assertIn(key, keys)
    self.assertFalse(any("weight_g" in key or "downsample" in key for key in keys))


class ParityTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.directory = os.path.join(absltest.get_default_test_tmpdir(), "convert_leap_parity")
    os.makedirs(cls.directory, exist_ok=True)
    cls.reference, cls.path, cls.labels, cls.table = _write_official(cls.directory)
    cls.converted = convert.load_official(cls.path, label_embeddings=cls.labels)
    cls.expected = _reference_outputs(cls.reference, cls.table, _inputs())

  def _apply(self, config, params, frames_pooled=False):
    audio, frames, motion = _inputs()
    if frames_pooled:
      frames = frames.reshape(2, 10, 8, FRAMES).mean(axis=2)
    return models.build_model(config.model, llp_task.META).apply(
        {"params": params}, audio, frames, motion, train=False
    )

  def test_detected_and_described(self):
    config = self.converted.config
    self.assertEqual(self.converted.model, "leap")
    self.assertEqual((config.model.encoder, config.model.decoder), ("mmpyramid", "leap"))
    self.assertEqual(
        (config.model.mmpyramid.num_levels, config.model.mmpyramid.num_heads), (LEVELS, HEADS)
    )
    self.assertEqual((config.model.leap.num_blocks, config.model.leap.num_heads), (2, HEADS))
    self.assertEqual(config.model.leap.label_embeddings, os.path.abspath(self.labels))
    np.testing.assert_array_equal(self.converted.label_table, self.table)

  def test_every_output_matches_in_eval_mode(self):
    _assert_outputs_match(
        self, self._apply(self.converted.config, self.converted.params), self.expected
    )

  def test_pooled_frames_match_too(self):
    got = self._apply(self.converted.config, self.converted.params, frames_pooled=True)
    _assert_outputs_match(self, got, self.expected)

  def test_params_tree_matches_the_model(self):
    from avvp_jax import state as state_lib  # pylint: disable=g-import-not-at-top

    expected = jax.tree.map(
        lambda x: (x.shape[1:], x.dtype), state_lib.abstract_params(self.converted.config)
    )
    got = jax.tree.map(lambda x: (x.shape, x.dtype), self.converted.params)
    self.assertEqual(jax.tree_util.tree_structure(got), jax.tree_util.tree_structure(expected))
    self.assertEqual(jax.tree.leaves(got), jax.tree.leaves(expected))

  def test_unused_keys_may_be_absent(self):
    state = {
        key: value
        for key, value in self.reference.state_dict().items()
        if ".net." not in key
        and ".layer_norm." not in key
        and "multiheadattn" not in key
        and "feedforward" not in key
    }
    path = os.path.join(self.create_tempdir().full_path, "trimmed.pt")
    torch.save(state, path)
    params = convert.load_official(path, "leap", label_embeddings=self.labels).params
    jax.tree.map(np.testing.assert_array_equal, params, self.converted.params)

  def test_written_checkpoint_is_self_contained_and_parses(self):
    directory = self.create_tempdir().full_path
    labels = os.path.join(directory, "labels.pt")
    torch.save(_label_table(0), labels)
    out = os.path.join(directory, "leap_official")
    self.assertEqual(convert.convert_official(self.path, out, label_embeddings=labels), out)
    os.remove(labels)  # the folder holds the table it needs
    self.assertEqual(sorted(os.listdir(out)), ["config.json", "label_embeddings.npy", "params"])
    with open(os.path.join(out, "config.json")) as file:
      self.assertEqual(
          json.load(file)["model"]["leap"]["label_embeddings"],
          os.path.join(out, "label_embeddings.npy"),
      )
    np.testing.assert_array_equal(np.load(os.path.join(out, "label_embeddings.npy")), self.table)
    parser = avvp_jax.load_parser(out)
    audio, frames, motion = _inputs()
    probs = parser.predict(audio, frames, motion)  # the model's own output names
    _assert_outputs_match(
        self, probs, {key: value for key, value in self.expected.items() if key.endswith("_prob")}
    )
    events = parser.parse(audio, frames, motion)
    self.assertLen(events, 2)


class BadCheckpointTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    torch.manual_seed(0)
    cls.state = ReferenceLeap(levels=2, heads=2).state_dict()

  def setUp(self):
    super().setUp()
    self.directory = self.create_tempdir().full_path
    self.labels = os.path.join(self.directory, "labels.pt")
    torch.save(_label_table(), self.labels)

  def _convert(self, state, **kwargs):
    path = os.path.join(self.directory, "bad.pt")
    torch.save(state, path)
    kwargs.setdefault("label_embeddings", self.labels)
    return convert.load_official(path, kwargs.pop("model", "auto"), **kwargs)

  def _assert_one_line(self, pattern, state, **kwargs):
    with self.assertRaisesRegex(InputError, pattern) as raised:
      self._convert(state, **kwargs)
    self.assertNotIn("\n", str(raised.exception))

  def test_missing_used_key_is_named(self):
    for key in (
        "MMP.capture.msa.1.cmablock.layer.sublayer.1.norm.weight",
        "AVL.lv_cma_network.1.feed_forward.w_2.bias",
        "MMP.fusion.aselectfusion.weight",
        "fc_fusion.bias",
        "MMP.capture.vnetwork.1.conv2.weight",
    ):
      state = dict(self.state)
      del state[key]
      self._assert_one_line(rf"missing.*{re.escape(key)}", state)

  def test_wrong_shape_is_named(self):
    state = dict(self.state)
    state["AVL.la_cma_network.1.feed_forward.w_2.weight"] = torch.zeros(HIDDEN, 100)
    self._assert_one_line(r"AVL\.la_cma_network\.1\.feed_forward\.w_2\.weight \(512, 100\)", state)
    state = dict(self.state)
    state["MMP.capture.anetwork.1.conv1.weight"] = torch.zeros(HIDDEN, HIDDEN, 5)
    state["MMP.capture.anetwork.1.net.0.weight"] = state["MMP.capture.anetwork.1.conv1.weight"]
    self._assert_one_line(r"MMP\.capture\.anetwork\.1\.conv1\.weight \(512, 512, 5\)", state)

  def test_unknown_key_and_differing_alias_are_named(self):
    state = dict(
        self.state, **{"MMP.capture.anetwork.0.downsample.weight": torch.zeros(HIDDEN, HIDDEN, 1)}
    )
    self._assert_one_line(r"unknown.*MMP\.capture\.anetwork\.0\.downsample\.weight", state)
    state = dict(self.state)
    state["MMP.capture.vnetwork.1.net.2.bias"] = state["MMP.capture.vnetwork.1.net.2.bias"] + 1.0
    self._assert_one_line(
        r"MMP\.capture\.vnetwork\.1\.net\.2\.bias differing from the conv1/conv2", state
    )

  def test_wrong_model_and_missing_table(self):
    self._assert_one_line(
        r"is a LEAP \(AVVPNet\) checkpoint.*not HAN.*--model=leap", self.state, model="han"
    )
    self._assert_one_line(r"is a LEAP \(AVVPNet\) checkpoint.*not VALOR", self.state, model="valor")
    self._assert_one_line(
        r"does not hold its class-name table: pass --label_embeddings",
        self.state,
        label_embeddings=None,
    )
    narrow = os.path.join(self.directory, "narrow.pt")
    torch.save(_label_table(dim=12), narrow)
    self._assert_one_line(
        r"12-d, but the checkpoint's fc_l reads 300-d", self.state, label_embeddings=narrow
    )
    self._assert_one_line(r"--num_heads=3 does not divide", self.state, num_heads=3)
    han_like = {
        "audio_encoder.layers.0.linear1.weight": torch.zeros(2, 2),
        "fc_a.weight": torch.zeros(2, 2),
    }
    self._assert_one_line(
        r"is a HAN \(MMIL_Net\) checkpoint .*audio_encoder.*not LEAP", han_like, model="leap"
    )

  def test_nothing_half_written(self):
    state = dict(self.state)
    del state["fc_l.bias"]
    path = os.path.join(self.directory, "bad.pt")
    torch.save(state, path)
    out = os.path.join(self.directory, "out")
    with self.assertRaisesRegex(InputError, r"fc_l\.bias"):
      convert.convert_official(path, out, label_embeddings=self.labels)
    good = os.path.join(self.directory, "good.pt")
    torch.save(self.state, good)
    with mock.patch.object(checkpoint, "save_params_checkpoint", side_effect=OSError("disk full")):
      with self.assertRaisesRegex(OSError, "disk full"):
        convert.convert_official(good, out, label_embeddings=self.labels, num_heads=2)
    self.assertFalse(os.path.exists(out))
    self.assertEqual(glob.glob(os.path.join(self.directory, ".out.partial-*")), [])
    os.makedirs(out)
    open(os.path.join(out, "keep.txt"), "w").close()
    with self.assertRaisesRegex(InputError, r"already exists and is not an empty folder"):
      convert.convert_official(good, out, label_embeddings=self.labels, num_heads=2)
    self.assertEqual(os.listdir(out), ["keep.txt"])


class LauncherTest(absltest.TestCase):

  def _run(self, script, *args):
    return subprocess.run(
        [sys.executable, str(ROOT / "launch" / script), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=400,
        check=False,
    )

  def test_convert_then_evaluate_without_a_workdir(self):
    directory = self.create_tempdir().full_path
    _, path, labels, _ = _write_official(directory, seed=4, levels=2)
    out = os.path.join(directory, "converted")
    done = self._run(
        "convert_official.py",
        f"--official={path}",
        f"--label_embeddings={labels}",
        f"--out={out}",
        "--config=configs/leap_mmpyr.py:tiny",
    )  # the tiny preset's data: 40 evaluation clips
    self.assertEqual(done.returncode, 0, done.stderr)
    config, _ = checkpoint.restore_params(out)
    self.assertEqual(config.model.mmpyramid.num_levels, 2)
    self.assertEqual(config.model.hidden_dim, HIDDEN)  # from the checkpoint, not the preset
    evaluated = self._run("evaluate.py", f"--checkpoint={out}", "--split=test")
    self.assertEqual(evaluated.returncode, 0, evaluated.stderr)
    with open(os.path.join(out, "eval_test.json")) as file:
      report = json.load(file)
    self.assertEqual(report["num_clips"], 40)
    self.assertIn("segment/type", report)
    self.assertIn(f"wrote {out}/eval_test.json", evaluated.stdout)

    bad = self._run("convert_official.py", f"--official={path}", f"--out={out}_2", "--model=jomold")
    self.assertEqual(bad.returncode, 2)
    self.assertRegex(
        bad.stderr.strip().splitlines()[-1], r"^error: .*is a LEAP \(AVVPNet\) checkpoint"
    )
    self.assertFalse(os.path.exists(out + "_2"))
    missing = self._run("evaluate.py", "--split=test")
    self.assertEqual(missing.returncode, 2)
    self.assertRegex(missing.stderr.strip().splitlines()[-1], r"^error: --workdir is required")


if __name__ == "__main__":
  absltest.main()
