"""What to fall back to: a hosted API at priority 1 behind a region's own backends (only when enabled).

Envoy sends requests to priority 0 (the region's vLLM) while it is healthy. A failed attempt
(connection refused, reset, 5xx) is retried, and after NUM_ATTEMPTS_PER_PRIORITY attempts the
retry moves to priority 1, the hosted API, with the served model name replaced by the provider's
(`modelNameOverride`). Passive health checks eject failing endpoints so later requests go straight to
the fallback (pattern of the AI Gateway's examples/provider_fallback).

Both providers are reached through their OpenAI-compatible Chat Completions API (schema OpenAI), the
API the gateway's clients speak: OpenAI natively, Anthropic at https://api.anthropic.com/v1/ with the
key as a bearer token (Anthropic's "OpenAI SDK compatibility" documentation). The key is injected by
a BackendSecurityPolicy from a Secret; clients never see it.
"""

from __future__ import annotations

from typing import Any

import pulumi

from llmfleet.components.gateway.routes import Names, ref
from llmfleet.components.gateway.types import FallbackProvider

PROVIDER_HOSTS: dict[FallbackProvider, str] = {
    FallbackProvider.OPENAI: "api.openai.com",
    FallbackProvider.ANTHROPIC: "api.anthropic.com",
}
API_KEY_SECRET_KEY = "apiKey"
"""BackendSecurityPolicy.apiKey.secretRef: the Secret's key must be `apiKey` (CRD description)."""
NUM_RETRIES = 2
NUM_ATTEMPTS_PER_PRIORITY = 2
"""One retry on the region's own backends, then the hosted API."""
RETRY_STATUS_CODES = [500, 502, 503, 504]


def backend_spec(provider: FallbackProvider) -> dict[str, Any]:
    """The provider's public endpoint over TLS, verified against the system CAs."""
    host = PROVIDER_HOSTS[provider]
    return {
        "endpoints": [{"fqdn": {"hostname": host, "port": 443}}],
        "tls": {"wellKnownCACertificates": "System", "sni": host},
    }


def ai_service_backend_spec(names: Names) -> dict[str, Any]:
    return {"schema": {"name": "OpenAI"}, "backendRef": ref("Backend", names.fallback, group="gateway.envoyproxy.io")}


def backend_security_policy_spec(names: Names) -> dict[str, Any]:
    return {
        "targetRefs": [ref("AIServiceBackend", names.fallback, group="aigateway.envoyproxy.io")],
        "type": "APIKey",
        "apiKey": {"secretRef": {"name": names.fallback, "kind": "Secret", "group": ""}},
    }


def api_key_data(api_key: pulumi.Input[str]) -> pulumi.Output[dict[str, str]]:
    return pulumi.Output.secret(pulumi.Output.from_input(api_key)).apply(lambda key: {API_KEY_SECRET_KEY: key})


def retry_policy() -> dict[str, Any]:
    """BackendTrafficPolicy fields that move a failed request to the fallback.

    No per-try timeout: a long generation must not be cut off and re-sent; the route's request
    timeout bounds the whole request.
    """
    return {
        "retry": {
            "numRetries": NUM_RETRIES,
            "numAttemptsPerPriority": NUM_ATTEMPTS_PER_PRIORITY,
            "perRetry": {"backOff": {"baseInterval": "100ms", "maxInterval": "2s"}},
            "retryOn": {
                "triggers": ["connect-failure", "reset-before-request", "refused-stream", "retriable-status-codes"],
                "httpStatusCodes": RETRY_STATUS_CODES,
            },
        },
        "healthCheck": {
            "passive": {
                "consecutive5XxErrors": 3,
                "consecutiveLocalOriginFailures": 3,
                "interval": "5s",
                "baseEjectionTime": "30s",
                "maxEjectionPercent": 100,
            }
        },
    }
