"""`llmfleet`: the operator commands. Each subcommand lives in `infra/commands/<name>.py`."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

import typer

from infra.errors import USER_ERRORS

P = ParamSpec("P")
R = TypeVar("R")

EXIT_INVALID_INPUT = 2

app = typer.Typer(
    name="llmfleet",
    help="Plan, render, load-test and roll out self-hosted LLM inference across regions and clouds.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

COMMAND_MODULES = ["plan", "render", "loadtest", "rollout"]


@app.callback()
def _commands() -> None:
    """Plan, render, load-test and roll out self-hosted LLM inference across regions and clouds."""
    # A callback keeps `llmfleet <command>` a command group even while only one command is registered.


def user_errors_exit_2(fn: Callable[P, R]) -> Callable[P, R]:
    """Print invalid-input errors on stderr and exit 2 instead of showing a traceback."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(EXIT_INVALID_INPUT) from None

    return wrapper


for _module in COMMAND_MODULES:
    importlib.import_module(f"infra.commands.{_module}").register(app)


def main() -> None:
    app()
