"""The response cache's Kubernetes objects, per region: LiteLLM's proxy and a Redis of its own.

LiteLLM (its pinned image) runs with the proxy config and the pre-call hook that response_cache.py builds, both
files of one ConfigMap (LiteLLM imports a callback module from the config file's directory). Its Redis is not the
gateway's: that one holds the rate-limit counters, which must never be evicted, while a cache needs a size bound,
and Redis's maxmemory policy is per server. So the cache's Redis has `maxmemory` (the stack's max_memory_mb) and
`allkeys-lru`: once full, the least recently used entries go, whatever their TTL; it keeps nothing on disk (a
restart empties the cache, which only costs misses).

Secrets stay Pulumi secrets end to end: the cache's API key at the gateway, the Redis password and LiteLLM's
master key (which the gateway sends it) are random, each in a Secret read by LiteLLM as a secretKeyRef
environment variable (components/secrets.py; LiteLLM reads its config's `os.environ/<NAME>` references); Redis
reads the password from its config file, mounted from a Secret of its own.

Locked down like the other pods llmfleet writes (components/hardening.py). Traffic: only this Gateway's Envoy
pods reach LiteLLM (and Prometheus its /metrics, on the same port); LiteLLM reaches its Redis, the gateway (the
Envoy pods in the cluster, or the region's public name over HTTPS, which resolves to the gateway's load
balancer) and DNS; only LiteLLM reaches the Redis.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml

import llmfleet.components.gateway.response_cache as builder
from llmfleet.components import pins
from llmfleet.components.gateway.cache_routes import backend_name
from llmfleet.components.gateway.fallback import API_KEY_SECRET_KEY
from llmfleet.components.gateway.install import REDIS_CONFIG_KEY, REDIS_PORT, redis_server
from llmfleet.components.gateway.isolation import (
    DNS_NAMESPACE,
    NAMESPACE_LABEL,
    NOT_PUBLIC,
    PROMETHEUS_POD_LABELS,
)
from llmfleet.components.gateway.routes import Names, envoy_pod_selector, ref
from llmfleet.components.gateway.types import TENANT_HEADER, ResponseCache
from llmfleet.components.hardening import container_hardening, pod_hardening
from llmfleet.components.helm import merge_values
from llmfleet.components.secrets import secret_env
from llmfleet.components.sizing.cpu_pods import CACHE_REDIS_CPU, cache_redis_memory

LITELLM_IMAGE = pins.image("litellm")
LITELLM_PORT = builder.PORT
"""The proxy's port (the image's default); /metrics is served there too (LiteLLM's Prometheus callback)."""
PORT_NAME = "http"
LITELLM_UID = 65532
"""A uid with no account in the image: the proxy reads its files and writes only to /tmp (an emptyDir)."""
CONFIG_DIR = "/etc/litellm"
CONFIG_FILE = "config.yaml"
KEY_ROLE = "key"
"""The Secret `<gateway>-response-cache-key` (data key `key`): the cache's own API key at the gateway."""
PASSWORD_ROLE = "redis-password"
"""The Secret `<gateway>-response-cache-redis-password`: its Redis's password, for LiteLLM."""
COMPONENT_LABEL = "app.kubernetes.io/component"
CONFIG_ANNOTATION = "llmfleet.dev/config-sha256"
"""On LiteLLM's pod template: a digest of its config and hook, so a change rolls the pods (it reads them at start)."""


class _PlainDumper(yaml.SafeDumper):
    """Writes a mapping the builder shares between entries (a stale twin's headers) out each time, not as a YAML
    alias: the same file for LiteLLM, one a reader can follow."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


@dataclass(frozen=True)
class CacheTarget:
    """Where LiteLLM sends its misses: the gateway, as a client would call it."""

    base_url: str
    """The gateway's URL (https://<region name>, or its in-cluster Envoy Service on plain HTTP)."""
    models: Sequence[str]
    """The served names cached in this region."""
    timeout_s: int = 600
    """The gateway's request timeout: LiteLLM waits as long for a miss (a long generation)."""


LITELLM_SELECTOR = {"app.kubernetes.io/name": "litellm", COMPONENT_LABEL: "response-cache"}
"""Labels every region's LiteLLM pods and Service carry (its ServiceMonitor selects them)."""


def litellm_labels(names: Names) -> dict[str, str]:
    """Without `app.kubernetes.io/part-of: llmfleet`: a gateway may be given that as its inference pods' selector,
    and the model servers' NetworkPolicies would then cut LiteLLM off its Redis and its port."""
    return {**LITELLM_SELECTOR, "app.kubernetes.io/instance": backend_name(names)}


def redis_labels(names: Names) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "redis",
        "app.kubernetes.io/instance": redis_name(names),
        COMPONENT_LABEL: "response-cache",
    }


def master_key_secret(names: Names) -> str:
    """The Secret with LiteLLM's master key: the proxy requires it, the gateway sends it (cache_credentials_spec)."""
    return f"{backend_name(names)}-master-key"


def cache_credentials_spec(names: Names) -> dict[str, Any]:
    """The BackendSecurityPolicy giving the cache's AIServiceBackend LiteLLM's master key: the AI Gateway sends it as
    `Authorization: Bearer <key>` on every first pass (the client's own key was removed by the API-key policy)."""
    return {
        "targetRefs": [ref("AIServiceBackend", backend_name(names), group="aigateway.envoyproxy.io")],
        "type": "APIKey",
        "apiKey": {"secretRef": {"name": master_key_secret(names), "kind": "Secret", "group": ""}},
    }


def redis_name(names: Names) -> str:
    return f"{backend_name(names)}-redis"


def redis_config(password: str, cache: ResponseCache) -> str:
    """Redis's config file: password, size bound and eviction policy, nothing kept on disk."""
    return (
        f"requirepass {password}\n"
        f"maxmemory {cache.max_memory_mb}mb\n"
        "maxmemory-policy allkeys-lru\n"
        'save ""\n'
        "appendonly no\n"
    )


def settings(cache: ResponseCache, target: CacheTarget) -> builder.CacheSettings:
    return builder.CacheSettings(
        ttl_s=cache.ttl_s,
        stale_s=cache.stale_s,
        deterministic_only=cache.deterministic_only,
        opt_in_tenants=tuple(cache.opt_in_tenants),
        upstream_timeout_s=float(target.timeout_s),
    )


def proxy_config(cache: ResponseCache, target: CacheTarget) -> dict[str, Any]:
    """LiteLLM's config.yaml (response_cache.py's builder) with the stack's escape hatch merged in."""
    config = builder.litellm_config(
        settings(cache, target),
        [builder.CachedModel(m) for m in target.models],
        upstream_base_url=target.base_url.rstrip("/") + "/v1",
        tenant_header=TENANT_HEADER,
        internal_pass_header=TENANT_HEADER,
    )
    return merge_values(config, cache.config)


def deploy_cache(
    name: str,
    names: Names,
    namespace: pulumi.Input[str],
    cache: ResponseCache,
    target: CacheTarget,
    cache_key: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
    metrics_namespace: str | None = None,
) -> k8s.core.v1.Service:
    """The cache's Secret, Redis, LiteLLM config, Deployment, Service, PodDisruptionBudget (replicas > 1) and
    NetworkPolicies; returns LiteLLM's Service (the cache's Backend points at it)."""
    base = backend_name(names)
    password = random.RandomPassword(f"{name}-response-cache-redis-password", length=40, special=False, opts=opts)
    # Redis reads its password from its config file (never its environment or command line): a Secret of its own.
    redis_secret = k8s.core.v1.Secret(
        f"{name}-response-cache-redis-config",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=redis_name(names), namespace=namespace, labels=redis_labels(names)),
        type="Opaque",
        string_data={
            REDIS_CONFIG_KEY: pulumi.Output.secret(password.result).apply(lambda pw: redis_config(pw, cache)),
        },
        opts=opts,
    )
    redis_service = _redis(name, names, namespace, cache, redis_secret, opts)

    def secret(role: str, env_name: str, value: pulumi.Input[str]) -> k8s.core.v1.EnvVarArgs:
        metadata = k8s.meta.v1.ObjectMetaArgs(name=f"{base}-{role}", namespace=namespace, labels=litellm_labels(names))
        return secret_env(
            f"{name}-response-cache-{role}", metadata, env_name=env_name, data_key=role, value=value, opts=opts
        )

    master = random.RandomPassword(f"{name}-response-cache-master-key", length=48, special=False, opts=opts)
    metadata = k8s.meta.v1.ObjectMetaArgs(
        name=master_key_secret(names), namespace=namespace, labels=litellm_labels(names)
    )
    secrets = [
        secret(KEY_ROLE, builder.UPSTREAM_KEY_ENV, cache_key),
        secret(PASSWORD_ROLE, builder.REDIS_PASSWORD_ENV, password.result),
        # Under the key the gateway's BackendSecurityPolicy (APIKey) reads, which sends it to LiteLLM.
        secret_env(
            f"{name}-response-cache-master-key",
            metadata,
            env_name=builder.MASTER_KEY_ENV,
            data_key=API_KEY_SECRET_KEY,
            value=master.result,
            opts=opts,
        ),
    ]
    files = {
        CONFIG_FILE: yaml.dump(proxy_config(cache, target), Dumper=_PlainDumper, sort_keys=False),
        builder.HOOK_FILE: builder.hook_source(),
    }
    code = k8s.core.v1.ConfigMap(
        f"{name}-response-cache-config",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=base, namespace=namespace, labels=litellm_labels(names)),
        data=files,
        opts=opts,
    )
    redis_host = pulumi.Output.concat(redis_service.metadata.name, ".", namespace, ".svc.cluster.local")
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
    plain_env = builder.proxy_env(settings(cache, target), tenant_header=TENANT_HEADER)
    service = _litellm(name, names, namespace, cache, secrets, code, digest, redis_host, plain_env, opts)
    _policies(name, names, namespace, opts, metrics_namespace)
    return service


def _litellm(
    name: str,
    names: Names,
    namespace: pulumi.Input[str],
    cache: ResponseCache,
    secrets: Sequence[k8s.core.v1.EnvVarArgs],
    code: k8s.core.v1.ConfigMap,
    digest: str,
    redis_host: pulumi.Input[str],
    plain_env: Mapping[str, str],
    opts: pulumi.ResourceOptions,
) -> k8s.core.v1.Service:
    labels = litellm_labels(names)
    metadata = k8s.meta.v1.ObjectMetaArgs(name=backend_name(names), namespace=namespace, labels=labels)
    env = [
        *secrets,
        k8s.core.v1.EnvVarArgs(name=builder.REDIS_HOST_ENV, value=redis_host),
        k8s.core.v1.EnvVarArgs(name=builder.REDIS_PORT_ENV, value=str(REDIS_PORT)),
        *(k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in plain_env.items()),
        # Read-only root filesystem: Python writes no bytecode, and whatever else writes goes to /tmp.
        k8s.core.v1.EnvVarArgs(name="PYTHONDONTWRITEBYTECODE", value="1"),
        k8s.core.v1.EnvVarArgs(name="HOME", value="/tmp"),
    ]
    health = k8s.core.v1.HTTPGetActionArgs(path="/health/liveliness", port=LITELLM_PORT)
    ready = k8s.core.v1.HTTPGetActionArgs(path="/health/readiness", port=LITELLM_PORT)
    k8s.apps.v1.Deployment(
        f"{name}-response-cache",
        metadata=metadata,
        spec=k8s.apps.v1.DeploymentSpecArgs(
            replicas=cache.replicas,
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
            template=k8s.core.v1.PodTemplateSpecArgs(
                # A new config (models, TTL, hook) restarts the pods: LiteLLM reads its config at start only.
                metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels, annotations={CONFIG_ANNOTATION: digest}),
                spec=k8s.core.v1.PodSpecArgs(
                    **pod_hardening(LITELLM_UID),
                    volumes=[
                        k8s.core.v1.VolumeArgs(
                            name="config", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=code.metadata.name)
                        ),
                        k8s.core.v1.VolumeArgs(
                            name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="1Gi")
                        ),
                    ],
                    containers=[
                        k8s.core.v1.ContainerArgs(
                            name="litellm",
                            image=LITELLM_IMAGE,
                            # Arguments only: the image's entrypoint starts the proxy with them.
                            args=["--config", f"{CONFIG_DIR}/{CONFIG_FILE}", "--port", str(LITELLM_PORT)],
                            env=env,
                            ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=LITELLM_PORT)],
                            security_context=container_hardening(),
                            volume_mounts=[
                                k8s.core.v1.VolumeMountArgs(name="config", mount_path=CONFIG_DIR, read_only=True),
                                k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"),
                            ],
                            resources=k8s.core.v1.ResourceRequirementsArgs(
                                requests={"cpu": cache.cpu, "memory": cache.memory},
                                limits={"memory": cache.memory_limit},
                            ),
                            readiness_probe=k8s.core.v1.ProbeArgs(http_get=ready, period_seconds=10),
                            liveness_probe=k8s.core.v1.ProbeArgs(
                                http_get=health, period_seconds=15, failure_threshold=4, initial_delay_seconds=30
                            ),
                        )
                    ],
                ),
            ),
        ),
        opts=opts,
    )
    if cache.replicas > 1:
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-response-cache-pdb",
            metadata=metadata,
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                min_available=1, selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels)
            ),
            opts=opts,
        )
    return k8s.core.v1.Service(
        f"{name}-response-cache-service",
        metadata=metadata,
        spec=k8s.core.v1.ServiceSpecArgs(
            type="ClusterIP",
            selector=labels,
            ports=[k8s.core.v1.ServicePortArgs(name=PORT_NAME, port=LITELLM_PORT, target_port=LITELLM_PORT)],
        ),
        opts=opts,
    )


def _redis(
    name: str,
    names: Names,
    namespace: pulumi.Input[str],
    cache: ResponseCache,
    secret: k8s.core.v1.Secret,
    opts: pulumi.ResourceOptions,
) -> k8s.core.v1.Service:
    labels = redis_labels(names)
    metadata = k8s.meta.v1.ObjectMetaArgs(name=redis_name(names), namespace=namespace, labels=labels)
    memory = cache_redis_memory(cache.max_memory_mb)
    _, service = redis_server(
        f"{name}-response-cache-redis",
        metadata,
        labels,
        config_secret=secret.metadata.name,
        extra_args=[],
        requests={"cpu": CACHE_REDIS_CPU, "memory": memory},
        limits={"cpu": "1", "memory": memory},
        opts=opts,
    )
    return service


def _peer(namespace: str | None, labels: Mapping[str, str]) -> k8s.networking.v1.NetworkPolicyPeerArgs:
    """Pods with `labels` in `namespace` (None: the policy's own namespace)."""
    return k8s.networking.v1.NetworkPolicyPeerArgs(
        namespace_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={NAMESPACE_LABEL: namespace})
        if namespace is not None
        else None,
        pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(labels)),
    )


def _tcp(port: int) -> list[k8s.networking.v1.NetworkPolicyPortArgs]:
    return [k8s.networking.v1.NetworkPolicyPortArgs(port=port, protocol="TCP")]


def _policies(
    name: str,
    names: Names,
    namespace: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
    metrics_namespace: str | None,
) -> None:
    envoy = _peer(*envoy_pod_selector(names))
    litellm, redis = litellm_labels(names), redis_labels(names)
    ingress = [k8s.networking.v1.NetworkPolicyIngressRuleArgs(from_=[envoy], ports=_tcp(LITELLM_PORT))]
    if metrics_namespace is not None:
        prometheus = _peer(metrics_namespace, PROMETHEUS_POD_LABELS)
        ingress.append(k8s.networking.v1.NetworkPolicyIngressRuleArgs(from_=[prometheus], ports=_tcp(LITELLM_PORT)))
    dns = k8s.networking.v1.NetworkPolicyPeerArgs(
        namespace_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={NAMESPACE_LABEL: DNS_NAMESPACE})
    )
    public = k8s.networking.v1.NetworkPolicyPeerArgs(
        ip_block=k8s.networking.v1.IPBlockArgs(cidr="0.0.0.0/0", except_=list(NOT_PUBLIC))
    )
    egress = [
        k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=[_peer(None, redis)], ports=_tcp(REDIS_PORT)),
        # The Envoy pods on any port: Envoy Gateway maps a listener port below 1024 to another container port.
        k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=[envoy]),
        # The region's public name over HTTPS: the gateway's load balancer (TLS is checked against its name).
        k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=[public], ports=_tcp(443)),
        k8s.networking.v1.NetworkPolicyEgressRuleArgs(
            to=[dns], ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=53, protocol=p) for p in ("UDP", "TCP")]
        ),
    ]
    k8s.networking.v1.NetworkPolicy(
        f"{name}-response-cache-policy",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=backend_name(names), namespace=namespace),
        spec=k8s.networking.v1.NetworkPolicySpecArgs(
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=litellm),
            policy_types=["Ingress", "Egress"],
            ingress=ingress,
            egress=egress,
        ),
        opts=opts,
    )
    # Only LiteLLM reaches the cache's Redis, and the Redis opens nothing.
    k8s.networking.v1.NetworkPolicy(
        f"{name}-response-cache-redis-policy",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=redis_name(names), namespace=namespace),
        spec=k8s.networking.v1.NetworkPolicySpecArgs(
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=redis),
            policy_types=["Ingress", "Egress"],
            ingress=[
                k8s.networking.v1.NetworkPolicyIngressRuleArgs(from_=[_peer(None, litellm)], ports=_tcp(REDIS_PORT))
            ],
        ),
        opts=opts,
    )
