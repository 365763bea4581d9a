"""The gateway's controllers: Envoy Gateway, the AI Gateway (CRDs + controller) and Redis for global limits.

Versions are pinned together (components/pins.yaml): AI Gateway v1.1.0 is built against Envoy Gateway
v1.8.1 (its go.mod) and serves the aigateway.envoyproxy.io/v1beta1 kinds the routes use, including
named route rules (`rules[].name`, new in v1.1.0) (install order and versions as in the AI
Gateway getting-started steps, e.g. https://www.cnblogs.com/hugetong/p/21177182 and
https://aigateway.envoyproxy.io/docs/getting-started/). Envoy Gateway gets the values the AI Gateway
documents (manifests/envoy-gateway-values.yaml in envoyproxy/ai-gateway: extension manager hooks
pointing at the AI Gateway controller, Backend API on) plus the rate-limit Redis backend
(examples/token_ratelimit/envoy-gateway-values-addon.yaml).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import pins
from components.helm import pinned_release

ENVOY_GATEWAY_CHART = pins.chart("envoy-gateway").name
ENVOY_GATEWAY_VERSION = pins.chart("envoy-gateway").version
AI_GATEWAY_CRDS_CHART = pins.chart("ai-gateway-crds").name
AI_GATEWAY_CHART = pins.chart("ai-gateway").name
AI_GATEWAY_VERSION = pins.chart("ai-gateway").version

ENVOY_GATEWAY_NAMESPACE = "envoy-gateway-system"
"""Envoy Gateway's controller, its rate-limit service, Redis and the Envoy proxies run here."""
AI_GATEWAY_NAMESPACE = "envoy-ai-gateway-system"
AI_GATEWAY_EXTENSION_FQDN = f"ai-gateway-controller.{AI_GATEWAY_NAMESPACE}.svc.cluster.local"
AI_GATEWAY_EXTENSION_PORT = 1063

REDIS_IMAGE = pins.image("redis")
"""Pinned as in the AI Gateway token rate-limit example (redis.yaml)."""
REDIS_NAME = "ratelimit-redis"
REDIS_PORT = 6379
REDIS_URL = f"{REDIS_NAME}.{ENVOY_GATEWAY_NAMESPACE}.svc.cluster.local:{REDIS_PORT}"


def envoy_gateway_values(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Envoy Gateway chart values: AI Gateway extension hooks and the global rate limit backend."""
    values: dict[str, Any] = {
        "config": {
            "envoyGateway": {
                "gateway": {"controllerName": "gateway.envoyproxy.io/gatewayclass-controller"},
                "logging": {"level": {"default": "info"}},
                "provider": {"type": "Kubernetes"},
                "extensionApis": {"enableEnvoyPatchPolicy": True, "enableBackend": True},
                "extensionManager": {
                    "hooks": {
                        "xdsTranslator": {
                            "translation": {
                                "listener": {"includeAll": True},
                                "route": {"includeAll": True},
                                "cluster": {"includeAll": True},
                                "secret": {"includeAll": True},
                            },
                            "post": ["Translation", "Cluster", "Route"],
                        }
                    },
                    "service": {"fqdn": {"hostname": AI_GATEWAY_EXTENSION_FQDN, "port": AI_GATEWAY_EXTENSION_PORT}},
                },
                "rateLimit": {"backend": {"type": "Redis", "redis": {"url": REDIS_URL}}},
            }
        }
    }
    return _merge(values, dict(overrides or {}))


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `extra` into a copy of `base` (the Helm values escape hatch)."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)  # pyright: ignore[reportUnknownArgumentType]
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class Controllers:
    """What the gateway's objects must wait for (their CRDs and controllers)."""

    ready: list[pulumi.Resource]


def install_controllers(
    name: str, parent: pulumi.Resource, envoy_gateway_overrides: Mapping[str, Any] | None = None
) -> Controllers:
    child = pulumi.ResourceOptions(parent=parent)
    eg_namespace = k8s.core.v1.Namespace(
        f"{name}-eg-namespace", metadata=k8s.meta.v1.ObjectMetaArgs(name=ENVOY_GATEWAY_NAMESPACE), opts=child
    )
    ai_namespace = k8s.core.v1.Namespace(
        f"{name}-aigw-namespace", metadata=k8s.meta.v1.ObjectMetaArgs(name=AI_GATEWAY_NAMESPACE), opts=child
    )
    redis = _redis(name, eg_namespace, child)
    envoy_gateway = pinned_release(
        f"{name}-envoy-gateway",
        chart=ENVOY_GATEWAY_CHART,
        version=ENVOY_GATEWAY_VERSION,
        namespace=eg_namespace.metadata.name,
        values=envoy_gateway_values(envoy_gateway_overrides),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=redis),
    )
    ai_crds = pinned_release(
        f"{name}-ai-gateway-crds",
        chart=AI_GATEWAY_CRDS_CHART,
        version=AI_GATEWAY_VERSION,
        namespace=ai_namespace.metadata.name,
        opts=child,
    )
    ai_gateway = pinned_release(
        f"{name}-ai-gateway",
        chart=AI_GATEWAY_CHART,
        version=AI_GATEWAY_VERSION,
        namespace=ai_namespace.metadata.name,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[ai_crds, envoy_gateway]),
    )
    return Controllers(ready=[envoy_gateway, ai_crds, ai_gateway])


def _redis(name: str, namespace: k8s.core.v1.Namespace, child: pulumi.ResourceOptions) -> list[pulumi.Resource]:
    """A single Redis for the rate-limit counters, reachable only from its own namespace.

    Counters are short-lived (a minute's window): losing them on a restart briefly resets the
    budgets, which is why one replica without persistence is enough.
    """
    labels = {"app.kubernetes.io/name": REDIS_NAME, "app.kubernetes.io/part-of": "llmfleet"}
    metadata = k8s.meta.v1.ObjectMetaArgs(name=REDIS_NAME, namespace=namespace.metadata.name, labels=labels)
    deployment = k8s.apps.v1.Deployment(
        f"{name}-redis",
        metadata=metadata,
        spec=k8s.apps.v1.DeploymentSpecArgs(
            replicas=1,
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels),
                spec=k8s.core.v1.PodSpecArgs(
                    containers=[
                        k8s.core.v1.ContainerArgs(
                            name="redis",
                            image=REDIS_IMAGE,
                            args=["--save", "", "--appendonly", "no"],
                            ports=[k8s.core.v1.ContainerPortArgs(name="redis", container_port=REDIS_PORT)],
                            resources=k8s.core.v1.ResourceRequirementsArgs(
                                requests={"cpu": "100m", "memory": "128Mi"}, limits={"memory": "256Mi"}
                            ),
                            readiness_probe=k8s.core.v1.ProbeArgs(
                                tcp_socket=k8s.core.v1.TCPSocketActionArgs(port=REDIS_PORT), period_seconds=5
                            ),
                        )
                    ]
                ),
            ),
        ),
        opts=child,
    )
    service = k8s.core.v1.Service(
        f"{name}-redis-service",
        metadata=metadata,
        spec=k8s.core.v1.ServiceSpecArgs(
            type="ClusterIP",
            selector=labels,
            ports=[k8s.core.v1.ServicePortArgs(name="redis", port=REDIS_PORT, target_port=REDIS_PORT)],
        ),
        opts=child,
    )
    # Redis has no password here: only pods of Envoy Gateway's namespace (its rate-limit service) reach it.
    policy = k8s.networking.v1.NetworkPolicy(
        f"{name}-redis-ingress",
        metadata=metadata,
        spec=k8s.networking.v1.NetworkPolicySpecArgs(
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
            policy_types=["Ingress"],
            ingress=[
                k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    from_=[k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=k8s.meta.v1.LabelSelectorArgs())],
                    ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=REDIS_PORT, protocol="TCP")],
                )
            ],
        ),
        opts=child,
    )
    return [deployment, service, policy]
