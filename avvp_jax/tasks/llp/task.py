"""LLP as a task: audio-visual video parsing, 25 classes, 10 one-second segments, weak training labels.

What the trainer asks of it (`avvp_jax.task`):
  meta          the 25 LLP classes, 10 segments, the features of `config.data.layout` / `frames` at the widths
                of `config.model.input_dims` (which follow the layout unless set by hand)
  check_config  the data fields: layout, features folder, pseudo labels against the loss, the synthetic
                set's LEAP label table
  recipe        the reduced recipe of the embedded SYNTHETIC data (`synthetic_num_epochs`,
                `synthetic_learning_rate`), else the config's own epochs and learning rate
  prepare_data  `run_data.prepare_run`: the TFDS build's per-host streams, pseudo labels attached
  guidance      the weak labels and segment pseudo labels of a training batch (LINK's PLSIM reads them)
  loss          `losses.compute_loss` (HAN, LEAP, LINK, VALOR, MA, JoMoLD, CVCM, UWAV)
  label_denoiser JoMoLD's per-batch denoising, CVCM's cross-video batch (`cvcm_mix`), UWAV's per-step mixup
                draws (`uwav.make_mixup_step`)
  evaluators    "parsing": the official segment- and event-level F1s (`evaluator.ParsingEvaluator`)
"""

from __future__ import annotations

from typing import Any, Mapping

from absl import logging
import ml_collections

from avvp_jax.tasks.llp import losses as losses_lib
from avvp_jax import task as task_lib
from avvp_jax.tasks.llp import annotations
from avvp_jax.tasks.llp import batch_keys
from avvp_jax.tasks.llp import cvcm_mix
from avvp_jax.tasks.llp import denoising
from avvp_jax.tasks.llp import features as features_lib
from avvp_jax.tasks.llp import refined_labels
from avvp_jax.tasks.llp import simulated_teacher
from avvp_jax.tasks.llp import synthetic as synthetic_lib
from avvp_jax.tasks.llp import uwav
from avvp_jax.errors import InputError
from avvp_jax.tasks.llp import evaluator as evaluator_lib
from avvp_jax.tasks.llp import metrics as metrics_lib

INPUT_KEYS = batch_keys.FEATURE_KEYS  # the model's positional inputs (motion absent: None)
REFINED_LABEL_LOSSES = ("ma", "cvcm")  # the losses that read config.data.refined_labels


def _meta(layout: str, frames: str, input_dims: Mapping[str, int]) -> task_lib.Meta:
  """The facts of LLP features of `layout` (`frames` pooled or raw) at the widths `input_dims`."""
  shapes = features_lib.output_shapes(layout, frames)
  return task_lib.Meta(
      task="llp",
      class_names=annotations.CLASSES,
      num_segments=annotations.NUM_SECONDS,
      features=tuple(  # a stream the layout lacks but the model reads (VALOR++'s motion): per second
          task_lib.FeatureSpec(
              name, (shapes[name][0] if name in shapes else annotations.NUM_SECONDS, int(width))
          )
          for name in INPUT_KEYS
          if (width := input_dims.get(name))
      ),
      frames_per_segment=features_lib.FRAMES_PER_SECOND,
      splits=annotations.SPLITS,
      eval_splits=("val", "test"),
  )


# The official layout's facts: what a model built outside a run (tests, converters) is sized by.
META = _meta("official", "pooled", dict(audio=128, frames=2048, motion=512))


class LLPTask(task_lib.Task):
  """Audio-visual video parsing on LLP (see the module docstring)."""

  name = "llp"
  input_keys = INPUT_KEYS
  evaluators = {"parsing": evaluator_lib.ParsingEvaluator}
  default_evaluator = "parsing"
  default_best_metric = "segment/type"
  # The reduced recipe of the embedded synthetic data (configs/common.py), applied here and nowhere else:
  # epochs and learning rate by `recipe`, LEAP's label table by `check_config`.
  recipe_replacements = {
      "num_epochs": ("synthetic_num_epochs", 0),
      "optimizer.learning_rate": ("synthetic_learning_rate", 0.0),
      "model.leap.label_embeddings": ("synthetic_label_embeddings", ""),
  }

  def meta(self, config: ml_collections.ConfigDict) -> task_lib.Meta:
    layout = config.data.get("layout", "official")
    frames = "pooled" if layout == "clip_clap" else config.data.get("frames", "pooled")
    return _meta(layout, frames, config.model.input_dims)

  def check_config(self, config: ml_collections.ConfigDict) -> None:
    data = config.data
    synthetic = synthetic_lib.is_synthetic(data)
    table = self.replacement(config, "model.leap.label_embeddings")
    if (
        table
        and config.model.decoder == "leap"
        and config.model.leap.label_embeddings == "packaged"
    ):  # an explicitly chosen table is kept; recorded so in config.json
      config.model.leap.label_embeddings = table
    if data.pseudo_labels == simulated_teacher.SIMULATED and not synthetic:
      raise InputError(
          "config.data.pseudo_labels='simulated' exists only for the embedded synthetic data (it "
          "simulates a teacher from the set's hidden dense labels): with real features point it at "
          "VALOR's pseudo-label folder or at one made by launch/make_pseudo_labels.py."
      )
    if (
        config.loss.name == "uwav"
    ):  # a UWAV student: segment labels with the teacher's logits beside them
      if config.model.decoder != "mmil":
        raise InputError(
            "config.loss.name='uwav' trains the segment classifier's logits (MMIL's fc_prob): use "
            "config.model.decoder='mmil'."
        )
      if not data.pseudo_labels:
        raise InputError(
            "config.loss.name='uwav' needs its teacher: set --config.data.pseudo_labels to a folder made by "
            "launch/make_pseudo_labels.py --uwav (or 'simulated' on the embedded synthetic data)."
        )
      if data.pseudo_labels != simulated_teacher.SIMULATED:
        uwav.check_folder(data.pseudo_labels)
    needed = losses_lib.needs_pseudo_labels(config.loss)
    if needed and not data.pseudo_labels:
      raise InputError(
          f"config.loss.{needed[0]} is True but config.data.pseudo_labels is empty: give segment pseudo "
          "labels (VALOR's folder, one made by launch/make_pseudo_labels.py, or 'simulated' on the "
          f"embedded synthetic data), or set --config.loss.{'=False --config.loss.'.join(needed)}=False."
      )
    loss = config.loss
    if loss.get("denoise", False):  # JoMoLD's stage 3: the ratio file, its warm-up, the HAN encoder
      if loss.name != "jomold" or config.model.encoder != "han":
        raise InputError(
            "config.loss.denoise is JoMoLD's: use config.loss.name='jomold' with config.model.encoder='han' "
            "(or set --config.loss.denoise=False)."
        )
      if not loss.noise_ratios:
        raise InputError(
            "config.loss.denoise is True but config.loss.noise_ratios is empty: give a noise_ratios.npz "
            "(stage 2, launch/make_noise_ratios.py, or JoMoLD's released file; docs/recipes.md)."
        )
      # The file itself is read when the train step is made (evaluating a workdir does not need it).
      denoising.ratio_factor(0, 1, loss.denoise_warm_up, loss.denoise_warm_up_epochs)
    if data.get("refined_labels", "") == refined_labels.REQUIRED:
      raise InputError(
          "config.data.refined_labels is required by this config (MA's retraining, configs/ma.py:retrain, "
          "or CVCM, configs/cvcm.py): "
          "pass --config.data.refined_labels=DIR, a folder written by launch/refine_labels.py (or MA's "
          "need_to_change.pkl)."
      )
    if data.get("refined_labels", ""):
      if config.loss.name not in REFINED_LABEL_LOSSES:
        raise InputError(
            f"config.data.refined_labels is set but the {config.loss.name!r} loss reads no modality-level "
            "labels: use --config.loss.name=ma (configs/ma.py:retrain) or cvcm (configs/cvcm.py), or leave "
            "config.data.refined_labels empty."
        )
      refined_labels.resolve_file(
          data.refined_labels
      )  # a missing file fails before the data are built
    if data.features_dir:  # the folder and its layout, before TFDS is asked
      features_lib.check_layout_folders(data.features_dir, data.layout)
    _input_dims_from_layout(config)

  def synthetic(self, config: ml_collections.ConfigDict) -> bool:
    return synthetic_lib.is_synthetic(config.data)

  def prepare_data(self, config: ml_collections.ConfigDict, *, train: bool = True):
    from avvp_jax.tasks.llp import run_data  # pylint: disable=g-import-not-at-top  (TensorFlow only when data are read)

    return run_data.prepare_run(config, train=train)

  def guidance(self, batch: Mapping[str, Any]) -> dict[str, Any]:
    """The weak labels as `video_label` and (when the batch has them) the segment pseudo labels as
    `segment_labels`: training-time inputs of LINK's PLSIM, ignored by every other model. A CVCM batch with
    cross-video pairs (`cvcm_mix`: B clips, then B pair rows) adds `scored_rows=B`: its loss reads the pair
    rows' encoded segments and temporal-attention logits only, so the decoder scores the B clips alone.
    """
    guidance = {"video_label": batch[batch_keys.LABEL]}
    if all(key in batch for key in batch_keys.PSEUDO_LABELS):
      guidance["segment_labels"] = tuple(batch[key] for key in batch_keys.PSEUDO_LABELS)
    if losses_lib.CVCM_PARTNER in batch:
      guidance["scored_rows"] = int(batch[losses_lib.CVCM_PARTNER].shape[0])
    return guidance

  def label_denoiser(self, config, model, apply, steps_per_epoch):
    """JoMoLD's stage-3 relabelling (`denoising.make_denoiser`) when `config.loss.denoise`; CVCM's per-step
    batch (`cvcm_mix.make_mixer`: its warm-up flag and cross-video pairs) for the "cvcm" loss; UWAV's per-step
    mixup draws (`uwav.make_mixup_step`) for the "uwav" loss with a mixup term; else None.
    """
    if config.loss.name == "cvcm":
      return cvcm_mix.make_mixer(config.loss, steps_per_epoch)
    if config.loss.name == "uwav" and config.loss.uwav_mixup_weight:
      return uwav.make_mixup_step(config.loss, self.meta(config).num_segments)
    if not config.loss.get("denoise", False):
      return None
    return denoising.make_denoiser(
        config.loss,
        model,
        apply,
        steps_per_epoch,
        config.batch_size,
        self.meta(config).num_classes,
    )

  def make_evaluator(self, kind, meta, config=None):
    """The parsing evaluator with `config.eval_thresholds` (per-class segment thresholds; empty: the official
    0.5) and `settings` naming the thresholds, the decoder's segment gating and the selection rule.
    """
    if config is None:
      return super().make_evaluator(kind, meta)
    path = config.get("eval_thresholds", "")
    thresholds = evaluator_lib.load_thresholds(path, meta.num_classes) if path else None
    decoder = config.model.decoder
    gate = (
        config.model.get(decoder, {}).get("filter", "union")
        if decoder in ("mmil", "leap")
        else None
    )
    settings = {
        "segment_thresholds": path or f"official {metrics_lib.OFFICIAL_THRESHOLD}",
        "segment_gate": {
            "union": "whole-video prediction (official AVVP)",
            "modality": "each modality's video prediction (MA's, JoMoLD's)",
        }.get(gate, f"the {decoder} decoder's"),
        "selection": f"best val {config.checkpoint.best_metric} ({config.checkpoint.best_rule})",
    }
    return self.evaluators[kind](meta, thresholds=thresholds, settings=settings)

  def loss(self, loss_config, outputs, batch):
    return losses_lib.compute_loss(loss_config, outputs, batch)

  def data_line(self, config: ml_collections.ConfigDict) -> str:
    if synthetic_lib.is_synthetic(config.data):
      return "SYNTHETIC data (avvp_jax.tasks.llp.synthetic)"
    return config.data.features_dir


def _input_dims_from_layout(config: ml_collections.ConfigDict) -> None:
  """`config.model.input_dims` of `config.data.layout` when all three are still the official layout's
  defaults (configs/common.py) and another layout is chosen: `clip_clap` gives audio 768, frames 768 and no
  motion stream. Dims set by hand (any of the three changed) are kept; the data check names a mismatch.
  """
  layout = config.data.layout
  if layout == "official":
    return
  features_lib.check_layout(layout, config.data.frames)
  if dict(config.model.input_dims) != features_lib.input_dims("official"):
    return
  dims = features_lib.input_dims(layout)
  config.model.input_dims = ml_collections.ConfigDict(dims)
  logging.info(
      "config.model.input_dims from the %r layout: %s (set --config.model.input_dims.* to "
      "override).",
      layout,
      ", ".join(f"{name} {value}" for name, value in dims.items()),
  )


TASK = LLPTask()
