"""Tests of avvp_jax.tasks.llp.pipeline: build keys and reuse, per-host slices, padded evaluation, shuffling and
exact resumption."""

import pathlib
import shutil
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import ml_collections
import numpy as np

from avvp_jax.tasks.llp import annotations
from avvp_jax.tasks.llp import features
from avvp_jax.tasks.llp import pipeline
from avvp_jax.data import streams
from avvp_jax.errors import InputError
from configs import common


def data_config(
    base: ml_collections.ConfigDict | None = None, **overrides
) -> ml_collections.ConfigDict:
  """A copy of `base` (default: `config.data` of configs/common.py) with `overrides`; locked, so a misspelt
  field is an error."""
  config = common.get_config().data if base is None else base.copy_and_resolve_references()
  config.lock()
  config.update(overrides)
  return config


def write_tiny_llp(root: pathlib.Path, sizes=(23, 11, 7), seed: int = 0):
  """A tiny official-layout LLP on disk; returns (features_dir, labels_dir, {split: {modality: [N, ...]}})."""
  rng = np.random.default_rng(seed)
  features_dir, labels_dir = root / "features", root / "labels"
  labels_dir.mkdir(parents=True)
  stored, dense = {}, []
  for split, n in zip(annotations.SPLITS, sizes):
    rows = []
    stored[split] = {m: [] for m in features.LAYOUTS["official"]}
    for i in range(n):
      clip = f"{split[:2]}{seed}{i:08d}"
      filename = f"{clip}_0_10"
      name = annotations.CLASSES[int(rng.integers(annotations.NUM_CLASSES))]
      rows.append(f"{filename}\t{name}\n")
      if split != "train":
        dense.append(f"{filename}\t{int(rng.integers(0, 5))}\t{int(rng.integers(5, 11))}\t{name}\n")
      for modality, (folder, shape) in features.LAYOUTS["official"].items():
        (features_dir / folder).mkdir(parents=True, exist_ok=True)
        value = rng.normal(size=shape).astype(np.float32)
        np.save(features_dir / folder / f"{clip}.npy", value)
        stored[split][modality].append(value)
    (labels_dir / annotations.SPLIT_FILES[split]).write_text(
        "filename\tevent_labels\n" + "".join(rows)
    )
  for name in annotations.DENSE_FILES.values():
    (labels_dir / name).write_text("filename\tonset\toffset\tevent_labels\n" + "".join(dense))
  return (
      features_dir,
      labels_dir,
      {s: {m: np.stack(v) for m, v in d.items()} for s, d in stored.items()},
  )


class PipelineTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = pathlib.Path(tempfile.mkdtemp(prefix="pipeline_test_"))
    cls.features_dir, cls.labels_dir, cls.stored = write_tiny_llp(cls.root)
    cls.config = data_config(
        features_dir=str(cls.features_dir),
        labels_dir=str(cls.labels_dir),
        data_dir=str(cls.root / "tfds"),
        layout="official",
        frames="pooled",
        shuffle_buffer=100,
    )
    cls.data = pipeline.prepare(
        cls.config, batch_size=4, eval_batch_size=6, seed=7, process_index=0, process_count=1
    )

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()

  def host(self, index: int, count: int, **kwargs) -> streams.Streams:
    config = data_config(self.config, keep_partial_batch=kwargs.pop("keep_partial_batch", True))
    args = dict(batch_size=4, eval_batch_size=6, seed=7, process_index=index, process_count=count)
    args.update(kwargs)
    return pipeline.prepare(config, **args)

  @parameterized.parameters(True, False)
  def test_train_batches_hold_the_files(self, keep_partial_batch):
    data = self.data if keep_partial_batch else self.host(0, 1, keep_partial_batch=False)
    batches = list(data.train_batches(0))
    # 23 clips in batches of 4: 5 full ones and (the official default) a sixth with 3 clips and 1 padding row.
    self.assertLen(batches, 6 if keep_partial_batch else 5)
    self.assertEqual(data.steps_per_epoch, len(batches))
    labels = annotations.load_split("train", self.labels_dir)[0]
    for number, batch in enumerate(batches):
      self.assertEqual(set(batch), {"audio", "frames", "motion", "label", "index", "mask"})
      self.assertEqual(batch["frames"].shape, (4, 10, 2048))
      self.assertEqual(batch["index"].dtype, np.int32)
      self.assertEqual(batch["mask"].dtype, np.float32)
      real = 3 if number == 5 else 4
      np.testing.assert_array_equal(batch["mask"], [1.0] * real + [0.0] * (4 - real))
      np.testing.assert_array_equal(batch["index"][real:], -1)
      self.assertEqual(batch["audio"][real:].sum(), 0.0)
      rows = batch["index"][:real]
      np.testing.assert_array_equal(batch["audio"][:real], self.stored["train"]["audio"][rows])
      np.testing.assert_array_equal(batch["motion"][:real], self.stored["train"]["motion"][rows])
      np.testing.assert_allclose(
          batch["frames"][:real],
          self.stored["train"]["frames"][rows].reshape(real, 10, 8, 2048).mean(2),
          rtol=1e-6,
          atol=1e-6,
      )
      np.testing.assert_array_equal(batch["label"][:real], labels.weak_labels[rows])
    seen = [i for b in batches for i in b["index"].tolist() if i >= 0]
    self.assertLen(seen, 23 if keep_partial_batch else 20)
    self.assertLen(set(seen), len(seen))  # no clip twice in an epoch
    self.assertEqual(data.clip_ids("train"), labels.clip_ids)
    self.assertEqual(
        data.train_clip_ids(np.array([2, -1, 0])), [labels.clip_ids[2], labels.clip_ids[0]]
    )
    self.assertEqual(data.input_dims, {"audio": 128, "frames": 2048, "motion": 512})

  def test_shuffle_is_a_function_of_seed_and_epoch(self):
    def order(data, epoch):
      return np.concatenate([b["index"] for b in data.train_batches(epoch)]).tolist()

    again = self.host(0, 1)
    self.assertEqual(order(self.data, 0), order(again, 0))
    self.assertEqual(order(self.data, 3), order(again, 3))
    self.assertNotEqual(order(self.data, 0), order(self.data, 1))
    self.assertNotEqual(order(self.data, 0), order(self.host(0, 1, seed=8), 0))
    self.assertNotEqual(order(self.data, 0), list(range(20)))

  @parameterized.parameters(0, 1, 3, 5)
  def test_resume_at_step_equals_uninterrupted(self, skip):
    full = list(self.data.train_batches(2))
    resumed = list(self.host(0, 1).train_batches(2, skip=skip))
    self.assertLen(resumed, len(full) - skip)
    for a, b in zip(full[skip:], resumed):
      for key in a:
        np.testing.assert_array_equal(a[key], b[key])

  @parameterized.parameters((1, True, 4), (1, False, 4), (2, False, 2), (2, True, 1), (3, True, 2))
  def test_training_split_in_memory_gives_the_streamed_batches(
      self, hosts, keep_partial_batch, per_host
  ):
    # The streamed tf.data pipeline (`train_dataset`: shuffling the serialized clips themselves) is the
    # oracle of the batches gathered from memory, for every host, epoch, resume point and seed.
    for index in range(hosts):
      # 23 clips: partial last batches; with 1 clip a host, the shorter slice's whole padding batch.
      data = self.host(
          index, hosts, keep_partial_batch=keep_partial_batch, batch_size=per_host * hosts
      )
      self.assertTrue(data.train_in_memory)  # a buffer of 100 covers the slice
      for epoch, skip in ((0, 0), (4, 2)):
        for seed in (7, 8):
          streamed = list(data.train_dataset(epoch, skip, seed=seed).as_numpy_iterator())
          if seed == 7:
            kept = list(data.train_batches(epoch, skip))
          else:
            kept = [
                {k: v[1] for k, v in b.items()}
                for b in data.seed_train_batches([7, 8], epoch, skip)
            ]
          self.assertLen(kept, len(streamed))
          self.assertLen(kept, data.steps_per_epoch - skip)
          for a, b in zip(kept, streamed):
            self.assertEqual(sorted(a), sorted(b))
            for key in a:
              self.assertEqual(a[key].dtype, b[key].dtype, key)
              np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # A buffer smaller than the slice streams every epoch (what it costs in memory is the user's choice).
    small = pipeline.prepare(
        data_config(self.config, shuffle_buffer=5),
        batch_size=4,
        eval_batch_size=6,
        seed=7,
        process_index=0,
        process_count=1,
    )
    self.assertFalse(small.train_in_memory)
    small._train_rows = lambda: self.fail("the training split kept in memory")
    self.assertLen(list(small.train_batches(0)), 6)

  def test_eval_counts_every_clip_once(self):
    labels = annotations.load_split("val", self.labels_dir)[0]
    batches = list(self.data.eval_batches("val"))
    self.assertLen(batches, 2)  # 11 clips, batches of 6: the last one padded
    mask = np.concatenate([b["mask"] for b in batches])
    index = np.concatenate([b["index"] for b in batches])
    np.testing.assert_array_equal(mask, [1.0] * 11 + [0.0])
    np.testing.assert_array_equal(index, list(range(11)) + [-1])
    last = batches[-1]
    self.assertEqual(last["audio"][-1].sum(), 0)
    np.testing.assert_array_equal(last["audio_label"][:5], labels.audio_labels[6:])
    np.testing.assert_array_equal(last["visual_label"][:5], labels.visual_labels[6:])
    np.testing.assert_array_equal(last["audio"][:5], self.stored["val"]["audio"][6:])
    self.assertEqual(self.data.num_eval_clips("val"), 11)
    self.assertEqual(self.data.filenames("val"), labels.filenames)

  def test_an_eval_split_within_the_memory_budget_is_read_once(self):
    kept = pipeline.prepare(
        data_config(self.config, eval_in_memory_mb=16),
        batch_size=4,
        eval_batch_size=6,
        seed=7,
        process_index=0,
        process_count=1,
    )
    next(kept.eval_batches("val"))  # a pass left after one batch is not kept
    first = list(kept.eval_batches("val"))
    streamed = kept.eval_dataset
    kept.eval_dataset = lambda split: self.fail(f"{split} read from the build again")
    for again in (list(kept.eval_batches("val")), list(kept.eval_batches("val"))):
      self.assertLen(again, len(first))
      for a, b in zip(again, first):
        self.assertEqual(a.keys(), b.keys())
        for key in a:
          np.testing.assert_array_equal(a[key], b[key])
    kept.eval_dataset = streamed
    over = pipeline.prepare(
        data_config(self.config, eval_in_memory_mb=0),  # 0: never kept
        batch_size=4,
        eval_batch_size=6,
        seed=7,
        process_index=0,
        process_count=1,
    )
    calls = []
    read = over.eval_dataset
    over.eval_dataset = lambda split: calls.append(split) or read(split)
    for _ in range(2):
      self.assertLen(list(over.eval_batches("val")), len(first))
    self.assertEqual(calls, ["val", "val"])  # streamed every time
    self.assertEqual(self.data.eval_in_memory_mb, 1024)  # the default budget reaches the streams

  def test_two_hosts_train_on_disjoint_slices_that_cover_the_split(self):
    hosts = [self.host(i, 2) for i in range(2)]
    slices = [set(np.concatenate([b["index"] for b in h.train_batches(0)]).tolist()) for h in hosts]
    self.assertEqual([h.host_batch_size for h in hosts], [2, 2])
    self.assertEqual(hosts[0].steps_per_epoch, hosts[1].steps_per_epoch)
    self.assertEqual(
        hosts[0].steps_per_epoch, 6
    )  # slices of 12 and 11 clips: the second one's last batch padded
    self.assertEqual(slices[0], set(range(12)))  # every clip of each slice, once
    self.assertEqual(slices[1] - {-1}, set(range(12, 23)))
    dropping = [self.host(i, 2, keep_partial_batch=False) for i in range(2)]
    self.assertEqual(
        [h.steps_per_epoch for h in dropping], [11 // 2] * 2
    )  # the smallest slice decides
    slices = [
        set(np.concatenate([b["index"] for b in h.train_batches(0)]).tolist()) for h in dropping
    ]
    self.assertEqual(slices[0] & slices[1], set())
    all_rows = set()
    for h in hosts:  # the slices as stored (before the per-epoch cut) cover the split
      all_rows |= {int(i) for b in h.eval_batches("train") for i in b["index"] if i >= 0}
    self.assertEqual(all_rows, set(range(23)))
    self.assertTrue(slices[0] <= set(range(12)) and slices[1] <= set(range(12, 23)))

  @parameterized.parameters(("val", 11), ("test", 7))
  def test_two_hosts_evaluate_every_clip_once_in_equal_batches(self, split, n):
    hosts = [self.host(i, 2) for i in range(2)]
    per_host = [list(h.eval_batches(split)) for h in hosts]
    self.assertEqual(len(per_host[0]), len(per_host[1]))
    self.assertEqual(len(per_host[0]), hosts[0].num_eval_batches(split))
    index = np.concatenate([b["index"] for batches in per_host for b in batches])
    mask = np.concatenate([b["mask"] for batches in per_host for b in batches])
    np.testing.assert_array_equal(mask > 0, index >= 0)
    self.assertEqual(sorted(index[index >= 0].tolist()), list(range(n)))
    for batches in per_host:
      for b in batches:
        self.assertEqual(b["audio"].shape, (3, 10, 128))
        real = b["index"] >= 0
        np.testing.assert_array_equal(
            b["motion"][real], self.stored[split]["motion"][b["index"][real]]
        )
        self.assertEqual(np.abs(b["motion"][~real]).sum(), 0)

  def test_reuse_and_build_keys(self):
    stamp = next((self.root / "tfds").rglob("dataset_info.json")).stat().st_mtime_ns
    again = pipeline.prepare(
        self.config, batch_size=4, eval_batch_size=6, process_index=0, process_count=1
    )
    self.assertEqual(again.builder.data_dir, self.data.builder.data_dir)
    self.assertEqual(
        next((self.root / "tfds").rglob("dataset_info.json")).stat().st_mtime_ns, stamp
    )
    key = pipeline.build_key(self.config)
    self.assertTrue(key.startswith("official_pooled-"))
    self.assertNotEqual(pipeline.build_key(data_config(self.config, frames="raw")), key)
    self.assertNotEqual(pipeline.build_key(data_config(self.config, legacy_annotations=True)), key)
    synthetic = data_config(features_dir="", synthetic_train_clips=10, synthetic_seed=0)
    self.assertTrue(pipeline.build_key(synthetic).startswith("synthetic_official_pooled-"))
    self.assertNotEqual(
        pipeline.build_key(synthetic), pipeline.build_key(data_config(synthetic, synthetic_seed=1))
    )
    self.assertNotEqual(
        pipeline.build_key(synthetic),
        pipeline.build_key(data_config(synthetic, synthetic_train_clips=9)),
    )

  def test_other_features_or_labels_give_another_build(self):
    root = pathlib.Path(self.create_tempdir().full_path)
    features_dir, labels_dir, stored = write_tiny_llp(root, sizes=(8, 3, 3), seed=1)
    other = data_config(self.config, features_dir=str(features_dir), labels_dir=str(labels_dir))
    self.assertNotEqual(pipeline.build_key(other), pipeline.build_key(self.config))
    data = pipeline.prepare(
        other, batch_size=4, eval_batch_size=6, process_index=0, process_count=1
    )
    self.assertNotEqual(data.builder.data_dir, self.data.builder.data_dir)
    self.assertEqual(data.num_train_clips, 8)
    batch = next(data.eval_batches("test"))
    np.testing.assert_array_equal(batch["audio"][:3], stored["test"]["audio"])
    # Same labels, other features folder; and same features, other labels: other keys too.
    self.assertNotEqual(
        pipeline.build_key(data_config(self.config, features_dir=str(features_dir))),
        pipeline.build_key(self.config),
    )
    self.assertNotEqual(
        pipeline.build_key(data_config(self.config, labels_dir=str(labels_dir))),
        pipeline.build_key(self.config),
    )
    # A file added to a features folder changes the key (the folder changed).
    key = pipeline.build_key(other)
    np.save(features_dir / "vggish" / "extra000000.npy", np.zeros((10, 128), np.float32))
    self.assertNotEqual(pipeline.build_key(other), key)

  def test_bad_sizes(self):
    with self.assertRaisesRegex(InputError, "batch_size=5 must be a positive multiple of the 2"):
      self.host(0, 2, batch_size=5)
    with self.assertRaisesRegex(InputError, "fewer than the per-host batch"):
      self.host(0, 1, batch_size=64, keep_partial_batch=False)
    self.assertEqual(
        self.host(0, 1, batch_size=64).steps_per_epoch, 1
    )  # one padded batch of all 23 clips
    with self.assertRaisesRegex(InputError, "cannot skip 9"):
      next(self.data.train_batches(0, skip=9))
    with self.assertRaisesRegex(InputError, "is not a folder"):
      pipeline.build_key(data_config(self.config, features_dir=str(self.root / "nothing")))
    with self.assertRaisesRegex(InputError, "unknown split"):
      self.data.num_clips("dev")


class SyntheticPipelineTest(absltest.TestCase):

  def test_empty_features_dir_gives_the_synthetic_set(self):
    config = data_config(
        features_dir="",
        data_dir=self.create_tempdir().full_path,
        synthetic_train_clips=12,
        synthetic_seed=0,
        synthetic_eval_clips=5,
        layout="clip_clap",
    )
    data = pipeline.prepare(
        config, batch_size=4, eval_batch_size=4, process_index=0, process_count=1
    )
    self.assertTrue(data.synthetic)
    self.assertIn("SYNTHETIC", data.description)
    self.assertEqual(
        (data.num_train_clips, data.num_eval_clips("val"), data.steps_per_epoch), (12, 5, 3)
    )
    batch = next(data.train_batches(0))
    self.assertNotIn("motion", batch)
    self.assertEqual(data.input_dims["motion"], 0)
    self.assertEqual(batch["frames"].shape[1:], (10, 768))


if __name__ == "__main__":
  absltest.main()
