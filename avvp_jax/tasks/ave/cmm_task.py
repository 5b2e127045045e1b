"""AVE's cross-modality localization (A2V / V2A) as a task variant: `config.task = "ave_cmm"`.

The AVE task (`task.AVETask`) with another model, loss and evaluator and the same data, builds and trainer:

  model       encoder "cmm" (models/cmm.py, decoder "dch": its own head, the distance), AVE-ECCV18's two towers
  loss        "cmm": the contrastive loss of each segment's own (visual, audio) pair, event segments the
              matching pairs (losses/cmm.py)
  evaluator   "cross_modal": the A2V / V2A exact-start accuracies of `cmm_test.py` (cross_modal.py); `mean`
              of the two ranks the epochs
  data        the AVE builds (`config.data.ave.splits`: "match", the task's own split set, in configs/ave_cmm.py)

It trains with segment labels (`config.data.ave.supervision = "full"`): the pairs' labels are the event masks.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from avvp_jax.errors import InputError
from avvp_jax.tasks.ave import cross_modal
from avvp_jax.tasks.ave import task as ave_task

ENCODER = "cmm"
LOSS = "cmm"


class AVECrossModalTask(ave_task.AVETask):
  """AVE's cross-modality localization (module docstring)."""

  name = "ave_cmm"
  evaluators = {"cross_modal": cross_modal.CrossModalEvaluator}
  default_evaluator = "cross_modal"
  default_best_metric = "mean"

  def meta(self, config: ml_collections.ConfigDict):
    return dataclasses.replace(super().meta(config), task=self.name)

  def check_config(self, config: ml_collections.ConfigDict) -> None:
    if config.model.get("encoder") != ENCODER or config.loss.get("name") != LOSS:
      raise InputError(
          f"config.task 'ave_cmm' trains the cross-modal matcher: set --config.model.encoder={ENCODER} and "
          f"--config.loss.name={LOSS} (got {config.model.get('encoder')!r}, {config.loss.get('name')!r}); "
          "configs/ave_cmm.py sets both."
      )
    if config.data.ave.supervision != "full":
      raise InputError(
          "config.data.ave.supervision must be 'full' for config.task 'ave_cmm': the matching pairs' "
          "labels are the segment labels."
      )
    super().check_config(config)


TASK = AVECrossModalTask()
