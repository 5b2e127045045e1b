r"""Scores a trained model on a whole split: `python launch/evaluate.py --workdir=DIR --split=test`.

Flags:
  --config      optional config file[:preset] with `--config.x=y` overrides (e.g. the same data flags as in
                training); default: DIR/config.json written by the trainer (or the checkpoint's own). The
                number of seeds and the first seed are the checkpoint's unless set with --config.num_seeds /
                --config.seed (a number of seeds other than the trained one is an error).
  --workdir     the training workdir; default `./workdir/<config name>` when --config is given, else the
                folder of --checkpoint (so `--checkpoint=DIR` alone scores a converted checkpoint).
  --split       the split to score: test (default) or val.
  --checkpoint  optional: another checkpoint to score (a step folder such as DIR/best/1234, another workdir,
                or a params-only folder, e.g. a converted official checkpoint); default: DIR's best save.
                `--checkpoint=DIR --split=test` alone (no --workdir) scores a converted checkpoint
                and writes the report beside it, DIR/eval_test.json.
  --out         optional: the report's file (or a folder for eval_<split>.json); needed when the
                default folder is read-only.

Prints the 10 official metrics and writes them, per-class F1s and a `data` note (synthetic or the
features folder) to DIR/eval_<split>.json (or --out). Bad input prints one line `error: ...` to
stderr and exits with status 2.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from ml_collections import config_flags

from avvp_jax import cli  # pylint: disable=g-import-not-at-top

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Optional config file[:preset]; default DIR/config.json.", lock_config=True
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Training workdir; default ./workdir/<config name>."
)
_SPLIT = flags.DEFINE_enum("split", "test", ["val", "test"], "Split to score.")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Another checkpoint to score (default: DIR's best save)."
)
_OUT = flags.DEFINE_string(
    "out", None, "Report file (or folder); default DIR/eval_<split>.json beside the checkpoint."
)
_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Call jax.distributed.initialize() (multi-host runs)."
)


def main(argv: list[str]) -> None:
  cli.no_arguments(argv)
  from avvp_jax import evaluate  # pylint: disable=g-import-not-at-top
  from avvp_jax import followed_evals  # pylint: disable=g-import-not-at-top
  from avvp_jax import tasks  # pylint: disable=g-import-not-at-top
  from avvp_jax.tools import evaluate_checkpoint  # pylint: disable=g-import-not-at-top
  from avvp_jax.errors import InputError  # pylint: disable=g-import-not-at-top

  config = cli.loaded_config(_CONFIG)
  workdir = _WORKDIR.value
  if workdir is None and config is not None:
    workdir = cli.default_workdir(config_flags.get_config_filename(flags.FLAGS["config"]))
  elif workdir is None and not _CHECKPOINT.value:
    cli.fail(
        "--workdir is required (or --checkpoint, or --config for the default ./workdir/<config name>)."
    )
  try:
    cli.setup_runtime(multihost=_MULTIHOST.value)
    explicit = (
        set(config_flags.get_override_values(flags.FLAGS["config"])) if config is not None else None
    )
    path = evaluate_checkpoint.report_path(workdir, _CHECKPOINT.value, _SPLIT.value, _OUT.value)
    replacing = evaluate_checkpoint.replacing_line(path, workdir, _CHECKPOINT.value)
    if replacing:
      print(replacing)
    report = evaluate_checkpoint.evaluate_checkpoint(
        config, workdir, _SPLIT.value, _CHECKPOINT.value, explicit=explicit, out=path
    )
  except InputError as error:
    cli.fail(str(error))
  print(f"{_SPLIT.value} ({report['num_clips']} clips; {report['data']}):")
  task = tasks.get(report["task"])
  keys = task.evaluators[task.default_evaluator].keys
  print("\n".join(evaluate.report_lines(report, keys)))
  for entry in report.get("best_followed_epoch", {}).values():
    print(followed_evals.line(entry))
  print(f"wrote {path}")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
