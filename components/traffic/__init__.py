"""Global load balancing: DNS over the regions' gateways, health-checked, with a stated failover budget.

`components.traffic.failover` is pure (the planner imports it); the Pulumi parts load on first use.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmfleet.components.traffic.balancer import DnsProvider as DnsProvider
    from llmfleet.components.traffic.balancer import GlobalLoadBalancer as GlobalLoadBalancer
    from llmfleet.components.traffic.balancer import GlobalLoadBalancerArgs as GlobalLoadBalancerArgs
    from llmfleet.components.traffic.balancer import HealthCheck as HealthCheck
    from llmfleet.components.traffic.balancer import RegionEndpoint as RegionEndpoint

_EXPORTS = {
    name: "llmfleet.components.traffic.balancer"
    for name in ("DnsProvider", "GlobalLoadBalancer", "GlobalLoadBalancerArgs", "HealthCheck", "RegionEndpoint")
}

__all__ = ["DnsProvider", "GlobalLoadBalancer", "GlobalLoadBalancerArgs", "HealthCheck", "RegionEndpoint"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'llmfleet.components.traffic' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
