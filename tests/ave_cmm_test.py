"""AVE's cross-modality localization (config.task "ave_cmm"): the matcher and its loss against a PyTorch
transcription of AVE-ECCV18's Keras `scmm_net` and `contrastive_loss` (cmm_train.py), the A2V / V2A score against
a numpy transcription of cmm_test.py's loop, the match split's order files, and the task's checks.
"""

import hashlib
import pathlib

from absl.testing import absltest
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import torch

from avvp_jax.errors import InputError
from avvp_jax.models import cmm
from avvp_jax.tasks.ave import annotations
from avvp_jax.tasks.ave import cmm_task
from avvp_jax.tasks.ave import cross_modal
from avvp_jax.tasks.ave.losses import cmm as cmm_loss

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "ave"
if not SHARED.is_dir():
  SHARED = pathlib.Path("/work/shared/ave")


# --- oracles: transcriptions of the official Keras code -------------------------------------------------


class TorchScmmNet(torch.nn.Module):
  """cmm_train.py's `scmm_net` in PyTorch: Dense(128), LeakyReLU(0.3), Dense(64) per modality, then
  `euclidean_distance` = sqrt(max(sum((x - y)^2, axis=1, keepdims=True), K.epsilon())); inputs [N, 512], [N, 128],
  output [N, 1]."""

  def __init__(self):
    super().__init__()
    self.video_1, self.video_2 = torch.nn.Linear(512, 128), torch.nn.Linear(128, 64)
    self.audio_1, self.audio_2 = torch.nn.Linear(128, 128), torch.nn.Linear(128, 64)

  def forward(self, video_input, audio_input):
    video = self.video_2(torch.nn.functional.leaky_relu(self.video_1(video_input), 0.3))
    audio = self.audio_2(torch.nn.functional.leaky_relu(self.audio_1(audio_input), 0.3))
    squared = torch.sum(torch.square(video - audio), dim=1, keepdim=True)
    return torch.sqrt(torch.clamp(squared, min=1e-7))


def torch_contrastive_loss(y_true, y_pred):
  """cmm_train.py's `contrastive_loss` (margin = 2.0): K.mean(y d^2 + (1 - y) max(margin - d, 0)^2)."""
  margin = 2.0
  return torch.mean(
      y_true * torch.square(y_pred)
      + (1 - y_true) * torch.square(torch.clamp(margin - y_pred, min=0))
  )


def cmm_test_loop(y_test, distance):
  """cmm_test.py's evaluation loop, transcribed: `y_test` [N * 10] the test clips' labels_closs rows flattened,
  `distance(clip, v, a)` what `model.predict([x_video[v], x_audio[a]])` returns for that clip. Returns the
  official print: (video_count * 100 / count_num, audio_count * 100 / count_num) = (V2A, A2V)."""
  n = y_test.shape[0]
  count_num = 0
  audio_count = 0
  video_count = 0
  for video_id in range(int(n / 10)):
    s = video_id * 10
    e = s + 10
    x_test = y_test[s:e]
    if np.sum(x_test) == 10:
      continue
    count_num += 1
    nb = np.argwhere(x_test == 1)
    seg = np.zeros(len(nb)).astype("int8")
    for i in range(len(nb)):
      seg[i] = nb[i][0]
    l = len(seg)
    # given audio clip
    score = []
    for nn in range(10 - l + 1):
      s = 0
      for i in range(l):
        s += np.float32(distance(video_id, nn + i, seg[i]))
      score.append(s)
    score = np.array(score).astype("float32")
    if np.argmin(score) == seg[0]:
      audio_count += 1
    # given video clip
    score = []
    for nn in range(10 - l + 1):
      s = 0
      for i in range(l):
        s += np.float32(distance(video_id, seg[i], nn + i))
      score.append(s)
    score = np.array(score).astype("float32")
    if np.argmin(score) == seg[0]:
      video_count += 1
  return video_count * 100 / count_num, audio_count * 100 / count_num


def _scores(distance_BxTxT, event_mask_BxT, mask_B=None):
  """The evaluator's scores of one batch (its sums, then `scores`)."""
  distance_BxTxT = np.asarray(distance_BxTxT, np.float32)
  if mask_B is None:
    mask_B = np.ones(len(distance_BxTxT), np.float32)
  evaluator = cross_modal.CrossModalEvaluator(cmm_task.TASK.meta(_config()))
  sums = jax.jit(evaluator.batch_sums)(
      {"cross_distance": distance_BxTxT},
      {"event_mask": np.asarray(event_mask_BxT, np.float32), "mask": mask_B},
  )
  return evaluator.scores(jax.tree.map(lambda x: np.float64(x), sums))


def _config(arg="tiny"):
  import sys  # pylint: disable=g-import-not-at-top

  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
  from configs import ave_cmm  # pylint: disable=g-import-not-at-top

  return ave_cmm.get_config(arg)


class MatcherTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.enter_context(jax.numpy_rank_promotion("raise"))

  def _params_and_oracle(self, seed=0):
    model = cmm.CrossModalMatcher()
    rng = np.random.default_rng(seed)
    audio = np.abs(rng.normal(size=(3, 10, 128))).astype(np.float32)
    visual = np.abs(rng.normal(size=(3, 10, 7, 7, 512))).astype(np.float32)
    params = model.init(jax.random.key(seed), audio, visual)["params"]
    oracle = TorchScmmNet()
    with torch.no_grad():
      for tower, torch_name in (("visual", "video"), ("audio", "audio")):
        for i in range(2):
          layer = getattr(oracle, f"{torch_name}_{i + 1}")
          dense = params[tower][f"dense_{i}"]
          layer.weight.copy_(torch.from_numpy(np.asarray(dense["kernel"]).T.copy()))
          layer.bias.copy_(torch.from_numpy(np.asarray(dense["bias"])))
    return model, params, oracle, audio, visual

  def test_forward_matches_the_official_net_pair_by_pair(self):
    model, params, oracle, audio, visual = self._params_and_oracle()
    out = model.apply({"params": params}, audio, visual)
    vectors = visual.mean(
        axis=(2, 3)
    )  # visual_feature_vec.h5: the pool5 map averaged over the grid
    b, t = audio.shape[:2]
    v_index, a_index = np.meshgrid(np.arange(t), np.arange(t), indexing="ij")
    with torch.no_grad():
      for clip in range(b):
        cross = oracle(
            torch.from_numpy(vectors[clip][v_index.ravel()]),
            torch.from_numpy(audio[clip][a_index.ravel()]),
        ).numpy()
        np.testing.assert_allclose(
            out["cross_distance"][clip], cross.reshape(t, t), rtol=1e-5, atol=1e-5
        )
        pair = oracle(torch.from_numpy(vectors[clip]), torch.from_numpy(audio[clip])).numpy()
        np.testing.assert_allclose(out["pair_distance"][clip], pair[:, 0], rtol=1e-5, atol=1e-5)
    # Pre-pooled [B, T, 512] vectors (the released visual_feature_vec.h5 layout) give the same distances.
    pooled = model.apply({"params": params}, audio, vectors)
    np.testing.assert_allclose(
        pooled["cross_distance"], out["cross_distance"], rtol=1e-5, atol=1e-6
    )
    self.assertEqual(out["visual_embedding"].shape, (3, 10, 64))

  def test_keras_initialisation_and_epsilon_floor(self):
    model, params, _, audio, _ = self._params_and_oracle()
    kernel = np.asarray(params["visual"]["dense_0"]["kernel"])
    limit = np.sqrt(6.0 / (512 + 128))  # glorot_uniform
    self.assertLessEqual(np.abs(kernel).max(), limit)
    self.assertGreater(np.abs(kernel).max(), 0.9 * limit)
    self.assertFalse(np.any(np.asarray(params["audio"]["dense_1"]["bias"])))
    same = np.zeros((1, 10, 64), np.float32)
    np.testing.assert_allclose(cmm.euclidean_distance(same, same), np.sqrt(1e-7), rtol=1e-6)
    del model, audio

  def test_loss_matches_the_official_loss(self):
    rng = np.random.default_rng(1)
    distance = rng.uniform(0.0, 4.0, size=(4, 10)).astype(np.float32)
    event = (rng.random((4, 10)) < 0.5).astype(np.float32)
    value, terms = cmm_loss.compute_loss(
        _config().loss, {"pair_distance": distance}, {"event_mask": event}
    )
    oracle = torch_contrastive_loss(torch.from_numpy(event), torch.from_numpy(distance)).item()
    np.testing.assert_allclose(value, oracle, rtol=1e-6)
    np.testing.assert_allclose(terms["contrastive"], value)
    # By hand: a matching pair at 0.5 (0.25), a background pair at 1.5 (0.5^2 = 0.25), one beyond the margin.
    hand, _ = cmm_loss.compute_loss(
        _config().loss,
        {"pair_distance": np.array([[0.5, 1.5, 3.0]], np.float32)},
        {"event_mask": np.array([[1.0, 0.0, 0.0]], np.float32)},
    )
    np.testing.assert_allclose(hand, 0.5 / 3, rtol=1e-6)
    # A padded clip counts for nothing.
    padded, _ = cmm_loss.compute_loss(
        _config().loss,
        {"pair_distance": np.concatenate([distance, np.full((1, 10), 9.0, np.float32)])},
        {
            "event_mask": np.concatenate([event, np.ones((1, 10), np.float32)]),
            "mask": np.array([1, 1, 1, 1, 0], np.float32),
        },
    )
    np.testing.assert_allclose(padded, oracle, rtol=1e-6)

  def test_gradients_flow_to_both_towers(self):
    model, params, _, audio, visual = self._params_and_oracle()
    event = np.zeros((3, 10), np.float32)
    event[:, 2:6] = 1.0

    def loss(p):
      return cmm_loss.compute_loss(
          _config().loss, model.apply({"params": p}, audio, visual), {"event_mask": event}
      )[0]

    grads = jax.grad(loss)(params)
    for tower in ("visual", "audio"):
      self.assertGreater(float(jnp.abs(grads[tower]["dense_0"]["kernel"]).sum()), 0.0)


class CrossModalScoreTest(absltest.TestCase):

  def test_hand_worked_clips(self):
    """Clip 0: event 3..5, zero distance on the diagonal: both directions find start 3. Clip 1: event 0..1, the
    visual track's best window at 7 (A2V wrong); every audio window ties (V2A takes the first, 0: right).
    Clip 2: the event fills the clip: skipped. A2V 1 of 2, V2A 2 of 2."""
    distance = np.ones((3, 10, 10), np.float32)
    mask = np.zeros((3, 10), np.float32)
    distance[0][np.diag_indices(10)] = 0.0
    mask[0, 3:6] = 1.0
    distance[1, 7, 0] = distance[1, 8, 1] = 0.0
    mask[1, 0:2] = 1.0
    mask[2] = 1.0
    scores = _scores(distance, mask)
    self.assertEqual((scores["a2v"], scores["v2a"], scores["mean"]), (50.0, 100.0, 75.0))
    self.assertEqual((scores["num_scored"], scores["num_clips"]), (2, 3))
    self.assertEqual(cmm_test_loop(mask.ravel(), lambda c, v, a: distance[c, v, a]), (100.0, 50.0))

  def test_matches_cmm_test_on_the_match_test_split(self):
    """The match split's 402 test clips with random distances (and coarse ones, for ties)."""
    rows, orders = annotations.load_splits(split_set="match")
    event = rows.event_mask()[orders["test"]]
    rng = np.random.default_rng(0)
    for distance in (
        rng.uniform(0.0, 3.0, size=(len(event), 10, 10)).astype(np.float32),
        rng.integers(0, 3, size=(len(event), 10, 10)).astype(np.float32),  # many ties
    ):
      v2a, a2v = cmm_test_loop(event.ravel(), lambda c, v, a, d=distance: d[c, v, a])
      scores = _scores(distance, event)
      np.testing.assert_allclose((scores["v2a"], scores["a2v"]), (v2a, a2v), rtol=1e-12)
      self.assertEqual(scores["num_scored"], 402)

  def test_padding_and_empty_clips_count_for_nothing(self):
    rng = np.random.default_rng(2)
    distance = rng.uniform(size=(6, 10, 10)).astype(np.float32)
    event = np.zeros((6, 10), np.float32)
    for b, (start, end) in enumerate(((1, 4), (0, 9), (5, 7), (2, 3), (0, 0), (0, 10))):
      event[b, start:end] = 1.0
    scores = _scores(distance, event)
    self.assertEqual((scores["num_scored"], scores["num_clips"]), (4, 6))
    padded = _scores(
        np.concatenate([distance, distance[:2] * 0.0]),
        np.concatenate([event, event[:2]]),
        np.array([1, 1, 1, 1, 1, 1, 0, 0], np.float32),
    )
    self.assertEqual(padded, scores)
    expected = cmm_test_loop(event[:4].ravel(), lambda c, v, a: distance[c, v, a])
    np.testing.assert_allclose((scores["v2a"], scores["a2v"]), expected)


class MatchSplitTest(absltest.TestCase):

  def test_packaged_match_files_are_the_released_ones(self):
    for split in annotations.SPLITS:
      name = annotations.order_files("match")[split]
      packaged = (annotations.PACKAGED_DIR / name).read_bytes()
      self.assertEqual(
          hashlib.sha256(packaged).hexdigest(),
          hashlib.sha256((SHARED / name).read_bytes()).hexdigest(),
      )

  def test_what_the_match_orders_hold(self):
    rows, match = annotations.load_splits(SHARED, split_set="match")
    _, standard = annotations.load_splits(split_set="standard")
    self.assertEqual(
        {s: len(o) for s, o in match.items()}, {"train": 3339, "val": 402, "test": 402}
    )
    everything = np.concatenate(list(match.values()))
    self.assertLen(np.unique(everything), len(rows))  # disjoint, every row
    self.assertFalse(np.array_equal(match["test"], standard["test"]))  # another partition
    self.assertTrue(np.all(np.diff(match["train"]) > 0) and np.all(np.diff(match["val"]) > 0))
    lengths = {s: rows.event_mask()[o].sum(axis=1) for s, o in match.items()}
    self.assertEqual((lengths["test"].min(), lengths["test"].max()), (2, 9))  # all 402 scored
    self.assertEqual(int((lengths["val"] == 10).sum()), 203)
    self.assertEqual(int((lengths["val"] == 0).sum()), 1)  # row 26: no event segment
    self.assertIn(26, match["val"].tolist())
    self.assertEqual(int((lengths["train"] == 10).sum()), 2547)

  def test_unknown_split_set(self):
    with self.assertRaisesRegex(InputError, "splits='matched' is unknown"):
      annotations.load_splits(split_set="matched")


class TaskTest(absltest.TestCase):

  def test_a_matcher_loads_as_an_ave_model(self):
    from avvp_jax.tasks.ave import inference  # pylint: disable=g-import-not-at-top

    config = _config()
    audio = np.ones((2, 10, 128), np.float32)
    visual = np.ones((2, 10, 7, 7, 512), np.float32)
    params = cmm.CrossModalMatcher(**config.model.cmm).init(jax.random.key(0), audio, visual)
    out = inference.Localizer(config, params["params"]).predict(audio[0], visual[0])
    self.assertEqual(out["cross_distance"].shape, (10, 10))
    self.assertNotIn("segment_class", out)

  def test_workdir_contract(self):
    """A variant's data section is its family's (a change there is refused on a continued run), and configs
    written before the split sets and the margin read as they ran."""
    from avvp_jax import state as state_lib  # pylint: disable=g-import-not-at-top
    from avvp_jax import workdir  # pylint: disable=g-import-not-at-top

    config = _config()
    exempt = workdir._other_tasks_data_sections(config, config)  # pylint: disable=protected-access
    self.assertNotIn(["data", "ave"], exempt)
    self.assertNotIn(["data", "ave_cmm"], exempt)
    old = _config().to_dict()
    old["task"] = "ave"
    del old["data"]["ave"]["splits"], old["loss"]["cmm_margin"]
    read = state_lib.backfilled(ml_collections.ConfigDict(old))
    self.assertEqual((read.data.ave.splits, read.loss.cmm_margin), ("standard", 2.0))

  def test_checks_are_one_line(self):
    config = _config()
    cmm_task.TASK.check_config(config)
    self.assertEqual(cmm_task.TASK.meta(config).task, "ave_cmm")
    from avvp_jax.tasks.ave import task as ave_task  # pylint: disable=g-import-not-at-top

    wrong = _config()
    wrong.model.encoder = "ave"
    with self.assertRaisesRegex(InputError, "encoder=cmm") as caught:
      cmm_task.TASK.check_config(wrong)
    self.assertNotIn("\n", str(caught.exception))
    weak = _config()
    weak.data.ave.supervision = "weak"
    with self.assertRaisesRegex(InputError, "supervision must be 'full'"):
      cmm_task.TASK.check_config(weak)
    on_ave = _config()
    on_ave.task = "ave"
    with self.assertRaisesRegex(InputError, "--config.task=ave_cmm"):
      ave_task.TASK.check_config(on_ave)
    unknown = _config()
    unknown.data.ave.splits = "matched"
    with self.assertRaisesRegex(InputError, "splits='matched'"):
      cmm_task.TASK.check_config(unknown)


if __name__ == "__main__":
  absltest.main()
