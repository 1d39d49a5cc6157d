"""The package's import graph, read from its source (``ast``; imports inside functions count too), has no
cycle: every module can be understood, and imported, after the modules it uses."""

import ast
import importlib.util
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mrl_jax"


def _module_name(path: Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_extension(name: str) -> bool:
  """A compiled submodule (``mrl_jax._mrl_cpu``): a module, not a name defined in the package's ``__init__``."""
  parent = name.rpartition(".")[0]
  if not (PACKAGE.parent / parent.replace(".", "/") / "__init__.py").exists():
    return False  # only packages hold submodules
  return importlib.util.find_spec(name) is not None


def import_graph() -> dict[str, set[str]]:
  """``{module: modules of mrl_jax it imports}`` (a package's ``__init__`` is the package's own name)."""
  modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
  graph = {}
  for name, path in modules.items():
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, ast.Import):
        targets.update(alias.name for alias in node.names)
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
          base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
        # `from a import b`: the module a.b when b is one (the package's __init__ is what Python runs first
        # anyway), else a name defined in a
        for alias in node.names:
          full = f"{base}.{alias.name}"
          targets.add(full if full in modules or _is_extension(full) else base)
    graph[name] = {t for t in targets if t in modules and t != name}
  return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One cycle as a list of modules (first == last), or None."""
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph[node]):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state and (cycle := visit(nxt)):
        return cycle
    state[node] = "done"
    stack.pop()
    return None

  for node in sorted(graph):
    if node not in state and (cycle := visit(node)):
      return cycle
  return None


def test_graph_is_read_from_the_source():
  graph = import_graph()
  assert "mrl_jax.update" in graph["mrl_jax.tile"]  # a top-level import
  assert len(graph) > 30


def test_package_has_no_import_cycle():
  cycle = find_cycle(import_graph())
  assert cycle is None, " -> ".join(cycle)
