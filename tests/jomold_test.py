"""JoMoLD (avvp_jax/tasks/llp/denoising.py, the jomold loss, the model switches, launch/make_noise_ratios.py)
against our PyTorch / numpy transcriptions of MCG-NJU/JoMoLD's `main.py` (`calculate_noise_ratio`, the
selection and warm-up of `train_label_denoising`) and `nets/net_audiovisual.py` (`LabelSmoothingNCELoss`,
`HANLayer(with_ca=False)`, `MMIL_Net`'s dropout), on fixed inputs without ties.
"""

import json
import os
import subprocess
import sys

from absl.testing import absltest
from absl.testing import parameterized
import flax
import jax
import jax.numpy as jnp
import numpy as np
import torch

from avvp_jax.errors import InputError
from avvp_jax.models import han
from avvp_jax.models import mmil
from avvp_jax.tasks.llp import denoising
from avvp_jax.tasks.llp import losses

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_RATIOS = os.path.join(ROOT, "..", "shared", "refined_labels", "noise_ratios.npz")


# --- transcriptions of the official code --------------------------------------------------------------


def official_selection(a_prob, v_prob, Pa, Pv, noise_ratios_a, noise_ratios_v):  # noqa: N803
  """The `with torch.no_grad()` block of JoMoLD's train_label_denoising, after the forward, on CPU."""
  batch = len(a_prob)
  a_prob = torch.clamp(a_prob, min=1e-7, max=1 - 1e-7)
  v_prob = torch.clamp(v_prob, min=1e-7, max=1 - 1e-7)
  tmp_loss_a = torch.nn.BCELoss(reduction="none")(a_prob, Pa)
  tmp_loss_v = torch.nn.BCELoss(reduction="none")(v_prob, Pv)
  _, sort_index_a = torch.sort(tmp_loss_a, dim=0)
  _, sort_index_v = torch.sort(tmp_loss_v, dim=0)
  pos_index_a = Pa > 0.5
  pos_index_v = Pv > 0.5
  for i in range(25):
    pos_num_a = sum(pos_index_a[:, i].type(torch.IntTensor))
    pos_num_v = sum(pos_index_v[:, i].type(torch.IntTensor))
    numbers_a = torch.mul(noise_ratios_a[i], pos_num_a).type(torch.IntTensor)
    numbers_v = torch.mul(noise_ratios_v[i], pos_num_v).type(torch.IntTensor)
    mask_a = torch.zeros(batch)
    mask_v = torch.zeros(batch)
    if numbers_v > 0:
      mask_a[sort_index_a[pos_index_v[sort_index_a[:, i], i], i][:numbers_v]] = 1
      mask_v[sort_index_v[pos_index_v[sort_index_v[:, i], i], i][-numbers_v:]] = 1
    mask = torch.nonzero(torch.mul(mask_a, mask_v)).squeeze(-1).type(torch.LongTensor)
    Pv[mask, i] = 0
    mask_a = torch.zeros(batch)
    mask_v = torch.zeros(batch)
    if numbers_a > 0:
      mask_a[sort_index_a[pos_index_a[sort_index_a[:, i], i], i][-numbers_a:]] = 1
      mask_v[sort_index_v[pos_index_a[sort_index_v[:, i], i], i][:numbers_a]] = 1
    mask = torch.nonzero(torch.mul(mask_a, mask_v)).squeeze(-1).type(torch.LongTensor)
    Pa[mask, i] = 0
  return Pa, Pv


def official_ratio_schedule(init, epochs, iters_per_epoch, warm_up_epoch):
  """The ratios each (epoch, batch) of train_label_denoising uses: [epochs * iters, C] float64."""
  out = []
  for epoch in range(1, epochs + 1):
    noise_ratios = torch.from_numpy(init).clone()  # np.load of the file at each epoch's start
    for batch_idx in range(iters_per_epoch):
      if warm_up_epoch is not None:
        noise_ratios = torch.min(
            torch.cat(
                (
                    noise_ratios.reshape(1, -1),
                    noise_ratios.reshape(1, -1)
                    * ((epoch - 1) * iters_per_epoch + batch_idx)
                    / (warm_up_epoch * iters_per_epoch),
                ),
                dim=0,
            ),
            dim=0,
        )[0]
      out.append(noise_ratios.numpy().copy())
  return np.stack(out)


def official_noise_ratio(a_probs, v_probs, labels, batches, v_thres=1.8, a_thres=0.6):
  """JoMoLD's calculate_noise_ratio on given batches (lists of clip rows), probabilities as the model's."""
  datas, a_prob_list, v_prob_list = [], [], []
  for rows in batches:
    a_prob, v_prob = torch.from_numpy(a_probs[rows]), torch.from_numpy(v_probs[rows])
    target = torch.from_numpy(labels[rows]).type(torch.FloatTensor)
    Pa = (1.0 * labels[rows] + (1 - 1.0) * 0.5).astype(np.float32)  # noqa: N806 (the dataset's default)
    Pv = (0.9 * labels[rows] + (1 - 0.9) * 0.5).astype(np.float32)  # noqa: N806
    a_prob_list.append(torch.mean(a_prob, dim=0).numpy())
    v_prob_list.append(torch.mean(v_prob, dim=0).numpy())
    datas.append(
        {
            "a": a_prob,
            "v": v_prob,
            "label": target,
            "Pa": torch.from_numpy(Pa),
            "Pv": torch.from_numpy(Pv),
        }
    )
  a_prob_mean = np.mean(a_prob_list, axis=0)
  v_prob_mean = np.mean(v_prob_list, axis=0)
  noise_num_v, noise_num_a = np.zeros(25), np.zeros(25)
  for data in datas:
    a, v = data["a"] * data["Pa"], data["v"] * data["Pv"]
    for b in range(len(a)):
      for c in range(25):
        if data["label"][b][c] != 0:
          if v[b][c] / v_prob_mean[c] < v_thres:
            noise_num_v[c] += 1
          if a[b][c] / a_prob_mean[c] < a_thres:
            noise_num_a[c] += 1
  event_nums = labels.sum(axis=0).astype(np.float64)
  return np.divide(noise_num_a, event_nums), np.divide(noise_num_v, event_nums)


class LabelSmoothingNCELoss(torch.nn.Module):
  """JoMoLD's nets/net_audiovisual.py, transcribed."""

  def __init__(self, classes, smoothing=0.0, dim=-1):
    super().__init__()
    self.confidence = 1.0 - smoothing
    self.smoothing = smoothing
    self.cls = classes
    self.dim = dim

  def forward(self, pred, target):
    pred = pred.softmax(dim=self.dim)
    with torch.no_grad():
      true_dist = torch.zeros_like(pred)
      true_dist.fill_(self.smoothing / (self.cls - 1))
      true_dist.scatter_(1, target.data.unsqueeze(1), self.confidence)
    return -torch.mean(torch.log(torch.sum(true_dist * pred, dim=self.dim)))


def _labels(rng, n, c=25, rate=0.3):
  labels = (rng.random((n, c)) < rate).astype(np.float32)
  labels[np.arange(n), rng.integers(0, c, n)] = 1.0  # every clip has a label
  return labels


# --- tests --------------------------------------------------------------------------------------------


class SelectionTest(parameterized.TestCase):

  @parameterized.parameters(0, 1, 2)
  def test_denoised_targets_match_the_official_selection(self, seed):
    rng = np.random.default_rng(seed)
    b = 128
    labels = _labels(rng, b, rate=0.25)
    a_prob = rng.uniform(0.01, 0.99, (b, 25)).astype(np.float32)  # distinct: no ties in the sorts
    v_prob = rng.uniform(0.01, 0.99, (b, 25)).astype(np.float32)
    ratios_a, ratios_v = rng.uniform(0, 1, 25), rng.uniform(0, 1, 25)
    ratios_a[:3], ratios_v[3:6] = 0.0, 1.0
    pa, pv = official_selection(
        torch.from_numpy(a_prob),
        torch.from_numpy(v_prob),
        torch.from_numpy(labels.copy()),
        torch.from_numpy((0.9 * labels + 0.05).astype(np.float32)),
        torch.from_numpy(ratios_a),
        torch.from_numpy(ratios_v),
    )
    got = denoising.denoised_targets(
        a_prob,
        v_prob,
        labels,
        jnp.ones(b, bool),
        {
            m: jnp.asarray(denoising.count_table(r, b))
            for m, r in (("audio", ratios_a), ("visual", ratios_v))
        },
        {"audio": jnp.asarray(ratios_a, jnp.float32), "visual": jnp.asarray(ratios_v, jnp.float32)},
        jnp.float32(1.0),
        clamp_eps=1e-7,
        audio_smoothing=1.0,
        visual_smoothing=0.9,
    )
    np.testing.assert_allclose(np.asarray(got["audio_target"]), pa.numpy(), atol=1e-7)
    np.testing.assert_allclose(np.asarray(got["visual_target"]), pv.numpy(), atol=1e-7)
    self.assertGreater(int(got["audio_drop"].sum()), 10)  # the rule does drop labels here
    self.assertGreater(int(got["visual_drop"].sum()), 10)

  def test_padding_clips_are_never_candidates(self):
    rng = np.random.default_rng(5)
    b, real = 16, 10
    labels = np.ones((b, 25), np.float32)
    a_prob = rng.uniform(0.01, 0.99, (b, 25)).astype(np.float32)
    v_prob = rng.uniform(0.01, 0.99, (b, 25)).astype(np.float32)
    ratios = np.full(25, 0.5)
    got = denoising.denoised_targets(
        a_prob,
        v_prob,
        labels,
        jnp.arange(b) < real,
        {m: jnp.asarray(denoising.count_table(ratios, b)) for m in denoising.MODALITIES},
        {m: jnp.asarray(ratios, jnp.float32) for m in denoising.MODALITIES},
        jnp.float32(1.0),
        clamp_eps=1e-7,
        audio_smoothing=1.0,
        visual_smoothing=0.9,
    )
    pa, pv = official_selection(
        torch.from_numpy(a_prob[:real]),
        torch.from_numpy(v_prob[:real]),
        torch.from_numpy(labels[:real].copy()),
        torch.from_numpy((0.9 * labels[:real] + 0.05).astype(np.float32)),
        torch.from_numpy(ratios),
        torch.from_numpy(ratios),
    )
    np.testing.assert_allclose(np.asarray(got["audio_target"])[:real], pa.numpy(), atol=1e-7)
    np.testing.assert_allclose(np.asarray(got["visual_target"])[:real], pv.numpy(), atol=1e-7)
    self.assertFalse(np.asarray(got["audio_drop"])[real:].any())


class ScheduleTest(parameterized.TestCase):

  @parameterized.parameters((0.9, 5, 3, 23), (2.5, 7, 4, 17))
  def test_official_warm_up_over_epoch_and_batch(self, warm_up, iters, epochs, batch):
    rng = np.random.default_rng(0)
    init = rng.uniform(0, 1, 25)
    expected = official_ratio_schedule(init, epochs, iters, warm_up)
    factor = jax.jit(lambda s: denoising.ratio_factor(s, iters, "official", warm_up))
    table = jnp.asarray(denoising.count_table(init, batch))
    for step in range(epochs * iters):
      f = factor(step)
      np.testing.assert_allclose(init * float(f), expected[step], rtol=1e-6, atol=1e-12)
      for n in range(batch + 1):  # the counts int(r x n) the official code takes
        official = np.trunc(expected[step] * n).astype(np.int32)
        got = np.asarray(
            denoising.noisy_counts(
                table, jnp.asarray(init, jnp.float32), jnp.full(25, n, jnp.int32), f
            )
        )
        if warm_up < 1:  # factor 0 or 1 at every step: exact
          np.testing.assert_array_equal(got, official)
        else:
          self.assertLessEqual(np.abs(got - official).max(), 1)
    if warm_up < 1:  # the released behaviour: nothing in epoch 1, the full ratios after
      np.testing.assert_array_equal(expected[:iters], 0.0)
      np.testing.assert_array_equal(expected[iters:], np.tile(init, (len(expected) - iters, 1)))

  def test_linear_ramp_and_none(self):
    iters, warm_up = 10, 1.5
    for step in range(40):
      linear = float(denoising.ratio_factor(step, iters, "linear", warm_up))
      self.assertAlmostEqual(linear, min(1.0, step / (warm_up * iters)), places=6)
      self.assertEqual(float(denoising.ratio_factor(step, iters, "none", warm_up)), 1.0)
    with self.assertRaisesRegex(InputError, "denoise_warm_up"):
      denoising.ratio_factor(0, iters, "cosine", warm_up)


class NoiseRatioTest(absltest.TestCase):

  def test_calculate_noise_ratio_matches_the_official_function(self):
    rng = np.random.default_rng(3)
    n = 300
    labels = _labels(rng, n, rate=0.15)
    a_prob = rng.uniform(0.001, 0.999, (n, 25)).astype(np.float32) ** 2
    v_prob = rng.uniform(0.001, 0.999, (n, 25)).astype(np.float32) ** 3
    order = rng.permutation(n)
    batches = [order[s : s + 128] for s in range(0, n, 128)]  # 128, 128, 44: the last one smaller
    want_a, want_v = official_noise_ratio(a_prob, v_prob, labels, batches)
    got = denoising.calculate_noise_ratio(a_prob, v_prob, labels, order=order, batch_size=128)
    np.testing.assert_allclose(got["audio"], want_a, rtol=1e-12)
    np.testing.assert_allclose(got["visual"], want_v, rtol=1e-12)
    self.assertTrue(0 < got["audio"].mean() < 1 and 0 < got["visual"].mean() < 1)

  def test_quality_against_truth(self):
    labels = np.array([[1, 1, 0], [1, 0, 1]], np.float32)
    noisy = np.array([[True, False, False], [True, False, True]])
    present = np.array([[False, True, False], [True, True, False]])
    q = denoising.ratio_quality(noisy, present, labels)
    self.assertEqual(
        (q["flagged"], q["correct"], q["wrong"], q["truly_noisy"], q["missed"]), (3, 2, 1, 2, 0)
    )


class RatioFileTest(absltest.TestCase):

  def test_reads_the_released_file(self):
    if not os.path.isfile(SHARED_RATIOS):
      self.skipTest(f"{SHARED_RATIOS} (JoMoLD's ratios as released with CMPAE) is not here")
    ratios = denoising.load_noise_ratios(SHARED_RATIOS)
    raw = np.load(SHARED_RATIOS)
    for m in ("audio", "visual"):
      np.testing.assert_array_equal(ratios[m], raw[m])
      self.assertEqual(ratios[m].shape, (25,))

  def test_round_trip_and_bad_files(self):
    folder = self.create_tempdir().full_path
    path = os.path.join(folder, "noise_ratios.npz")
    audio, visual = np.linspace(0, 1, 25), np.linspace(1, 0, 25)
    denoising.write_noise_ratios(path, audio, visual)
    got = denoising.load_noise_ratios(path)
    np.testing.assert_array_equal(got["audio"], audio)
    np.testing.assert_array_equal(got["visual"], visual)
    bad = {
        "short.npz": dict(audio=np.zeros(24), visual=np.zeros(25)),
        "high.npz": dict(audio=np.zeros(25), visual=np.full(25, 1.5)),
        "nan.npz": dict(audio=np.full(25, np.nan), visual=np.zeros(25)),
        "keys.npz": dict(a=np.zeros(25), visual=np.zeros(25)),
    }
    for name, arrays in bad.items():
      p = os.path.join(folder, name)
      np.savez(p, **arrays)
      with self.assertRaises(InputError) as caught:
        denoising.load_noise_ratios(p)
      self.assertIn(p, str(caught.exception))
      self.assertNotIn("\n", str(caught.exception))
    other = os.path.join(folder, "other.pkl")
    with open(other, "wb") as f:
      f.write(b"\x80\x04not an npz")
    for p in (other, os.path.join(folder, "absent.npz")):
      with self.assertRaisesRegex(InputError, "noise ratios") as caught:
        denoising.load_noise_ratios(p)
      self.assertIn(p, str(caught.exception))


class LossAndModelTest(absltest.TestCase):

  def test_nce_matches_the_official_loss(self):
    rng = np.random.default_rng(1)
    b, t, d = 4, 10, 16
    audio = rng.normal(size=(b, t, d)).astype(np.float32)
    visual = rng.normal(size=(b, t, d)).astype(np.float32)
    xa = torch.nn.functional.normalize(torch.from_numpy(audio), p=2, dim=-1)
    xv = torch.nn.functional.normalize(torch.from_numpy(visual), p=2, dim=-1)
    sims = (xa.bmm(xv.permute(0, 2, 1)) / 0.2).reshape(-1, 10)
    target = torch.arange(10).repeat(b)
    want = LabelSmoothingNCELoss(classes=10, smoothing=0.1)(sims, target).item()
    got = losses.label_smoothed_nce(audio, visual, 0.2, 0.1).mean()
    self.assertAlmostEqual(float(got), want, places=5)

  def test_jomold_loss_weights_and_denoised_targets(self):
    rng = np.random.default_rng(2)
    b, t, c = 3, 10, 25
    label = _labels(rng, b)
    outputs = {
        k: jnp.asarray(rng.uniform(0.05, 0.95, (b, c)), jnp.float32)
        for k in ("video_prob", "audio_prob", "visual_prob")
    }
    outputs["audio_embedding"] = jnp.asarray(rng.normal(size=(b, t, 8)), jnp.float32)
    outputs["visual_embedding"] = jnp.asarray(rng.normal(size=(b, t, 8)), jnp.float32)
    config = type("C", (), {})()
    for k, v in dict(
        clamp_eps=1e-7,
        audio_smoothing=1.0,
        visual_smoothing=0.9,
        audio_weight=2.0,
        visual_weight=1.0,
        video_weight=1.0,
        nce_weight=1.0,
        nce_temperature=0.2,
        nce_smoothing=0.1,
    ).items():
      setattr(config, k, v)
    visual_target = (0.9 * label + 0.05) * (rng.random((b, c)) > 0.3)
    batch = {"label": label, "visual_target": visual_target}
    loss, terms = losses.jomold_loss(config, outputs, batch)
    bce = lambda p, y: float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))
    p = {k: np.asarray(v, np.float64) for k, v in outputs.items()}
    self.assertAlmostEqual(float(terms["audio"]), bce(p["audio_prob"], label), places=5)
    self.assertAlmostEqual(float(terms["visual"]), bce(p["visual_prob"], visual_target), places=5)
    self.assertAlmostEqual(float(terms["video"]), bce(p["video_prob"], label), places=5)
    self.assertAlmostEqual(
        float(loss),
        float(2 * terms["audio"] + terms["visual"] + terms["video"] + terms["nce"]),
        places=5,
    )

  def test_han_without_cross_attention_is_han_with_a_silent_one(self):
    rng = np.random.default_rng(4)
    audio = jnp.asarray(rng.normal(size=(2, 10, 16)), jnp.float32)
    visual = jnp.asarray(rng.normal(size=(2, 10, 16)), jnp.float32)
    with_ca = han.HANEncoder(num_layers=2, stacking="stacked")
    params = with_ca.init(jax.random.key(0), audio, visual, train=False)["params"]
    flat = flax.traverse_util.flatten_dict(params)
    silent = flax.traverse_util.unflatten_dict(
        {k: (jnp.zeros_like(v) if "cm_attn" in k and "out" in k else v) for k, v in flat.items()}
    )
    without = han.HANEncoder(num_layers=2, stacking="stacked", cross_attention=False)
    want = with_ca.apply({"params": silent}, audio, visual, train=False)
    got = without.apply({"params": params}, audio, visual, train=False)
    changed = with_ca.apply({"params": params}, audio, visual, train=False)
    for g, w, ch in zip(got, want, changed):
      np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-5)
      self.assertGreater(float(jnp.abs(ch - w).max()), 1e-3)

  def test_mmil_modality_gate_and_visual_dropout(self):
    rng = np.random.default_rng(6)
    audio = jnp.asarray(rng.normal(size=(2, 10, 16)), jnp.float32)
    visual = jnp.asarray(rng.normal(size=(2, 10, 16)), jnp.float32)
    plain = mmil.MMILDecoder(num_classes=25)
    params = plain.init(jax.random.key(0), audio, visual, train=False)["params"]
    jomold = mmil.MMILDecoder(num_classes=25, visual_dropout=0.5, filter="modality")
    out = jomold.apply({"params": params}, audio, visual, train=False)
    ref = plain.apply({"params": params}, audio, visual, train=False)
    np.testing.assert_allclose(np.asarray(out["video_prob"]), np.asarray(ref["video_prob"]))
    np.testing.assert_array_equal(
        np.asarray(out["audio_filter_prob"]), np.asarray(out["audio_prob"])
    )
    np.testing.assert_array_equal(
        np.asarray(out["visual_filter_prob"]), np.asarray(out["visual_prob"])
    )
    np.testing.assert_array_equal(
        np.asarray(ref["audio_filter_prob"]), np.asarray(ref["video_prob"])
    )
    dropped = jomold.apply(
        {"params": params}, audio, visual, train=True, rngs={"dropout": jax.random.key(1)}
    )
    np.testing.assert_allclose(
        np.asarray(dropped["audio_prob"]), np.asarray(ref["audio_prob"]), atol=1e-6
    )
    self.assertGreater(float(jnp.abs(dropped["visual_prob"] - ref["visual_prob"]).max()), 1e-4)
    with self.assertRaisesRegex(InputError, "config.model.mmil.filter"):
      mmil.MMILDecoder(num_classes=25, filter="both").init(
          jax.random.key(0), audio, visual, train=False
      )


class StagesTest(absltest.TestCase):

  def test_estimator_then_noise_ratios_then_denoised_step(self):
    """Stage 1 (:estimator_tiny), stage 2 (the launcher, SYNTHETIC), stage 3 (:tiny) on its file."""
    sys.path.insert(0, ROOT)
    from avvp_jax import train  # pylint: disable=g-import-not-at-top
    from configs import jomold  # pylint: disable=g-import-not-at-top

    folder = self.create_tempdir().full_path
    estimator = os.path.join(folder, "estimator")
    train.train_and_evaluate(jomold.get_config("estimator_tiny"), estimator)
    out = os.path.join(folder, "ratios", "noise_ratios.npz")
    run = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "launch", "make_noise_ratios.py"),
            f"--checkpoint={estimator}",
            f"--out={out}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    self.assertEqual(run.returncode, 0, run.stderr[-2000:])
    self.assertIn("SYNTHETIC visual:", run.stdout)
    ratios = denoising.load_noise_ratios(out)
    with open(out[: -len(".npz")] + ".json") as f:
      report = json.load(f)
    self.assertTrue(report["synthetic"])
    for m in ("audio", "visual"):
      q = report["against_hidden_dense_labels"][m]
      self.assertEqual(q["correct"] + q["wrong"], report["flagged"][m])
      self.assertAlmostEqual(float(ratios[m].mean()), report["mean_ratio"][m], places=5)
    config = jomold.get_config("tiny")
    config.loss.noise_ratios = out
    config.loss.denoise_warm_up = "none"  # denoise from the first step
    stage3 = os.path.join(folder, "stage3")
    train.train_and_evaluate(config, stage3)
    with open(os.path.join(stage3, "metrics.jsonl")) as f:
      lines = [json.loads(line) for line in f if "train/denoise/visual_dropped" in line]
    self.assertNotEmpty(lines)
    self.assertGreater(sum(line["train/denoise/visual_dropped"] for line in lines), 0)
    bad = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "launch", "make_noise_ratios.py"),
            f"--checkpoint={estimator}",
            f"--out={folder}/x.txt",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    self.assertEqual(bad.returncode, 2)
    self.assertIn("must end in .npz", bad.stderr)


if __name__ == "__main__":
  absltest.main()
