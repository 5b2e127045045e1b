"""Evaluation over a whole split: padded, masked batches through a jitted predict step, per seed.

Params are seed-stacked (`[S, ...]`, see `avvp_jax.checkpoint`). Per batch, the jitted step runs the model
of every replica (`sharding.map_seeds` over the seed axis), thresholds its probabilities the official way
(`metrics.segment_predictions`), scores every clip (`metrics.clip_scores`) and reduces them to masked sums
(`metrics.masked_clip_sums`) and per-class counts (`metrics.per_class_counts`) on the device; padding rows
(`mask == 0`) count for nothing. With `ensemble`, the same is done once more for the seed ensemble: the
probabilities averaged over the replicas before thresholding. The sums stay on the device until the split
is done; they are then added up on the host in float64 and reported as 100 * sum / count, the official
numbers, with per-class F1s (a diagnostic) from the pooled counts of every host.

`seed_report` turns the per-seed scores into what the trainer logs and `evaluate_checkpoint` writes to
`eval_<split>.json`: one seed's scores as they are; for several seeds the mean over seeds under the 10
metric keys, plus `std` (sample standard deviation), `per_seed` and `ensemble`.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Collection, Iterable, Mapping, Sequence

from absl import logging
from etils import epath
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from avvp_jax import checkpoint as checkpoint_lib
from avvp_jax import metrics as metrics_lib
from avvp_jax import sharding
from avvp_jax import state as state_lib
from avvp_jax.data import run_data
from avvp_jax.data import annotations
from avvp_jax.errors import InputError

PyTree = Any


def _batch_sums(outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict[str, Any]:
  """Masked metric sums and per-class counts of one model's outputs on a batch."""
  pred_audio, pred_visual = metrics_lib.segment_predictions(
      outputs["segment_audio_prob"],
      outputs["segment_visual_prob"],
      outputs["audio_filter_prob"],
      outputs["visual_filter_prob"],
  )
  true = (batch["audio_label"], batch["visual_label"])
  scores = metrics_lib.clip_scores(pred_audio, pred_visual, *true)
  return {
      "sums": metrics_lib.masked_clip_sums(scores, batch["mask"]),
      "class_counts": metrics_lib.per_class_counts(pred_audio, pred_visual, *true, batch["mask"]),
  }


def make_eval_step(
    config: ml_collections.ConfigDict, model: nn.Module, mesh: Mesh, *, ensemble: bool = False
) -> Callable:
  """Jitted `(params [S, ...], batch [B, ...]) -> {"seeds": sums [S], "ensemble": sums}` on `mesh`.

  "seeds" holds every replica's masked sums and per-class counts (a leading `[S]` axis); "ensemble"
  (only with `ensemble`) those of the probabilities averaged over the replicas.
  """
  num_seeds = len(state_lib.run_seeds(config))

  def eval_step(params: PyTree, batch: Mapping[str, jax.Array]):
    outputs = sharding.map_seeds(
        lambda p, b: state_lib.apply_model(model, p, b, train=False), num_seeds, (0, None)
    )(params, batch)
    out = {"seeds": sharding.map_seeds(_batch_sums, num_seeds, (0, None))(outputs, batch)}
    if ensemble:
      out["ensemble"] = _batch_sums(
          {key: jnp.mean(value, axis=0) for key, value in outputs.items()}, batch
      )
    return out

  return jax.jit(eval_step, in_shardings=(sharding.seed_sharded(mesh), sharding.data_sharded(mesh)))


def _scores(
    totals: Mapping[str, np.ndarray], class_counts: Mapping[str, np.ndarray]
) -> dict[str, Any]:
  """The 10 metrics (percent), per-class F1s and the clip count from split-wide float64 sums."""
  count = float(totals["count"])
  if count == 0:
    raise RuntimeError("evaluation saw no clips")
  scores: dict[str, Any] = {key: 100.0 * float(totals[key]) / count for key in metrics_lib.KEYS}
  for level in metrics_lib.LEVELS:  # the official formula: the mean of the three means
    scores[f"{level}/type"] = sum(scores[f"{level}/{m}"] for m in metrics_lib.MODALITIES) / 3.0
  scores["num_clips"] = int(count)
  per_class = metrics_lib.f1_from_counts(class_counts)
  scores["per_class"] = {
      key: {
          name: float(value)
          for name, value in zip(annotations.CLASSES, values)
          if np.isfinite(value)
      }
      for key, values in per_class.items()
  }
  return scores


def run_evaluation(
    eval_step: Callable,
    params: PyTree,
    host_batches: Iterable[Mapping[str, Any]],
    mesh: Mesh,
    num_clips: int | None = None,
) -> dict[str, Any]:
  """Runs `eval_step` over padded host batches; returns every replica's scores (and the ensemble's).

  Args:
    eval_step: from `make_eval_step`.
    params: seed-stacked params on `mesh`.
    host_batches: this host's slices of the padded global batches (with `mask`, `index`, dense labels).
    mesh: the `("seed", "data")` mesh.
    num_clips: expected number of real clips in the split (checked when given).

  Returns:
    {"per_seed": one dict per replica, "ensemble": a dict or None (without `ensemble` in the step)}. Each
    dict: the keys of `metrics.KEYS` -> percent; "per_class" -> {key: {class: F1 percent}} (classes absent
    everywhere are left out); "num_clips" -> number of real clips scored.
  """
  pending = [
      eval_step(params, sharding.global_batch(mesh, host_batch)) for host_batch in host_batches
  ]
  if not pending:
    raise RuntimeError("evaluation saw no batches")
  # float64 accumulation on the host: {"seeds": {...: [S, ...]}, "ensemble": {...}} summed over batches
  totals = jax.tree.map(
      lambda *xs: np.sum([np.asarray(x, np.float64) for x in xs], axis=0), *jax.device_get(pending)
  )
  seeds = totals["seeds"]
  per_seed = [
      _scores(
          {k: v[s] for k, v in seeds["sums"].items()},
          {k: v[s] for k, v in seeds["class_counts"].items()},
      )
      for s in range(len(seeds["sums"]["count"]))
  ]
  ensemble = (
      _scores(totals["ensemble"]["sums"], totals["ensemble"]["class_counts"])
      if "ensemble" in totals
      else None
  )
  if num_clips is not None and per_seed[0]["num_clips"] != num_clips:
    raise RuntimeError(f"evaluation scored {per_seed[0]['num_clips']} clips, expected {num_clips}")
  return {"per_seed": per_seed, "ensemble": ensemble}


def seed_report(results: Mapping[str, Any], seeds: Sequence[int]) -> dict[str, Any]:
  """The report of a run's replicas: for one seed its scores; for several, mean, std, per seed, ensemble.

  Args:
    results: from `run_evaluation`.
    seeds: the seed of each replica.

  Returns:
    One seed: its scores (`metrics.KEYS`, "per_class", "num_clips"). Several: `metrics.KEYS` -> the mean
    over the seeds; "std" -> {key: sample standard deviation}; "per_seed" -> [{"seed": s, **scores}];
    "ensemble" -> the ensemble's scores (when evaluated); "num_clips".
  """
  per_seed = results["per_seed"]
  if len(per_seed) != len(seeds):
    raise ValueError(f"{len(per_seed)} replicas scored for {len(seeds)} seeds")
  if len(per_seed) == 1:
    return dict(per_seed[0])
  values = {
      key: np.array([scores[key] for scores in per_seed], np.float64) for key in metrics_lib.KEYS
  }
  report: dict[str, Any] = {key: float(v.mean()) for key, v in values.items()}
  report["std"] = {key: float(v.std(ddof=1)) for key, v in values.items()}
  report["per_seed"] = [{"seed": int(seed), **scores} for seed, scores in zip(seeds, per_seed)]
  if results.get("ensemble") is not None:
    report["ensemble"] = results["ensemble"]
  report["num_clips"] = per_seed[0]["num_clips"]
  return report


def summary_line(report: Mapping[str, Any]) -> str:
  """The 10 metrics on one line, in the papers' order (mean ± std over seeds for a multi-seed report)."""
  std = report.get("std")
  return ", ".join(
      f"{key}={report[key]:.2f}" + (f"±{std[key]:.2f}" if std else "") for key in metrics_lib.KEYS
  )


def report_lines(report: Mapping[str, Any]) -> list[str]:
  """A table of the 10 metrics for a terminal: one column, or mean ± std and the ensemble for seeds."""
  if "std" not in report:
    return [f"  {key:22s} {report[key]:6.2f}" for key in metrics_lib.KEYS]
  seeds = ", ".join(str(entry["seed"]) for entry in report["per_seed"])
  lines = [
      f"  {'':22s} {'mean ± std over seeds ' + seeds:>30s}"
      + ("   ensemble" if "ensemble" in report else "")
  ]
  for key in metrics_lib.KEYS:
    line = f"  {key:22s} {report[key]:22.2f} ± {report['std'][key]:5.2f}"
    if "ensemble" in report:
      line += f"   {report['ensemble'][key]:8.2f}"
    lines.append(line)
  return lines


def report_path(
    workdir: str | None, checkpoint: str | None, split: str, out: str | None = None
) -> str:
  """The file `evaluate_checkpoint` writes: `out`, else `report_dir(...)/eval_<split>.json`.

  Raises:
    InputError: the report would go into a local folder that cannot be written (e.g. a read-only
      converted checkpoint): the message says to pass `--out=FILE.json`.
  """
  if out:
    path = checkpoint_lib.absolute(out)
    if os.path.isdir(path):
      path = os.path.join(path, f"eval_{split}.json")
    where, fix = os.path.dirname(path), "pass another --out"
  else:
    folder = report_dir(workdir, checkpoint)
    path = os.path.join(folder, f"eval_{split}.json")
    where, fix = folder, "pass --out=FILE.json (the report's file) or --workdir=DIR"
  if "://" not in path:
    existing = where
    while existing and not os.path.exists(existing):
      existing = os.path.dirname(existing)
    if not os.access(existing or ".", os.W_OK) or (
        os.path.exists(path) and not os.access(path, os.W_OK)
    ):
      raise InputError(f"the report {path} cannot be written ({existing} is read-only): {fix}.")
  return path


def report_dir(workdir: str | None, checkpoint: str | None) -> str:
  """Where `evaluate_checkpoint` writes its report: `workdir`; without one, the checkpoint's workdir (for a step
  folder WORKDIR/best/STEP) or the checkpoint folder itself (a params-only or converted checkpoint).
  """
  if workdir is not None:
    return checkpoint_lib.absolute(workdir)
  if not checkpoint:
    raise InputError(
        "neither a workdir nor a checkpoint to evaluate was given: pass --workdir or --checkpoint."
    )
  return checkpoint_lib.resolve(checkpoint).report_dir


def evaluate_checkpoint(
    config: ml_collections.ConfigDict | None,
    workdir: str | None,
    split: str = "val",
    checkpoint: str | None = None,
    *,
    explicit: Collection[str] | None = None,
    out: str | None = None,
) -> dict[str, Any]:
  """Scores a checkpoint on a whole split and writes `workdir/eval_<split>.json` (or `out`).

  Args:
    config: the run config (data and model); None: the checkpoint's `config.json` (`checkpoint.resolve`
      says where it lives).
    workdir: the training workdir; its best save (else latest) is scored unless `checkpoint` is given. None:
      `report_dir(None, checkpoint)`, e.g. a converted checkpoint's own folder.
    split: "val" or "test".
    checkpoint: another checkpoint (a step folder, another workdir, or a params-only folder such as a
      converted official checkpoint written by `avvp_jax.checkpoint.save_params_checkpoint`).
    explicit: the dotted names of the fields of `config` set explicitly (`launch/evaluate.py` passes its
      `--config.x=y` overrides): `num_seeds` and `seed` not among them are the checkpoint's, as trained. None:
      every field of `config` counts as set (a different number of seeds is an error).
    out: the report's file (a folder: `out/eval_<split>.json`); None: `report_path`'s default,
      beside the checkpoint for a params-only one. Checked for writing before anything is evaluated.

  Returns:
    The report written (`seed_report`, plus "split", "checkpoint" and "data", a note saying synthetic when
    it is). One seed: the 10 metric keys (percent), "per_class", "num_clips". A multi-seed workdir: the 10
    keys hold the mean over the seeds, plus "std" (sample standard deviation, same keys), "per_seed" (one
    dict per seed, with its "seed") and "ensemble" (the 10 metrics of the probabilities averaged over the
    seeds before thresholding).

  Raises:
    InputError: a bad split, no checkpoint at the path, or a config that does not fit the checkpoint.
  """
  if split not in ("val", "test"):
    raise InputError(f"--split={split!r} is not an evaluation split: use val or test.")
  if workdir is None and not checkpoint:
    raise InputError(
        "neither a workdir nor a checkpoint to evaluate was given: pass --workdir or --checkpoint."
    )
  source = checkpoint_lib.resolve(checkpoint or workdir)
  path = epath.Path(report_path(workdir, checkpoint, split, out))
  config = state_lib.resolve_config(checkpoint_lib.checkpoint_config(source, config, explicit))
  seeds = state_lib.run_seeds(config)
  mesh = sharding.make_mesh(num_seeds=len(seeds))
  data = run_data.prepare_run(config, train=False)
  _, params = checkpoint_lib.restore_params(source, config)
  params = jax.device_put(params, sharding.seed_sharded(mesh))
  model = state_lib.build_model(config)
  eval_step = make_eval_step(config, model, mesh, ensemble=len(seeds) > 1)
  start = time.time()
  results = run_evaluation(
      eval_step, params, data.eval_batches(split), mesh, num_clips=data.num_eval_clips(split)
  )
  report = seed_report(results, seeds)
  logging.info(
      "%s (%d clips, %.1fs): %s",
      split,
      report["num_clips"],
      time.time() - start,
      summary_line(report),
  )
  report.update(split=split, checkpoint=source.path, data=data.description)
  if jax.process_index() == 0:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
  logging.info("Wrote %s", path)
  return report
