"""Scoring a trained checkpoint on a whole split: `evaluate_checkpoint`, and where its report goes.

`launch/evaluate.py` calls `evaluate_checkpoint(config, workdir, split, checkpoint)`: the checkpoint's config
(or the one given), its task's data and default evaluator, the generic padded loop of `avvp_jax.evaluate`,
and `eval_<split>.json` written beside the run (`report_path`, `report_dir`).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Collection

from absl import logging
from etils import epath
import jax
import ml_collections

from avvp_jax import checkpoint as checkpoint_lib
from avvp_jax import evaluate
from avvp_jax import followed_evals
from avvp_jax import provenance
from avvp_jax import sharding
from avvp_jax import state as state_lib
from avvp_jax import tasks
from avvp_jax.errors import InputError


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


def replacing_line(path: str, workdir: str | None, checkpoint: str | None) -> str | None:
  """The line "replacing eval_test.json of step 500 with step 700" when the report at `path` exists and
  names another step than the checkpoint about to be scored (`workdir`'s best save, or `checkpoint`); else
  None (`launch/evaluate.py` prints it)."""
  try:
    with epath.Path(path).open() as f:
      old = json.load(f)
  except (OSError, ValueError):
    return None
  if not isinstance(old, dict) or "step" not in old:
    return None
  step = checkpoint_lib.resolve(checkpoint or workdir).step
  if old["step"] == step:
    return None
  describe = lambda s: "a checkpoint without a step" if s is None else f"step {s}"
  return f"replacing {os.path.basename(path)} of {describe(old['step'])} with {describe(step)}"


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
    The report written (`evaluate.seed_report` of the task's default evaluator, plus "split", "checkpoint"
    and "data", a note saying synthetic when it is; what produced it: "step" (the train step of the
    checkpoint scored; None for a params-only one), "seeds" (the replicas scored), "headline" ("one seed"
    or "mean over N seeds": what the top-level scores are), "synthetic", "package_version" and "commit"
    (`avvp_jax.provenance.package`)). LLP, one seed: the 10 metric keys (percent),
    "per_class", "num_clips". A multi-seed workdir: the evaluator's keys hold the mean over the seeds, plus
    "std" (sample standard deviation, same keys), "per_seed" (one dict per seed, with its "seed") and
    "ensemble" (the scores of the outputs averaged over the seeds; LLP: the probabilities, before
    thresholding). A workdir's run that followed `split` along training (`config.evals`) adds
    "best_followed_epoch": {name: `followed_evals.best_followed_epoch`}, the papers' best-`split`-epoch
    figure, labelled as such (the headline stays the validation-selected state's).

  Raises:
    InputError: a bad split, no checkpoint at the path, or a config that does not fit the checkpoint.
  """
  if workdir is None and not checkpoint:
    raise InputError(
        "neither a workdir nor a checkpoint to evaluate was given: pass --workdir or --checkpoint."
    )
  source = checkpoint_lib.resolve(checkpoint or workdir)
  path = epath.Path(report_path(workdir, checkpoint, split, out))
  config = state_lib.resolve_config(checkpoint_lib.checkpoint_config(source, config, explicit))
  task = tasks.of(config)
  meta = task.meta(config)
  if split not in meta.eval_splits:  # checked before anything is read or written
    raise InputError(
        f"--split={split!r} is not an evaluation split: use {' or '.join(meta.eval_splits)}."
    )
  evaluator = task.make_evaluator(task.default_evaluator, meta, config)
  seeds = state_lib.run_seeds(config)
  mesh = sharding.make_mesh(num_seeds=len(seeds))
  data = task.prepare_data(config, train=False)
  _, params = checkpoint_lib.restore_params(source, config)
  params = jax.device_put(params, sharding.seed_sharded(mesh))
  model = state_lib.build_model(config)
  eval_step = evaluate.make_eval_step(
      evaluator,
      model,
      mesh,
      num_seeds=len(seeds),
      input_keys=task.input_keys,
      ensemble=len(seeds) > 1 and evaluator.ensemble,
  )
  start = time.time()
  results = evaluate.run_evaluation(
      eval_step,
      evaluator,
      params,
      data.eval_batches(split),
      mesh,
      num_clips=data.num_eval_clips(split),
  )
  report = evaluate.seed_report(results, seeds, evaluator.keys)
  logging.info(
      "%s (%d clips, %.1fs): %s",
      split,
      report["num_clips"],
      time.time() - start,
      evaluate.summary_line(report, evaluator.keys),
  )
  report.update(split=split, checkpoint=source.path, data=data.description, task=task.name)
  if evaluator.settings:  # thresholds, gating and the selection rule the scores were made with
    report["settings"] = dict(evaluator.settings)
  report.update(
      step=source.step,
      seeds=list(seeds),
      headline="one seed" if len(seeds) == 1 else f"mean over {len(seeds)} seeds",
      synthetic=bool(data.synthetic) or "SYNTHETIC" in data.description,
      **provenance.package(),
  )
  followed = _followed(config, workdir if not checkpoint else None, split, seeds)
  if followed:
    report["best_followed_epoch"] = followed
  if jax.process_index() == 0:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
  logging.info("Wrote %s", path)
  return report


def _followed(
    config: ml_collections.ConfigDict, workdir: str | None, split: str, seeds: list[int]
) -> dict[str, Any]:
  """{name: `followed_evals.best_followed_epoch`} of each `config.evals` entry on `split` that the training
  run in `workdir` logged (none for another checkpoint than the workdir's own)."""
  if workdir is None:
    return {}
  out = {}
  for name, entry in dict(config.get("evals") or {}).items():
    if entry.get("split", name) != split:
      continue
    best = followed_evals.best_followed_epoch(
        checkpoint_lib.absolute(workdir), seeds, name, split, config.checkpoint.best_metric
    )
    if best is not None:
      out[name] = best
  return out
