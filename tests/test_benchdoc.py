"""tests/benchmarks/benchdoc.py: every benchmark script records its output in its own block of
docs/benchmarks.md with --write-docs, leaving the hand-written prose alone."""

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).parent / "benchmarks"
PAGE = Path(__file__).parents[1] / "docs" / "benchmarks.md"


def load_benchdoc() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchdoc", BENCHMARKS / "benchdoc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


benchdoc = load_benchdoc()


def test_every_script_writes_a_block_the_page_has() -> None:
    page = PAGE.read_text()
    scripts = sorted(BENCHMARKS.glob("bench_*.py"))
    assert len(scripts) >= 6
    for script in scripts:
        names = re.findall(r'benchdoc\.run\("([a-z-]+)", main\)', script.read_text())
        assert len(names) == 1, f"{script.name}: end with benchdoc.run(NAME, main)"
        assert page.count(f"<!-- bench:{names[0]} -->") == 1, f"{script.name}: no block {names[0]} in {PAGE.name}"
        assert page.count(f"<!-- /bench:{names[0]} -->") == 1


def test_only_the_block_is_replaced() -> None:
    page = (
        "intro\n<!-- bench:a -->\nold a\n<!-- /bench:a -->\nmiddle\n<!-- bench:b -->\nold b\n<!-- /bench:b -->\nend\n"
    )
    new = benchdoc.replace_section(page, "a", "new a\nline 2")
    assert new == page.replace("old a", "new a\nline 2")
    with pytest.raises(SystemExit, match="bench:c"):
        benchdoc.replace_section(page, "c", "x")


def test_write_docs_records_the_output_and_the_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = tmp_path / "docs" / "benchmarks.md"
    page.parent.mkdir()
    page.write_text("prose\n<!-- bench:demo -->\nnothing yet\n<!-- /bench:demo -->\nmore prose\n")
    monkeypatch.setattr(
        sys,
        "argv",
        [
            str(
                tmp_path / "tests" / "benchmarks" / "bench_demo.py",
            ),
            "--n",
            "3",
            "--write-docs",
        ],
    )
    seen: list[list[str]] = []

    def main() -> None:
        seen.append(list(sys.argv))
        print("figure: 42 ms")

    benchdoc.run("demo", main, page)
    text = page.read_text()
    assert seen == [[sys.argv[0], "--n", "3"]]  # the flag is the recorder's, not the script's
    assert text.startswith("prose\n<!-- bench:demo -->\n`.venv/bin/python tests/benchmarks/bench_demo.py --n 3`, ")
    assert "CPUs (" in text and "load average" in text and "UTC" in text
    assert "```text\nfigure: 42 ms\n```\n<!-- /bench:demo -->\nmore prose\n" in text


def test_without_the_flag_the_page_is_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text("<!-- bench:demo -->\nx\n<!-- /bench:demo -->\n")
    monkeypatch.setattr(sys, "argv", ["bench_demo.py"])
    benchdoc.run("demo", lambda: print("ran"), page)
    assert page.read_text() == "<!-- bench:demo -->\nx\n<!-- /bench:demo -->\n"
