"""The import graph runs one way: the layers in the folders, checked on the source (issue 17).

    llmfleet.values       the shared vocabulary (Slo, ExitCode): imports nothing of ours
    components/           Pulumi components and the pure sizing layer: never infra or loadtests
    loadtests/            Locust suites and the SLO gate: take values, never infra
    queueworker/          the queue's worker image: nothing of ours
    infra/                the program, the stack schema, the commands: may import all of the above

Each module is parsed (ast), not imported. Imports under `if TYPE_CHECKING:` are left out (they never
run); imports inside functions count (they run, only later). `from package import name` is an edge to
`package.name` when that is a module, else to `package`. A failure names the offending edge and where.
"""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "llmfleet"
FOLDERS = ("components", "infra", "loadtests", "queueworker")
"""Top-level folders linked as llmfleet.<folder>; their short names must never be imported."""

SCHEMA_MAY_IMPORT = (
    "llmfleet.components.sizing",
    "llmfleet.components.queue.types",
    "llmfleet.components.traffic.regions",
)
"""The stack schema's only imports from components: pure value types and limits it validates fields against
(no Pulumi in them). Component args are built in infra/program/args.py."""


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    where: str
    """file:line of the import."""

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} ({self.where})"


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for the real files under the package (llmfleet/*.py) and the linked folders."""
    found: dict[str, Path] = {}
    files = [p for p in (root / PACKAGE).glob("*.py") if not p.is_symlink()]
    for folder in FOLDERS:
        if (root / folder).is_dir():
            files += sorted((root / folder).rglob("*.py"))
    for path in files:
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[0] != PACKAGE:
            parts.insert(0, PACKAGE)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement outside `if TYPE_CHECKING:` blocks (their `else:` branches do run)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def _in_function(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    yield inner


def _imported_names(name: str, node: ast.Import | ast.ImportFrom, is_package: bool) -> list[str]:
    """The dotted names an import statement asks for (relative imports made absolute)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        anchor = name.split(".") if is_package else name.split(".")[:-1]
        anchor = anchor[: len(anchor) - node.level + 1]
        base = ".".join([*anchor, *([base] if base else [])])
    return [f"{base}.{alias.name}" if alias.name != "*" else base for alias in node.names]


def _ours(dotted: str, known: dict[str, Path]) -> str | None:
    """The module of ours that `dotted` names (a module, or a name inside one); None: not ours."""
    while dotted and dotted not in known:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


@dataclass(frozen=True)
class Graph:
    edges: list[Edge]
    short_names: list[Edge]
    """Imports of `components.x`, `infra.x`, ...: the module would load a second time under that name."""
    hidden_in_functions: list[Edge]


def import_graph(root: Path) -> Graph:
    known = modules(root)
    edges: list[Edge] = []
    short: list[Edge] = []
    hidden: list[Edge] = []
    for name, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        in_function = {id(node) for node in _in_function(tree)}
        for node in _runtime_imports(tree):
            where = f"{path.relative_to(root)}:{node.lineno}"
            for dotted in _imported_names(name, node, is_package):
                if dotted.split(".")[0] in FOLDERS:
                    short.append(Edge(name, dotted, where))
                    continue
                target = _ours(dotted, known)
                if target is None or target == name:
                    continue
                edge = Edge(name, target, where)
                if edge in edges:  # `from a import b, c` with b and c names in one module: one edge
                    continue
                edges.append(edge)
                if id(node) in in_function:
                    hidden.append(edge)
    return Graph(edges, short, hidden)


def cycle(edges: list[Edge]) -> list[str] | None:
    """One import cycle (its modules in order, the first repeated at the end), or None."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None


def _inside(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_violations(graph: Graph) -> list[str]:
    """Every edge against the layers, as `rule: source -> target (file:line)`."""
    rules: list[tuple[str, str, tuple[str, ...]]] = [
        ("llmfleet.values imports nothing of ours", "llmfleet.values", ("llmfleet",)),
        ("loadtests never imports infra", "llmfleet.loadtests", ("llmfleet.infra",)),
        ("components never import infra or loadtests", "llmfleet.components", ("llmfleet.infra", "llmfleet.loadtests")),
        ("queueworker imports nothing of ours", "llmfleet.queueworker", ("llmfleet",)),
    ]
    found: list[str] = []
    for edge in graph.edges:
        for rule, source, banned in rules:
            outside = not _inside(edge.target, source)  # a layer's modules may import each other
            if _inside(edge.source, source) and outside and any(_inside(edge.target, b) for b in banned):
                found.append(f"{rule}: {edge}")
        schema = _inside(edge.source, "llmfleet.infra.schema") or edge.source == "llmfleet.infra.config"
        if (
            schema
            and _inside(edge.target, "llmfleet.components")
            and not any(_inside(edge.target, allowed) for allowed in SCHEMA_MAY_IMPORT)
        ):
            found.append(f"the stack schema builds no component args (infra/program/args.py does): {edge}")
    found += [f"import by the installed name (llmfleet.{e.target}): {e}" for e in graph.short_names]
    found += [
        f"the stack schema hides no import in a function: {e}"
        for e in graph.hidden_in_functions
        if _inside(e.source, "llmfleet.infra.schema")
    ]
    return found


@pytest.fixture(scope="module")
def graph() -> Graph:
    return import_graph(ROOT)


def test_the_graph_covers_every_layer(graph: Graph) -> None:
    sources = {edge.source for edge in graph.edges}
    for layer in ("llmfleet.components", "llmfleet.infra", "llmfleet.loadtests"):
        assert any(_inside(s, layer) for s in sources), f"no import found from {layer}: is the walk broken?"
    assert any(edge.target == "llmfleet.values" for edge in graph.edges), "nothing imports llmfleet.values"


def test_no_import_cycles(graph: Graph) -> None:
    found = cycle(graph.edges)
    if found:
        involved = [str(e) for e in graph.edges if e.source in found and e.target in found]
        pytest.fail("import cycle: " + " -> ".join(found) + "\n  " + "\n  ".join(involved))


def test_imports_follow_the_layers(graph: Graph) -> None:
    problems = layer_violations(graph)
    assert not problems, "\n".join(problems)


def _tree(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checks_catch_what_they_forbid(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "llmfleet/__init__.py": "",
            "llmfleet/values.py": "from llmfleet.infra import config\n",
            "infra/__init__.py": "",
            "infra/config.py": "from llmfleet.infra.schema import obs\n",
            "infra/schema/__init__.py": "",
            "infra/schema/obs.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from llmfleet.components.x import Args\n"
                "def to_args():\n    from llmfleet.infra.config import KEY\n"
                "    from llmfleet.components.x import Args\n"
            ),
            "loadtests/__init__.py": "",
            "loadtests/gate.py": "from . import run\nfrom llmfleet.infra.config import load_stack\n",
            "loadtests/run.py": "import components.x\n",
            "components/__init__.py": "",
            "components/x.py": "from llmfleet.components import y\n",
            "components/y.py": "from ..loadtests import run\n",
            "queueworker/__init__.py": "import llmfleet.values\n",
        },
    )
    graph = import_graph(root)
    assert cycle(graph.edges) in (
        ["llmfleet.infra.config", "llmfleet.infra.schema.obs", "llmfleet.infra.config"],
        ["llmfleet.infra.schema.obs", "llmfleet.infra.config", "llmfleet.infra.schema.obs"],
    )
    problems = "\n".join(layer_violations(graph))
    for expected in (
        "llmfleet.values imports nothing of ours: llmfleet.values -> llmfleet.infra.config (llmfleet/values.py:1)",
        "loadtests never imports infra: llmfleet.loadtests.gate -> llmfleet.infra.config (loadtests/gate.py:2)",
        "components never import infra or loadtests: llmfleet.components.y -> llmfleet.loadtests.run",
        "queueworker imports nothing of ours: llmfleet.queueworker -> llmfleet.values",
        "builds no component args (infra/program/args.py does): llmfleet.infra.schema.obs -> llmfleet.components.x "
        "(infra/schema/obs.py:6)",
        "hides no import in a function: llmfleet.infra.schema.obs -> llmfleet.infra.config (infra/schema/obs.py:5)",
        "import by the installed name (llmfleet.components.x): llmfleet.loadtests.run -> components.x",
    ):
        assert expected in problems, f"not caught: {expected}\n{problems}"
    assert "obs.py:3" not in problems, "a TYPE_CHECKING import never runs"
    assert "llmfleet.loadtests.gate -> llmfleet.loadtests.run" in [str(e).split(" (")[0] for e in graph.edges]
    assert "llmfleet.components.x -> llmfleet.components.y" in [str(e).split(" (")[0] for e in graph.edges]
