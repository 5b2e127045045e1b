"""Tests of avvp_jax.models.label_embeddings: the packaged asset, .npy, LEAP's .pt table and GloVe-text loaders."""

import ast
import collections
import os
import subprocess
import sys
from unittest import mock

from absl.testing import absltest
import numpy as np
import torch

import leap_official

from avvp_jax.tasks.llp import annotations
from avvp_jax.errors import InputError
from avvp_jax.models import label_embeddings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    self.assertGreater(
        _cosine(row["Cello"], row["Violin_fiddle"]), _cosine(row["Cello"], row["Dog"]) + 0.2
    )
    self.assertGreater(
        _cosine(row["Baby_cry_infant_cry"], row["Baby_laughter"]),
        _cosine(row["Baby_cry_infant_cry"], row["Chainsaw"]),
    )

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

  def test_class_words_are_those_of_the_official_keys(self):
    self.assertEqual(label_embeddings.OFFICIAL_KEYS, leap_official.LEAP_KEYS)
    self.assertEqual(label_embeddings.class_words("Frying_(food)"), ("fry", "food"))
    self.assertEqual(label_embeddings.class_words("Violin_fiddle"), ("violin", "fiddle"))
    self.assertEqual(
        label_embeddings.class_words("Baby_cry_infant_cry"), ("baby", "cry", "infancy", "cry")
    )
    for name, key in zip(annotations.CLASSES, leap_official.LEAP_KEYS):
      self.assertEqual(label_embeddings.class_words(name), tuple(key.lower().split()), name)

  def _write_glove(self, skip=()):
    words = sorted({w for key in leap_official.LEAP_KEYS for w in key.lower().split()} - set(skip))
    vectors = {
        word: np.random.default_rng(i).normal(size=4).round(4) for i, word in enumerate(words)
    }
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
    np.testing.assert_allclose(
        table[index["Frying_(food)"]], (vectors["fry"] + vectors["food"]) / 2, rtol=1e-6
    )
    # The official key "Baby cry infancy cry": "cry" written twice counts twice.
    np.testing.assert_allclose(
        table[index["Baby_cry_infant_cry"]],
        (vectors["baby"] + 2 * vectors["cry"] + vectors["infancy"]) / 4,
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        table[index["Telephone_bell_ringing"]],
        (vectors["telephone"] + vectors["bell"] + vectors["ringing"]) / 3,
        rtol=1e-6,
    )
    self.assertNotIn(
        "frying", vectors
    )  # our class names' words are not what the official table averages

  def test_glove_missing_words(self):
    path, vectors = self._write_glove(skip=("fiddle",))
    table = label_embeddings.load_label_embeddings(path)
    np.testing.assert_allclose(
        table[annotations.CLASS_INDEX["Violin_fiddle"]], vectors["violin"], rtol=1e-6
    )
    path, _ = self._write_glove(skip=("dog",))
    with self.assertRaisesRegex(InputError, "Dog"):
      label_embeddings.load_label_embeddings(path)


def _official_table(dim=300, seed=0, keys=leap_official.LEAP_KEYS):
  """A dict in the format of LEAP's llp_label_glove_embeddings.pt: key -> float32 [dim] tensor, file order."""
  generator = torch.Generator().manual_seed(seed)
  return collections.OrderedDict((key, torch.randn(dim, generator=generator)) for key in keys)


class OfficialTableTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.directory = self.create_tempdir().full_path

  def _save(self, table, name="llp_label_glove_embeddings.pt"):
    path = os.path.join(self.directory, name)
    torch.save(table, path)
    return path

  def test_reads_the_official_format_exactly(self):
    table = _official_table()
    got = label_embeddings.load_label_embeddings(self._save(table))
    self.assertEqual(got.shape, (25, 300))
    self.assertEqual(got.dtype, np.float32)
    np.testing.assert_array_equal(got, np.stack([value.numpy() for value in table.values()]))
    # The official loader's rows are the values in file order; the file is in our class order.
    self.assertEqual(
        annotations.CLASS_INDEX["Baby_cry_infant_cry"], list(table).index("Baby cry infancy cry")
    )

  def test_rows_are_matched_by_key_and_extensionless_files_are_recognised(self):
    table = _official_table(dim=7)
    shuffled = collections.OrderedDict(reversed(list(table.items())))
    got = label_embeddings.load_label_embeddings(self._save(shuffled, "table_without_suffix"))
    np.testing.assert_array_equal(
        got[annotations.CLASS_INDEX["Frying_(food)"]], table["Fry food"].numpy()
    )
    np.testing.assert_array_equal(got, np.stack([value.numpy() for value in table.values()]))
    ours = collections.OrderedDict(
        zip(annotations.CLASSES, table.values())
    )  # our class names as keys
    np.testing.assert_array_equal(
        label_embeddings.load_label_embeddings(self._save(ours, "ours.pt")), got
    )

  def test_bad_tables_are_one_line_errors(self):
    table = _official_table(dim=5)
    cases = {
        "count": (
            collections.OrderedDict(list(table.items())[:24]),
            r"hold 24 entries, expected one per class",
        ),
        "unknown": (
            collections.OrderedDict(
                [("Frying food", v) if k == "Fry food" else (k, v) for k, v in table.items()]
            ),
            r"key 'Frying food'",
        ),
        "twice": (
            collections.OrderedDict(
                [("Frying_(food)", v) if k == "Speech" else (k, v) for k, v in table.items()]
            ),
            r"'Frying_\(food\)' twice",
        ),
        "dim": (
            collections.OrderedDict(
                [(k, torch.zeros(4)) if k == "Cello" else (k, v) for k, v in table.items()]
            ),
            r"'Cello' has 4 values",
        ),
        "matrix": (
            collections.OrderedDict(
                [(k, torch.zeros(2, 5)) if k == "Dog" else (k, v) for k, v in table.items()]
            ),
            r"\(2, 5\) tensor under 'Dog'",
        ),
        "stacked": (torch.zeros(25, 5), r"not a dict of tensors"),
    }
    for name, (bad, pattern) in cases.items():
      path = self._save(bad, f"{name}.pt")
      with self.assertRaisesRegex(InputError, pattern, msg=name) as raised:
        label_embeddings.load_label_embeddings(path)
      self.assertNotIn("\n", str(raised.exception))
      self.assertIn(path, str(raised.exception))
    junk = os.path.join(self.directory, "junk.pt")
    with open(junk, "w") as file:
      file.write("not a torch file")
    with self.assertRaisesRegex(InputError, r"junk\.pt could not be read by torch\.load"):
      label_embeddings.load_label_embeddings(junk)

  def test_without_torch_says_what_to_do(self):
    path = self._save(_official_table(dim=3, seed=5), "no_torch.pt")
    with mock.patch.dict(sys.modules, {"torch": None}):  # `import torch` now raises ImportError
      with self.assertRaisesRegex(
          InputError, r"torch is not installed: install the parity extra .* \.npy"
      ):
        label_embeddings.load_label_embeddings(path)

  def test_launcher_converts_once_to_npy(self):
    table = _official_table(dim=6, seed=2)
    source = self._save(table)
    output = os.path.join(self.directory, "out", "llp_glove.npy")
    script = os.path.join(ROOT, "launch", "make_label_embeddings.py")
    done = subprocess.run(
        [sys.executable, script, f"--source={source}", f"--out={output}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    self.assertEqual(done.returncode, 0, done.stderr)
    np.testing.assert_array_equal(
        np.load(output), np.stack([value.numpy() for value in table.values()])
    )
    np.testing.assert_array_equal(label_embeddings.load_label_embeddings(output), np.load(output))
    bad = subprocess.run(
        [sys.executable, script, f"--source={source}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    self.assertEqual(bad.returncode, 2)
    self.assertRegex(bad.stderr.strip().splitlines()[-1], r"^error: --source needs --out\b")


class ScriptTest(absltest.TestCase):

  def test_script_names_every_class(self):
    # Read the script's CLASS_TEXTS literal without importing it (it defines absl flags).
    path = os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        "launch",
        "make_label_embeddings.py",
    )
    with open(path) as file:
      tree = ast.parse(file.read())
    texts = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "CLASS_TEXTS"
    )
    self.assertEqual(set(texts), set(annotations.CLASSES))
    self.assertEqual(texts["Violin_fiddle"], "Violin, fiddle")
    self.assertIn("label_embeddings_minilm.npy", label_embeddings.PACKAGED_PATH)


if __name__ == "__main__":
  absltest.main()
