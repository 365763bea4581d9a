"""One way for every benchmark script to record its figures in docs/benchmarks.md.

    .venv/bin/python tests/benchmarks/bench_plan.py --write-docs [its own options]

Each script ends with `benchdoc.run("plan", main)`. Without `--write-docs` that is just `main()`. With
it, everything the script prints still goes to the terminal and is also kept; when the script finishes,
the block between `<!-- bench:plan -->` and `<!-- /bench:plan -->` in docs/benchmarks.md is replaced by
the command as run, the date, the machine (CPU model and count, load average before and after: on a
shared machine that decides what the figures mean) and the output, verbatim. The prose around the
markers (what is measured, how to read it) is written by hand and left alone.
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

PAGE = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
FLAG = "--write-docs"


class _Tee(io.TextIOBase):
    """Writes to the terminal and keeps a copy."""

    def __init__(self, terminal: TextIO) -> None:
        self.terminal, self.kept = terminal, io.StringIO()

    def write(self, text: str) -> int:
        self.terminal.write(text)
        return self.kept.write(text)

    def flush(self) -> None:
        self.terminal.flush()


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def section(name: str, command: str, output: str, started: float, load_before: float, load_after: float) -> str:
    """The generated block for one benchmark (between its markers)."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started))
    machine = (
        f"{os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}, "
        f"load average {load_before:.2f} before and {load_after:.2f} after"
    )
    return f"`{command}`, {when}; {machine}:\n\n```text\n{output.rstrip()}\n```"


def replace_section(page: str, name: str, block: str) -> str:
    """`page` with the text between bench:`name`'s markers replaced by `block`."""
    pattern = re.compile(rf"(<!-- bench:{re.escape(name)} -->\n).*?(\n<!-- /bench:{re.escape(name)} -->)", re.S)
    if not pattern.search(page):
        raise SystemExit(f"{PAGE}: no <!-- bench:{name} --> ... <!-- /bench:{name} --> markers; add them first")
    return pattern.sub(lambda m: m.group(1) + block + m.group(2), page, count=1)


def run(name: str, main: Callable[[], object], page: Path = PAGE) -> None:
    """Run a benchmark's `main`; with --write-docs, record what it printed in its section of the page."""
    if FLAG not in sys.argv:
        main()
        return
    sys.argv.remove(FLAG)
    command = " ".join([".venv/bin/python", os.path.relpath(sys.argv[0], page.parents[1]), *sys.argv[1:]])
    started, load_before = time.time(), os.getloadavg()[0]
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        main()
    block = section(name, command, tee.kept.getvalue(), started, load_before, os.getloadavg()[0])
    page.write_text(replace_section(page.read_text(), name, block))
    print(f"wrote the {name} section of {page}")
