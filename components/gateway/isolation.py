"""Nothing reaches vLLM except through the gateway, and the model pods reach nothing but what they need.

Ingress to the model port is allowed from this Gateway's Envoy pods only, and the metrics scrape from
the Prometheus pods of the monitoring namespace (a pod labelled like Prometheus elsewhere gets nothing).
Egress from the model pods is DNS (kube-system) and HTTPS to public addresses (the weights download),
never the cloud's metadata service or other addresses inside the network. A cluster whose CNI enforces
NetworkPolicies (EKS with the VPC CNI network policy agent, GKE Dataplane V2, Calico, Cilium) then drops
everything else, including other workloads calling the ClusterIP Services.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_kubernetes as k8s

from llmfleet.components.gateway.routes import Names, envoy_pod_selector

PROMETHEUS_POD_LABELS = {"app.kubernetes.io/name": "prometheus"}
"""Label the Prometheus operator gives the Prometheus pods it runs."""
NAMESPACE_LABEL = "kubernetes.io/metadata.name"
"""Set by Kubernetes on every namespace (1.21+): selects a namespace by name."""
DNS_NAMESPACE = "kube-system"
"""CoreDNS (EKS) and kube-dns (GKE) run here."""
NOT_PUBLIC = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16")
"""Private, carrier-grade NAT and link-local ranges: the node's VPC, other pods and services, and the
instance metadata endpoints (169.254.169.254 on EC2 and GCE) that hold node credentials."""


def inference_ingress_policy(
    name: str,
    names: Names,
    namespace: pulumi.Input[str],
    pod_selector: Mapping[str, str],
    ports: list[int],
    opts: pulumi.ResourceOptions,
    metrics_namespace: str | None = None,
) -> k8s.networking.v1.NetworkPolicy:
    """Envoy pods of this Gateway, and Prometheus pods of `metrics_namespace` (None: no scrape), on `ports`."""
    envoy_namespace, envoy_labels = envoy_pod_selector(names)
    tcp = [k8s.networking.v1.NetworkPolicyPortArgs(port=port, protocol="TCP") for port in sorted(set(ports))]
    peers = [
        k8s.networking.v1.NetworkPolicyPeerArgs(
            namespace_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={NAMESPACE_LABEL: envoy_namespace}),
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=envoy_labels),
        )
    ]
    if metrics_namespace is not None:
        peers.append(
            k8s.networking.v1.NetworkPolicyPeerArgs(
                namespace_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={NAMESPACE_LABEL: metrics_namespace}),
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=PROMETHEUS_POD_LABELS),
            )
        )
    return k8s.networking.v1.NetworkPolicy(
        f"{name}-inference-ingress",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{names.base}-inference-ingress", namespace=namespace),
        spec=k8s.networking.v1.NetworkPolicySpecArgs(
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(pod_selector)),
            policy_types=["Ingress"],
            ingress=[k8s.networking.v1.NetworkPolicyIngressRuleArgs(from_=peers, ports=tcp)],
        ),
        opts=opts,
    )


def _dns_egress() -> k8s.networking.v1.NetworkPolicyEgressRuleArgs:
    return k8s.networking.v1.NetworkPolicyEgressRuleArgs(
        to=[
            k8s.networking.v1.NetworkPolicyPeerArgs(
                namespace_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={NAMESPACE_LABEL: DNS_NAMESPACE})
            )
        ],
        ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=53, protocol=protocol) for protocol in ("UDP", "TCP")],
    )


def _public_https_egress() -> k8s.networking.v1.NetworkPolicyEgressRuleArgs:
    return k8s.networking.v1.NetworkPolicyEgressRuleArgs(
        to=[
            k8s.networking.v1.NetworkPolicyPeerArgs(
                ip_block=k8s.networking.v1.IPBlockArgs(cidr="0.0.0.0/0", except_=list(NOT_PUBLIC))
            )
        ],
        ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=443, protocol="TCP")],
    )


def inference_egress_policy(
    name: str,
    names: Names,
    namespace: pulumi.Input[str],
    pod_selector: Mapping[str, str],
    opts: pulumi.ResourceOptions,
) -> k8s.networking.v1.NetworkPolicy:
    """What a model server may open: DNS in kube-system, and HTTPS to public addresses (HuggingFace and its
    CDN for the weights). Not the metadata service, not the VPC, not other pods."""
    return k8s.networking.v1.NetworkPolicy(
        f"{name}-inference-egress",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{names.base}-inference-egress", namespace=namespace),
        spec=k8s.networking.v1.NetworkPolicySpecArgs(
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(pod_selector)),
            policy_types=["Egress"],
            egress=[_dns_egress(), _public_https_egress()],
        ),
        opts=opts,
    )


def router_policy(
    name: str,
    names: Names,
    namespace: pulumi.Input[str],
    pod_selector: Mapping[str, str],
    grpc_port: int,
    metrics_port: int,
    opts: pulumi.ResourceOptions,
    metrics_namespace: str | None = None,
) -> k8s.networking.v1.NetworkPolicy:
    """The cascade's router (components/gateway/cascade.py): its ext_proc port from this Gateway's Envoy pods only,
    its metrics port from Prometheus; out, DNS and public HTTPS (it downloads its classifier models at start)."""
    envoy_namespace, envoy_labels = envoy_pod_selector(names)
    envoy = k8s.networking.v1.NetworkPolicyPeerArgs(
        namespace_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={NAMESPACE_LABEL: envoy_namespace}),
        pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=envoy_labels),
    )
    ingress = [
        k8s.networking.v1.NetworkPolicyIngressRuleArgs(
            from_=[envoy], ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=grpc_port, protocol="TCP")]
        )
    ]
    if metrics_namespace is not None:
        prometheus = k8s.networking.v1.NetworkPolicyPeerArgs(
            namespace_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={NAMESPACE_LABEL: metrics_namespace}),
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=PROMETHEUS_POD_LABELS),
        )
        ingress.append(
            k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                from_=[prometheus], ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=metrics_port, protocol="TCP")]
            )
        )
    return k8s.networking.v1.NetworkPolicy(
        f"{name}-router-isolation",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{names.base}-router", namespace=namespace),
        spec=k8s.networking.v1.NetworkPolicySpecArgs(
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(pod_selector)),
            policy_types=["Ingress", "Egress"],
            ingress=ingress,
            egress=[_dns_egress(), _public_https_egress()],
        ),
        opts=opts,
    )
