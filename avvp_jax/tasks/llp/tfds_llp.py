"""LLP as a TensorFlow Datasets builder: features + annotations -> versioned, sharded, atomic TFRecords.

`AvvpLlp` is a `tfds.core.GeneratorBasedBuilder`. Real configs read a features folder, given as the TFDS
manual dir (`tfds.download.DownloadConfig(manual_dir=features_dir)`), and the annotation files of
`labels_dir` (default: the packaged real ones); synthetic configs generate the embedded SYNTHETIC
LLP-structured set (`avvp_jax.tasks.llp.synthetic`) and read no files. TFDS provides the sharded files, the
progress bar, the version and the atomic build: examples are written into a `*.incomplete*` folder that is
renamed only when the whole build succeeded, so a build that fails or is killed part-way is never
`is_prepared()` and the next `download_and_prepare` starts over.

Configs (`BUILDER_CONFIGS`):
  official_pooled            VGGish [10,128], ResNet-152 frames averaged per second [10,2048], R(2+1)D-18
                             [10,512] (the default: exact for HAN/LEAP, 8x less data than raw frames)
  official_raw               the same with the raw frames [80, 2048]
  clip_clap                  VALOR's CLAP audio (maps pooled to [10,768]) and CLIP frames [10,768]
  synthetic_official_pooled, synthetic_official_raw, synthetic_clip_clap: the SYNTHETIC data, same layout

Every example: `clip_id` (11-char id naming the feature files), `filename` (`<id>_<start>_<end>`),
`index` (row in the split's label file, int32), `label` [25] weak labels, `audio_label` and
`visual_label` [10, 25] dense labels (all zero in train, which has none), and the feature tensors of the
layout (float32, stored as raw bytes: `tfds.features.Tensor(encoding=BYTES)`, decoded by
`tf.io.decode_raw`). Examples are stored in label-file order (`disable_shuffling`); the metadata
(`info.metadata`) holds each split's filenames in that order and a one-line description.

A synthetic build also holds the SIMULATED VALOR-like segment pseudo labels of its training clips
(`simulated_teacher`, `config.data.pseudo_labels = "simulated"`), computed once from the generator the
build is made from and written into the build's folder before TFDS renames it (`SIMULATED_LABELS_FILE`: the
labels as 0/1 uint8 in `filenames("train")` order and their calibration), so they are part of the atomic
build; `AvvpLlp.simulated_pseudo_labels()` reads them back. Builds of real features hold none.

Bad input (a missing folder or file, a clip of the labels without features, a wrong shape or dtype, NaN or
Inf values) raises `avvp_jax.errors.InputError` before the build completes, so no build is produced.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import dataclasses  # pylint: disable=g-import-not-at-top,g-bad-import-order
import io
import json
import pathlib
from typing import Any, Iterator

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from avvp_jax.data import streams
from avvp_jax.tasks.llp import annotations
from avvp_jax.tasks.llp import features as features_lib
from avvp_jax.tasks.llp import simulated_teacher
from avvp_jax.tasks.llp import synthetic
from avvp_jax.errors import InputError

streams.hide_accelerators_from_tf()  # before any TensorFlow op of a build (idempotent)


class _DropDtypeDeprecation(logging.logging.Filter):
  """TFDS 4.9.10 decodes byte-encoded tensors through its own deprecated `FeatureConnector.dtype` and warns
  about it on every trace; the warning concerns TFDS internals, not this code."""

  def filter(self, record) -> bool:
    return "FeatureConnector.dtype` is deprecated" not in record.getMessage()


logging.get_absl_logger().addFilter(_DropDtypeDeprecation())

_CITATION = r"""
@inproceedings{tian2020avvp,
  title={Unified Multisensory Perception: Weakly-Supervised Audio-Visual Video Parsing},
  author={Tian, Yapeng and Li, Dingzeyu and Xu, Chenliang},
  booktitle={European Conference on Computer Vision (ECCV)},
  year={2020}
}
@inproceedings{lai2023modality,
  title={Modality-Independent Teachers Meet Weakly-Supervised Audio-Visual Event Parser},
  author={Lai, Yung-Hsuan and Chen, Yen-Chun and Wang, Yu-Chiang Frank},
  booktitle={Advances in Neural Information Processing Systems (NeurIPS)},
  year={2023}
}
"""

_HOMEPAGE = "https://github.com/YapengTian/AVVP-ECCV20"

_DESCRIPTION = """
The Look, Listen and Parse (LLP) dataset for weakly-supervised audio-visual video parsing: 11,849 ten-second
YouTube clips (10,000 train with video-level labels; 649 validation and 1,200 test with second-level audio
and visual labels) over 25 event classes, as pre-extracted features. The synthetic configs hold SYNTHETIC
features generated from the real annotations (avvp_jax.tasks.llp.synthetic), not real LLP features.
"""


@dataclasses.dataclass(eq=False)
class LlpConfig(tfds.core.BuilderConfig):
  """A feature set: `layout` ("official" | "clip_clap"), `frames` ("pooled" | "raw"), and whether the
  features are the SYNTHETIC ones."""

  layout: str = "official"
  frames: str = "pooled"
  synthetic: bool = False


def _config(name: str, layout: str, frames: str, synthetic: bool, what: str) -> LlpConfig:
  prefix = "SYNTHETIC features (avvp_jax.tasks.llp.synthetic), " if synthetic else ""
  return LlpConfig(
      name=name, layout=layout, frames=frames, synthetic=synthetic, description=prefix + what
  )


BUILDER_CONFIGS = [
    _config(
        "official_pooled",
        "official",
        "pooled",
        False,
        "VGGish audio, ResNet-152 frames averaged per second [10, 2048], R(2+1)D-18 motion",
    ),
    _config(
        "official_raw",
        "official",
        "raw",
        False,
        "VGGish audio, ResNet-152 frames at 8 fps [80, 2048], R(2+1)D-18 motion",
    ),
    _config(
        "clip_clap",
        "clip_clap",
        "pooled",
        False,
        "VALOR's CLAP audio feature maps pooled to 10 segments [10, 768], CLIP ViT-L/14 frames [10, 768]",
    ),
    _config(
        "synthetic_official_pooled", "official", "pooled", True, "official layout, pooled frames"
    ),
    _config("synthetic_official_raw", "official", "raw", True, "official layout, raw frames"),
    _config("synthetic_clip_clap", "clip_clap", "pooled", True, "clip_clap layout"),
]
CONFIG_NAMES = tuple(c.name for c in BUILDER_CONFIGS)
SIMULATED_LABELS_FILE = "simulated_pseudo_labels.npz"  # in the folder of a synthetic build


def config_name(layout: str, frames: str, synthetic: bool) -> str:
  """The builder config of a feature set (clip_clap frames are one per second: pooled and raw agree)."""
  features_lib.check_layout(layout, frames)
  name = "clip_clap" if layout == "clip_clap" else f"official_{frames}"
  return f"synthetic_{name}" if synthetic else name


class AvvpLlp(tfds.core.GeneratorBasedBuilder):
  """LLP (features + annotations) for AVVP; see the module docstring."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
      "1.0.0": "First release: official and VALOR CLIP/CLAP layouts, synthetic configs.",
      "1.1.0": (
          "Synthetic configs store the SIMULATED training pseudo labels and their calibration "
          f"({SIMULATED_LABELS_FILE}), computed once at build time; the examples are unchanged."
      ),
  }
  BUILDER_CONFIGS = BUILDER_CONFIGS
  DEFAULT_CONFIG_NAME = "official_pooled"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Point the manual dir (`--config.data.features_dir`) at a folder of per-clip feature files named by the
  first 11 characters of each clip's filename:

  official layout (configs official_pooled, official_raw): vggish/<id>.npy [10, 128],
    res152/<id>.npy [80, 2048], r2plus1d_18/<id>.npy [10, 512]. Download them with the "feature download
    links" of the official AVVP repository, https://github.com/YapengTian/AVVP-ECCV20 (README), and unpack
    the three folders into one folder.
  clip_clap layout (config clip_clap): CLAP/features/<id>.npy [64, 768] and CLIP/features/<id>.npy
    [10, 768], from VALOR's CLAP.zip and CLIP.zip (https://github.com/Franklin905/VALOR, README; hosted at
    https://huggingface.co/datasets/NTUBarista/valor_features), both unzipped into one folder.

  The annotations (AVVP_*.csv) are packaged with avvp_jax; `--config.data.labels_dir` overrides them.
  The synthetic_* configs need no files.
  """

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> pathlib.Path:
    # TFDS 4.9.10's default looks the package up through `importlib_resources`, which it only requires
    # on Python < 3.9; this module is a plain file, so name it directly.
    return pathlib.Path(__file__)

  def __init__(
      self,
      *,
      labels_dir: str | os.PathLike | None = None,
      legacy_annotations: bool = False,
      synthetic_train_clips: int = 2000,
      synthetic_seed: int = 0,
      synthetic_eval_clips: int = 0,
      **kwargs: Any,
  ):
    """Args as `tfds.core.DatasetBuilder` (`config`, `data_dir`, ...) plus:

    Args:
      labels_dir: folder of the AVVP_*.csv files; None/empty: the packaged real annotations.
      legacy_annotations: accept pre-2024-04-16 dense annotation copies (see `annotations.load_split`).
      synthetic_train_clips: synthetic configs: training clips (a seeded subset of the real 10,000).
      synthetic_seed: synthetic configs: the generator's seed.
      synthetic_eval_clips: synthetic configs: keep the first N validation and test clips; 0: all.
    """
    self._labels_dir = annotations.resolve_labels_dir(labels_dir)
    self._legacy_annotations = bool(legacy_annotations)
    self._synthetic_train_clips = int(synthetic_train_clips)
    self._synthetic_seed = int(synthetic_seed)
    self._synthetic_eval_clips = int(synthetic_eval_clips)
    super().__init__(**kwargs)

  @property
  def layout(self) -> str:
    return self.builder_config.layout

  def feature_shapes(self) -> dict[str, tuple[int, int]]:
    """Per-clip shapes of the stored feature tensors (`[T, D]`, raw frames `[8T, D]`)."""
    config = self.builder_config
    if config.synthetic:
      return dict(synthetic.feature_shapes(config.layout, config.frames))
    return features_lib.output_shapes(config.layout, config.frames)

  def _info(self) -> tfds.core.DatasetInfo:
    t, c = annotations.NUM_SECONDS, annotations.NUM_CLASSES
    enc = tfds.features.Encoding.BYTES
    spec = {
        "clip_id": tfds.features.Text(),
        "filename": tfds.features.Text(),
        "index": tfds.features.Scalar(dtype=np.int32),
        "label": tfds.features.Tensor(shape=(c,), dtype=np.float32, encoding=enc),
        "audio_label": tfds.features.Tensor(shape=(t, c), dtype=np.float32, encoding=enc),
        "visual_label": tfds.features.Tensor(shape=(t, c), dtype=np.float32, encoding=enc),
    }
    for modality, shape in self.feature_shapes().items():
      spec[modality] = tfds.features.Tensor(shape=shape, dtype=np.float32, encoding=enc)
    return self.dataset_info_from_configs(
        description=_DESCRIPTION,
        features=tfds.features.FeaturesDict(spec),
        homepage=_HOMEPAGE,
        citation=_CITATION,
        disable_shuffling=True,  # label-file order: `index` == position, eval slices are contiguous
        metadata=tfds.core.MetadataDict(),
    )

  # --- generation ------------------------------------------------------------------------------------

  def _annotation_splits(self) -> dict[str, annotations.Split]:
    return {
        name: annotations.load_split(
            name, self._labels_dir, legacy_annotations=self._legacy_annotations
        )[0]
        for name in annotations.SPLITS
    }

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    config = self.builder_config
    if config.synthetic:
      data = synthetic.SyntheticLLP(
          self._synthetic_train_clips,
          self._synthetic_seed,
          config.layout,
          config.frames,
          self._labels_dir,
      )
      splits = {name: data.split(name) for name in annotations.SPLITS}
      if self._synthetic_eval_clips > 0:
        splits = {
            name: split.head(self._synthetic_eval_clips) if name != "train" else split
            for name, split in splits.items()
        }
      sizes = ", ".join(f"{name} {len(s)}" for name, s in splits.items())
      description = (
          f"SYNTHETIC LLP-structured features (avvp_jax.tasks.llp.synthetic: seed {self._synthetic_seed}, "
          f"{config.layout} layout, {config.frames} frames; clips {sizes}), real weak labels and "
          "real val/test dense labels"
      )
      self._write_simulated_pseudo_labels(data)
      self._source = data
    else:
      features_dir = pathlib.Path(dl_manager.manual_dir)
      splits = self._annotation_splits()
      features_lib.check_features_dir(
          features_dir, config.layout, splits
      )  # before anything is written
      sizes = ", ".join(f"{name} {len(s)}" for name, s in splits.items())
      description = (
          f"LLP features from {features_dir} ({config.layout} layout, {config.frames} frames; clips "
          f"{sizes}), labels from {self._labels_dir}"
      )
      marker = features_dir / synthetic.MARKER_FILE
      if marker.exists():  # a folder written by launch/make_synthetic.py: say so in every output
        description = f"SYNTHETIC features written by launch/make_synthetic.py (marker {marker}): {description}"
      self._source = features_dir
    self.info.metadata["description"] = description
    self.info.metadata["filenames"] = {
        name: list(split.filenames) for name, split in splits.items()
    }
    logging.info("Building %s: %s", self.builder_config.name, description)
    return {name: self._generate_examples(name, split) for name, split in splits.items()}

  def _write_simulated_pseudo_labels(self, data: synthetic.SyntheticLLP) -> None:
    """Writes the SIMULATED pseudo labels of the training clips of `data` into the build's folder.

    During `download_and_prepare` `self.data_dir` is TFDS's incomplete folder, renamed only when the whole
    build succeeded, so the file is there exactly when the build is. A training split the teacher cannot be
    calibrated on (a tiny one) still builds: its error is stored and raised when the labels are read.
    """
    try:
      simulated = simulated_teacher.simulated_pseudo_labels(data, ("train",))
    except InputError as e:
      stored = {"error": np.array(str(e))}
    else:
      audio, visual = simulated.labels["train"]
      # The calibration's floats round-trip exactly through JSON: `summary()` reads back the same line.
      calibration = {"severity": simulated.severity, "f1": simulated.f1}
      stored = {
          "filenames": np.array(data.split("train").filenames),
          "audio": audio.astype(np.uint8),  # 0/1 exactly: float32 again on reading, the same bytes
          "visual": visual.astype(np.uint8),
          "calibration": np.array(json.dumps(calibration)),
      }
      logging.info("%s", simulated.summary())
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **stored)
    (self.data_path / SIMULATED_LABELS_FILE).write_bytes(buffer.getvalue())

  def _labels(self, split: annotations.Split, row: int) -> dict[str, Any]:
    t, c = annotations.NUM_SECONDS, annotations.NUM_CLASSES
    zeros = np.zeros((t, c), np.float32)
    dense = split.audio_labels is not None
    return {
        "clip_id": annotations.clip_id(split.filenames[row]),
        "filename": split.filenames[row],
        "index": np.int32(row),
        "label": split.weak_labels[row].astype(np.float32),
        "audio_label": split.audio_labels[row] if dense else zeros,
        "visual_label": split.visual_labels[row] if dense else zeros,
    }

  def _generate_examples(
      self, name: str, split: annotations.Split
  ) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row, example) in label-file order; features are read (and checked) or generated per clip."""
    if self.builder_config.synthetic:
      for row in range(len(split)):
        yield row, {**self._labels(split, row), **self._source.features(name, row)}
    else:
      for row, clip_features in features_lib.iter_clips(
          self._source, self.layout, self.builder_config.frames, split
      ):
        yield row, {**self._labels(split, row), **clip_features}

  # --- reading -----------------------------------------------------------------------------------------

  @property
  def description_line(self) -> str:
    return str(self.info.metadata.get("description", self.builder_config.description))

  def filenames(self, split: str) -> tuple[str, ...]:
    """The split's clip filenames in `index` order (from the build's metadata)."""
    return tuple(self.info.metadata["filenames"][split])

  def simulated_pseudo_labels(self) -> simulated_teacher.SimulatedPseudoLabels:
    """The SIMULATED pseudo labels of the training clips stored with this synthetic build, as
    `simulated_teacher.simulated_pseudo_labels(data, ("train",))` returned them when the build was made
    (labels `[N, T, C]` float32 0/1 in `filenames("train")` order, severity, F1; `summary()` is its log line).

    Raises:
      InputError: a build of real features, a build without them (stale), or a training split the teacher
        could not be calibrated on.
    """
    if not self.builder_config.synthetic:
      raise InputError(
          f"the build in {self.data_dir} holds real features: SIMULATED pseudo labels exist only for "
          "the embedded synthetic data."
      )
    path = self.data_path / SIMULATED_LABELS_FILE
    if not path.exists():
      raise InputError(
          f"the synthetic build in {self.data_dir} holds no {SIMULATED_LABELS_FILE}: delete the stale "
          "build in config.data.data_dir."
      )
    with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as npz:
      stored = dict(npz)
    if "error" in stored:
      raise InputError(str(stored["error"]))
    if tuple(stored["filenames"]) != self.filenames("train"):
      raise InputError(
          f"{path} names other training clips than the build's metadata: delete the build in "
          "config.data.data_dir."
      )
    calibration = json.loads(str(stored["calibration"]))
    return simulated_teacher.SimulatedPseudoLabels(
        severity=calibration["severity"],
        labels={"train": (stored["audio"].astype(np.float32), stored["visual"].astype(np.float32))},
        f1=calibration["f1"],
    )


def download_config(features_dir: str | os.PathLike | None) -> tfds.download.DownloadConfig:
  """A local-only build: the features folder as manual dir, no GCS look-up, no statistics pass."""
  return tfds.download.DownloadConfig(
      manual_dir=os.fspath(features_dir) if features_dir else None,
      try_download_gcs=False,
      compute_stats=tfds.download.ComputeStatsMode.SKIP,
  )
