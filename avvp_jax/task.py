"""What a task family hands the trainer: its facts (`Meta`), data, losses and evaluators (`Task`).

The trainer's layer (`state`, `train`, `evaluate`, `checkpoint`, `workdir`) knows no dataset: it asks the task of
`config.task` (`avvp_jax.tasks.get`) for everything that depends on one, in the spirit of scenic's
`ClassificationModel` and nanodo's `get_model_and_loss`:

  meta(config)                 class names and count, segments per clip, the model's input features, splits
  check_config(config)         the task's checks and derived fields of a run config (unlocked copy, in place)
  recipe(config)               the epochs and peak learning rate the run trains with (a reduced recipe, say)
  prepare_data(config, train=) this host's `streams.Streams`: padded, masked, resumable, seed-stacked batches
  input_keys                   the batch entries the model reads, in the order the model takes them
  guidance(batch)              what a training batch also tells the model (e.g. labels for a refiner)
  label_denoiser(...)          an online relabelling of each training batch before the loss (JoMoLD), or None
  dummy_batch(meta, n)         zeros of the model inputs' shapes, for initialisation
  loss(loss_config, outputs, batch)  (scalar loss, {term: value})
  evaluators                   {type name: Evaluator class}, built by `make_evaluator(kind, meta, config)`
  default_evaluator, default_best_metric

An `Evaluator` has big_vision's shape: `batch_sums(outputs, batch)` is jittable and turns one batch into
masked sums (padding rows, `mask == 0`, count for nothing), `scores(totals)` turns the split-wide float64 sums
into the reported numbers, and `keys` names the headline scores (what `seed_report` averages over seeds and
what `checkpoint.best_metric` may name).

A new task family is a package under `avvp_jax/tasks/` with a `TASK` object of a `Task` subclass, and one
line in `avvp_jax/tasks/__init__.py`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

PyTree = Any
Batch = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
  """One model input of a clip: its batch key, per-clip shape (no batch axis) and dtype.

  E.g. LLP's official layout: `FeatureSpec("audio", (10, 128))`, `FeatureSpec("frames", (10, 2048))` (pooled)
  or `(80, 2048)` (raw), `FeatureSpec("motion", (10, 512))`.
  """

  name: str
  shape: tuple[int, ...]
  dtype: str = "float32"

  @property
  def width(self) -> int:
    """The last axis: the feature's channels."""
    return int(self.shape[-1])


@dataclasses.dataclass(frozen=True)
class Meta:
  """The facts of a task's data that size a model and its evaluation.

  Attributes:
    task: the task family's name (`config.task`).
    class_names: the classes in label order (`[C]` of every label array).
    num_segments: T, segments (seconds) per clip.
    features: the model's inputs, in `Task.input_keys` order (a stream the data lack is left out).
    splits: the data's splits; `eval_splits` those with dense labels to score.
    eval_splits: splits an evaluator scores.
    frames_per_segment: frames of the `frames` stream per segment as extracted (LLP's ResNet-152 frames: 8 a
      second); the data may hand them pooled (one per segment) or raw, and a model embedding takes both.
    supervision: what the training labels say: "weak" (one label set per clip, LLP's) or "full" (a label per
      segment, AVE's supervised setting); models with a head per setting (AVE's) are built for it.
  """

  task: str
  class_names: tuple[str, ...]
  num_segments: int
  features: tuple[FeatureSpec, ...]
  frames_per_segment: int = 1
  splits: tuple[str, ...] = ("train", "val", "test")
  eval_splits: tuple[str, ...] = ("val", "test")
  supervision: str = "weak"

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def feature(self, name: str) -> FeatureSpec | None:
    """The spec of input `name`; None when the data have no such stream."""
    return next((spec for spec in self.features if spec.name == name), None)

  def input_dims(self, names: tuple[str, ...]) -> dict[str, int]:
    """{name: width} of `names` (0 for a stream the data lack)."""
    return {name: spec.width if (spec := self.feature(name)) else 0 for name in names}


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How long and how fast a run trains: `num_epochs` passes at peak learning rate `learning_rate`.

  `note` says why it differs from the config's own fields (e.g. a reduced recipe on synthetic data); empty
  when it does not.
  """

  num_epochs: int
  learning_rate: float
  note: str = ""


class Evaluator:
  """Scores model outputs on padded batches (see the module docstring); subclasses set `keys`."""

  keys: tuple[str, ...] = ()
  # What the evaluation used beyond the official defaults, named in every report (`settings` in
  # eval_<split>.json), e.g. LLP's thresholds and segment gating; {} when nothing is configurable.
  settings: Mapping[str, Any] = {}
  # Whether the replicas' outputs averaged are a model to score (a seed ensemble): true of probabilities
  # (LLP's), not of outputs that are already decisions (AVE's `segment_class`).
  ensemble: bool = True

  def __init__(self, meta: Meta):
    self.meta = meta

  def batch_sums(self, outputs: Mapping[str, Any], batch: Batch) -> PyTree:
    """Jittable: masked sums of one batch (a pytree of arrays; `batch["mask"]` [B] is 0 on padding)."""
    raise NotImplementedError

  def scores(self, totals: PyTree) -> dict[str, Any]:
    """The scores from the split's float64 sums (`batch_sums` added over batches): `keys` and extras,
    with "num_clips" the number of real clips scored."""
    raise NotImplementedError


class Task:
  """A task family's facts, data, losses and evaluators (see the module docstring for each member)."""

  name: str = ""
  input_keys: tuple[str, ...] = ()
  evaluators: Mapping[str, type[Evaluator]] = {}
  default_evaluator: str = ""
  default_best_metric: str = ""
  # A reduced recipe's replacements (`recipe`, `check_config`): each config field it replaces -> (the field
  # holding the replacement, the value meaning "no replacement"); an explicit command-line value of the
  # replaced field switches its replacement off (`cli.explicit_over_recipe`).
  recipe_replacements: Mapping[str, tuple[str, Any]] = {}

  def meta(self, config) -> Meta:
    raise NotImplementedError

  def check_config(self, config) -> None:
    """Raises InputError on task fields that cannot work; may fill derived fields of the unlocked copy."""

  def synthetic(self, config) -> bool:
    """Whether the run trains on the task's embedded SYNTHETIC data (where `recipe_replacements` apply)."""
    del config
    return False

  def replacement(self, config, field: str) -> Any:
    """The reduced recipe's value for `field` (a key of `recipe_replacements`) on the synthetic data; None off
    it, or when its replacement is switched off."""
    name, off = self.recipe_replacements[field]
    value = config.get(name, off)
    if not self.synthetic(config) or value == off:
      return None
    return value

  def recipe(self, config) -> Recipe:
    """The config's epochs and peak learning rate, or the reduced recipe's on the synthetic data."""
    epochs, rate = int(config.num_epochs), float(config.optimizer.learning_rate)
    if not self.synthetic(config):
      return Recipe(epochs, rate)
    replaced = {field: self.replacement(config, field) for field in self.recipe_replacements}
    own = (epochs, rate)
    epochs = int(replaced.get("num_epochs") or epochs)
    rate = float(replaced.get("optimizer.learning_rate") or rate)
    if (epochs, rate) == own:  # nothing reduced (a micro preset, or replacements switched off)
      return Recipe(epochs, rate)
    return Recipe(
        epochs,
        rate,
        note=(
            f"SYNTHETIC data: reduced recipe ({epochs} epoch{'s' if epochs != 1 else ''} at peak learning "
            f"rate {rate:g}); set config.data.features_dir for real features and the full recipe "
            f"({config.num_epochs} epoch{'s' if config.num_epochs != 1 else ''})."
        ),
    )

  def prepare_data(self, config, *, train: bool = True):
    raise NotImplementedError

  def make_evaluator(self, kind: str, meta: Meta, config=None) -> Evaluator:
    """The evaluator `kind` of a run `config` (None: its defaults); a task whose evaluation has settings in
    the config (LLP's per-class thresholds) reads them here. Default: `evaluators[kind](meta)`."""
    del config
    return self.evaluators[kind](meta)

  def guidance(self, batch: Batch) -> dict[str, Any]:
    """Model keyword inputs a training batch gives (never at evaluation); default none."""
    del batch
    return {}

  def label_denoiser(self, config, model, apply, steps_per_epoch: int):
    """An online relabelling of each training batch before the loss, or None (the default: none).

    When given, the train step calls `denoiser(params, batch, rng, step)` and trains on the batch it returns
    (LLP: JoMoLD's joint modality label denoising); `apply(model, params, batch, rng)` runs a model in
    training mode. Scalar entries of the returned batch named `*_dropped` are logged as `denoise/<name>`.
    """
    del config, model, apply, steps_per_epoch
    return None

  def dummy_batch(self, meta: Meta, batch_size: int = 1) -> dict[str, np.ndarray]:
    """Zeros of the model inputs' shapes `[batch_size, ...]` (streams the data lack are left out)."""
    return {
        spec.name: np.zeros((batch_size, *spec.shape), spec.dtype)
        for spec in meta.features
        if spec.name in self.input_keys
    }

  def loss(
      self, loss_config, outputs: Mapping[str, Any], batch: Batch
  ) -> tuple[Any, dict[str, Any]]:
    raise NotImplementedError

  def data_line(self, config) -> str:
    """What the run's data are, for the launcher's last lines (e.g. a features folder)."""
    del config
    return self.name
