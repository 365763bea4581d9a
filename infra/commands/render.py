"""`llmfleet render`: run the real program under the offline engine and write what it would create.

Layout of --out DIR:
  DIR/<cloud>-<region>/<kind>-<name>.yaml    every Kubernetes object of the region (custom resources too)
  DIR/<cloud>-<region>/helmrelease-<name>.yaml  chart, repository, version, namespace and values
  DIR/global/...                             objects whose Pulumi name carries no region key
  DIR/resources.json                         every resource: type, name, urn, parent, provider, inputs
  DIR/outputs.json                           the stack outputs
Secrets are "[secret]" everywhere. Every object is validated (infra/render/validate.py); problems are listed
on stderr and the exit code is 1. Invalid input (stack, options) exits 2; the program failing exits 1.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, cast

import typer
import yaml

from llmfleet.infra.commands.common import StackFileOption, StackOption, user_errors_exit_2
from llmfleet.infra.commands.progress import RenderProgress
from llmfleet.infra.config import load_stack
from llmfleet.infra.errors import UsageError
from llmfleet.infra.render.chart_values import values_problems
from llmfleet.infra.render.offline import REDACTED, OfflineProgramError, OfflineRun, run_program
from llmfleet.infra.render.validate import is_custom_kind, validate_manifest
from llmfleet.values import ExitCode

GLOBAL_DIR = "global"
INDEX_FILE = "resources.json"
OUTPUTS_FILE = "outputs.json"


@dataclass
class RenderSummary:
    objects: int = 0
    custom_resources: int = 0
    helm_releases: int = 0
    resources: int = 0
    regions: dict[str, int] = field(default_factory=dict[str, int])
    problems: list[str] = field(default_factory=list[str])


class _BlockDumper(yaml.CSafeDumper):
    """Multi-line strings (configs, scripts) as `|` blocks, so rendered files read like hand-written ones."""


def _represent_str(dumper: yaml.CSafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)  # pyright: ignore[reportUnknownMemberType]


_BlockDumper.add_representer(str, _represent_str)


def to_yaml(document: dict[str, Any]) -> str:
    """YAML with the top-level keys in the order given and nested keys sorted (stable, diffable renders)."""
    ordered = {key: _sorted(value) for key, value in document.items()}
    return yaml.dump(ordered, Dumper=_BlockDumper, sort_keys=False, default_flow_style=False, width=120)


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        items = cast(dict[str, Any], value)
        return {key: _sorted(items[key]) for key in sorted(items)}
    if isinstance(value, list):
        return [_sorted(item) for item in cast(list[Any], value)]
    return value


def check_out_dir(out: Path) -> None:
    """DIR must be new, empty or an earlier render: render never replaces a directory it did not write."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / INDEX_FILE).is_file():
        raise UsageError(f"--out {out}: not empty and not an earlier render (no {INDEX_FILE}); give a new directory")


def prepare_out_dir(out: Path) -> None:
    """Start from an empty DIR (an earlier render is removed)."""
    check_out_dir(out)
    if out.is_dir():
        shutil.rmtree(out)
    out.mkdir(parents=True)


def _unique(directory: Path, stem: str, namespace: str | None, pulumi_name: str) -> Path:
    """`<stem>.yaml`; the namespace, then the Pulumi name, disambiguate a clash."""
    for candidate in (stem, f"{stem}-{namespace}" if namespace else None, f"{stem}-{pulumi_name}"):
        if candidate and not (directory / f"{candidate}.yaml").exists():
            return directory / f"{candidate}.yaml"
    raise UsageError(f"two resources render to {directory / stem}.yaml; give them distinct Pulumi names")


def write_render(run: OfflineRun, out: Path) -> RenderSummary:
    """Write the tree described in the module docstring and validate every object; returns the counts."""
    prepare_out_dir(out)
    summary = RenderSummary(resources=len(run.resources))
    plain = {resource.urn: manifest for resource, manifest in run.kubernetes_objects(redacted=False)}
    for resource, manifest in run.kubernetes_objects():
        region = run.region_of(resource) or GLOBAL_DIR
        directory = out / region
        directory.mkdir(exist_ok=True)
        metadata: dict[str, Any] = manifest["metadata"]
        path = _unique(
            directory, f"{manifest['kind'].lower()}-{metadata['name']}", metadata.get("namespace"), resource.name
        )
        path.write_text(to_yaml(manifest))
        summary.objects += 1
        summary.custom_resources += is_custom_kind(manifest["apiVersion"], manifest["kind"])
        summary.regions[region] = summary.regions.get(region, 0) + 1
        summary.problems += validate_manifest(plain[resource.urn])
    plain_values = {resource.urn: release["values"] for resource, release in run.helm_releases(redacted=False)}
    for resource, release in run.helm_releases():
        region = run.region_of(resource) or GLOBAL_DIR
        directory = out / region
        directory.mkdir(exist_ok=True)
        path = _unique(directory, f"helmrelease-{release['name']}", release["namespace"], resource.name)
        path.write_text(to_yaml(release))
        chart, repository = release["chart"], release.get("repository") or ""
        chart = f"{repository}/{chart}" if repository.startswith("oci://") else chart  # the oci:// URL, as pinned
        summary.problems += [
            f"HelmRelease/{release['name']}: {problem}"
            for problem in values_problems(str(chart), str(release["version"]), plain_values[resource.urn])
        ]
        summary.helm_releases += 1
        summary.regions[region] = summary.regions.get(region, 0) + 1
    index = [
        {
            "type": r.type,
            "name": r.name,
            "urn": r.urn,
            "parent": r.parent,
            "provider": r.provider,
            "custom": r.custom,
            "region": run.region_of(r),
            "inputs": r.redacted_inputs(),
            "secretInputs": sorted(r.secret_fields),
        }
        for r in sorted(run.resources, key=lambda r: r.urn)
    ]
    (out / INDEX_FILE).write_text(json.dumps(_sorted(index), indent=2) + "\n")
    outputs = {k: REDACTED if k in run.secret_outputs else v for k, v in run.outputs.items()}
    (out / OUTPUTS_FILE).write_text(json.dumps(_sorted(outputs), indent=2) + "\n")
    return summary


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
