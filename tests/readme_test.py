"""The README and docs/ stay true: links resolve, commands name real launchers, configs, presets and flags,
and the one-minute tour runs as written."""

import functools
import importlib.util
import os
import re
import shlex
import subprocess
import sys

from absl.testing import absltest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
DOCS = os.path.join(ROOT, "docs")
MAX_README_LINES = 250
# absl's own flags, which every launcher has.
ABSL_FLAGS = {
    "help",
    "helpshort",
    "helpfull",
    "helpxml",
    "verbosity",
    "v",
    "logtostderr",
    "alsologtostderr",
}


def _read(path: str) -> str:
  with open(path, encoding="utf-8") as f:
    return f.read()


def _pages() -> dict[str, str]:
  """README.md and every docs/*.md, by path."""
  pages = {README: _read(README)}
  for name in sorted(os.listdir(DOCS)):
    if name.endswith(".md"):
      pages[os.path.join(DOCS, name)] = _read(os.path.join(DOCS, name))
  return pages


def _anchor(heading: str) -> str:
  """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
  return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def _commands(text: str) -> list[list[str]]:
  """Every `python launch/X.py ...` command of a page's code blocks and inline code, as argument lists."""
  commands = []
  for block in re.findall(r"```(?:bash)?\n(.*?)```", text, flags=re.S):
    block = re.sub(r"\\\n\s*", " ", block)  # continued lines
    for line in block.splitlines():
      for part in re.split(r"&&|;", line.split("#")[0]):
        if re.search(r"launch/[a-z_]+\.py", part):
          commands.append(part.split())
  for span in re.findall(r"`([^`\n]*launch/[a-z_]+\.py[^`\n]*)`", text):
    commands.append(span.split())
  return commands


@functools.cache
def _launcher_flags(name: str) -> frozenset[str]:
  """The flags a launcher defines, read off its source (its `flags.DEFINE_*` and deprecated aliases)."""
  source = _read(os.path.join(ROOT, "launch", f"{name}.py"))
  defined = re.findall(r"DEFINE_[a-z_]+\(\s*\"([a-z_]+)\"", source)
  aliases = re.findall(r"deprecated_alias\(\s*\"([a-z_]+)\"", source)
  return frozenset(defined) | frozenset(aliases) | ABSL_FLAGS


def _tour_commands() -> list[str]:
  """The README's one-minute tour: the lines of the first code block after its heading."""
  text = _read(README)
  section = text.split("## One-minute tour", 1)[1]
  block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
  return [line for line in block.splitlines() if line.strip()]


class ReadmeTest(absltest.TestCase):

  def test_readme_is_a_run_card_not_a_notebook(self):
    lines = _read(README).count("\n")
    self.assertLessEqual(lines, MAX_README_LINES, "move reference text to a docs/ page")

  def test_every_relative_link_and_anchor_resolves(self):
    for path, text in _pages().items():
      anchors = {_anchor(h) for h in re.findall(r"(?m)^#+ (.*)$", text)}
      for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
          continue
        file_part, _, anchor = target.partition("#")
        with self.subTest(page=os.path.relpath(path, ROOT), link=target):
          if file_part:
            self.assertTrue(os.path.exists(os.path.join(os.path.dirname(path), file_part)), target)
          else:
            self.assertIn(anchor, anchors)

  def test_every_docs_page_is_linked_from_the_readme(self):
    readme = _read(README)
    for name in os.listdir(DOCS):
      if name.endswith(".md"):
        self.assertTrue(
            f"(docs/{name})" in readme, f"docs/{name} is not in the README's Documentation table"
        )

  def test_commands_name_existing_launchers_configs_presets_and_flags(self):
    seen = 0
    for path, text in _pages().items():
      for argv in _commands(text):
        launcher = next(a for a in argv if re.search(r"launch/[a-z_]+\.py", a))
        name = re.search(r"launch/([a-z_]+)\.py", launcher).group(1)
        where = f"{os.path.relpath(path, ROOT)}: {' '.join(argv)}"
        with self.subTest(command=where):
          self.assertTrue(os.path.exists(os.path.join(ROOT, "launch", f"{name}.py")), where)
          seen += 1
          for arg in argv[argv.index(launcher) + 1 :]:
            flag = re.match(r"--(?:no)?([a-z_]+)(?:[=\s]|$)", arg)
            if flag:
              self.assertIn(flag.group(1), _launcher_flags(name), where)
            config = re.match(r"--config=(configs/[a-z_]+\.py)(?::([a-z_]+))?$", arg)
            if config:
              self._check_config(config.group(1), config.group(2), where)
    self.assertGreater(seen, 20)

  def _check_config(self, path: str, preset: str | None, where: str):
    self.assertTrue(os.path.exists(os.path.join(ROOT, path)), where)
    spec = importlib.util.spec_from_file_location("readme_config", os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.get_config(preset)  # an unknown preset raises

  def test_quick_start_test_command_is_what_ci_runs(self):
    ci = _read(os.path.join(ROOT, ".ci", "run")).strip().splitlines()[-1]
    self.assertIn(ci.replace("pip install -q -e", "pip install -e"), _read(README))

  def test_the_one_minute_tour_runs_as_written(self):
    """Each tour line in a fresh folder (the repository's launch/ and configs/ linked in), as a user types it."""
    work = self.create_tempdir().full_path
    for name in ("launch", "configs"):
      os.symlink(os.path.join(ROOT, name), os.path.join(work, name))
    env = dict(os.environ, PYTHONPATH=ROOT)
    report = os.path.join(work, "workdir", "han_tiny", "eval_test.json")
    final_report = None
    for line in _tour_commands():
      argv = shlex.split(line)
      self.assertEqual(argv[0], "python", line)
      run = subprocess.run(
          [sys.executable, *argv[1:]],
          cwd=work,
          env=env,
          capture_output=True,
          text=True,
          timeout=600,
      )
      self.assertEqual(run.returncode, 0, f"{line}\n{run.stderr[-3000:]}")
      if final_report is None and os.path.exists(report):  # written by the trainer's final report
        self.assertIn("launch/train.py", line)
        final_report = _read(report)
    # launch/evaluate.py scores the same best state as the trainer's final report did: the same file.
    self.assertEqual(_read(report), final_report)
    for made in ("events.json", "timeline.png", "demo.mp4", "video.json"):
      self.assertTrue(os.path.exists(os.path.join(work, made)), made)


if __name__ == "__main__":
  absltest.main()
