"""AVE's input pipeline: build `avvp_ave` once (TFDS), then stream per-host batches (`streams.Streams`).

`prepare(config.data, batch_size=, eval_batch_size=, seed=)` picks the builder config from `config.data`
(`features_dir` empty: the embedded SYNTHETIC set; `ave.supervision`: full or weak; `ave.splits`: the order
files, standard or match), builds it on first use into
`<data_dir>/<config name>-<key>/`, where the key hashes what the build is made of (the features folder's path
and its files' sizes and modification times, or the synthetic sizes and seed; the annotations' and splits'
fingerprint; the builder version), and returns this host's `streams.Streams`.

Batches (`batch_keys`): `audio` [B, 10, 128], `visual` [B, 10, 7, 7, 512], `video_label` [B, 29]; with
`supervision="full"` also `segment_label` [B, 10, 29] and `event_mask` [B, 10] in every split, with "weak" in
val and test only; `mask` [B], `index` [B]; with "weak" and `ave.prob_labels` set also `prob_label` [B, 29]
(PSP's weak target; in every split, as streams read label keys, but only a loss reads it).

Disk and time of a build (float32 on disk, this 2-core CPU): the real full build holds 4,143 videos, about
4.2 GB (1.0 MB a video, nearly all of it the visual maps); the SYNTHETIC default (800 training rows, all 402 +
402 evaluation rows) about 1.6 GB, see docs/ave.md for the measured build time.
"""

from __future__ import annotations

import pathlib

import ml_collections

from avvp_jax.data import streams
from avvp_jax.tasks.ave import annotations
from avvp_jax.tasks.ave import batch_keys
from avvp_jax.tasks.ave import data_config as data_config_lib
from avvp_jax.tasks.ave import features as features_lib
from avvp_jax.tasks.ave import tfds_ave

DEFAULT_DATA_DIR = "~/.cache/avvp_jax/tfds"


def build_key(data_config: ml_collections.ConfigDict) -> str:
  """`<config name>-<hash>`: the sub-folder of `data_dir` holding the build of `data_config`."""
  s = data_config_lib.settings(data_config)
  identity = {k: v for k, v in s.items() if k != "labels_dir"}
  identity["labels"] = annotations.fingerprint(s["labels_dir"], s.get("splits", "standard"))
  identity["version"] = str(tfds_ave.AvvpAve.VERSION)
  if "prob_labels" in s:
    info = pathlib.Path(s["prob_labels"]).stat()
    identity["prob_labels_stamp"] = [info.st_size, info.st_mtime_ns]
  if not s["synthetic"]:
    identity["files"] = features_lib.folder_stamp(
        s["features_dir"], weak=s["supervision"] == "weak"
    )
  name = tfds_ave.config_name(s["supervision"], s["synthetic"])
  return streams.keyed_dir("", name, identity).name


def data_root(data_config: ml_collections.ConfigDict) -> pathlib.Path:
  """Where builds live: `config.data.data_dir`, default (empty) `~/.cache/avvp_jax/tfds`."""
  return pathlib.Path(data_config.data_dir or DEFAULT_DATA_DIR).expanduser().resolve()


def make_builder(data_config: ml_collections.ConfigDict) -> tfds_ave.AvvpAve:
  """The (possibly not yet prepared) builder of `data_config`, in its keyed folder."""
  s = data_config_lib.settings(data_config)
  kwargs = {}
  if s["synthetic"]:
    kwargs = {k: s[k] for k in ("synthetic_train_clips", "synthetic_eval_clips", "synthetic_seed")}
  builder = tfds_ave.AvvpAve(
      config=tfds_ave.config_name(s["supervision"], s["synthetic"]),
      data_dir=str(data_root(data_config) / build_key(data_config)),
      labels_dir=s["labels_dir"],
      split_set=s.get("splits", "standard"),
      prob_labels=s.get("prob_labels"),
      **kwargs,
  )
  builder.features_dir = s.get("features_dir")
  return builder


def ensure_built(data_config: ml_collections.ConfigDict) -> tfds_ave.AvvpAve:
  """The builder of `data_config`, built first if its keyed folder holds no complete build."""
  features_dir = data_config_lib.settings(data_config).get("features_dir")
  return streams.build_once(
      lambda: make_builder(data_config),
      "AVE",
      download_config=tfds_ave.download_config(features_dir),
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
  """Builds the data of `data_config` if needed and returns this host's streams of it.

  Args:
    data_config: `config.data` (features_dir, data_dir, shuffle_buffer, keep_partial_batch, synthetic_seed and
      the `ave` section: supervision, labels_dir, synthetic_train_clips, synthetic_eval_clips, prob_labels).
    batch_size, eval_batch_size: global batches; each host gets its share.
    seed: the training order seed.
    process_index, process_count: this host and the number of hosts (default: JAX's).

  Raises:
    InputError: bad features, labels or sizes (a bad folder never produces a build).
  """
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top  (only when the caller does not name the host)

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  builder = ensure_built(data_config)
  weak = data_config.ave.supervision == "weak"
  dense = (batch_keys.SEGMENT_LABEL, batch_keys.EVENT_MASK)
  prob = (batch_keys.PROB_LABEL,) if data_config.ave.get("prob_labels", "") else ()
  return streams.Streams(
      builder=builder,
      feature_keys=batch_keys.FEATURE_KEYS,
      label_keys=(batch_keys.VIDEO_LABEL,) + (prob if weak else dense),
      eval_label_keys=dense if weak else (),
      splits=annotations.SPLITS,
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
