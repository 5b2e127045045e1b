"""What every launcher in `launch/` shares: one vocabulary of flag names (`FLAG_NAMES`, with the old names
kept as deprecated aliases, `deprecated_alias`), one-line errors instead of tracebacks or usage text, a quiet
console, the default workdir, and the runtime set-up (TensorFlow kept off the accelerators, the hosts joined).

A quiet console: JAX's backend probe ("Unable to initialize backend 'tpu' ...") and Orbax's INFO lines are
left out of the log; absl's `-v 1` (`--verbosity=1`, DEBUG) brings them back with everything else.

A persistent compilation cache: every launcher keeps JAX's compiled programs in `--compilation_cache` (default
`~/.cache/avvp_jax/xla`; `off` for none), so a rerun, a resume, `evaluate.py`, `parse.py` and the trainer's
final report load the train and evaluation steps instead of compiling them again. A
`JAX_COMPILATION_CACHE_DIR` set in the environment wins.

Light on purpose (absl and the JAX-free `avvp_jax.model_parts` only): launchers import it before JAX or
TensorFlow, and an unknown model part is refused before they load (`loaded_config`).

Length: one light module on purpose: a launcher imports only this before JAX, so the flag table, its checks
and the console and runtime set-up stay together rather than spread over modules that pull in JAX.
"""

import difflib
import importlib
import os
import re
import sys
from typing import NoReturn

from absl import flags
from absl import logging

from avvp_jax import model_parts
from avvp_jax.errors import InputError

# --- one vocabulary for the launchers ---------------------------------------------------------------------
# Every flag of every launch/*.py is a name of this table (one name per concept), a launcher's own flag
# (`OWN_FLAGS`), or a deprecated alias (`DEPRECATED`); tests/launcher_flags_test.py holds each launcher to it.

FLAG_NAMES = {
    "config": "a config file[:preset], with --config.x=y overrides",
    "workdir": "a training run's folder",
    "checkpoint": "a trained model to use: a workdir, a step folder of one, or a params-only folder",
    "official": "an official PyTorch checkpoint (.pt) to convert",
    "features": "features to read: a folder (either layout) or one .npz file",
    "videos": "video files: a folder of videos, one file, or a comma-separated list of files",
    "out": "what a launcher writes: a file or a folder",
    "split": "the split to score (val or test)",
    "truth_split": "the split whose dense labels are drawn as ground truth (auto, val, test or none)",
    "splits": "the splits to write or label",
    "replica": "the replica (training seed) of a multi-seed checkpoint to use; default: the seed ensemble",
    "data_seed": "the seed of generated (SYNTHETIC) data",
    "labels_dir": "a folder with AVVP_*.csv annotation files",
    "batch_size": "clips (10-s windows of a video) per jitted call",
    "threshold": "the segment probability threshold (official 0.5)",
    "gate_threshold": "the video-level gate threshold",
    "class_thresholds": "per-class thresholds, CLASS=VALUE,...",
    "audio_threshold": "the audio modality's threshold (of what, the launcher says)",
    "visual_threshold": "the visual modality's threshold (of what, the launcher says)",
    "plot": "a timeline picture (.png, .pdf or .svg)",
    "plot_dir": "a folder for one timeline PNG per clip or video",
    "title": "the title of the --plot picture",
    "layout": "a features folder's layout: LLP's official one (default), clip_clap, or AVE's released one (ave)",
    "weights": "the feature extractor's weights: pretrained or random",
    "weights_dir": "a folder with the feature extractor's weight files",
    "vgg": "AVE's VGG-19 weights: torchvision (default) or keras (the released features' network)",
    "frame_batch": "ResNet-152 (LLP) or VGG-19 (AVE) frames per accelerator call",
    "multihost": "join the other hosts with jax.distributed.initialize()",
}

# Flags only one launcher has (by the launcher's file name); a new one goes here or in FLAG_NAMES.
OWN_FLAGS = {
    "convert_official": ("model", "label_embeddings", "num_heads"),
    "make_label_embeddings": ("source", "task"),
    "make_noise_ratios": ("order_seed",),
    "make_pseudo_labels": ("tune_on_val", "uwav"),
    "make_synthetic": (
        "num_train_clips",
        "num_eval_clips",
        "write_labels",
        "pseudo_labels",
        "video",
        "video_seconds",
    ),
    "parse": ("clips", "clip_list", "plot_clips", "plot_max"),
    "refine_labels": ("partner_seed",),
    "train": ("coordinator_address", "num_processes", "process_id"),
}

# Old flag names, per launcher: old -> the FLAG_NAMES name that replaced it (`deprecated_alias`).
DEPRECATED = {
    "convert_official": {"checkpoint": "official"},
    "make_label_embeddings": {"output": "out"},
    "make_pseudo_labels": {"features_dir": "features", "seed": "replica"},
    "make_synthetic": {"output_dir": "out", "seed": "data_seed"},
    "parse": {"split": "truth_split", "seed": "replica"},
}

REQUIRED = "(required)"  # in the help of every required flag, so that --help shows which they are


class _DeprecatedAlias(flags.Flag):
  """An old flag name: `--old=X` sets `--new` (the warning and the both-given error: `resolve_aliases`)."""

  def __init__(self, new: flags.Flag, name: str, help_text: str, note: str | None):
    self.new = new
    self.note = note
    super().__init__(new.parser, new.serializer, name, new.default, help_text, boolean=new.boolean)

  def parse(self, argument):
    self.new.parse(argument)
    self.present += 1

  def _parse_from_default(self, value):
    return value  # parsed by the new flag already

  @property
  def value(self):
    return self.new.value

  @value.setter
  def value(self, value):
    self.new.value = value

  def warning(self) -> str:
    """The one line printed when the old name is used."""
    return f"warning: --{self.name} is deprecated; {self.note or f'use --{self.new.name}'}"


def deprecated_alias(
    old: str, new: str, note: str | None = None, flag_values: flags.FlagValues = flags.FLAGS
) -> None:
  """Keeps `--old` working as a deprecated name of the (already defined) flag `--new`.

  `--old=X` works exactly like `--new=X` and prints one line to stderr, "warning: --old is deprecated; use
  --new" (or "; <note>" instead of "use --new"); giving both is a one-line error (`resolve_aliases`, which
  `parse_flags` calls). The old name is defined by this module, so `--help` (the launcher's own flags) leaves
  it out and `--helpfull` lists it as "Deprecated: use --new."
  """
  alias = _DeprecatedAlias(flag_values[new], old, f"Deprecated: use --{new}.", note)
  flags.DEFINE_flag(alias, flag_values, module_name=__name__)


def aliases(flag_values: flags.FlagValues = flags.FLAGS) -> dict[str, str]:
  """The deprecated aliases defined in `flag_values`: old name -> new name."""
  return {
      name: flag.new.name
      for name, flag in flag_values._flags().items()  # pylint: disable=protected-access
      if isinstance(flag, _DeprecatedAlias)
  }


def refuse_both_names(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """A one-line error when a deprecated name and its new name were both given."""
  for name, new in aliases(flag_values).items():
    if flag_values[name].present and flag_values[new].present > flag_values[name].present:
      fail(
          f"--{name} and --{new} both given: --{name} is the deprecated name of --{new}; give --{new} only."
      )


def resolve_aliases(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """After parsing: an error when both names of a flag were given, else one warning line per deprecated
  name used."""
  refuse_both_names(flag_values)
  for name in aliases(flag_values):
    if flag_values[name].present:
      print(flag_values[name].warning(), file=sys.stderr, flush=True)


def required(*holders: flags.FlagHolder) -> None:
  """Marks flags as required (absl checks them while parsing; `parse_flags` makes the error one line).

  Each one's help must say "(required)", so that `--help` shows it.
  """
  for holder in holders:
    flag = getattr(holder, "_flagvalues", flags.FLAGS)[holder.name]
    if REQUIRED not in flag.help:
      raise ValueError(f"the help of required flag --{holder.name} must say {REQUIRED}")
    flags.mark_flag_as_required(holder.name, getattr(holder, "_flagvalues", flags.FLAGS))


_MISSING = re.compile(r"Flag --(\w+) must have a value other than None")


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


_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache",
    "~/.cache/avvp_jax/xla",
    "Folder of JAX's persistent compilation cache (compiled steps reused across runs); off: none.",
)


def use_compilation_cache(folder: str) -> str | None:
  """Points JAX's persistent compilation cache at `folder` (`~` expanded; "off" or "": none) unless the
  environment already names one (`JAX_COMPILATION_CACHE_DIR`), keeping every compiled program unless
  `JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS` says otherwise. Returns the folder in use, or None.
  """
  if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    folder = os.environ["JAX_COMPILATION_CACHE_DIR"]
  elif folder in ("", "off"):
    return None
  folder = os.path.expanduser(folder)
  # Every program is kept, however quickly it compiled (JAX's default keeps those over 1 s), so the
  # evaluation step the trainer compiled is the one `evaluate.py` loads: it compiles nothing new.
  min_seconds = os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  if "jax" in sys.modules:  # imported already: its config was read from the environment
    sys.modules["jax"].config.update("jax_compilation_cache_dir", folder)
    sys.modules["jax"].config.update(
        "jax_persistent_cache_min_compile_time_secs", float(min_seconds)
    )
  else:  # read when jax is imported (launchers import it after their flags are checked)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = min_seconds
  return folder


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing for `app.run(main, flags_parser=parse_flags)`: a bad flag is a one-line
  error (an override naming no config field says which fields are close; a missing required flag names
  itself); `--help` (and absl's other help flags) prints the usage and exits with status 0; a deprecated flag
  name warns (`resolve_aliases`). Also quiets the console (`quiet_console`).
  """
  try:
    remaining = flags.FLAGS(argv)
  except SystemExit as exit_:
    if exit_.code == 1 and _asks_for_help(argv):  # absl printed the usage, then exits 1
      sys.exit(0)
    raise
  except flags.Error as error:
    refuse_both_names()
    missing = _MISSING.search(str(error))
    if missing:  # a flag marked `required`
      launcher = os.path.join("launch", os.path.basename(argv[0])) if argv else "the launcher"
      fail(f"--{missing.group(1)} is required (see python {launcher} --help).")
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
  resolve_aliases()
  quiet_console()
  use_compilation_cache(_COMPILATION_CACHE.value)
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

  Fields set with `--config.x=y` win over the synthetic reduced recipe (`explicit_over_recipe`). An unknown
  encoder, decoder or refiner is refused here, before JAX or a task is imported (`model_parts.check_names`).
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
    try:
      if "model" in config:
        model_parts.check_names(config.model)
    except InputError as error:
      fail(str(error))
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


# The options launch/parse.py and launch/parse_video.py share: the same names, meaning and help.
PARSING_HELP = {
    "checkpoint": "Workdir or checkpoint folder of a trained model " + REQUIRED + ".",
    "replica": "Multi-seed checkpoint: the replica (training seed) to use; default: the seed ensemble.",
    "batch_size": "Clips (10-s windows of a video) per jitted call.",
    "threshold": "Segment probability threshold (official 0.5).",
    "gate_threshold": "Video-level gate threshold; default --threshold.",
    "class_thresholds": "Per-class segment (and gate) thresholds, CLASS=VALUE,...",
    "plot_dir": "Folder for one timeline PNG per plotted clip or video.",
    "title": "Title of the --plot picture.",
}


def segment_thresholds(threshold: float, class_thresholds: list[str]):
  """--threshold with --class_thresholds applied: a float, or [C] values (the library's forms)."""
  if not class_thresholds:
    return threshold
  from avvp_jax.tasks.llp import annotations  # pylint: disable=g-import-not-at-top  (keeps start-up light)

  values = [threshold] * annotations.NUM_CLASSES
  for item in class_thresholds:
    index, number = class_value(item)
    values[index] = number
  return values


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


# Warnings of other libraries that say nothing to a user of ours: TFDS's before every first build of a
# dataset, Orbax's when a read-only checkpoint manager (ours, for evaluation and parsing) opens a folder.
_EXPECTED_WARNINGS = ("has no dataset_info.json", "Given directory is read only")


def _quiet(record) -> bool:
  """absl log filter: JAX's backend probe, Orbax's and TFDS's INFO lines and their expected warnings are left
  out (other warnings and errors stay); with absl's `-v 1` (DEBUG) or more, everything is kept."""
  if logging.get_verbosity() >= logging.DEBUG:
    return True
  if record.levelno >= 30:
    return not any(text in record.getMessage() for text in _EXPECTED_WARNINGS)
  return not (
      record.name.startswith("jax._src.xla_bridge")
      or f"{os.sep}orbax{os.sep}" in record.pathname
      or f"{os.sep}tensorflow_datasets{os.sep}" in record.pathname
  )


def quiet_console() -> None:
  """Leaves JAX's "Unable to initialize backend 'tpu'" probe and Orbax's and TFDS's INFO chatter out of the
  log (absl's `-v 1` brings them back). Every launcher has it through `parse_flags`; idempotent."""
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
      "JAX %s: process %d of %d; %d local device%s of %d: %s",
      jax.__version__,
      jax.process_index(),
      jax.process_count(),
      jax.local_device_count(),
      "s" if jax.local_device_count() != 1 else "",
      jax.device_count(),
      ", ".join(str(d) for d in jax.local_devices()),
  )
