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
  plus decoder extras (MMIL: temporal_attention, modality_attention [B, T, 2, C]; LEAP: video_prob_soft,
  segment_*_logits, *_label_embedding).

Registries map a config name to a builder `(model_config, dtype) -> nn.Module`; a new encoder or decoder is
one module plus one line here. Encoders map (audio [B, T, D], visual [B, T, D], train) to the same shapes
(optionally plus a dict of extra outputs); decoders map them to the output dict above (without the embeddings,
which `AVVPModel` adds). Encoders: "han" (han.py), "mmpyramid" (mmpyramid.py), "link" (link.py: TSAM, CMIM,
HAN; with `config.model.link.plsim` the model also gets LINK's PLSIM as its `refiner`, which runs the decoder
twice and adds `first_pass_*`, `plsim_*_label` and `similarity_mu` outputs). Training-time extras for a
refiner: `model.apply(..., segment_labels=(audio [B, T, C], visual [B, T, C]), video_label=[B, C])`, ignored
by models without one.

Compute dtype: `build_model(config.model, dtype=jnp.bfloat16)` (or `config.model.compute_dtype`, when set)
runs the Dense layers and attention products in bfloat16 while params stay float32; softmax, sigmoid and all
outputs are float32.
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from avvp_jax.data import annotations
from avvp_jax.errors import InputError
from avvp_jax.models import embed
from avvp_jax.models import han
from avvp_jax.models import leap
from avvp_jax.models import link
from avvp_jax.models import mmil
from avvp_jax.models import mmpyramid

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

Builder = Callable[[ml_collections.ConfigDict, Any], nn.Module]


def _ffn_dim(model_config: ml_collections.ConfigDict, section: ml_collections.ConfigDict) -> int:
  return section.ffn_dim or model_config.hidden_dim


def _han_encoder(model_config: ml_collections.ConfigDict, dtype: Any) -> nn.Module:
  cfg = model_config.han
  return han.HANEncoder(num_layers=cfg.num_layers, num_heads=cfg.num_heads, ffn_dim=_ffn_dim(model_config, cfg),
                        dropout=cfg.dropout, attention_dropout=cfg.attention_dropout, stacking=cfg.stacking,
                        share_modalities=cfg.share_modalities, dtype=dtype)


def _mmpyramid_encoder(model_config: ml_collections.ConfigDict, dtype: Any) -> nn.Module:
  cfg = model_config.mmpyramid
  return mmpyramid.MMPyramidEncoder(num_levels=cfg.num_levels, num_heads=cfg.num_heads,
                                    ffn_dim=_ffn_dim(model_config, cfg), dropout=cfg.dropout,
                                    attention_dropout=cfg.attention_dropout, kernel_size=cfg.kernel_size,
                                    windowed=cfg.windowed, dtype=dtype)


def _link_encoder(model_config: ml_collections.ConfigDict, dtype: Any) -> nn.Module:
  cfg, han_cfg = model_config.link, model_config.han
  return link.LINKEncoder(tsam=cfg.tsam, cmim=cfg.cmim, tsam_temporal_hidden=cfg.tsam_temporal_hidden,
                          tsam_temporal_mlp=cfg.tsam_temporal_mlp, tsam_spatial=cfg.tsam_spatial,
                          cmim_alpha_init=cfg.cmim_alpha_init, num_layers=han_cfg.num_layers,
                          num_heads=han_cfg.num_heads, ffn_dim=_ffn_dim(model_config, han_cfg),
                          dropout=han_cfg.dropout, attention_dropout=han_cfg.attention_dropout,
                          stacking=han_cfg.stacking, share_modalities=han_cfg.share_modalities,
                          mu_init=cfg.mu_init, dtype=dtype)


def _plsim_refiner(model_config: ml_collections.ConfigDict, dtype: Any) -> nn.Module | None:
  """LINK's PLSIM when `config.model.encoder == "link"` and `link.plsim` is on; else None."""
  if model_config.encoder != "link" or not model_config.link.plsim:
    return None
  cfg = model_config.link
  return link.PLSIM(audio_label_embeddings=cfg.plsim_audio_label_embeddings,
                    visual_label_embeddings=cfg.plsim_visual_label_embeddings, hidden_dim=cfg.plsim_hidden_dim,
                    threshold=cfg.plsim_threshold, train_gate=cfg.plsim_train_gate, dtype=dtype)


def _mmil_decoder(model_config: ml_collections.ConfigDict, dtype: Any) -> nn.Module:
  del model_config
  return mmil.MMILDecoder(num_classes=annotations.NUM_CLASSES, dtype=dtype)


def _leap_decoder(model_config: ml_collections.ConfigDict, dtype: Any) -> nn.Module:
  cfg = model_config.leap
  return leap.LEAPDecoder(num_classes=annotations.NUM_CLASSES, num_blocks=cfg.num_blocks, num_heads=cfg.num_heads,
                          ffn_dim=_ffn_dim(model_config, cfg), dropout=cfg.dropout,
                          attention_dropout=cfg.attention_dropout, variant=cfg.variant,
                          label_embeddings=cfg.label_embeddings, learned_label_dim=cfg.learned_label_dim,
                          filter=cfg.filter, dtype=dtype)


ENCODERS: dict[str, Builder] = {
    "han": _han_encoder,
    "mmpyramid": _mmpyramid_encoder,
    "link": _link_encoder,
}
DECODERS: dict[str, Builder] = {
    "mmil": _mmil_decoder,
    "leap": _leap_decoder,
}


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

  def __call__(self, audio: jax.Array, frames: jax.Array, motion: jax.Array | None = None, *,
               train: bool = False, segment_labels: tuple[jax.Array, jax.Array] | None = None,
               video_label: jax.Array | None = None) -> dict[str, jax.Array]:
    """`segment_labels` ((audio, visual) [B, T, C] pseudo labels) and `video_label` ([B, C] weak labels) are
    training-time inputs of a refiner; models without one ignore them."""
    audio_BxTxD, visual_BxTxD = self.embed(audio, frames, motion)
    encoded = self.encoder(audio_BxTxD, visual_BxTxD, train=train)
    audio_BxTxD, visual_BxTxD = encoded[0], encoded[1]
    extras = dict(encoded[2]) if len(encoded) > 2 else {}
    decoder_audio, decoder_visual = audio_BxTxD, visual_BxTxD
    if self.refiner is not None:
      first_pass = self.decoder(audio_BxTxD, visual_BxTxD, train=train)
      extras.update({f"first_pass_{key}": value for key, value in first_pass.items()})
      decoder_audio, decoder_visual, refiner_extras = self.refiner(
          audio_BxTxD, visual_BxTxD, first_pass, train=train, segment_labels=segment_labels,
          video_label=video_label)
      extras.update(refiner_extras)
    outputs = dict(self.decoder(decoder_audio, decoder_visual, train=train))
    outputs.update(extras)
    outputs["audio_embedding"] = audio_BxTxD
    outputs["visual_embedding"] = visual_BxTxD
    return {key: value.astype(jnp.float32) for key, value in outputs.items()}


def resolve_dtype(name: str, field: str = "compute dtype") -> Any:
  """The jnp dtype of a `compute_dtype` name ("float32" | "bfloat16"); `field` names it in the error."""
  if name not in COMPUTE_DTYPES:
    raise InputError(f"{field} {name!r} is unknown: use one of {sorted(COMPUTE_DTYPES)}.")
  return COMPUTE_DTYPES[name]


def build_model(model_config: ml_collections.ConfigDict, dtype: Any = None) -> AVVPModel:
  """The model of `config.model`; `dtype` (or `model_config.compute_dtype`) sets the computation dtype."""
  if dtype is None:
    dtype = resolve_dtype(model_config.get("compute_dtype", "float32"))
  elif isinstance(dtype, str):
    dtype = resolve_dtype(dtype)
  if model_config.encoder not in ENCODERS:
    raise InputError(f"config.model.encoder {model_config.encoder!r} is unknown: use one of {sorted(ENCODERS)}.")
  if model_config.decoder not in DECODERS:
    raise InputError(f"config.model.decoder {model_config.decoder!r} is unknown: use one of {sorted(DECODERS)}.")
  dims = model_config.input_dims
  embedding = embed.InputEmbedding(hidden_dim=model_config.hidden_dim, audio_dim=dims.audio,
                                   frames_dim=dims.frames, motion_dim=dims.motion, dtype=dtype)
  return AVVPModel(embed=embedding, encoder=ENCODERS[model_config.encoder](model_config, dtype),
                   decoder=DECODERS[model_config.decoder](model_config, dtype),
                   refiner=_plsim_refiner(model_config, dtype))
