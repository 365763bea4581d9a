"""Global load balancing: DNS over the regions' gateways, health-checked, with a stated failover budget.

`components.traffic.failover` is pure (the planner imports it); the Pulumi parts load on first use.
"""
