"""Lint and strict type checks run inside the test command, so CI enforces them.

pyright strict on components/ and infra/ checks every Pulumi argument against the provider SDKs'
types: a misspelt argument or a wrong enum value fails here, not at `pulumi up`.
"""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    found = BIN / name
    if found.exists():
        return str(found)
    on_path = shutil.which(name)
    assert on_path, f"{name} is not installed: pip install -e '.[dev]'"
    return on_path


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


def test_ruff_lint() -> None:
    result = _run(_tool("ruff"), "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = _run(_tool("ruff"), "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_pyright_strict() -> None:
    result = _run(_tool("pyright"), "--pythonpath", sys.executable)
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr
    assert "0 errors" in result.stdout, result.stdout[-5000:]
