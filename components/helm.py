"""Every Helm chart llmfleet installs goes through `pinned_release`, so they all behave alike.

A pinned chart version (an unpinned one changes under a later `pulumi up`), atomic installs and upgrades
(a failure rolls back instead of leaving a half-installed controller behind) and a timeout long enough
for the controllers' images to pull on a fresh node.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

DEFAULT_TIMEOUT_S = 600


def merge_values(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge `extra` into a copy of `base`: how a component's Helm values take the stack's overrides
    (the escape hatch), nested mappings merged key by key, anything else replaced."""
    merged = dict(base)
    for key, value in extra.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = merge_values(current, value)  # pyright: ignore[reportUnknownArgumentType]
        else:
            merged[key] = value
    return merged


def pinned_release(
    resource_name: str,
    *,
    chart: str,
    version: str,
    namespace: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
    repository: str | None = None,
    values: Mapping[str, Any] | None = None,
    release_name: str | None = None,
    create_namespace: bool | None = None,
    timeout_s: int = DEFAULT_TIMEOUT_S,
) -> k8s.helm.v3.Release:
    """A Helm release of `chart` at exactly `version` (an OCI chart: `chart` is its oci:// URL, no repository)."""
    if not version.strip() or version.strip() == "latest":
        raise ValueError(f"{resource_name}: chart {chart} needs a pinned version, got {version!r}")
    return k8s.helm.v3.Release(
        resource_name,
        k8s.helm.v3.ReleaseArgs(
            name=release_name,
            chart=chart,
            version=version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=repository) if repository else None,
            namespace=namespace,
            create_namespace=create_namespace,
            values=dict(values) if values is not None else None,
            timeout=timeout_s,
            atomic=True,
        ),
        opts=opts,
    )
