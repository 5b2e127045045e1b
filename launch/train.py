r"""Trains an AVVP model: `python launch/train.py --config=configs/han.py [--workdir=DIR]`.

Flags:
  --config        (required unless --workdir holds a stored run) a config file, optionally with a preset
                  (`configs/leap.py:tiny`); override any field with `--config.optimizer.learning_rate=1e-4`,
                  `--config.data.features_dir=/data/llp` (the config is locked, so a misspelt field is an
                  error).
  --workdir       checkpoints, config.json, TensorBoard summaries; default `./workdir/<config name>` (with the
                  preset appended: `./workdir/leap_tiny`). Rerunning on the same workdir resumes; without
                  --config it continues the stored run (its config.json with the changes of
                  config_history.jsonl). A --config whose model, data, loss, optimizer or seeds differ from
                  the stored run's is refused before anything is written (one line naming each field);
                  num_epochs, logging, evaluation and checkpoint cadence may change (they are recorded in
                  config_history.jsonl). One trainer per workdir: a second one is refused (WORKDIR/.lock).
  --multihost     join the other hosts with `jax.distributed.initialize()` (Cloud TPU pods find the
                  coordinator themselves; elsewhere also give --coordinator_address, --num_processes and
                  --process_id, or JAX's environment variables). Implied by JAX_COORDINATOR_ADDRESS.

On a TPU pod slice (every host runs the same command):

  gcloud compute tpus tpu-vm ssh $TPU --zone=$ZONE --worker=all --command="cd avvp_jax && \
    python launch/train.py --config=configs/leap.py --config.data.features_dir=$FEATURES \
    --workdir=gs://$BUCKET/leap --multihost"

Bad input (a missing features folder, a wrong config value) prints one line `error: ...` to stderr and
exits with status 2; a non-finite loss exits with status 1 after keeping the last good checkpoint.

Ctrl-C (SIGINT) or SIGTERM (a preempted pod or cloud host): the current step finishes, the full state and
data position are saved, one line "interrupted at step N; the same command resumes" goes to stderr, and the
exit status is 130 (SIGINT) or 143 (SIGTERM). A second Ctrl-C aborts at once (from the latest save).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
from ml_collections import config_flags

from avvp_jax import cli  # pylint: disable=g-import-not-at-top

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Config file[:preset], e.g. configs/leap.py:tiny; required unless --workdir holds a run to continue.",
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run folder; default ./workdir/<config name>[_<preset>]."
)
_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Call jax.distributed.initialize() (multi-host runs)."
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 (multi-host)."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's id (multi-host).")


def main(argv: list[str]) -> None:
  try:
    _main(argv)
  except KeyboardInterrupt:  # a second Ctrl-C (or one before training started): no traceback
    print(
        "aborted by Ctrl-C; rerunning the same command resumes from the latest save",
        file=sys.stderr,
        flush=True,
    )
    sys.exit(130)


def _main(argv: list[str]) -> None:
  cli.no_arguments(argv)
  config = cli.loaded_config(_CONFIG)
  if config is None and not _WORKDIR.value:
    cli.fail(
        "--config is required, e.g. --config=configs/han.py (or --workdir=DIR alone to continue the "
        "run stored there)."
    )
  import jax  # pylint: disable=g-import-not-at-top
  from avvp_jax import evaluate  # pylint: disable=g-import-not-at-top
  from avvp_jax import followed_evals  # pylint: disable=g-import-not-at-top
  from avvp_jax import interrupts  # pylint: disable=g-import-not-at-top
  from avvp_jax import state as state_lib  # pylint: disable=g-import-not-at-top
  from avvp_jax import tasks  # pylint: disable=g-import-not-at-top
  from avvp_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from avvp_jax import train  # pylint: disable=g-import-not-at-top
  from avvp_jax.errors import InputError  # pylint: disable=g-import-not-at-top
  from avvp_jax.tools import evaluate_checkpoint  # pylint: disable=g-import-not-at-top

  workdir = _WORKDIR.value or cli.default_workdir(
      config_flags.get_config_filename(flags.FLAGS["config"])
  )
  if config is None:  # continue the stored run
    try:
      config = workdir_lib.current_config(workdir)
    except InputError as error:
      cli.fail(str(error))
    logging.info("No --config: continuing the run stored in %s.", workdir)
  try:
    cli.setup_runtime(
        multihost=_MULTIHOST.value,
        coordinator_address=_COORDINATOR.value,
        num_processes=_NUM_PROCESSES.value,
        process_id=_PROCESS_ID.value,
    )
    scores = train.train_and_evaluate(config, workdir)  # resolves (and logs) the config first
  except InputError as error:
    cli.fail(str(error))
  except train.NonFiniteLossError as error:
    cli.fail(str(error), status=1)
  except interrupts.TrainingInterrupted as stopped:
    print(str(stopped), file=sys.stderr, flush=True)
    sys.exit(stopped.exit_status)
  task = tasks.of(config)
  keys = task.evaluators[task.default_evaluator].keys
  if jax.process_index() == 0:
    print(f"validation, last epoch ({scores['num_clips']} clips; {task.data_line(config)}):")
    print("\n".join(evaluate.report_lines(scores, keys)))
  split = state_lib.backfilled(config).final_report
  if not split:
    if jax.process_index() == 0:
      print(
          f"workdir {os.path.abspath(workdir)}; test split: python launch/evaluate.py "
          f"--workdir={workdir} --split=test"
      )
    return
  try:  # every process: the evaluation is one program over the mesh
    report = evaluate_checkpoint.evaluate_checkpoint(config, workdir, split)
  except InputError as error:
    cli.fail(str(error))
  if jax.process_index() == 0:
    print(f"{split}, best state ({report['num_clips']} clips; {report['headline']}):")
    print("\n".join(evaluate.report_lines(report, keys)))
    for entry in report.get("best_followed_epoch", {}).values():
      print(followed_evals.line(entry))
    print(
        f"workdir {os.path.abspath(workdir)}; wrote {os.path.join(workdir, f'eval_{split}.json')}"
    )


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
