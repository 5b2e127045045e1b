"""MA's stages against transcriptions of the official code (Yu-Wu/Modaily-Aware-Audio-Visual-Video-Parsing).

* `estimate_label` and the per-class accuracy against a numpy transcription of the official loops;
* the "ma" loss on one batch against a PyTorch transcription of MMIL_Net (step1 / step3) and its training loss,
  dropout off, stage 1 and stage 3 (the step3 loader's label aliasing transcribed as written);
* MA-format files: CVCM's release (3,509 visual and 1,583 audio labels dropped), a file pickled by torch as the
  official code does, files this package writes; refused globals, rows outside the list, another clip list;
* the three stages end to end on the SYNTHETIC data (stage 1 :tiny, launch/refine_labels.py's library, :retrain_tiny).
"""

import os
import pickle
import subprocess
import sys

from absl.testing import absltest
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from avvp_jax import models
from avvp_jax import state as state_lib
from avvp_jax import train
from avvp_jax.convert import han as han_convert
from avvp_jax.errors import InputError
from avvp_jax.tasks.llp import annotations
from avvp_jax.tasks.llp import batch_keys
from avvp_jax.tasks.llp import losses
from avvp_jax.tasks.llp import refined_labels
from avvp_jax.tasks.llp import task as llp_task
from avvp_jax.tools import ma_refine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from configs import ma as ma_config  # pylint: disable=g-import-not-at-top,wrong-import-position
import torch_oracles  # pylint: disable=g-import-not-at-top,wrong-import-position

CVCM_FILE = os.path.join(
    os.path.dirname(ROOT), "shared", "refined_labels", "need_to_change_cvcm.pkl"
)
if not os.path.isfile(CVCM_FILE):
  CVCM_FILE = "/work/shared/refined_labels/need_to_change_cvcm.pkl"


# --- numpy transcription of step2_find_exchange/main_avvp.py --------------------------------------------


def official_estimate_label(datas, v_accs, a_accs):
  """`estimate_label` as written (torch's float32 division: x / 0 is inf or nan, and nan < 0.5 is False)."""
  v_err = 1 - np.asarray(v_accs, np.float32)
  a_err = 1 - np.asarray(a_accs, np.float32)
  with np.errstate(divide="ignore", invalid="ignore"):
    v_class = v_err / np.max(v_err)
    a_class = a_err / np.max(a_err)
    need_to_change_v = [[] for _ in range(25)]
    need_to_change_a = [[] for _ in range(25)]
    for data in datas:
      label = data["label"]
      a_v, v_v = data["a_v"] * label, data["v_v"] * label
      a_a, v_a = data["a_a"] * label, data["v_a"] * label
      idx = data["idx"]
      for b in range(len(a_v)):
        for c in range(25):
          if label[b][c] != 0:
            if v_a[b][c] / v_class[c] < 0.5:
              if a_a[b][c] / v_class[c] < 0.5:
                need_to_change_v[c].append(idx[b])
            if a_v[b][c] / a_class[c] < 0.5:
              if v_v[b][c] / a_class[c] < 0.5:
                need_to_change_a[c].append(idx[b])
  return need_to_change_v, need_to_change_a


def official_accuracy(prob, target):
  """`(v_prob > 0.5) == target`, concatenated over batches and averaged per class."""
  return ((prob > 0.5) == target).astype(np.float32).mean(0)


def _exchange_inputs(seed, num=40):
  rng = np.random.default_rng(seed)
  label = (rng.random((num, 25)) < 0.15).astype(np.float32)
  label[np.arange(num), rng.integers(0, 25, num)] = 1.0
  probs = {k: rng.random((num, 25)).astype(np.float32) for k in ma_refine.PROB_KEYS}
  return label, probs


class EstimateLabelTest(absltest.TestCase):

  def _check(self, label, probs, v_acc, a_acc, batch=16):
    datas = [
        {
            "label": label[s : s + batch],
            **{k: probs[k][s : s + batch] for k in ("a_v", "v_v", "a_a", "v_a")},
            "idx": list(range(s, min(s + batch, len(label)))),
        }
        for s in range(0, len(label), batch)
    ]
    want_v, want_a = official_estimate_label(datas, v_acc, a_acc)
    got_v, got_a = ma_refine.estimate_label(
        label, probs["a_v"], probs["v_v"], probs["a_a"], probs["v_a"], v_acc, a_acc
    )
    as_lists = lambda d: [[int(r) for r in np.flatnonzero(np.asarray(d)[:, c])] for c in range(25)]
    self.assertEqual(as_lists(got_v), [sorted(x) for x in want_v])
    self.assertEqual(as_lists(got_a), [sorted(x) for x in want_a])
    return sum(map(len, want_v)), sum(map(len, want_a))

  def test_matches_the_official_loops(self):
    label, probs = _exchange_inputs(0)
    v_acc = official_accuracy(probs["v"], label)
    a_acc = official_accuracy(probs["a"], label)
    np.testing.assert_allclose(ma_refine.class_accuracy(probs["v"], label), v_acc, rtol=1e-6)
    np.testing.assert_allclose(ma_refine.class_accuracy(probs["a"], label), a_acc, rtol=1e-6)
    dropped = self._check(label, probs, v_acc, a_acc)
    self.assertGreater(min(dropped), 0)  # both rules fire on these inputs

  def test_classes_without_error_drop_nothing(self):
    label, probs = _exchange_inputs(1)
    v_acc = np.full(25, 0.8, np.float32)
    a_acc = np.full(25, 0.7, np.float32)
    v_acc[:5] = 1.0  # k_v = 0: x / 0 is inf (or nan where x = 0), never < 0.5
    a_acc[3] = 1.0
    probs["v_a"][:, 0] = 0.0  # 0 / 0 = nan
    self._check(label, probs, v_acc, a_acc)
    drop_v, drop_a = ma_refine.estimate_label(
        label, probs["a_v"], probs["v_v"], probs["a_a"], probs["v_a"], v_acc, a_acc
    )
    self.assertFalse(np.asarray(drop_v)[:, :5].any())
    self.assertFalse(np.asarray(drop_a)[:, 3].any())

  def test_no_error_at_all_drops_nothing(self):
    label, probs = _exchange_inputs(2)
    ones = np.ones(25, np.float32)
    self.assertEqual(self._check(label, probs, ones, ones), (0, 0))

  def test_partners_share_no_class_and_follow_the_seed(self):
    weak = annotations.load_split("train")[0].weak_labels[:500]
    partners = ma_refine.draw_partners(weak, seed=3)
    self.assertEqual(partners.shape, (500,))
    self.assertFalse(((weak > 0) & (weak[partners] > 0)).any())
    np.testing.assert_array_equal(partners, ma_refine.draw_partners(weak, seed=3))
    self.assertFalse(np.array_equal(partners, ma_refine.draw_partners(weak, seed=4)))
    with self.assertRaisesRegex(InputError, "shares a weak class with every other"):
      ma_refine.draw_partners(np.ones((4, 25), np.float32), seed=0)


# --- PyTorch transcription of step1_train_base_model / step3_retrain ------------------------------------


class _Encoder(nn.Module):
  """The official `Encoder` (norm=None): every layer reads the inputs (one layer here)."""

  def __init__(self):
    super().__init__()
    self.layers = nn.ModuleList([torch_oracles.HANLayer()])

  def forward(self, src_a, src_v):
    return self.layers[0](src_a, src_v), self.layers[0](src_v, src_a)


class ReferenceMA(nn.Module):
  """MA's MMIL_Net forward (the modules it uses), returning its (global, a, v, frame, sims, mask)."""

  def __init__(self):
    super().__init__()
    self.fc_prob, self.fc_frame_att, self.fc_av_att = (nn.Linear(512, 25) for _ in range(3))
    self.fc_a, self.fc_v = nn.Linear(128, 512), nn.Linear(2048, 512)
    self.fc_st, self.fc_fusion = nn.Linear(512, 512), nn.Linear(1024, 512)
    self.hat_encoder = _Encoder()

  def forward(self, audio, visual, visual_st):
    b = visual_st.size(0)
    x1 = self.fc_a(audio)
    vid_s = self.fc_v(visual).permute(0, 2, 1).unsqueeze(-1)
    vid_s = F.avg_pool2d(vid_s, (8, 1)).squeeze(-1).permute(0, 2, 1)
    x2 = self.fc_fusion(torch.cat((vid_s, self.fc_st(visual_st)), dim=-1))
    x_visual = x2
    x1, x2 = self.hat_encoder(x1, x2)
    xx1 = F.normalize(x_visual, p=2, dim=-1)
    xx2 = F.normalize(x1, p=2, dim=-1)
    sims = (xx2.bmm(xx1.permute(0, 2, 1)).squeeze(1) / 0.2).reshape(-1, 10)
    mask = torch.arange(10).repeat(b)
    x = torch.cat([x1.unsqueeze(-2), x2.unsqueeze(-2)], dim=-2)
    frame_prob = torch.sigmoid(self.fc_prob(x))
    frame_att = torch.softmax(self.fc_frame_att(x), dim=1)
    av_att = torch.softmax(self.fc_av_att(x), dim=2)
    temporal_prob = frame_att * frame_prob
    global_prob = (temporal_prob * av_att).sum(dim=2).sum(dim=1)
    return (
        global_prob,
        temporal_prob[:, :, 0, :].sum(dim=1),
        temporal_prob[:, :, 1, :].sum(dim=1),
        frame_prob,
        sims,
        mask,
    )


class LabelSmoothingLoss(nn.Module):
  """The official `LabelSmoothingLoss`, as written."""

  def __init__(self, classes, smoothing=0.0, dim=-1):
    super().__init__()
    self.confidence = 1.0 - smoothing
    self.smoothing = smoothing
    self.cls = classes
    self.dim = dim

  def forward(self, pred, target):
    pred = pred.log_softmax(dim=self.dim)
    with torch.no_grad():
      true_dist = torch.zeros_like(pred)
      true_dist.fill_(self.smoothing / (self.cls - 1))
      true_dist.scatter_(1, target.data.unsqueeze(1), self.confidence)
    return torch.mean(torch.sum(-true_dist * pred, dim=self.dim))


def official_sample(label, idx, need_to_change_v, need_to_change_a):
  """step3_retrain/dataloader.py's targets for one clip, as written (`pa = label` aliases the video label)."""
  label = np.array(label, np.float64)
  v = 0.9
  pa = label
  pv = v * label + (1 - v) * 0.5
  for c in range(25):
    if label[c] != 0:
      if idx in need_to_change_v[c]:
        pv[c] = 0
      if idx in need_to_change_a[c]:
        pa[c] = 0
  return label, pa, pv


def official_loss(model, audio, frames, motion, target, pa, pv):
  """step1 / step3 `train`'s loss (criterion BCELoss on the clamped outputs + the smoothed contrastive loss)."""
  criterion, criterion2 = nn.BCELoss(), LabelSmoothingLoss(10, smoothing=0.1)
  output, a_prob, v_prob, _, sims, mask = model(audio, frames, motion)
  output = output.clamp(min=1e-7, max=1 - 1e-7)
  a_prob = a_prob.clamp(min=1e-7, max=1 - 1e-7)
  v_prob = v_prob.clamp(min=1e-7, max=1 - 1e-7)
  return {
      "audio": criterion(a_prob, pa),
      "visual": criterion(v_prob, pv),
      "video": criterion(output, target),
      "contrastive": criterion2(sims, mask),
  }


class LossParityTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    torch.manual_seed(0)
    cls.reference = torch_oracles.randomize(ReferenceMA(), seed=0)
    state = {k: v.detach().numpy() for k, v in cls.reference.state_dict().items()}
    cls.params = han_convert.official_to_flax(state)
    base = ma_config.get_config()
    cls.config = han_convert.official_config(han_convert.official_dims(state), base)
    cls.model = models.build_model(cls.config.model, llp_task.META)
    rng = np.random.default_rng(5)
    cls.audio = rng.normal(size=(4, 10, 128)).astype(np.float32)
    cls.frames = rng.normal(size=(4, 80, 2048)).astype(np.float32)
    cls.motion = rng.normal(size=(4, 10, 512)).astype(np.float32)
    weak = np.zeros((4, 25), np.float32)
    weak[0, [0, 3]] = weak[1, 7] = weak[2, [1, 2, 9]] = weak[3, 24] = 1.0
    cls.weak = weak

  def _compare(self, batch, target, pa, pv):
    outputs = self.model.apply(
        {"params": self.params}, self.audio, self.frames, self.motion, train=False
    )
    loss, terms = losses.compute_loss(self.config.loss, outputs, batch)
    with torch.no_grad():
      want = official_loss(
          self.reference,
          *map(torch.from_numpy, (self.audio, self.frames, self.motion)),
          *(torch.from_numpy(np.asarray(x, np.float32)) for x in (target, pa, pv)),
      )
    for key, value in want.items():
      np.testing.assert_allclose(float(terms[key]), float(value), rtol=2e-5, err_msg=key)
    np.testing.assert_allclose(float(loss), float(sum(want.values())), rtol=2e-5)

  def test_stage1_loss_matches_the_official(self):
    self.assertEqual(self.config.loss.name, "ma")
    pv = 0.9 * self.weak + 0.05
    self._compare({batch_keys.LABEL: self.weak}, self.weak, self.weak, pv)

  def test_stage3_loss_matches_the_official_loader(self):
    need_v = [[] for _ in range(25)]
    need_a = [[] for _ in range(25)]
    need_v[3].append(0)  # clip 0: visual Dog dropped
    need_a[0].append(0)  # clip 0: audio Speech dropped (also clears its video label)
    need_a[1].append(2)  # clip 2: audio Car dropped
    need_v[1].append(2)  # ... and visual Car too
    need_v[24].append(3)
    samples = [official_sample(self.weak[n], n, need_v, need_a) for n in range(4)]
    target, pa, pv = (np.stack([s[k] for s in samples]) for k in range(3))
    self.assertEqual(target[0, 0], 0.0)  # the alias
    drops = refined_labels.drops_from_ma_lists((need_v, need_a), self.weak, "test")
    labels = refined_labels.from_drops(
        [f"clip{n}" for n in range(4)], self.weak, drops["audio"], drops["visual"]
    )
    batch = {batch_keys.LABEL: self.weak, **labels.batch(np.arange(4))}
    self._compare(batch, target, pa, pv)
    with self.config.unlocked():
      self.config.loss.ma_drop_clears_video = False
    try:
      outputs = self.model.apply(
          {"params": self.params}, self.audio, self.frames, self.motion, train=False
      )
      _, terms = losses.compute_loss(self.config.loss, outputs, batch)
      video = np.clip(np.asarray(outputs["video_prob"]), 1e-7, 1 - 1e-7)
      bce = -(self.weak * np.log(video) + (1 - self.weak) * np.log1p(-video)).mean()
      np.testing.assert_allclose(float(terms["video"]), bce, rtol=2e-5)
    finally:
      with self.config.unlocked():
        self.config.loss.ma_drop_clears_video = True

  def test_contrastive_term_alone(self):
    rng = np.random.default_rng(2)
    audio, visual = rng.normal(size=(2, 2, 10, 16)).astype(np.float32)
    with torch.no_grad():
      sims = (
          F.normalize(torch.from_numpy(audio), dim=-1).bmm(
              F.normalize(torch.from_numpy(visual), dim=-1).permute(0, 2, 1)
          )
          / 0.2
      ).reshape(-1, 10)
      want = LabelSmoothingLoss(10, 0.1)(sims, torch.arange(10).repeat(2))
    got = losses.ma_contrastive_per_clip(audio, visual, 0.2, 0.1).mean()
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
    grads = jax.grad(lambda a: losses.ma_contrastive_per_clip(a, visual, 0.2, 0.1).sum())(
        jnp.asarray(audio)
    )
    self.assertTrue(np.isfinite(np.asarray(grads)).all())

  def test_modality_gate(self):
    outputs = self.model.apply(
        {"params": self.params}, self.audio, self.frames, self.motion, train=False
    )
    np.testing.assert_array_equal(outputs["audio_filter_prob"], outputs["audio_prob"])
    np.testing.assert_array_equal(outputs["visual_filter_prob"], outputs["visual_prob"])
    with torch.no_grad():
      _, a_prob, _, _, _, _ = self.reference(
          *map(torch.from_numpy, (self.audio, self.frames, self.motion))
      )
    np.testing.assert_allclose(outputs["audio_filter_prob"], a_prob.numpy(), rtol=1e-5, atol=1e-6)


# --- MA-format files ------------------------------------------------------------------------------------


class MAFileTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.train = annotations.load_split("train")[0]

  def test_cvcm_release(self):
    visual, audio = refined_labels.read_ma_pickle(CVCM_FILE)
    self.assertEqual((sum(map(len, visual)), sum(map(len, audio))), (3509, 1583))
    labels = refined_labels.load_refined_labels(
        CVCM_FILE, self.train.filenames, self.train.weak_labels
    )
    dropped = labels.dropped
    self.assertEqual((int(dropped["visual"].sum()), int(dropped["audio"].sum())), (3509, 1583))
    self.assertIn("3509 visual and 1583 audio labels dropped", labels.describe())
    with open(CVCM_FILE, "rb") as f:  # torch's own unpickling (the oracle) gives the same rows
      expected = pickle.load(f)
    self.assertEqual(visual, [[int(t) for t in rows] for rows in expected[0]])
    self.assertEqual(audio, [[int(t) for t in rows] for rows in expected[1]])

  def _weak(self, n=50):
    return self.train.filenames[:n], self.train.weak_labels[:n]

  def test_torch_pickled_file_as_the_official_code_writes_it(self):
    filenames, weak = self._weak()
    idx = torch.arange(16, 32)  # a batch's `data_idx`: each appended row a 0-d view into it
    visual = [[] for _ in range(25)]
    audio = [[] for _ in range(25)]
    rows = [int(r) for r in np.flatnonzero(weak[16:32].any(1))[:3] + 16]
    for r in rows:
      c = int(np.flatnonzero(weak[r])[0])
      visual[c].append(idx[r - 16])
      audio[c].append(idx[r - 16])
    path = os.path.join(self.create_tempdir().full_path, "need_to_change.pkl")
    with open(path, "wb") as f:
      pickle.dump([visual, audio], f)
    got_v, got_a = refined_labels.read_ma_pickle(path)
    self.assertEqual(got_v, [[int(t) for t in x] for x in visual])
    self.assertEqual(got_a, [[int(t) for t in x] for x in audio])
    labels = refined_labels.load_refined_labels(path, filenames, weak)
    self.assertEqual(int(labels.dropped["visual"].sum()), len(rows))

  def test_written_files_round_trip(self):
    filenames, weak = self._weak()
    rng = np.random.default_rng(0)
    drop_a = (weak > 0) & (rng.random(weak.shape) < 0.3)
    drop_v = (weak > 0) & (rng.random(weak.shape) < 0.3)
    folder = self.create_tempdir().full_path
    pkl = os.path.join(folder, refined_labels.MA_FILE)
    refined_labels.write_ma_pickle(pkl, drop_a, drop_v)
    with open(pkl, "rb") as f:  # plain ints: any unpickler reads them
      raw = pickle.load(f)
    self.assertTrue(all(type(r) is int for m in raw for rows in m for r in rows))
    from_pkl = refined_labels.load_refined_labels(pkl, filenames, weak)
    np.testing.assert_array_equal(from_pkl.dropped["audio"], drop_a)
    np.testing.assert_array_equal(from_pkl.dropped["visual"], drop_v)
    labels = refined_labels.from_drops(filenames, weak, drop_a, drop_v, partner=np.arange(50))
    refined_labels.write_npz(os.path.join(folder, refined_labels.NPZ_FILE), labels)
    reordered = list(reversed(filenames))
    from_npz = refined_labels.load_refined_labels(folder, reordered, weak[::-1])
    np.testing.assert_array_equal(from_npz.audio, labels.audio[::-1])
    np.testing.assert_array_equal(from_npz.visual, labels.visual[::-1])
    batch = from_npz.batch(np.array([[0, -1]]))
    self.assertEqual(batch[batch_keys.AUDIO_MODALITY_LABEL].shape, (1, 2, 25))
    self.assertFalse(batch[batch_keys.VISUAL_MODALITY_LABEL][0, 1].any())
    with self.assertRaisesRegex(InputError, r"refined_labels.npz.*another clip list"):
      refined_labels.load_refined_labels(folder, ["nope_0_10", *filenames[1:]], weak)
    other = weak.copy()
    other[0] = 1 - other[0]
    with self.assertRaisesRegex(InputError, r"refined_labels.npz.*other weak labels"):
      refined_labels.load_refined_labels(folder, filenames, other)

  def test_bad_files_are_one_line_naming_the_file(self):
    filenames, weak = self._weak()
    folder = self.create_tempdir().full_path
    path = os.path.join(folder, "bad.pkl")

    def write(obj):
      with open(path, "wb") as f:
        pickle.dump(obj, f)

    empty = [[] for _ in range(25)]
    first_class = int(np.flatnonzero(weak[0])[0])
    outside = [list(x) for x in empty]
    outside[first_class] = [0, 50]
    write([outside, empty])
    with self.assertRaisesRegex(InputError, r"bad.pkl.*row 50, outside the 50 training clips"):
      refined_labels.load_refined_labels(path, filenames, weak)
    stray = [list(x) for x in empty]
    absent = int(np.flatnonzero(weak[0] == 0)[0])
    stray[absent] = [0]
    write([empty, stray])
    with self.assertRaisesRegex(InputError, r"bad.pkl.*audio .* row 0.*another clip list"):
      refined_labels.load_refined_labels(path, filenames, weak)
    write([empty])
    with self.assertRaisesRegex(InputError, r"bad.pkl.*not in MA's layout"):
      refined_labels.read_ma_pickle(path)
    write([[["3"]] + empty[1:], empty])
    with self.assertRaisesRegex(InputError, r"bad.pkl.*holds str"):
      refined_labels.read_ma_pickle(path)
    marker = os.path.join(folder, "ran")

    class Evil:

      def __reduce__(self):
        return (os.system, (f"touch {marker}",))

    write([[[Evil()]] + empty[1:], empty])
    with self.assertRaisesRegex(InputError, r"bad.pkl.*(posix|os)\.system.*refused"):
      refined_labels.read_ma_pickle(path)
    self.assertFalse(os.path.exists(marker))
    with self.assertRaisesRegex(InputError, "does not exist"):
      refined_labels.load_refined_labels(os.path.join(folder, "none.pkl"), filenames, weak)
    with self.assertRaisesRegex(InputError, "neither refined_labels.npz nor need_to_change.pkl"):
      refined_labels.load_refined_labels(self.create_tempdir().full_path, filenames, weak)


# --- the stages end to end ------------------------------------------------------------------------------


class StagesTest(absltest.TestCase):

  def test_three_stages_on_synthetic_data(self):
    root = self.create_tempdir().full_path
    stage1, refined, stage3 = (os.path.join(root, name) for name in ("s1", "refined", "s3"))
    train.train_and_evaluate(ma_config.get_config("tiny"), stage1)
    report = ma_refine.refine_labels(stage1, refined, seed=0, batch_size=16)
    self.assertTrue(report["synthetic"])
    for name in (
        refined_labels.NPZ_FILE,
        refined_labels.MA_FILE,
        refined_labels.REPORT_FILE,
        "SYNTHETIC.txt",
    ):
      self.assertTrue(os.path.isfile(os.path.join(refined, name)), name)
    hidden = report["hidden_labels"]
    for m in ("audio", "visual"):
      self.assertEqual(
          hidden[m]["dropped_correctly"] + hidden[m]["dropped_wrongly"], report["dropped"][m]
      )
    stored = refined_labels.read_npz(os.path.join(refined, refined_labels.NPZ_FILE))
    self.assertTrue(stored.synthetic)
    self.assertFalse(((stored.weak > 0) & (stored.weak[stored.partner] > 0)).any())
    again = ma_refine.refine_labels(
        stage1, refined, seed=0, batch_size=16
    )  # replaces its own folder
    self.assertEqual(again["dropped"], report["dropped"])

    config = ma_config.get_config("retrain_tiny")
    with self.assertRaisesRegex(InputError, "config.data.refined_labels is required"):
      train.train_and_evaluate(config, stage3)
    config.data.refined_labels = refined
    scores = train.train_and_evaluate(config, stage3)
    self.assertBetween(scores["segment/type"], 0.0, 100.0)

    han = ml_collections.ConfigDict(config.to_dict())
    han.loss.name = "han"
    with self.assertRaisesRegex(InputError, "reads no modality-level labels"):
      state_lib.resolve_config(han)


class LauncherTest(absltest.TestCase):

  def test_bad_checkpoint_is_one_line(self):
    out = os.path.join(self.create_tempdir().full_path, "refined")
    result = subprocess.run(
        [
            sys.executable,
            "launch/refine_labels.py",
            "--checkpoint=/no/such/workdir",
            f"--out={out}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    self.assertEqual(result.returncode, 2, result.stderr[-2000:])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    self.assertLen(errors, 1)
    self.assertIn("/no/such/workdir", errors[0])
    self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
  absltest.main()
