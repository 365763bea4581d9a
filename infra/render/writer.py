"""Write an offline run to disk as `llmfleet render` does, validating every object on the way.

Layout of the output directory:
  DIR/<cloud>-<region>/<kind>-<name>.yaml    every Kubernetes object of the region (custom resources too)
  DIR/<cloud>-<region>/helmrelease-<name>.yaml  chart, repository, version, namespace and values
  DIR/global/...                             objects whose Pulumi name carries no region key
  DIR/resources.json                         every resource: type, name, urn, parent, provider, inputs
  DIR/outputs.json                           the stack outputs
Secrets are "[secret]" everywhere. Every object is validated (validate.py) and every Helm release's values
checked against its pinned chart (chart_values.py); the problems come back in the summary.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml

from llmfleet.infra.errors import UsageError
from llmfleet.infra.render.chart_values import values_problems
from llmfleet.infra.render.offline import REDACTED, OfflineRun
from llmfleet.infra.render.validate import is_custom_kind, validate_manifest

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
