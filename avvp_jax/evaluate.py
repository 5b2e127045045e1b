"""The evaluation loop: padded, masked batches through a jitted step, every replica at once, any evaluator.

Params are seed-stacked (`[S, ...]`, see `avvp_jax.checkpoint`). Per batch, the jitted step runs the model of
every replica (`sharding.map_seeds` over the seed axis) and hands its outputs to a task's evaluator
(`avvp_jax.task.Evaluator.batch_sums`), which reduces them to masked sums on the device: padding rows
(`mask == 0`) count for nothing. With `ensemble`, the same is done once more for the seed ensemble: the
outputs averaged over the replicas. The sums stay on the device until the split is done; they are then added
up on the host in float64 and turned into scores by the evaluator (`Evaluator.scores`).

`seed_report` turns the per-seed scores into what the trainer logs and `tools/evaluate_checkpoint.py` writes
to `eval_<split>.json`: one seed's scores as they are; for several seeds the mean over seeds under the
evaluator's keys, plus `std` (sample standard deviation), `per_seed` and `ensemble`.

`run_evaluators(config, task, meta)` names what a run evaluates: the task's default evaluator on "val" (what
`checkpoint.best_metric` ranks), plus any `config.evals` entry (in a config file, `config.evals.test = dict(split="test")` scores the test
split too at every validation, with the default evaluator unless `type` names another of the task's).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from avvp_jax import sharding
from avvp_jax import state as state_lib
from avvp_jax import task as task_lib
from avvp_jax.errors import InputError

PyTree = Any
VALIDATION = "val"  # the name (and split) of the evaluation that ranks a run's epochs


def run_evaluators(
    config, task: task_lib.Task, meta: task_lib.Meta
) -> dict[str, tuple[task_lib.Evaluator, str]]:
  """{name: (evaluator, split)} of a run: "val" (the task's default evaluator) first, then `config.evals`.

  Raises:
    InputError: an entry naming an evaluator type the task lacks or a split it cannot score.
  """
  out = {VALIDATION: (task.make_evaluator(task.default_evaluator, meta, config), VALIDATION)}
  for name, entry in dict(config.get("evals") or {}).items():
    kind = entry.get("type") or task.default_evaluator
    split = entry.get("split", name)
    if kind not in task.evaluators:
      raise InputError(
          f"config.evals.{name}.type {kind!r} is not an evaluator of task {task.name!r}: use one of "
          f"{', '.join(sorted(task.evaluators))}."
      )
    if split not in meta.eval_splits or name == VALIDATION:
      raise InputError(
          f"config.evals.{name} scores split {split!r}: use a name other than {VALIDATION!r} and a "
          f"split of {', '.join(meta.eval_splits)}."
      )
    out[name] = (task.make_evaluator(kind, meta, config), split)
  return out


def make_eval_step(
    evaluator: task_lib.Evaluator,
    model: nn.Module,
    mesh: Mesh,
    *,
    num_seeds: int,
    input_keys: Sequence[str],
    ensemble: bool = False,
) -> Callable:
  """Jitted `(params [S, ...], batch [B, ...]) -> {"seeds": sums [S], "ensemble": sums}` on `mesh`.

  "seeds" holds every replica's `evaluator.batch_sums` (a leading `[S]` axis); "ensemble" (only with
  `ensemble`) those of the outputs averaged over the replicas.
  """

  def eval_step(params: PyTree, batch: Mapping[str, jax.Array]):
    outputs = sharding.map_seeds(
        lambda p, b: state_lib.apply_model(model, p, b, input_keys=input_keys, train=False),
        num_seeds,
        (0, None),
    )(params, batch)
    out = {"seeds": sharding.map_seeds(evaluator.batch_sums, num_seeds, (0, None))(outputs, batch)}
    if ensemble:
      out["ensemble"] = evaluator.batch_sums(
          {key: jnp.mean(value, axis=0) for key, value in outputs.items()}, batch
      )
    return out

  return jax.jit(eval_step, in_shardings=(sharding.seed_sharded(mesh), sharding.data_sharded(mesh)))


def run_evaluation(
    eval_step: Callable,
    evaluator: task_lib.Evaluator,
    params: PyTree,
    host_batches: Iterable[Mapping[str, Any]],
    mesh: Mesh,
    num_clips: int | None = None,
) -> dict[str, Any]:
  """Runs `eval_step` over padded host batches; returns every replica's scores (and the ensemble's).

  Args:
    eval_step: from `make_eval_step` with the same `evaluator`.
    evaluator: turns the split's summed batch sums into scores.
    params: seed-stacked params on `mesh`.
    host_batches: this host's slices of the padded global batches (with `mask`, `index`, labels).
    mesh: the `("seed", "data")` mesh.
    num_clips: expected number of real clips in the split (checked when given).

  Returns:
    {"per_seed": one `evaluator.scores` dict per replica, "ensemble": a dict or None (without `ensemble` in
    the step)}.
  """
  pending = [
      eval_step(params, sharding.global_batch(mesh, host_batch)) for host_batch in host_batches
  ]
  if not pending:
    raise RuntimeError("evaluation saw no batches")
  per_seed, ensemble = scores_of_batch_sums(evaluator, pending)
  if num_clips is not None and per_seed[0]["num_clips"] != num_clips:
    raise RuntimeError(f"evaluation scored {per_seed[0]['num_clips']} clips, expected {num_clips}")
  return {"per_seed": per_seed, "ensemble": ensemble}


def scores_of_batch_sums(
    evaluator: task_lib.Evaluator, batch_sums: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
  """(every replica's scores, the ensemble's or None) from the eval step's outputs of a split's batches,
  fetched and summed over the batches in float64 on the host."""
  totals = jax.tree.map(
      lambda *xs: np.sum([np.asarray(x, np.float64) for x in xs], axis=0),
      *jax.device_get(batch_sums),
  )
  seeds = totals["seeds"]
  num_seeds = len(jax.tree.leaves(seeds)[0])
  per_seed = [evaluator.scores(jax.tree.map(lambda x: x[s], seeds)) for s in range(num_seeds)]
  return per_seed, evaluator.scores(totals["ensemble"]) if "ensemble" in totals else None


def seed_report(
    results: Mapping[str, Any], seeds: Sequence[int], keys: Sequence[str]
) -> dict[str, Any]:
  """The report of a run's replicas: for one seed its scores; for several, mean, std, per seed, ensemble.

  Args:
    results: from `run_evaluation`.
    seeds: the seed of each replica.
    keys: the evaluator's headline keys (`Evaluator.keys`).

  Returns:
    One seed: its scores (`keys`, extras, "num_clips"). Several: `keys` -> the mean over the seeds; "std" ->
    {key: sample standard deviation}; "per_seed" -> [{"seed": s, **scores}]; "ensemble" -> the ensemble's
    scores (when evaluated); "num_clips".
  """
  per_seed = results["per_seed"]
  if len(per_seed) != len(seeds):
    raise ValueError(f"{len(per_seed)} replicas scored for {len(seeds)} seeds")
  if len(per_seed) == 1:
    return dict(per_seed[0])
  values = {key: np.array([scores[key] for scores in per_seed], np.float64) for key in keys}
  report: dict[str, Any] = {key: float(v.mean()) for key, v in values.items()}
  report["std"] = {key: float(v.std(ddof=1)) for key, v in values.items()}
  report["per_seed"] = [{"seed": int(seed), **scores} for seed, scores in zip(seeds, per_seed)]
  if results.get("ensemble") is not None:
    report["ensemble"] = results["ensemble"]
  report["num_clips"] = per_seed[0]["num_clips"]
  return report


def summary_line(report: Mapping[str, Any], keys: Sequence[str]) -> str:
  """The `keys` on one line, in their order (mean ± std over seeds for a multi-seed report)."""
  std = report.get("std")
  return ", ".join(f"{key}={report[key]:.2f}" + (f"±{std[key]:.2f}" if std else "") for key in keys)


def report_lines(report: Mapping[str, Any], keys: Sequence[str]) -> list[str]:
  """A table of `keys` for a terminal: one column, or mean ± std and the ensemble for seeds."""
  if "std" not in report:
    return [f"  {key:22s} {report[key]:6.2f}" for key in keys]
  seeds = ", ".join(str(entry["seed"]) for entry in report["per_seed"])
  lines = [
      f"  {'':22s} {'mean ± std over seeds ' + seeds:>30s}"
      + ("   ensemble" if "ensemble" in report else "")
  ]
  for key in keys:
    line = f"  {key:22s} {report[key]:22.2f} ± {report['std'][key]:5.2f}"
    if "ensemble" in report:
      line += f"   {report['ensemble'][key]:8.2f}"
    lines.append(line)
  return lines
