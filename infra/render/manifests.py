"""Rebuild Kubernetes manifests and Helm releases from resources the offline engine recorded.

pulumi-kubernetes registers every object (custom resources too) with the type token
`kubernetes:<apiVersion>:<Kind>` and its manifest fields as inputs, so the manifest is the inputs
plus the name Pulumi would autoname when the program gives none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from llmfleet.infra.render.offline import RecordedResource

HELM_TYPES = ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart")
NOT_OBJECTS = ("kubernetes:helm.sh/", "kubernetes:yaml/", "kubernetes:kustomize/")
"""Kubernetes package types that are not one object each (Helm, YAML and kustomize groups)."""


def api_version_kind(type_: str) -> tuple[str, str] | None:
    """`kubernetes:apps/v1:Deployment` -> ("apps/v1", "Deployment"); None for other types."""
    if not type_.startswith("kubernetes:") or type_.startswith(NOT_OBJECTS):
        return None
    _, group_version, kind = type_.split(":", 2)
    if kind.endswith(("Patch", "List")):
        return None
    return group_version.removeprefix("core/"), kind


def to_manifest(resource: RecordedResource, redacted: bool = True) -> dict[str, Any] | None:
    """The object a Kubernetes resource would apply; secret inputs "[secret]" unless redacted=False."""
    found = api_version_kind(resource.type)
    if found is None:
        return None
    inputs = resource.redacted_inputs() if redacted else resource.inputs
    metadata = dict(cast(dict[str, Any], inputs.get("metadata") or {}))
    if "name" not in metadata:
        autonamed = cast(dict[str, Any], resource.outputs.get("metadata") or {})
        metadata["name"] = autonamed.get("name", resource.name)
    manifest: dict[str, Any] = {"apiVersion": found[0], "kind": found[1], "metadata": metadata}
    manifest |= {k: v for k, v in inputs.items() if k not in manifest}
    return manifest


def to_helm_release(resource: RecordedResource, redacted: bool = True) -> dict[str, Any] | None:
    """{name, namespace, chart, repository, version, values} of a Helm Release (v3) or Chart (v4)."""
    if resource.type not in HELM_TYPES:
        return None
    inputs = resource.redacted_inputs() if redacted else resource.inputs
    repository_opts = cast(dict[str, Any], inputs.get("repositoryOpts") or {})
    chart, repository = inputs.get("chart"), repository_opts.get("repo")
    if isinstance(chart, str) and chart.startswith("oci://") and not repository:
        repository, chart = chart.rsplit("/", 1)  # an OCI chart is named by its URL: the registry path, then the chart
    return {
        "name": inputs.get("name") or resource.outputs.get("name") or resource.name,
        "namespace": inputs.get("namespace", "default"),
        "chart": chart,
        "repository": repository,
        "version": inputs.get("version"),
        "values": inputs.get("values") or {},
        "pulumiType": resource.type,
    }


def region_of(name: str, region_keys: list[str]) -> str | None:
    """The region key (`aws-us-east-1`) a resource belongs to by its Pulumi name's prefix, longest first."""
    for key in sorted(region_keys, key=len, reverse=True):
        if name == key or name.startswith(key + "-"):
            return key
    return None
