"""What every launcher in `launch/` shares: one-line errors instead of tracebacks or usage text.

Light on purpose (absl only): launchers import it before JAX or TensorFlow.
"""

import sys
from typing import NoReturn

from absl import flags


def fail(message: str, status: int = 2) -> NoReturn:
  """Prints `error: <message>` as one line to stderr and exits with `status`."""
  print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
  sys.exit(status)


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing for `app.run(main, flags_parser=parse_flags)`: a bad flag is a one-line error."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    fail(str(error))
  except Exception as error:  # pylint: disable=broad-except  (a --config.x override that does not apply)
    fail(f"bad --config flag: {error}")


def loaded_config(config_flag: flags.FlagHolder):
  """The value of a `config_flags` flag (None when not given); a file that failed to load is one line."""
  config = config_flag.value
  error = getattr(config, "_error", None)  # ml_collections keeps a load failure until first use
  if error is not None:
    fail(f"--config could not be loaded: {error}")
  return config


def no_arguments(argv: list[str]) -> None:
  """Launchers take flags only."""
  if len(argv) > 1:
    fail(f"unexpected arguments {argv[1:]}: pass everything as --flags.")


def class_value(item: str, flag: str = "--class_thresholds") -> tuple[int, float]:
  """`CLASS=VALUE` (an entry of a per-class flag) -> (the class's index, the value); bad entries are InputErrors."""
  from avvp_jax.data import annotations  # pylint: disable=g-import-not-at-top  (keeps launcher start-up light)
  from avvp_jax.errors import InputError  # pylint: disable=g-import-not-at-top
  name, sep, value = item.partition("=")
  try:
    number = float(value)
  except ValueError:
    number = None
  if not sep or number is None:
    raise InputError(f"{flag} entry {item!r} is not CLASS=VALUE: write e.g. Speech=0.4.")
  if name not in annotations.CLASS_INDEX:
    raise InputError(f"{flag} names unknown class {name!r}: use LLP class names such as Speech, Dog, Violin_fiddle.")
  return annotations.CLASS_INDEX[name], number
