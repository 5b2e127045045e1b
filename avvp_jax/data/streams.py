"""Task-free per-host streams of a prepared TFDS build: seeded, resumable training epochs, padded evaluation.

A task prepares its build (its TFDS builder, in a folder keyed by what the build is made of: `keyed_dir`,
`build_once`) and hands it to `Streams` with its keys; every task then has the same input path:

Build contract: each example holds its features and labels as float32 raw bytes of a fixed shape
(`tfds.features.Tensor(..., encoding=BYTES)`), `index` (int) its row in the split, and the split's clips are
stored in `index` order (`disable_shuffling=True`); `builder.filenames(split)` names them in that order.

Per-host data: host `p` of `P` reads `tfds.even_splits(split, P)[p]`, a contiguous slice (sizes differ by at
most one clip); the slices are disjoint and cover the split. The slice is read through the build's TFDS file
instructions as serialized examples, shuffled and batched as such, and each batch is parsed at once
(`tf.io.parse_example` + `tf.io.decode_raw`), faster than decoding clip by clip.

Training order (exactly resumable by design): epoch `e` of host `p` is this host's slice, shuffled by tf.data
with a buffer of `min(shuffle_buffer, slice size)` clips and the seed `hash(seed, e, p)`, batched to
`batch_size // P` and cut to `steps_per_epoch` batches (the same on every host). With `keep_partial_batch`
(as the official PyTorch loaders' `drop_last=False`) the last, smaller batch is trained on too, padded to the
batch size with `mask` 0 (the losses average over real clips only; hosts with shorter slices add whole
padding batches); without it the remainder is dropped and the smallest slice sets the steps. It is a pure
function of (seed, epoch, process index/count): a run resumed at batch k of epoch e calls
`train_batches(e, skip=k)`, which yields the same batches an uninterrupted run would have seen from k on.
`seed_train_batches(seeds, e, k)` zips one such stream per seed into batches with a leading `[S]` axis, for
replicas trained side by side (`config.num_seeds`).

Training split in memory: when the shuffle buffer covers the host's slice (the default: it would hold every
clip of each epoch anyway), the slice is decoded once, at the first epoch, and kept; each epoch then takes its
order from tf.data's shuffle of the slice's positions with the same buffer and seed (that order depends only
on the number of elements, the buffer and the seed, never on the elements) and gathers its batches from
memory: the same batches as the streamed pipeline (`train_dataset`, tested equal), without re-reading,
re-parsing and refilling the buffer with the whole split at every epoch start.

Evaluation counts every clip exactly once: each host reads its own slice, pads its last batch (and adds
whole padding batches so every host runs the same `num_eval_batches(split)`), and marks real clips with
`mask` 1 and their row in `index`; padding has `mask` 0 and `index` -1.

Batches are dicts of numpy arrays (`avvp_jax.tasks.llp.batch_keys` names the LLP ones): the feature keys, the
label keys (plus the evaluation labels in evaluation splits), `mask` [B] float32 and `index` [B] int32.

Length: one contract (which clips each host sees, in which order, padded how); its streamed and kept training
paths must yield the same batches, so they stay side by side.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import contextlib  # pylint: disable=g-import-not-at-top,g-bad-import-order
import dataclasses
import hashlib
import io
import json
import pathlib
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from avvp_jax.errors import InputError


def hide_accelerators_from_tf() -> None:
  """Keeps TensorFlow (used for input only) off the GPUs/TPUs that JAX uses; called when this module, the one
  way tasks read their builds, is imported, before any TensorFlow op runs."""
  for kind in ("GPU", "TPU"):
    try:
      tf.config.set_visible_devices([], kind)
    except (RuntimeError, ValueError):  # already initialised, or no such device type
      pass


hide_accelerators_from_tf()


def keyed_dir(root: str | os.PathLike, name: str, identity: Mapping[str, Any]) -> pathlib.Path:
  """`root/<name>-<hash of identity>`: the folder of the build that `identity` (JSON data: what the build is
  made of, e.g. the features path and its modification times, the labels' fingerprint, the builder version)
  describes, so other inputs never reuse a stale build and the same ones reuse it at no cost."""
  digest = hashlib.sha256(json.dumps(dict(identity), sort_keys=True).encode()).hexdigest()[:12]
  return pathlib.Path(root) / f"{name}-{digest}"


def build_once(make_builder: Callable[[], Any], what: str, **prepare_kwargs: Any) -> Any:
  """The builder `make_builder()` makes, prepared first if its folder holds no complete build.

  TFDS writes a build atomically (into `incomplete.*`, then renamed), so an interrupted build is rebuilt on
  the next call; several processes sharing a `data_dir` may build at once, the first rename wins.

  Args:
    make_builder: makes the (possibly unprepared) builder in its keyed folder.
    what: the data's name for the log lines, e.g. "LLP".
    **prepare_kwargs: for `download_and_prepare` (e.g. a local-only `download_config`).
  """
  builder = make_builder()
  if builder.is_prepared():
    logging.info("Reusing the %s build in %s.", what, builder.data_dir)
    return builder
  logging.info(
      "Building %s (%s) into %s; later runs with the same inputs reuse it.",
      what,
      builder.builder_config.name if builder.builder_config else builder.name,
      builder.data_dir,
  )
  leftovers = sorted(pathlib.Path(builder.data_dir).parent.glob("incomplete.*"))
  if leftovers:
    logging.warning(
        "Ignoring %d unfinished earlier build(s) of this dataset (%s): delete them to free the "
        "space, unless another process is building into this data_dir right now.",
        len(leftovers),
        ", ".join(str(p) for p in leftovers),
    )
  start = time.perf_counter()
  try:
    with _quiet_build():
      builder.download_and_prepare(**prepare_kwargs)
  except OSError:
    # Another process sharing `data_dir` may have finished the same build first (its rename won).
    if not make_builder().is_prepared():
      raise
  built = make_builder()  # re-read from disk: the info (and metadata) of the finished build
  logging.info("Built %s in %.1f s.", what, time.perf_counter() - start)
  return built


@contextlib.contextmanager
def _quiet_build():
  """TFDS's own progress bars and "Downloading and preparing dataset Unknown size ..." lines left out of a
  build (our log says what is built, where, and how long it took), unless absl's `-v 1` asks for them.
  """
  if logging.get_verbosity() >= logging.DEBUG:
    yield
    return
  tfds.display_progress_bar(False)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      yield
  finally:
    tfds.display_progress_bar(True)


def _epoch_seed(seed: int, epoch: int, process_index: int) -> int:
  """A stable int64 tf.data seed per (seed, epoch, host)."""
  state = np.random.SeedSequence(
      [int(seed) & 0xFFFFFFFF, int(epoch), int(process_index)]
  ).generate_state(2)
  return int((int(state[0]) << 31 ^ int(state[1])) & 0x7FFFFFFFFFFFFFFF)


@dataclasses.dataclass
class Streams:
  """This host's view of a prepared build (see the module docstring).

  Attributes:
    builder: the prepared TFDS builder (the build contract of the module docstring).
    feature_keys: the task's model inputs, in order; those the build lacks are left out of batches.
    label_keys: label entries read in every split (LLP: the weak `label`).
    eval_label_keys: label entries read in the evaluation splits only (LLP: the dense labels).
    splits: the build's splits.
    batch_size: global training batch (over all hosts).
    eval_batch_size: global evaluation batch.
    seed: training order seed.
    shuffle_buffer: training shuffle buffer (clips), capped at the host's slice.
    process_index, process_count: this host and the number of hosts.
    keep_partial_batch: train on the last, smaller batch of an epoch too, padded and masked (as the official
      PyTorch loaders do, `drop_last=False`); False: drop it.
    train_extras: per-clip side data of the training clips, added to every batch of `seed_train_batches`:
      an object whose `batch(index [S, B]) -> {key: [S, B, ...]}` (LLP: the segment pseudo labels,
      `pseudo_labels.PseudoLabels`); None: none.
    clip_id: a build's clip name (`builder.filenames`) -> the id that names the clip in messages.
    description: what the data are, for the logs.
    synthetic: whether the data are synthetic (said in every report).
    eval_in_memory_mb: an evaluation split whose padded batches take at most this many MiB on this host is
      kept in memory after its first pass (`eval_batches` then reads no file); 0: always streamed.
  """

  builder: Any
  feature_keys: tuple[str, ...]
  label_keys: tuple[str, ...]
  eval_label_keys: tuple[str, ...]
  splits: tuple[str, ...]
  batch_size: int
  eval_batch_size: int
  seed: int = 0
  shuffle_buffer: int = 10_000
  process_index: int = 0
  process_count: int = 1
  keep_partial_batch: bool = True
  train_extras: Any = None
  clip_id: Callable[[str], str] = str
  description: str = ""
  synthetic: bool = False
  eval_in_memory_mb: float = 0.0
  _eval_kept: dict[str, list[dict[str, np.ndarray]]] = dataclasses.field(
      default_factory=dict, init=False, repr=False
  )
  _train_kept: dict[str, np.ndarray] | None = dataclasses.field(
      default=None, init=False, repr=False
  )

  def __post_init__(self):
    if not 0 <= self.process_index < self.process_count:
      raise InputError(
          f"process_index {self.process_index} is not one of the {self.process_count} processes."
      )
    for name in ("batch_size", "eval_batch_size"):
      value = getattr(self, name)
      if value <= 0 or value % self.process_count:
        raise InputError(
            f"config.{name}={value} must be a positive multiple of the {self.process_count} "
            f"processes (hosts): set --config.{name} accordingly."
        )
    if self.steps_per_epoch == 0:
      raise InputError(
          f"the training split has {self.host_num_clips('train')} clips on this host, fewer than "
          f"the per-host batch of {self.host_batch_size}: lower --config.batch_size."
      )

  # --- what the data is ------------------------------------------------------------------------------

  @property
  def feature_shapes(self) -> dict[str, tuple[int, ...]]:
    """Per-clip shapes of the feature keys of a batch (without `[B]`)."""
    return {
        k: tuple(self.builder.info.features[k].shape)
        for k in self.feature_keys
        if k in self.builder.info.features
    }

  @property
  def input_dims(self) -> dict[str, int]:
    """Feature widths of every input key (0 for a stream the build lacks, e.g. LLP's motion with CLIP/CLAP)."""
    shapes = self.feature_shapes
    return {k: (shapes[k][-1] if k in shapes else 0) for k in self.feature_keys}

  def filenames(self, split: str) -> tuple[str, ...]:
    """The split's clip names in `index` order (LLP: `<id>_<start>_<end>` filenames)."""
    self._check_split(split)
    return self.builder.filenames(split)

  def clip_ids(self, split: str) -> tuple[str, ...]:
    """The split's clip ids in `index` order (`clip_id` of each name; LLP: the 11-character YouTube ids)."""
    return tuple(self.clip_id(f) for f in self.filenames(split))

  def num_clips(self, split: str) -> int:
    """Clips of the whole split (all hosts)."""
    self._check_split(split)
    return int(self.builder.info.splits[split].num_examples)

  @property
  def num_train_clips(self) -> int:
    return self.num_clips("train")

  def num_eval_clips(self, split: str) -> int:
    """Clips of the split that an evaluation counts (all hosts): every one."""
    return self.num_clips(split)

  def train_clip_ids(self, index: Sequence[int] | np.ndarray) -> list[str]:
    """Clip ids of training rows (e.g. a batch's `index`); -1 (padding) is skipped."""
    ids = self.clip_ids("train")
    return [ids[i] for i in np.asarray(index).reshape(-1) if i >= 0]

  # --- per-host slices ---------------------------------------------------------------------------------

  def _check_split(self, split: str) -> None:
    if split not in self.splits:
      raise InputError(f"unknown split {split!r}; choose one of {', '.join(self.splits)}.")

  def host_split(self, split: str, process_index: int | None = None) -> Any:
    """The TFDS split of host `process_index` (default: this host): a contiguous, disjoint slice."""
    self._check_split(split)
    index = self.process_index if process_index is None else process_index
    return tfds.even_splits(split, n=self.process_count)[index]

  def host_num_clips(self, split: str, process_index: int | None = None) -> int:
    return int(self.builder.info.splits[self.host_split(split, process_index)].num_examples)

  @property
  def host_batch_size(self) -> int:
    return self.batch_size // self.process_count

  @property
  def host_eval_batch_size(self) -> int:
    return self.eval_batch_size // self.process_count

  @property
  def steps_per_epoch(self) -> int:
    """Training steps per epoch, the same on every host: with `keep_partial_batch` the largest slice decides
    (the last batch padded and masked, shorter slices add whole padding batches), else the smallest.
    """
    sizes = [self.host_num_clips("train", p) for p in range(self.process_count)]
    if self.keep_partial_batch:
      return -(-max(sizes) // self.host_batch_size)
    return min(sizes) // self.host_batch_size

  def num_eval_batches(self, split: str) -> int:
    """Evaluation batches per host, the same on every host (the largest slice decides)."""
    largest = max(self.host_num_clips(split, p) for p in range(self.process_count))
    return -(-largest // self.host_eval_batch_size)

  # --- tf.data ----------------------------------------------------------------------------------------

  def _keys(self, split: str) -> list[str]:
    """The batch keys read from the build (the evaluation labels for evaluation splits only)."""
    keys = [k for k in self.feature_keys if k in self.builder.info.features]
    keys += [*self.label_keys, "index"]
    return keys + (list(self.eval_label_keys) if split != "train" else [])

  def _serialized(self, split: str) -> tf.data.Dataset:
    """This host's slice of `split` as serialized examples, in `index` order (TFDS's file instructions of
    the `even_splits` slice, read one file after the other)."""
    instructions = self.builder.info.splits[self.host_split(split)].file_instructions
    parts = [
        tf.data.TFRecordDataset(i.filename, buffer_size=8 << 20).skip(i.skip).take(i.take)
        for i in instructions
    ]
    dataset = parts[0]
    for part in parts[1:]:
      dataset = dataset.concatenate(part)
    options = tf.data.Options()
    options.deterministic = True
    return dataset.with_options(options)

  def _decoder(self, split: str):
    """Parses a `[B]` batch of serialized examples at once: one `parse_example` and one `decode_raw` per
    key and batch (TFDS's `as_dataset` decodes clip by clip)."""
    keys = self._keys(split)
    spec = {k: tf.io.FixedLenFeature([], tf.int64 if k == "index" else tf.string) for k in keys}
    shapes = {k: tuple(self.builder.info.features[k].shape) for k in keys if k != "index"}

    def decode(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
      parsed = tf.io.parse_example(serialized, spec)
      batch = {
          k: tf.reshape(tf.io.decode_raw(parsed[k], tf.float32), (-1, *shape))
          for k, shape in shapes.items()
      }
      batch["index"] = tf.cast(parsed["index"], tf.int32)
      return batch

    return decode

  def train_dataset(self, epoch: int, skip: int = 0, seed: int | None = None) -> tf.data.Dataset:
    """The tf.data pipeline behind `train_batches` (batches without `mask`); `seed` None: `self.seed`."""
    if not 0 <= skip <= self.steps_per_epoch:
      raise InputError(f"cannot skip {skip} batches of an epoch of {self.steps_per_epoch}.")
    seed = self.seed if seed is None else seed
    buffer = max(1, min(int(self.shuffle_buffer), self.host_num_clips("train")))
    dataset = self._serialized("train").shuffle(
        buffer, seed=_epoch_seed(seed, epoch, self.process_index), reshuffle_each_iteration=False
    )
    dataset = dataset.batch(self.host_batch_size, drop_remainder=not self.keep_partial_batch)
    dataset = self._padded(dataset, "train", self.host_batch_size, self.steps_per_epoch)
    return dataset.take(self.steps_per_epoch).skip(skip).prefetch(tf.data.AUTOTUNE)

  @property
  def train_in_memory(self) -> bool:
    """Whether training batches come from this host's slice kept in memory (see the module docstring): the
    shuffle buffer covers the slice, so every epoch holds all of its clips anyway."""
    return int(self.shuffle_buffer) >= self.host_num_clips("train")

  def _train_rows(self) -> dict[str, np.ndarray]:
    """This host's training slice decoded once, in `index` order: `{key: [N + 1, ...]}`, the last row the
    padding row (zeros, `index` -1)."""
    if self._train_kept is None:
      n = self.host_num_clips("train")
      rows: dict[str, np.ndarray] = {}
      done = 0
      parsed = self._serialized("train").batch(256).map(self._decoder("train"))
      for part in parsed.as_numpy_iterator():
        for key, value in part.items():
          if key not in rows:
            rows[key] = np.zeros((n + 1, *value.shape[1:]), value.dtype)
          rows[key][done : done + len(value)] = value
        done += len(part["index"])
      if done != n:
        raise InputError(f"the training split's build holds {done} clips on this host, not {n}.")
      rows["index"][n] = -1
      self._train_kept = rows
    return self._train_kept

  def _epoch_positions(self, epoch: int, seed: int) -> np.ndarray:
    """`[steps_per_epoch, B]` positions in this host's slice (N, the padding row, where a batch runs out) in
    the order of `train_dataset(epoch, seed=seed)`: tf.data's shuffle of `range(N)` with its buffer and seed.
    """
    n = self.host_num_clips("train")
    buffer = max(1, min(int(self.shuffle_buffer), n))
    order = tf.data.Dataset.range(n).shuffle(
        buffer, seed=_epoch_seed(seed, epoch, self.process_index), reshuffle_each_iteration=False
    )
    positions = np.concatenate([np.zeros(0, np.int64), *order.batch(max(n, 1)).as_numpy_iterator()])
    size, steps = self.host_batch_size, self.steps_per_epoch
    padded = np.full(steps * size, n, np.int64)
    kept = min(len(positions), steps * size)  # without `keep_partial_batch`: the remainder dropped
    padded[:kept] = positions[:kept]
    return padded.reshape(steps, size)

  def _memory_batches(
      self, seeds: Sequence[int], epoch: int, skip: int, stacked: bool
  ) -> Iterator[dict[str, np.ndarray]]:
    """Batches gathered from the kept slice: `[S, B, ...]` entries if `stacked`, else `[B, ...]` (one seed)."""
    if not 0 <= skip <= self.steps_per_epoch:
      raise InputError(f"cannot skip {skip} batches of an epoch of {self.steps_per_epoch}.")
    rows = self._train_rows()
    n = self.host_num_clips("train")
    positions = np.stack([self._epoch_positions(epoch, s) for s in seeds], axis=1)  # [steps, S, B]
    for where in positions[skip:]:
      where = where if stacked else where[0]
      batch = {key: rows[key][where] for key in sorted(rows)}
      batch["mask"] = (where < n).astype(np.float32)
      yield batch

  def train_batches(self, epoch: int, skip: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """This host's training batches of `epoch` (0-based), from batch `skip` on.

    Yields `steps_per_epoch - skip` dicts: `audio`, `frames`, (`motion`), `label`, `index` [B] int32 (rows
    of the training split) and `mask` [B] float32 ones, with B = `batch_size // process_count`.
    """
    if self.train_in_memory:
      yield from self._memory_batches([self.seed], epoch, skip, stacked=False)
      return
    yield from self.train_dataset(epoch, skip).as_numpy_iterator()

  def seed_train_batches(
      self, seeds: Sequence[int], epoch: int, skip: int = 0
  ) -> Iterator[dict[str, np.ndarray]]:
    """The training batches of several seeds side by side, each entry stacked on a leading `[S]` axis.

    Row `s` of every entry is exactly the batch `train_batches` yields for `seed=seeds[s]` (one shuffled
    stream per seed): replicas trained together see what separate runs would. Memory: the kept slice once
    (`train_in_memory`), else one shuffle buffer per seed (streams zipped in tf.data). With `train_extras`
    set, each batch also holds the clips' side data.
    """
    if not seeds:
      raise InputError("seed_train_batches needs at least one seed.")
    if self.train_in_memory:
      batches = self._memory_batches(seeds, epoch, skip, stacked=True)
    else:
      streams = tuple(self.train_dataset(epoch, skip, seed=seed) for seed in seeds)
      stacked = tf.data.Dataset.zip(streams).map(
          lambda *batches: {key: tf.stack([b[key] for b in batches]) for key in batches[0]}
      )
      batches = stacked.prefetch(2).as_numpy_iterator()
    for batch in batches:
      if self.train_extras is not None:
        batch.update(self.train_extras.batch(batch["index"]))
      yield batch

  def _padded(
      self, batches: tf.data.Dataset, split: str, size: int, num_batches: int
  ) -> tf.data.Dataset:
    """Decodes `[<= size]` batches of serialized examples and pads each to `size` clips: `mask` 1 on real
    clips, 0 on padding (zeros, `index` -1); whole padding batches follow until there are `num_batches`.
    """
    decode = self._decoder(split)

    def pad(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
      batch = decode(serialized)
      n = tf.shape(serialized)[0]
      missing = size - n
      out = {k: tf.pad(v, [[0, missing]] + [[0, 0]] * (len(v.shape) - 1)) for k, v in batch.items()}
      out["index"] = tf.concat([batch["index"], -tf.ones([missing], tf.int32)], axis=0)
      out["mask"] = tf.concat([tf.ones([n], tf.float32), tf.zeros([missing], tf.float32)], axis=0)
      return {k: tf.ensure_shape(v, [size, *v.shape[1:]]) for k, v in out.items()}

    dataset = batches.map(pad, num_parallel_calls=tf.data.AUTOTUNE)
    extra = num_batches - -(-self.host_num_clips(split) // size)
    if extra > 0:  # this host's slice is shorter: whole padding batches keep every host in step
      blank = tf.nest.map_structure(
          lambda spec: tf.zeros(spec.shape, spec.dtype), dataset.element_spec
      )
      blank["index"] = -tf.ones([size], tf.int32)
      dataset = dataset.concatenate(tf.data.Dataset.from_tensors(blank).repeat(extra))
    return dataset

  def eval_dataset(self, split: str) -> tf.data.Dataset:
    """The tf.data pipeline behind `eval_batches`."""
    size = self.host_eval_batch_size
    dataset = self._padded(
        self._serialized(split).batch(size), split, size, self.num_eval_batches(split)
    )
    return dataset.prefetch(tf.data.AUTOTUNE)

  def eval_batches(self, split: str) -> Iterator[dict[str, np.ndarray]]:
    """This host's `num_eval_batches(split)` padded evaluation batches of `split`, every clip once.

    Each dict: the features, `label`, `audio_label`/`visual_label` (val/test), `mask` [B] float32 (0 on
    padding) and `index` [B] int32 (-1 on padding), B = `eval_batch_size // process_count`. A split within
    `eval_in_memory_mb` is read once and then served from memory (the same arrays: do not modify them).
    """
    if split in self._eval_kept:
      yield from self._eval_kept[split]
      return
    kept, size = [], 0
    for batch in self.eval_dataset(split).as_numpy_iterator():
      yield batch
      if kept is not None:
        kept.append(batch)
        size += sum(v.nbytes for v in batch.values())
        if size > self.eval_in_memory_mb * 2**20:
          kept = None  # too large to keep: streamed every time
    if kept is not None:  # a whole pass, within the budget
      self._eval_kept[split] = kept
