"""The data of an LLP run: this host's streams for a run config, checked against the model, with pseudo labels.

`prepare_run(config)` is what training and evaluation read: `pipeline.prepare` on `config.data` with the
run's batch sizes and seed, its feature widths checked against `config.model.input_dims`, and (for
training, when `config.data.pseudo_labels` is set) the training clips' segment pseudo labels attached, so
that `seed_train_batches` yields them beside the features: VALOR's folder or one made by
`launch/make_pseudo_labels.py`, or on the embedded synthetic data the SIMULATED ones ("simulated"), which
the synthetic build stores (computed once when it is made, `tfds_llp.AvvpLlp.simulated_pseudo_labels`).
Label files are checked and read one by one on the first start only: the build's folder keeps a stacked copy,
read while the files are unchanged (`pseudo_labels.load_pseudo_labels`' `cache_dir`).
"""

from __future__ import annotations

from typing import Sequence

from absl import logging
import ml_collections
import numpy as np

from avvp_jax.tasks.llp import losses as losses_lib
from avvp_jax.tasks.llp import annotations
from avvp_jax.tasks.llp import pipeline
from avvp_jax.tasks.llp import pseudo_labels
from avvp_jax.tasks.llp import refined_labels as refined_labels_lib
from avvp_jax.tasks.llp import simulated_teacher
from avvp_jax.tasks.llp import uwav
from avvp_jax.data import streams
from avvp_jax.errors import InputError


def prepare_run(config: ml_collections.ConfigDict, *, train: bool = True) -> streams.Streams:
  """This host's data of the run `config` (a checked config, `state.resolve_config`).

  Args:
    config: the run config: `config.data`, `batch_size`, `eval_batch_size`, `seed`, `model.input_dims`.
    train: attach the training pseudo labels (when `config.data.pseudo_labels` is set); False for
      evaluation, which reads the dense labels only.

  Raises:
    InputError: bad data, or features whose widths differ from `config.model.input_dims`.
  """
  data = pipeline.prepare(
      config.data,
      batch_size=config.batch_size,
      eval_batch_size=config.eval_batch_size,
      seed=config.seed,
  )
  expected = dict(config.model.input_dims)
  if data.input_dims != expected:
    raise InputError(
        f"the features have widths {data.input_dims} but config.model.input_dims is "
        f"{expected}: set --config.model.input_dims.<name> to match the features "
        f"(layout {config.data.layout!r})."
    )
  if train and config.data.pseudo_labels:
    data.train_extras = training_pseudo_labels(config, data.filenames("train"))
  if train:
    logging.info("%s", pseudo_label_line(config, data.train_extras, data.num_train_clips))
  if train and data.train_extras is not None and config.loss.name == "uwav":
    teacher = training_teacher(config, data.train_extras)  # logits and thresholds beside the labels
    logging.info("%s", teacher.describe())
    data.train_extras = _Extras((data.train_extras, teacher))
  if train and config.data.get("refined_labels", ""):
    refined = training_refined_labels(config, data.filenames("train"))
    logging.info("Modality-level labels for training: %s.", refined.describe())
    data.train_extras = (
        refined if data.train_extras is None else _Extras((data.train_extras, refined))
    )
  return data


class _Extras:
  """Several per-clip side data of the training clips, their batch entries merged."""

  def __init__(self, parts):
    self.parts = tuple(parts)

  def batch(self, index: np.ndarray) -> dict[str, np.ndarray]:
    return {key: value for part in self.parts for key, value in part.batch(index).items()}


def training_refined_labels(
    config: ml_collections.ConfigDict, filenames: Sequence[str]
) -> refined_labels_lib.RefinedLabels:
  """The modality-level labels (`config.data.refined_labels`) of the training clips `filenames`, checked
  against their weak labels (MA's pickle indexes exactly this list: the training split in label-file order).
  """
  weak = annotations.load_split("train", config.data.labels_dir or None)[0]
  row = {name: i for i, name in enumerate(weak.filenames)}
  missing = [name for name in filenames if name not in row]
  if missing:
    raise InputError(
        f"{len(missing)} training clips (e.g. {missing[0]}) are not in the training label file: read the "
        "clips and the labels from the same config.data."
    )
  weak_labels = weak.weak_labels[[row[name] for name in filenames]]
  return refined_labels_lib.load_refined_labels(config.data.refined_labels, filenames, weak_labels)


def training_teacher(
    config: ml_collections.ConfigDict, labels: pseudo_labels.PseudoLabels
) -> uwav.TeacherLogits:
  """A UWAV student's teacher logits, thresholds and class frequencies of the training clips of `labels`:
  read from `config.data.pseudo_labels/UWAV/`, or SIMULATED from the simulated labels (`uwav` docstring).
  """
  hard = {"audio": labels.audio, "visual": labels.visual}
  if config.data.pseudo_labels == simulated_teacher.SIMULATED:
    return uwav.simulated_teacher(hard)
  return uwav.load_teacher(config.data.pseudo_labels, labels.clip_ids, hard)


def pseudo_label_line(
    config: ml_collections.ConfigDict,
    labels: pseudo_labels.PseudoLabels | None,
    num_train_clips: int,
) -> str:
  """The log line that says whether segment pseudo labels were loaded, for how many training clips,
  and whether the loss reads them, e.g. "pseudo labels: VALOR files from DIR, audio+visual segment
  labels for 10000/10000 training clips (9871 with a positive second); read by the loss
  (audio_pseudo_labels, ...)".
  """
  if labels is None:
    return "pseudo labels: none (the model learns from video labels only)."
  source = config.data.pseudo_labels
  if source == simulated_teacher.SIMULATED:
    kind = "SIMULATED VALOR-like labels of the SYNTHETIC data"
  else:
    kind = f"{'SYNTHETIC ' if labels.synthetic else ''}VALOR-layout files from {source}"
  positive = (labels.audio.max(axis=(1, 2)) > 0) | (labels.visual.max(axis=(1, 2)) > 0)
  used = losses_lib.needs_pseudo_labels(config.loss) or (
      ["name='uwav'"] if config.loss.name == "uwav" else []
  )
  reader = (
      f"read by the loss ({', '.join(f'config.loss.{name}' for name in used)})"
      if used
      else f"but the {config.loss.name!r} loss reads none of them"
  )
  return (
      f"pseudo labels: {kind}, audio+visual segment labels for {len(labels)}/{num_train_clips} "
      f"training clips ({int(positive.sum())} with a positive second); {reader}."
  )


def training_pseudo_labels(
    config: ml_collections.ConfigDict, filenames: Sequence[str]
) -> pseudo_labels.PseudoLabels:
  """The segment pseudo labels of the training clips `filenames` named by `config.data.pseudo_labels`."""
  source = config.data.pseudo_labels
  if source != simulated_teacher.SIMULATED:
    weak = annotations.load_split("train", config.data.labels_dir or None)[0]
    row = {name: i for i, name in enumerate(weak.filenames)}
    weak_labels = (
        weak.weak_labels[[row[name] for name in filenames]]
        if all(n in row for n in filenames)
        else None
    )
    labels = pseudo_labels.load_pseudo_labels(
        source,
        filenames,
        weak_labels=weak_labels,
        cache_dir=pipeline.data_root(config.data) / pipeline.build_key(config.data),
    )
    logging.info("Segment pseudo labels for training: %s.", labels.describe())
    return labels
  builder = pipeline.make_builder(config.data)
  if not builder.is_prepared():
    builder = pipeline.ensure_built(config.data)
  simulated = builder.simulated_pseudo_labels()  # computed once, when the synthetic build was made
  logging.info("%s", simulated.summary())
  audio, visual = simulated.labels["train"]
  row = {name: i for i, name in enumerate(builder.filenames("train"))}
  missing = [name for name in filenames if name not in row]
  if missing:
    raise InputError(
        f"{len(missing)} training clips (e.g. {missing[0]}) are not in the synthetic build in "
        f"{builder.data_dir} that holds the SIMULATED pseudo labels: read the clips and the labels from "
        "the same config.data."
    )
  order = np.array([row[name] for name in filenames], np.int64)
  return pseudo_labels.PseudoLabels(
      clip_ids=tuple(annotations.clip_id(f) for f in filenames),
      audio=audio[order],
      visual=visual[order],
      weak_labels_checked=True,
      synthetic=True,
  )  # simulated within the weak labels: none outside them
