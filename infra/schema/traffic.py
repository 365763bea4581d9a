"""`load_balancer:` — global DNS load balancing and failover between regions."""

from infra.schema.base import Section


class LoadBalancerSpec(Section):
    """Placeholder until the global load balancer section lands; unknown keys are rejected."""
