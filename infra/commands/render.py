"""`llmfleet render`: run the real program under the offline engine and write what it would create.

The tree written to --out is infra/render/writer.py's. Secrets are "[secret]" everywhere. Every object is
validated (infra/render/validate.py); problems are listed on stderr and the exit code is 1. Invalid input
(stack, options) exits 2; the program failing exits 1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from llmfleet.infra.commands.common import StackFileOption, StackOption, user_errors_exit_2
from llmfleet.infra.commands.progress import RenderProgress
from llmfleet.infra.config import load_stack
from llmfleet.infra.render.offline import OfflineProgramError, run_program
from llmfleet.infra.render.writer import INDEX_FILE, check_out_dir, write_render
from llmfleet.values import ExitCode


def register(app: typer.Typer) -> None:
    @app.command("render")
    @user_errors_exit_2
    def render(
        out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write (new, empty or an earlier render).")],
        stack: StackOption = None,
        stack_file: StackFileOption = None,
    ) -> None:
        """Run the program offline (Pulumi mocks, no cloud) and write every object it would create, validated."""
        check_out_dir(out)  # before the program runs, so a wrong --out fails at once
        spec = load_stack(stack, stack_file)[1]
        for warning in spec.warnings():
            print(f"warning: {warning}", file=sys.stderr)
        try:
            # A spinner with the resources registered so far, per region, on a terminal only (stderr);
            # gone when it ends, so what render prints is the same on a terminal, piped and in CI.
            with RenderProgress.for_stderr([region.key for region in spec.regions]) as progress:
                run = run_program(stack, stack_file, on_resource=progress.resource)
                progress.phase("writing files and validating every object")
                summary = write_render(run, out)
        except OfflineProgramError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(ExitCode.FAILED) from None
        regions = ", ".join(f"{region} {count}" for region, count in sorted(summary.regions.items()))
        typer.echo(
            f"rendered stack {run.stack} to {out}: {summary.objects} Kubernetes objects "
            f"({summary.custom_resources} custom resources), {summary.helm_releases} Helm releases, "
            f"{summary.resources} resources in {INDEX_FILE} [{regions}]"
        )
        if summary.problems:
            print(f"{len(summary.problems)} schema problems:", file=sys.stderr)
            for problem in summary.problems:
                print(f"  {problem}", file=sys.stderr)
            raise typer.Exit(ExitCode.FAILED)
        typer.echo(
            f"all {summary.objects} objects valid (core kinds: Kubernetes schemas; custom: vendored CRDs) "
            f"and the values of {summary.helm_releases} Helm releases known to their pinned charts"
        )
