"""UWAV's threshold fit, soft targets and student loss against PyTorch transcriptions of the official code.

The transcriptions follow the official UWAV code (CVPR 2025): `utils/eval_utils.py:get_best_f_threshold` and
`calculate_classwise_thresholds` (the teacher), the student HAN's `calculate_segment_loss`,
`calculate_mixup_loss` and `mixup_data`, and `dataloader.py:LLP_dataset.get_class_freq`. torch is the `parity`
extra, required here.
"""

import pathlib
import tempfile

from absl.testing import absltest
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import torch
from torch.nn import functional as F

from avvp_jax.errors import InputError
from avvp_jax.tasks.llp import batch_keys
from avvp_jax.tasks.llp import evaluator as evaluator_lib
from avvp_jax.tasks.llp import metrics
from avvp_jax.tasks.llp import task as llp_task
from avvp_jax.tasks.llp import losses
from avvp_jax.tasks.llp import uwav

jax.config.update("jax_numpy_rank_promotion", "raise")


# --- transcriptions of the official code (torch) ---------------------------------------------------------


def official_best_f_threshold(labels, preds):
  sort_idx = torch.argsort(preds, stable=True)
  labels = labels[sort_idx]
  preds = preds[sort_idx]
  num_tps = torch.cumsum(labels.flip(0), dim=0).flip(0)
  total_true = num_tps[0].item()
  total_pred = len(preds) - torch.arange(len(preds), dtype=torch.float32)
  p = num_tps / total_pred
  r = num_tps / total_true
  f = 2 * p * r / torch.clamp(p + r, min=1e-12)
  thresholds = (preds + torch.cat((torch.tensor([-float("inf")]), preds[:-1]))) / 2
  best_idx = torch.argmax(f).item()
  return thresholds[best_idx].item(), f[best_idx].item()


def official_class_thresholds(logits_NxTxC, gt_NxTxC, weak_NxC):
  """calculate_classwise_thresholds: per video (C, T) logits masked by the weak labels, concatenated."""
  all_logits, all_gt = [], []
  for z, gt, weak in zip(logits_NxTxC, gt_NxTxC, weak_NxC):
    z = torch.tensor(z).permute(1, 0)
    w = torch.tensor(weak, dtype=torch.float32)[:, None].repeat(1, z.shape[1])
    all_logits.append(torch.where(w == 1, z, float("-inf")))
    all_gt.append(torch.tensor(gt, dtype=torch.float32).permute(1, 0))
  all_logits, all_gt = torch.cat(all_logits, dim=1), torch.cat(all_gt, dim=1)
  return np.array(
      [official_best_f_threshold(all_gt[c], all_logits[c])[0] for c in range(all_logits.shape[0])],
      np.float32,
  )


def official_soft_labels(logits, weak_labels, thresholds):
  T = logits.shape[1]
  logit_min = logits.amin(dim=(0, 1))
  thresholds = torch.where(thresholds == float("-inf"), logit_min - 1, thresholds)
  weak = weak_labels[:, None, :].repeat(1, T, 1)
  return torch.where(weak == 1, torch.sigmoid((logits - thresholds) / 2), weak)


def official_segment_loss(frame_logits, weak_labels, logits, thresholds, class_freq, pos_weight):
  B, T, C = frame_logits.shape
  frame_labels = official_soft_labels(logits, weak_labels, thresholds)
  loss = F.binary_cross_entropy_with_logits(frame_logits, frame_labels, reduction="none")
  weak = weak_labels[:, None, :].repeat(1, T, 1)
  pos_class_freq = class_freq.sum()
  neg_class_freq = C - pos_class_freq
  weight = torch.where(weak == 1, neg_class_freq * pos_weight, pos_class_freq)
  return (loss * weight).mean()


def official_mixup_loss(seg_feats, weak_labels, logits, thresholds, classifier, lam, index):
  B, T, D = seg_feats.shape
  seg_labels = official_soft_labels(logits, weak_labels, thresholds).reshape(B * T, -1)
  x = seg_feats.reshape(B * T, D)
  mixed = lam * x + (1 - lam) * x[index, :]
  out = classifier(mixed)
  return lam * F.binary_cross_entropy_with_logits(out, seg_labels) + (
      1 - lam
  ) * F.binary_cross_entropy_with_logits(out, seg_labels[index])


def official_class_freq(hard_NxTxC):
  return hard_NxTxC.sum(axis=(0, 1)) / (hard_NxTxC.shape[0] * hard_NxTxC.shape[1])


# --- fixtures --------------------------------------------------------------------------------------------

B, T, C, D = 4, 10, 25, 12


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  weak = (rng.random((B, C)) < 0.2).astype(np.float32)
  weak[:, 0] = 1.0
  teacher = {m: rng.normal(0.0, 3.0, (B, T, C)).astype(np.float32) for m in uwav.MODALITIES}
  thresholds = {m: rng.normal(0.0, 1.0, C).astype(np.float32) for m in uwav.MODALITIES}
  thresholds["audio"][[1, 4]] = -np.inf
  thresholds["visual"][0] = -np.inf
  hard = {
      m: (uwav.hard_labels(teacher[m], weak, thresholds[m])).astype(np.float32)
      for m in uwav.MODALITIES
  }
  frequency = {m: 0.3 + 0.1 * i for i, m in enumerate(uwav.MODALITIES)}
  batch = {batch_keys.LABEL: weak, batch_keys.MASK: np.ones(B, np.float32)}
  for m in uwav.MODALITIES:
    logit_key, threshold_key, frequency_key = uwav.BATCH_KEYS[m]
    batch[logit_key] = teacher[m]
    batch[threshold_key] = np.broadcast_to(thresholds[m], (B, C)).copy()
    batch[frequency_key] = np.full(B, frequency[m], np.float32)
  batch[batch_keys.AUDIO_PSEUDO_LABEL] = hard["audio"]
  batch[batch_keys.VISUAL_PSEUDO_LABEL] = hard["visual"]
  return batch, teacher, thresholds, frequency


def _loss_config(mixup_weight=0.0):
  config = ml_collections.ConfigDict(
      dict(
          name="uwav",
          clamp_eps=1e-7,
          segment_weight=1.0,
          uwav_soft_targets=True,
          uwav_soft_mixup=True,
          uwav_reweight="inverse_freq",
          uwav_positive_weight=0.5,
          uwav_negative_weight=1.0,
          uwav_mixup_weight=mixup_weight,
          uwav_mixup_alpha=1.7,
      )
  )
  return config


class ThresholdFitTest(absltest.TestCase):

  def test_hand_worked(self):
    # sorted scores -inf, -inf, 1, 2, 3 with labels 0, 0, 1, 0, 1: F1 at i = 2 (predict {1, 2, 3}) is
    # 2 (2/3)(1) / (5/3) = 0.8, the best; threshold (1 + -inf) / 2 = -inf.
    threshold, f1 = uwav.best_f_threshold([0, 1, 0, 0, 1], [-np.inf, 1.0, -np.inf, 2.0, 3.0])
    self.assertEqual(threshold, -np.inf)
    self.assertAlmostEqual(f1, 0.8, places=6)
    # labels 0, 0, 1, 1 on 1, 2, 3, 4: best at i = 2, threshold 2.5, F1 1.
    self.assertEqual(uwav.best_f_threshold([0, 0, 1, 1], [1.0, 2.0, 3.0, 4.0]), (2.5, 1.0))
    # no positive: NaN F1 everywhere, the first index: -inf (as torch.argmax's NaN rule)
    threshold, f1 = uwav.best_f_threshold([0, 0, 0], [0.5, -1.0, 2.0])
    self.assertEqual(threshold, -np.inf)
    self.assertTrue(np.isnan(f1))

  def test_matches_official_on_fixed_inputs(self):
    rng = np.random.default_rng(3)
    for trial in range(20):
      n = int(rng.integers(2, 60))
      labels = (rng.random(n) < rng.random()).astype(np.float32)
      scores = rng.normal(0, 2, n).astype(np.float32)
      scores[rng.random(n) < 0.3] = -np.inf
      ours = uwav.best_f_threshold(labels, scores)
      theirs = official_best_f_threshold(torch.tensor(labels), torch.tensor(scores))
      np.testing.assert_equal(ours[0], np.float32(theirs[0]), err_msg=f"trial {trial}")
      np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-6, err_msg=f"trial {trial}")

  def test_fit_thresholds_per_class_matches_official(self):
    rng = np.random.default_rng(5)
    n = 12
    weak = (rng.random((n, C)) < 0.25).astype(np.float32)
    gt = ((rng.random((n, T, C)) < 0.5) & (weak[:, None, :] > 0)).astype(np.float32)
    logits = (rng.normal(0, 2, (n, T, C)) + 2.0 * gt).astype(np.float32)
    ours = uwav.fit_thresholds(logits, gt, weak)
    theirs = official_class_thresholds(logits, gt, weak)
    np.testing.assert_array_equal(ours, theirs)
    hard = uwav.hard_labels(logits, weak, ours)
    self.assertFalse((hard & (weak[:, None, :] == 0)).any())

  def test_bad_shapes_are_one_line(self):
    with self.assertRaisesRegex(InputError, "fit_thresholds got logits"):
      uwav.fit_thresholds(np.zeros((2, T, C)), np.zeros((2, T, C)), np.zeros((3, C)))
    with self.assertRaisesRegex(InputError, "best_f_threshold got 2 labels and 3 scores"):
      uwav.best_f_threshold([0, 1], [0.0, 1.0, 2.0])

  def test_positive_frequency_is_the_official_sum(self):
    hard = (np.random.default_rng(1).random((7, T, C)) < 0.1).astype(np.float32)
    self.assertAlmostEqual(
        uwav.positive_frequency(hard), float(official_class_freq(hard).sum()), places=6
    )


class StudentLossTest(absltest.TestCase):

  def test_segment_terms_match_official_without_mixup(self):
    batch, teacher, thresholds, frequency = _batch()
    rng = np.random.default_rng(9)
    video_prob = rng.uniform(0.05, 0.95, (B, C)).astype(np.float32)
    student = {m: rng.normal(0, 1.5, (B, T, C)).astype(np.float32) for m in uwav.MODALITIES}
    outputs = {
        "video_prob": video_prob,
        "segment_audio_logits": student["audio"],
        "segment_visual_logits": student["visual"],
    }
    loss, terms = jax.jit(lambda o, b: losses.compute_loss(_loss_config(0.0), o, b))(outputs, batch)
    weak = torch.tensor(batch[batch_keys.LABEL])
    expected = {
        "video": F.binary_cross_entropy(torch.tensor(video_prob).clamp(1e-7, 1 - 1e-7), weak).item()
    }
    for m in uwav.MODALITIES:
      # class_freq with the given sum (only the sum enters): one class carries it
      class_freq = torch.zeros(C, dtype=torch.float64)
      class_freq[0] = frequency[m]
      expected[f"{m}_segment"] = official_segment_loss(
          torch.tensor(student[m]),
          weak,
          torch.tensor(teacher[m]),
          torch.tensor(thresholds[m]),
          class_freq,
          0.5,
      ).item()
    for name, value in expected.items():
      np.testing.assert_allclose(float(terms[name]), value, rtol=2e-5, err_msg=name)
    np.testing.assert_allclose(float(loss), sum(expected.values()), rtol=2e-5)
    self.assertEqual(float(terms["audio_mixup"]), 0.0)

  def test_soft_targets_official_rule(self):
    batch, teacher, thresholds, _ = _batch(1)
    weak = batch[batch_keys.LABEL]
    ours = uwav.soft_targets(teacher["audio"], thresholds["audio"], weak)
    theirs = official_soft_labels(
        torch.tensor(teacher["audio"]), torch.tensor(weak), torch.tensor(thresholds["audio"])
    )
    np.testing.assert_allclose(np.asarray(ours), theirs.numpy(), rtol=1e-6, atol=1e-7)
    # padding rows are left out of the -inf replacement's minimum
    padded = np.concatenate([teacher["audio"], np.full((1, T, C), -100.0, np.float32)])
    with_pad = uwav.soft_targets(
        padded,
        thresholds["audio"],
        np.concatenate([weak, np.ones((1, C), np.float32)]),
        np.array([1, 1, 1, 1, 0]),
    )
    np.testing.assert_allclose(np.asarray(with_pad)[:B], np.asarray(ours), rtol=1e-6)

  def test_mixup_with_fixed_lambda_matches_official_feature_mixup(self):
    batch, teacher, thresholds, _ = _batch(2)
    torch.manual_seed(0)
    classifier = torch.nn.Linear(D, C).double()
    features = {m: torch.randn(B, T, D, dtype=torch.float64) for m in uwav.MODALITIES}
    lam = 0.37
    index = {m: torch.randperm(B * T) for m in uwav.MODALITIES}
    weak = torch.tensor(batch[batch_keys.LABEL], dtype=torch.float64)
    with torch.no_grad():
      student = {m: classifier(features[m]).float().numpy() for m in uwav.MODALITIES}
      expected = {
          m: official_mixup_loss(
              features[m],
              weak,
              torch.tensor(teacher[m], dtype=torch.float64),
              torch.tensor(thresholds[m], dtype=torch.float64),
              classifier,
              lam,
              index[m],
          ).item()
          for m in uwav.MODALITIES
      }
    for m in uwav.MODALITIES:
      lam_key, perm_key = uwav.MIXUP_KEYS[m]
      batch[lam_key] = np.float32(lam)
      batch[perm_key] = index[m].numpy().astype(np.int32)
    outputs = {
        "video_prob": np.full((B, C), 0.5, np.float32),
        "segment_audio_logits": student["audio"],
        "segment_visual_logits": student["visual"],
    }
    loss0, terms0 = losses.compute_loss(_loss_config(0.0), outputs, batch)
    loss, terms = jax.jit(lambda o, b: losses.compute_loss(_loss_config(2.0), o, b))(outputs, batch)
    for m in uwav.MODALITIES:
      np.testing.assert_allclose(float(terms[f"{m}_mixup"]), expected[m], rtol=2e-5, err_msg=m)
    np.testing.assert_allclose(float(loss), float(loss0) + 2.0 * sum(expected.values()), rtol=2e-5)
    del terms0

  def test_missing_teacher_entries_are_one_line(self):
    batch, *_ = _batch()
    del batch[batch_keys.VISUAL_TEACHER_LOGITS]
    outputs = {
        "video_prob": np.full((B, C), 0.5, np.float32),
        "segment_audio_logits": np.zeros((B, T, C), np.float32),
        "segment_visual_logits": np.zeros((B, T, C), np.float32),
    }
    with self.assertRaisesRegex(
        InputError, "no visual_teacher_logits.*make_pseudo_labels.py --uwav"
    ):
      losses.compute_loss(_loss_config(0.0), outputs, batch)


class MixupDrawTest(absltest.TestCase):

  def test_draws_are_pure_and_keep_padding_apart(self):
    mask = jnp.array([1.0, 1.0, 1.0, 0.0])
    draw = jax.jit(lambda r: uwav.draw_mixup(r, mask, T, 1.7))
    one, again = draw(jax.random.key(3)), draw(jax.random.key(3))
    other = draw(jax.random.key(4))
    for m in uwav.MODALITIES:
      lam_key, perm_key = uwav.MIXUP_KEYS[m]
      perm = np.asarray(one[perm_key])
      np.testing.assert_array_equal(perm, np.asarray(again[perm_key]))
      self.assertEqual(float(one[lam_key]), float(again[lam_key]))
      self.assertTrue(0.0 < float(one[lam_key]) < 1.0)
      self.assertEqual(sorted(perm.tolist()), list(range(4 * T)))
      self.assertTrue((perm[: 3 * T] < 3 * T).all())  # real rows mix with real rows
      np.testing.assert_array_equal(perm[3 * T :], np.arange(3 * T, 4 * T))
      self.assertFalse(np.array_equal(perm, np.asarray(other[perm_key])))
    self.assertFalse(
        np.array_equal(
            np.asarray(one[uwav.MIXUP_KEYS["audio"][1]]),
            np.asarray(one[uwav.MIXUP_KEYS["visual"][1]]),
        )
    )

  def test_lambda_follows_beta(self):
    lams = jax.vmap(lambda k: uwav.draw_mixup(k, jnp.ones(2), T, 1.7)["uwav_mixup_lambda_audio"])(
        jax.random.split(jax.random.key(0), 4000)
    )
    # Beta(1.7, 1.7): mean 0.5, variance 1 / (4 (2 alpha + 1)) = 0.0581
    self.assertAlmostEqual(float(jnp.mean(lams)), 0.5, delta=0.02)
    self.assertAlmostEqual(float(jnp.var(lams)), 1 / (4 * 4.4), delta=0.006)


class FilesTest(absltest.TestCase):

  def _folder(self, root, ids, with_logits=True):
    root = pathlib.Path(root)
    if with_logits:
      files = uwav.array_files(
          ids,
          {m: np.zeros((len(ids), T, C), np.float32) for m in uwav.MODALITIES},
          {m: np.full(C, -np.inf, np.float32) for m in uwav.MODALITIES},
      )
      for name, array in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        np.save(root / name, array)
    return root

  def test_round_trip_and_bad_input(self):
    ids = ["aaaaaaaaaaa", "bbbbbbbbbbb"]
    hard = {m: np.zeros((2, T, C), np.float32) for m in uwav.MODALITIES}
    with tempfile.TemporaryDirectory() as tmp:
      root = self._folder(tmp, ids)
      teacher = uwav.load_teacher(root, ids, hard)
      self.assertTrue(np.isneginf(teacher.thresholds["audio"]).all())
      rows = teacher.batch(np.array([1, -1]))
      self.assertEqual(rows[batch_keys.AUDIO_TEACHER_LOGITS].shape, (2, T, C))
      self.assertEqual(rows[batch_keys.AUDIO_TEACHER_THRESHOLD][1].tolist(), [0.0] * C)
      (root / uwav.LOGIT_DIRS["visual"] / "bbbbbbbbbbb.npy").unlink()
      with self.assertRaisesRegex(InputError, r"visual logit file .*bbbbbbbbbbb\.npy' is missing"):
        uwav.load_teacher(root, ids, hard)
    with tempfile.TemporaryDirectory() as tmp:
      root = self._folder(tmp, ids, with_logits=False)
      with self.assertRaisesRegex(InputError, r"UWAV/a_segmentwise_logits' is missing.*--uwav"):
        uwav.load_teacher(root, ids, hard)


class EvaluationSwitchesTest(absltest.TestCase):

  def _outputs(self, seed=0, n=6):
    rng = np.random.default_rng(seed)
    video = rng.uniform(0, 1, (n, C)).astype(np.float32)
    modality = {m: rng.uniform(0, 1, (n, C)).astype(np.float32) for m in uwav.MODALITIES}
    outputs = {
        f"segment_{m}_prob": rng.uniform(0, 1, (n, T, C)).astype(np.float32)
        for m in uwav.MODALITIES
    }
    outputs.update(audio_filter_prob=video, visual_filter_prob=video)
    batch = {
        batch_keys.AUDIO_LABEL: (rng.random((n, T, C)) < 0.1).astype(np.float32),
        batch_keys.VISUAL_LABEL: (rng.random((n, T, C)) < 0.1).astype(np.float32),
        batch_keys.MASK: np.ones(n, np.float32),
    }
    return outputs, batch, modality

  def test_per_class_thresholds_against_a_numpy_rule(self):
    outputs, batch, _ = self._outputs()
    thresholds = {
        "audio": np.linspace(0.1, 0.9, C).astype(np.float32),
        "visual": np.linspace(0.9, 0.1, C).astype(np.float32),
    }
    evaluator = evaluator_lib.ParsingEvaluator(llp_task.META, thresholds=thresholds)
    scores = evaluator.scores(
        jax.tree.map(lambda x: np.asarray(x, np.float64), evaluator.batch_sums(outputs, batch))
    )
    pred = {
        m: (
            (outputs[f"segment_{m}_prob"] >= thresholds[m])
            & (outputs[f"{m}_filter_prob"] >= 0.5)[:, None, :]
        ).astype(np.float32)
        for m in uwav.MODALITIES
    }
    expected = metrics.parsing_scores(
        pred["audio"], pred["visual"], batch[batch_keys.AUDIO_LABEL], batch[batch_keys.VISUAL_LABEL]
    )
    for key in metrics.KEYS:
      if key.endswith("/type"):
        continue
      self.assertAlmostEqual(scores[key], expected[key], places=4, msg=key)
    # 0.5 everywhere is the official evaluation
    half = {m: np.full(C, 0.5, np.float32) for m in uwav.MODALITIES}
    official = evaluator_lib.ParsingEvaluator(llp_task.META)
    same = evaluator_lib.ParsingEvaluator(llp_task.META, thresholds=half)
    a = jax.tree.map(np.asarray, official.batch_sums(outputs, batch))
    b = jax.tree.map(np.asarray, same.batch_sums(outputs, batch))
    jax.tree.map(np.testing.assert_array_equal, a, b)
    self.assertNotEqual(
        scores["segment/audio"], official.scores(jax.tree.map(np.float64, a))["segment/audio"]
    )

  def test_threshold_files_and_settings(self):
    with tempfile.TemporaryDirectory() as tmp:
      folder = pathlib.Path(tmp, "UWAV")
      folder.mkdir()
      logits = np.linspace(-3, 3, C).astype(np.float32)
      logits[2] = -np.inf
      np.save(folder / "a_classwise_threhsolds.npy", logits)
      np.save(folder / "v_classwise_threhsolds.npy", np.zeros(C, np.float32))
      loaded = evaluator_lib.load_thresholds(str(folder), C)
      np.testing.assert_allclose(
          loaded["audio"],
          np.where(np.isneginf(logits), 0.0, 1 / (1 + np.exp(-logits.astype(np.float64)))),
          rtol=1e-6,
      )
      np.testing.assert_array_equal(loaded["visual"], np.full(C, 0.5, np.float32))
      np.savez(pathlib.Path(tmp, "probs.npz"), audio=np.full(C, 0.3), visual=np.full(C, 1.3))
      with self.assertRaisesRegex(
          InputError, r"probs.npz' 'visual' holds .* probabilities in \[0, 1\]"
      ):
        evaluator_lib.load_thresholds(str(pathlib.Path(tmp, "probs.npz")), C)
      (folder / "v_classwise_threhsolds.npy").unlink()
      with self.assertRaisesRegex(InputError, r"v_classwise_threhsolds.npy' is missing"):
        evaluator_lib.load_thresholds(str(folder), C)
      with self.assertRaises(InputError) as caught:  # one message, not wrapped in another
        evaluator_lib.load_thresholds(str(pathlib.Path(tmp, "absent.npz")), C)
      self.assertEqual(
          str(caught.exception),
          f"config.eval_thresholds {str(pathlib.Path(tmp, 'absent.npz'))!r} is neither a folder of "
          "UWAV's threshold files nor a .npz file.",
      )
      from configs import uwav as uwav_config  # pylint: disable=g-import-not-at-top

      config = uwav_config.get_config("tiny")
      config.model.mmil.filter = "modality"
      config.eval_thresholds = str(pathlib.Path(tmp, "probs.npz"))
      np.savez(pathlib.Path(tmp, "probs.npz"), audio=np.full(C, 0.3), visual=np.full(C, 0.7))
      made = llp_task.TASK.make_evaluator("parsing", llp_task.META, config)
      np.testing.assert_array_equal(made.thresholds["visual"], np.full(C, 0.7, np.float32))
      self.assertEqual(
          made.settings["segment_gate"], "each modality's video prediction (MA's, JoMoLD's)"
      )
      self.assertEqual(made.settings["selection"], "best val segment/type (>)")
      self.assertIn("probs.npz", made.settings["segment_thresholds"])
      self.assertEqual(llp_task.TASK.make_evaluator("parsing", llp_task.META).settings, {})


if __name__ == "__main__":
  absltest.main()
