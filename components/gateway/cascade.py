"""The cheap-then-strong cascade: vLLM's semantic router (v0.3.0) as an Envoy external processor.

A client that sends `model: <auto model>` (e.g. `auto`) lets the router choose: it scores the prompt with its
`complexity` signal (embedding similarity to the `hard` and `easy` example prompts; above `threshold` the
prompt is `hard`, below minus it `easy`, else `medium`: pkg/classification/complexity_rule_scoring.go) and
rewrites the body's `model` to the strong model for the difficulties that escalate, to the cheap one otherwise
(two `routing.decisions`; the catch-all has confidence 0, so it never outranks the escalation:
pkg/decision/engine.go `evalAND`). Requests naming a model themselves pass unchanged
(pkg/config/helper.go `IsAutoModelName`).

The router must see the body before the AI Gateway's own ext_proc reads it (that filter extracts the model the
route matches on, and its upstream filter sends the body it captured: a later rewrite would be lost). At the
pinned releases the order comes from three objects (docs/patterns.md, "Cascade"):
- an EnvoyExtensionPolicy on the model route: the router's ext_proc, request body buffered;
- the EnvoyProxy's `filterOrder`: Envoy Gateway v1.8.1 moves every ext_proc it renders before the first
  buffer filter (internal/xds/translator/httpfilters.go `sortHTTPFilters`, `Before`);
- a `requestBuffer` on the model route's BackendTrafficPolicy, which puts the buffer filter in the listener
  (request_buffer.go); the AI Gateway v1.1.0 then inserts its ext_proc right after the last buffer filter
  (internal/extensionserver/post_translate_modify.go `insertAIGatewayExtProcFilter`).
Result: auth -> router -> buffer -> AI Gateway -> rate limit -> router.

The router runs from its pinned chart in the gateway's namespace. Pure values and specs here; the Gateway
component creates the objects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from llmfleet.components import pins
from llmfleet.components.gateway.routes import BUFFER_LIMIT, Names, ref
from llmfleet.components.gateway.types import MODEL_HEADER, Cascade
from llmfleet.components.helm import merge_values

ROUTER_CHART = pins.chart("semantic-router")
ROUTER_IMAGE = pins.image("semantic-router")
"""`<repository>:<tag>`, set as the chart's image.repository and image.tag."""
ROUTER_GRPC_PORT = 50051
"""The router's ext_proc (gRPC) port: the chart's service.grpc.port and its first listener."""
ROUTER_METRICS_PORT = 9190
"""The chart's service.metrics.port (the router's Prometheus metrics)."""
COMPLEXITY_SIGNAL = "llmfleet_difficulty"
"""The one `complexity` rule the router evaluates; decisions test `<it>:hard` / `<it>:medium`."""
STRONG_DECISION = "llmfleet-escalate"
CHEAP_DECISION = "llmfleet-default"
EXT_PROC_FILTER = "envoy.filters.http.ext_proc"
BUFFER_FILTER = "envoy.filters.http.buffer"
MESSAGE_TIMEOUT = "5s"
"""Longest the router may take on one request body (Envoy Gateway's default, 200 ms, is below an embedding
model's time on CPU for a long prompt); past it, `fail_open` decides."""
ROUTER_INSTALL_TIMEOUT_S = 1800
"""Helm waits this long for the router to be ready: it downloads its classifier models first (the chart's startup
probe allows 60 minutes; 30 covers a download of a few GB on a cloud node, and an atomic install rolls back after)."""
MODELS_DIR = "/app/models"
"""Where the router downloads its classifier models at start (the chart's models volume mount)."""
MODELS_VOLUME_LIMIT = "10Gi"
"""The chart's own persistence size for those models, as the emptyDir's bound."""


def router_release_name(names: Names) -> str:
    """The Helm release and its objects' full name: the router's Service is this name."""
    return f"{names.base}-router"


def router_pod_labels(names: Names) -> dict[str, str]:
    """The chart's selector labels of the router pods (templates/_helpers.tpl, `semantic-router.selectorLabels`)."""
    return {"app.kubernetes.io/instance": router_release_name(names), "app": "semantic-router"}


def router_config(cascade: Cascade) -> dict[str, Any]:
    """The router's configuration (chart value `config`), merged by Helm into the chart's default config.

    Lists replace the chart's (its placeholder model, its catch-all decision, its `general` domain signal);
    maps merge, so the chart's service defaults stay and only what the cascade needs is switched.
    """
    cheap, strong = cascade.cheap_model, cascade.strong_model
    escalate = [{"type": "complexity", "name": f"{COMPLEXITY_SIGNAL}:hard"}]
    if cascade.escalate_medium:
        escalate.append({"type": "complexity", "name": f"{COMPLEXITY_SIGNAL}:medium"})
    return {
        "providers": {
            "defaults": {"default_model": cheap},
            # Metadata-only provider models: Envoy and the AI Gateway route by the rewritten model name, the
            # router holds no endpoints (pkg/config/canonical_config.go accepts provider_model_id alone).
            "models": [{"name": m, "provider_model_id": m} for m in (cheap, strong)],
        },
        "routing": {
            "modelCards": [{"name": cheap}, {"name": strong}],
            "signals": {
                "domains": [],  # the chart's `general` domain would load the domain classifier for nothing
                "complexity": [
                    {
                        "name": COMPLEXITY_SIGNAL,
                        "threshold": cascade.threshold,
                        "description": "llmfleet cascade: prompts like `hard` go to the strong model",
                        "hard": {"candidates": list(cascade.hard_examples)},
                        "easy": {"candidates": list(cascade.easy_examples)},
                    }
                ],
            },
            "decisions": [
                {
                    "name": STRONG_DECISION,
                    "description": f"hard prompts to {strong}",
                    "priority": 200,
                    "rules": {"operator": "OR", "conditions": escalate},
                    "modelRefs": [{"model": strong, "use_reasoning": False}],
                },
                {
                    "name": CHEAP_DECISION,
                    "description": f"everything else to {cheap}",
                    "priority": 100,
                    "rules": {"operator": "AND", "conditions": []},
                    "modelRefs": [{"model": cheap, "use_reasoning": False}],
                },
            ],
        },
        "global": {
            "router": {"auto_model_name": cascade.auto_model, "strategy": "priority"},
            # Off: its key is the last user message only and ignores the model (docs/patterns.md, Response cache).
            "stores": {"semantic_cache": {"enabled": False}},
            "integrations": {"tools": {"enabled": False}},
        },
    }


def router_values(names: Names, cascade: Cascade) -> dict[str, Any]:
    """The semantic-router chart's values: the pinned image, sized requests, no PVC, no cluster RBAC."""
    values: dict[str, Any] = {
        "fullnameOverride": router_release_name(names),
        "replicaCount": cascade.replicas,
        "image": dict(zip(("repository", "tag"), ROUTER_IMAGE.rsplit(":", 1), strict=True)),
        "resources": {
            "requests": {"cpu": cascade.cpu, "memory": cascade.memory},
            "limits": {"memory": cascade.memory_limit},
        },
        # The chart's PVC asks for storage class `standard` (GKE has it, EKS has none by default) and, being
        # ReadWriteOnce, cannot serve two replicas on two nodes: each pod downloads its models into its own
        # bounded emptyDir instead (a start downloads them again).
        "persistence": {"enabled": False},
        "extraVolumes": [{"name": "models", "emptyDir": {"sizeLimit": MODELS_VOLUME_LIMIT}}],
        "extraVolumeMounts": [{"name": "models", "mountPath": MODELS_DIR}],
        # The ClusterRole reads the chart's IntelligentPool/Route CRDs, a config source llmfleet does not use.
        "rbac": {"create": False},
        # The image runs as root (tools/docker/Dockerfile.extproc sets no USER) and writes under /app: no
        # runAsNonRoot or read-only root without an image of our own; everything else is locked.
        "podSecurityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "toolsDb": [],
        "config": router_config(cascade),
    }
    return merge_values(values, cascade.values)


def extension_policy_spec(names: Names, cascade: Cascade) -> dict[str, Any]:
    """The router as ext_proc on the model route: request headers and body only (answers stream straight back).

    On the route, not the listeners: until the AI Gateway's filter has read the body and set `x-ai-eg-model`, a
    request matches the catch-all `route-not-found` rule the AI Gateway adds to the HTTPRoute it generates from
    the model route (v1.1.0 internal/controller/ai_gateway_route.go), and a route-level policy applies to every
    rule of that HTTPRoute. So the router sees the model requests, and not the health, redirect or other routes.
    """
    return {
        "targetRefs": [ref("HTTPRoute", names.route)],
        "extProc": [
            {
                "backendRefs": [
                    {"group": "", "kind": "Service", "name": router_release_name(names), "port": ROUTER_GRPC_PORT}
                ],
                "processingMode": {"request": {"body": "Buffered"}},
                "messageTimeout": MESSAGE_TIMEOUT,
                "failOpen": cascade.fail_open,
            }
        ],
    }


def filter_order() -> list[dict[str, str]]:
    """EnvoyProxy `filterOrder`: every ext_proc Envoy Gateway renders (the router's) before the buffer filter."""
    return [{"name": EXT_PROC_FILTER, "before": BUFFER_FILTER}]


def request_buffer() -> dict[str, Any]:
    """The model route's `requestBuffer`: what puts the buffer filter in the chain (same limit as connections)."""
    return {"limit": BUFFER_LIMIT}


def auto_rule(
    names: Names, rules: Sequence[Mapping[str, Any]], cascade: Cascade, request_timeout_s: int
) -> dict[str, Any]:
    """The route's rule for the auto model name: the cheap model's backends, told to serve the cheap model.

    While the router runs it has rewritten the body, so the request matches its chosen model's rule instead; this
    rule takes `auto` requests that reach the AI Gateway unrewritten (the router failed open, or timed out):
    they are served by the cheap model rather than refused with no matching rule. An InferencePool ignores
    `modelNameOverride` (AIGatewayRoute CRD), so a pooled cheap model is reached here through its Service's
    Backend, which the gateway always creates (round robin, without the endpoint picker).
    """
    [cheap] = [r for r in rules if r["name"] == cascade.cheap_model]
    refs = [dict(backend) for backend in cheap["backendRefs"]]
    if any("kind" in backend for backend in refs):  # a pool: alone in its rule
        refs = [{"name": names.backend(cascade.cheap_model), "priority": 0}]
    for backend in refs:
        # The hosted fallback's ref keeps its own override (the provider's model name).
        backend.setdefault("modelNameOverride", cascade.cheap_model)
    return {
        "name": f"{cascade.auto_model}-cascade",
        "matches": [{"headers": [{"type": "Exact", "name": MODEL_HEADER, "value": cascade.auto_model}]}],
        "backendRefs": refs,
        "timeouts": {"request": f"{request_timeout_s}s"},
    }
