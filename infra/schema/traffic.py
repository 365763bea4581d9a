"""`load_balancer:` — global DNS load balancing and failover between regions (absent: no global name).

Route 53 (default) or Cloud DNS answers the global hostname with the nearest healthy region. Each region
is probed over HTTPS on `<region key>.<gateway.hostname>` at `health_check.path`. DNS health checkers
send no headers, so `/v1/models` (which needs an API key) cannot be the path. The program gives the path
to every region's gateway, which opens it, and only it, without credentials and sends it through Envoy
to the engines' own `/health` (200 only while a model is loaded and serving; components/gateway/health.py).
A 200 therefore proves DNS, TLS, the Envoy proxies and at least one serving engine of the region.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Literal, Self

from pydantic import Field, model_validator

from llmfleet.components.traffic.regions import (
    AWS_LATENCY_REGION,
    CLOUD_DNS_MIN_INTERVAL_S,
    CLOUD_DNS_SOURCE_REGIONS,
    ROUTE53_CHECKER_REGIONS,
    ROUTE53_MIN_CHECKER_REGIONS,
)
from llmfleet.infra.schema.base import Section
from llmfleet.infra.schema.gateway import DNS_NAME

if TYPE_CHECKING:
    from llmfleet.infra.schema.regions import RegionSpec

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
    health_check: HealthCheckSpec = Field(
        default_factory=HealthCheckSpec,
        description="What DNS health checks probe and how often (the gateway opens `path` without credentials).",
    )
    failover_budget_s: int = Field(
        gt=0, description="Longest tolerated worst-case failover; the plan fails when the settings imply more."
    )
    addresses: dict[str, str] = Field(
        default_factory=dict[str, str],
        description="Region key (`<cloud>-<region>`) -> the public address of that region's gateway load balancer "
        "(an IP; route53 also takes a hostname). Given, `<region key>.<domain>` is published pointing at it; "
        "otherwise publish it yourself (e.g. external-dns). clouddns needs an IP for every region.",
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
        if checkers is not None and len(set(checkers)) != len(CLOUD_DNS_SOURCE_REGIONS):
            raise ValueError(
                f"health_check.checker_regions: clouddns needs exactly {len(CLOUD_DNS_SOURCE_REGIONS)} distinct GCP "
                f"source regions, got {checkers}"
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
        keys = [r.key for r in regions]
        for key, address in self.addresses.items():
            if key not in keys:
                raise ValueError(f"load_balancer.addresses.{key}: not a region of this stack; regions: {keys}")
            if self.provider == "clouddns" and not _is_ipv4(address):
                raise ValueError(
                    f"load_balancer.addresses.{key}: clouddns health-checks IPv4 addresses, got {address!r}"
                )
            if not _is_ipv4(address) and not _matches(DNS_NAME, address):
                raise ValueError(f"load_balancer.addresses.{key}: neither an IPv4 address nor a hostname: {address!r}")
        missing = [k for k in keys if k not in self.addresses]
        if self.provider == "clouddns" and missing:
            raise ValueError(
                f"load_balancer.addresses: clouddns needs every region's gateway IP, missing {missing} "
                "(reserve static IPs, or read them after the first deploy)"
            )


def _matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


def _is_ipv4(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True
