"""The health prober's Kubernetes objects: its code, key, Deployment, Service and NetworkPolicy.

The prober (prober.py, standard library only) runs on the pinned Python image with its source mounted from a
ConfigMap, so there is no image to build. It calls the region's Envoy proxy through its in-cluster Service, so
its requests take the same path as a client's after the load balancer: TLS, auth, the AI Gateway's
processor, routing, the engine key, an engine. Locked down like the other pods llmfleet writes: a uid
matching no account, read-only root filesystem, every capability dropped, no privilege escalation, the
runtime's seccomp profile, no service-account token; it may talk only to the Envoy proxies and DNS, and only
the Envoy proxies may talk to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

from llmfleet.components import pins
from llmfleet.components.gateway.isolation import DNS_NAMESPACE, NAMESPACE_LABEL
from llmfleet.components.gateway.routes import Names, envoy_pod_selector
from llmfleet.components.hardening import container_hardening, pod_hardening

PROBER_IMAGE = pins.image("health-prober")
PROBER_SOURCE = Path(__file__).with_name("prober.py")
PROBER_PORT = 8080
PROBER_UID = 65532
"""A uid with no account in the image and no privileges (the Python image's default user is root)."""
PROBER_REPLICAS = 2
"""Two, so a drained or restarting prober does not turn a serving region unhealthy (the route retries the other)."""
CODE_DIR = "/app"
KEY_DIR = "/var/run/llmfleet/health-key"
KEY_FILE_KEY = "apiKey"
INTERVAL_S = 10
"""A probe round every 10 s: Route 53 checks every 30 s (10 s in fast mode), Cloud DNS every 5 s or more."""
TIMEOUT_S = 5
FRESH_S = 30
"""A model counts as serving while its last probe succeeded and its last success is at most this old."""


@dataclass(frozen=True)
class ProberTarget:
    url: str
    """The Envoy proxy's in-cluster URL (scheme, Service DNS name, port)."""
    host: str | None
    """Host and TLS server name of the serving listener (None: the listener takes any)."""
    models: Sequence[str]


def prober_labels(names: Names) -> dict[str, str]:
    return {"app.kubernetes.io/name": "llmfleet-health-prober", "app.kubernetes.io/instance": names.health}


def deploy_prober(
    name: str,
    names: Names,
    namespace: pulumi.Input[str],
    target: ProberTarget,
    key_secret: k8s.core.v1.Secret | None,
    opts: pulumi.ResourceOptions,
) -> k8s.core.v1.Service:
    """The prober's ConfigMap, Deployment, Service and NetworkPolicy; returns the Service the health route calls."""
    labels = prober_labels(names)
    metadata = k8s.meta.v1.ObjectMetaArgs(name=f"{names.health}-prober", namespace=namespace, labels=labels)
    code = k8s.core.v1.ConfigMap(
        f"{name}-health-prober-code", metadata=metadata, data={"prober.py": PROBER_SOURCE.read_text()}, opts=opts
    )
    env = [
        k8s.core.v1.EnvVarArgs(name="LLMFLEET_PROBE_TARGET", value=target.url),
        k8s.core.v1.EnvVarArgs(name="LLMFLEET_PROBE_MODELS", value=",".join(dict.fromkeys(target.models))),
        k8s.core.v1.EnvVarArgs(name="LLMFLEET_PROBE_INTERVAL_S", value=str(INTERVAL_S)),
        k8s.core.v1.EnvVarArgs(name="LLMFLEET_PROBE_TIMEOUT_S", value=str(TIMEOUT_S)),
        k8s.core.v1.EnvVarArgs(name="LLMFLEET_PROBE_FRESH_S", value=str(FRESH_S)),
        k8s.core.v1.EnvVarArgs(name="LLMFLEET_PROBE_PORT", value=str(PROBER_PORT)),
        k8s.core.v1.EnvVarArgs(name="PYTHONDONTWRITEBYTECODE", value="1"),  # read-only root filesystem
    ]
    if target.host:
        env.append(k8s.core.v1.EnvVarArgs(name="LLMFLEET_PROBE_HOST", value=target.host))
    volumes = [
        k8s.core.v1.VolumeArgs(name="code", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=code.metadata.name))
    ]
    mounts = [k8s.core.v1.VolumeMountArgs(name="code", mount_path=CODE_DIR, read_only=True)]
    if key_secret is not None:
        # A mounted file, not an environment variable: the key never shows in the pod spec or the process list.
        env.append(k8s.core.v1.EnvVarArgs(name="LLMFLEET_PROBE_KEY_FILE", value=f"{KEY_DIR}/{KEY_FILE_KEY}"))
        secret = k8s.core.v1.SecretVolumeSourceArgs(secret_name=key_secret.metadata.name, default_mode=0o440)
        volumes.append(k8s.core.v1.VolumeArgs(name="health-key", secret=secret))
        mounts.append(k8s.core.v1.VolumeMountArgs(name="health-key", mount_path=KEY_DIR, read_only=True))
    port_probe = k8s.core.v1.TCPSocketActionArgs(port=PROBER_PORT)
    k8s.apps.v1.Deployment(
        f"{name}-health-prober",
        metadata=metadata,
        spec=k8s.apps.v1.DeploymentSpecArgs(
            replicas=PROBER_REPLICAS,
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels),
                spec=k8s.core.v1.PodSpecArgs(
                    **pod_hardening(PROBER_UID),  # the key file (mode 0440) is group-readable through the fsGroup
                    volumes=volumes,
                    containers=[
                        k8s.core.v1.ContainerArgs(
                            name="prober",
                            image=PROBER_IMAGE,
                            command=["python", f"{CODE_DIR}/prober.py"],
                            env=env,
                            ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=PROBER_PORT)],
                            security_context=container_hardening(),
                            volume_mounts=mounts,
                            resources=k8s.core.v1.ResourceRequirementsArgs(
                                requests={"cpu": "50m", "memory": "64Mi"}, limits={"cpu": "500m", "memory": "128Mi"}
                            ),
                            # The port, not /health: a prober reporting the region down must stay in the Service,
                            # or Envoy would answer 503 itself and the reason would be lost.
                            readiness_probe=k8s.core.v1.ProbeArgs(tcp_socket=port_probe, period_seconds=5),
                            liveness_probe=k8s.core.v1.ProbeArgs(
                                tcp_socket=port_probe, period_seconds=10, failure_threshold=3
                            ),
                        )
                    ],
                ),
            ),
        ),
        opts=opts,
    )
    service = k8s.core.v1.Service(
        f"{name}-health-prober-service",
        metadata=metadata,
        spec=k8s.core.v1.ServiceSpecArgs(
            type="ClusterIP",
            selector=labels,
            ports=[k8s.core.v1.ServicePortArgs(name="http", port=PROBER_PORT, target_port=PROBER_PORT)],
        ),
        opts=opts,
    )
    _network_policy(name, names, namespace, labels, opts)
    return service


def _network_policy(
    name: str, names: Names, namespace: pulumi.Input[str], labels: dict[str, str], opts: pulumi.ResourceOptions
) -> k8s.networking.v1.NetworkPolicy:
    """In: this Gateway's Envoy proxies on the prober's port. Out: those proxies (any port: Envoy Gateway maps a
    listener port below 1024 to a different container port) and DNS."""
    envoy_namespace, envoy_labels = envoy_pod_selector(names)
    envoy = k8s.networking.v1.NetworkPolicyPeerArgs(
        namespace_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={NAMESPACE_LABEL: envoy_namespace}),
        pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=envoy_labels),
    )
    dns = k8s.networking.v1.NetworkPolicyPeerArgs(
        namespace_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={NAMESPACE_LABEL: DNS_NAMESPACE})
    )
    return k8s.networking.v1.NetworkPolicy(
        f"{name}-health-prober-policy",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{names.health}-prober", namespace=namespace),
        spec=k8s.networking.v1.NetworkPolicySpecArgs(
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
            policy_types=["Ingress", "Egress"],
            ingress=[
                k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    from_=[envoy], ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=PROBER_PORT, protocol="TCP")]
                )
            ],
            egress=[
                k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=[envoy]),
                k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                    to=[dns],
                    ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=53, protocol=p) for p in ("UDP", "TCP")],
                ),
            ],
        ),
        opts=opts,
    )
