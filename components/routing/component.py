"""`InferencePool`: one model revision's replicas as a Gateway API Inference Extension pool, with its picker.

The upstream `inferencepool` Helm chart (pinned) creates the InferencePool (named after the release,
selecting the service's pods on its port) and the endpoint picker that ranks those pods for every
request (components/routing/picker.py). The gateway's model rule then points at the pool instead of
the model's Service (components/gateway/routes.py), so Envoy asks the picker which pod gets each
request.

The picker reads every pod's `/metrics` on the model port (queue depth, KV-cache use), so it needs the
same way in as Prometheus: a NetworkPolicy here admits the picker's pods to the model port (policies
add up, so the gateway's own policy keeps admitting only Envoy and Prometheus otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from llmfleet.components.helm import merge_values, pinned_release
from llmfleet.components.inference import InferenceService
from llmfleet.components.routing.picker import PICKER_SELECTOR_LABEL, RoutingOptions, chart_values, picker_name
from llmfleet.components.routing.pins import INFERENCEPOOL_CHART, INFERENCEPOOL_CHART_VERSION


@dataclass
class InferencePoolArgs:
    service: InferenceService
    """The model revision to pool: its pods (by `pool_selector`: both parts of a GPU mix), port and namespace."""
    options: RoutingOptions = field(default_factory=RoutingOptions)
    monitoring: bool = True
    """Create the chart's ServiceMonitor for the picker's metrics (needs the Prometheus Operator CRDs)."""
    depends_on: Sequence[pulumi.Resource] = ()
    """What must exist first: the InferencePool CRD (installed with the gateway's controllers)."""


class InferencePool(pulumi.ComponentResource):
    pool_name: str
    """The InferencePool's name (the Helm release's), in the service's namespace."""
    picker_service: str
    """The endpoint picker's Service (gRPC ext_proc on 9002, metrics on 9090)."""
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: InferencePoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmfleet:routing:InferencePool", name, None, opts)
        service = args.service
        self.pool_name = service.pool_name  # a GPU mix: one pool for both parts (they share its selector)
        self.picker_service = picker_name(self.pool_name)
        options = args.options
        values = chart_values(
            pod_labels=service.pool_selector,
            port=service.port,
            weights=options.weights,
            picker_replicas=options.picker_replicas,
            monitoring=args.monitoring,
        )
        self.release = pinned_release(
            f"{name}-release",
            chart=INFERENCEPOOL_CHART,
            version=INFERENCEPOOL_CHART_VERSION,
            release_name=self.pool_name,
            namespace=service.namespace,
            values=merge_values(values, dict(options.chart_values or {})),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[service, *args.depends_on]),
        )
        self.picker_ingress = k8s.networking.v1.NetworkPolicy(
            f"{name}-picker-ingress",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{self.pool_name}-picker-scrape", namespace=service.namespace),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(service.pool_selector)),
                policy_types=["Ingress"],
                ingress=[
                    k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                        from_=[
                            k8s.networking.v1.NetworkPolicyPeerArgs(
                                pod_selector=k8s.meta.v1.LabelSelectorArgs(
                                    match_labels={PICKER_SELECTOR_LABEL: self.picker_service}
                                )
                            )
                        ],
                        ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=service.port, protocol="TCP")],
                    )
                ],
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"pool_name": self.pool_name, "picker_service": self.picker_service})
