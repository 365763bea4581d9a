"""`llmfleet`: the operator commands. Each subcommand lives in `infra/commands/<name>.py`.

A command's module is imported only when that command runs (or `--help` lists them all): `llmfleet
plan` is pure Python and must not pay for, or need, what `render` and `rollout` import (the Pulumi
SDK and its offline engine, the schema validator).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

COMMAND_MODULES = ["plan", "render", "loadtest", "rollout"]


class _CommandsOnDemand(TyperGroup):
    """Builds a command from its module when click asks for it by name. (`ctx` and the command are click's
    types, which typer vendors from 0.2x on: Any keeps this right for either.)"""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*COMMAND_MODULES, *(name for name in super().list_commands(ctx) if name not in COMMAND_MODULES)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in COMMAND_MODULES:
            return super().get_command(ctx, cmd_name)
        single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        importlib.import_module(f"llmfleet.infra.commands.{cmd_name}").register(single)
        return typer.main.get_command(single)


app = typer.Typer(
    name="llmfleet",
    cls=_CommandsOnDemand,
    help="Plan, render, load-test and roll out self-hosted LLM inference across regions and clouds.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


DISTRIBUTION = "llmfleet"


def installed_version() -> str:
    """The installed distribution's version (pyproject.toml's, as pip recorded it): no Pulumi import on this path."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a checkout that was never pip-installed
        return "unknown (not installed: pip install -e .)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"llmfleet {installed_version()}")
        raise typer.Exit()


@app.callback()
def _commands(
    _version: Annotated[
        bool,
        typer.Option("--version", help="Print the installed version and exit.", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    """Plan, render, load-test and roll out self-hosted LLM inference across regions and clouds."""
    # A callback keeps `llmfleet <command>` a command group whatever the number of commands registered.


def main() -> None:
    app()
