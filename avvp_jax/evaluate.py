"""Evaluation over a whole split: padded, masked batches through a jitted predict step.

Per batch, the jitted step runs the model, thresholds its probabilities the official way
(`metrics.segment_predictions`), scores every clip (`metrics.clip_scores`) and reduces them to masked
sums (`metrics.masked_clip_sums`) on the device; padding rows (`mask == 0`) count for nothing. The sums
stay on the device until the split is done; they are then added up on the host in float64 and reported as
100 * sum / count, the official numbers. Per-class F1s (a diagnostic, pooled over the split) come from
the 0/1 predictions gathered at the end.

`evaluate_params(config, params, split)` does it all for one split; `launch/evaluate.py` and the trainer
use it.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Mapping

from absl import logging
import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from avvp_jax import metrics as metrics_lib
from avvp_jax import train as train_lib
from avvp_jax.data import annotations

PyTree = Any


def make_eval_step(config: ml_collections.ConfigDict, model: nn.Module, mesh: Mesh) -> Callable:
  """Jitted `(params, batch) -> (masked sums dict, pred_audio [B, T, C], pred_visual [B, T, C])`."""

  def eval_step(params: PyTree, batch: Mapping[str, jax.Array]):
    outputs = train_lib.apply_model(model, params, batch, train=False)
    pred_audio, pred_visual = metrics_lib.segment_predictions(
        outputs["segment_audio_prob"], outputs["segment_visual_prob"],
        outputs["audio_filter_prob"], outputs["visual_filter_prob"])
    scores = metrics_lib.clip_scores(pred_audio, pred_visual, batch["audio_label"], batch["visual_label"])
    sums = metrics_lib.masked_clip_sums(scores, batch["mask"])
    return sums, pred_audio.astype(np.uint8), pred_visual.astype(np.uint8)

  return jax.jit(eval_step,
                 in_shardings=(train_lib.replicated(mesh), train_lib.data_sharded(mesh)),
                 out_shardings=(train_lib.replicated(mesh), train_lib.data_sharded(mesh),
                                train_lib.data_sharded(mesh)))


def _process_local(array: jax.Array) -> np.ndarray:
  """This process's rows of a data-sharded global array, in order."""
  if jax.process_count() == 1:
    return np.asarray(jax.device_get(array))
  shards = sorted(array.addressable_shards, key=lambda s: s.index[0].start or 0)
  rows, seen = [], set()
  for shard in shards:
    start = shard.index[0].start or 0
    if start not in seen:
      seen.add(start)
      rows.append(np.asarray(shard.data))
  return np.concatenate(rows, axis=0)


def run_evaluation(eval_step: Callable, params: PyTree, host_batches: Iterable[Mapping[str, Any]],
                   mesh: Mesh, num_clips: int | None = None) -> dict[str, Any]:
  """Runs `eval_step` over padded host batches; returns the 10 metrics and per-class F1s.

  Args:
    eval_step: from `make_eval_step`.
    params: replicated params.
    host_batches: this host's slices of the padded global batches (with `mask`, `index`, dense labels).
    mesh: the data mesh.
    num_clips: expected number of real clips in the split (checked when given).

  Returns:
    dict: the keys of `metrics.KEYS` -> percent; "per_class" -> {key: {class: F1 percent}} (classes
    absent everywhere are left out); "num_clips" -> number of real clips scored.
  """
  pending = []
  local_preds = []
  for host_batch in host_batches:
    batch = train_lib.global_batch(mesh, host_batch)
    sums, pred_audio, pred_visual = eval_step(params, batch)
    pending.append(sums)
    local_preds.append((pred_audio, pred_visual, host_batch))
  totals = {key: 0.0 for key in metrics_lib.KEYS}
  count = 0.0
  for sums in jax.device_get(pending):  # float64 accumulation on the host
    for key in metrics_lib.KEYS:
      totals[key] += float(sums[key])
    count += float(sums["count"])
  if num_clips is not None and jax.process_count() == 1 and int(count) != num_clips:
    raise RuntimeError(f"evaluation scored {int(count)} clips, expected {num_clips}")
  if count == 0:
    raise RuntimeError("evaluation saw no clips")
  scores: dict[str, Any] = {key: 100.0 * totals[key] / count for key in metrics_lib.KEYS}
  for level in metrics_lib.LEVELS:  # the official formula: the mean of the three means
    scores[f"{level}/type"] = sum(scores[f"{level}/{m}"] for m in metrics_lib.MODALITIES) / 3.0
  scores["num_clips"] = int(count)
  # Per-class F1s from the predictions of this host's clips (all clips on a single host).
  pred_audio = np.concatenate([_process_local(a) for a, _, _ in local_preds])
  pred_visual = np.concatenate([_process_local(v) for _, v, _ in local_preds])
  true_audio = np.concatenate([np.asarray(b["audio_label"]) for _, _, b in local_preds])
  true_visual = np.concatenate([np.asarray(b["visual_label"]) for _, _, b in local_preds])
  mask = np.concatenate([np.asarray(b["mask"]) for _, _, b in local_preds])
  per_class = metrics_lib.per_class_f1(pred_audio, pred_visual, true_audio, true_visual, mask)
  scores["per_class"] = {
      key: {name: float(value) for name, value in zip(annotations.CLASSES, values) if np.isfinite(value)}
      for key, values in per_class.items()}
  return scores


def summary_line(scores: Mapping[str, Any]) -> str:
  """The 10 metrics on one line, in the papers' order."""
  return ", ".join(f"{key}={scores[key]:.2f}" for key in metrics_lib.KEYS)


def evaluate_checkpoint(config: ml_collections.ConfigDict | None, workdir: str, split: str = "val",
                        checkpoint: str | None = None) -> dict[str, Any]:
  """Scores a checkpoint on a whole split and writes `workdir/eval_<split>.json`.

  Args:
    config: the run config (data and model); None: the workdir's (or the checkpoint's) `config.json`.
    workdir: the training workdir; its best save (else latest) is scored unless `checkpoint` is given.
    split: "val" or "test".
    checkpoint: another checkpoint (a step folder, another workdir, or a params-only folder such as a
      converted official checkpoint written by `avvp_jax.checkpoint.save_params_checkpoint`).

  Returns:
    The report written: the 10 metric keys (percent), "per_class", "num_clips", "split", "checkpoint",
    "data" (a note saying synthetic when it is).
  """
  import json  # pylint: disable=g-import-not-at-top
  from avvp_jax import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  from avvp_jax.errors import InputError  # pylint: disable=g-import-not-at-top

  if split not in ("val", "test"):
    raise InputError(f"--split={split!r} is not an evaluation split: use val or test.")
  from etils import epath  # pylint: disable=g-import-not-at-top
  workdir = checkpoint_lib.absolute(workdir)
  source = checkpoint_lib.absolute(checkpoint) if checkpoint else workdir
  if config is None:
    config_dir = source if (epath.Path(source) / checkpoint_lib.CONFIG_FILENAME).is_file() else workdir
    if checkpoint and (epath.Path(source) / "state").is_dir():  # a step folder: WORKDIR/best/STEP
      config_dir = str(epath.Path(source).parent.parent)
    config = checkpoint_lib.load_config(config_dir)
  config = train_lib.resolve_config(config)
  if checkpoint is None and checkpoint_lib.find_state_checkpoint(workdir) is None:
    raise InputError(f"No checkpoint in {workdir}: train first (launch/train.py --workdir={workdir}) or pass "
                     "--checkpoint=PATH.")
  mesh = train_lib.make_mesh()
  data = train_lib.TrainingData(config, train=False)
  _, params = checkpoint_lib.restore_params(source, config)
  params = jax.device_put(params, train_lib.replicated(mesh))
  model = train_lib.build_model(config)
  eval_step = make_eval_step(config, model, mesh)
  start = time.time()
  scores = run_evaluation(eval_step, params, data.eval_batches(split), mesh, num_clips=data.num_eval_clips(split))
  logging.info("%s (%d clips, %.1fs): %s", split, scores["num_clips"], time.time() - start, summary_line(scores))
  report = {key: scores[key] for key in metrics_lib.KEYS}
  report.update(per_class=scores["per_class"], num_clips=scores["num_clips"], split=split,
                checkpoint=source, data=data.description)
  path = epath.Path(workdir) / f"eval_{split}.json"
  if jax.process_index() == 0:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
  logging.info("Wrote %s", path)
  return report
