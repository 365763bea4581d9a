"""The one path open without credentials: the region's health, for the global load balancer's checkers.

DNS health checkers (Route 53, Cloud DNS) send no headers, so the path cannot sit behind the API-key
or JWT policy. `GET <health_path>` goes to the model servers' own `/health` (200 only while a model is
loaded and serving), so a 200 proves DNS, TLS, the gateway and an engine all work.

A region is healthy while ANY of its models serves: DNS moves whole regions, and a single model that
is down is the in-region fallback's business, not a reason to send every model's clients elsewhere.
So one Backend lists every model Service as an endpoint, and a failed attempt is retried on another:
as many retries as there are endpoints (Envoy Gateway adds the previous-hosts predicate to retries).
A route-level SecurityPolicy that allows everything replaces the Gateway's on this route only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi

from components.gateway.routes import Names, listener_refs, ref, service_endpoint
from components.gateway.types import ModelBackend
from components.inference.engine import HEALTH_PATH as ENGINE_HEALTH_PATH

HEALTH_TIMEOUT = "1800ms"
"""Whole request, retries included: Route 53 wants a 2xx/3xx within 2 s of connecting (Route 53
Developer Guide, "How Amazon Route 53 determines whether a health check is healthy")."""
ATTEMPT_TIMEOUT = "600ms"
"""One attempt: a hung server must leave time to try the next (an engine answers /health in milliseconds)."""


def backend_spec(models: Sequence[ModelBackend], namespace: pulumi.Input[str]) -> dict[str, Any]:
    """Every model Service of the region as one endpoint list (Envoy balances and retries across them)."""
    return {"endpoints": [service_endpoint(m.service_name, namespace, m.port) for m in models]}


def route_spec(names: Names, listeners: Sequence[str], path: str) -> dict[str, Any]:
    """`GET <path>` exactly -> the engines' own health endpoint, with a short timeout."""
    rule: dict[str, Any] = {
        "matches": [{"path": {"type": "Exact", "value": path}, "method": "GET"}],
        "backendRefs": [{"group": "gateway.envoyproxy.io", "kind": "Backend", "name": names.health}],
        "timeouts": {"request": HEALTH_TIMEOUT},
    }
    if path != ENGINE_HEALTH_PATH:
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


def traffic_policy_spec(names: Names, endpoints: int) -> dict[str, Any]:
    """Try every endpoint before answering unhealthy; no rate limit on the checkers."""
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
