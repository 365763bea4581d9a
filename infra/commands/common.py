"""What every `llmfleet` command shares: bad input exits 2 (`ExitCode.USAGE`) and the stack-selection options.

Kept apart from infra/cli.py, which imports every command module, so a command (or a test) can import
these without importing the whole CLI first.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer

from llmfleet.infra.errors import USER_ERRORS
from llmfleet.values import ExitCode

P = ParamSpec("P")
R = TypeVar("R")

StackOption = Annotated[str | None, typer.Option("--stack", "-s", help="Stack name (stacks/Pulumi.<name>.yaml).")]
StackFileOption = Annotated[
    Path | None, typer.Option("--stack-file", help="Path to a stack file instead of a stack name.")
]


def user_errors_exit_2(fn: Callable[P, R]) -> Callable[P, R]:
    """Print invalid-input errors on stderr and exit 2 instead of showing a traceback."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(ExitCode.USAGE) from None

    return wrapper
