"""AVE as a task: audio-visual event localization, 28 classes + background, 10 one-second segments.

What the trainer asks of it (`avvp_jax.task`):
  meta          the 29 label columns (28 classes, then "Background" = `annotations.BACKGROUND`), 10 segments,
                inputs `audio` [10, 128] and `visual` [10, 7, 7, 512]
  check_config  `config.data.ave` (supervision "full" | "weak", the SYNTHETIC sizes), the features folder's
                files, that `config.loss.name` names an AVE loss and `checkpoint.best_metric` an AVE score
  recipe        the config's epochs and learning rate, or the reduced recipe on the SYNTHETIC set
  prepare_data  `pipeline.prepare`: the `avvp_ave` build's per-host streams
  loss          the loss of `config.loss.name`, imported when asked: the module
                `avvp_jax.tasks.ave.losses.<name>` (else the module `<name>`: one's own) defining
                `compute_loss(loss_config, outputs, batch) -> (scalar, {term: value})`
  evaluators    "accuracy": segment accuracy of the model's `segment_class` output (`evaluator`)
"""

from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType
from typing import Any, Mapping

import ml_collections

from avvp_jax import task as task_lib
from avvp_jax.errors import InputError
from avvp_jax.tasks.ave import annotations
from avvp_jax.tasks.ave import batch_keys
from avvp_jax.tasks.ave import data_config as data_config_lib
from avvp_jax.tasks.ave import evaluator as evaluator_lib
from avvp_jax.tasks.ave import features as features_lib
from avvp_jax.tasks.ave import synthetic as synthetic_lib

LOSSES_PACKAGE = "avvp_jax.tasks.ave.losses"

META = task_lib.Meta(
    task="ave",
    class_names=annotations.LABEL_NAMES,
    num_segments=annotations.NUM_SEGMENTS,
    features=tuple(
        task_lib.FeatureSpec(name, features_lib.SHAPES[name]) for name in batch_keys.FEATURE_KEYS
    ),
    splits=annotations.SPLITS,
    eval_splits=("val", "test"),
    supervision="full",
)


def loss_module(loss_config: ml_collections.ConfigDict) -> ModuleType:
  """The module of `config.loss.name`: `avvp_jax.tasks.ave.losses.<name>`, else the module `<name>` itself
  (the dotted path of one's own, as `--config.task` takes one).

  Raises:
    InputError: no such module, or one without `compute_loss`.
  """
  name = str(loss_config.get("name", ""))
  module = None
  for path in (f"{LOSSES_PACKAGE}.{name}", name) if name else ():
    try:
      module = importlib.import_module(path)
      break
    except ModuleNotFoundError as error:
      if error.name is None or not path.startswith(error.name):
        raise  # the module exists but one of its own imports is missing
  if module is None or not callable(getattr(module, "compute_loss", None)):
    raise InputError(
        f"config.loss.name {name!r} names no AVE loss: give the name of a module of {LOSSES_PACKAGE} "
        "(e.g. the model's), or the dotted path of an importable module that defines "
        "compute_loss(loss_config, outputs, batch)."
    )
  return module


class AVETask(task_lib.Task):
  """Audio-visual event localization on AVE (see the module docstring)."""

  name = "ave"
  input_keys = batch_keys.FEATURE_KEYS
  evaluators = {"accuracy": evaluator_lib.SegmentAccuracyEvaluator}
  default_evaluator = "accuracy"
  default_best_metric = "accuracy"
  # The reduced recipe of the embedded SYNTHETIC set (configs/common.py's synthetic_* fields; `Task.recipe`).
  recipe_replacements = {
      "num_epochs": ("synthetic_num_epochs", 0),
      "optimizer.learning_rate": ("synthetic_learning_rate", 0.0),
  }

  def meta(self, config: ml_collections.ConfigDict) -> task_lib.Meta:
    supervision = config.data.ave.supervision if "ave" in config.get("data", {}) else "full"
    return dataclasses.replace(META, supervision=supervision)

  def check_config(self, config: ml_collections.ConfigDict) -> None:
    if self.name == "ave" and config.model.get("encoder") == "cmm":
      raise InputError(
          "config.model.encoder 'cmm' is the cross-modal matcher (no event classes): train it with "
          "--config.task=ave_cmm (configs/ave_cmm.py)."
      )
    data = config.data
    if "ave" not in data:
      raise InputError(
          "config.data.ave is missing (a config written before AVE?): start from a config in configs/ "
          "(configs/common.py sets every data field)."
      )
    settings = data_config_lib.settings(data)
    rows, orders = annotations.load_splits(
        settings["labels_dir"], settings.get("splits", "standard")
    )
    if settings["synthetic"]:
      synthetic_lib.split_rows(
          orders,
          settings["synthetic_train_clips"],
          settings["synthetic_eval_clips"],
          settings["synthetic_seed"],
      )
    else:
      features_lib.check_features_dir(
          settings["features_dir"], len(rows), weak=settings["supervision"] == "weak"
      )
    loss_module(config.loss)
    metric = config.get("checkpoint", {}).get("best_metric", "")
    keys = self.evaluators[self.default_evaluator].keys
    if metric and metric not in keys:  # e.g. LLP's "segment/type" from an LLP base config
      raise InputError(
          f"config.checkpoint.best_metric={metric!r} is no AVE score: use one of {', '.join(keys)}, or "
          "leave it empty for the task's default."
      )

  def synthetic(self, config: ml_collections.ConfigDict) -> bool:
    return data_config_lib.is_synthetic(config.data)

  def prepare_data(self, config: ml_collections.ConfigDict, *, train: bool = True):
    del train
    from avvp_jax.tasks.ave import pipeline  # pylint: disable=g-import-not-at-top  (TensorFlow only when data are read)

    return pipeline.prepare(
        config.data,
        batch_size=config.batch_size,
        eval_batch_size=config.eval_batch_size,
        seed=config.seed,
    )

  def loss(
      self,
      loss_config: ml_collections.ConfigDict,
      outputs: Mapping[str, Any],
      batch: Mapping[str, Any],
  ) -> tuple[Any, dict[str, Any]]:
    return loss_module(loss_config).compute_loss(loss_config, outputs, batch)

  def data_line(self, config: ml_collections.ConfigDict) -> str:
    if data_config_lib.is_synthetic(config.data):
      return "SYNTHETIC AVE data (avvp_jax.tasks.ave.synthetic)"
    return config.data.features_dir


TASK = AVETask()
