"""Parity of the JoMoLD converter (avvp_jax.convert.han, model "jomold") with a PyTorch JoMoLD to the official names.

The reference below is our own PyTorch transcription of MCG-NJU/JoMoLD's `nets/net_audiovisual.py` (`MMIL_Net`,
`Encoder`, `HANLayer`), saved as its `main.py` saves it: {"model": state_dict, "optimizer", "scheduler",
"epochs" and the torch / cuda / random / numpy RNG states}. The facts it follows:
  * embedding as HAN (fc_a; fc_v on 80 frames, the mean of each second's 8; fc_fusion([fc_v, fc_st]));
  * hat_encoder: each layer i updates both modalities from the previous layer's outputs,
    a_i = layer_i(a_{i-1}, v_{i-1}), v_i = layer_i(v_{i-1}, a_{i-1}), HAN's post-norm layer with one head;
    the encoder's norm1/norm2 are built but not applied (norm=None);
  * in eval mode the classifier dropout is the identity; MMIL pooling as HAN; and the noise-contrastive
    similarity sims_after = normalise(a) . normalise(v)^T / 0.2, [B * 10, 10].
torch is the `parity` extra (`pip install -e .[test,parity]`), required here.
"""

import copy
import os
import random

from absl.testing import absltest
from absl.testing import parameterized
import jax
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import avvp_jax
from avvp_jax import convert
from avvp_jax import models
from avvp_jax.errors import InputError
from avvp_jax.tasks.llp import task as llp_task
import torch_oracles


class _Encoder(nn.Module):

  def __init__(self, num_layers):
    super().__init__()
    self.layers = nn.ModuleList([torch_oracles.HANLayer() for _ in range(num_layers)])
    self.num_layers = num_layers
    self.norm1, self.norm2 = nn.LayerNorm(512), nn.LayerNorm(512)  # norm=None: never applied

  def forward(self, src_a, src_v):
    for i in range(self.num_layers):
      output_a = self.layers[i](src_a, src_v)
      output_v = self.layers[i](src_v, src_a)
      src_a, src_v = output_a, output_v
    return src_a, src_v


class ReferenceJoMoLD(nn.Module):
  """JoMoLD's MMIL_Net forward (with cross-attention, as its test mode) under the official parameter names."""

  def __init__(self, num_layers=1, temperature=0.2, cls_dropout=0.5):
    super().__init__()
    self.fc_prob, self.fc_frame_att, self.fc_av_att = (
        nn.Linear(512, 25),
        nn.Linear(512, 25),
        nn.Linear(512, 25),
    )
    self.fc_a, self.fc_v = nn.Linear(128, 512), nn.Linear(2048, 512)
    self.fc_st, self.fc_fusion = nn.Linear(512, 512), nn.Linear(1024, 512)
    self.hat_encoder = _Encoder(num_layers)
    self.temp = temperature
    self.dropout = nn.Dropout(p=cls_dropout)

  def forward(self, audio, visual, visual_st):
    x1 = self.fc_a(audio)
    vid_s = (
        F.avg_pool2d(self.fc_v(visual).permute(0, 2, 1).unsqueeze(-1), (8, 1))
        .squeeze(-1)
        .permute(0, 2, 1)
    )
    x2 = self.fc_fusion(torch.cat((vid_s, self.fc_st(visual_st)), dim=-1))
    x1, x2 = self.hat_encoder(x1, x2)
    sims = (
        F.normalize(x1, p=2, dim=-1).bmm(F.normalize(x2, p=2, dim=-1).permute(0, 2, 1)) / self.temp
    )
    x2 = self.dropout(x2)
    x = torch.cat([x1.unsqueeze(-2), x2.unsqueeze(-2)], dim=-2)
    frame_prob = torch.sigmoid(self.fc_prob(x))
    frame_att = torch.softmax(self.fc_frame_att(x), dim=1)
    av_att = torch.softmax(self.fc_av_att(x), dim=2)
    temporal_prob = frame_att * frame_prob
    return {
        "video_prob": (temporal_prob * av_att).sum(dim=2).sum(dim=1),
        "audio_prob": temporal_prob[:, :, 0, :].sum(dim=1),
        "visual_prob": temporal_prob[:, :, 1, :].sum(dim=1),
        "segment_audio_prob": frame_prob[:, :, 0],
        "segment_visual_prob": frame_prob[:, :, 1],
        "sims_after": sims.reshape(-1, 10),
    }


def _reference(num_layers=1, seed=0):
  """Every parameter drawn anew: LayerNorm scale 1 +- 0.2 and bias +-0.2, weights +-1/sqrt(fan_in), biases +-0.1."""
  torch.manual_seed(seed)
  model = ReferenceJoMoLD(num_layers)
  return torch_oracles.randomize(model, seed)


def _save_as_main_py(directory, model, name="JoMoLD.pt"):
  """The dict JoMoLD's main.py saves: RNG states, then model, optimizer and scheduler states and the epochs."""
  optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
  scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=6, gamma=0.25)
  saved = {
      "torch_rng": torch.get_rng_state(),
      "cuda_rng": torch.zeros(16, dtype=torch.uint8),
      "random_rng": random.getstate(),
      "numpy_rng": np.random.get_state(),
      "model": model.state_dict(),
      "optimizer": optimizer.state_dict(),
      "scheduler": scheduler.state_dict(),
      "epochs": 25,
  }
  path = os.path.join(directory, name)
  torch.save(saved, path)
  return path


def _inputs(seed=1, batch=2):
  rng = np.random.default_rng(seed)
  return (
      rng.normal(size=(batch, 10, 128)).astype(np.float32),
      rng.normal(size=(batch, 80, 2048)).astype(np.float32),
      rng.normal(size=(batch, 10, 512)).astype(np.float32),
  )


def _sims(outputs, temperature=0.2):
  """JoMoLD's sims_after from our encoder outputs."""
  normalise = lambda x: np.asarray(x, np.float64) / np.linalg.norm(
      np.asarray(x, np.float64), axis=-1, keepdims=True
  )
  a, v = normalise(outputs["audio_embedding"]), normalise(outputs["visual_embedding"])
  return (np.einsum("btd,bsd->bts", a, v) / temperature).reshape(-1, 10)


class ParityTest(parameterized.TestCase):

  @parameterized.parameters(1, 2)
  def test_every_output_matches_in_eval_mode(self, num_layers):
    directory = self.create_tempdir().full_path
    reference = _reference(num_layers)
    converted = convert.load_official(_save_as_main_py(directory, reference))
    self.assertEqual(converted.model, "jomold")
    self.assertEqual(
        (converted.config.model.han.num_layers, converted.config.model.han.num_heads),
        (num_layers, 1),
    )
    self.assertEqual(converted.config.model.han.stacking, "stacked")
    # JoMoLD's evaluation gates each modality's segments by that modality's video prediction.
    self.assertEqual(converted.config.model.mmil.filter, "modality")
    audio, frames, motion = _inputs()
    with torch.no_grad():
      expected = {
          k: v.numpy()
          for k, v in reference(*map(torch.from_numpy, (audio, frames, motion))).items()
      }
    got = models.build_model(converted.config.model, llp_task.META).apply(
        {"params": converted.params}, audio, frames, motion, train=False
    )
    np.testing.assert_allclose(
        _sims(got), expected.pop("sims_after"), atol=1e-5, rtol=1e-5, err_msg="sims_after"
    )
    for key, value in expected.items():
      np.testing.assert_allclose(np.asarray(got[key]), value, atol=1e-5, rtol=1e-5, err_msg=key)
    for modality in ("audio", "visual"):
      np.testing.assert_array_equal(got[f"{modality}_filter_prob"], got[f"{modality}_prob"])

  def test_bare_model_state_dict_is_jomold_too(self):
    directory = self.create_tempdir().full_path
    reference = _reference(1)
    path = os.path.join(directory, "model_only.pt")
    torch.save(reference.state_dict(), path)
    self.assertEqual(
        convert.load_official(path).model, "jomold"
    )  # hat_encoder.norm1 without HAN's extras
    wrapped = convert.load_official(_save_as_main_py(directory, reference), "jomold")
    jax.tree.map(
        np.testing.assert_array_equal, convert.load_official(path, "jomold").params, wrapped.params
    )

  def test_converted_checkpoint_parses(self):
    directory = self.create_tempdir().full_path
    reference = _reference(1, seed=3)
    out = convert.convert_official(
        _save_as_main_py(directory, reference), os.path.join(directory, "jomold")
    )
    parser = avvp_jax.load_parser(out)
    audio, frames, motion = _inputs()
    with torch.no_grad():
      expected = reference(*map(torch.from_numpy, (audio, frames, motion)))
    probs = parser.predict(audio, frames, motion)
    for key in ("video", "audio", "visual", "segment_audio", "segment_visual"):
      np.testing.assert_allclose(
          probs[f"{key}_prob"], expected[f"{key}_prob"].numpy(), atol=1e-5, rtol=1e-5, err_msg=key
      )


class _PlainObject:
  """A Python object that `torch.load(weights_only=True)` refuses to rebuild."""


class BadCheckpointTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.directory = self.create_tempdir().full_path
    self.reference = _reference(2)

  def _assert_one_line(self, pattern, model="auto", mutate=None, **kwargs):
    reference = copy.deepcopy(self.reference)
    path = _save_as_main_py(self.directory, reference)
    if mutate is not None:
      saved = torch.load(path, weights_only=False)
      mutate(saved["model"])
      torch.save(saved, path)
    with self.assertRaisesRegex(InputError, pattern) as raised:
      convert.load_official(path, model, **kwargs)
    self.assertNotIn("\n", str(raised.exception))

  def test_missing_key_is_named(self):
    self._assert_one_line(
        r"JoMoLD \(MMIL_Net\) state_dict: missing hat_encoder\.layers\.1\.norm2\.bias",
        mutate=lambda state: state.pop("hat_encoder.layers.1.norm2.bias"),
    )

  def test_wrong_shape_is_named(self):
    self._assert_one_line(
        r"fc_prob\.bias \(10,\) \(expected \(25,\)\)",
        mutate=lambda state: state.update({"fc_prob.bias": torch.zeros(10)}),
    )
    self._assert_one_line(
        r"hat_encoder\.layers\.1\.self_attn\.in_proj_weight \(1000, 512\) \(expected \(1536, 512\)\)",
        mutate=lambda state: state.update(
            {"hat_encoder.layers.1.self_attn.in_proj_weight": torch.zeros(1000, 512)}
        ),
    )

  def test_wrong_model_and_heads(self):
    self._assert_one_line(r"is a JoMoLD \(MMIL_Net\) checkpoint.*not HAN .*--model=jomold", "han")
    self._assert_one_line(r"is a JoMoLD \(MMIL_Net\) checkpoint.*not LEAP", "leap")
    self._assert_one_line(
        r"--num_heads=8, but the official JoMoLD \(MMIL_Net\) has one attention head", num_heads=8
    )

  def test_other_pickled_objects_are_refused(self):
    path = os.path.join(self.directory, "pickled.pt")
    torch.save({"model": self.reference.state_dict(), "args": _PlainObject()}, path)
    with self.assertRaisesRegex(InputError, r"pickled\.pt.*could not be read by torch\.load"):
      convert.load_official(path, "jomold")
    # "auto" also tries the reader of whole pickled modules (AVE-ECCV18's, PSP's), which names the class.
    with self.assertRaisesRegex(
        InputError,
        r"pickled\.pt.*asks its unpickler for convert_jomold_test\._PlainObject.*nothing was run",
    ):
      convert.load_official(path)


if __name__ == "__main__":
  absltest.main()
