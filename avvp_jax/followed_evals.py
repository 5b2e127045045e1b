"""The best epoch of a split a run followed along training (`config.evals`), read back from its metrics.

Several official scripts keep the epoch with the best *test* score (PSP's and CMBS's on AVE, CVCM's on LLP),
so their papers' figures are a selection on the test split. This project selects on validation; a run that
also follows the test split (`config.evals.test = dict(split="test")`, as the AVE run cards do) can report
the papers' figure beside its own: `best_followed_epoch` reads each replica's `<name>/<metric>` values from
the workdir's `metrics.jsonl` (`seed_<s>/metrics.jsonl` for a multi-seed run) and keeps, per replica, the
first epoch with the highest value, as the official scripts' strict `>` does. The result is labelled as
what it is and never replaces the validation-selected headline.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

from etils import epath
import numpy as np

from avvp_jax import reporting

RULE = (
    "the epoch with the best {split} {metric} among the evaluated epochs, the first one on a tie (how scripts "
    "that select on the {split} split report); a selection on {split}, given beside the validation-selected "
    "figures, not instead of them"
)


def _records(folder: str) -> list[dict[str, Any]]:
  path = epath.Path(folder) / reporting.METRICS_FILE
  if not path.exists():
    return []
  records = []
  for line in path.read_text().splitlines():
    try:
      records.append(json.loads(line))
    except ValueError:  # a line cut short by a stopped run
      continue
  return records


def _by_step(records: list[dict[str, Any]], key: str) -> dict[int, float]:
  """{step: value} of `key` (a resumed run may log a step twice: the later line wins)."""
  return {int(r["step"]): float(r[key]) for r in records if r.get(key) is not None}


def best_followed_epoch(
    workdir: str, seeds: Sequence[int], name: str, split: str, metric: str
) -> dict[str, Any] | None:
  """Each replica's best epoch on the evaluation `name` (of split `split`) by `metric`, from the run's logs.

  Args:
    workdir: the training workdir.
    seeds: the run's replicas (`state.run_seeds`), in order.
    name: the `config.evals` entry followed along training.
    split: its split (for the report's wording).
    metric: the evaluator key ranked (the run's `checkpoint.best_metric`).

  Returns:
    None when the logs hold no value of `<name>/<metric>`; else {"eval", "split", "metric", "rule",
    `metric`: the mean over replicas, "std" (several replicas), "per_seed": [{"seed", "step", "epoch",
    `metric`}]}; "epoch" counts from 1 (None where the log has no epoch for that step).
  """
  key = f"{name}/{metric}"
  main = _records(workdir)
  epochs = _by_step(main, "epoch")
  folders = [workdir] if len(seeds) == 1 else [os.path.join(workdir, f"seed_{s}") for s in seeds]
  per_seed = []
  for seed, folder in zip(seeds, folders):
    values = _by_step(main if folder == workdir else _records(folder), key)
    if not values:
      return None
    steps = sorted(values)
    best = steps[int(np.argmax([values[s] for s in steps]))]  # argmax: the first of equal maxima
    epoch = epochs.get(best)
    per_seed.append(
        {
            "seed": int(seed),
            "step": best,
            "epoch": None if epoch is None else int(epoch),
            metric: values[best],
        }
    )
  scores = np.array([entry[metric] for entry in per_seed])
  out = {
      "eval": name,
      "split": split,
      "metric": metric,
      "rule": RULE.format(split=split, metric=metric),
      metric: float(scores.mean()),
      "per_seed": per_seed,
  }
  if len(scores) > 1:
    out["std"] = float(scores.std(ddof=1))
  return out


def line(entry: dict[str, Any]) -> str:
  """One console line for `best_followed_epoch`'s result."""
  metric = entry["metric"]
  seeds = entry["per_seed"]
  where = ", ".join(
      f"{e[metric]:.2f} (seed {e['seed']}, epoch {e['epoch'] if e['epoch'] is not None else '?'})"
      for e in seeds
  )
  mean = (
      f"{entry[metric]:.2f} ± {entry['std']:.2f} over {len(seeds)} seeds: "
      if "std" in entry
      else ""
  )
  return (
      f"{entry['split']}, best {entry['split']} epoch (a selection on {entry['split']}, as the official "
      f"scripts that keep the best {entry['split']} epoch; not this run's selection): {metric} {mean}{where}"
  )
