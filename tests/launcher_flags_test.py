"""One vocabulary for the launchers: every flag of every `launch/*.py` against `cli.FLAG_NAMES`.

Each launcher is imported in this process, its flags read off absl's registry, and removed again before the
next one (launchers define flags of the same names). A new launcher is checked without being listed here.
"""

import contextlib
import glob
import importlib.util
import io
import os
import subprocess
import sys

from absl import flags
from absl.testing import absltest

from avvp_jax import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCHERS = sorted(
    os.path.splitext(os.path.basename(path))[0]
    for path in glob.glob(os.path.join(ROOT, "launch", "*.py"))
)
# Absolute paths of a machine: never in a help text or a default.
MACHINE_PATHS = ("/work/", "/home/", "/tmp/", "/root/", "/Users/", ROOT)
# Old names that name nothing any more: only a "deprecated" line may mention them.
RETIRED = sorted({old for table in cli.DEPRECATED.values() for old in table} - set(cli.FLAG_NAMES))
# parse's options that parse_video does not take, and why: a features folder's clips and their ground truth.
PARSE_ONLY = {
    "features",
    "clips",
    "clip_list",
    "plot_clips",
    "plot_max",
    "labels_dir",
    "truth_split",
}


def _is_required(flag) -> bool:
  """Marked with `flags.mark_flag_as_required` (absl's validator message is the only trace)."""
  return any("must have a value other than None" in v.message for v in flag.validators)


@contextlib.contextmanager
def loaded(name: str):
  """Imports launch/<name>.py; yields (its module, {flag name: absl Flag}); removes its flags on exit."""
  before = set(flags.FLAGS)
  spec = importlib.util.spec_from_file_location(
      f"launcher_{name}", os.path.join(ROOT, "launch", f"{name}.py")
  )
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
    added = {flag: flags.FLAGS[flag] for flag in set(flags.FLAGS) - before}
    yield module, added
  finally:
    for flag in set(flags.FLAGS) - before:
      delattr(flags.FLAGS, flag)


def _read_all():
  """{launcher: (its docstring, {flag name: Flag})} for every launcher."""
  found = {}
  for name in LAUNCHERS:
    with loaded(name) as (module, defined):
      found[name] = (module.__doc__ or "", defined)
  return found


def _parse(name: str, *args: str) -> tuple[int | None, str]:
  """`cli.parse_flags` on launch/<name>.py's flags: (exit status or None, what went to stderr)."""
  stderr = io.StringIO()
  with loaded(name), contextlib.redirect_stderr(stderr):
    try:
      cli.parse_flags([f"launch/{name}.py", *args])
    except SystemExit as exit_:
      return exit_.code, stderr.getvalue()
  return None, stderr.getvalue()


class VocabularyTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.launchers = _read_all()

  def test_every_flag_is_in_the_table_or_the_launchers_own(self):
    self.assertContainsSubset(
        ["train", "evaluate", "parse", "parse_video", "extract_features"], self.launchers
    )
    for name, (_, defined) in self.launchers.items():
      allowed = (
          set(cli.FLAG_NAMES) | set(cli.OWN_FLAGS.get(name, ())) | set(cli.DEPRECATED.get(name, {}))
      )
      self.assertEmpty(set(defined) - allowed, f"launch/{name}.py flags outside cli.FLAG_NAMES")
      self.assertEmpty(
          set(cli.OWN_FLAGS.get(name, ())) - set(defined), f"stale cli.OWN_FLAGS of {name}"
      )
    used = set().union(*(defined for _, defined in self.launchers.values()))
    self.assertEmpty(set(cli.FLAG_NAMES) - used, "cli.FLAG_NAMES names no launcher uses")
    self.assertEmpty(set(cli.OWN_FLAGS) - set(self.launchers))
    self.assertEmpty(set(cli.DEPRECATED) - set(self.launchers))

  def test_own_flags_are_not_other_names_of_the_table(self):
    old_names = {old for table in cli.DEPRECATED.values() for old in table}
    own = [flag for names in cli.OWN_FLAGS.values() for flag in names]
    self.assertEmpty(set(own) & set(cli.FLAG_NAMES))
    self.assertEmpty(set(own) & old_names)
    self.assertLen(set(own), len(own), "a flag of two launchers belongs in cli.FLAG_NAMES")

  def test_a_table_name_is_the_same_kind_of_flag_everywhere(self):
    kinds = {}
    for name, (_, defined) in self.launchers.items():
      for flag, value in defined.items():
        if flag in cli.FLAG_NAMES and not isinstance(value, cli._DeprecatedAlias):
          kinds.setdefault(flag, {})[name] = value.flag_type()
    for flag, by_launcher in kinds.items():
      self.assertLen(set(by_launcher.values()), 1, f"--{flag}: {by_launcher}")

  def test_deprecated_aliases_map_to_table_names(self):
    for name, (_, defined) in self.launchers.items():
      aliases = {
          flag: value.new.name
          for flag, value in defined.items()
          if isinstance(value, cli._DeprecatedAlias)
      }
      self.assertEqual(aliases, cli.DEPRECATED.get(name, {}), name)
      for old, new in aliases.items():
        self.assertIn(new, cli.FLAG_NAMES)
        self.assertIs(defined[old].new, defined[new], f"{name}: --{old}")
        self.assertStartsWith(defined[old].help, f"Deprecated: use --{new}.")

  def test_no_machine_path_in_help_or_defaults(self):
    for name, (doc, defined) in self.launchers.items():
      texts = [doc] + [f"{f.help} {f.default!r}" for f in defined.values()]
      for text in texts:
        for path in MACHINE_PATHS:
          self.assertNotIn(path, text, f"launch/{name}.py")

  def test_required_flags_say_so(self):
    required = {}
    for name, (doc, defined) in self.launchers.items():
      for flag, value in defined.items():
        if _is_required(value):
          required.setdefault(name, []).append(flag)
          self.assertIn(cli.REQUIRED, value.help, f"launch/{name}.py --{flag}")
          self.assertRegex(doc, rf"\n\s*--{flag}\b[^\n]*\(required\)", f"launch/{name}.py --{flag}")
    self.assertContainsSubset(["checkpoint", "features", "out"], required["parse"])
    self.assertContainsSubset(["official", "out"], required["convert_official"])

  def test_docstrings_use_the_new_names(self):
    for name, (doc, _) in self.launchers.items():
      lines = doc.splitlines()
      for old in cli.DEPRECATED.get(name, {}):
        for k, line in enumerate(lines):
          self.assertNotRegex(line, rf"^\s*--{old}\b", f"launch/{name}.py documents --{old}")
          command = f"launch/{name}.py" in line or (k and lines[k - 1].endswith("\\"))
          if command:
            self.assertNotIn(f"--{old}=", line, f"launch/{name}.py example uses --{old}")
    docs = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
    texts = [(f"launch/{n}.py", doc) for n, (doc, _) in self.launchers.items()]
    texts += [(path, open(path).read()) for path in docs]
    for where, text in texts:
      for line in text.splitlines():
        if "deprecated" in line.lower():
          continue
        for old in RETIRED:
          self.assertNotRegex(line, rf"(?<![\w.-])--{old}(?![\w-])", f"{where}: {line}")

  def test_parse_video_takes_parses_options(self):
    parse, video = self.launchers["parse"][1], self.launchers["parse_video"][1]
    real = lambda defined: {
        f for f, v in defined.items() if not isinstance(v, cli._DeprecatedAlias)
    }
    self.assertEmpty(real(parse) - PARSE_ONLY - real(video))
    for flag in cli.PARSING_HELP:  # the same meaning, the same words
      self.assertEqual((parse[flag].help, video[flag].help), (cli.PARSING_HELP[flag],) * 2, flag)
    self.assertNotIn("as launch/parse.py", self.launchers["parse_video"][0])


class AliasBehaviourTest(absltest.TestCase):
  """`--old=X` is `--new=X` plus one warning line; both names are a one-line error (in-process parses)."""

  def test_an_old_name_sets_the_new_flag_and_warns(self):
    with loaded("parse"), contextlib.redirect_stderr(io.StringIO()) as stderr:
      cli.parse_flags(
          [
              "launch/parse.py",
              "--checkpoint=c",
              "--features=f",
              "--out=o",
              "--seed=3",
              "--split=none",
          ]
      )
      self.assertEqual((flags.FLAGS.replica, flags.FLAGS.truth_split), (3, "none"))
    self.assertCountEqual(
        stderr.getvalue().splitlines(),
        [
            "warning: --seed is deprecated; use --replica",
            "warning: --split is deprecated; use --truth_split",
        ],
    )
    with loaded("make_synthetic"), contextlib.redirect_stderr(io.StringIO()) as stderr:
      cli.parse_flags(["launch/make_synthetic.py", "--output_dir=d", "--seed=7"])
      self.assertEqual((flags.FLAGS.out, flags.FLAGS.data_seed), ("d", 7))
    self.assertCountEqual(
        stderr.getvalue().splitlines(),
        [
            "warning: --output_dir is deprecated; use --out",
            "warning: --seed is deprecated; use --data_seed",
        ],
    )

  def test_both_names_are_one_error_line(self):
    for launcher, args, line in (
        (
            "make_pseudo_labels",
            ("--checkpoint=c", "--out=o", "--features=a", "--features_dir=b"),
            "error: --features_dir and --features both given: --features_dir is the deprecated name "
            "of --features; give --features only.",
        ),
        (
            "make_label_embeddings",
            ("--output=a.npy", "--out=b.npy"),
            "error: --output and --out both given: --output is the deprecated name of --out; give "
            "--out only.",
        ),
        (  # a missing required flag too: the two names are what is reported
            "convert_official",
            ("--official=a.pt", "--checkpoint=b.pt"),
            "error: --checkpoint and --official both given: --checkpoint is the deprecated name of "
            "--official; give --official only.",
        ),
    ):
      self.assertEqual(_parse(launcher, *args), (2, line + "\n"), launcher)

  def test_a_missing_required_flag_is_one_line(self):
    self.assertEqual(
        _parse("parse", "--features=f", "--out=o"),
        (2, "error: --checkpoint is required (see python launch/parse.py --help).\n"),
    )
    self.assertEqual(  # the old name satisfies the requirement
        _parse("convert_official", "--checkpoint=a.pt", "--out=o"),
        (
            None,
            "warning: --checkpoint is deprecated; here it is now --official (the official .pt file "
            "to convert); use --official\n",
        ),
    )

  def test_help_shows_required_flags_and_hides_old_names(self):
    env = dict(os.environ, PYTHONPATH=ROOT)
    script = os.path.join(ROOT, "launch", "parse.py")
    short = subprocess.run(
        [sys.executable, script, "--help"], capture_output=True, text=True, env=env, check=False
    )
    self.assertEqual(short.returncode, 0, short.stderr)
    self.assertRegex(short.stdout, r"--checkpoint: [^\n]*\(required\)")
    self.assertNotIn("--seed:", short.stdout)
    full = subprocess.run(
        [sys.executable, script, "--helpfull"], capture_output=True, text=True, env=env, check=False
    )
    self.assertIn("--seed: Deprecated: use --replica.", full.stdout)
    self.assertIn("--split: Deprecated: use --truth_split.", full.stdout)


if __name__ == "__main__":
  absltest.main()
