"""Each replica's best validation epoch: its score, step, metrics and train state, and their JSON round trip.

A run of S replicas keeps S bests, each by its own validation `config.checkpoint.best_metric`, each from
its own best epoch; `BestTracker.state` is the seed-stacked train state whose row s is replica s's best,
kept in device memory (a second copy of the train state) so a later improvement of some replicas merges
into it on the device (`keep_best`). `config.checkpoint.best_rule` decides ties: ">=" (default) keeps the
later epoch, as HAN's official code; ">" keeps the first best, as VALOR's (`if F > best_F`); "last" replaces the
best at every validation, so the last validated epoch is kept, as MA's code does (it saves after its last epoch).

`state_dict()` is the JSON the checkpointer saves with the best state (and with every latest save, so a
resumed run knows what to beat); `load_state_dict` restores it; `metrics_record()` is the best save's
`metrics` item: per replica its seed, the step of its best state and its validation metrics.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from avvp_jax.errors import InputError

PyTree = Any

TIES_KEEP_LATER = ">="  # a tie replaces the best (HAN: AVVP-ECCV20 main_avvp.py `if F >= best_F`)
TIES_KEEP_FIRST = (
    ">"  # strict: a tie keeps the earlier best (VALOR: Franklin905/VALOR main_avvp.py)
)
LAST_EPOCH = (
    "last"  # every validation replaces the best: the last epoch is kept (MA's official code)
)
RULES = (TIES_KEEP_LATER, TIES_KEEP_FIRST, LAST_EPOCH)


def check_rule(rule: str) -> None:
  """Raises a one-line InputError for a `config.checkpoint.best_rule` other than ">=" or ">"."""
  if rule not in RULES:
    raise InputError(
        f"config.checkpoint.best_rule {rule!r} is unknown: use '>=' (a tie keeps the later epoch), "
        "'>' (a tie keeps the first best) or 'last' (the last validated epoch is kept)."
    )


@jax.jit
def keep_best(improved: jax.Array, state: PyTree, best: PyTree) -> PyTree:
  """Per replica: `state` where `improved[s]`, else `best` (every leaf `[S, ...]`, `improved` bool `[S]`)."""

  def pick(new, old):
    return jnp.where(improved.reshape(improved.shape + (1,) * (new.ndim - 1)), new, old)

  return jax.tree.map(pick, state, best)


class BestTracker:
  """The per-replica bests of a run (see the module docstring).

  Attributes:
    metric: the validation key that ranks epochs (higher is better), e.g. "segment/type".
    seeds: the replicas' seeds.
    rule: ">=" (a tie becomes the best: the later epoch) or ">" (strict: the first best is kept).
    keys: the metric keys kept per best (`metrics.KEYS`).
    scores, steps, metrics: per replica its best score (-inf before any), its step (-1) and metrics (None).
    state: the seed-stacked best train state on the device; None before the first validation.
  """

  def __init__(
      self,
      metric: str,
      seeds: Sequence[int],
      keys: Sequence[str],
      rule: str = TIES_KEEP_LATER,
  ):
    check_rule(rule)
    self.metric = metric
    self.rule = rule
    self.seeds = [int(s) for s in seeds]
    self.keys = tuple(keys)
    self.scores = [-math.inf] * len(self.seeds)
    self.steps = [-1] * len(self.seeds)
    self.metrics: list[dict[str, float] | None] = [None] * len(self.seeds)
    self.state: PyTree | None = None

  def update(self, step: int, per_seed: Sequence[Mapping[str, float]], state: PyTree) -> np.ndarray:
    """Records the validation of `state` at `step` (`per_seed[s]`: replica s's scores); returns bool `[S]`,
    the replicas that improved (or tied, under ">="), whose rows of `state` become their bests."""
    if len(per_seed) != len(self.seeds):
      raise ValueError(f"{len(per_seed)} validation reports for {len(self.seeds)} replicas")
    improved = np.zeros(len(self.seeds), bool)
    for k, scores in enumerate(per_seed):
      score = float(scores[self.metric])
      if (
          self.rule == LAST_EPOCH
          or score > self.scores[k]
          or (self.rule == TIES_KEEP_LATER and score == self.scores[k])
      ):
        improved[k] = True
        self.scores[k], self.steps[k] = score, int(step)
        self.metrics[k] = {key: float(scores[key]) for key in self.keys}
    if improved.any():
      self.state = keep_best(
          jnp.asarray(improved), state, state if self.state is None else self.state
      )
    return improved

  def describe(self, improved: np.ndarray) -> str:
    """One log line naming the replicas that improved and their new bests."""
    rows = np.flatnonzero(improved)
    return (
        f"New best {self.metric} for seed{'s' if len(rows) != 1 else ''} "
        f"{', '.join(str(self.seeds[k]) for k in rows)}: "
        f"{', '.join(f'{self.scores[k]:.2f} at step {self.steps[k]}' for k in rows)}."
    )

  def state_dict(self) -> dict[str, Any]:
    """The JSON-able bookkeeping (scores, steps, metrics per replica), without the state."""
    return {
        "best_scores": list(self.scores),
        "best_steps": list(self.steps),
        "best_metrics": list(self.metrics),
    }

  def load_state_dict(self, saved: Mapping[str, Any], state: PyTree | None = None) -> None:
    """Restores `state_dict()`'s bookkeeping (and the best state it belongs to, when given)."""
    num = len(self.seeds)
    if not all(len(saved[key]) == num for key in ("best_scores", "best_steps", "best_metrics")):
      raise ValueError(f"the saved bests are for another number of replicas than this run's {num}")
    self.scores = [float(x) for x in saved["best_scores"]]
    self.steps = [int(x) for x in saved["best_steps"]]
    self.metrics = [
        None if m is None else {key: float(v) for key, v in m.items()}
        for m in saved["best_metrics"]
    ]
    self.state = state

  def metrics_record(self) -> dict[str, Any]:
    """The best save's `metrics` item: the ranking metric and, per replica, its seed, step and metrics."""
    return {
        "best_metric": self.metric,
        "per_seed": [
            {"seed": seed, "step": self.steps[k], **(self.metrics[k] or {})}
            for k, seed in enumerate(self.seeds)
        ],
    }
