"""What every launcher in `launch/` shares: one-line errors instead of tracebacks or usage text, the default
workdir, and the runtime set-up (TensorFlow kept off the accelerators, the hosts joined).

Light on purpose (absl only): launchers import it before JAX or TensorFlow.
"""

import importlib
import os
import sys
from typing import NoReturn

from absl import flags
from absl import logging

from avvp_jax.errors import InputError


def fail(message: str, status: int = 2) -> NoReturn:
  """Prints `error: <message>` as one line to stderr and exits with `status`."""
  print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
  sys.exit(status)


# absl's help flags: each prints the usage and exits 1 (absl's choice); launchers exit 0.
HELP_FLAGS = ("help", "helpshort", "helpfull", "helpxml", "?")
_TRACEBACK = "Traceback (most recent call last):"


def _asks_for_help(argv: list[str]) -> bool:
  """Whether `argv` holds one of absl's help flags (`--help`, `-?`, `--helpfull=true`, ...)."""
  for arg in argv[1:]:
    if arg == "--":
      break
    if arg.startswith("-") and arg.lstrip("-").partition("=")[0] in HELP_FLAGS:
      return True
  return False


def flag_error_line(message: str) -> str:
  """One line of a flag error: a config file's traceback (ml_collections puts it in the message) is
  cut down to the flag and the exception it ended in, e.g. "flag --config=configs/han.py:small:
  unknown preset 'small' ...".
  """
  head, sep, trace = str(message).partition(_TRACEBACK)
  if not sep:
    return " ".join(str(message).split())
  last = [line for line in trace.strip().splitlines() if line.strip()][-1].strip()
  exception, colon, text = last.partition(": ")
  if colon and exception.replace(".", "").replace("_", "").isalnum():
    last = text  # "ValueError: unknown preset ..." -> "unknown preset ..."
  head = head.replace("Error whilst parsing config file:", "").strip().rstrip(":")
  return f"{' '.join(head.split())}: {last}" if head else last


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing for `app.run(main, flags_parser=parse_flags)`: a bad flag is a one-line
  error; `--help` (and absl's other help flags) prints the usage and exits with status 0.
  """
  try:
    return flags.FLAGS(argv)
  except SystemExit as exit_:
    if exit_.code == 1 and _asks_for_help(argv):  # absl printed the usage, then exits 1
      sys.exit(0)
    raise
  except flags.Error as error:
    fail(flag_error_line(str(error)))
  except Exception as error:  # pylint: disable=broad-except  (a --config.x override that does not apply)
    fail(f"bad --config flag: {flag_error_line(str(error))}")


def explicit_over_recipe(config, explicit) -> list[str]:
  """Explicit values win over a task's reduced recipe (`Task.recipe_replacements`; LLP's on its embedded
  synthetic data): for every replaced field named in `explicit` (the dotted names the user set, e.g.
  `--config.num_epochs=1`) whose replacement field was not set too, the replacement is switched off
  (`synthetic_num_epochs=0`, ...), so the run trains what was asked for, on either data, and its config.json
  says so. Returns the replacement fields switched off.
  """
  from avvp_jax import tasks  # pylint: disable=g-import-not-at-top  (the task's modules only once a config is loaded)

  explicit = set(explicit)
  switched = []
  for field, (replacement, off) in tasks.of(config).recipe_replacements.items():
    if field in explicit and replacement not in explicit and replacement in config:
      if config[replacement] != off:
        config[replacement] = off
        switched.append(replacement)
  return switched


def loaded_config(config_flag: flags.FlagHolder):
  """The value of a `config_flags` flag (None when not given); a load failure is one line.

  Fields set with `--config.x=y` win over the synthetic reduced recipe (`explicit_over_recipe`).
  """
  config = config_flag.value
  error = getattr(config, "_error", None)  # ml_collections keeps a load failure until first use
  if error is not None:
    fail(f"--config could not be loaded: {error}")
  if config is not None:
    flag_values = getattr(config_flag, "_flagvalues", flags.FLAGS)  # absl keeps no public accessor
    overrides = getattr(flag_values[config_flag.name], "override_values", {}) or {}
    try:
      switched = explicit_over_recipe(config, overrides)
    except InputError as error:  # e.g. an unknown config.task
      fail(str(error))
    if switched:
      logging.info(
          "Explicit --config values win over the synthetic reduced recipe: %s set to off.",
          ", ".join(switched),
      )
  return config


def video_module(name: str):
  """`avvp_jax.video.<name>`; without the `video` extra installed, one line saying how to install it."""
  try:
    return importlib.import_module(f"avvp_jax.video.{name}")
  except ImportError as error:
    fail(f'{error}: install the video extra: pip install -e ".[video]".')


def no_arguments(argv: list[str]) -> None:
  """Launchers take flags only."""
  if len(argv) > 1:
    fail(f"unexpected arguments {argv[1:]}: pass everything as --flags.")


def class_value(item: str, flag: str = "--class_thresholds") -> tuple[int, float]:
  """`CLASS=VALUE` (an entry of a per-class flag) -> (the class's index, the value); bad entries are InputErrors."""
  from avvp_jax.tasks.llp import annotations  # pylint: disable=g-import-not-at-top  (keeps launcher start-up light)

  name, sep, value = item.partition("=")
  try:
    number = float(value)
  except ValueError:
    number = None
  if not sep or number is None:
    raise InputError(f"{flag} entry {item!r} is not CLASS=VALUE: write e.g. Speech=0.4.")
  if name not in annotations.CLASS_INDEX:
    raise InputError(
        f"{flag} names unknown class {name!r}: use LLP class names such as Speech, Dog, Violin_fiddle."
    )
  return annotations.CLASS_INDEX[name], number


def default_workdir(config_arg: str) -> str:
  """`./workdir/<config name>[_<preset>]` for a `--config` value such as `configs/leap.py:tiny`."""
  path, _, preset = config_arg.partition(":")
  name = os.path.splitext(os.path.basename(path))[0] or "run"
  if preset:
    name += "_" + "".join(c if c.isalnum() else "_" for c in preset)
  return os.path.join(".", "workdir", name)


def _quiet_orbax(record) -> bool:
  """absl log filter: Orbax's per-save INFO lines are left out (its warnings and errors stay)."""
  return record.levelno >= 30 or f"{os.sep}orbax{os.sep}" not in record.pathname


def setup_runtime(
    *,
    multihost: bool = False,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
  """Launcher start-up: hides accelerators from TensorFlow, joins the other hosts, logs the devices.

  With `multihost` (or `JAX_COORDINATOR_ADDRESS` in the environment) this calls
  `jax.distributed.initialize` before anything touches a device; on Cloud TPU pod slices it finds the
  coordinator itself, elsewhere pass the coordinator address, the number of processes and this process's
  id (or set them in the environment variables jax reads).
  """
  import jax  # pylint: disable=g-import-not-at-top  (cli stays light: launchers import it before parsing flags)

  logging.get_absl_handler().addFilter(_quiet_orbax)
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top  (only to hide accelerators from it)

    tf.config.set_visible_devices([], "GPU")  # tf.data only: TF must not grab GPU memory
    tf.config.set_visible_devices([], "TPU")
  except (ImportError, RuntimeError, ValueError):
    pass
  if multihost or os.environ.get("JAX_COORDINATOR_ADDRESS"):
    kwargs = {
        key: value
        for key, value in dict(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
        ).items()
        if value is not None
    }
    jax.distributed.initialize(**kwargs)
  logging.info(
      "JAX %s: process %d of %d; %d local devices of %d: %s",
      jax.__version__,
      jax.process_index(),
      jax.process_count(),
      jax.local_device_count(),
      jax.device_count(),
      ", ".join(str(d) for d in jax.local_devices()),
  )
