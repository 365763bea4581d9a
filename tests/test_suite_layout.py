"""The test suite's own layout: test modules share code through tests/support/ only.

A test module importing another runs that module's fixtures and module-level setup twice under two
names, and conftest.py is pytest's to load. Parsed with ast, so nothing is imported here.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def shared_code_imports(tests: Path) -> list[str]:
    """`file:line module` of every import of a test module, conftest or `tests.<x>` under `tests`."""
    found: list[str] = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                first = module.split(".")[0]
                if first.startswith("test_") or first in ("conftest", "tests"):
                    found.append(f"{path.relative_to(tests)}:{node.lineno} {module}")
    return found


def test_test_modules_share_code_only_through_the_support_package() -> None:
    found = shared_code_imports(TESTS)
    assert found == [], "move what is shared to tests/support/ and import it from there:\n" + "\n".join(found)


def test_the_check_sees_such_imports(tmp_path: Path) -> None:
    (tmp_path / "test_a.py").write_text("from test_b import x\nimport conftest\n")
    (tmp_path / "test_c.py").write_text("from support.gateway import render\nfrom tests.support import stacks\n")
    assert shared_code_imports(tmp_path) == ["test_a.py:1 test_b", "test_a.py:2 conftest", "test_c.py:2 tests.support"]


def test_helpers_live_in_the_support_package() -> None:
    """tests/ holds test modules and conftest.py; a helper module beside them would be imported by its bare name."""
    helpers = [p.name for p in TESTS.glob("*.py") if not p.name.startswith("test_") and p.name != "conftest.py"]
    assert helpers == [], f"move {helpers} to tests/support/ (imported as support.<name>)"
