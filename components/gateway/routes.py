"""Where requests go: GatewayClass, the Envoy proxies, the HTTPS Gateway and the model route.

The AIGatewayRoute matches `x-ai-eg-model` (the AI Gateway fills it from the request body's `model`)
and sends each model to an AIServiceBackend -> Backend that points at the model's ClusterIP Service,
or to the model's InferencePool, whose endpoint picker chooses the replica (components/routing).
The AI Gateway turns the route into an HTTPRoute of the same name, which the traffic policy targets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from llmfleet.components.gateway.certificates import HTTP_LISTENER
from llmfleet.components.gateway.install import ENVOY_GATEWAY_NAMESPACE
from llmfleet.components.gateway.types import (
    INFERENCE_POOL_GROUP,
    INFERENCE_POOL_KIND,
    MODEL_HEADER,
    REVISION_HEADER,
    SHADOW_HEADER,
    TENANT_HEADER,
    TOTAL_TOKENS_KEY,
    ModelBackend,
    SplitBackend,
    Tls,
)

GATEWAY_API = "gateway.networking.k8s.io/v1"
ENVOY_GATEWAY_API = "gateway.envoyproxy.io/v1alpha1"
AI_GATEWAY_API = "aigateway.envoyproxy.io/v1beta1"
CONTROLLER_NAME = "gateway.envoyproxy.io/gatewayclass-controller"
HTTPS_PORT = 443
HTTP_PORT = 80
MAX_RULES_PER_ROUTE = 15
"""AIGatewayRoute.spec.rules maxItems in the CRD."""
BUFFER_LIMIT = "50Mi"
"""Envoy Gateway buffers 32 KiB by default, too little for long prompts (AI Gateway examples use 50Mi)."""
ENVOY_PROXY_LABEL = "gateway.envoyproxy.io/owning-gateway-name"
"""Label Envoy Gateway puts on the Envoy pods of a Gateway (NetworkPolicies select them by it)."""


@dataclass(frozen=True)
class Names:
    """Kubernetes names of one region's gateway objects, derived from the component name."""

    base: str

    @property
    def gateway(self) -> str:
        return self.base

    @property
    def route(self) -> str:
        """The AIGatewayRoute, and the HTTPRoute the AI Gateway generates from it."""
        return f"{self.base}-models"

    @property
    def envoy_service(self) -> str:
        return f"{self.base}-envoy"

    def backend(self, model: str, revision: str | None = None) -> str:
        """A model's Backend and AIServiceBackend; a canary revision's have the revision appended."""
        return f"{self.base}-{model}" + (f"-{revision}" if revision else "")

    @property
    def fallback(self) -> str:
        return f"{self.base}-fallback"

    @property
    def api_keys(self) -> str:
        return f"{self.base}-api-keys"

    @property
    def engine_key(self) -> str:
        """The BackendSecurityPolicy that gives the engines' key to their backends."""
        return f"{self.base}-engine-key"

    @property
    def https_redirect(self) -> str:
        """The port-80 listener's route that redirects to HTTPS."""
        return f"{self.base}-https-redirect"

    @property
    def health(self) -> str:
        """The unauthenticated health route and its Backend."""
        return f"{self.base}-health"


def ref(kind: str, name: str, group: str = "gateway.networking.k8s.io") -> dict[str, str]:
    return {"group": group, "kind": kind, "name": name}


def gateway_class_spec() -> dict[str, Any]:
    return {"controllerName": CONTROLLER_NAME}


def envoy_proxy_spec(names: Names, replicas: int) -> dict[str, Any]:
    """The Envoy fleet of this Gateway: a fixed Service name (so its address can be looked up) and replicas."""
    return {
        "provider": {
            "type": "Kubernetes",
            "kubernetes": {
                "envoyService": {"name": names.envoy_service, "type": "LoadBalancer"},
                "envoyDeployment": {"replicas": replicas},
            },
        }
    }


def listener_hostnames(hostname: str | None, region_hostname: str | None) -> list[str | None]:
    """One HTTPS listener per name the region answers on (both on the certificate); any name when none."""
    names = [h for h in (hostname, region_hostname) if h]
    return list(dict.fromkeys(names)) or [None]


def serving_listeners(tls: Tls, hostnames: Sequence[str | None]) -> list[str]:
    """Names of the listeners that serve the API (HTTPS, or plain HTTP when TLS is off), one per hostname."""
    return [tls.scheme if i == 0 else f"{tls.scheme}-{i}" for i in range(len(hostnames))]


def listener_refs(names: Names, listeners: Sequence[str]) -> list[dict[str, str]]:
    """The serving listeners by name, as an API route's parentRefs or the auth policy's targetRefs; never the
    port-80 listener (a route without sectionName would attach to every listener and serve the API over plain
    HTTP; auth on the whole Gateway would refuse the ACME server's unauthenticated challenge requests)."""
    return [{**ref("Gateway", names.gateway), "sectionName": listener} for listener in listeners]


def gateway_spec(names: Names, tls: Tls, hostnames: Sequence[str | None]) -> dict[str, Any]:
    """The serving listeners, plus (with TLS) a port-80 listener for ACME challenges and the HTTPS redirect."""
    listeners: list[dict[str, Any]] = []
    for listener_name, host in zip(serving_listeners(tls, hostnames), hostnames, strict=True):
        listener: dict[str, Any] = {
            "name": listener_name,
            "protocol": tls.scheme.upper(),
            "port": HTTPS_PORT if tls.secret_name else HTTP_PORT,
            "allowedRoutes": {"namespaces": {"from": "Same"}},
        }
        if tls.secret_name:
            certificate = {"kind": "Secret", "group": "", "name": tls.secret_name}
            listener["tls"] = {"mode": "Terminate", "certificateRefs": [certificate]}
        if host:
            listener["hostname"] = host
        listeners.append(listener)
    if tls.secret_name:
        # Any hostname: ACME servers fetch challenges for every name on the certificate here.
        plain = {"name": HTTP_LISTENER, "protocol": "HTTP", "port": HTTP_PORT}
        listeners.append({**plain, "allowedRoutes": {"namespaces": {"from": "Same"}}})
    return {
        "gatewayClassName": names.gateway,
        "listeners": listeners,
        "infrastructure": {
            "parametersRef": {"group": "gateway.envoyproxy.io", "kind": "EnvoyProxy", "name": names.gateway}
        },
    }


def gateway_annotations(tls: Tls) -> dict[str, str]:
    """cert-manager's Gateway support issues `tls.secret_name` for the listeners' hostnames."""
    return {"cert-manager.io/cluster-issuer": tls.cluster_issuer} if tls.cluster_issuer else {}


def client_traffic_policy_spec(names: Names) -> dict[str, Any]:
    """Drop a client-sent tenant header before auth sets it, so nobody spends another tenant's budget, and the
    shadow header, so no client reaches the shadow route (shadow.py)."""
    return {
        "targetRefs": [ref("Gateway", names.gateway)],
        "headers": {"earlyRequestHeaders": {"remove": [TENANT_HEADER, SHADOW_HEADER]}},
        "connection": {"bufferLimit": BUFFER_LIMIT},
    }


def service_endpoint(service_name: pulumi.Input[str], namespace: pulumi.Input[str], port: int) -> dict[str, Any]:
    """A Backend endpoint for a ClusterIP Service, by its cluster DNS name."""
    hostname = pulumi.Output.concat(service_name, ".", namespace, ".svc.cluster.local")
    return {"fqdn": {"hostname": hostname, "port": port}}


def backend_spec(service_name: pulumi.Input[str], namespace: pulumi.Input[str], port: int) -> dict[str, Any]:
    """An Envoy Gateway Backend for a ClusterIP Service (the AI Gateway's AIServiceBackend needs a Backend)."""
    return {"endpoints": [service_endpoint(service_name, namespace, port)]}


def ai_service_backend_spec(backend_name: str, schema: str = "OpenAI") -> dict[str, Any]:
    return {"schema": {"name": schema}, "backendRef": ref("Backend", backend_name, group="gateway.envoyproxy.io")}


def route_spec(
    names: Names,
    listeners: Sequence[str],
    models: Sequence[ModelBackend],
    request_timeout_s: int,
    fallback_models: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Model name -> its backend; models listed in `fallback_models` also get the hosted API at priority 1.

    A model with a canary also gets one rule per revision matching `x-llmfleet-revision` (two header
    matches outrank the weighted rule's one, whatever the order: Gateway API HTTPRoute match precedence):
    a rollout's gate judges the revision under test on its own samples, not diluted by the other
    revision's share of the traffic.
    """
    rules: list[dict[str, Any]] = []
    fallback_models = fallback_models or {}
    for backend in models:
        if backend.pool is not None and backend.model in fallback_models:
            raise ValueError(
                f"model {backend.model}: an AIGatewayRoute rule holds an InferencePool alone, so it cannot also "
                "fall back to the hosted API; serve it without a pool or without the fallback"
            )
        refs: list[dict[str, Any]] = [{"name": names.backend(backend.model), "priority": 0}]
        if backend.pool is not None and backend.canary is None:
            refs = [pool_ref(backend.pool)]
        elif backend.canary is not None:
            refs = canary_refs(names, backend)
        elif backend.split:
            # A GPU mix without a pool: each part by the weight of its capacity (same priority).
            refs = revision_refs(names, backend.model, None, backend.split, 1)
        if backend.model in fallback_models:
            refs.append({"name": names.fallback, "priority": 1, "modelNameOverride": fallback_models[backend.model]})
        rules.append(
            {
                "name": backend.model,
                "matches": [{"headers": [{"type": "Exact", "name": MODEL_HEADER, "value": backend.model}]}],
                "backendRefs": refs,
                # The AI Gateway's default is 60 s: far too short for long generations (streamed or not).
                "timeouts": {"request": f"{request_timeout_s}s"},
            }
        )
        rules += pinned_revision_rules(names, backend, request_timeout_s)
    if not models or len(rules) > MAX_RULES_PER_ROUTE:
        raise ValueError(
            f"a region's gateway routes 1 to {MAX_RULES_PER_ROUTE} rules (a model with a canary takes 3), "
            f"got {len(rules)} for {len(models)} models"
        )
    return {
        "parentRefs": listener_refs(names, listeners),
        "rules": rules,
        # Token counts land in metadata namespace io.envoy.ai_gateway, where the token limits read them.
        "llmRequestCosts": [
            {"metadataKey": "llm_input_token", "type": "InputToken"},
            {"metadataKey": "llm_output_token", "type": "OutputToken"},
            {"metadataKey": TOTAL_TOKENS_KEY, "type": "TotalToken"},
        ],
    }


def revision_refs(
    names: Names, model: str, revision: str | None, split: Sequence[SplitBackend], share: int, unit: int = 1
) -> list[dict[str, Any]]:
    """One revision's backendRefs carrying `share` of the model's requests: its Backend (weight share x unit), or,
    deployed as a GPU mix, each part's Backend weighted share x the part's share of the mix's capacity."""
    if not split:
        return [{"name": names.backend(model, revision), "priority": 0, "weight": share * unit}]
    return [
        {"name": names.backend(model, join(revision, part.part)), "priority": 0, "weight": share * part.weight}
        for part in split
    ]


def canary_refs(names: Names, backend: ModelBackend) -> list[dict[str, Any]]:
    """The weighted rule of a model with a canary: each revision by its weight (same priority; 0 takes no requests).

    A revision deployed as a GPU mix splits its share over its parts in proportion to their capacity, so both
    revisions' parts share one rule: the weights are products (revision percent x part percent), and a revision
    on one type counts 100 for its whole share. Without a mix they stay the revisions' percents.
    """
    canary = backend.canary
    assert canary is not None
    unit = 100 if backend.split or canary.split else 1
    return [
        *revision_refs(names, backend.model, None, backend.split, 100 - canary.weight, unit),
        *revision_refs(names, backend.model, canary.revision, canary.split, canary.weight, unit),
    ]


def join(*parts: str | None) -> str:
    """`a-b` of the parts given (a Backend's name suffix: revision, GPU mix part, or both)."""
    return "-".join(p for p in parts if p)


def model_backends(model: ModelBackend) -> list[tuple[str | None, pulumi.Input[str], int]]:
    """Every Backend the model's rules name, as (name suffix after the model, Service, port): the model's own; its
    GPU mix parts' where a rule weights them (no pool, or a canary beside it); the canary revision's, or its parts'."""
    found: list[tuple[str | None, pulumi.Input[str], int]] = [(None, model.service_name, model.port)]
    if model.pool is None or model.canary is not None:
        found += [(part.part, part.service_name, part.port) for part in model.split]
    canary = model.canary
    if canary is not None:
        found += [(join(canary.revision, p.part), p.service_name, p.port) for p in canary.split] or [
            (canary.revision, canary.service_name, canary.port)
        ]
    return found


def pool_ref(pool: str) -> dict[str, Any]:
    """A rule's only backendRef: the InferencePool (its endpoint picker chooses the replica)."""
    return {"group": INFERENCE_POOL_GROUP, "kind": INFERENCE_POOL_KIND, "name": pool}


def pinned_revision_rules(names: Names, backend: ModelBackend, request_timeout_s: int) -> list[dict[str, Any]]:
    """While `backend` has a canary: per revision, its model and revision headers -> its Backend only, or
    its own InferencePool when it has one (one pool per revision keeps the gate's requests on that revision)."""
    canary = backend.canary
    if canary is None:
        return []

    def target(revision: str | None, split: Sequence[SplitBackend], pool: str | None) -> list[dict[str, Any]]:
        # A GPU mix's pool selects both parts' pods; without a pool its parts are weighted by capacity.
        if pool is not None:
            return [pool_ref(pool)]
        if split:
            return revision_refs(names, backend.model, revision, split, 1)
        return [{"name": names.backend(backend.model, revision), "priority": 0}]

    pinned = [(canary.revision, target(canary.revision, canary.split, canary.pool))]
    if backend.revision is not None:
        pinned.insert(0, (backend.revision, target(None, backend.split, backend.pool)))
    return [
        {
            "name": f"{backend.model}-{revision}",
            "matches": [
                {
                    "headers": [
                        {"type": "Exact", "name": MODEL_HEADER, "value": backend.model},
                        {"type": "Exact", "name": REVISION_HEADER, "value": revision},
                    ]
                }
            ],
            "backendRefs": backend_refs,
            "timeouts": {"request": f"{request_timeout_s}s"},
        }
        for revision, backend_refs in pinned
    ]


def envoy_pod_selector(names: Names) -> tuple[str, dict[str, str]]:
    """(namespace, labels) of this Gateway's Envoy pods."""
    return ENVOY_GATEWAY_NAMESPACE, {ENVOY_PROXY_LABEL: names.gateway}
