"""Parity of the VALOR converter (avvp_jax.convert.han, model "valor") with a PyTorch VALOR to the official names.

The reference below is our own PyTorch transcription of Franklin905/VALOR's `main_network.py` (`MMIL_Net`,
`Encoder`, `HANLayer`, `--norm_where post_norm` as in every released script), so its `state_dict()` has the
official keys, including the `hat_encoder.final_norm_a/v` that only pre_norm applies. The facts it follows:
  * fc_a on 10 audio segments, or on [64, Da] CLAP feature maps: time upsampled bicubically 32 -> 1024 per
    frequency group, fc_a, the mean of the two groups and an adaptive average pool to 10; fc_v on 80
    ResNet frames then the mean of each second's 8, or on 10 CLIP frames directly; fc_fusion([fc_v, fc_st]);
  * hat_encoder: for each layer i, audio <- layer_i(audio, visual), THEN visual <- layer_i(visual, audio)
    with the audio just updated; a layer is HAN's post-norm one with nn.MultiheadAttention(nhead=8);
  * MMIL pooling as HAN; outputs (global, audio, visual, frame probabilities, frame logits).
Sizes of the three released models: VALOR (512 wide, 1 layer), VALOR+ (256, 4 layers), VALOR++ (256, 4 layers,
CLAP 768 audio, CLIP 768 frames, R(2+1)D 512 motion). torch is the `parity` extra, required here.
"""

import argparse
import copy
import os
import pathlib
import subprocess
import sys

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import avvp_jax
from avvp_jax import convert
from avvp_jax import models
from avvp_jax.tasks.llp import features
from avvp_jax.errors import InputError
from avvp_jax.tasks.llp import task as llp_task
import torch_oracles

ROOT = pathlib.Path(__file__).resolve().parents[1]
VALOR = dict(hidden_dim=512, num_layers=1, input_a_dim=128, input_v_dim=2048)
VALOR_PLUS = dict(hidden_dim=256, num_layers=4, input_a_dim=128, input_v_dim=2048)
VALOR_PLUS_PLUS = dict(hidden_dim=256, num_layers=4, input_a_dim=768, input_v_dim=768)


class _Encoder(nn.Module):

  def __init__(self, layer, num_layers, hidden_dim):
    super().__init__()
    self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(num_layers)])
    self.num_layers = num_layers
    self.final_norm_a, self.final_norm_v = nn.LayerNorm(hidden_dim), nn.LayerNorm(
        hidden_dim
    )  # pre_norm only

  def forward(self, src_a, src_v):
    for i in range(self.num_layers):
      src_a = self.layers[i](src_a, src_v)
      src_v = self.layers[i](src_v, src_a)
    return src_a, src_v


class ReferenceValor(nn.Module):
  """VALOR's MMIL_Net forward (post_norm) under the official parameter names."""

  def __init__(self, args):
    super().__init__()
    self.fc_prob = nn.Linear(args.hidden_dim, 25)
    self.fc_frame_att = nn.Linear(args.hidden_dim, 25)
    self.fc_av_att = nn.Linear(args.hidden_dim, 25)
    self.fc_a = nn.Linear(args.input_a_dim, args.hidden_dim)
    self.fc_v = nn.Linear(args.input_v_dim, args.hidden_dim)
    self.fc_st = nn.Linear(512, args.hidden_dim)
    self.fc_fusion = nn.Linear(args.hidden_dim * 2, args.hidden_dim)
    self.hat_encoder = _Encoder(
        torch_oracles.HANLayer(args.hidden_dim, args.nhead, args.ff_dim),
        args.num_layers,
        args.hidden_dim,
    )
    self.input_a_dim, self.hidden_dim = args.input_a_dim, args.hidden_dim

  def forward(self, audio, visual, visual_st):
    if audio.size(1) == 64:  # CLAP feature maps
      x1 = audio.permute(0, 2, 1).contiguous().view(-1, self.input_a_dim, 2, 32)
      upsampled = F.interpolate(x1, size=(2, 1024), mode="bicubic")
      upsampled = self.fc_a(upsampled.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).mean(dim=2)
      x1 = F.adaptive_avg_pool1d(upsampled, 10).view(-1, self.hidden_dim, 10).permute(0, 2, 1)
    else:
      x1 = self.fc_a(audio)
    if visual.size(1) == 80:
      vid_s = (
          F.avg_pool2d(self.fc_v(visual).permute(0, 2, 1).unsqueeze(-1), (8, 1))
          .squeeze(-1)
          .permute(0, 2, 1)
      )
    else:
      vid_s = self.fc_v(visual)
    x2 = self.fc_fusion(torch.cat((vid_s, self.fc_st(visual_st)), dim=-1))
    x1, x2 = self.hat_encoder(x1, x2)
    x = torch.cat([x1.unsqueeze(-2), x2.unsqueeze(-2)], dim=-2)
    frame_logits = self.fc_prob(x)
    frame_prob = torch.sigmoid(frame_logits)
    frame_att = torch.softmax(self.fc_frame_att(x), dim=1)
    av_att = torch.softmax(self.fc_av_att(x), dim=2)
    temporal_prob = frame_att * frame_prob
    return {
        "video_prob": (temporal_prob * av_att).sum(dim=2).sum(dim=1),
        "audio_prob": temporal_prob[:, :, 0, :].sum(dim=1),
        "visual_prob": temporal_prob[:, :, 1, :].sum(dim=1),
        "segment_audio_prob": frame_prob[:, :, 0],
        "segment_visual_prob": frame_prob[:, :, 1],
        "frame_logits": frame_logits,
    }


def _args(sizes, nhead=8):
  return argparse.Namespace(nhead=nhead, ff_dim=1024, norm_where="post_norm", **sizes)


def _reference(sizes, seed=0, nhead=8):
  """A VALOR with every parameter drawn anew (the deep-copied layers start equal): LayerNorm scale 1 +- 0.2 and
  bias +-0.2, weights uniform in +-1/sqrt(fan_in), other biases +-0.1."""
  torch.manual_seed(seed)
  model = ReferenceValor(_args(sizes, nhead))
  return torch_oracles.randomize(model, seed)


def _inputs(sizes, seed=1, batch=2, clap_maps=False):
  rng = np.random.default_rng(seed)
  audio_steps = 64 if clap_maps else 10
  frame_steps = 80 if sizes["input_v_dim"] == 2048 else 10
  return (
      rng.normal(size=(batch, audio_steps, sizes["input_a_dim"])).astype(np.float32),
      rng.normal(size=(batch, frame_steps, sizes["input_v_dim"])).astype(np.float32),
      rng.normal(size=(batch, 10, 512)).astype(np.float32),
  )


def _save(directory, model, name="checkpoint_best.pt"):
  path = os.path.join(directory, name)
  torch.save(model.state_dict(), path)
  return path


class ParityTest(parameterized.TestCase):

  def _check(self, sizes, clap_maps=False, nhead=8):
    directory = self.create_tempdir().full_path
    reference = _reference(sizes, nhead=nhead)
    converted = convert.load_official(
        _save(directory, reference), num_heads=None if nhead == 8 else nhead
    )
    self.assertEqual(converted.model, "valor")
    config = converted.config
    self.assertEqual(
        (config.model.han.num_layers, config.model.han.num_heads), (sizes["num_layers"], nhead)
    )
    self.assertEqual((config.model.han.stacking, config.model.han.ffn_dim), ("sequential", 1024))
    audio, frames, motion = _inputs(sizes, clap_maps=clap_maps)
    with torch.no_grad():
      expected = {
          k: v.numpy()
          for k, v in reference(*map(torch.from_numpy, (audio, frames, motion))).items()
      }
    if clap_maps:  # the clip_clap layout's build-time pooling of VALOR's [64, D] CLAP maps
      audio = np.einsum(
          "sk,bkd->bsd", features.clap_segment_matrix(), audio.astype(np.float64)
      ).astype(np.float32)
    got = models.build_model(config.model, llp_task.META).apply(
        {"params": converted.params}, audio, frames, motion, train=False
    )
    logits = expected.pop("frame_logits")
    for key, value in expected.items():
      np.testing.assert_allclose(np.asarray(got[key]), value, atol=1e-5, rtol=1e-5, err_msg=key)
    for modality, index in (
        ("audio", 0),
        ("visual", 1),
    ):  # logits: the inverse sigmoid of the probabilities
      prob = np.asarray(got[f"segment_{modality}_prob"], np.float64)
      np.testing.assert_allclose(
          np.log(prob / (1 - prob)), logits[:, :, index], atol=1e-4, err_msg=modality
      )
    return converted

  def test_valor(self):
    converted = self._check(VALOR)
    self.assertEqual(converted.config.data.layout, "official")

  def test_valor_plus(self):
    self._check(VALOR_PLUS)

  def test_valor_plus_plus_on_clip_and_clap(self):
    converted = self._check(VALOR_PLUS_PLUS)
    self.assertEqual(converted.config.data.layout, "clip_clap")
    self.assertEqual(
        dict(converted.config.model.input_dims), {"audio": 768, "frames": 768, "motion": 512}
    )

  def test_valor_plus_plus_on_clap_feature_maps(self):
    self._check(VALOR_PLUS_PLUS, clap_maps=True)

  def test_other_head_count(self):
    self._check(VALOR_PLUS, nhead=4)

  def test_sequential_stacking_matters(self):
    # The same params with HAN's "stacked" order (both modalities from the previous layer) give other outputs.
    converted = convert.load_official(
        _save(self.create_tempdir().full_path, _reference(VALOR_PLUS))
    )
    config = converted.config.copy_and_resolve_references()
    audio, frames, motion = _inputs(VALOR_PLUS)
    apply = lambda c: models.build_model(c.model, llp_task.META).apply(
        {"params": converted.params}, audio, frames, motion, train=False
    )["segment_visual_prob"]
    sequential = apply(config)
    config.model.han.stacking = "stacked"
    self.assertGreater(
        float(np.abs(np.asarray(sequential) - np.asarray(apply(config))).max()), 1e-3
    )


class BadCheckpointTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.state = _reference(VALOR_PLUS).state_dict()

  def _load(self, state, model="auto", **kwargs):
    path = os.path.join(self.create_tempdir().full_path, "checkpoint_best.pt")
    torch.save(state, path)
    return convert.load_official(path, model, **kwargs)

  def _assert_one_line(self, pattern, state, model="auto", **kwargs):
    with self.assertRaisesRegex(InputError, pattern) as raised:
      self._load(state, model, **kwargs)
    self.assertNotIn("\n", str(raised.exception))

  def test_missing_key_is_named(self):
    state = dict(self.state)
    del state["hat_encoder.layers.2.cm_attn.in_proj_bias"]
    self._assert_one_line(
        r"not an official VALOR \(MMIL_Net\) state_dict: missing "
        r"hat_encoder\.layers\.2\.cm_attn\.in_proj_bias",
        state,
    )

  def test_wrong_shape_is_named(self):
    state = dict(self.state)
    state["hat_encoder.layers.3.linear2.weight"] = torch.zeros(256, 512)
    self._assert_one_line(
        r"hat_encoder\.layers\.3\.linear2\.weight \(256, 512\) \(expected \(256, 1024\)\)", state
    )

  def test_unknown_key_is_named(self):
    state = dict(self.state, **{"hat_encoder.layers.0.norm3.weight": torch.zeros(256)})
    self._assert_one_line(r"unknown hat_encoder\.layers\.0\.norm3\.weight", state)

  def test_wrong_model_and_bad_flags(self):
    self._assert_one_line(
        r"is a VALOR \(MMIL_Net\) checkpoint \(it has hat_encoder\.final_norm_a\.bias\), not HAN",
        self.state,
        "han",
    )
    self._assert_one_line(r"not JoMoLD.*--model=valor", self.state, "jomold")
    self._assert_one_line(
        r"--num_heads=3 does not divide the checkpoint's width 256", self.state, num_heads=3
    )
    self._assert_one_line(
        r"--label_embeddings is for LEAP", self.state, label_embeddings="labels.pt"
    )
    self._assert_one_line(r"--model='mmil' is unknown", self.state, "mmil")
    self._assert_one_line(
        r"none of the official models converted here", {"fc_a.weight": torch.zeros(2, 2)}
    )


class ConvertedCheckpointTest(absltest.TestCase):

  def test_evaluates_without_a_workdir_and_parses(self):
    directory = self.create_tempdir().full_path
    reference = _reference(VALOR_PLUS)
    out = os.path.join(directory, "valor_plus")
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "launch" / "convert_official.py"),
            f"--official={_save(directory, reference)}",
            f"--out={out}",
            "--model=valor",
            "--config=configs/han.py:tiny",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    self.assertEqual(done.returncode, 0, done.stderr)
    evaluated = subprocess.run(
        [
            sys.executable,
            str(ROOT / "launch" / "evaluate.py"),
            f"--checkpoint={out}",
            "--split=val",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    self.assertEqual(evaluated.returncode, 0, evaluated.stderr)
    self.assertTrue(os.path.isfile(os.path.join(out, "eval_val.json")))
    parser = avvp_jax.load_parser(out)
    audio, frames, motion = _inputs(VALOR_PLUS)
    with torch.no_grad():
      expected = reference(*map(torch.from_numpy, (audio, frames, motion)))
    probs = parser.predict(audio, frames, motion)
    for key in ("video", "audio", "visual", "segment_audio", "segment_visual"):
      np.testing.assert_allclose(
          probs[f"{key}_prob"], expected[f"{key}_prob"].numpy(), atol=1e-5, rtol=1e-5, err_msg=key
      )


if __name__ == "__main__":
  absltest.main()
