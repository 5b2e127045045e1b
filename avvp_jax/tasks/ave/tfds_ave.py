"""AVE as a TensorFlow Datasets builder (`avvp_ave`): h5 features + annotations -> versioned, atomic TFRecords.

Configs (`BUILDER_CONFIGS`):
  full             the released h5 features (the TFDS manual dir, `config.data.features_dir`), splits of the
                   order files: train 3,339, val 402, test 402
  weak             the same, plus the 178 background-only videos (audio/visual_feature_noisy.h5) appended to
                   train (3,517), as the AVE and CMBS weak loaders do
  synthetic_full, synthetic_weak   the embedded SYNTHETIC set (`synthetic`): no files read

Every example (the build contract of `avvp_jax.data.streams`): `audio` [10, 128] and `visual` [10, 7, 7, 512]
float32 (raw bytes; the released visual maps are float64: stored as float32, 1 MB a clip, 4.1 GB for the 4,143
videos instead of 7.7 GiB), `segment_label` [10, 29], `video_label` [29], `event_mask` [10] float32, `index`
(the example's position in its split), `row` (its Annotations.txt row; -1 for a background-only video) and
`video_id`, and `prob_label` [29] (PSP's prob_label.h5 when given, `config.data.ave.prob_labels`; zeros
otherwise; background for the noisy videos). Examples are stored in the order files' order (`disable_shuffling`); `info.metadata` holds each
split's clip names (`<video id>_<row>`, `noisy_<k>`: unique, where 45 ids have several rows) and a description.

Bad features (see `features`) raise `InputError` before anything is written, so no build is produced.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import dataclasses  # pylint: disable=g-import-not-at-top,g-bad-import-order
import pathlib
from typing import Any, Iterator

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from avvp_jax.data import streams
from avvp_jax.errors import InputError
from avvp_jax.tasks.ave import annotations
from avvp_jax.tasks.ave import features as features_lib
from avvp_jax.tasks.ave import synthetic as synthetic_lib

streams.hide_accelerators_from_tf()

_CITATION = r"""
@inproceedings{tian2018ave,
  title={Audio-Visual Event Localization in Unconstrained Videos},
  author={Tian, Yapeng and Shi, Jing and Li, Bochen and Duan, Zhiyao and Xu, Chenliang},
  booktitle={European Conference on Computer Vision (ECCV)},
  year={2018}
}
"""
_HOMEPAGE = "https://github.com/YapengTian/AVE-ECCV18"
_DESCRIPTION = """
The Audio-Visual Event (AVE) dataset: 4,143 ten-second YouTube videos, 28 event classes, each video labelled
with one class and the one-second segments in which the event is both seen and heard (the others background),
as the released pre-extracted features (VGGish audio, VGG-19 pool5 maps). The synthetic configs hold SYNTHETIC
features drawn for the real labels (avvp_jax.tasks.ave.synthetic), not real AVE features.
"""


@dataclasses.dataclass(eq=False)
class AveConfig(tfds.core.BuilderConfig):
  """`weak`: the 178 background-only videos appended to train; `synthetic`: the SYNTHETIC features."""

  weak: bool = False
  synthetic: bool = False


BUILDER_CONFIGS = [
    AveConfig(name="full", description="released h5 features, the order files' splits"),
    AveConfig(
        name="weak",
        weak=True,
        description="released h5 features, 178 background-only videos in train",
    ),
    AveConfig(
        name="synthetic_full",
        synthetic=True,
        description="SYNTHETIC features (avvp_jax.tasks.ave.synthetic), real labels",
    ),
    AveConfig(
        name="synthetic_weak",
        weak=True,
        synthetic=True,
        description="SYNTHETIC features (avvp_jax.tasks.ave.synthetic), real labels, background-only videos",
    ),
]


def config_name(supervision: str, synthetic: bool) -> str:
  return f"{'synthetic_' if synthetic else ''}{supervision}"


class AvvpAve(tfds.core.GeneratorBasedBuilder):
  """AVE (features + annotations) for event localization; see the module docstring."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release: released h5 layout, weak setting, synthetic configs."}
  BUILDER_CONFIGS = BUILDER_CONFIGS
  DEFAULT_CONFIG_NAME = "full"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Point the manual dir (`--config.data.features_dir`) at a folder holding AVE's released audio_feature.h5
  [4143, 10, 128] and visual_feature.h5 [4143, 10, 7, 7, 512] (dataset `avadataset`; the download links of
  https://github.com/YapengTian/AVE-ECCV18, README), and for the weak setting audio_feature_noisy.h5 and
  visual_feature_noisy.h5 [178, ...]. The annotations and splits are packaged with avvp_jax. The synthetic_*
  configs need no files.
  """

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> pathlib.Path:
    return pathlib.Path(__file__)  # as tfds_llp: a plain file, named directly

  def __init__(
      self,
      *,
      labels_dir: str | os.PathLike | None = None,
      split_set: str = "standard",
      synthetic_train_clips: int = 800,
      synthetic_eval_clips: int = 0,
      synthetic_seed: int = 0,
      prob_labels: str | os.PathLike | None = None,
      **kwargs: Any,
  ):
    """Args as `tfds.core.DatasetBuilder` plus the folder of Annotations.txt and the order files (None: the
    packaged ones), which order files (`split_set`: "standard" or "match", `annotations.SPLIT_SETS`), the SYNTHETIC set's sizes and seed (`synthetic.split_rows`), and PSP's prob_label.h5
    (`prob_label` of every example; None: zeros)."""
    self._labels_dir = labels_dir or None
    self._split_set = split_set
    self._synthetic_train_clips = int(synthetic_train_clips)
    self._synthetic_eval_clips = int(synthetic_eval_clips)
    self._synthetic_seed = int(synthetic_seed)
    self._prob_labels_path = prob_labels or None
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    t, c = annotations.NUM_SEGMENTS, annotations.NUM_LABELS
    enc = tfds.features.Encoding.BYTES

    def tensor(shape):
      return tfds.features.Tensor(shape=shape, dtype=np.float32, encoding=enc)

    spec = {
        "video_id": tfds.features.Text(),
        "index": tfds.features.Scalar(dtype=np.int32),
        "row": tfds.features.Scalar(dtype=np.int32),
        "audio": tensor(features_lib.SHAPES["audio"]),
        "visual": tensor(features_lib.SHAPES["visual"]),
        "segment_label": tensor((t, c)),
        "video_label": tensor((c,)),
        "event_mask": tensor((t,)),
        "prob_label": tensor((c,)),
    }
    return self.dataset_info_from_configs(
        description=_DESCRIPTION,
        features=tfds.features.FeaturesDict(spec),
        homepage=_HOMEPAGE,
        citation=_CITATION,
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    config = self.builder_config
    rows, orders = annotations.load_splits(self._labels_dir, self._split_set)
    if config.synthetic:
      orders = synthetic_lib.split_rows(
          orders, self._synthetic_train_clips, self._synthetic_eval_clips, self._synthetic_seed
      )
      noisy = (
          synthetic_lib.num_noisy(self._synthetic_train_clips, len(annotations.load_order("train")))
          if config.weak
          else 0
      )
      self._source = synthetic_lib.SyntheticAVE(self._synthetic_seed, rows)
      what = f"SYNTHETIC AVE features (avvp_jax.tasks.ave.synthetic, seed {self._synthetic_seed})"
    else:
      folder = pathlib.Path(dl_manager.manual_dir)
      features_lib.check_features_dir(
          folder, len(rows), weak=config.weak
      )  # before anything is written
      features_lib.check_segment_labels(folder, rows.segment_labels())
      noisy = 0
      if config.weak:
        readers = features_lib.open_features(folder, noisy=True)
        noisy = len(readers["audio"])
        for reader in readers.values():
          reader.close()
      self._source = folder
      what = f"AVE features from {folder}"
    self._rows = rows
    self._segment_classes, self._event_mask = rows.segment_classes(), rows.event_mask()
    self._prob_labels = np.zeros((len(rows), annotations.NUM_LABELS), np.float32)
    if (
        self._prob_labels_path
    ):  # PSP's weak target, read as given (checked: shape, finite, non-negative)
      self._prob_labels = features_lib.read_all(
          self._prob_labels_path, (annotations.NUM_LABELS,), len(rows)
      )
      if np.any(self._prob_labels < 0):
        raise InputError(f"{self._prob_labels_path}: negative values, not shares of segments.")
    names = {
        split: [f"{rows.video_ids[r]}_{r}" for r in order.tolist()]
        for split, order in orders.items()
    }
    names["train"] += [f"noisy_{k}" for k in range(noisy)]
    sizes = ", ".join(f"{split} {len(n)}" for split, n in names.items())
    weak = f", {noisy} background-only videos in train" if noisy else ""
    splits = "" if self._split_set == "standard" else f", the {self._split_set!r} split set"
    description = f"{what}, {config.name} ({sizes}{weak}{splits}), labels from {rows.source}"
    self.info.metadata["description"] = description
    self.info.metadata["filenames"] = names
    logging.info("Building %s: %s", config.name, description)
    return {
        split: self._generate_examples(order, noisy if split == "train" else 0)
        for split, order in orders.items()
    }

  def _labels(self, row: int) -> dict[str, Any]:
    rows = self._rows
    return {
        "video_id": rows.video_ids[row],
        "row": np.int32(row),
        "segment_label": np.eye(annotations.NUM_LABELS, dtype=np.float32)[
            self._segment_classes[row]
        ],
        "video_label": np.eye(annotations.NUM_LABELS, dtype=np.float32)[rows.classes[row]],
        "event_mask": self._event_mask[row],
        "prob_label": self._prob_labels[row],
    }

  def _noisy_labels(self, k: int) -> dict[str, Any]:
    t = annotations.NUM_SEGMENTS
    background = features_lib.noisy_labels(1)[0]
    return {
        "video_id": f"noisy_{k}",
        "row": np.int32(-1),
        "segment_label": np.tile(background, (t, 1)),
        "video_label": background,
        "event_mask": np.zeros(t, np.float32),
        "prob_label": background,  # as PSP's loader: the noisy videos' labels
    }

  def _generate_examples(
      self, order: np.ndarray, noisy: int
  ) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, example): the split's rows in order, then `noisy` background-only videos."""
    if self.builder_config.synthetic:
      data = self._source
      for index, row in enumerate(order.tolist()):
        yield index, {"index": np.int32(index), **self._labels(row), **data.features(row)}
      for k in range(noisy):
        index = len(order) + k
        yield index, {"index": np.int32(index), **self._noisy_labels(k), **data.noisy_features(k)}
      return
    readers = features_lib.open_features(self._source)
    try:
      for index, row in enumerate(order.tolist()):
        clip = {name: reader.read(row) for name, reader in readers.items()}
        yield index, {"index": np.int32(index), **self._labels(row), **clip}
    finally:
      for reader in readers.values():
        reader.close()
    if noisy:
      readers = features_lib.open_features(self._source, noisy=True)
      try:
        for k in range(noisy):
          clip = {name: reader.read(k) for name, reader in readers.items()}
          index = len(order) + k
          yield index, {"index": np.int32(index), **self._noisy_labels(k), **clip}
      finally:
        for reader in readers.values():
          reader.close()

  # --- reading -----------------------------------------------------------------------------------------

  @property
  def description_line(self) -> str:
    return str(self.info.metadata.get("description", self.builder_config.description))

  def filenames(self, split: str) -> tuple[str, ...]:
    """The split's clip names in `index` order (from the build's metadata)."""
    return tuple(self.info.metadata["filenames"][split])


def download_config(features_dir: str | os.PathLike | None) -> tfds.download.DownloadConfig:
  """A local-only build: the features folder as manual dir, no GCS look-up, no statistics pass."""
  return tfds.download.DownloadConfig(
      manual_dir=os.fspath(features_dir) if features_dir else None,
      try_download_gcs=False,
      compute_stats=tfds.download.ComputeStatsMode.SKIP,
  )
