"""SYNTHETIC LLP-structured features: the embedded default dataset (numpy only).

Everything this module produces is SYNTHETIC. It is the data `launch/train.py` trains and evaluates on when
no features are given; every log line, marker file and description that mentions it says "synthetic".

What is real and what is drawn
  * Clips and weak labels are the real LLP ones (`avvp_jax.tasks.llp.annotations`): the training split is a
    seeded subset of the 10,000 real training clips with their real weak labels; validation (649) and test
    (1,200) are all real clips with their real weak and dense labels.
  * Dense training labels are drawn (`draw_dense_labels`) and only steer the feature generator; they are
    never shown to a model (the training `Split` carries weak labels only, as the real one does).
  * Features are generated from the dense labels: audio from the audio labels, frames and motion from the
    visual labels, so audio and visual events of a class differ in extent as in the real annotations.

Dense training labels follow LLP's statistics
  For each class c of a training clip's weak labels, the pair (audio seconds of c, visual seconds of c) is
  copied from a clip drawn uniformly among the real validation and test clips whose weak labels contain c
  and where c is audible or visible in at least one second (the per-class empirical joint distribution;
  the 38 real (clip, class) pairs with no dense event at all are left out, so every weak class of a drawn
  clip is present in at least one modality). This keeps, per class, the probability of being audible /
  visible / both, the number of events, their lengths and onsets, and the audio-visual asynchrony; classes
  are drawn independently of each other. `label_statistics` summarises labels; on the real validation +
  test labels (1,849 clips, 3,348 weak (clip, class) pairs):
    * P(audible | weak): 0.72 (Cat) to 1.00, mean over classes 0.94 (Speech 0.98);
    * P(visible | weak): 0.22 (Speech) to 1.00 (Blender), mean over classes 0.81;
    * P(audible and visible | weak): mean over classes 0.76;
    * events per present (clip, class): audio 1: 78%, 2: 17%, 3+: 4%; visual 1: 89%, 2: 9%, 3+: 2%;
    * seconds per present (clip, class): audio mean 7.1, 41% cover all 10 s; visual mean 8.2, 63% all 10 s;
    * per second: 1.23 audible classes (10% of seconds silent), 0.97 visible classes (20% show none).
  `tests/data_synthetic_test.py` checks that drawn training labels reproduce these per-class statistics.

Feature model (per modality m: audio, frames, motion; class labels y[t, c] of that modality)
  A latent of `LATENT_DIM` dimensions per second, mixed into the feature space by a fixed random matrix:
    h[t] = sum_c y[t, c] * a[t, c] * (z_m[c] + u[c]) + o + s * e[t]        (latent, [T, L])
    x[t] = g * (h[t] @ M_m) + mu_m + n[t]                                  (features, [T, D])
  z_m[c]: class prototypes (fixed per seed); confusable pairs (`CONFUSABLE_PAIRS`, e.g. Cello and
  Violin_fiddle) share `CONFUSABLE_SHARE` of their prototype (cosine similarity ~0.6); a[t, c]: per-second
  loudness/salience; u[c]: per-clip instance variation of a class; o: per-clip nuisance offset; g: per-clip
  gain; e[t]: per-second latent noise; n: isotropic noise per second (per frame for the 8 fps frames);
  mu_m: a fixed per-dimension mean.
  Overlapping events add. ResNet-152 frames and R(2+1)D motion are post-ReLU (non-negative) like their
  average-pooled sources; ResNet frames are 8 per second, each with its own latent frame noise, ReLU per
  frame, so pooled frames are exactly the mean of each second's 8 raw frames. VGGish audio is real-valued
  around a per-dimension mean with unit-order spread. In the clip_clap layout, CLAP audio and CLIP frames
  (1 per second, as VALOR extracts them) are L2-normalised per second, with a shared direction as real
  CLIP/CLAP embeddings have. The latent noise lies in the class subspace, so a linear probe on per-second
  features predicts the dense labels far better than chance but not perfectly.

SIMULATED segment pseudo labels of this set (`config.data.pseudo_labels = "simulated"`) are
`avvp_jax.tasks.llp.simulated_teacher`: a VALOR-like zero-shot teacher simulated on the dense labels, restricted to
the weak labels and calibrated to VALOR's quality on LLP.

Determinism: prototypes depend on (seed, layout); a clip's drawn labels depend only on (seed, filename) and
its features on (seed, layout, filename), through generators seeded by a hash of them. Any clip can be
generated alone, in any order, on any host, with identical bytes; a different seed gives different features.
Generation speed: bench/bench_pipeline.py (its "build" phase of the synthetic source).

Length: one generator (labels drawn, features made from them, the on-disk layout written); its parts share
the seeding scheme and the label statistics, and the simulated teacher already lives in simulated_teacher.py.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import pathlib
from typing import Sequence

import numpy as np

from avvp_jax.tasks.llp import annotations
from avvp_jax.tasks.llp import features
from avvp_jax.errors import InputError

NAME = "synthetic"  # what every output of this module calls the data
T = annotations.NUM_SECONDS  # 10 one-second segments
C = annotations.NUM_CLASSES  # 25 classes

# Per-clip feature shapes as generated, per layout (frames raw at `features.FRAMES_PER_SECOND`; "pooled"
# frames are [T, Df]), and the sub-folders holding `<clip id>.npy` per modality: both from
# `features.LAYOUTS`, the one source. On disk, VALOR's CLAP audio is a [64, 768] feature map per clip, which
# `features` reads as [T, 768].
LAYOUTS = tuple(features.LAYOUTS)
FEATURE_SHAPES = {layout: features.output_shapes(layout, "raw") for layout in LAYOUTS}
FEATURE_DIRS = {
    layout: {modality: folder for modality, (folder, _) in features.LAYOUTS[layout].items()}
    for layout in LAYOUTS
}
# Training clips of the default synthetic run (a seeded subset of the 10,000 real ones).
DEFAULT_NUM_TRAIN_CLIPS = 2000
MARKER_FILE = "SYNTHETIC.txt"  # written into every folder `launch/make_synthetic.py` fills


def is_synthetic(data_config) -> bool:
  """Whether `config.data` selects the embedded SYNTHETIC dataset: its `features_dir` is empty."""
  return not data_config.features_dir


# Classes whose prototypes overlap in every modality (hard to tell apart, as in LLP).
CONFUSABLE_PAIRS = (
    ("Cello", "Violin_fiddle"),
    ("Baby_laughter", "Baby_cry_infant_cry"),
    ("Car", "Motorcycle"),
    ("Lawn_mower", "Chainsaw"),
    ("Banjo", "Acoustic_guitar"),
    ("Speech", "Singing"),
    ("Vacuum_cleaner", "Blender"),
    ("Cheering", "Clapping"),
)
CONFUSABLE_SHARE = 0.6  # cosine similarity of the prototypes of a confusable pair
LATENT_DIM = 48  # width of the latent each second is built in before the fixed mixing matrix


@dataclasses.dataclass(frozen=True)
class ModalitySpec:
  """How one modality's features are generated (see the module docstring's feature model)."""

  dim: int  # feature width D
  frames_per_second: int = 1  # 8 for ResNet-152 frames
  activation: str = "linear"  # "relu" (CNN features), "linear" (VGGish) or "l2" (CLIP/CLAP)
  scale: float = 1.0  # multiplies h @ M (M has unit-variance entries, so per-dim std ~ scale * |h|)
  mean: float = 0.0  # average of the fixed per-dimension mean mu_m (drawn from an exponential)
  salience: tuple[float, float] = (0.5, 1.0)  # a[t, c] ~ U(low, high)
  instance: float = 0.45  # norm of the per-clip instance variation u[c] (prototypes have norm ~1)
  offset: float = 0.5  # norm of the per-clip nuisance offset o
  latent_noise: float = 1.6  # norm of the per-second latent noise s * e[t]
  frame_noise: float = 0.0  # norm of the extra latent noise of each raw frame (8 fps frames only)
  feature_noise: float = 0.3  # per-dimension std of the isotropic noise n[t] (relative to scale)
  gain_spread: float = 0.2  # log-normal sigma of the per-clip gain g


MODALITY_SPECS = {
    "official": {
        "audio": ModalitySpec(
            dim=128, activation="linear", scale=0.6, mean=0.3, salience=(0.5, 1.0), latent_noise=0.9
        ),
        "frames": ModalitySpec(
            dim=2048,
            frames_per_second=features.FRAMES_PER_SECOND,
            activation="relu",
            scale=0.5,
            mean=0.3,
            salience=(0.6, 1.0),
            latent_noise=1.0,
            frame_noise=0.8,
        ),
        "motion": ModalitySpec(
            dim=512, activation="relu", scale=0.5, mean=0.3, salience=(0.4, 1.0), latent_noise=1.1
        ),
    },
    "clip_clap": {
        "audio": ModalitySpec(
            dim=768, activation="l2", scale=1.0, mean=0.0, salience=(0.5, 1.0), latent_noise=0.8
        ),
        "frames": ModalitySpec(
            dim=768, activation="l2", scale=1.0, mean=0.0, salience=(0.6, 1.0), latent_noise=0.9
        ),
    },
}
# Which dense labels drive each modality.
_LABEL_SOURCE = {"audio": "audio", "frames": "visual", "motion": "visual"}


def feature_shapes(layout: str = "official", frames: str = "raw") -> dict[str, tuple[int, int]]:
  """Per-clip shapes of `layout`'s modalities as generated (`features.output_shapes`); "pooled" frames are
  per second, `[T, Df]`. Raises InputError for an unknown layout or frames mode."""
  return features.output_shapes(layout, frames)


def seeded_generator(*parts: object) -> np.random.Generator:
  """A generator seeded by a hash of `parts` (stable across processes, hosts and Python versions)."""
  digest = hashlib.blake2b("|".join(str(p) for p in parts).encode(), digest_size=16).digest()
  return np.random.Generator(np.random.PCG64(int.from_bytes(digest, "little")))


# --- dense labels and their statistics ---------------------------------------------------------------


def _count_events(labels: np.ndarray) -> np.ndarray:
  """`[N, T, C]` 0/1 -> `[N, C]` number of maximal runs of ones along T."""
  previous = np.concatenate([np.zeros_like(labels[:, :1]), labels[:, :-1]], axis=1)
  return ((labels > 0) & (previous == 0)).sum(axis=1)


def label_statistics(
    weak_labels: np.ndarray, audio_labels: np.ndarray, visual_labels: np.ndarray
) -> dict[str, np.ndarray]:
  """Per-class statistics of dense labels given weak labels (what `draw_dense_labels` reproduces).

  Args:
    weak_labels: `[N, C]` 0/1.
    audio_labels, visual_labels: `[N, T, C]` 0/1.

  Returns:
    A dict of `[C]` float arrays over the (clip, class) pairs with the class in the weak labels:
    `weak_count`; `p_audible`, `p_visible`, `p_both`, `p_neither`; `audio_seconds`, `visual_seconds`
    (mean seconds where present); `audio_events`, `visual_events` (mean events where present);
    `audio_onset`, `visual_onset` (mean first second where present); plus `[T+1]` histograms
    `audio_length_hist`, `visual_length_hist` of seconds per present pair over all classes.
  """
  weak = weak_labels > 0
  audible, visible = audio_labels.any(axis=1) & weak, visual_labels.any(axis=1) & weak
  count = weak.sum(axis=0).astype(np.float64)
  safe = np.maximum(count, 1.0)

  def mean_where(values: np.ndarray, where: np.ndarray) -> np.ndarray:
    return np.where(where, values, 0).sum(axis=0) / np.maximum(where.sum(axis=0), 1)

  def onset(labels: np.ndarray) -> np.ndarray:
    return np.argmax(labels > 0, axis=1)

  return {
      "weak_count": count,
      "p_audible": audible.sum(axis=0) / safe,
      "p_visible": visible.sum(axis=0) / safe,
      "p_both": (audible & visible).sum(axis=0) / safe,
      "p_neither": (weak & ~audible & ~visible).sum(axis=0) / safe,
      "audio_seconds": mean_where(audio_labels.sum(axis=1), audible),
      "visual_seconds": mean_where(visual_labels.sum(axis=1), visible),
      "audio_events": mean_where(_count_events(audio_labels), audible),
      "visual_events": mean_where(_count_events(visual_labels), visible),
      "audio_onset": mean_where(onset(audio_labels), audible),
      "visual_onset": mean_where(onset(visual_labels), visible),
      "audio_length_hist": np.bincount(
          audio_labels.sum(axis=1)[audible].astype(int), minlength=T + 1
      ),
      "visual_length_hist": np.bincount(
          visual_labels.sum(axis=1)[visible].astype(int), minlength=T + 1
      ),
  }


@dataclasses.dataclass(frozen=True)
class EventPool:
  """Per-class empirical (audio seconds, visual seconds) patterns of real dense labels.

  Attributes:
    audio: `[P, T]` uint8 audio seconds of a class in one real (clip, class) pair.
    visual: `[P, T]` uint8 visual seconds of the same pair.
    start: `[C]` first row of each class's patterns; `count`: `[C]` their number (rows are class-sorted).
  """

  audio: np.ndarray
  visual: np.ndarray
  start: np.ndarray
  count: np.ndarray

  @classmethod
  def from_labels(
      cls, weak_labels: np.ndarray, audio_labels: np.ndarray, visual_labels: np.ndarray
  ) -> EventPool:
    """Pools the pairs whose class is in the weak labels and audible or visible at least once."""
    keep = (weak_labels > 0) & (audio_labels.any(axis=1) | visual_labels.any(axis=1))  # [N, C]
    clips, classes = np.nonzero(keep.T)[::-1]  # class-major order: all pairs of class 0 first
    count = np.bincount(classes, minlength=C)
    if (count == 0).any():
      missing = [annotations.CLASSES[c] for c in np.nonzero(count == 0)[0]]
      raise InputError(
          f"the dense labels have no event of {', '.join(missing)}: synthetic training labels "
          "are drawn from the validation and test annotations, which must cover every class."
      )
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    audio = audio_labels[clips, :, classes].astype(np.uint8)
    visual = visual_labels[clips, :, classes].astype(np.uint8)
    return cls(audio, visual, start, count)


def draw_dense_labels(
    filenames: Sequence[str], weak_labels: np.ndarray, pool: EventPool, seed: int
) -> tuple[np.ndarray, np.ndarray]:
  """Draws dense audio and visual labels of training clips from their weak labels.

  Each weak class of a clip independently takes the (audio, visual) seconds of a pattern drawn uniformly
  from `pool`'s patterns of that class; the draw depends only on (seed, filename).

  Args:
    filenames: `[N]` clip filenames.
    weak_labels: `[N, C]` 0/1.
    pool: the real patterns (`EventPool.from_labels` of the validation and test labels).
    seed: the dataset seed.

  Returns:
    audio_labels, visual_labels: `[N, T, C]` float32 0/1; every weak class is present in >= 1 modality.
  """
  n = len(filenames)
  uniforms = (
      np.stack([seeded_generator(seed, "labels", f).random(C) for f in filenames])
      if n
      else np.zeros((0, C))
  )
  rows = pool.start[None, :] + np.minimum(
      (uniforms * pool.count[None, :]).astype(np.int64), pool.count[None, :] - 1
  )  # [N, C] drawn pattern of every class
  weak = (weak_labels > 0)[:, None, :]  # [N, 1, C]
  audio = np.where(weak, pool.audio[rows].transpose(0, 2, 1), 0).astype(np.float32)
  visual = np.where(weak, pool.visual[rows].transpose(0, 2, 1), 0).astype(np.float32)
  return audio, visual


# --- features ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _ModalityParams:
  """The fixed (per seed and layout) parameters of one modality."""

  spec: ModalitySpec
  prototypes: np.ndarray  # [C, L] class prototypes z_m, norm ~1
  mixing: np.ndarray  # [L, D] unit-variance mixing matrix M_m
  mean: np.ndarray  # [D] per-dimension mean mu_m


def _modality_params(seed: int, layout: str, modality: str, spec: ModalitySpec) -> _ModalityParams:
  rng = seeded_generator(seed, layout, modality, "prototypes")
  own = rng.standard_normal((C, LATENT_DIM)) / np.sqrt(LATENT_DIM)
  norms = rng.uniform(0.8, 1.2, size=(C, 1))  # some classes are more salient than others
  prototypes = own.copy()
  for first, second in CONFUSABLE_PAIRS:
    i, j = annotations.CLASS_INDEX[first], annotations.CLASS_INDEX[second]
    prototypes[j] = CONFUSABLE_SHARE * own[i] + np.sqrt(1 - CONFUSABLE_SHARE**2) * own[j]
  prototypes = prototypes / np.linalg.norm(prototypes, axis=1, keepdims=True) * norms
  mixing = rng.standard_normal((LATENT_DIM, spec.dim))
  if (
      spec.activation == "l2"
  ):  # CLIP/CLAP embeddings share a common direction (cosine ~0.5 between clips)
    mean = rng.standard_normal(spec.dim) * 1.2
  else:
    mean = rng.exponential(spec.mean, size=spec.dim) if spec.mean else np.zeros(spec.dim)
  return _ModalityParams(
      spec, prototypes.astype(np.float32), mixing.astype(np.float32), mean.astype(np.float32)
  )


def _unit(rng: np.random.Generator, shape: tuple[int, ...], norm: float) -> np.ndarray:
  """Gaussian vectors along the last axis with expected norm ~`norm`."""
  return rng.standard_normal(shape, dtype=np.float32) * np.float32(norm / np.sqrt(shape[-1]))


def _modality_features(
    rng: np.random.Generator, params: _ModalityParams, labels: np.ndarray
) -> np.ndarray:
  """One clip's features of one modality.

  Args:
    rng: the clip's generator (consumed in a fixed order).
    params: the modality's fixed parameters.
    labels: `[T, C]` 0/1 labels driving the modality.

  Returns:
    `[T * frames_per_second, D]` float32.
  """
  spec = params.spec
  salience = rng.uniform(*spec.salience, size=(T, C)).astype(np.float32) * labels  # [T, C]
  instance = _unit(rng, (C, LATENT_DIM), spec.instance)  # [C, L]
  offset = _unit(rng, (LATENT_DIM,), spec.offset)  # [L]
  gain = np.float32(np.exp(spec.gain_spread * rng.standard_normal()))
  latent = (
      salience @ (params.prototypes + instance)
      + offset
      + _unit(rng, (T, LATENT_DIM), spec.latent_noise)
  )
  if spec.frames_per_second > 1:
    latent = np.repeat(latent, spec.frames_per_second, axis=0)
    latent += _unit(rng, latent.shape, spec.frame_noise)
  noise = rng.standard_normal((latent.shape[0], spec.dim), dtype=np.float32)
  noise *= np.float32(spec.feature_noise * spec.scale)
  features = latent @ params.mixing
  features *= np.float32(spec.scale) * gain
  features += params.mean
  features += noise
  if spec.activation == "relu":
    np.maximum(features, 0, out=features)
  elif spec.activation == "l2":
    features /= np.linalg.norm(features, axis=1, keepdims=True)
  return features


class SyntheticLLP:
  """The SYNTHETIC LLP-structured dataset: real clips and labels, generated features.

  Example:
    data = SyntheticLLP(num_train_clips=2000, seed=0, layout="official", frames="pooled")
    val = data.split("val")  # annotations.Split with the real dense labels
    clip = data.features("val", 0)  # {"audio": [10, 128], "frames": [10, 2048], "motion": [10, 512]}
  """

  def __init__(
      self,
      num_train_clips: int | None = DEFAULT_NUM_TRAIN_CLIPS,
      seed: int = 0,
      layout: str = "official",
      frames: str = "raw",
      labels_dir: str | pathlib.Path | None = None,
  ):
    """Describes the dataset; nothing is generated until asked for.

    Args:
      num_train_clips: size of the training subset (seeded, kept in file order); None: all 10,000.
      seed: selects the training subset, the drawn dense training labels and every feature.
      layout: "official" (VGGish, ResNet-152, R(2+1)D-18) or "clip_clap" (CLAP, CLIP; no motion).
      frames: "raw" (`[80, Df]` at 8 fps; the clip_clap layout has 1 frame per second) or "pooled"
        (`[10, Df]`, exactly the mean of each second's raw frames).
      labels_dir: the real annotation files; None: the packaged ones.
    """
    self.seed = int(seed)
    self.shapes = feature_shapes(layout, frames)  # checks the layout and the frames mode
    self.layout = layout
    self.frames = frames
    self.labels_dir = annotations.resolve_labels_dir(labels_dir)
    total = len(self._real_split("train"))
    if num_train_clips is None:
      num_train_clips = total
    if not 0 < num_train_clips <= total:
      raise InputError(
          f"num_train_clips={num_train_clips} must be between 1 and the {total} real training "
          "clips (None: all of them)."
      )
    self.num_train_clips = int(num_train_clips)
    self._splits: dict[str, annotations.Split] = {}

  @property
  def modalities(self) -> tuple[str, ...]:
    return tuple(self.shapes)

  @property
  def description(self) -> str:
    sizes = ", ".join(f"{s} {len(self.split(s))}" for s in annotations.SPLITS)
    shapes = ", ".join(f"{m} {list(s)}" for m, s in self.shapes.items())
    return (
        f"SYNTHETIC LLP-structured features (seed {self.seed}, layout {self.layout}, {self.frames} frames: "
        f"{shapes}; clips {sizes}), real weak labels and real val/test dense labels"
    )

  def _real_split(self, name: str) -> annotations.Split:
    return annotations.load_split(name, self.labels_dir)[0]

  @functools.cached_property
  def train_indices(self) -> np.ndarray:
    """`[num_train_clips]` rows of the real training file in the subset, increasing."""
    total = len(self._real_split("train"))
    order = seeded_generator(self.seed, "train subset").permutation(total)
    return np.sort(order[: self.num_train_clips])

  def split(self, name: str) -> annotations.Split:
    """The split's clips and labels: the training subset (weak labels only), or all of val / test."""
    if name not in annotations.SPLITS:
      raise InputError(f"unknown split {name!r}; choose one of {', '.join(annotations.SPLITS)}.")
    if name not in self._splits:
      real = self._real_split(name)
      if name == "train":
        rows = self.train_indices
        real = annotations.Split(
            name, tuple(real.filenames[i] for i in rows), real.weak_labels[rows]
        )
      self._splits[name] = real
    return self._splits[name]

  @functools.cached_property
  def event_pool(self) -> EventPool:
    val, test = self._real_split("val"), self._real_split("test")
    return EventPool.from_labels(
        *(
            np.concatenate([getattr(val, k), getattr(test, k)])
            for k in ("weak_labels", "audio_labels", "visual_labels")
        )
    )

  @functools.cached_property
  def dense_train_labels(self) -> tuple[np.ndarray, np.ndarray]:
    """(audio, visual) `[num_train_clips, T, C]` drawn dense training labels: they steer the generator
    and are never shown to a model."""
    train = self.split("train")
    return draw_dense_labels(train.filenames, train.weak_labels, self.event_pool, self.seed)

  def dense_labels(self, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(audio, visual) `[N, T, C]` labels the features of `split` follow (drawn for train, real otherwise)."""
    if split == "train":
      return self.dense_train_labels
    data = self.split(split)
    return data.audio_labels, data.visual_labels

  @functools.cached_property
  def _params(self) -> dict[str, _ModalityParams]:
    return {
        m: _modality_params(self.seed, self.layout, m, spec)
        for m, spec in MODALITY_SPECS[self.layout].items()
    }

  def clip_features(
      self, filename: str, audio_labels: np.ndarray, visual_labels: np.ndarray
  ) -> dict[str, np.ndarray]:
    """Features of one clip from its dense labels (`[T, C]` each); depends only on (seed, layout, filename)."""
    rng = seeded_generator(self.seed, self.layout, "features", filename)
    labels = {
        "audio": np.asarray(audio_labels, np.float32),
        "visual": np.asarray(visual_labels, np.float32),
    }
    out = {}
    for modality, params in self._params.items():
      out[modality] = _modality_features(rng, params, labels[_LABEL_SOURCE[modality]])
    if self.frames == "pooled" and out["frames"].shape[0] != T:
      out["frames"] = features.pool_frames(out["frames"])
    return out

  def features(self, split: str, index: int) -> dict[str, np.ndarray]:
    """Features of clip `index` (file order) of `split`: a dict modality -> float32 array of `self.shapes`."""
    data = self.split(split)
    if not 0 <= index < len(data):
      raise InputError(
          f"clip index {index} is outside the {len(data)} clips of the synthetic {split} split."
      )
    audio, visual = self.dense_labels(split)
    return self.clip_features(data.filenames[index], audio[index], visual[index])

  def features_batch(self, split: str, indices: Sequence[int]) -> dict[str, np.ndarray]:
    """Stacked `features` of several clips: modality -> `[B, *shape]` float32 (same bytes per clip)."""
    out = {m: np.empty((len(indices), *shape), np.float32) for m, shape in self.shapes.items()}
    for row, index in enumerate(indices):
      for modality, value in self.features(split, int(index)).items():
        out[modality][row] = value
    return out


# --- writing the official on-disk layout -------------------------------------------------------------


def marker_text(data: SyntheticLLP, counts: dict[str, int], what: str) -> str:
  """The text of the `SYNTHETIC.txt` marker file written into an output folder."""
  lines = [
      "SYNTHETIC DATA - not real LLP features.",
      "",
      f"{what}, written by launch/make_synthetic.py from the avvp_jax synthetic generator",
      f"(avvp_jax.tasks.llp.synthetic): {data.description}.",
      "Clips, weak labels and validation/test dense labels are the real LLP annotations; the features",
      "are generated from them (training clips from dense labels drawn to follow LLP's statistics).",
      "Numbers obtained on these files are not comparable with published LLP results.",
      "",
      "Clips written per split: " + ", ".join(f"{split} {n}" for split, n in counts.items()) + ".",
  ]
  return "\n".join(lines) + "\n"


def write_features(
    data: SyntheticLLP,
    output_dir: str | pathlib.Path,
    split: str,
    indices: Sequence[int] | None = None,
) -> int:
  """Writes `<output_dir>/<modality dir>/<clip id>.npy` (float32, as stored: raw frames) for a split.

  Args:
    data: the dataset (its `frames` mode is ignored: files always hold what the real files hold).
    output_dir: the features folder (`FEATURE_DIRS[layout]` sub-folders are created).
    split: "train", "val" or "test".
    indices: rows of the split to write; None: all.

  Returns:
    The number of clips written.
  """
  output_dir = pathlib.Path(output_dir)
  stored = (
      data
      if data.frames == "raw"
      else SyntheticLLP(data.num_train_clips, data.seed, data.layout, "raw", data.labels_dir)
  )
  folders = {m: output_dir / d for m, d in FEATURE_DIRS[data.layout].items()}
  for folder in folders.values():
    folder.mkdir(parents=True, exist_ok=True)
  split_data = stored.split(split)
  indices = range(len(split_data)) if indices is None else indices
  for index in indices:
    clip = split_data.clip_ids[index]
    for modality, value in stored.features(split, int(index)).items():
      if data.layout == "clip_clap" and modality == "audio":
        value = features.clap_maps_from_segments(value)  # VALOR stores [64, 768] CLAP maps per clip
      np.save(folders[modality] / f"{clip}.npy", value)
  return len(indices)


def _copy_rows(source: pathlib.Path, target: pathlib.Path, keep: set[str]) -> int:
  """Copies the header and the rows whose first field is in `keep`, byte for byte; returns the rows."""
  with open(source, newline="") as f:
    lines = [line.rstrip("\r\n") + "\n" for line in f.read().splitlines()]
  rows = [line for line in lines[1:] if line.split("\t", 1)[0].strip() in keep]
  with open(target, "w", newline="") as f:
    f.writelines(lines[:1] + rows)
  return len(rows)


def write_labels(
    data: SyntheticLLP, labels_out: str | pathlib.Path, filenames: dict[str, Sequence[str]]
) -> dict[str, int]:
  """Writes the annotation files of exactly the clips written, so labels and features agree.

  `AVVP_train.csv`, `AVVP_val_pd.csv`, `AVVP_test_pd.csv` and `AVVP_dataset_full.csv` keep the real rows
  of `filenames` (a split not given is written as a header only); the dense files keep the real rows of
  the validation and test clips given. Rows are copied unchanged from `data.labels_dir`. The drawn dense
  training labels are not written.

  Args:
    data: the dataset (its `labels_dir` is the source).
    labels_out: the folder to write (created).
    filenames: split -> the filenames written for it.

  Returns:
    file name -> data rows written.
  """
  labels_out = pathlib.Path(labels_out)
  labels_out.mkdir(parents=True, exist_ok=True)
  counts = {}
  for split in annotations.SPLITS:
    name = annotations.SPLIT_FILES[split]
    counts[name] = _copy_rows(
        data.labels_dir / name, labels_out / name, set(filenames.get(split, ()))
    )
  every = set().union(*(set(f) for f in filenames.values())) if filenames else set()
  full = data.labels_dir / "AVVP_dataset_full.csv"
  if full.exists():
    counts[full.name] = _copy_rows(full, labels_out / full.name, every)
  evaluated = set(filenames.get("val", ())) | set(filenames.get("test", ()))
  for name in annotations.DENSE_FILES.values():
    counts[name] = _copy_rows(data.labels_dir / name, labels_out / name, evaluated)
  return counts
