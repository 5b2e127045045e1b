"""AVVP models: input embedding -> encoder -> decoder, each picked by name from a plain registry.

`build_model(config.model)` returns an `AVVPModel`; call it as

  outputs = model.apply({"params": params}, audio, frames, motion, train=False)
  # train=True needs rngs={"dropout": key}

with audio [B, T, Da], frames [B, T, Df] (pooled) or [B, 8T, Df] (raw), motion [B, T, Dm] or None (when
`config.model.input_dims.motion == 0`). `outputs` holds float32 arrays:

  video_prob [B, C]            whole-video probability (the whole-video BCE's input)
  audio_prob, visual_prob      [B, C] video-level probability per modality
  segment_audio_prob, segment_visual_prob   [B, T, C]
  audio_filter_prob, visual_filter_prob     [B, C] what the official evaluation of the model gates segment
                               predictions with (HAN/MMIL: video_prob; LEAP: see leap.py)
  audio_embedding, visual_embedding         [B, T, D] encoder outputs
  audio_input_embedding, visual_input_embedding   [B, T, D] the embedded segments before the encoder (MA's
                               contrastive term pairs the encoded audio with the embedded visual segments)
  plus decoder extras (MMIL: segment_*_logits [B, T, C], temporal_attention, temporal_attention_logits,
  modality_attention [B, T, 2, C], its segment scores from CVCM's class tokens with `class_token_dim`;
  LEAP: video_prob_soft, segment_*_logits, *_label_embedding).

Registries map a config name to a `Part`: a builder `(model_config, meta, dtype) -> nn.Module` ("none"
refiner: None) and the config sections it reads (which the workdir contract and the ignored-field warning ask).
The names and sections are listed once, without JAX, in `avvp_jax.model_parts` (launchers check names against
it before importing JAX); a new encoder or decoder is one module, its line there and its builder here.
Encoders map (audio [B, T, D], visual [B, T, D], train) to the same shapes (optionally plus a dict of extra
outputs); decoders map them to the output dict above (without the embeddings, which `AVVPModel` adds).
Encoders: "han" (han.py), "mmpyramid" (mmpyramid.py), "link" (link.py: TSAM, CMIM and a HAN encoder; adds
`similarity_mu`). Refiners (`config.model.refiner`): "none", or
"plsim" (LINK's PLSIM, link.py), which runs the decoder twice and adds `first_pass_*` and `plsim_*_label`
outputs. Training-time extras for a refiner: `model.apply(..., segment_labels=(audio [B, T, C], visual
[B, T, C]), video_label=[B, C])`, ignored by models without one.

Every module is built by splatting its config section, as big_vision and nanodo do: a section's keys are the
module's attributes, so a new hyper-parameter touches the module and configs/common.py, nothing else:

  embed      InputEmbedding(hidden_dim=config.model.hidden_dim, **config.model.input_dims)
  encoder    HANEncoder(**config.model.han), MMPyramidEncoder(**config.model.mmpyramid),
             LINKEncoder(**config.model.link, han=HANEncoder(**config.model.han))
  decoder    MMILDecoder(**config.model.mmil, num_classes=C),
             LEAPDecoder(**config.model.leap, num_classes=C, label_table=[C, L] table of the class names)
  refiner    PLSIM(**config.model.plsim, audio_label_table=..., visual_label_table=...)

(each with `dtype=`), where the task's facts (`avvp_jax.task.Meta`, from `build_model(config.model, meta)`) give
the class count C and names: LEAP's and PLSIM's class-name tables are loaded here, for those names, and handed
to the modules, which know no dataset. A key that is not an attribute is an InputError naming the section, the key and the valid
keys; only the sections of the chosen encoder, decoder and refiner are read.

Event localizers (the AVE task) are whole models as their official code has them, head included:
`config.model.encoder` "ave" (AVE-ECCV18's A+V-att, or DMRN with `model.ave.fusion="dmrn"`; models/ave.py),
"psp" (models/psp.py) or "cmbs" (models/cmbs.py), with `config.model.decoder = "dch"` (their official head)
and no refiner, built for the task's `meta.supervision` ("full" or "weak"):

  AVENet(**config.model.ave, supervision=..., num_classes=29), PSPNet(**config.model.psp, ...),
  CMBS(**config.model.cmbs) or, weak, WeakCMBS(**config.model.cmbs_weak)

They map (audio [B, T, 128], visual [B, T, 7, 7, 512]) to their official outputs plus `segment_class` [B, T]
(0-27 an event, 28 background) by their official decision rule. With `config.model.decoder = "leap"` a localizer
is built with `trunk_only=True` (its streams, no head) inside

  LocalizerLEAP(**config.model.localizer_leap, trunk=..., decoder=LEAPDecoder(**config.model.leap,
                num_classes=28 or 29, label_table=...), num_event_classes=28)     (localizer_leap.py)

which returns LEAP's outputs and `segment_class` by its own rule. AVE's cross-modal matcher (`config.task =
"ave_cmm"`) is built as a localizer, encoder "cmm" with decoder "dch": `CrossModalMatcher(**config.model.cmm)`
(models/cmm.py), whose outputs are distances (`pair_distance`, `cross_distance`), not classes.

Compute dtype: `build_model(config.model, dtype=jnp.bfloat16)` (or the name "bfloat16"; None: float32) runs the
Dense layers and attention products in bfloat16 while params stay float32; softmax, sigmoid and all outputs
are float32.
"""

from collections.abc import Callable
import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from avvp_jax import model_parts
from avvp_jax.errors import InputError
from avvp_jax.models import ave
from avvp_jax.models import cmbs
from avvp_jax.models import cmm
from avvp_jax.models import embed
from avvp_jax.models import han
from avvp_jax.models import label_embeddings
from avvp_jax.models import leap
from avvp_jax.models import link
from avvp_jax.models import localizer_leap
from avvp_jax.models import mmil
from avvp_jax.models import mmpyramid
from avvp_jax.models import psp

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

Builder = Callable[[ml_collections.ConfigDict, Any, Any], nn.Module | None]
_NOT_FROM_CONFIG = ("parent", "name")  # flax's own Module fields


def _field(model_config: ml_collections.ConfigDict, key: str) -> Any:
  """`config.model.<key>`; an InputError (not an AttributeError) when the config has no such field."""
  if key not in model_config:
    raise InputError(
        f"config.model has no {key!r}: the config predates it (an old workdir's config.json?); "
        "start from a config in configs/ (configs/common.py sets every model field)."
    )
  return model_config[key]


def _splat(
    module_class: type[nn.Module],
    section: str,
    model_config: ml_collections.ConfigDict,
    **fixed: Any,
) -> nn.Module:
  """`module_class(**config.model.<section>, **fixed)`; a key of the section that is no attribute is an InputError.

  Args:
    module_class: the module to build.
    section: the name of its section in `config.model`.
    model_config: `config.model`.
    **fixed: the attributes the builder gives (dtype, num_classes, a submodule), not taken from the section.
  """
  values = _field(model_config, section)
  try:
    return module_class(**values, **fixed)
  except TypeError as error:
    valid = [
        f.name
        for f in dataclasses.fields(module_class)
        if f.init and f.name not in _NOT_FROM_CONFIG and f.name not in fixed
    ]
    unknown = sorted(set(values) - set(valid))
    if not unknown:
      raise
    raise InputError(
        f"config.model.{section} has key(s) {', '.join(unknown)} that {module_class.__name__} does not "
        f"take: rename or remove them (valid keys: {', '.join(valid) or 'none'})."
    ) from error


def _han_encoder(model_config: ml_collections.ConfigDict, meta: Any, dtype: Any) -> nn.Module:
  del meta
  return _splat(han.HANEncoder, "han", model_config, dtype=dtype)


def _mmpyramid_encoder(model_config: ml_collections.ConfigDict, meta: Any, dtype: Any) -> nn.Module:
  del meta
  return _splat(mmpyramid.MMPyramidEncoder, "mmpyramid", model_config, dtype=dtype)


def _link_encoder(model_config: ml_collections.ConfigDict, meta: Any, dtype: Any) -> nn.Module:
  return _splat(
      link.LINKEncoder,
      "link",
      model_config,
      han=_han_encoder(model_config, meta, dtype),
      dtype=dtype,
  )


def _mmil_decoder(model_config: ml_collections.ConfigDict, meta: Any, dtype: Any) -> nn.Module:
  return _splat(mmil.MMILDecoder, "mmil", model_config, num_classes=meta.num_classes, dtype=dtype)


def _leap_decoder(
    model_config: ml_collections.ConfigDict,
    meta: Any,
    dtype: Any,
    class_names: tuple[str, ...] | None = None,
) -> nn.Module:
  """LEAP's decoder with one label query per class of `class_names` (None: the task's classes)."""
  class_names = tuple(meta.class_names if class_names is None else class_names)
  source = _field(model_config, "leap").get("label_embeddings", label_embeddings.PACKAGED)
  table = (
      None
      if source == label_embeddings.LEARNED
      else label_embeddings.load_label_embeddings(source, class_names, meta.class_names)
  )
  return _splat(
      leap.LEAPDecoder,
      "leap",
      model_config,
      num_classes=len(class_names),
      label_table=table,
      dtype=dtype,
  )


def _no_refiner(model_config: ml_collections.ConfigDict, meta: Any, dtype: Any) -> None:
  del model_config, meta, dtype


# --- event localizers (the AVE task): whole models with their official head -------------------------------


def _ave_localizer(
    model_config: ml_collections.ConfigDict, meta: Any, dtype: Any, **fixed: Any
) -> nn.Module:
  return _splat(
      ave.AVENet,
      "ave",
      model_config,
      supervision=meta.supervision,
      num_classes=meta.num_classes,
      dtype=dtype,
      **fixed,
  )


def _psp_localizer(
    model_config: ml_collections.ConfigDict, meta: Any, dtype: Any, **fixed: Any
) -> nn.Module:
  return _splat(
      psp.PSPNet,
      "psp",
      model_config,
      supervision=meta.supervision,
      num_classes=meta.num_classes,
      dtype=dtype,
      **fixed,
  )


def _cmbs_localizer(
    model_config: ml_collections.ConfigDict, meta: Any, dtype: Any, **fixed: Any
) -> nn.Module:
  if meta.supervision == "weak":  # another network in the weak setting (models/cmbs.py)
    return _splat(cmbs.WeakCMBS, "cmbs_weak", model_config, dtype=dtype, **fixed)
  return _splat(cmbs.CMBS, "cmbs", model_config, dtype=dtype, **fixed)


def _localizer_with_leap(
    model_config: ml_collections.ConfigDict, meta: Any, dtype: Any
) -> nn.Module:
  """A localizer's trunk with the LEAP decoder as its head (`localizer_leap.LocalizerLEAP`): label queries for
  the event classes (all of `meta.class_names` but the last, background), plus one for background with
  `localizer_leap.background = "query"`."""
  section = _field(model_config, "localizer_leap")
  num_events = len(meta.class_names) - 1
  queries = num_events + (section.get("background", "threshold") == "query")
  trunk = ENCODERS[model_config.encoder].build(model_config, meta, dtype, trunk_only=True)
  return _splat(
      localizer_leap.LocalizerLEAP,
      "localizer_leap",
      model_config,
      trunk=trunk,
      decoder=_leap_decoder(model_config, meta, dtype, meta.class_names[:queries]),
      num_event_classes=num_events,
  )


def _cmm_matcher(model_config: ml_collections.ConfigDict, meta: Any, dtype: Any) -> nn.Module:
  del meta
  return _splat(cmm.CrossModalMatcher, "cmm", model_config, dtype=dtype)


def _official_head(model_config: ml_collections.ConfigDict, meta: Any, dtype: Any) -> None:
  """ "dch": a localizer's head is part of its model (`build_model` builds the localizer alone)."""
  del model_config, meta, dtype


def _plsim_refiner(model_config: ml_collections.ConfigDict, meta: Any, dtype: Any) -> nn.Module:
  section = _field(model_config, "plsim")
  tables = {
      f"{modality}_label_table": label_embeddings.load_label_embeddings(
          section.get(f"{modality}_label_embeddings", label_embeddings.PACKAGED), meta.class_names
      )
      for modality in ("audio", "visual")
  }
  return _splat(link.PLSIM, "plsim", model_config, **tables, dtype=dtype)


@dataclasses.dataclass(frozen=True)
class Part:
  """A registry entry: `build(config.model, meta, dtype)` and the `config.model` sections it reads."""

  build: Builder
  sections: tuple[str, ...]


def _registry(field: str, builders: dict[str, Builder]) -> dict[str, Part]:
  """Each name of `model_parts.PARTS[field]` (the one list of names and sections) with its builder."""
  names = model_parts.PARTS[field]
  if set(builders) != set(names):
    raise ValueError(
        f"{field} builders {sorted(builders)} != avvp_jax.model_parts names {sorted(names)}"
    )
  return {name: Part(builders[name], sections) for name, sections in names.items()}


ENCODERS: dict[str, Part] = _registry(
    "encoder",
    {
        "han": _han_encoder,
        "mmpyramid": _mmpyramid_encoder,
        "link": _link_encoder,
        "ave": _ave_localizer,
        "psp": _psp_localizer,
        "cmbs": _cmbs_localizer,
        "cmm": _cmm_matcher,
    },
)
DECODERS: dict[str, Part] = _registry(
    "decoder", {"mmil": _mmil_decoder, "leap": _leap_decoder, "dch": _official_head}
)
REFINERS: dict[str, Part] = _registry("refiner", {"none": _no_refiner, "plsim": _plsim_refiner})
# The module each section of config.model is splatted into: its attribute defaults are configs/common.py's.
SECTION_MODULES: dict[str, type[nn.Module]] = {
    "han": han.HANEncoder,
    "mmpyramid": mmpyramid.MMPyramidEncoder,
    "link": link.LINKEncoder,
    "mmil": mmil.MMILDecoder,
    "leap": leap.LEAPDecoder,
    "plsim": link.PLSIM,
    "ave": ave.AVENet,
    "psp": psp.PSPNet,
    "cmbs": cmbs.CMBS,
    "cmbs_weak": cmbs.WeakCMBS,
    "cmm": cmm.CrossModalMatcher,
    "localizer_leap": localizer_leap.LocalizerLEAP,
}
sections_read = model_parts.sections_read  # the sections of config.model its parts read


class AVVPModel(nn.Module):
  """Embedding, encoder, optional refiner and decoder composed; returns the output dict (package docstring).

  An encoder may return a third element, a dict of extra outputs (LINK: `similarity_mu`). A `refiner` (LINK's
  PLSIM) modulates the encoded segments with segment labels before the decoder: the given `segment_labels`, or
  else the decoder's own predictions on the un-modulated segments (a first decoder pass, same weights, whose
  outputs are returned as `first_pass_<key>`). `audio_embedding` / `visual_embedding` are the encoder's outputs.
  """

  embed: nn.Module
  encoder: nn.Module
  decoder: nn.Module
  refiner: nn.Module | None = None

  def __call__(
      self,
      audio: jax.Array,
      frames: jax.Array,
      motion: jax.Array | None = None,
      *,
      train: bool = False,
      segment_labels: tuple[jax.Array, jax.Array] | None = None,
      video_label: jax.Array | None = None,
      scored_rows: int | None = None,
  ) -> dict[str, jax.Array]:
    """`segment_labels` ((audio, visual) [B, T, C] pseudo labels) and `video_label` ([B, C] weak labels) are
    training-time inputs of a refiner; models without one ignore them. `scored_rows=B` (training, CVCM's
    cross-video step): the MMIL decoder scores the first B rows only (mmil.py); the embeddings and the
    temporal-attention logits keep every row."""
    decoder_kwargs = {}
    if scored_rows is not None:
      if not isinstance(self.decoder, mmil.MMILDecoder) or self.refiner is not None:
        raise InputError(
            "scored_rows (CVCM's cross-video step, config.loss.name='cvcm') needs "
            "config.model.decoder='mmil' and config.model.refiner='none'."
        )
      decoder_kwargs["scored_rows"] = scored_rows
    audio_BxTxD, visual_BxTxD = self.embed(audio, frames, motion)
    inputs = {"audio_input_embedding": audio_BxTxD, "visual_input_embedding": visual_BxTxD}
    encoded = self.encoder(audio_BxTxD, visual_BxTxD, train=train)
    audio_BxTxD, visual_BxTxD = encoded[0], encoded[1]
    extras = dict(encoded[2]) if len(encoded) > 2 else {}
    decoder_audio, decoder_visual = audio_BxTxD, visual_BxTxD
    if self.refiner is not None:
      first_pass = self.decoder(audio_BxTxD, visual_BxTxD, train=train)
      extras.update({f"first_pass_{key}": value for key, value in first_pass.items()})
      decoder_audio, decoder_visual, refiner_extras = self.refiner(
          audio_BxTxD,
          visual_BxTxD,
          first_pass,
          train=train,
          segment_labels=segment_labels,
          video_label=video_label,
      )
      extras.update(refiner_extras)
    outputs = dict(self.decoder(decoder_audio, decoder_visual, train=train, **decoder_kwargs))
    outputs.update(extras)
    outputs["audio_embedding"] = audio_BxTxD
    outputs["visual_embedding"] = visual_BxTxD
    outputs.update(inputs)
    return {key: value.astype(jnp.float32) for key, value in outputs.items()}


def resolve_dtype(name: str, field: str = "compute dtype") -> Any:
  """The jnp dtype of a `compute_dtype` name ("float32" | "bfloat16"); `field` names it in the error."""
  if name not in COMPUTE_DTYPES:
    raise InputError(f"{field} {name!r} is unknown: use one of {sorted(COMPUTE_DTYPES)}.")
  return COMPUTE_DTYPES[name]


def _builder(
    model_config: ml_collections.ConfigDict, field: str, registry: dict[str, Part]
) -> Builder:
  name = _field(model_config, field)
  if name not in registry:
    raise InputError(model_parts.unknown_line(field, name))
  return registry[name].build


def build_model(model_config: ml_collections.ConfigDict, meta: Any, dtype: Any = None) -> nn.Module:
  """The model of `config.model` for a task's data (see the package docstring for how each section builds
  its module): an `AVVPModel`, or an event localizer (encoder "ave", "psp" or "cmbs" with the "dch" decoder)
  built alone, for `meta.supervision` (AVE's supervised or weak network).

  Args:
    model_config: `config.model`.
    meta: the task's facts (`avvp_jax.task.Meta`): the class count and names size the decoder (and LEAP's
      and PLSIM's class-name tables), the frames stream's frames per segment the embedding.
    dtype: the computation dtype: a jnp dtype or a name of `COMPUTE_DTYPES`; None: float32.

  Raises:
    InputError: an unknown encoder, decoder, refiner or dtype name, a missing field, or a section key that is
      not an attribute of its module.
  """
  if dtype is None:
    dtype = "float32"
  if isinstance(dtype, str):
    dtype = resolve_dtype(dtype)
  encoder = _builder(model_config, "encoder", ENCODERS)
  decoder = _builder(model_config, "decoder", DECODERS)
  refiner = _builder(model_config, "refiner", REFINERS)
  pairing = model_parts.pairing_line(model_config)
  if pairing:
    raise InputError(pairing)
  if model_config.encoder in model_parts.LOCALIZERS:
    if model_config.decoder == "leap":  # the localizer's trunk, LEAP as its head
      return _localizer_with_leap(model_config, meta, dtype)
    return encoder(model_config, meta, dtype)  # a whole model, its head included
  embedding = _splat(
      embed.InputEmbedding,
      "input_dims",
      model_config,
      hidden_dim=_field(model_config, "hidden_dim"),
      frames_per_segment=meta.frames_per_segment,
      dtype=dtype,
  )
  return AVVPModel(
      embed=embedding,
      encoder=encoder(model_config, meta, dtype),
      decoder=decoder(model_config, meta, dtype),
      refiner=refiner(model_config, meta, dtype),
  )
