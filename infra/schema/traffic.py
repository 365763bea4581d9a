"""`load_balancer:` — global DNS load balancing and failover between regions (absent: no global name).

Route 53 (default) or Cloud DNS answers the global hostname with the nearest healthy region. Each region
is probed over HTTPS on `<region key>.<gateway.hostname>` at `health_check.path`. Route 53 health checks
cannot send headers, so the path must answer without an API key: the default `/health` is the route the
global load balancer adds to each region's gateway, passing through Envoy to the engine's own `/health`,
which answers 200 only while the model is loaded and serving. A 200 there proves DNS, TLS, the gateway
and an engine all work; `/v1/models` would need a key the checkers cannot send.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal, Self

from pydantic import Field, model_validator

from components.traffic.regions import (
    AWS_LATENCY_REGION,
    CLOUD_DNS_MIN_INTERVAL_S,
    ROUTE53_CHECKER_REGIONS,
    ROUTE53_MIN_CHECKER_REGIONS,
)
from infra.schema.base import Section
from infra.schema.gateway import DNS_NAME

if TYPE_CHECKING:
    from components.sizing.plan import FailoverEstimate
    from infra.schema.regions import RegionSpec

ROUTE53_ZONE_ID = r"^Z[A-Z0-9]{1,31}$"
CLOUD_DNS_ZONE_NAME = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"


class HealthCheckSpec(Section):
    """How each region is probed, and how many failures take it out of the answers."""

    interval_s: Literal[10, 30] = Field(
        default=30, description="Seconds between checks from each checker (Route 53: 10 is the paid fast interval)."
    )
    failure_threshold: int = Field(default=3, ge=1, le=10, description="Consecutive failures that mark a region down.")
    path: str = Field(
        default="/health",
        pattern=r"^/[\x21-\x7e]{0,254}$",
        description="HTTPS path probed on each region's gateway; must answer 2xx/3xx without credentials.",
    )
    checker_regions: list[str] | None = Field(
        default=None,
        description="route53: checker regions (>= 3; default all); clouddns: exactly 3 GCP source regions.",
    )


class LoadBalancerSpec(Section):
    """One global hostname over every region's gateway, with health checks and a failover budget."""

    provider: Literal["route53", "clouddns"] = Field(
        default="route53", description="route53 (any region, any cloud) or clouddns (gcp regions only)."
    )
    zone: str = Field(description="route53: hosted zone id (Z...); clouddns: managed zone name.")
    domain: str | None = Field(
        default=None,
        pattern=DNS_NAME,
        description="The global hostname; default and only allowed value: gateway.hostname (the name the "
        "gateways' listeners and certificates serve). Not the zone apex (it is a CNAME on route53).",
    )
    ttl: int = Field(default=60, ge=1, le=86_400, description="Seconds resolvers may cache the answer.")
    health_check: HealthCheckSpec = Field(default_factory=HealthCheckSpec)
    failover_budget_s: int = Field(
        gt=0, description="Longest tolerated worst-case failover; the plan fails when the settings imply more."
    )

    @model_validator(mode="after")
    def _provider_rules(self) -> Self:
        checkers = self.health_check.checker_regions
        if self.provider == "route53":
            if not _matches(ROUTE53_ZONE_ID, self.zone):
                raise ValueError(f"zone: route53 needs a hosted zone id like Z0123456789ABCDEFGHIJ, got {self.zone!r}")
            if checkers is not None:
                unknown = sorted(set(checkers) - set(ROUTE53_CHECKER_REGIONS))
                if unknown:
                    raise ValueError(
                        f"health_check.checker_regions: {unknown} are not Route 53 checker regions; "
                        f"choose from {list(ROUTE53_CHECKER_REGIONS)}"
                    )
                if len(set(checkers)) < ROUTE53_MIN_CHECKER_REGIONS:
                    raise ValueError(
                        f"health_check.checker_regions: Route 53 needs at least {ROUTE53_MIN_CHECKER_REGIONS} "
                        f"distinct regions, got {checkers}"
                    )
            return self
        if not _matches(CLOUD_DNS_ZONE_NAME, self.zone):
            raise ValueError(
                f"zone: clouddns needs a managed zone name (lowercase, e.g. llm-example-com), got {self.zone!r}"
            )
        if self.health_check.interval_s < CLOUD_DNS_MIN_INTERVAL_S:
            raise ValueError(
                f"health_check.interval_s: clouddns health checks run from source regions, which need an interval "
                f"of at least {CLOUD_DNS_MIN_INTERVAL_S} s; set 30 or use provider route53"
            )
        if checkers is not None and len(set(checkers)) != 3:
            raise ValueError(
                f"health_check.checker_regions: clouddns needs exactly 3 GCP source regions, got {checkers}"
            )
        return self

    def check_stack(self, regions: list[RegionSpec], gateway_hostname: str | None, gcp_project: str | None) -> None:
        """Cross-checks against the rest of the stack (called by DeploymentSpec); errors name the field."""
        for i, region in enumerate(regions):
            if region.cloud == "local":
                raise ValueError(
                    f"regions[{i}]: a local cluster has no public endpoint to balance; "
                    "remove load_balancer or the local region"
                )
            if self.provider == "clouddns" and region.cloud != "gcp":
                raise ValueError(
                    f"load_balancer.provider: clouddns health-checks IP addresses and balances gcp regions only, "
                    f"regions[{i}] is {region.cloud}: use provider route53"
                )
            if self.provider == "route53" and region.cloud == "gcp" and region.region not in AWS_LATENCY_REGION:
                raise ValueError(
                    f"regions[{i}].region: no AWS latency region is mapped for gcp region {region.region!r} "
                    "(components/traffic/regions.py AWS_LATENCY_REGION)"
                )
        if gateway_hostname is None:
            raise ValueError(
                "gateway.hostname: required with load_balancer (each region answers on <region key>.<hostname>, "
                "which the health checks probe, and the global name is the hostname itself)"
            )
        if self.domain is not None and self.domain != gateway_hostname:
            raise ValueError(
                f"load_balancer.domain: {self.domain!r} differs from gateway.hostname {gateway_hostname!r}; the "
                "gateways only serve their hostname, so leave domain out or make them equal"
            )
        if self.provider == "clouddns" and gcp_project is None:
            raise ValueError("gcp_project: required with load_balancer.provider clouddns (the zone's project)")

    def failover(self) -> FailoverEstimate:
        """The worst-case failover these settings imply, with the stack's budget."""
        from components.traffic.failover import estimate_failover

        check = self.health_check
        return estimate_failover(
            self.provider, check.interval_s, check.failure_threshold, self.ttl, self.failover_budget_s
        )

    def require_within_budget(self, field: str) -> FailoverEstimate:
        """The estimate, or a PlanningError naming the fields to change when it exceeds the budget."""
        from components.traffic.failover import require_within_budget

        estimate = self.failover()
        require_within_budget(estimate, self.health_check.interval_s, self.health_check.failure_threshold, field)
        return estimate


def _matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None
