"""`Keda`: the KEDA operator (pinned Helm chart), which turns each ScaledObject into an HPA."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from llmfleet.components import pins
from llmfleet.components.helm import pinned_release

_PIN = pins.chart("keda")
CHART = _PIN.name
REPOSITORY = _PIN.repository
CHART_VERSION = _PIN.version
"""KEDA's chart versions follow its releases (components/pins.yaml). The ScaledObject fields the
services use (prometheus trigger, AverageValue, activationThreshold,
advanced.horizontalPodAutoscalerConfig) are validated against the CRD of the same release, vendored in
infra/render/crds/keda.sh_scaledobjects.yaml."""
NAMESPACE = "keda"


@dataclass
class KedaArgs:
    namespace: str = NAMESPACE
    """Namespace of the operator (created if missing)."""
    chart_version: str = CHART_VERSION
    """Pinned chart version; change it deliberately, with the vendored CRD."""
    values: Mapping[str, Any] = field(default_factory=dict[str, Any])
    """Escape hatch: Helm values passed to the chart as they are."""


class Keda(pulumi.ComponentResource):
    """KEDA in one cluster. Depend on this before creating ScaledObjects (their CRD comes with it)."""

    release: k8s.helm.v3.Release
    """The Helm release (pass the cluster's Kubernetes provider in opts.providers)."""

    def __init__(self, name: str, args: KedaArgs | None = None, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmfleet:keda:Keda", name, None, opts)
        args = args or KedaArgs()
        self.release = pinned_release(
            f"{name}-release",
            release_name="keda",
            chart=CHART,
            version=args.chart_version,
            repository=REPOSITORY,
            namespace=args.namespace,
            create_namespace=True,
            values=args.values,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"chart_version": args.chart_version, "namespace": args.namespace})
