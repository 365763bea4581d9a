"""The per-region API gateway: Envoy Gateway + Envoy AI Gateway with auth, token-aware limits and fallback."""

from llmfleet.components.gateway.component import Gateway, GatewayArgs, GatewaySettings
from llmfleet.components.gateway.types import (
    AcmeIssuer,
    CanaryBackend,
    Cascade,
    Fallback,
    FallbackProvider,
    JwtAuth,
    ModelBackend,
    PriorityRouting,
    RateLimit,
    ResponseCache,
    SplitBackend,
    Tenant,
    Tls,
)

__all__ = [
    "AcmeIssuer",
    "CanaryBackend",
    "Cascade",
    "Fallback",
    "FallbackProvider",
    "Gateway",
    "GatewayArgs",
    "GatewaySettings",
    "JwtAuth",
    "ModelBackend",
    "PriorityRouting",
    "RateLimit",
    "ResponseCache",
    "SplitBackend",
    "Tenant",
    "Tls",
]
