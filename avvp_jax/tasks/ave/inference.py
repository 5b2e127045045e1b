"""Inference with an AVE event localizer (A+V-att, DMRN, PSP, CMBS; supervised or weak): checked inputs, the
model's official outputs and its segment decisions.

Library API (`load_localizer` and `Localizer` are also exported from `avvp_jax`):

  localizer = avvp_jax.load_localizer("workdir/psp")   # a workdir (its best save) or a checkpoint folder,
                                                       # e.g. one written by launch/convert_official.py
  out = localizer.predict(audio, visual)               # dict of numpy arrays (below)
  out["segment_class"]                                 # [B, 10] int32: 0-27 an event class, 28 background

Inputs are one clip (`audio [10, 128]`, `visual [10, 7, 7, 512]`: the released VGGish embeddings and VGG-19
pool5 maps, channels last) or a batch (a leading `[B]` axis on both). They are checked before any computation
(rank, shapes, floating dtype, finite values); a problem raises `avvp_jax.errors.InputError` naming it.

`predict` returns the model's outputs (`avvp_jax.models.ave`, `.psp`, `.cmbs`: the official forward's
outputs under descriptive names), float32 except `segment_class`, with the batch axis only when the inputs had
one. What each official forward returned, and its name here:

  A+V-att, DMRN (att_Net, TBMRF_Net)   softmax [B, T, 29]: segment_prob; also segment_logits, visual_attention
  weak A+V-att (models_weakly.att_Net)  (softmax of the max over time, score): video_prob, segment_logits
  PSP full (fully_model.psp_net)       (fusion, out, cross_att): fusion, segment_logits, av_similarity; also
                                       psp_visual_weights, psp_audio_weights, segment_prob, visual_attention
  PSP weak (weakly_model.psp_net)      (out_avg, score): video_prob, segment_logits; also temporal_weight, ...
  CMBS (supv_main_model)               (is_event_scores, event_scores, gate, av_score): event_logits [B, T],
                                       class_logits [B, 28], event_gate [B, T], av_class_logits [B, 28]
  CMBS weak (weak_main_model)          (av_gate, raw_logits, event_scores): event_gate [B, T], class_logits
                                       [B, 29], class_prob [B, 29]

plus `segment_class` [B, T] by the model's official decision rule (`avvp_jax.tasks.ave.decisions`): the 29-way
argmax per segment (AVE-ECCV18, PSP), or CMBS's event/background gate with the video's one class (weak CMBS:
every segment foreground, as its official evaluation has it). `launch/evaluate.py` scores the same output.

A multi-seed workdir holds several replicas; their decisions cannot be averaged (a mean of classes is no
class), so `load_localizer(path, seed=k)` picks one (a 1-seed run needs no seed).

A cross-modal matcher's workdir (`config.task = "ave_cmm"`) loads the same way; its `predict` returns the
matcher's embeddings and distances (`pair_distance` [B, T], `cross_distance` [B, T, T]), no `segment_class`.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from avvp_jax.errors import InputError
from avvp_jax.tasks.ave import batch_keys
from avvp_jax.tasks.ave import features as features_lib

PyTree = Any
SHAPES = {name: features_lib.SHAPES[name] for name in batch_keys.FEATURE_KEYS}
# The tasks whose models take AVE's inputs: event localization, and cross-modality localization, whose
# matcher (models/cmm.py) returns distances (`pair_distance`, `cross_distance`) and no `segment_class`.
AVE_TASKS = ("ave", "ave_cmm")


def _model_key(config: ml_collections.ConfigDict) -> str:
  """A hashable key of what defines the localizer: `config.model`, the compute dtype and the supervision (AVE's
  supervised and weak settings build different networks)."""
  return json.dumps(
      {
          "model": config.model.to_dict(),
          "compute_dtype": config.compute_dtype,
          "task": config.get("task", "ave"),
          "data": {"ave": {"supervision": config.data.ave.supervision}},
      },
      sort_keys=True,
      default=str,
  )


@functools.lru_cache(maxsize=16)
def _model_from_key(key: str) -> Any:
  # flax only once a model is needed (`import avvp_jax` stays light).
  from avvp_jax import state as state_lib  # pylint: disable=g-import-not-at-top  (flax, as said)

  return state_lib.build_model(ml_collections.ConfigDict(json.loads(key)))


@functools.partial(jax.jit, static_argnames=("model_key",))
def _apply(
    params: PyTree, audio: jax.Array, visual: jax.Array, *, model_key: str
) -> dict[str, jax.Array]:
  """The localizer's outputs on a batch (eval mode): floats as float32, `segment_class` int32."""
  outputs = _model_from_key(model_key).apply({"params": params}, audio, visual, train=False)
  return {
      key: value.astype(jnp.float32) if jnp.issubdtype(value.dtype, jnp.floating) else value
      for key, value in outputs.items()
  }


def validate_inputs(audio: Any, visual: Any) -> tuple[np.ndarray, np.ndarray, bool]:
  """Checks one clip or a batch of AVE features; raises InputError on the first problem.

  Returns:
    (audio [B, 10, 128], visual [B, 10, 7, 7, 512]) as float32 numpy arrays, and whether the inputs had a batch
    axis.
  """
  named = {}
  for name, value in (("audio", audio), ("visual", visual)):
    try:
      named[name] = np.asarray(value)
    except (TypeError, ValueError) as error:
      raise InputError(
          f"{name} could not be read as an array ({error}): pass a float32 numpy or jax array."
      ) from None
  batched = named["audio"].ndim == len(SHAPES["audio"]) + 1
  for name, x in named.items():
    want = SHAPES[name]
    if tuple(x.shape[1:] if batched else x.shape) != want:
      raise InputError(
          f"{name} has shape {tuple(x.shape)}: pass one clip as {list(want)} or a batch as "
          f"[B, {', '.join(map(str, want))}] (the released AVE features), the same for audio and visual."
      )
    if not np.issubdtype(x.dtype, np.floating):
      raise InputError(f"{name} has dtype {x.dtype}: pass floating-point features (float32).")
  if batched and named["audio"].shape[0] != named["visual"].shape[0]:
    raise InputError(
        f"audio holds {named['audio'].shape[0]} clips but visual {named['visual'].shape[0]}: pass the same "
        "clips to both."
    )
  for name, x in named.items():
    if not np.isfinite(x).all():
      raise InputError(f"{name} holds NaN or infinite values: re-extract those clips' features.")
  prepared = lambda x: np.asarray(x, np.float32) if batched else np.asarray(x, np.float32)[None]
  return prepared(named["audio"]), prepared(named["visual"]), batched


class Localizer:
  """A trained (or converted official) AVE localizer ready for inference.

  Attributes:
    config: the run config (`config.model` and `config.data.ave.supervision` rebuild the model).
    params: one model's params.
    source: where they were loaded from (None when built from memory).
  """

  def __init__(self, config: ml_collections.ConfigDict, params: PyTree, source: str | None = None):
    if config.get("task", "llp") not in AVE_TASKS:
      raise InputError(
          f"the config is an {config.get('task', 'llp')!r} config, not an AVE localizer's: use "
          "avvp_jax.load_parser for LLP models."
      )
    self.config = config
    self.params = params
    self.source = source

  @property
  def supervision(self) -> str:
    """The setting the model was built for: "full" or "weak"."""
    return str(self.config.data.ave.supervision)

  def predict(self, audio: Any, visual: Any) -> dict[str, np.ndarray]:
    """The model's outputs and `segment_class` for one clip or a batch (module docstring), as numpy."""
    audio, visual, batched = validate_inputs(audio, visual)
    outputs = jax.device_get(_apply(self.params, audio, visual, model_key=_model_key(self.config)))
    return outputs if batched else {key: value[0] for key, value in outputs.items()}


def load_localizer(path: str | os.PathLike[str], seed: int | None = None) -> Localizer:
  """A `Localizer` from an AVE training workdir (its best save, else its latest), a step folder of one, or a
  params-only checkpoint folder (e.g. written by `launch/convert_official.py`).

  Args:
    path: the workdir or checkpoint folder.
    seed: for a multi-seed run, the seed of the replica to use (required there); a 1-seed run needs none.

  Raises:
    InputError: `path` holds no checkpoint avvp_jax can read, one of an LLP model, or a multi-seed run without
      `seed` (or with a seed it did not train).
  """
  # Orbax and flax only when loading (`import avvp_jax` stays light).
  from avvp_jax import checkpoint  # pylint: disable=g-import-not-at-top  (orbax, as said)
  from avvp_jax import state as state_lib  # pylint: disable=g-import-not-at-top  (flax, as said)

  path = os.path.abspath(os.path.expanduser(os.fspath(path)))
  source = checkpoint.resolve(path)
  config = checkpoint.checkpoint_config(source, None, None)
  if config.get("task", "llp") not in AVE_TASKS:
    raise InputError(
        f"{path} holds an LLP model ({config.model.encoder}/{config.model.decoder}), not an AVE "
        "localizer: load it with avvp_jax.load_parser."
    )
  seeds = state_lib.run_seeds(config)
  if seed is None and len(seeds) > 1:
    raise InputError(
        f"{path} holds {len(seeds)} replicas (seeds {', '.join(map(str, seeds))}), whose segment decisions "
        "cannot be averaged: pass seed=<one of them>."
    )
  config, params = checkpoint.restore_params(source)
  chosen = seeds[0] if seed is None else seed
  params = checkpoint.select_seed(config, params, chosen)
  logging.info(
      "Loaded the %s localizer (%s supervision, seed %d) from %s.",
      config.model.encoder,
      config.data.ave.supervision,
      chosen,
      path,
  )
  return Localizer(config, params, source=path)
