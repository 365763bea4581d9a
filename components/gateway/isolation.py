"""Nothing reaches vLLM except through the gateway: a NetworkPolicy on the inference pods.

Ingress to the model port is allowed from this Gateway's Envoy pods only, and the metrics scrape
from Prometheus pods (any namespace, by the label kube-prometheus-stack gives them). A cluster whose
CNI enforces NetworkPolicies (EKS with the VPC CNI network policy agent, GKE Dataplane V2, Calico,
Cilium) then drops everything else, including other workloads calling the ClusterIP Services.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_kubernetes as k8s

from components.gateway.routes import Names, envoy_pod_selector

PROMETHEUS_POD_LABELS = {"app.kubernetes.io/name": "prometheus"}


def inference_ingress_policy(
    name: str,
    names: Names,
    namespace: pulumi.Input[str],
    pod_selector: Mapping[str, str],
    ports: list[int],
    opts: pulumi.ResourceOptions,
) -> k8s.networking.v1.NetworkPolicy:
    envoy_namespace, envoy_labels = envoy_pod_selector(names)
    tcp = [k8s.networking.v1.NetworkPolicyPortArgs(port=port, protocol="TCP") for port in sorted(set(ports))]
    return k8s.networking.v1.NetworkPolicy(
        f"{name}-inference-ingress",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{names.base}-inference-ingress", namespace=namespace),
        spec=k8s.networking.v1.NetworkPolicySpecArgs(
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(pod_selector)),
            policy_types=["Ingress"],
            ingress=[
                k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    from_=[
                        k8s.networking.v1.NetworkPolicyPeerArgs(
                            namespace_selector=k8s.meta.v1.LabelSelectorArgs(
                                match_labels={"kubernetes.io/metadata.name": envoy_namespace}
                            ),
                            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=envoy_labels),
                        ),
                        k8s.networking.v1.NetworkPolicyPeerArgs(
                            namespace_selector=k8s.meta.v1.LabelSelectorArgs(),
                            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=PROMETHEUS_POD_LABELS),
                        ),
                    ],
                    ports=tcp,
                )
            ],
        ),
        opts=opts,
    )
