"""`gateway:` — Envoy Gateway + Envoy AI Gateway in front of every region (issue: the API gateway)."""

from infra.schema.base import Section


class GatewaySpec(Section):
    """Placeholder until the gateway section lands; unknown keys are rejected."""
