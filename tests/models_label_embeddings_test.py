"""Tests of avvp_jax.models.label_embeddings: the packaged asset, .npy and GloVe-text loaders."""

import ast
import os

from absl.testing import absltest
import numpy as np

from avvp_jax.data import annotations
from avvp_jax.errors import InputError
from avvp_jax.models import label_embeddings


def _cosine(x, y):
  return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


class PackagedTest(absltest.TestCase):

  def test_shape_and_content(self):
    table = label_embeddings.load_label_embeddings("packaged")
    self.assertEqual(table.shape, (25, 384))
    self.assertEqual(table.dtype, np.float32)
    self.assertTrue(np.all(np.isfinite(table)))
    np.testing.assert_allclose(np.linalg.norm(table, axis=1), 1.0, rtol=1e-5)
    # Distinct rows: no two classes share (nearly) one embedding.
    gram = table @ table.T
    self.assertLess(float((gram - 2 * np.eye(25)).max()), 0.9)
    row = {name: table[i] for i, name in enumerate(annotations.CLASSES)}
    self.assertGreater(_cosine(row["Cello"], row["Violin_fiddle"]), _cosine(row["Cello"], row["Dog"]) + 0.2)
    self.assertGreater(_cosine(row["Baby_cry_infant_cry"], row["Baby_laughter"]),
                       _cosine(row["Baby_cry_infant_cry"], row["Chainsaw"]))

  def test_copies_are_independent(self):
    first = label_embeddings.load_label_embeddings("packaged")
    first[:] = 0.0
    self.assertGreater(float(np.abs(label_embeddings.load_label_embeddings("packaged")).max()), 0.0)

  def test_learned_is_not_a_file(self):
    with self.assertRaisesRegex(InputError, "learned"):
      label_embeddings.load_label_embeddings("learned")


class FileTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.directory = self.create_tempdir().full_path

  def test_npy(self):
    table = np.arange(25 * 3, dtype=np.float64).reshape(25, 3)
    path = os.path.join(self.directory, "t.npy")
    np.save(path, table)
    got = label_embeddings.load_label_embeddings(path)
    self.assertEqual(got.dtype, np.float32)
    np.testing.assert_array_equal(got, table)
    bad = os.path.join(self.directory, "bad.npy")
    np.save(bad, table[:24])
    with self.assertRaisesRegex(InputError, r"\(24, 3\)"):
      label_embeddings.load_label_embeddings(bad)
    with self.assertRaisesRegex(InputError, "does not exist"):
      label_embeddings.load_label_embeddings(os.path.join(self.directory, "missing.npy"))

  def test_class_words(self):
    self.assertEqual(label_embeddings.class_words("Frying_(food)"), ("frying", "food"))
    self.assertEqual(label_embeddings.class_words("Violin_fiddle"), ("violin", "fiddle"))
    self.assertEqual(label_embeddings.class_words("Baby_cry_infant_cry"), ("baby", "cry", "infant"))

  def _write_glove(self, skip=()):
    words = sorted({w for name in annotations.CLASSES for w in label_embeddings.class_words(name)} - set(skip))
    vectors = {word: np.random.default_rng(i).normal(size=4).round(4) for i, word in enumerate(words)}
    path = os.path.join(self.directory, f"glove_{len(skip)}.txt")
    with open(path, "w") as file:
      file.write("the 1 2 3 4\n")  # words the classes do not use are skipped
      for word, vector in vectors.items():
        file.write(word + " " + " ".join(str(v) for v in vector) + "\n")
    return path, vectors

  def test_glove_text_averages_words(self):
    path, vectors = self._write_glove()
    table = label_embeddings.load_label_embeddings(path)
    self.assertEqual(table.shape, (25, 4))
    index = annotations.CLASS_INDEX
    np.testing.assert_allclose(table[index["Dog"]], vectors["dog"], rtol=1e-6)
    np.testing.assert_allclose(table[index["Frying_(food)"]], (vectors["frying"] + vectors["food"]) / 2, rtol=1e-6)
    np.testing.assert_allclose(table[index["Baby_cry_infant_cry"]],
                               (vectors["baby"] + vectors["cry"] + vectors["infant"]) / 3, rtol=1e-6)

  def test_glove_missing_words(self):
    path, vectors = self._write_glove(skip=("fiddle",))
    table = label_embeddings.load_label_embeddings(path)
    np.testing.assert_allclose(table[annotations.CLASS_INDEX["Violin_fiddle"]], vectors["violin"], rtol=1e-6)
    path, _ = self._write_glove(skip=("dog",))
    with self.assertRaisesRegex(InputError, "Dog"):
      label_embeddings.load_label_embeddings(path)


class ScriptTest(absltest.TestCase):

  def test_script_names_every_class(self):
    # Read the script's CLASS_TEXTS literal without importing it (it defines absl flags).
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "launch",
                        "make_label_embeddings.py")
    with open(path) as file:
      tree = ast.parse(file.read())
    texts = next(ast.literal_eval(node.value) for node in tree.body
                 if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "CLASS_TEXTS")
    self.assertEqual(set(texts), set(annotations.CLASSES))
    self.assertEqual(texts["Violin_fiddle"], "Violin, fiddle")
    self.assertIn("label_embeddings_minilm.npy", label_embeddings.PACKAGED_PATH)

if __name__ == "__main__":
  absltest.main()
