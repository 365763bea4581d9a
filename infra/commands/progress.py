"""What a person at a terminal sees while a long command runs, and how wide the CLI's tables are.

Progress goes to stderr, only when stderr is a terminal and not in CI: piped, redirected or in CI the
commands print exactly what they printed before (their stdout and files are the contract; a spinner in a
CI log is noise). Tables are as wide as the terminal, or COLUMNS, or PIPED_WIDTH when nothing says.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from llmfleet.infra.render.manifests import region_of

PIPED_WIDTH = 120
"""Table width when stdout is not a terminal and COLUMNS is unset: readable in a log or a pager."""
GLOBAL = "global"
"""Where a resource whose name carries no region key is counted (render's directory of the same name)."""


def in_ci() -> bool:
    """CI=true (GitHub Actions, GitLab, CircleCI, Buildkite... all set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def interactive(stream: TextIO | None = None) -> bool:
    """A person is watching `stream` (default stderr): a terminal, not a dumb one, not CI."""
    target: TextIO | None = stream if stream is not None else sys.stderr
    try:
        tty = target is not None and target.isatty()
    except (AttributeError, ValueError):  # a closed or file-like stream without a descriptor
        tty = False
    return tty and not in_ci() and os.environ.get("TERM") != "dumb"


def output_width() -> int | None:
    """Width for tables on stdout: None (rich asks the terminal, or reads COLUMNS) on a terminal or with
    COLUMNS set; PIPED_WIDTH otherwise, not rich's 80 and not a fixed 200 that a pipe or a log would wrap."""
    columns = os.environ.get("COLUMNS", "").strip()
    if interactive(sys.stdout) or (columns.isdigit() and int(columns) > 0):
        return None
    return PIPED_WIDTH


def stdout_console() -> Console:
    return Console(width=output_width())


class RenderProgress:
    """Resources registered so far, per region, then the phase render is in; a no-op without a console.

    `resource()` is called from the Pulumi mocks' worker threads: it only counts under a lock, and the
    spinner's refresh thread reads the counts.
    """

    def __init__(self, console: Console | None, region_keys: Sequence[str]) -> None:
        self._keys = list(region_keys)
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._phase = "running the program offline"
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if console is not None:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=console,
                transient=True,  # gone when render ends: what remains is render's own output
                refresh_per_second=4,
            )

    @classmethod
    def for_stderr(cls, region_keys: Sequence[str]) -> RenderProgress:
        return cls(Console(stderr=True) if interactive() else None, region_keys)

    def __enter__(self) -> RenderProgress:
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task(self.describe())
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def resource(self, name: str) -> None:
        region = region_of(name, self._keys) or GLOBAL
        with self._lock:
            self._counts[region] = self._counts.get(region, 0) + 1
        self._refresh()

    def phase(self, text: str) -> None:
        self._phase = text
        self._refresh()

    def describe(self) -> str:
        """`running the program offline: 412 resources (aws-us-east-1 180, gcp-us-central1 170, global 62)`."""
        with self._lock:
            counts = dict(self._counts)
        total = sum(counts.values())
        per_region = ", ".join(f"{region} {n}" for region, n in sorted(counts.items()))
        return f"{self._phase}: {total} resources" + (f" ({per_region})" if per_region else "")

    def _refresh(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=self.describe())


ResourceListener = Callable[[str], None]
"""Called with each resource's Pulumi name as the offline engine registers it."""
