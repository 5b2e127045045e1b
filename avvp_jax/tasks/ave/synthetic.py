"""The embedded SYNTHETIC AVE set: real labels and splits, drawn features in the real shapes.

With `config.data.features_dir` empty an AVE run trains on this set, so every AVE config runs with no data at
hand. It is SYNTHETIC, and says so in its build's name, description and every report: its scores say nothing
about real AVE features.

What is real: the annotations and the h5 splits (`annotations`), hence every label. What is drawn: the
features, deterministically from (seed, Annotations row), in the released shapes:

  audio   [10, 128]           a ReLU'd VGGish-like vector per segment: noise, plus on event segments the class's
                              audio prototype (non-negative, scaled by a per-clip strength)
  visual  [10, 7, 7, 512]     ReLU'd pool5-like maps: noise everywhere, plus on event segments the class's
                              channel prototype at its few cells of the 7 x 7 grid (`REGIONS_PER_CLASS`)

Background segments (and the weak setting's background-only videos) carry no event: the same noise and a
background component shared by all classes. Confusable classes (`CONFUSABLE`: Male / Female speech, Banjo /
Mandolin / Ukulele, ...) share half of their prototypes and one visual cell, and an event segment loses its
audio or its visual evidence with probability `DROP_MODALITY`, so neither modality alone is enough.

Sizes (`config.data.ave`): `synthetic_train_clips` of the 3,339 training rows (a seeded subset, kept in the
order file's order; default 800), the first `synthetic_eval_clips` rows of val and test (0: all 402), and in
the weak setting a proportional share of the 178 background-only videos (round(178 * train / 3,339)).
"""

from __future__ import annotations

import numpy as np

from avvp_jax.errors import InputError
from avvp_jax.tasks.ave import annotations
from avvp_jax.tasks.ave import features

REGIONS_PER_CLASS = 3  # cells of the 7 x 7 map that show a class's object
DROP_MODALITY = 0.2  # chance that an event segment shows the event in one modality only
CONFUSABLE = (  # classes whose prototypes overlap (as they do in AVE's confusions)
    ("Male speech, man speaking", "Female speech, woman speaking"),
    ("Banjo", "Mandolin"),
    ("Mandolin", "Ukulele"),
    ("Acoustic guitar", "Ukulele"),
    ("Violin, fiddle", "Flute"),
    ("Fixed-wing aircraft, airplane", "Helicopter"),
    ("Race car, auto racing", "Motorcycle"),
    ("Truck", "Bus"),
)
AUDIO_SHAPE, VISUAL_SHAPE = features.SHAPES["audio"], features.SHAPES["visual"]
NUM_CELLS = VISUAL_SHAPE[1] * VISUAL_SHAPE[2]


def _normalized(x: np.ndarray) -> np.ndarray:
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


class SyntheticAVE:
  """The SYNTHETIC features of every AVE row and of the weak setting's background-only videos.

  Args:
    seed: the generator's seed (prototypes and per-clip draws).
    rows: the annotations whose labels the features follow.
  """

  def __init__(self, seed: int, rows: annotations.Annotations):
    self.seed = int(seed)
    self.rows = rows
    rng = np.random.default_rng([self.seed, 0xA7E])
    n = annotations.NUM_EVENT_CLASSES
    audio = _normalized(np.abs(rng.normal(size=(n, AUDIO_SHAPE[-1]))))
    visual = _normalized(np.abs(rng.normal(size=(n, VISUAL_SHAPE[-1]))))
    cells = np.stack([rng.choice(NUM_CELLS, REGIONS_PER_CLASS, replace=False) for _ in range(n)])
    for first, second in CONFUSABLE:  # half shared prototypes, one shared cell
      a, b = annotations.CLASS_INDEX[first], annotations.CLASS_INDEX[second]
      audio[b] = _normalized(audio[a] + audio[b])
      visual[b] = _normalized(visual[a] + visual[b])
      cells[b, 0] = cells[a, 0]
    self.audio_prototypes = (6.0 * audio).astype(np.float32)  # [28, 128]
    self.visual_prototypes = (12.0 * visual).astype(np.float32)  # [28, 512]
    self.cells = cells  # [28, REGIONS_PER_CLASS] flat indices into the 7 x 7 grid
    self.background_audio = (3.0 * _normalized(np.abs(rng.normal(size=AUDIO_SHAPE[-1])))).astype(
        np.float32
    )

  def _draw(
      self, rng: np.random.Generator, event_class: int, event: np.ndarray
  ) -> dict[str, np.ndarray]:
    """Features of one clip whose segments `event` [10] bool show class `event_class`."""
    t = AUDIO_SHAPE[0]
    strength = rng.uniform(0.5, 1.5)
    lose = rng.random(t) < DROP_MODALITY  # the event shows in one modality only
    audio_lost = rng.random(t) < 0.5
    audio_on = event & ~(lose & audio_lost)
    visual_on = event & ~(lose & ~audio_lost)
    audio = rng.normal(0.0, 1.0, AUDIO_SHAPE).astype(np.float32) - 0.4
    audio += self.background_audio * np.float32(0.5)
    visual = rng.standard_normal(VISUAL_SHAPE, dtype=np.float32) - np.float32(0.5)
    if event_class >= 0:
      audio[audio_on] += np.float32(strength) * self.audio_prototypes[event_class]
      flat = visual.reshape(t, NUM_CELLS, VISUAL_SHAPE[-1])
      for cell in self.cells[event_class]:
        flat[visual_on, cell] += np.float32(strength) * self.visual_prototypes[event_class]
    return {"audio": np.maximum(audio, 0.0), "visual": np.maximum(visual, 0.0)}

  def features(self, row: int) -> dict[str, np.ndarray]:
    """The features of Annotations row `row`: audio [10, 128], visual [10, 7, 7, 512] float32."""
    rng = np.random.default_rng([self.seed, 1, int(row)])
    return self._draw(rng, int(self.rows.classes[row]), self._event(row))

  def _event(self, row: int) -> np.ndarray:
    segment = np.arange(annotations.NUM_SEGMENTS)
    return (segment >= self.rows.starts[row]) & (segment < self.rows.ends[row])

  def noisy_features(self, k: int) -> dict[str, np.ndarray]:
    """The features of background-only video `k` (0..177): no event anywhere."""
    rng = np.random.default_rng([self.seed, 2, int(k)])
    return self._draw(rng, -1, np.zeros(annotations.NUM_SEGMENTS, bool))


def split_rows(
    orders: dict[str, np.ndarray], train_clips: int, eval_clips: int, seed: int
) -> dict[str, np.ndarray]:
  """The Annotations rows of each SYNTHETIC split: a seeded subset of `train_clips` training rows (in the order
  file's order) and the first `eval_clips` rows of val and test (0: all).

  Raises:
    InputError: sizes outside the real splits.
  """
  num_train = len(orders["train"])
  if not 1 <= train_clips <= num_train:
    raise InputError(
        f"config.data.ave.synthetic_train_clips={train_clips} must be between 1 and the {num_train} "
        "training rows."
    )
  smallest = min(len(orders["val"]), len(orders["test"]))
  if not 0 <= eval_clips <= smallest:
    raise InputError(
        f"config.data.ave.synthetic_eval_clips={eval_clips} must be between 0 (all) and {smallest}."
    )
  rng = np.random.default_rng([int(seed), 3])
  keep = np.sort(rng.choice(num_train, train_clips, replace=False))
  out = {"train": orders["train"][keep]}
  for split in ("val", "test"):
    out[split] = orders[split][: eval_clips or None]
  return out


def num_noisy(train_clips: int, num_train: int) -> int:
  """The background-only videos of a SYNTHETIC weak training split: 178 in proportion to its training rows."""
  return int(round(features.NUM_NOISY * train_clips / num_train))
