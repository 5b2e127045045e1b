"""The package's shape: no import circle, nothing imports the trainer, local imports and long files say why.

Read from the source with `ast` (nothing is imported), so the test sees function-local imports as well.
"""

import ast
import os

from absl.testing import absltest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "avvp_jax")
MAX_LINES = 500  # a longer file says why at its top (a line starting "Length:" in its docstring)
# The trainer's layer: the modules that must never import a task package (`avvp_jax.tasks.<family>`).
TASK_FREE = (
    "avvp_jax.best_tracker",
    "avvp_jax.checkpoint",
    "avvp_jax.evaluate",
    "avvp_jax.faults",
    "avvp_jax.hooks",
    "avvp_jax.interrupts",
    "avvp_jax.reporting",
    "avvp_jax.sharding",
    "avvp_jax.state",
    "avvp_jax.task",
    "avvp_jax.tasks",
    "avvp_jax.train",
    "avvp_jax.train_log",
    "avvp_jax.workdir",
    "avvp_jax.data.streams",
)
# avvp_jax/train.py holds the step and the loop only; the rest lives below it (issue 21).
MAX_TRAINER_LINES = 450


def _modules() -> dict[str, str]:
  """Module name -> file, for every .py file of the package."""
  out = {}
  for folder, _, names in os.walk(PACKAGE):
    for name in names:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
        if parts[-1] == "__init__":
          parts = parts[:-1]
        out[".".join(parts)] = path
  return out


def _imports(path: str, modules: dict[str, str]) -> list[tuple[str, int, bool]]:
  """(imported package module, line, whether inside a function) of every avvp_jax import in `path`."""
  tree = ast.parse(open(path).read())
  found = []

  def visit(node, local):
    for child in ast.iter_child_nodes(node):
      inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
      names = []
      if isinstance(child, ast.Import):
        names = [alias.name for alias in child.names]
      elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
        names = [
            f"{child.module}.{alias.name}"
            if f"{child.module}.{alias.name}" in modules
            else child.module
            for alias in child.names
        ]
      for name in names:
        if name.split(".")[0] == "avvp_jax":
          while name not in modules:
            name = name.rsplit(".", 1)[0]
          found.append((name, child.lineno, local))
      visit(child, inner)

  visit(tree, False)
  return found


class LayoutTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.modules = _modules()
    cls.graph = {name: _imports(path, cls.modules) for name, path in cls.modules.items()}

  def test_no_import_circle(self):
    edges = {
        name: {target for target, _, _ in imports if target != name and target != "avvp_jax"}
        for name, imports in self.graph.items()
    }
    state = {}  # 1: on the current path, 2: done

    def walk(node, path):
      state[node] = 1
      for target in sorted(edges.get(node, ())):
        if state.get(target) == 1:
          self.fail("import circle: " + " -> ".join(path[path.index(target) :] + [target]))
        if target not in state:
          walk(target, path + [target])
      state[node] = 2

    for name in sorted(edges):
      if name not in state:
        walk(name, [name])

  def test_nothing_in_the_package_imports_the_trainer(self):
    for name, imports in self.graph.items():
      self.assertNotIn("avvp_jax.train", [target for target, _, _ in imports], msg=name)

  def test_the_trainers_layer_imports_no_task_package(self):
    # The trainer's layer knows no dataset: the tasks reach it through `avvp_jax.tasks.get` (a plain dict of
    # lazily imported modules), never through an import, direct or indirect, not even a function-local one.
    layer = [
        name
        for name in self.graph
        if name in TASK_FREE or name.startswith("avvp_jax.tools.evaluate")
    ]
    self.assertContainsSubset(TASK_FREE, layer)
    for name in layer:
      seen, todo = set(), [(name, [name])]
      while todo:
        module, path = todo.pop()
        for target, line, _ in self.graph.get(module, ()):
          self.assertFalse(
              target.startswith("avvp_jax.tasks."),
              msg=f"{' -> '.join(path + [target])} (line {line} of {module}): a task package",
          )
          if target not in seen:
            seen.add(target)
            todo.append((target, path + [target]))

  def test_the_trainer_stays_small(self):
    with open(os.path.join(PACKAGE, "train.py")) as f:
      num_lines = f.read().count("\n")
    self.assertLess(
        num_lines, MAX_TRAINER_LINES, msg="avvp_jax/train.py: move what is not the loop out"
    )

  def test_function_local_imports_say_why(self):
    for path in self.modules.values():
      source = open(path).read()
      lines = source.split("\n")
      for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
          continue
        for child in ast.walk(node):
          if isinstance(child, (ast.Import, ast.ImportFrom)):
            text = lines[child.lineno - 1]
            reason = text.split("#", 1)[1] if "#" in text else ""
            reason = reason.replace("pylint: disable=g-import-not-at-top", "").strip(" ()")
            self.assertTrue(
                reason,
                msg=f"{path}:{child.lineno} imports inside a function without saying why "
                f"(a comment on the line): {text.strip()}",
            )

  def test_long_files_say_why(self):
    for folder in ("avvp_jax", "launch"):
      for base, _, names in os.walk(os.path.join(ROOT, folder)):
        for filename in names:
          if not filename.endswith(".py"):
            continue
          path = os.path.join(base, filename)
          source = open(path).read()
          if source.count("\n") > MAX_LINES:
            docstring = ast.get_docstring(ast.parse(source)) or ""
            self.assertTrue(
                any(line.startswith("Length:") for line in docstring.split("\n")),
                msg=f"{path} has {source.count(chr(10))} lines and no 'Length:' reason at its top",
            )


if __name__ == "__main__":
  absltest.main()
