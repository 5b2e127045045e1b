"""The input pipeline: build LLP once (TFDS), then stream per-host batches with tf.data.

One entry point, `prepare(config.data, batch_size=..., eval_batch_size=..., seed=...) -> Streams`:
  * picks the builder config from `config.data` (layout, frames; an empty `features_dir` means the embedded
    SYNTHETIC data) and builds it on first use into `<data_dir>/<config name>-<key>/`, where the key hashes
    what the build was made from: the absolute features path, its modality folders' modification times, the
    labels' fingerprint, layout, frames and annotation mode (synthetic: clips, seed and labels). Pointing at
    other features or labels therefore never reuses a stale build; the same ones reuse it at no cost. TFDS
    writes a build atomically, so an interrupted build is rebuilt on the next call.
  * returns this host's `streams.Streams`: `train_batches(epoch, skip)`, `eval_batches(split)`, the sizes the
    trainer needs, and each split's filenames / clip ids in `index` order.

The streams themselves are task-free (`avvp_jax.data.streams`: per-host slices, seeded resumable epochs,
the padded and masked last batch, seed stacking); this module says what an LLP build is and which of its keys
are features and labels. Batches (`avvp_jax.tasks.llp.batch_keys`): `audio` [B, T, Da], `frames` [B, T, Df]
(pooled) or [B, 8T, Df] (raw), `motion` [B, T, 512] (official layout only), `label` [B, C], for val/test
`audio_label` and `visual_label` [B, T, C], `mask` [B] float32, `index` [B] int32.

TensorFlow is imported in `streams` and `tfds_llp` only, quietly (TF_CPP_MIN_LOG_LEVEL=2,
TF_ENABLE_ONEDNN_OPTS=0) and with GPUs hidden from it.
"""

from __future__ import annotations

import pathlib
from typing import Any

import ml_collections

from avvp_jax.tasks.llp import annotations
from avvp_jax.tasks.llp import batch_keys
from avvp_jax.tasks.llp import features as features_lib
from avvp_jax.tasks.llp import synthetic as synthetic_lib
from avvp_jax.data import streams
from avvp_jax.tasks.llp import tfds_llp

DEFAULT_DATA_DIR = "~/.cache/avvp_jax/tfds"


def _settings(data_config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The fields of `config.data` a build depends on, checked and normalised."""
  layout, frames = data_config.layout, data_config.frames
  features_lib.check_layout(layout, frames)
  if layout == "clip_clap":
    frames = "pooled"  # one frame per second: pooled and raw are the same data
  settings = dict(
      layout=layout,
      frames=frames,
      synthetic=synthetic_lib.is_synthetic(data_config),
      labels_dir=str(annotations.resolve_labels_dir(data_config.labels_dir).resolve()),
      legacy_annotations=bool(data_config.legacy_annotations),
  )
  if settings["synthetic"]:
    settings.update(
        synthetic_train_clips=int(data_config.synthetic_train_clips),
        synthetic_seed=int(data_config.synthetic_seed),
        synthetic_eval_clips=int(data_config.synthetic_eval_clips),
    )
  else:
    features_lib.check_layout_folders(data_config.features_dir, layout)  # the one folder check
    settings["features_dir"] = str(pathlib.Path(data_config.features_dir).expanduser().resolve())
  return settings


def build_key(data_config: ml_collections.ConfigDict) -> str:
  """`<config name>-<hash>`: the sub-folder of `data_dir` that holds the build of `data_config`.

  The hash covers the absolute features path and its modality folders' modification times (files added or
  removed give a new build), the labels' content fingerprint, layout, frames, annotation mode and the
  builder version; for synthetic data the clip counts, seed and labels instead of a path.
  """
  settings = _settings(data_config)
  identity = {k: v for k, v in settings.items() if k != "labels_dir"}
  identity["labels"] = annotations.labels_fingerprint(settings["labels_dir"])
  identity["version"] = str(tfds_llp.AvvpLlp.VERSION)
  if not settings["synthetic"]:
    identity["folders"] = list(
        features_lib.folder_stamp(settings["features_dir"], settings["layout"])
    )
  name = tfds_llp.config_name(settings["layout"], settings["frames"], settings["synthetic"])
  return streams.keyed_dir("", name, identity).name


def data_root(data_config: ml_collections.ConfigDict) -> pathlib.Path:
  """Where builds live: `config.data.data_dir`, default (empty) `~/.cache/avvp_jax/tfds`."""
  return pathlib.Path(data_config.data_dir or DEFAULT_DATA_DIR).expanduser().resolve()


def make_builder(data_config: ml_collections.ConfigDict) -> tfds_llp.AvvpLlp:
  """The (possibly not yet prepared) TFDS builder of `data_config`, in its keyed folder."""
  settings = _settings(data_config)
  kwargs = dict(
      labels_dir=settings["labels_dir"], legacy_annotations=settings["legacy_annotations"]
  )
  if settings["synthetic"]:
    kwargs.update(
        synthetic_train_clips=settings["synthetic_train_clips"],
        synthetic_seed=settings["synthetic_seed"],
        synthetic_eval_clips=settings["synthetic_eval_clips"],
    )
  name = tfds_llp.config_name(settings["layout"], settings["frames"], settings["synthetic"])
  builder = tfds_llp.AvvpLlp(
      config=name, data_dir=str(data_root(data_config) / build_key(data_config)), **kwargs
  )
  builder.features_dir = settings.get("features_dir")  # the manual dir of a real build
  return builder


def ensure_built(data_config: ml_collections.ConfigDict) -> tfds_llp.AvvpLlp:
  """The builder of `data_config`, built first if its keyed folder holds no complete build.

  Raises:
    InputError: bad features or labels (nothing is built then).
  """
  builder = make_builder(data_config)
  return streams.build_once(
      lambda: make_builder(data_config),
      "LLP",
      download_config=tfds_llp.download_config(builder.features_dir),
  )


def prepare(
    data_config: ml_collections.ConfigDict,
    *,
    batch_size: int,
    eval_batch_size: int,
    seed: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
) -> streams.Streams:
  """Builds the dataset of `data_config` if needed and returns this host's streams of it.

  Args:
    data_config: `config.data` as `configs/common.py` defines it (features_dir, labels_dir, layout, frames,
      data_dir, legacy_annotations, shuffle_buffer, keep_partial_batch, synthetic_train_clips,
      synthetic_seed, synthetic_eval_clips; read directly, so every field must be there).
    batch_size: global training batch; each host gets `batch_size // process_count`.
    eval_batch_size: global evaluation batch.
    seed: the training order seed (`config.seed`).
    process_index, process_count: this host and the number of hosts; default `jax.process_index()` /
      `jax.process_count()`.

  Raises:
    InputError: bad features, labels or sizes (a bad folder never produces a build).
  """
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top  (only when the caller does not name the host)

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  builder = ensure_built(data_config)
  return streams.Streams(
      builder=builder,
      feature_keys=batch_keys.FEATURE_KEYS,
      label_keys=(batch_keys.LABEL,),
      eval_label_keys=batch_keys.DENSE_LABELS,
      splits=annotations.SPLITS,
      clip_id=annotations.clip_id,
      description=builder.description_line,
      synthetic=bool(builder.builder_config.synthetic),
      batch_size=int(batch_size),
      eval_batch_size=int(eval_batch_size),
      seed=int(seed),
      shuffle_buffer=int(data_config.shuffle_buffer),
      process_index=int(process_index),
      process_count=int(process_count),
      keep_partial_batch=bool(data_config.keep_partial_batch),
      eval_in_memory_mb=float(data_config.get("eval_in_memory_mb", 0)),
  )
