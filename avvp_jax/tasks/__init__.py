"""The task families, by `config.task`: a plain dict of lazily imported modules, each with a `TASK`.

`get(name)` imports the family's package only when a run asks for it, so the trainer's layer names no task
package (tests/layout_test.py holds it to that). A new family: a package with a `TASK` (an
`avvp_jax.task.Task`) and one line here.
"""

from __future__ import annotations

import importlib

from avvp_jax import task as task_lib
from avvp_jax.errors import InputError

DEFAULT = "llp"  # the task of configs written before tasks existed
TASKS: dict[str, str] = {
    "llp": "avvp_jax.tasks.llp.task",  # audio-visual video parsing on LLP (avvp_jax/tasks/llp/)
    "ave": "avvp_jax.tasks.ave.task",  # audio-visual event localization on AVE (avvp_jax/tasks/ave/)
    # AVE's cross-modality localization (A2V / V2A), a variant of the AVE task (avvp_jax/tasks/ave/cmm_task.py)
    "ave_cmm": "avvp_jax.tasks.ave.cmm_task",
}


# The section of `config.data` a family reads, where it is not the family's own name: a variant reads its
# family's (the workdir contract compares that section, `workdir._other_tasks_data_sections`).
DATA_SECTIONS: dict[str, str] = {"ave_cmm": "ave"}


def data_section(name: str | None) -> str:
  """The `config.data` section of task `name` (None or empty: `DEFAULT`'s)."""
  name = name or DEFAULT
  return DATA_SECTIONS.get(name, name)


def get(name: str | None) -> task_lib.Task:
  """The task family `name` (None or empty: `DEFAULT`): a key of `TASKS`, or the (dotted) name of an
  importable module of one's own that defines `TASK` (`--config.task=my_package.my_task`).

  Raises:
    InputError: an unknown name (the message lists the known ones).
  """
  name = name or DEFAULT
  path = TASKS.get(name, name)
  try:
    module = importlib.import_module(path)
  except ModuleNotFoundError as error:
    if error.name is None or not path.startswith(error.name):
      raise  # the module exists but one of its own imports is missing
    module = None
  if module is None or not isinstance(getattr(module, "TASK", None), task_lib.Task):
    raise InputError(
        f"config.task {name!r} is unknown: use one of {', '.join(sorted(TASKS))}, or the dotted path "
        "of an importable module that defines TASK (an avvp_jax.task.Task)."
    )
  return module.TASK


def of(config) -> task_lib.Task:
  """The task of a run config (`config.task`, absent in configs written before tasks: `DEFAULT`)."""
  return get(config.get("task", DEFAULT))
