"""The one path open without credentials: the region's health, for the global load balancer's checkers.

DNS health checkers (Route 53, Cloud DNS) send a bare GET with no headers, so the path cannot sit behind
the API-key or JWT policy, and the AI Gateway does not process a bodiless GET. So `GET <health_path>` goes
to the region's health prober (prober.py, deployed by prober_deploy.py), which sends a real one-token chat
completion of every served model through this Gateway's proxy with the gateway's own health key, and
answers 200 only while all of them succeeded recently: a 200 proves DNS, TLS, the proxy, auth, the AI
Gateway's processor and routing, the engine key and every model's engine.

The health key is a client of the API-key policy like a tenant, named HEALTH_CLIENT, and held to no budget
(limits.py leaves it out). JWT gateways have no key the prober could hold, and closed gateways serve nobody:
there the route still goes from Envoy straight to the engines' own `/health` (docs/security.md), where a
region is healthy while ANY of its models serves, one Backend listing every model Service as an endpoint.

A route-level SecurityPolicy that allows everything replaces the Gateway's on this route only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi

from llmfleet.components.gateway.routes import Names, listener_refs, ref, service_endpoint
from llmfleet.components.gateway.types import ModelBackend
from llmfleet.components.inference.engine import HEALTH_PATH as ENGINE_HEALTH_PATH

HEALTH_CLIENT = "llmfleet-health"
"""The prober's client id at the API-key policy (so no tenant may take this name)."""
HEALTH_TIMEOUT = "1800ms"
"""Whole request, retries included: Route 53 wants a 2xx/3xx within 2 s of connecting (Route 53
Developer Guide, "How Amazon Route 53 determines whether a health check is healthy")."""
ATTEMPT_TIMEOUT = "600ms"
"""One attempt: a hung server must leave time to try the next (an engine answers /health in milliseconds)."""


def backend_spec(models: Sequence[ModelBackend], namespace: pulumi.Input[str]) -> dict[str, Any]:
    """Every model Service of the region (both parts of a GPU mix) as one endpoint list (Envoy balances and retries
    across them)."""
    targets = [t for m in models for t in ([(p.service_name, p.port) for p in m.split] or [(m.service_name, m.port)])]
    return {"endpoints": [service_endpoint(service, namespace, port) for service, port in targets]}


def route_spec(
    names: Names, listeners: Sequence[str], path: str, prober: tuple[str, int] | None = None
) -> dict[str, Any]:
    """`GET <path>` exactly -> the prober Service `(name, port)`'s `/health`, or (None) the engines' own, with a
    short timeout."""
    backend: dict[str, Any] = {"group": "gateway.envoyproxy.io", "kind": "Backend", "name": names.health}
    if prober is not None:
        backend = {"group": "", "kind": "Service", "name": prober[0], "port": prober[1]}
    rule: dict[str, Any] = {
        "matches": [{"path": {"type": "Exact", "value": path}, "method": "GET"}],
        "backendRefs": [backend],
        "timeouts": {"request": HEALTH_TIMEOUT},
    }
    if path != ENGINE_HEALTH_PATH:  # the prober answers on the same path as the engines
        rule["filters"] = [
            {
                "type": "URLRewrite",
                "urlRewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": ENGINE_HEALTH_PATH}},
            }
        ]
    return {"parentRefs": listener_refs(names, listeners), "rules": [rule]}


def security_policy_spec(names: Names) -> dict[str, Any]:
    """No credentials on the health route (route-level policies replace the Gateway-level one)."""
    return {"targetRefs": [ref("HTTPRoute", names.health)], "authorization": {"defaultAction": "Allow"}}


def traffic_policy_spec(names: Names, endpoints: int, prober: bool = False) -> dict[str, Any]:
    """Try every endpoint before answering unhealthy; no rate limit on the checkers. A prober's 503 is its
    verdict, not a failed attempt: only connection failures are retried on the other replica."""
    if prober:
        return {
            "targetRefs": [ref("HTTPRoute", names.health)],
            "retry": {
                "numRetries": max(endpoints - 1, 1),
                "perRetry": {"timeout": ATTEMPT_TIMEOUT},
                "retryOn": {"triggers": ["connect-failure", "reset"]},
            },
        }
    return {
        "targetRefs": [ref("HTTPRoute", names.health)],
        "retry": {
            "numRetries": max(endpoints - 1, 1),
            "perRetry": {"timeout": ATTEMPT_TIMEOUT},
            "retryOn": {
                "triggers": ["connect-failure", "reset", "retriable-status-codes"],
                "httpStatusCodes": [500, 502, 503, 504],
            },
        },
    }
