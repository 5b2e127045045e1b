"""Tests of avvp_jax.tasks.llp.features: layouts, pooling, VALOR's CLAP segment map, checked reading."""

import os
import pathlib

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from avvp_jax.tasks.llp import annotations
from avvp_jax.tasks.llp import batch_keys
from avvp_jax.tasks.llp import features
from avvp_jax.errors import InputError


def _write_clip(
    root: pathlib.Path, layout: str, clip: str, rng: np.random.Generator
) -> dict[str, np.ndarray]:
  arrays = {}
  for modality, (folder, shape) in features.LAYOUTS[layout].items():
    (root / folder).mkdir(parents=True, exist_ok=True)
    arrays[modality] = rng.normal(size=shape).astype(np.float32)
    np.save(root / folder / f"{clip}.npy", arrays[modality])
  return arrays


class LayoutTest(absltest.TestCase):

  def test_official_files_and_shapes(self):
    self.assertEqual(
        features.LAYOUTS["official"],
        {
            "audio": ("vggish", (10, 128)),
            "frames": ("res152", (80, 2048)),
            "motion": ("r2plus1d_18", (10, 512)),
        },
    )
    self.assertEqual(
        features.output_shapes("official", "pooled"),
        {"audio": (10, 128), "frames": (10, 2048), "motion": (10, 512)},
    )
    self.assertEqual(features.output_shapes("official", "raw")["frames"], (80, 2048))

  def test_clip_clap_files_and_shapes(self):
    # VALOR: CLAP/features/<id>.npy [64, 768] feature maps, CLIP/features/<id>.npy [10, 768].
    self.assertEqual(features.stored_shapes("clip_clap"), {"audio": (64, 768), "frames": (10, 768)})
    self.assertEqual(
        str(features.feature_path("/f", "clip_clap", "audio", "abcdefghijk")),
        os.path.join("/f", "CLAP", "features", "abcdefghijk.npy"),
    )
    self.assertEqual(
        features.output_shapes("clip_clap", "raw"), {"audio": (10, 768), "frames": (10, 768)}
    )

  def test_unknown_layout_and_frames(self):
    with self.assertRaisesRegex(InputError, "layout"):
      features.check_layout("vggish_only")
    with self.assertRaisesRegex(InputError, "frames"):
      features.check_layout("official", "mean")


class InputDimsTest(parameterized.TestCase):
  """The model input widths of each layout, against the published feature sizes."""

  @parameterized.parameters(
      ("official", {"audio": 128, "frames": 2048, "motion": 512}),  # VGGish, ResNet-152, R(2+1)D-18
      ("clip_clap", {"audio": 768, "frames": 768, "motion": 0}),  # CLAP, CLIP ViT-L/14, no motion
  )
  def test_widths_and_the_way_back(self, layout, widths):
    self.assertEqual(features.input_dims(layout), widths)
    self.assertEqual(features.layout_of_dims(widths), layout)

  def test_keys_are_the_batch_feature_keys(self):
    self.assertEqual(tuple(features.input_dims("official")), batch_keys.FEATURE_KEYS)
    self.assertEqual(tuple(features.LAYOUTS["official"]), batch_keys.FEATURE_KEYS)
    self.assertEqual(tuple(features.LAYOUTS["clip_clap"]), batch_keys.FEATURE_KEYS[:2])

  def test_motion_beside_a_layout_and_unknown_widths(self):
    # VALOR++ reads R(2+1)D-18 motion beside the CLAP / CLIP features.
    self.assertEqual(
        features.layout_of_dims({"audio": 768, "frames": 768, "motion": 512}), "clip_clap"
    )
    self.assertIsNone(features.layout_of_dims({"audio": 128, "frames": 768, "motion": 0}))

  def test_check_input_dims(self):
    features.check_input_dims("clip_clap", {"audio": 768, "frames": 768}, where="here")
    with self.assertRaisesRegex(
        InputError,
        r"^here holds 'clip_clap' features of widths .* but the teacher takes .*"
        r"'motion': 512.*: pass features of the layout the teacher was trained on\.$",
    ):
      features.check_input_dims(
          "clip_clap",
          {"audio": 768, "frames": 768, "motion": 512},
          where="here",
          model="the teacher",
      )


class DetectLayoutTest(parameterized.TestCase):

  @parameterized.parameters("official", "clip_clap")
  def test_detects_each_layout(self, layout):
    root = pathlib.Path(self.create_tempdir().full_path)
    _write_clip(root, layout, "aaaaaaaaaaa", np.random.default_rng(0))
    self.assertEqual(features.detect_layout(root), layout)

  def test_neither_layout_and_not_a_folder(self):
    root = pathlib.Path(self.create_tempdir().full_path)
    (root / "vggish").mkdir()  # one official folder is not the layout
    with self.assertRaisesRegex(
        InputError,
        r"^--x '.*' holds neither layout's sub-folders \(official: vggish/, res152/, r2plus1d_18/; "
        r"clip_clap: CLAP/features/, CLIP/features/\): point it at the folder holding them, or not\.$",
    ):
      features.detect_layout(root, name="--x", alternative=", or not")
    with self.assertRaisesRegex(InputError, r"^features folder '.*nope' is not a folder"):
      features.detect_layout(root / "nope")


class ClapSegmentTest(absltest.TestCase):

  def test_rows_sum_to_one_and_constants_stay(self):
    matrix = features.clap_segment_matrix()
    self.assertEqual(matrix.shape, (10, 64))
    np.testing.assert_allclose(matrix.sum(axis=1), np.ones(10), atol=1e-12)
    maps = np.full((64, 768), 3.25, np.float32)
    np.testing.assert_allclose(features.clap_segments(maps), np.full((10, 768), 3.25), rtol=1e-6)

  def test_first_segment_is_hand_worked(self):
    # Segment 0 pools upsampled positions 0..102 (ceil(1024 / 10) = 103); with both frequency groups equal,
    # a map constant 1 on time steps 0..3 and 0 elsewhere: positions up to 127 draw only on steps 0..4, so
    # the value is the mean over positions 0..102 of the bicubic weights on steps 0..3.
    maps = np.zeros((2, 32, 8), np.float32)
    maps[:, :4] = 1.0
    segments = features.clap_segments(maps.reshape(64, 8))
    upsample = features._bicubic_matrix(32, 1024)
    expected = upsample[:103, :4].sum(axis=1).mean()
    np.testing.assert_allclose(segments[0], np.full(8, expected), rtol=1e-6)
    self.assertGreater(expected, 0.99)  # steps 0..3 cover positions 0..~115 almost alone

  def test_matches_valors_network_path(self):
    # VALOR main_network.py: bicubic upsampling 32 -> 1024, linear layer, mean over frequency, adaptive pool.
    import torch  # pylint: disable=g-import-not-at-top
    import torch.nn.functional as F  # pylint: disable=g-import-not-at-top

    rng = np.random.default_rng(0)
    maps = rng.normal(size=(2, 64, 768)).astype(np.float32)
    weight, bias = rng.normal(size=(768, 6)), rng.normal(size=6)
    x = torch.tensor(maps, dtype=torch.float64).permute(0, 2, 1).reshape(-1, 768, 2, 32)
    up = F.interpolate(x, size=(2, 1024), mode="bicubic")
    hidden = (
        (up.permute(0, 2, 3, 1) @ torch.tensor(weight) + torch.tensor(bias))
        .permute(0, 3, 1, 2)
        .mean(dim=2)
    )
    reference = F.adaptive_avg_pool1d(hidden, 10).permute(0, 2, 1).numpy()
    ours = features.clap_segments(maps).astype(np.float64) @ weight + bias
    np.testing.assert_allclose(ours, reference, atol=1e-4 * np.abs(reference).max())


class LoadClipTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.root = pathlib.Path(self.create_tempdir().full_path)
    self.rng = np.random.default_rng(1)

  def test_official_pooled_is_mean_of_each_seconds_frames(self):
    arrays = _write_clip(self.root, "official", "abcdefghijk", self.rng)
    pooled = features.load_clip(self.root, "official", "pooled", "abcdefghijk")
    raw = features.load_clip(self.root, "official", "raw", "abcdefghijk")
    np.testing.assert_array_equal(raw["frames"], arrays["frames"])
    for second in range(10):
      np.testing.assert_allclose(
          pooled["frames"][second],
          arrays["frames"][8 * second : 8 * second + 8].mean(axis=0),
          rtol=1e-6,
          atol=1e-6,
      )
    for modality in ("audio", "motion"):
      np.testing.assert_array_equal(pooled[modality], arrays[modality])
      self.assertEqual(pooled[modality].dtype, np.float32)

  def test_clip_clap(self):
    arrays = _write_clip(self.root, "clip_clap", "abcdefghijk", self.rng)
    clip = features.load_clip(self.root, "clip_clap", "pooled", "abcdefghijk")
    self.assertEqual(set(clip), {"audio", "frames"})
    np.testing.assert_array_equal(clip["frames"], arrays["frames"])
    np.testing.assert_allclose(
        clip["audio"], features.clap_segment_matrix() @ arrays["audio"], rtol=1e-5, atol=1e-6
    )

  def test_float64_files_are_accepted_as_float32(self):
    arrays = _write_clip(self.root, "official", "abcdefghijk", self.rng)
    np.save(self.root / "vggish" / "abcdefghijk.npy", arrays["audio"].astype(np.float64))
    clip = features.load_clip(self.root, "official", "raw", "abcdefghijk")
    self.assertEqual(clip["audio"].dtype, np.float32)
    np.testing.assert_array_equal(clip["audio"], arrays["audio"])

  def test_missing_file_names_clip_and_path(self):
    _write_clip(self.root, "official", "abcdefghijk", self.rng)
    path = self.root / "r2plus1d_18" / "abcdefghijk.npy"
    path.unlink()
    with self.assertRaises(InputError) as caught:
      features.load_clip(self.root, "official", "pooled", "abcdefghijk", "abcdefghijk_0_10")
    self.assertIn("abcdefghijk_0_10", str(caught.exception))
    self.assertIn(str(path), str(caught.exception))
    self.assertIn("missing", str(caught.exception))

  @parameterized.named_parameters(
      ("wrong_shape", "audio", lambda a: a[:, :127], r"shape \(10, 127\), expected \(10, 128\)"),
      ("wrong_dtype", "motion", lambda a: a.astype(np.int64), "dtype int64"),
      ("complex_dtype", "audio", lambda a: a.astype(np.complex64), "dtype complex64"),
      (
          "nan",
          "frames",
          lambda a: np.where(np.arange(2048) == 7, np.nan, a).astype(np.float32),
          r"holds nan at index \[0, 7\] \(80 non-finite",
      ),
      (
          "inf",
          "audio",
          lambda a: np.where(np.arange(128) == 3, -np.inf, a).astype(np.float32),
          r"holds -inf at index \[0, 3\] \(10 non-finite",
      ),
  )
  def test_bad_values_name_clip_file_and_value(self, modality, corrupt, pattern):
    arrays = _write_clip(self.root, "official", "abcdefghijk", self.rng)
    folder = features.LAYOUTS["official"][modality][0]
    path = self.root / folder / "abcdefghijk.npy"
    np.save(path, corrupt(arrays[modality]))
    with self.assertRaisesRegex(InputError, pattern) as caught:
      features.load_clip(self.root, "official", "pooled", "abcdefghijk")
    self.assertIn(str(path), str(caught.exception))
    self.assertIn("abcdefghijk", str(caught.exception))

  def test_unreadable_file(self):
    _write_clip(self.root, "official", "abcdefghijk", self.rng)
    (self.root / "vggish" / "abcdefghijk.npy").write_bytes(b"not a numpy file")
    with self.assertRaisesRegex(InputError, "not a readable .npy"):
      features.load_clip(self.root, "official", "pooled", "abcdefghijk")


class CheckFeaturesDirTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.root = pathlib.Path(self.create_tempdir().full_path)
    rng = np.random.default_rng(2)
    for clip in ("aaaaaaaaaaa", "bbbbbbbbbbb"):
      _write_clip(self.root, "official", clip, rng)
    labels = np.zeros((3, annotations.NUM_CLASSES), np.float32)
    self.split = annotations.Split(
        "train", ("aaaaaaaaaaa_0_10", "bbbbbbbbbbb_0_10", "ccccccccccc_5_15"), labels
    )

  def test_complete_folder_passes(self):
    features.check_features_dir(
        self.root,
        "official",
        {"train": annotations.Split("train", self.split.filenames[:2], self.split.weak_labels[:2])},
    )

  def test_clip_in_labels_without_features(self):
    with self.assertRaises(InputError) as caught:
      features.check_features_dir(self.root, "official", {"train": self.split})
    message = str(caught.exception)
    self.assertIn(
        "ccccccccccc (ccccccccccc_5_15) is listed in AVVP_train.csv but has no features", message
    )
    self.assertIn(str(self.root / "vggish" / "ccccccccccc.npy"), message)

  def test_one_modality_missing(self):
    (self.root / "res152" / "bbbbbbbbbbb.npy").unlink()
    split = annotations.Split("val", self.split.filenames[:2], self.split.weak_labels[:2])
    with self.assertRaisesRegex(
        InputError, "res152/bbbbbbbbbbb.npy' of clip bbbbbbbbbbb .*AVVP_val_pd.csv"
    ):
      features.check_features_dir(self.root, "official", {"val": split})

  def test_wrong_folder(self):
    with self.assertRaisesRegex(InputError, "has no CLAP/features/ folder"):
      features.check_features_dir(self.root, "clip_clap", {"train": self.split})
    with self.assertRaisesRegex(InputError, "is not a folder"):
      features.check_features_dir(self.root / "nope", "official", {"train": self.split})


if __name__ == "__main__":
  absltest.main()
