"""The names of the model registry's parts and the `config.model` sections each reads; no JAX.

`avvp_jax.models` pairs each name here with its builder (`models.ENCODERS`, `DECODERS`, `REFINERS`), so this
table is the one list of names: a launcher checks `config.model.encoder`, `decoder` and `refiner` against it
(`check_names`) before importing JAX, Flax or a task, and refuses an unknown name at once.

Light on purpose (the standard library and `avvp_jax.errors` only): `avvp_jax.cli` imports it.
"""

from typing import Any

from avvp_jax.errors import InputError

# name -> the config.model sections its module reads (a LINK encoder holds a HAN encoder).
ENCODERS: dict[str, tuple[str, ...]] = {
    "han": ("han",),
    "mmpyramid": ("mmpyramid",),
    "link": ("link", "han"),
    # Audio-visual event localizers (the AVE task): whole models as their official code has them, with the
    # official head ("dch"); CMBS is another network in the weak setting (its own section).
    "ave": ("ave",),
    "psp": ("psp",),
    "cmbs": ("cmbs", "cmbs_weak"),
    # AVE's cross-modal matcher (config.task "ave_cmm"): a whole model too, its "head" the distance.
    "cmm": ("cmm",),
}
DECODERS: dict[str, tuple[str, ...]] = {
    "mmil": ("mmil",),
    "leap": ("leap",),
    "dch": (),  # a localizer's own official head (the LEAP paper's "default classification head")
}
# The encoders that are whole localizers: they take the "dch" decoder (only they do) or "leap" (their trunk with
# LEAP as the head, which also reads LOCALIZER_LEAP_SECTIONS), and no refiner.
LOCALIZERS = ("ave", "psp", "cmbs", "cmm")
LOCALIZER_DECODERS = ("dch", "leap")
LEAP_LOCALIZERS = (
    "ave",
    "psp",
    "cmbs",
)  # those LEAP can head (AVE's matcher "cmm" has no classes: "dch" only)
LOCALIZER_LEAP_SECTIONS = ("localizer_leap",)
REFINERS: dict[str, tuple[str, ...]] = {
    "none": (),
    "plsim": ("plsim",),
}
PARTS: dict[str, dict[str, tuple[str, ...]]] = {
    "encoder": ENCODERS,
    "decoder": DECODERS,
    "refiner": REFINERS,
}


def unknown_line(field: str, name: Any) -> str:
  """The error of an unknown `config.model.<field>` name."""
  return f"config.model.{field} {name!r} is unknown: use one of {sorted(PARTS[field])}."


def check_names(model_config: Any) -> None:
  """Raises InputError for a `config.model` encoder, decoder or refiner this registry lacks (a missing field is
  left to the model builder, which names it)."""
  for field, names in PARTS.items():
    if field in model_config and model_config[field] not in names:
      raise InputError(unknown_line(field, model_config[field]))
  line = pairing_line(model_config)
  if line:
    raise InputError(line)


def pairing_line(model_config: Any) -> str | None:
  """The error of parts that do not go together (a localizer takes the "dch" or "leap" decoder and no refiner,
  and the "dch" decoder only a localizer), else None."""
  encoder, decoder = model_config.get("encoder"), model_config.get("decoder")
  refiner = model_config.get("refiner", "none")
  decoders = LOCALIZER_DECODERS if encoder in LEAP_LOCALIZERS else ("dch",)
  if encoder in LOCALIZERS and (decoder not in decoders or refiner != "none"):
    return (
        f"config.model.encoder {encoder!r} is an event localizer: set --config.model.decoder=dch (its "
        f"official head){' or leap' if len(decoders) > 1 else ''}, and --config.model.refiner=none (got "
        f"{decoder!r}, {refiner!r})."
    )
  if decoder == "dch" and encoder not in LOCALIZERS:
    return (
        f"config.model.decoder 'dch' is the official head of an event localizer ({', '.join(LOCALIZERS)}), "
        f"not of encoder {encoder!r}."
    )
  return None


def sections_read(model_config: Any) -> tuple[str, ...]:
  """The sections of `config.model` its encoder, decoder and refiner read (unknown names: none)."""
  read = []
  for field, names in PARTS.items():
    read.extend(names.get(model_config.get(field, "none"), ()))
  if model_config.get("encoder") in LEAP_LOCALIZERS and model_config.get("decoder") == "leap":
    read.extend(LOCALIZER_LEAP_SECTIONS)
  return tuple(dict.fromkeys(read))
