"""Code shape of the library (issue 14, item 5): no import cycles, no giant modules or functions.

The import graph is built statically with :mod:`ast` over the four library packages (edge_sdk,
export, runtimes, calibration), so the test needs none of their dependencies and sees every
import, also those inside functions (a function-level import is a dependency that is merely
deferred). Imports under ``if TYPE_CHECKING:`` are ignored: they never run.

Edges:
- ``import a.b.c`` / ``from a.b.c import x`` make the importer depend on ``a.b.c`` (and on
  ``a.b.c.x`` where ``x`` is a submodule); ``from a.b import name`` where ``name`` is not a
  submodule depends on ``a.b``'s ``__init__``, whose attributes it reads.
- Importing a submodule also executes its parent packages' ``__init__`` modules, so it adds
  edges to them. Those implied edges need only the package's *top-level* body (nobody calls the
  package's functions through them), so they point to a separate ``<package> [top level]`` node
  when the ``__init__`` has function-level imports. A parent package that is an ancestor of the
  importer itself is skipped: Python has already started it before the importer's body runs.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from textwrap import indent

REPO = Path(__file__).resolve().parents[1]
LIBRARY_PACKAGES = ("edge_sdk", "export", "runtimes", "calibration")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
TOP_LEVEL = " [top level]"


# ---------------------------------------------------------------------------------------------
# The import graph


def library_modules(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted module name -> file for every ``.py`` file of ``packages`` under ``root``."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``: a block that only type checkers read."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


@dataclass
class _Imports:
    """The imports one module makes, split by where they run."""

    top: list[ast.Import | ast.ImportFrom] = field(default_factory=list)
    deferred: list[ast.Import | ast.ImportFrom] = field(default_factory=list)


def _collect_imports(tree: ast.Module) -> _Imports:
    """Every import statement of ``tree`` except those under ``if TYPE_CHECKING:``."""
    found = _Imports()

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            (found.deferred if in_function else found.top).append(node)
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child, in_function)
            return
        inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    for statement in tree.body:
        visit(statement, False)
    return found


def _resolve_base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a (possibly relative) ``from ... import`` names."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    package = parts if is_package else parts[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _parents(name: str) -> Iterator[str]:
    """``a.b.c`` -> ``a``, ``a.b``."""
    parts = name.split(".")
    for end in range(1, len(parts)):
        yield ".".join(parts[:end])


def _targets(
    module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]
) -> tuple[set[str], set[str]]:
    """(modules used in full, packages whose ``__init__`` merely runs) for one statement."""
    full: set[str] = set()
    implied: set[str] = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            full.add(alias.name)
            implied.update(_parents(alias.name))
    else:
        base = _resolve_base(module, is_package, node)
        implied.update(_parents(base))
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            if submodule in known:
                full.add(submodule)
                implied.add(base)
            else:
                full.add(base)
    own_ancestors = set(_parents(module))
    full = {name for name in full if name in known and name != module}
    implied = {
        name for name in implied if name in known and name not in own_ancestors and name != module
    }
    return full, implied - full


def import_graph(root: Path, packages: Iterable[str]) -> dict[str, set[str]]:
    """Module -> the library modules it imports (top-level, function-level and implied)."""
    modules = library_modules(root, packages)
    known = set(modules)
    imports = {
        name: _collect_imports(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        for name, path in modules.items()
    }
    packages_with_deferred = {
        name
        for name, path in modules.items()
        if path.name == "__init__.py" and imports[name].deferred
    }

    def package_node(name: str) -> str:
        return name + TOP_LEVEL if name in packages_with_deferred else name

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        found = imports[name]
        for kind, statements in (("top", found.top), ("deferred", found.deferred)):
            for statement in statements:
                full, implied = _targets(name, is_package, statement, known)
                edges = full | {package_node(package) for package in implied}
                graph.setdefault(name, set()).update(edges)
                if kind == "top" and name in packages_with_deferred:
                    top_edges = full | {package_node(package) for package in implied}
                    graph.setdefault(name + TOP_LEVEL, set()).update(top_edges)
        graph.setdefault(name, set())
        if name in packages_with_deferred:
            graph.setdefault(name + TOP_LEVEL, set())
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components with more than one module (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(components)


def shortest_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """The shortest cycle through the component's first module, as a path back to itself."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph[node] & members):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if child not in previous:
                previous[child] = node
                queue.append(child)
    raise AssertionError(f"{component} is not strongly connected")


def describe_cycles(graph: dict[str, set[str]]) -> list[str]:
    """One line per cycle: the component's size and its shortest cycle."""
    lines = []
    for component in strongly_connected(graph):
        cycle = " -> ".join(shortest_cycle(graph, component))
        lines.append(f"{len(component)} modules in a cycle, e.g. {cycle}; all: {component}")
    return lines


# ---------------------------------------------------------------------------------------------
# Sizes


def long_modules(root: Path, packages: Iterable[str], limit: int) -> list[str]:
    """``path: N lines`` for each library module longer than ``limit`` lines."""
    found = []
    for path in library_modules(root, packages).values():
        count = len(path.read_text(encoding="utf-8").splitlines())
        if count > limit:
            found.append(f"{path.relative_to(root)}: {count} lines")
    return found


def long_functions(root: Path, packages: Iterable[str], limit: int) -> list[str]:
    """``path:line qualified.name: N lines`` for each function/method longer than ``limit``."""
    found = []
    for path in library_modules(root, packages).values():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for qualname, node in _functions(tree, ""):
            count = node.end_lineno - node.lineno + 1
            if count > limit:
                where = f"{path.relative_to(root)}:{node.lineno}"
                found.append(f"{where} {qualname}: {count} lines")
    return found


def _functions(node: ast.AST, prefix: str) -> Iterator[tuple[str, ast.AST]]:
    """Every function and method under ``node``, nested ones included, with dotted names."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            yield prefix + child.name, child
            yield from _functions(child, f"{prefix}{child.name}.")
        elif isinstance(child, ast.ClassDef):
            yield from _functions(child, f"{prefix}{child.name}.")
        else:
            yield from _functions(child, prefix)


# ---------------------------------------------------------------------------------------------
# The checks on the library


def test_library_import_graph_has_no_cycle() -> None:
    """Issue 14 item 5: no import cycle between library modules, function-level ones included."""
    graph = import_graph(REPO, LIBRARY_PACKAGES)
    assert len(graph) > 100, "the walker found too few modules: is REPO right?"
    cycles = describe_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_library_module_over_500_lines() -> None:
    """Issue 14 item 5: a module over 500 lines holds more than one responsibility."""
    found = long_modules(REPO, LIBRARY_PACKAGES, MAX_MODULE_LINES)
    assert not found, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(found)


def test_no_library_function_over_80_lines() -> None:
    """Issue 14 item 5: no function or method over 80 lines."""
    found = long_functions(REPO, LIBRARY_PACKAGES, MAX_FUNCTION_LINES)
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(found)


# ---------------------------------------------------------------------------------------------
# The walker itself, on a tiny package written here


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_walker_finds_cycle_through_function_level_import(tmp_path: Path) -> None:
    """A cycle closed only by an import inside a function still counts, and is printed."""
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg.b import f\n",
            "pkg/b.py": "def f():\n    from pkg import a\n    return a\n",
        },
    )
    graph = import_graph(tmp_path, ["pkg"])
    assert graph["pkg.a"] == {"pkg.b"}
    assert graph["pkg.b"] == {"pkg.a"}
    assert describe_cycles(graph) == [
        "2 modules in a cycle, e.g. pkg.a -> pkg.b -> pkg.a; all: ['pkg.a', 'pkg.b']"
    ]


def test_walker_ignores_type_checking_imports(tmp_path: Path) -> None:
    """``if TYPE_CHECKING:`` imports never run, so they close no cycle; their ``else`` does."""
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg import b\n",
            "pkg/b.py": (
                "import typing\nif typing.TYPE_CHECKING:\n    from pkg import a\n"
                "else:\n    import pkg.c\n"
            ),
            "pkg/c.py": "",
        },
    )
    graph = import_graph(tmp_path, ["pkg"])
    assert graph["pkg.b"] == {"pkg.c"}
    assert describe_cycles(graph) == []


def test_walker_adds_parent_packages_of_an_imported_submodule(tmp_path: Path) -> None:
    """``import other.sub.leaf`` runs ``other`` and ``other.sub``: an ``__init__`` closes cycles."""
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "import other.sub.leaf\n",
            "other/__init__.py": "from pkg.a import x\n",
            "other/sub/__init__.py": "",
            "other/sub/leaf.py": "",
        },
    )
    graph = import_graph(tmp_path, ["pkg", "other"])
    assert graph["pkg.a"] == {"other", "other.sub", "other.sub.leaf"}
    assert describe_cycles(graph) == [
        "2 modules in a cycle, e.g. other -> pkg.a -> other; all: ['other', 'pkg.a']"
    ]


def test_walker_implied_package_edge_needs_only_its_top_level(tmp_path: Path) -> None:
    """A lazy ``load()`` in a package ``__init__`` is not run by importing a sibling submodule.

    ``from other.errors import E`` runs ``other/__init__``'s body but not its functions; only a
    module that reads the package's names (``from other import load``) depends on them.
    """
    _write(
        tmp_path,
        {
            "other/__init__.py": "def load():\n    from pkg.api import run\n    return run\n",
            "other/errors.py": "",
            "pkg/__init__.py": "",
            "pkg/api.py": "from pkg.core import run\n",
            "pkg/core.py": "from other.errors import E\ndef run():\n    return E\n",
        },
    )
    graph = import_graph(tmp_path, ["pkg", "other"])
    assert graph["pkg.core"] == {"other" + TOP_LEVEL, "other.errors"}
    assert describe_cycles(graph) == []
    (tmp_path / "pkg/core.py").write_text("from other import load\n", encoding="utf-8")
    cycles = describe_cycles(import_graph(tmp_path, ["pkg", "other"]))
    assert cycles == [
        "3 modules in a cycle, e.g. other -> pkg.api -> pkg.core -> other; "
        "all: ['other', 'pkg.api', 'pkg.core']"
    ]


def test_walker_resolves_relative_imports(tmp_path: Path) -> None:
    """``from . import x`` and ``from ..y import z`` name the same modules absolute imports do."""
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from . import sub\n",
            "pkg/sub/__init__.py": "from .leaf import f\n",
            "pkg/sub/leaf.py": "from ..tools import g\n",
            "pkg/tools.py": "",
        },
    )
    graph = import_graph(tmp_path, ["pkg"])
    assert graph["pkg"] == {"pkg.sub"}
    assert graph["pkg.sub"] == {"pkg.sub.leaf"}
    assert graph["pkg.sub.leaf"] == {"pkg.tools"}


def test_size_checks_list_every_violation(tmp_path: Path) -> None:
    """Both size checks name each offender (file, line, qualified name), not only the first."""
    long_body = "".join(f"    x{i} = {i}\n" for i in range(80))
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/big.py": "x = 1\n" * 501,
            "pkg/fns.py": (
                f"def f():\n{long_body}\nclass C:\n    def m(self):\n{indent(long_body, '    ')}"
            ),
        },
    )
    assert long_modules(tmp_path, ["pkg"], 500) == [f"{Path('pkg/big.py')}: 501 lines"]
    assert long_functions(tmp_path, ["pkg"], 80) == [
        f"{Path('pkg/fns.py')}:1 f: 81 lines",
        f"{Path('pkg/fns.py')}:84 C.m: 81 lines",
    ]
