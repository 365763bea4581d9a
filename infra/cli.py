"""`llmfleet`: the operator commands. Each subcommand lives in `infra/commands/<name>.py`."""

from __future__ import annotations

import importlib

import typer

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
    # A callback keeps `llmfleet <command>` a command group whatever the number of commands registered.


for _module in COMMAND_MODULES:
    importlib.import_module(f"infra.commands.{_module}").register(app)


def main() -> None:
    app()
