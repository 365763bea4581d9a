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
import pulumi_random as random

from llmfleet.components import pins
from llmfleet.components.gateway.types import INFERENCE_POOL_GROUP, INFERENCE_POOL_KIND
from llmfleet.components.hardening import container_hardening, pod_hardening
from llmfleet.components.helm import merge_values, pinned_release
from llmfleet.components.routing.pins import INFERENCE_CRDS_MANIFEST

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
REDIS_AUTH_SECRET = f"{REDIS_NAME}-auth"
"""Secret (Envoy Gateway's namespace) with Redis's password: Redis requires it, the rate-limit service sends it."""
REDIS_AUTH_KEY = "password"
REDIS_CONFIG_KEY = "redis.conf"
REDIS_CONFIG_DIR = "/etc/redis"
REDIS_UID = 65532
"""Any uid runs the image (its entrypoint drops privileges only when started as root) and Redis without
persistence writes only to /data (an emptyDir): a high uid matching no host account rather than the
image's `redis` (999), which can collide with a node's system users."""
RATELIMIT_POD_LABELS = {
    "app.kubernetes.io/name": "envoy-ratelimit",
    "app.kubernetes.io/component": "ratelimit",
    "app.kubernetes.io/managed-by": "envoy-gateway",
}
"""Labels Envoy Gateway gives its rate-limit pods (internal/infrastructure/kubernetes/ratelimit, rateLimitLabels)."""


def envoy_gateway_values(
    overrides: Mapping[str, Any] | None = None, *, inference_pools: bool = False
) -> dict[str, Any]:
    """Envoy Gateway chart values: AI Gateway extension hooks and the global rate limit backend; with
    `inference_pools`, InferencePool as a backend resource the extension server resolves (the AI
    Gateway's examples/inference-pool/envoy-gateway-values-addon.yaml)."""
    values: dict[str, Any] = {
        "config": {
            "envoyGateway": {
                "gateway": {"controllerName": "gateway.envoyproxy.io/gatewayclass-controller"},
                "logging": {"level": {"default": "info"}},
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
                # envoyproxy/ratelimit authenticates to Redis with REDIS_AUTH; Envoy Gateway merges this env
                # into the rate-limit container it renders (its defaults fill the rest of the deployment).
                "provider": {
                    "type": "Kubernetes",
                    "kubernetes": {
                        "rateLimitDeployment": {
                            "container": {
                                "env": [
                                    {
                                        "name": "REDIS_AUTH",
                                        "valueFrom": {
                                            "secretKeyRef": {"name": REDIS_AUTH_SECRET, "key": REDIS_AUTH_KEY}
                                        },
                                    }
                                ]
                            }
                        }
                    },
                },
            }
        }
    }
    if inference_pools:
        manager = values["config"]["envoyGateway"]["extensionManager"]
        manager["backendResources"] = [{"group": INFERENCE_POOL_GROUP, "kind": INFERENCE_POOL_KIND, "version": "v1"}]
    return merge_values(values, dict(overrides or {}))


@dataclass(frozen=True)
class Controllers:
    """What the gateway's objects must wait for (their CRDs and controllers)."""

    ready: list[pulumi.Resource]


def install_controllers(
    name: str,
    parent: pulumi.Resource,
    envoy_gateway_overrides: Mapping[str, Any] | None = None,
    *,
    inference_pools: bool = False,
) -> Controllers:
    """The controllers; with `inference_pools`, first the Gateway API Inference Extension CRDs (the pinned
    release's manifests.yaml: InferencePool v1), which Envoy Gateway then watches as a backend kind."""
    child = pulumi.ResourceOptions(parent=parent)
    crds: list[pulumi.Resource] = []
    if inference_pools:
        crds.append(k8s.yaml.v2.ConfigFile(f"{name}-inference-crds", file=INFERENCE_CRDS_MANIFEST, opts=child))
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
        values=envoy_gateway_values(envoy_gateway_overrides, inference_pools=inference_pools),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[*redis, *crds]),
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
    return Controllers(ready=[*crds, envoy_gateway, ai_crds, ai_gateway])


def _redis(name: str, namespace: k8s.core.v1.Namespace, child: pulumi.ResourceOptions) -> list[pulumi.Resource]:
    """A single Redis for the rate-limit counters, with a password, reachable only from the rate-limit service.

    Counters are short-lived (a minute's window): losing them on a restart briefly resets the
    budgets, which is why one replica without persistence is enough.
    """
    labels = {"app.kubernetes.io/name": REDIS_NAME, "app.kubernetes.io/part-of": "llmfleet"}
    metadata = k8s.meta.v1.ObjectMetaArgs(name=REDIS_NAME, namespace=namespace.metadata.name, labels=labels)
    password = random.RandomPassword(f"{name}-redis-password", length=40, special=False, opts=child)
    auth = k8s.core.v1.Secret(
        f"{name}-redis-auth",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=REDIS_AUTH_SECRET, namespace=namespace.metadata.name, labels=labels),
        type="Opaque",
        # The password for the rate-limit service (env REDIS_AUTH), and as Redis's config file for Redis, so it
        # reaches Redis as a mounted file: never in its environment or on its command line.
        string_data={
            REDIS_AUTH_KEY: pulumi.Output.secret(password.result),
            REDIS_CONFIG_KEY: pulumi.Output.secret(password.result).apply(lambda pw: f"requirepass {pw}\n"),
        },
        opts=child,
    )
    deployment, service = redis_server(
        f"{name}-redis",
        metadata,
        labels,
        config_secret=auth.metadata.name,
        extra_args=["--save", "", "--appendonly", "no"],
        requests={"cpu": "100m", "memory": "128Mi"},
        limits={"cpu": "1", "memory": "256Mi"},
        opts=child,
    )
    # Only the rate-limit service reaches Redis: not the internet-facing Envoy proxies beside it.
    policy = k8s.networking.v1.NetworkPolicy(
        f"{name}-redis-ingress",
        metadata=metadata,
        spec=k8s.networking.v1.NetworkPolicySpecArgs(
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
            policy_types=["Ingress"],
            ingress=[
                k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    from_=[
                        k8s.networking.v1.NetworkPolicyPeerArgs(
                            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=RATELIMIT_POD_LABELS)
                        )
                    ],
                    ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=REDIS_PORT, protocol="TCP")],
                )
            ],
        ),
        opts=child,
    )
    return [auth, deployment, service, policy]


def redis_server(
    resource_name: str,
    metadata: k8s.meta.v1.ObjectMetaArgs,
    labels: Mapping[str, str],
    *,
    config_secret: pulumi.Input[str],
    extra_args: list[str],
    requests: Mapping[str, str],
    limits: Mapping[str, str],
    opts: pulumi.ResourceOptions,
) -> tuple[k8s.apps.v1.Deployment, k8s.core.v1.Service]:
    """One Redis (`resource_name`, and its Service `<resource_name>-service`) of the pinned image, hardened, whose
    config file (password and any bounds) is REDIS_CONFIG_KEY of the Secret `config_secret`, mounted read-only:
    never in its environment or on its command line. Used by the rate-limit counters and the response cache."""
    config = k8s.core.v1.SecretVolumeSourceArgs(
        secret_name=config_secret,
        items=[k8s.core.v1.KeyToPathArgs(key=REDIS_CONFIG_KEY, path=REDIS_CONFIG_KEY)],
        default_mode=0o440,
    )
    port = k8s.core.v1.TCPSocketActionArgs(port=REDIS_PORT)
    deployment = k8s.apps.v1.Deployment(
        resource_name,
        metadata=metadata,
        spec=k8s.apps.v1.DeploymentSpecArgs(
            replicas=1,
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(labels)),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels=dict(labels)),
                spec=k8s.core.v1.PodSpecArgs(
                    # The image's redis user (its entrypoint drops privileges only when started as root); the
                    # config file (mode 0440) is group-readable by it through the fsGroup.
                    **pod_hardening(REDIS_UID),
                    volumes=[
                        k8s.core.v1.VolumeArgs(name="data", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
                        k8s.core.v1.VolumeArgs(name="config", secret=config),
                    ],
                    containers=[
                        k8s.core.v1.ContainerArgs(
                            name="redis",
                            image=REDIS_IMAGE,
                            # A first argument ending in .conf is Redis's config file (the image's entrypoint).
                            args=[f"{REDIS_CONFIG_DIR}/{REDIS_CONFIG_KEY}", *extra_args],
                            ports=[k8s.core.v1.ContainerPortArgs(name="redis", container_port=REDIS_PORT)],
                            security_context=container_hardening(),
                            volume_mounts=[
                                k8s.core.v1.VolumeMountArgs(name="data", mount_path="/data"),
                                k8s.core.v1.VolumeMountArgs(name="config", mount_path=REDIS_CONFIG_DIR, read_only=True),
                            ],
                            resources=k8s.core.v1.ResourceRequirementsArgs(
                                requests=dict(requests), limits=dict(limits)
                            ),
                            readiness_probe=k8s.core.v1.ProbeArgs(tcp_socket=port, period_seconds=5),
                            # A hung Redis stalls every request that needs it: restart it.
                            liveness_probe=k8s.core.v1.ProbeArgs(
                                tcp_socket=port, period_seconds=10, failure_threshold=3
                            ),
                        )
                    ],
                ),
            ),
        ),
        opts=opts,
    )
    service = k8s.core.v1.Service(
        f"{resource_name}-service",
        metadata=metadata,
        spec=k8s.core.v1.ServiceSpecArgs(
            type="ClusterIP",
            selector=dict(labels),
            ports=[k8s.core.v1.ServicePortArgs(name="redis", port=REDIS_PORT, target_port=REDIS_PORT)],
        ),
        opts=opts,
    )
    return deployment, service
