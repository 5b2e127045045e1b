"""Tests of avvp_jax.data.pseudo_labels on small folders laid out as VALOR's archives unpack."""

import pathlib

from absl.testing import absltest
import numpy as np

from avvp_jax.data import pseudo_labels
from avvp_jax.errors import InputError

FILENAMES = ("BjCEufrlXm4_20_30", "AP0061o0Nvk_101.8_111.8", "-0A9suni5YA_0_10")


def _write_folder(root, clip_ids, rng, *, shape=(10, 25), skip=()):
  """Writes random 0/1 int64 files (VALOR's dtype); returns {clip: (audio, visual)}."""
  written = {}
  for modality_dir in (pseudo_labels.AUDIO_SUBDIR, pseudo_labels.VISUAL_SUBDIR):
    (root / modality_dir).mkdir(parents=True, exist_ok=True)
  for clip in clip_ids:
    audio = (rng.uniform(size=shape) < 0.2).astype(np.int64)
    visual = (rng.uniform(size=shape) < 0.2).astype(np.int64)
    if (clip, "audio") not in skip:
      np.save(root / pseudo_labels.AUDIO_SUBDIR / f"{clip}.npy", audio)
    if (clip, "visual") not in skip:
      np.save(root / pseudo_labels.VISUAL_SUBDIR / f"{clip}.npy", visual)
    written[clip] = (audio, visual)
  return written


class LoadTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.root = pathlib.Path(self.create_tempdir().full_path)
    self.clip_ids = [name[:11] for name in FILENAMES]

  def test_rows_follow_the_filenames(self):
    written = _write_folder(self.root, self.clip_ids + ["zzzzzzzzzzz"], np.random.default_rng(0))
    labels = pseudo_labels.load_pseudo_labels(str(self.root), FILENAMES)
    self.assertEqual(labels.clip_ids, tuple(self.clip_ids))
    self.assertEqual(labels.audio.shape, (3, 10, 25))
    self.assertEqual(labels.audio.dtype, np.float32)
    for i, clip in enumerate(self.clip_ids):
      np.testing.assert_array_equal(labels.audio[i], written[clip][0])
      np.testing.assert_array_equal(labels.visual[i], written[clip][1])
      np.testing.assert_array_equal(labels.audio_video[i], written[clip][0].any(axis=0))
      np.testing.assert_array_equal(labels.visual_video[i], written[clip][1].any(axis=0))

  def test_batch_keys_and_padding(self):
    written = _write_folder(self.root, self.clip_ids, np.random.default_rng(1))
    labels = pseudo_labels.load_pseudo_labels(self.root, FILENAMES)
    batch = labels.batch(np.array([2, 0, -1]))
    self.assertEqual(set(batch), {"audio_pseudo_label", "visual_pseudo_label"})
    np.testing.assert_array_equal(batch["audio_pseudo_label"][0], written[self.clip_ids[2]][0])
    np.testing.assert_array_equal(batch["visual_pseudo_label"][1], written[self.clip_ids[0]][1])
    np.testing.assert_array_equal(batch["audio_pseudo_label"][2], np.zeros((10, 25)))
    self.assertEqual(batch["visual_pseudo_label"].dtype, np.float32)

  def test_missing_clip_is_named(self):
    _write_folder(self.root, self.clip_ids, np.random.default_rng(2),
                  skip={(self.clip_ids[1], "visual")})
    with self.assertRaisesRegex(InputError, r"1 of 3 clips have no visual pseudo labels.*AP0061o0Nvk"):
      pseudo_labels.load_pseudo_labels(self.root, FILENAMES)

  def test_wrong_shape_is_named(self):
    _write_folder(self.root, self.clip_ids, np.random.default_rng(3))
    np.save(self.root / pseudo_labels.AUDIO_SUBDIR / f"{self.clip_ids[0]}.npy", np.zeros((25, 10)))
    with self.assertRaisesRegex(InputError, r"BjCEufrlXm4\.npy.*shape \(25, 10\)"):
      pseudo_labels.load_pseudo_labels(self.root, FILENAMES)

  def test_values_out_of_range(self):
    _write_folder(self.root, self.clip_ids, np.random.default_rng(4))
    np.save(self.root / pseudo_labels.VISUAL_SUBDIR / f"{self.clip_ids[2]}.npy", np.full((10, 25), 2))
    with self.assertRaisesRegex(InputError, "outside"):
      pseudo_labels.load_pseudo_labels(self.root, FILENAMES)

  def test_unreadable_file(self):
    _write_folder(self.root, self.clip_ids, np.random.default_rng(5))
    (self.root / pseudo_labels.AUDIO_SUBDIR / f"{self.clip_ids[1]}.npy").write_text("not numpy")
    with self.assertRaisesRegex(InputError, "not a readable"):
      pseudo_labels.load_pseudo_labels(self.root, FILENAMES)

  def test_missing_folders(self):
    with self.assertRaisesRegex(InputError, "not a folder"):
      pseudo_labels.load_pseudo_labels(self.root / "nope", FILENAMES)
    (self.root / pseudo_labels.AUDIO_SUBDIR).mkdir(parents=True)
    with self.assertRaisesRegex(InputError, "CLIP/segment_pseudo_labels"):
      pseudo_labels.load_pseudo_labels(self.root, FILENAMES)


if __name__ == "__main__":
  absltest.main()
