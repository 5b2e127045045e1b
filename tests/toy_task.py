"""A toy second task family, as a user would write one: the proof that the `Task` seam holds.

Two classes, one feature `x` [4, 6] per clip, a TFDS build of a few generated clips, a video-level BCE, and an
accuracy evaluator. It is trained by `launch/train.py --config.task=toy_task` (with this folder on the path)
with no change to the trainer: its data go through `streams.Streams`, its model is the registry's (the one
feature fed as both streams: `input_keys = ("x", "x")`), its losses and scores through the task.
"""

from __future__ import annotations

import os
import pathlib

import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from avvp_jax import task as task_lib
from avvp_jax.data import streams

NUM_SEGMENTS, WIDTH, CLASSES = 4, 6, ("quiet", "loud")
SPLITS = {"train": 24, "val": 10}


class ToyBuild(tfds.core.GeneratorBasedBuilder):
  """Clips whose class is whether their feature's mean is positive (the build contract of `streams`)."""

  VERSION = tfds.core.Version("1.0.0")

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> pathlib.Path:
    return pathlib.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    enc = tfds.features.Encoding.BYTES
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict(
            {
                "x": tfds.features.Tensor(
                    shape=(NUM_SEGMENTS, WIDTH), dtype=np.float32, encoding=enc
                ),
                "label": tfds.features.Tensor(shape=(2,), dtype=np.float32, encoding=enc),
                "index": tfds.features.Scalar(dtype=np.int32),
            }
        ),
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(split, count) for split, count in SPLITS.items()}

  def _generate_examples(self, split: str, count: int):
    rng = np.random.default_rng(len(split))
    for row in range(count):
      loud = row % 2
      x = rng.normal(size=(NUM_SEGMENTS, WIDTH)).astype(np.float32) + (2.0 if loud else -2.0)
      yield row, {"x": x, "label": np.eye(2, dtype=np.float32)[loud], "index": row}

  def filenames(self, split: str) -> tuple[str, ...]:
    return tuple(f"{split}_{row}" for row in range(SPLITS[split]))


class AccuracyEvaluator(task_lib.Evaluator):
  """Clips whose every class is right (video probability thresholded at 0.5), in percent."""

  keys = ("accuracy",)

  def batch_sums(self, outputs, batch):
    right = jnp.all((outputs["video_prob"] >= 0.5) == (batch["label"] > 0.5), axis=-1)
    return {"right": jnp.sum(right * batch["mask"]), "count": jnp.sum(batch["mask"])}

  def scores(self, totals):
    count = float(totals["count"])
    return {"accuracy": 100.0 * float(totals["right"]) / count, "num_clips": int(count)}


class ToyTask(task_lib.Task):
  name = "toy"
  input_keys = ("x", "x")
  evaluators = {"accuracy": AccuracyEvaluator}
  default_evaluator = "accuracy"
  default_best_metric = "accuracy"

  def meta(self, config):
    del config
    return task_lib.Meta(
        task="toy",
        class_names=CLASSES,
        num_segments=NUM_SEGMENTS,
        features=(task_lib.FeatureSpec("x", (NUM_SEGMENTS, WIDTH)),),
        splits=tuple(SPLITS),
        eval_splits=("val",),
    )

  def prepare_data(self, config, *, train=True):
    del train
    folder = streams.keyed_dir(config.data.data_dir, "toy", {"version": "1.0.0"})
    builder = streams.build_once(lambda: ToyBuild(data_dir=os.fspath(folder)), "toy")
    return streams.Streams(
        builder=builder,
        feature_keys=("x",),
        label_keys=("label",),
        eval_label_keys=(),
        splits=tuple(SPLITS),
        batch_size=config.batch_size,
        eval_batch_size=config.eval_batch_size,
        seed=config.seed,
        description="a toy task",
    )

  def loss(self, loss_config, outputs, batch):
    del loss_config
    prob = jnp.clip(outputs["video_prob"], 1e-7, 1 - 1e-7)
    bce = -(batch["label"] * jnp.log(prob) + (1 - batch["label"]) * jnp.log(1 - prob)).mean(-1)
    loss = jnp.sum(bce * batch["mask"]) / jnp.maximum(jnp.sum(batch["mask"]), 1.0)
    return loss, {"bce": loss}


TASK = ToyTask()
