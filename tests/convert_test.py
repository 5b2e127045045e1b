"""Parity of avvp_jax.convert with a PyTorch HAN written to the official parameter names and forward.

(The LEAP, VALOR and JoMoLD converters have their own tests/convert_{leap,valor,jomold}_test.py.)

The reference below is our own PyTorch transcription of the official model (YapengTian/AVVP-ECCV20,
`nets/net_audiovisual.py`, `MMIL_Net`): the same module names and shapes, so its `state_dict()` has exactly
the official keys, including the never-used `audio_encoder`, `visual_encoder` and `cmt_encoder`. The
facts it follows:
  * fc_a: audio 128 -> 512; fc_v: frames 2048 -> 512 on each of the 8 frames of a second, then their mean;
    fc_st: motion 512 -> 512; fc_fusion: [frames, motion] 1024 -> 512;
  * hat_encoder: one HAN layer, applied with the SAME weights to (audio, visual) and to (visual, audio):
    x <- norm1(x + crossattn(x, other) + selfattn(x)); x <- norm2(x + linear2(relu(linear1(x))));
    attention is nn.MultiheadAttention with one head; the encoder's own norm1/norm2 are never applied;
  * MMIL pooling over x = [audio, visual] stacked on a modality axis: segment probabilities
    sigmoid(fc_prob(x)), temporal attention softmax over time of fc_frame_att(x), modality attention
    softmax over the two modalities of fc_av_att(x); video = sum over time and modality of
    segment * temporal * modality; audio / visual = sum over time of segment * temporal.
torch is the `parity` extra (`pip install -e .[test,parity]`), required here.
"""

import json
import os
import pathlib
import subprocess
import sys

from absl.testing import absltest
import jax
import numpy as np
import torch
from torch import nn

import avvp_jax
from avvp_jax import convert
from avvp_jax.errors import InputError
from avvp_jax.tasks.llp import task as llp_task

HIDDEN, AUDIO, FRAMES, MOTION, CLASSES = 512, 128, 2048, 512, 25


class _CrossModalLayer(nn.Module):
  """One HAN layer: cross-modal and self attention, then a feed-forward block, both post-norm."""

  def __init__(self, dim=HIDDEN, ffn=HIDDEN, dropout=0.1):
    super().__init__()
    self.self_attn = nn.MultiheadAttention(dim, 1, dropout=dropout)
    self.cm_attn = nn.MultiheadAttention(dim, 1, dropout=dropout)
    self.linear1 = nn.Linear(dim, ffn)
    self.linear2 = nn.Linear(ffn, dim)
    self.norm1 = nn.LayerNorm(dim)
    self.norm2 = nn.LayerNorm(dim)
    self.drop = nn.Dropout(dropout)

  def forward(self, query, other):  # [B, T, D] each
    q = query.transpose(0, 1)  # nn.MultiheadAttention is sequence-first
    o = other.transpose(0, 1)
    cross = self.cm_attn(q, o, o, need_weights=False)[0]
    self_ = self.self_attn(q, q, q, need_weights=False)[0]
    x = self.norm1(q + self.drop(cross) + self.drop(self_))
    x = self.norm2(x + self.drop(self.linear2(self.drop(torch.relu(self.linear1(x))))))
    return x.transpose(0, 1)


class _SelfOnlyLayer(nn.Module):
  """The shape of the official (unused) CMT layer: one attention, a feed-forward block, two norms."""

  def __init__(self, dim=HIDDEN):
    super().__init__()
    self.self_attn = nn.MultiheadAttention(dim, 1)
    self.linear1 = nn.Linear(dim, dim)
    self.linear2 = nn.Linear(dim, dim)
    self.norm1 = nn.LayerNorm(dim)
    self.norm2 = nn.LayerNorm(dim)


class _PairEncoder(nn.Module):
  """`layers.0` plus two final norms that the official forward never applies."""

  def __init__(self, layer):
    super().__init__()
    self.layers = nn.ModuleList([layer])
    self.norm1 = nn.LayerNorm(HIDDEN)
    self.norm2 = nn.LayerNorm(HIDDEN)

  def forward(self, audio, visual):
    layer = self.layers[0]
    return layer(audio, visual), layer(visual, audio)


class ReferenceHan(nn.Module):
  """The official HAN + MMIL forward under the official parameter names (`MMIL_Net`)."""

  def __init__(self):
    super().__init__()
    self.fc_prob = nn.Linear(HIDDEN, CLASSES)
    self.fc_frame_att = nn.Linear(HIDDEN, CLASSES)
    self.fc_av_att = nn.Linear(HIDDEN, CLASSES)
    self.fc_a = nn.Linear(AUDIO, HIDDEN)
    self.fc_v = nn.Linear(FRAMES, HIDDEN)
    self.fc_st = nn.Linear(MOTION, HIDDEN)
    self.fc_fusion = nn.Linear(2 * HIDDEN, HIDDEN)
    unused_layer = lambda: nn.TransformerEncoderLayer(
        d_model=HIDDEN, nhead=1, dim_feedforward=HIDDEN
    )
    self.audio_encoder = nn.TransformerEncoder(
        unused_layer(), num_layers=1, enable_nested_tensor=False
    )
    self.visual_encoder = nn.TransformerEncoder(
        unused_layer(), num_layers=1, enable_nested_tensor=False
    )
    self.cmt_encoder = _PairEncoder(_SelfOnlyLayer())
    self.hat_encoder = _PairEncoder(_CrossModalLayer())

  def forward(self, audio, frames, motion):
    """audio [B, T, 128], frames [B, 8T, 2048], motion [B, T, 512] -> the four outputs."""
    batch, steps = audio.shape[:2]
    x_audio = self.fc_a(audio)
    x_frames = self.fc_v(frames).reshape(batch, steps, 8, HIDDEN).mean(dim=2)
    x_visual = self.fc_fusion(torch.cat([x_frames, self.fc_st(motion)], dim=-1))
    x_audio, x_visual = self.hat_encoder(x_audio, x_visual)
    x = torch.stack([x_audio, x_visual], dim=2)  # [B, T, 2, D]
    segment = torch.sigmoid(self.fc_prob(x))
    temporal = torch.softmax(self.fc_frame_att(x), dim=1) * segment
    modality = torch.softmax(self.fc_av_att(x), dim=2)
    video = (temporal * modality).sum(dim=(1, 2))
    return {
        "video_prob": video,
        "audio_prob": temporal[:, :, 0].sum(1),
        "visual_prob": temporal[:, :, 1].sum(1),
        "segment_audio_prob": segment[:, :, 0],
        "segment_visual_prob": segment[:, :, 1],
    }


def _reference_and_checkpoint(directory, seed=0):
  torch.manual_seed(seed)
  model = ReferenceHan().eval()
  path = os.path.join(directory, "MMIL_Net.pt")
  torch.save(model.state_dict(), path)
  return model, path


def _inputs(seed=1, batch=2, steps=10):
  rng = np.random.default_rng(seed)
  return (
      rng.normal(size=(batch, steps, AUDIO)).astype(np.float32),
      rng.normal(size=(batch, 8 * steps, FRAMES)).astype(np.float32),
      rng.normal(size=(batch, steps, MOTION)).astype(np.float32),
  )


class OfficialKeysTest(absltest.TestCase):

  def test_reference_has_the_official_names(self):
    keys = set(ReferenceHan().state_dict())
    for key in (
        "fc_prob.weight",
        "fc_av_att.bias",
        "fc_fusion.weight",
        "hat_encoder.layers.0.cm_attn.in_proj_weight",
        "hat_encoder.layers.0.self_attn.out_proj.bias",
        "hat_encoder.layers.0.linear1.weight",
        "hat_encoder.layers.0.norm2.bias",
        "hat_encoder.norm1.weight",
        "audio_encoder.layers.0.self_attn.in_proj_weight",
        "cmt_encoder.layers.0.linear2.bias",
    ):
      self.assertIn(key, keys)


class ParityTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.directory = absltest.get_default_test_tmpdir() + "/convert_parity"
    os.makedirs(cls.directory, exist_ok=True)
    cls.reference, cls.path = _reference_and_checkpoint(cls.directory)
    cls.config, cls.params = convert.load_official_han(cls.path)

  def _compare(self, config, params, frames_pooled=False):
    from avvp_jax import models  # pylint: disable=g-import-not-at-top

    audio, frames, motion = _inputs()
    with torch.no_grad():
      expected = self.reference(*map(torch.from_numpy, (audio, frames, motion)))
    flax_frames = frames.reshape(2, 10, 8, FRAMES).mean(axis=2) if frames_pooled else frames
    outputs = models.build_model(config.model, llp_task.META).apply(
        {"params": params}, audio, flax_frames, motion, train=False
    )
    for key, value in expected.items():
      np.testing.assert_allclose(
          np.asarray(outputs[key]), value.numpy(), atol=1e-5, rtol=1e-5, err_msg=key
      )

  def test_every_output_matches_in_eval_mode(self):
    self._compare(self.config, self.params)

  def test_pooled_frames_match_too(self):
    self._compare(self.config, self.params, frames_pooled=True)

  def test_config_describes_the_official_model(self):
    self.assertEqual(self.config.model.encoder, "han")
    self.assertEqual(self.config.model.decoder, "mmil")
    self.assertEqual(
        dict(self.config.model.input_dims), {"audio": 128, "frames": 2048, "motion": 512}
    )
    self.assertEqual(self.config.model.hidden_dim, 512)

  def test_params_tree_matches_the_model(self):
    from avvp_jax import state as state_lib  # pylint: disable=g-import-not-at-top

    expected = jax.tree.map(
        lambda x: (x.shape[1:], x.dtype), state_lib.abstract_params(self.config)
    )  # [1, ...]
    got = jax.tree.map(lambda x: (x.shape, x.dtype), self.params)
    self.assertEqual(jax.tree_util.tree_structure(got), jax.tree_util.tree_structure(expected))
    self.assertEqual(jax.tree.leaves(got), jax.tree.leaves(expected))

  def test_written_checkpoint_restores(self):
    from avvp_jax import checkpoint  # pylint: disable=g-import-not-at-top
    from avvp_jax import state as state_lib  # pylint: disable=g-import-not-at-top

    out = self.create_tempdir().full_path
    convert.convert_official_han(self.path, out)
    self.assertTrue(os.path.isfile(os.path.join(out, "config.json")))
    config, params = checkpoint.restore_params(out)
    self.assertEqual(state_lib.run_seeds(config), [config.seed])  # one model: one replica
    self._compare(config, checkpoint.select_seed(config, params, config.seed))


class LauncherTest(absltest.TestCase):

  def _run(self, *args):
    root = pathlib.Path(__file__).resolve().parents[1]
    return subprocess.run(
        [sys.executable, str(root / "launch" / "convert_official.py"), *args],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=300,
        check=False,
    )

  def test_writes_a_checkpoint_and_refuses_bad_input(self):
    from avvp_jax import checkpoint  # pylint: disable=g-import-not-at-top

    directory = self.create_tempdir().full_path
    _, path = _reference_and_checkpoint(directory, seed=3)
    out = os.path.join(directory, "converted")
    done = self._run(
        f"--official={path}",
        f"--out={out}",
        "--config=configs/han.py",
        "--config.data.features_dir=/data/llp",
    )
    self.assertEqual(done.returncode, 0, done.stderr)
    config, params = checkpoint.restore_params(out)
    params = checkpoint.select_seed(config, params, config.seed)
    self.assertEqual(config.data.features_dir, "/data/llp")
    _, expected = convert.load_official_han(path)
    jax.tree.map(np.testing.assert_array_equal, params, expected)

    bad = self._run(f"--official={os.path.join(directory, 'nope.pt')}", f"--out={out}")
    self.assertEqual(bad.returncode, 2)
    self.assertRegex(bad.stderr.strip().splitlines()[-1], r"^error: .*nope\.pt")
    # The old name of --official still works, with one warning line naming what it now is.
    old = self._run(f"--checkpoint={os.path.join(directory, 'nope.pt')}", f"--out={out}")
    self.assertEqual(old.returncode, 2)
    lines = old.stderr.strip().splitlines()
    self.assertIn(
        "warning: --checkpoint is deprecated; here it is now --official (the official .pt file to "
        "convert); use --official",
        lines,
    )
    self.assertRegex(lines[-1], r"^error: .*nope\.pt")

  def test_converted_checkpoint_evaluates_without_a_workdir_and_parses(self):
    directory = self.create_tempdir().full_path
    reference, path = _reference_and_checkpoint(directory, seed=5)
    out = os.path.join(directory, "han_official")
    done = self._run(f"--official={path}", f"--out={out}", "--config=configs/han.py:tiny")
    self.assertEqual(done.returncode, 0, done.stderr)
    root = pathlib.Path(__file__).resolve().parents[1]
    evaluated = subprocess.run(
        [
            sys.executable,
            str(root / "launch" / "evaluate.py"),
            f"--checkpoint={out}",
            "--split=test",
        ],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=300,
        check=False,
    )
    self.assertEqual(evaluated.returncode, 0, evaluated.stderr)
    self.assertIn(f"wrote {out}/eval_test.json", evaluated.stdout)
    with open(os.path.join(out, "eval_test.json")) as file:
      self.assertEqual(json.load(file)["num_clips"], 40)  # the tiny preset's first 40 test clips
    parser = avvp_jax.load_parser(out)
    audio, frames, motion = _inputs()
    with torch.no_grad():
      expected = reference(*map(torch.from_numpy, (audio, frames, motion)))
    probs = parser.predict(audio, frames, motion)
    for key in ("video", "audio", "visual", "segment_audio", "segment_visual"):
      np.testing.assert_allclose(
          probs[f"{key}_prob"], expected[f"{key}_prob"].numpy(), atol=1e-5, rtol=1e-5, err_msg=key
      )


class BadCheckpointTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    torch.manual_seed(0)
    self.state = ReferenceHan().state_dict()
    self.directory = self.create_tempdir().full_path

  def _save(self, state):
    path = os.path.join(self.directory, "bad.pt")
    torch.save(state, path)
    return path

  def test_missing_key_is_named(self):
    del self.state["hat_encoder.layers.0.cm_attn.in_proj_weight"]
    with self.assertRaisesRegex(
        InputError, r"missing.*hat_encoder\.layers\.0\.cm_attn\.in_proj_weight"
    ):
      convert.load_official_han(self._save(self.state))

  def test_unknown_key_is_named(self):
    self.state["fc_extra.weight"] = torch.zeros(3, 3)
    with self.assertRaisesRegex(InputError, r"unknown.*fc_extra\.weight"):
      convert.load_official_han(self._save(self.state))

  def test_wrong_shape_is_named(self):
    self.state["fc_prob.weight"] = torch.zeros(10, HIDDEN)
    with self.assertRaisesRegex(InputError, r"fc_prob"):
      convert.load_official_han(self._save(self.state))

  def test_not_a_checkpoint(self):
    path = pathlib.Path(self.directory) / "junk.pt"
    path.write_text("junk")
    with self.assertRaisesRegex(InputError, "junk.pt"):
      convert.load_official_han(str(path))
    with self.assertRaisesRegex(InputError, "does not exist"):
      convert.load_official_han(os.path.join(self.directory, "nope.pt"))

  def test_detected_and_wrong_model_refused(self):
    path = self._save(self.state)
    self.assertEqual(convert.load_official(path).model, "han")
    for model in ("leap", "valor", "jomold"):
      with self.assertRaisesRegex(
          InputError,
          r"is a HAN \(MMIL_Net\) checkpoint \(it has audio_encoder\..*"
          r"--model=han or --model=auto",
      ) as raised:
        convert.load_official(path, model)
      self.assertNotIn("\n", str(raised.exception))
    with self.assertRaisesRegex(InputError, r"one attention head"):
      convert.load_official(path, num_heads=8)

  def test_wrapped_state_dict_and_module_prefix(self):
    # A {"state_dict": ...} wrapper and DataParallel's "module." prefix are accepted.
    wrapped = {"state_dict": {f"module.{k}": v for k, v in self.state.items()}}
    _, params = convert.load_official_han(self._save(wrapped))
    _, plain = convert.load_official_han(self._save(self.state))
    jax.tree.map(np.testing.assert_array_equal, params, plain)


if __name__ == "__main__":
  absltest.main()
