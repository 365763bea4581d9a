"""Worst-case failover time of DNS-based global load balancing: pure arithmetic, no Pulumi.

When a region stops serving, clients keep reaching it until every step below has passed:

1. Detection, interval x failure threshold. A checker needs `failure_threshold` consecutive failed
   checks. The failure can start just after a passing check, so the first failed check comes up to one
   interval later and the last one `failure_threshold - 1` intervals after that.
2. The last failing check's own duration. A region that hangs (rather than refusing connections) fails
   a check only when the check times out: Route 53 allows 4 s to connect plus 2 s for the status line
   (Route 53 Developer Guide, "How Amazon Route 53 determines whether a health check is healthy");
   the GCP health check we create times out after CLOUD_DNS_CHECK_TIMEOUT_S.
3. The TTL. Resolvers that cached the answer naming the failed region keep serving it up to the TTL.

Route 53 runs checkers in several regions and calls an endpoint unhealthy once fewer than 18% of them
still see it healthy; each checker is bound by steps 1 and 2, so the aggregate is too. Not counted,
because no provider publishes a bound: the time for a new health status to reach the name servers, and
clients that cache DNS beyond its TTL (some JVMs, long-lived HTTP connections). The reference figures,
"30 s + 60 s with fast checks and TTL 60; 90 s + 60 s with defaults", are parts 1 and 3.
"""

from __future__ import annotations

from typing import Literal

from llmfleet.components.sizing.errors import PlanningError
from llmfleet.components.sizing.plan import FailoverEstimate

DnsProviderName = Literal["route53", "clouddns"]

ROUTE53_CHECK_TIMEOUT_S = 6
"""Route 53 HTTPS check: TCP connect within 4 s, then a 2xx/3xx status within 2 s."""
CLOUD_DNS_CHECK_TIMEOUT_S = 5
"""`timeout_sec` of the GCP health check Cloud DNS uses (GCP's default, set explicitly in clouddns.py)."""
CHECK_TIMEOUT_S: dict[DnsProviderName, int] = {
    "route53": ROUTE53_CHECK_TIMEOUT_S,
    "clouddns": CLOUD_DNS_CHECK_TIMEOUT_S,
}


def estimate_failover(
    provider: DnsProviderName, interval_s: int, failure_threshold: int, ttl_s: int, budget_s: int | None = None
) -> FailoverEstimate:
    """The worst case and its parts (see the module docstring for why each part is there)."""
    if interval_s <= 0 or failure_threshold <= 0 or ttl_s < 0:
        raise ValueError(f"interval {interval_s}, threshold {failure_threshold} and ttl {ttl_s} must be positive")
    detection = interval_s * failure_threshold
    timeout = CHECK_TIMEOUT_S[provider]
    return FailoverEstimate(
        provider=provider,
        detection_s=detection,
        check_timeout_s=timeout,
        ttl_s=ttl_s,
        total_s=detection + timeout + ttl_s,
        budget_s=budget_s,
    )


def describe(estimate: FailoverEstimate, interval_s: int, failure_threshold: int) -> str:
    """`156 s = 3 x 30 s checks + 6 s check timeout + 60 s TTL`."""
    return (
        f"{estimate.total_s} s = {failure_threshold} x {interval_s} s checks + "
        f"{estimate.check_timeout_s} s check timeout + {estimate.ttl_s} s TTL"
    )


def require_within_budget(estimate: FailoverEstimate, interval_s: int, failure_threshold: int, field: str) -> None:
    """PlanningError naming the fields to change when the worst case exceeds the budget.

    `field` is the stack path of the load balancer section, e.g. `llmfleet:deployment.load_balancer`.
    """
    if estimate.budget_s is None or estimate.total_s <= estimate.budget_s:
        return
    section = field.rsplit(".", 1)[-1]
    raise PlanningError(
        f"{field}: worst-case failover {describe(estimate, interval_s, failure_threshold)} "
        f"> failover_budget_s {estimate.budget_s} s: lower {section}.ttl, {section}.health_check.interval_s or "
        f"{section}.health_check.failure_threshold, or raise {section}.failover_budget_s"
    )
