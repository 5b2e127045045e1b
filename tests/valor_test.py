"""VALOR's recipe (configs/valor.py) against PyTorch / numpy transcriptions of Franklin905/VALOR `main_avvp.py`.

The oracles, written from the official code (not from avvp_jax):
  * `official_lr_warm_up_cos_anneal`: `lr_warm_up_cos_anneal(optimizer, cur_epoch, warm_up_epoch, max_epoch,
    lr_min, lr_max)`, called before each epoch with cur_epoch = 1, ..., epochs, returning the lr it sets;
  * `official_valor_loss`: `train()`'s loss, `nn.BCELoss()(output.clamp_(1e-7, 1 - 1e-7), labels)` +
    `F.binary_cross_entropy_with_logits(frame_logits[:, :, 0], audio_pseudo_labels)` + the same for
    `frame_logits[:, :, 1]` and the visual labels;
  * the optimizer: `optim.AdamW(lr, weight_decay=1e-3, betas=(0.5, 0.999), eps=1e-8)` after
    `nn.utils.clip_grad_norm_(params, 1.0)`, with the lr set per epoch by the schedule.
torch is the `parity` extra, required here.
"""

import json
import math
import os

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import torch
from torch.nn import functional as F

from avvp_jax import checkpoint as checkpoint_lib
from avvp_jax import models
from avvp_jax import state as state_lib
from avvp_jax import train
from avvp_jax import workdir as workdir_lib
from avvp_jax.errors import InputError
from avvp_jax.tasks.llp import batch_keys
from avvp_jax.tasks.llp import losses
from avvp_jax.tasks.llp import task as llp_task
from configs import common
from configs import han
from configs import valor

# Fields configs/common.py gained with the schedule option, Adam's moments and the tie rule.
NEW_OPTIMIZER_FIELDS = ("schedule", "warmup_epochs", "final_lr_divisor", "b1", "b2", "eps")


def official_lr_warm_up_cos_anneal(cur_epoch, warm_up_epoch, max_epoch, lr_min, lr_max):
  """The lr VALOR's lr_warm_up_cos_anneal writes into every param group (math, not numpy: as official)."""
  if cur_epoch < warm_up_epoch:
    lr = cur_epoch / warm_up_epoch * lr_max
  else:
    lr = lr_min + 0.5 * (lr_max - lr_min) * (
        1.0 + math.cos((cur_epoch - warm_up_epoch) / (max_epoch - warm_up_epoch) * math.pi)
    )
  return lr


def official_valor_loss(output, frame_logits, labels, audio_pseudo_labels, visual_pseudo_labels):
  """VALOR's train() loss on torch tensors: (B, C) output, (B, T, 2, C) frame_logits, (B, T, C) labels."""
  output = output.clone().clamp_(min=1e-7, max=1 - 1e-7)
  loss_video = torch.nn.BCELoss()(output, labels)
  loss_valor_a = F.binary_cross_entropy_with_logits(frame_logits[:, :, 0], audio_pseudo_labels)
  loss_valor_v = F.binary_cross_entropy_with_logits(frame_logits[:, :, 1], visual_pseudo_labels)
  return loss_valor_a + loss_valor_v + loss_video, (loss_video, loss_valor_a, loss_valor_v)


def _real(config):
  """`config` as on real features (a features_dir is set), so the synthetic recipe does not apply."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.data.features_dir = "/real/features"
  return config


class ScheduleTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("valor", None, 1e-4, 1e-6),
      ("valor_plus", "plus", 3e-4, 3e-6),
      ("valor_plusplus", "plusplus", 3e-4, 3e-6),
  )
  def test_every_epoch_matches_the_official_schedule(self, preset, lr_max, lr_min):
    config = _real(valor.get_config(preset))
    self.assertEqual((config.num_epochs, config.optimizer.warmup_epochs), (60, 10))
    steps_per_epoch = 157  # 10,000 clips in batches of 64, the last one partial
    schedule = state_lib.learning_rate_schedule(config, steps_per_epoch)
    for epoch in range(1, 61):
      expected = official_lr_warm_up_cos_anneal(epoch, 10, 60, lr_min, lr_max)
      for step in ((epoch - 1) * steps_per_epoch, epoch * steps_per_epoch - 1):
        self.assertAlmostEqual(
            float(schedule(jnp.asarray(step))), expected, delta=expected * 1e-5, msg=(epoch, step)
        )
    self.assertAlmostEqual(float(schedule(0)), lr_max / 10, delta=lr_max * 1e-6)  # epoch 1
    self.assertAlmostEqual(float(schedule(59 * steps_per_epoch)), lr_min, delta=lr_min * 1e-5)

  def test_other_lengths_and_no_warmup(self):
    config = _real(valor.get_config())
    config.num_epochs, config.optimizer.warmup_epochs = 25, 0
    config.optimizer.final_lr_divisor = 10.0
    schedule = state_lib.learning_rate_schedule(config, steps_per_epoch=3)
    got = [float(schedule(3 * (e - 1) + 1)) for e in range(1, 26)]
    expected = [official_lr_warm_up_cos_anneal(e, 0, 25, 1e-5, 1e-4) for e in range(1, 26)]
    np.testing.assert_allclose(got, expected, rtol=1e-5)

  def test_synthetic_recipe_anneals_over_its_own_epochs(self):
    config = valor.get_config()
    config.synthetic_num_epochs, config.synthetic_learning_rate = 20, 5e-4
    schedule = state_lib.learning_rate_schedule(config, steps_per_epoch=4)
    got = [float(schedule(4 * (e - 1))) for e in range(1, 21)]
    expected = [official_lr_warm_up_cos_anneal(e, 10, 20, 5e-6, 5e-4) for e in range(1, 21)]
    np.testing.assert_allclose(got, expected, rtol=1e-5)

  def test_step_schedule_is_unchanged(self):
    config = _real(han.get_config())
    self.assertEqual(config.optimizer.schedule, "step")
    schedule = state_lib.learning_rate_schedule(config, steps_per_epoch=5)
    got = [float(schedule(5 * e)) for e in range(40)]
    np.testing.assert_allclose(got, [3e-4 * 0.1 ** (e // 10) for e in range(40)], rtol=1e-6)

  def test_bad_fields_are_one_line(self):
    for field, value, pattern in (
        ("schedule", "cosine", r"config.optimizer.schedule 'cosine' is unknown"),
        ("warmup_epochs", -1, r"warmup_epochs=-1 must be 0 or more"),
        ("final_lr_divisor", 0.5, r"final_lr_divisor=0.5 must be at least 1"),
        ("b1", 1.0, r"b1=1.0, b2=0.999, eps=1e-08: Adam needs"),
    ):
      config = valor.get_config("tiny")
      config.optimizer[field] = value
      with self.assertRaisesRegex(InputError, pattern) as raised:
        state_lib.resolve_config(config)
      self.assertNotIn("\n", str(raised.exception))


class OptimizerTest(absltest.TestCase):

  def test_three_epochs_of_steps_match_torch_adamw_with_clipping(self):
    """make_optimizer on VALOR's config vs torch AdamW(betas (0.5, 0.999), wd 1e-3) + clip_grad_norm_(1.0),
    with the lr of each epoch from the official schedule (2 steps per epoch)."""
    config = _real(valor.get_config())
    tx, _ = state_lib.make_optimizer(config, steps_per_epoch=2)
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(4, 3)).astype(np.float32)
    grads = [
        rng.normal(scale=s, size=(4, 3)).astype(np.float32) for s in (0.1, 3.0, 0.5, 2.0, 0.2, 1.0)
    ]
    params = {"w": jnp.asarray(w0)}
    opt_state = tx.init(params)
    for g in grads:
      updates, opt_state = tx.update({"w": jnp.asarray(g)}, opt_state, params)
      params = jax.tree.map(lambda p, u: p + u, params, updates)
    weight = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    optimizer = torch.optim.AdamW(
        [weight], lr=1e-4, weight_decay=1e-3, betas=(0.5, 0.999), eps=1e-8
    )
    for k, g in enumerate(grads):
      if k % 2 == 0:  # before each epoch
        for group in optimizer.param_groups:
          group["lr"] = official_lr_warm_up_cos_anneal(k // 2 + 1, 10, 60, 1e-6, 1e-4)
      optimizer.zero_grad()
      weight.grad = torch.from_numpy(g.copy())
      torch.nn.utils.clip_grad_norm_([weight], 1.0)
      optimizer.step()
    np.testing.assert_allclose(
        np.asarray(params["w"]), weight.detach().numpy(), rtol=1e-6, atol=1e-7
    )
    moved = np.abs(np.asarray(params["w"]) - w0).max()
    self.assertGreater(moved, 1e-6)  # the comparison is not of two unmoved weights


class LossTest(absltest.TestCase):

  def _batch(self, seed=0, batch=5, steps=10, classes=25):
    rng = np.random.default_rng(seed)
    video = rng.uniform(size=(batch, classes)).astype(np.float32)
    video[0, :3] = (0.0, 1.0, 1e-9)  # clamped, as the official clamp_
    logits = rng.normal(scale=4.0, size=(batch, steps, 2, classes)).astype(np.float32)
    logits[1, 0, 0, :2] = (40.0, -40.0)  # saturated: the stable form stays finite
    labels = (rng.uniform(size=(batch, classes)) < 0.2).astype(np.float32)
    audio = (rng.uniform(size=(batch, steps, classes)) < 0.3).astype(np.float32)
    visual = (rng.uniform(size=(batch, steps, classes)) < 0.3).astype(np.float32)
    outputs = {
        "video_prob": video,
        "segment_audio_logits": logits[:, :, 0],
        "segment_visual_logits": logits[:, :, 1],
    }
    batch_dict = {
        batch_keys.LABEL: labels,
        batch_keys.AUDIO_PSEUDO_LABEL: audio,
        batch_keys.VISUAL_PSEUDO_LABEL: visual,
    }
    torch_args = [torch.from_numpy(x) for x in (video, logits, labels, audio, visual)]
    return outputs, batch_dict, torch_args

  def test_one_batch_matches_the_official_loss(self):
    outputs, batch, torch_args = self._batch()
    loss, terms = losses.compute_loss(valor.get_config().loss, outputs, batch)
    expected, (video, audio, visual) = official_valor_loss(*torch_args)
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-6)
    for key, value in (("video", video), ("audio_segment", audio), ("visual_segment", visual)):
      np.testing.assert_allclose(float(terms[key]), float(value), rtol=1e-6, err_msg=key)

  def test_gradients_match_the_official_loss(self):
    outputs, batch, torch_args = self._batch(seed=3)
    config = valor.get_config().loss
    grad = jax.grad(lambda o: losses.compute_loss(config, o, batch)[0])(
        {k: jnp.asarray(v) for k, v in outputs.items()}
    )
    video, logits = (torch_args[0].clone().requires_grad_(), torch_args[1].clone().requires_grad_())
    official_valor_loss(video, logits, *torch_args[2:])[0].backward()
    np.testing.assert_allclose(grad["video_prob"], video.grad.numpy(), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(
        grad["segment_audio_logits"], logits.grad[:, :, 0].numpy(), rtol=1e-5, atol=1e-9
    )
    np.testing.assert_allclose(
        grad["segment_visual_logits"], logits.grad[:, :, 1].numpy(), rtol=1e-5, atol=1e-9
    )

  def test_padded_clips_do_not_count(self):
    outputs, batch, torch_args = self._batch(seed=1)
    batch[batch_keys.MASK] = np.array([1, 1, 1, 0, 0], np.float32)
    loss, _ = losses.compute_loss(valor.get_config().loss, outputs, batch)
    expected, _ = official_valor_loss(
        *[x[:3] for x in torch_args]
    )  # the official smaller last batch
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-6)

  def test_model_logits_are_the_segment_probabilities_before_the_sigmoid(self):
    config = state_lib.resolve_config(valor.get_config("tiny"))
    model = state_lib.build_model(config)
    inputs = state_lib.dummy_inputs(config, batch_size=2)
    rng = np.random.default_rng(0)
    inputs = [None if x is None else rng.normal(size=x.shape).astype(np.float32) for x in inputs]
    params = model.init(jax.random.key(0), *inputs, train=False)
    out = model.apply(params, *inputs, train=False)
    for m in ("audio", "visual"):
      np.testing.assert_allclose(
          jax.nn.sigmoid(out[f"segment_{m}_logits"]), out[f"segment_{m}_prob"], rtol=1e-6
      )

  def test_switches_and_missing_labels(self):
    outputs, batch, torch_args = self._batch(seed=2)
    config = valor.get_config().loss
    config.visual_segment_loss = False
    loss, terms = losses.compute_loss(config, outputs, batch)
    _, (video, audio, _) = official_valor_loss(*torch_args)
    np.testing.assert_allclose(float(loss), float(video + audio), rtol=1e-6)
    self.assertEqual(float(terms["visual_segment"]), 0.0)
    self.assertEqual(losses.needs_pseudo_labels(config), ["audio_segment_loss"])
    del batch[batch_keys.AUDIO_PSEUDO_LABEL]
    with self.assertRaisesRegex(InputError, "no audio segment pseudo labels"):
      losses.compute_loss(config, outputs, batch)
    run = valor.get_config("tiny")
    run.data.pseudo_labels = ""
    with self.assertRaisesRegex(InputError, r"config.loss.audio_segment_loss is True but"):
      state_lib.resolve_config(run)


class RunCardTest(absltest.TestCase):

  def test_official_recipe(self):
    config = valor.get_config()
    han_section = config.model.han
    self.assertEqual(
        (config.model.hidden_dim, han_section.num_layers, han_section.num_heads),
        (512, 1, 8),
    )
    self.assertEqual((han_section.ffn_dim, han_section.stacking), (1024, "sequential"))
    opt = config.optimizer
    self.assertEqual(
        (opt.name, opt.learning_rate, opt.weight_decay, opt.b1, opt.b2, opt.eps),
        ("adamw", 1e-4, 1e-3, 0.5, 0.999, 1e-8),
    )
    self.assertEqual(
        (opt.grad_clip_norm, opt.schedule, opt.warmup_epochs), (1.0, "warmup_cosine", 10)
    )
    self.assertEqual((config.batch_size, config.num_epochs), (64, 60))
    self.assertEqual(
        (config.checkpoint.best_metric, config.checkpoint.best_rule), ("segment/type", ">")
    )
    self.assertEqual(config.loss.name, "valor")

  def test_plus_presets(self):
    plus = state_lib.resolve_config(valor.get_config("plus"))
    self.assertEqual((plus.model.hidden_dim, plus.model.han.num_layers), (256, 4))
    self.assertEqual((plus.optimizer.learning_rate, plus.data.layout), (3e-4, "official"))
    plusplus = state_lib.resolve_config(valor.get_config("plusplus"))
    self.assertEqual((plusplus.model.hidden_dim, plusplus.model.han.num_layers), (256, 4))
    self.assertEqual(plusplus.data.layout, "clip_clap")
    self.assertEqual(dict(plusplus.model.input_dims), {"audio": 768, "frames": 768, "motion": 0})
    model = state_lib.build_model(plusplus)
    inputs = state_lib.dummy_inputs(plusplus, batch_size=1)
    self.assertIsNone(inputs[2])
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), *inputs, train=False))
    self.assertEqual(variables["params"]["embed"]["fc_a"]["kernel"].shape, (768, 256))
    with self.assertRaisesRegex(ValueError, "unknown preset 'plus_plus'"):
      valor.get_config("plus_plus")

  def test_plusplus_trains_on_the_synthetic_clip_clap_layout(self):
    # VALOR++ at the micro width of :tiny (64 clips, 1 epoch).
    config = common.apply_preset(valor.get_config("plusplus"), "tiny")
    workdir = self.create_tempdir().full_path
    scores = train.train_and_evaluate(config, workdir)
    self.assertBetween(scores["segment/type"], 0.0, 100.0)
    stored = json.load(open(os.path.join(workdir, checkpoint_lib.CONFIG_FILENAME)))
    self.assertEqual(stored["data"]["layout"], "clip_clap")
    self.assertEqual(stored["model"]["input_dims"], {"audio": 768, "frames": 768, "motion": 0})


class BackfillTest(absltest.TestCase):

  def _old(self, config):
    """`config` as a config.json written before the schedule, moment and tie fields existed."""
    old = ml_collections.ConfigDict(config.to_dict())
    for key in NEW_OPTIMIZER_FIELDS:
      del old.optimizer[key]
    del old.checkpoint["best_rule"]
    return old

  def test_old_configs_read_as_they_ran(self):
    new = han.get_config("tiny")
    old = state_lib.backfilled(self._old(new))
    self.assertEqual(
        {k: old.optimizer[k] for k in NEW_OPTIMIZER_FIELDS},
        dict(schedule="step", warmup_epochs=0, final_lr_divisor=100.0, b1=0.9, b2=0.999, eps=1e-8),
    )
    self.assertEqual(old.checkpoint.best_rule, ">=")
    self.assertEqual(workdir_lib.differences(old, new), {})  # today's HAN is what the old one ran
    state_lib.resolve_config(old)
    schedule = state_lib.learning_rate_schedule(old, steps_per_epoch=3)
    self.assertAlmostEqual(float(schedule(0)), old.optimizer.learning_rate, delta=1e-9)

  def test_old_workdir_continues_and_a_cosine_run_keeps_its_epochs(self):
    directory = self.create_tempdir().full_path
    old_workdir = os.path.join(directory, "old")
    os.makedirs(old_workdir)
    checkpoint_lib.save_config(old_workdir, self._old(han.get_config("tiny")))
    stored = json.load(open(os.path.join(old_workdir, checkpoint_lib.CONFIG_FILENAME)))
    self.assertNotIn("schedule", stored["optimizer"])
    longer = han.get_config("tiny")
    longer.synthetic_num_epochs = 3
    changes = workdir_lib.check(old_workdir, state_lib.resolve_config(longer))
    self.assertEqual(changes, {"synthetic_num_epochs": (1, 3)})
    cosine = os.path.join(directory, "cosine")
    os.makedirs(cosine)
    checkpoint_lib.save_config(cosine, state_lib.resolve_config(valor.get_config("tiny")))
    longer = valor.get_config("tiny")
    longer.synthetic_num_epochs = 3
    with self.assertRaisesRegex(
        InputError, r"the epochs optimizer.schedule='warmup_cosine' anneals over is 1 there, 3 here"
    ):
      workdir_lib.check(cosine, state_lib.resolve_config(longer))
    longer.log_every_steps = 7  # a field that may change
    longer.synthetic_num_epochs = 1
    self.assertEqual(
        workdir_lib.check(cosine, state_lib.resolve_config(longer)), {"log_every_steps": (1, 7)}
    )


class ModelTest(absltest.TestCase):

  def test_valor_is_the_existing_han_with_parameters(self):
    config = valor.get_config()
    model = models.build_model(config.model, llp_task.META)
    self.assertIsInstance(model.encoder, models.han.HANEncoder)
    self.assertEqual(
        (model.encoder.num_heads, model.encoder.ffn_dim, model.encoder.stacking),
        (8, 1024, "sequential"),
    )


if __name__ == "__main__":
  absltest.main()
