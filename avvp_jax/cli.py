"""What every launcher in `launch/` shares: one-line errors instead of tracebacks or usage text, a quiet
console, the default workdir, and the runtime set-up (TensorFlow kept off the accelerators, the hosts joined).

A quiet console: JAX's backend probe ("Unable to initialize backend 'tpu' ...") and Orbax's INFO lines are
left out of the log; absl's `-v 1` (`--verbosity=1`, DEBUG) brings them back with everything else.

Light on purpose (absl only): launchers import it before JAX or TensorFlow.
"""

import difflib
import importlib
import os
import re
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


def _config_paths(node, prefix: str = "") -> list[str]:
  """The dotted names of every field under a ConfigDict `node` (sections and their fields)."""
  paths = []
  for key, value in node.items():
    paths.append(prefix + key)
    if hasattr(value, "items") and hasattr(value, "to_dict"):  # a ConfigDict section
      paths.extend(_config_paths(value, f"{prefix}{key}."))
  return paths


def _argv_config(name: str, argv: list[str], flag_values: flags.FlagValues):
  """The config `--<name>=...` in `argv` names, loaded again (during parsing, the flag holds no value yet)."""
  value = flag_values[name].value
  if hasattr(value, "to_dict"):
    return value
  for arg in argv[1:]:
    flag, sep, text = arg.lstrip("-").partition("=")
    if flag == name and sep:
      return flag_values[name].parser.parse(text)
  return None


def unknown_field_line(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> str | None:
  """For a `--config.x.y=...` override naming no field: "--config.x.y is not a field of the config; did you
  mean --config.x.z?" (the fields of the closest names, in any section); None when every override in `argv`
  names a field.
  """
  for arg in argv[1:]:
    match = re.fullmatch(r"--?([A-Za-z_]\w*)\.([\w.]+)(=.*)?", arg, flags=re.DOTALL)
    if not match or match.group(1) not in flag_values:
      continue
    name, path = match.group(1), match.group(2)
    config = _argv_config(name, argv, flag_values)
    if not hasattr(config, "to_dict"):
      continue
    node, parts = config, path.split(".")
    for depth, part in enumerate(parts):
      if hasattr(node, "to_dict") and part in node:
        node = node[part]
        continue
      if not hasattr(node, "to_dict"):  # a field of a plain value, e.g. --config.seed.x
        return f"--{name}.{path} is not a field of the config: --{name}.{'.'.join(parts[:depth])} is a value."
      every = _config_paths(config)
      section, rest = ".".join(parts[:depth]), ".".join(parts[depth + 1 :])
      leaves = difflib.get_close_matches(part, sorted({p.rpartition(".")[2] for p in every}), n=3)
      close = []
      for leaf in leaves:  # the closest names first; in the override's own section first
        found = [p for p in every if p.rpartition(".")[2] == leaf]
        found.sort(key=lambda p: p.rpartition(".")[0] != section)
        close += [f"{p}.{rest}" if rest and f"{p}.{rest}" in every else p for p in found]
      close = list(dict.fromkeys(close))[:2]
      hint = "; did you mean " + " or ".join(f"--{name}.{c}" for c in close) + "?" if close else "."
      return f"--{name}.{path} is not a field of the config{hint}"
  return None


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing for `app.run(main, flags_parser=parse_flags)`: a bad flag is a one-line
  error (an override naming no config field says which fields are close); `--help` (and absl's other help
  flags) prints the usage and exits with status 0. Also quiets the console (`quiet_console`).
  """
  try:
    remaining = flags.FLAGS(argv)
  except SystemExit as exit_:
    if exit_.code == 1 and _asks_for_help(argv):  # absl printed the usage, then exits 1
      sys.exit(0)
    raise
  except flags.Error as error:
    fail(flag_error_line(str(error)))
  except Exception as error:  # pylint: disable=broad-except  (a --config.x override that does not apply)
    try:
      line = unknown_field_line(argv)
    except Exception:  # pylint: disable=broad-except  (the line is a nicety: fall back to the error's text)
      line = None
    if line is None:
      text = error.args[0] if error.args and isinstance(error.args[0], KeyError) else error
      text = text.args[0] if isinstance(text, KeyError) and text.args else text
      line = f"bad --config flag: {flag_error_line(str(text))}"
    fail(line)
  quiet_console()
  return remaining


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
    from ml_collections import config_flags  # pylint: disable=g-import-not-at-top  (cli stays absl-only)

    flag_values = getattr(config_flag, "_flagvalues", flags.FLAGS)  # absl keeps no public accessor
    try:
      path = config_flags.get_config_filename(flag_values[config_flag.name]).partition(":")[0]
    except Exception:  # pylint: disable=broad-except  (only for a better line)
      path = None
    if path and not os.path.exists(path):
      fail(
          f"--{config_flag.name} file {path} does not exist (give a path such as configs/han.py:tiny)."
      )
    fail(f"--{config_flag.name} could not be loaded: {error}")
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


def _quiet(record) -> bool:
  """absl log filter: JAX's backend probe and Orbax's INFO lines are left out (their warnings and errors
  stay); with absl's `-v 1` (DEBUG) or more, everything is kept."""
  if record.levelno >= 30 or logging.get_verbosity() >= logging.DEBUG:
    return True
  return not (
      record.name.startswith("jax._src.xla_bridge") or f"{os.sep}orbax{os.sep}" in record.pathname
  )


def quiet_console() -> None:
  """Leaves JAX's "Unable to initialize backend 'tpu'" probe and Orbax's INFO chatter out of the log
  (absl's `-v 1` brings them back). Every launcher has it through `parse_flags`; idempotent."""
  logging.get_absl_handler().addFilter(_quiet)


def setup_runtime(
    *,
    multihost: bool = False,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
  """Launcher start-up: joins the other hosts, logs the devices (TensorFlow, which only reads data, is imported
  later, by `avvp_jax.data.streams`, which hides the accelerators from it).

  With `multihost` (or `JAX_COORDINATOR_ADDRESS` in the environment) this calls
  `jax.distributed.initialize` before anything touches a device; on Cloud TPU pod slices it finds the
  coordinator itself, elsewhere pass the coordinator address, the number of processes and this process's
  id (or set them in the environment variables jax reads).
  """
  import jax  # pylint: disable=g-import-not-at-top  (cli stays light: launchers import it before parsing flags)

  quiet_console()
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
