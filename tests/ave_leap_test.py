"""LEAP as the head of the AVE localizers: the decision rule, the loss on hand-worked cases, the AVE label tables,
the model built on each encoder (gradients reach the trunk), and bad label tables."""

import dataclasses
import os
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from avvp_jax import models
from avvp_jax.errors import InputError
from avvp_jax.models import label_embeddings
from avvp_jax.models import localizer_leap
from avvp_jax.tasks.ave import annotations
from avvp_jax.tasks.ave import task as ave_task
from avvp_jax.tasks.ave.losses import leap as leap_loss
from configs import ave_leap
from configs import cmbs_leap
from configs import psp_leap

BG = annotations.BACKGROUND  # 28
CARDS = {"ave": ave_leap, "psp": psp_leap, "cmbs": cmbs_leap}


def _meta(supervision="full"):
  return dataclasses.replace(ave_task.META, supervision=supervision)


def _probs(rows):
  """[1, T, K] from a list of {class: prob} per segment (other classes 0)."""
  k = max(max(r) for r in rows if r) + 1
  out = np.zeros((1, len(rows), max(k, BG + 1)), np.float32)
  for t, row in enumerate(rows):
    for c, p in row.items():
      out[0, t, c] = p
  return out


class DecisionTest(parameterized.TestCase):

  def _decide(self, segment, video, **kw):
    return np.asarray(
        localizer_leap.segment_classes(
            jnp.asarray(segment), jnp.asarray(video), background_class=BG, threshold=0.5, **kw
        )
    )[0].tolist()

  def test_threshold_per_segment(self):
    # 28 event columns: segment 0 class 3 (0.9), segment 1 best 0.4 < 0.5 -> background, segment 2 class 5.
    segment = _probs([{3: 0.9, 5: 0.2}, {3: 0.4}, {5: 0.6, 3: 0.55}])[..., :BG]
    video = np.zeros((1, BG), np.float32)
    self.assertEqual(
        self._decide(segment, video, background="threshold", decision="segment"), [3, BG, 5]
    )

  def test_background_query_per_segment(self):
    # 29 columns: background wins segment 1 whatever the threshold; segment 2's best event (0.3) beats bg 0.2.
    segment = _probs([{3: 0.9, BG: 0.1}, {3: 0.7, BG: 0.8}, {5: 0.3, BG: 0.2}])
    video = np.zeros((1, BG + 1), np.float32)
    self.assertEqual(
        self._decide(segment, video, background="query", decision="segment"), [3, BG, 5]
    )

  def test_video_class_then_threshold(self):
    # The video's class is 5 (video 0.8 > 0.7): segment 0 is background although class 3 wins it (its class-5
    # score 0.2 < 0.5); segment 1 scores 0.6 on class 5.
    segment = _probs([{3: 0.9, 5: 0.2}, {3: 0.1, 5: 0.6}])[..., :BG]
    video = np.zeros((1, BG), np.float32)
    video[0, 3], video[0, 5] = 0.7, 0.8
    self.assertEqual(
        self._decide(segment, video, background="threshold", decision="video"), [BG, 5]
    )

  def test_video_class_against_background_query(self):
    # The background column of the video scores is never the video's class; a segment is the video's class
    # where that class scores at least the background query.
    segment = _probs([{5: 0.3, BG: 0.2}, {5: 0.3, BG: 0.4}])
    video = np.zeros((1, BG + 1), np.float32)
    video[0, 5], video[0, BG] = 0.6, 0.9
    self.assertEqual(self._decide(segment, video, background="query", decision="video"), [5, BG])

  def test_combine(self):
    a, v = jnp.asarray([0.8, 0.2]), jnp.asarray([0.4, 0.6])
    np.testing.assert_allclose(localizer_leap.combine_probs(a, v, "mean"), [0.6, 0.4])
    np.testing.assert_allclose(localizer_leap.combine_probs(a, v, "product"), [0.32, 0.12])
    np.testing.assert_allclose(
        localizer_leap.combine_probs(a, v, "softmax"), [0.6, 0.4]
    )  # video level

  def test_softmax_scores_follow_the_mean_logit_whatever_the_offsets(self):
    # Audio logits [4, 0] (a large class-common offset), visual [-10, -5]: the mean logit (-3, -2.5) favours
    # class 1, and so does its softmax, 1 / (1 + e^-0.5) = 0.6225 on class 1; the mean of the sigmoids, (0.982 +
    # 4.5e-5) / 2 against (0.5 + 0.0067) / 2, favours class 0 (the saturated audio branch decides).
    a, v = jnp.asarray([[[4.0, 0.0]]]), jnp.asarray([[[-10.0, -5.0]]])
    sigmoid = lambda x: 1.0 / (1.0 + np.exp(-np.asarray(x)))
    softmax = localizer_leap.segment_scores(a, v, "softmax")
    np.testing.assert_allclose(softmax[0, 0], [1 - 0.622459, 0.622459], rtol=1e-5)
    mean = localizer_leap.segment_scores(a, v, "mean")
    np.testing.assert_allclose(mean, (sigmoid(a) + sigmoid(v)) / 2, rtol=1e-6)
    self.assertEqual(int(np.argmax(mean[0, 0])), 0)
    np.testing.assert_allclose(  # a per-segment constant on both branches changes no softmax score
        localizer_leap.segment_scores(a + 7.0, v + 7.0, "softmax"), softmax, rtol=1e-5
    )
    with self.assertRaisesRegex(InputError, r"^config.model.localizer_leap.combine 'x' is unknown"):
      localizer_leap.segment_scores(a, v, "x")

  def test_unknown_option_is_one_line(self):
    with self.assertRaisesRegex(
        InputError, r"^config.model.localizer_leap.decision 'x' is unknown"
    ):
      localizer_leap.segment_classes(
          jnp.zeros((1, 2, BG)),
          jnp.zeros((1, BG)),
          background="threshold",
          decision="x",
          threshold=0.5,
          background_class=BG,
      )


def _loss_config(**overrides):
  config = ml_collections.ConfigDict(
      dict(
          clamp_eps=1e-7,
          segment_weight=1.0,
          avss_weight=1.0,
          avss_target="paper",
          avss_eps=0.01,
          ave_leap_segment_loss="bce",
      )
  )
  config.update(overrides)
  return config


def _outputs(num_queries, embedding):
  """Zero logits (every probability 1/2) and the given [1, 2, D] embeddings for both modalities."""
  return {
      "segment_audio_logits": jnp.zeros((1, 2, num_queries)),
      "segment_visual_logits": jnp.zeros((1, 2, num_queries)),
      "audio_prob": jnp.full((1, num_queries), 0.5),
      "visual_prob": jnp.full((1, num_queries), 0.5),
      "audio_embedding": embedding,
      "visual_embedding": embedding,
  }


class LossTest(parameterized.TestCase):
  """One clip of two segments, segment 0 of class 4, segment 1 background."""

  def setUp(self):
    super().setUp()
    labels = np.zeros((1, 2, BG + 1), np.float32)
    labels[0, 0, 4], labels[0, 1, BG] = 1, 1
    self.batch = {"segment_label": jnp.asarray(labels), "mask": jnp.ones((1,))}

  def test_bce_with_avss_by_hand(self):
    # Every probability is 1/2: each BCE element is log 2, so video = 2 log 2 and segment = 2 log 2 whatever the
    # targets. Equal embeddings: cos = 1 on all 4 pairs; the paper EIoU is 1 on the (event, event) pair and 0 on
    # the 3 others, so avss = 3/4.
    total, terms = leap_loss.compute_loss(
        _loss_config(), _outputs(BG, jnp.ones((1, 2, 4))), self.batch
    )
    log2 = np.log(2.0)
    self.assertAlmostEqual(float(terms["video"]), 2 * log2, places=5)
    self.assertAlmostEqual(float(terms["segment"]), 2 * log2, places=5)
    self.assertAlmostEqual(float(terms["avss"]), 0.75, places=5)
    self.assertAlmostEqual(float(total), 4 * log2 + 0.75, places=5)

  def test_official_avss_target_and_weights(self):
    # Official EIoU: x = 1 on the event pair -> 1/2 + 0.01; 0 + 0.01 elsewhere; orthogonal embeddings in the two
    # segments: cos 1 on the diagonal, 0 off it. Errors: (1 - 0.51)^2, 0.01^2 twice, (1 - 0.01)^2.
    embedding = jnp.asarray([[[1.0, 0.0], [0.0, 1.0]]])
    config = _loss_config(avss_target="official", segment_weight=0.5, avss_weight=2.0)
    total, terms = leap_loss.compute_loss(config, _outputs(BG, embedding), self.batch)
    avss = (0.49**2 + 2 * 0.01**2 + 0.99**2) / 4
    self.assertAlmostEqual(float(terms["avss"]), avss, places=5)
    self.assertAlmostEqual(float(total), 2 * np.log(2) + 0.5 * 2 * np.log(2) + 2 * avss, places=5)

  def test_cross_entropy_counts_event_segments_only_with_28_queries(self):
    config = _loss_config(ave_leap_segment_loss="ce")
    _, terms = leap_loss.compute_loss(config, _outputs(BG, jnp.ones((1, 2, 4))), self.batch)
    self.assertAlmostEqual(
        float(terms["segment"]), np.log(BG), places=5
    )  # uniform over 28, one segment
    _, terms = leap_loss.compute_loss(config, _outputs(BG + 1, jnp.ones((1, 2, 4))), self.batch)
    self.assertAlmostEqual(float(terms["segment"]), np.log(BG + 1), places=5)  # both segments count

  def test_query_targets_and_video_target(self):
    # 29 queries: the targets keep the background column; sigmoid logits pushed to the targets give ~0.
    labels = np.asarray(self.batch["segment_label"])
    outputs = _outputs(BG + 1, jnp.ones((1, 2, 4)))
    outputs["segment_audio_logits"] = outputs["segment_visual_logits"] = jnp.asarray(
        (labels * 2 - 1) * 30.0
    )
    video = labels.max(axis=1)  # class 4 and background present
    outputs["audio_prob"] = outputs["visual_prob"] = jnp.asarray(np.clip(video, 1e-7, 1 - 1e-7))
    _, terms = leap_loss.compute_loss(_loss_config(), outputs, self.batch)
    self.assertLess(float(terms["segment"]), 1e-6)
    self.assertLess(float(terms["video"]), 1e-5)

  def test_weak_has_the_video_terms_only(self):
    video_label = np.zeros((1, BG + 1), np.float32)
    video_label[0, 4] = 1
    outputs = _outputs(BG, jnp.ones((1, 2, 4)))
    outputs["audio_prob"] = jnp.asarray(np.where(video_label[:, :BG] > 0, 0.8, 0.5))
    total, terms = leap_loss.compute_loss(
        _loss_config(), outputs, {"video_label": jnp.asarray(video_label)}
    )
    audio = (-np.log(0.8) + (BG - 1) * np.log(2)) / BG
    self.assertAlmostEqual(float(terms["video"]), audio + np.log(2), places=5)
    self.assertEqual(float(terms["segment"]), 0.0)
    self.assertEqual(float(terms["avss"]), 0.0)
    self.assertAlmostEqual(float(total), float(terms["video"]), places=6)

  def test_psp_avps_term_by_hand(self):
    # PSP's AVPS target of this clip: its event is class 4, on segment 0 only, so q = [1, 0]. Similarities
    # [0.3, -0.2, ...]: relu -> [0.3, 0], L1-normalised -> [1, 0] (sum + 1e-8): error ~0; [0.3, 0.3] -> [1/2, 1/2]:
    # ((1/2 - 1)^2 + (1/2)^2) / 2 = 1/4. Zero logits and equal embeddings as in the avss case above.
    outputs = _outputs(BG, jnp.ones((1, 2, 4)))
    config = _loss_config(ave_leap_avps_weight=100.0)
    without, _ = leap_loss.compute_loss(_loss_config(), outputs, self.batch)
    outputs["av_similarity"] = jnp.asarray([[0.3, -0.2]])
    total, terms = leap_loss.compute_loss(config, outputs, self.batch)
    self.assertLess(float(terms["avps"]), 1e-12)
    outputs["av_similarity"] = jnp.asarray([[0.3, 0.3]])
    total, terms = leap_loss.compute_loss(config, outputs, self.batch)
    self.assertAlmostEqual(float(terms["avps"]), 0.25, places=6)
    self.assertAlmostEqual(float(total), float(without) + 25.0, places=4)
    _, terms = leap_loss.compute_loss(_loss_config(), outputs, self.batch)  # weight 0: off
    self.assertEqual(float(terms["avps"]), 0.0)

  def test_avps_without_psps_similarity_is_one_line(self):
    config = _loss_config(ave_leap_avps_weight=100.0)
    with self.assertRaisesRegex(
        InputError, r"^config.loss.ave_leap_avps_weight is 100.0: PSP's AVPS"
    ):
      leap_loss.compute_loss(config, _outputs(BG, jnp.ones((1, 2, 4))), self.batch)

  def test_dch_outputs_are_refused_in_one_line(self):
    with self.assertRaisesRegex(InputError, r"^config.loss.name 'leap' on AVE reads the LEAP head"):
      leap_loss.compute_loss(_loss_config(), {"segment_logits": jnp.zeros((1, 2, 29))}, self.batch)


class LabelTablesTest(parameterized.TestCase):

  def test_packaged_ave_table(self):
    events = label_embeddings.load_label_embeddings("packaged", annotations.CLASSES)
    every = label_embeddings.load_label_embeddings("packaged", annotations.LABEL_NAMES)
    self.assertEqual(events.shape, (28, 384))
    self.assertEqual(every.shape, (29, 384))
    np.testing.assert_array_equal(every[:28], events)
    np.testing.assert_allclose(np.linalg.norm(every, axis=1), 1.0, rtol=1e-5)
    self.assertGreater(
        np.abs(every[:, None] - every[None]).sum(-1)[~np.eye(29, dtype=bool)].min(), 0
    )
    llp = label_embeddings.load_label_embeddings(
        "packaged"
    )  # classes both tasks share: one encoder, one row
    for name in ("Helicopter", "Banjo", "Accordion"):
      np.testing.assert_array_equal(
          every[annotations.LABEL_NAMES.index(name)],
          llp[label_embeddings.PACKAGED_CLASSES.index(name)],
      )

  def _build(self, source, background="threshold"):
    config = psp_leap.get_config("tiny").model
    config.leap.label_embeddings = source
    config.localizer_leap.background = background
    return models.build_model(config, _meta())

  @parameterized.parameters(("threshold", 28), ("query", 29))
  def test_npy_tables_of_28_or_29_rows(self, background, queries):
    for rows in (28, 29):
      if background == "query" and rows == 28:
        continue
      table = np.random.RandomState(rows).randn(rows, 7).astype(np.float32)
      path = os.path.join(tempfile.mkdtemp(), "labels.npy")
      np.save(path, table)
      decoder = self._build(path, background).decoder
      self.assertEqual(decoder.num_classes, queries)
      np.testing.assert_array_equal(decoder.label_table, table[:queries])

  def test_glove_text_for_the_ave_names(self):
    words = sorted({w for n in annotations.LABEL_NAMES for w in label_embeddings.class_words(n)})
    path = os.path.join(tempfile.mkdtemp(), "glove.txt")
    with open(path, "w") as f:
      for i, word in enumerate(words):
        f.write(word + " " + " ".join(str(float(i == j)) for j in range(len(words))) + "\n")
    table = self._build(path).decoder.label_table
    self.assertEqual(table.shape, (28, len(words)))
    # "Male speech, man speaking": the mean of its four words' one-hot vectors.
    row = table[annotations.CLASSES.index("Male speech, man speaking")]
    expected = np.zeros(len(words))
    for word in ("male", "speech", "man", "speaking"):
      expected[words.index(word)] += 0.25
    np.testing.assert_allclose(row, expected, rtol=1e-6)

  def test_a_table_of_the_wrong_width_is_one_line_naming_the_file(self):
    path = os.path.join(tempfile.mkdtemp(), "labels27.npy")
    np.save(path, np.zeros((27, 5), np.float32))
    with self.assertRaises(InputError) as caught:
      self._build(path)
    message = str(caught.exception)
    self.assertNotIn("\n", message)
    self.assertIn(path, message)
    self.assertIn("[28, D] or [29, D]", message)


class ModelTest(parameterized.TestCase):

  @parameterized.product(encoder=("ave", "psp", "cmbs"), supervision=("full", "weak"))
  def test_leap_head_on_each_encoder_trains_the_trunk(self, encoder, supervision):
    config = CARDS[encoder].get_config("weak_tiny" if supervision == "weak" else "tiny")
    model = models.build_model(config.model, _meta(supervision))
    self.assertIsInstance(model, localizer_leap.LocalizerLEAP)
    rng = np.random.RandomState(0)
    audio = jnp.asarray(rng.rand(2, 10, 128).astype(np.float32))
    visual = jnp.asarray(rng.rand(2, 10, 7, 7, 512).astype(np.float32))
    keys = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}
    params = model.init(keys, audio, visual)["params"]
    labels = np.zeros((2, 10, BG + 1), np.float32)
    labels[:, :6, 3], labels[:, 6:, BG] = 1, 1
    if supervision == "full":
      batch = {"segment_label": jnp.asarray(labels)}
    else:
      batch = {"video_label": jnp.asarray(np.tile(np.eye(BG + 1, dtype=np.float32)[3], (2, 1)))}

    def loss_fn(p):
      outputs = model.apply(
          {"params": p}, audio, visual, train=True, rngs={"dropout": keys["dropout"]}
      )
      return ave_task.TASK.loss(config.loss, outputs, batch)[0]

    loss, grads = jax.value_and_grad(loss_fn)(params)
    self.assertTrue(np.isfinite(float(loss)))
    trunk_norm = sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads["trunk"]))
    self.assertGreater(trunk_norm, 0.0)
    outputs = model.apply({"params": params}, audio, visual)
    self.assertEqual(outputs["segment_class"].shape, (2, 10))
    self.assertEqual(outputs["segment_class"].dtype, jnp.int32)
    self.assertTrue(
        np.all((np.asarray(outputs["segment_class"]) >= 0) & (outputs["segment_class"] <= BG))
    )
    head_names = {
        "ave": "L2",
        "psp": "L2",
        "cmbs": "localize_module" if supervision == "full" else "CAS_model",
    }
    self.assertNotIn(head_names[encoder], params["trunk"])  # the official head is not built

  def test_psp_trunk_hands_its_av_similarity_to_the_loss(self):
    # PSP's per-segment cos(v', a'), its AVPS term's input, comes through the LEAP head: the cosine of the
    # streams LEAP reads (modality streams: a' and v').
    model = models.build_model(psp_leap.get_config("tiny").model, _meta())
    rng = np.random.RandomState(0)
    inputs = (
        jnp.asarray(rng.rand(2, 10, 128).astype(np.float32)),
        jnp.asarray(rng.rand(2, 10, 7, 7, 512).astype(np.float32)),
    )
    outputs, _ = model.init_with_output(jax.random.PRNGKey(0), *inputs)
    audio, visual = np.asarray(outputs["audio_embedding"]), np.asarray(outputs["visual_embedding"])
    cosine = (
        (audio * visual).sum(-1) / np.linalg.norm(audio, axis=-1) / np.linalg.norm(visual, axis=-1)
    )
    np.testing.assert_allclose(outputs["av_similarity"], cosine, rtol=1e-4, atol=1e-6)
    ave_model = models.build_model(ave_leap.get_config("tiny").model, _meta())
    ave_outputs, _ = ave_model.init_with_output(jax.random.PRNGKey(0), *inputs)
    self.assertNotIn("av_similarity", ave_outputs)

  def test_softmax_combine_decides_by_the_mean_logit(self):
    # configs/psp_leap.py: combine "softmax", 29 queries, each segment's own class: the argmax of l_a + l_v.
    config = psp_leap.get_config("tiny").model
    self.assertEqual(config.localizer_leap.combine, "softmax")
    model = models.build_model(config, _meta())
    rng = np.random.RandomState(1)
    inputs = (
        jnp.asarray(rng.rand(2, 10, 128).astype(np.float32)),
        jnp.asarray(rng.rand(2, 10, 7, 7, 512).astype(np.float32)),
    )
    outputs, _ = model.init_with_output(jax.random.PRNGKey(0), *inputs)
    logits = np.asarray(outputs["segment_audio_logits"]) + np.asarray(
        outputs["segment_visual_logits"]
    )
    np.testing.assert_array_equal(outputs["segment_class"], logits.argmax(-1))
    shifted = np.exp(logits / 2 - (logits / 2).max(-1, keepdims=True))
    np.testing.assert_allclose(
        outputs["segment_event_prob"],
        shifted / shifted.sum(-1, keepdims=True),
        rtol=1e-5,
        atol=1e-7,
    )

  def test_fused_streams_feed_both_branches(self):
    config = psp_leap.get_config("tiny").model
    config.localizer_leap.streams = "fused"
    model = models.build_model(config, _meta())
    audio, visual = jnp.ones((1, 10, 128)), jnp.ones((1, 10, 7, 7, 512))
    outputs, _ = model.init_with_output(jax.random.PRNGKey(0), audio, visual)
    np.testing.assert_array_equal(outputs["audio_embedding"], outputs["visual_embedding"])

  def test_background_query_has_29_queries_with_the_background_row(self):
    config = ave_leap.get_config("tiny").model
    config.localizer_leap.background = "query"
    model = models.build_model(config, _meta())
    every = label_embeddings.load_label_embeddings("packaged", annotations.LABEL_NAMES)
    np.testing.assert_array_equal(model.decoder.label_table, every)
    outputs, _ = model.init_with_output(
        jax.random.PRNGKey(0), jnp.ones((1, 10, 128)), jnp.ones((1, 10, 7, 7, 512))
    )
    self.assertEqual(outputs["segment_event_prob"].shape, (1, 10, 29))

  @parameterized.parameters(False, True)
  def test_logit_scale_multiplies_leaps_segment_logits(self, learn):
    config = ave_leap.get_config("tiny").model
    config.localizer_leap.logit_scale = 1.0
    config.localizer_leap.learn_logit_scale = False
    inputs = (jnp.ones((1, 10, 128)), 0.5 * jnp.ones((1, 10, 7, 7, 512)))
    plain_model = models.build_model(config, _meta())
    plain, params = plain_model.init_with_output(jax.random.PRNGKey(0), *inputs)
    config.localizer_leap.logit_scale = 7.0
    config.localizer_leap.learn_logit_scale = learn
    scaled_model = models.build_model(config, _meta())
    scaled_params = scaled_model.init(jax.random.PRNGKey(0), *inputs)["params"]
    if learn:
      for modality in ("audio", "visual"):
        np.testing.assert_allclose(
            scaled_params.pop(f"{modality}_log_logit_scale"), np.log(7.0), rtol=1e-6
        )
    self.assertEqual(jax.tree.structure(scaled_params), jax.tree.structure(params["params"]))
    given = dict(params["params"])  # the same weights; with `learn`, the two scales at log 7
    if learn:
      given.update(audio_log_logit_scale=jnp.log(7.0), visual_log_logit_scale=jnp.log(7.0))
    scaled = scaled_model.apply({"params": given}, *inputs)
    for modality in ("audio", "visual"):
      logits = np.asarray(plain[f"segment_{modality}_logits"])
      np.testing.assert_allclose(scaled[f"segment_{modality}_logits"], 7.0 * logits, rtol=1e-5)
      np.testing.assert_allclose(
          scaled[f"segment_{modality}_prob"], 1.0 / (1.0 + np.exp(-7.0 * logits)), rtol=1e-5
      )
    np.testing.assert_array_equal(
        scaled["audio_prob"], plain["audio_prob"]
    )  # video level untouched

  def test_bad_logit_scale_is_one_line(self):
    config = ave_leap.get_config("tiny").model
    config.localizer_leap.logit_scale = 0.0
    model = models.build_model(config, _meta())
    with self.assertRaisesRegex(InputError, "logit_scale is 0.0"):
      model.init(jax.random.PRNGKey(0), jnp.ones((1, 10, 128)), jnp.ones((1, 10, 7, 7, 512)))


if __name__ == "__main__":
  absltest.main()
