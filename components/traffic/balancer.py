"""`GlobalLoadBalancer`: one global hostname over every region's gateway, on Route 53 or Cloud DNS.

Every region is probed over HTTPS at `<region hostname><path>`; a region that fails `failure_threshold`
checks in a row leaves the DNS answers, and clients move within the worst-case failover time that
`failover.py` derives (exported as `worst_case_failover_s`). The DNS provider's Pulumi provider (AWS
for Route 53, GCP for Cloud DNS) comes from the caller's `opts.providers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

import pulumi
import pulumi_aws as aws

from llmfleet.components.traffic import clouddns, route53
from llmfleet.components.traffic.failover import estimate_failover
from llmfleet.components.traffic.regions import latency_region


class DnsProvider(StrEnum):
    ROUTE53 = "route53"
    CLOUD_DNS = "clouddns"


@dataclass(frozen=True)
class RegionEndpoint:
    """One region's gateway as the global load balancer sees it."""

    key: str
    """`<cloud>-<region>`: names this region's DNS resources and its Route 53 set identifier."""
    cloud: Literal["aws", "gcp"]
    region: str
    """The cloud's region name (Route 53 latency routing maps gcp regions to the nearest AWS region)."""
    hostname: str
    """The region's own name, served by its gateway (`<key>.<domain>`); the health checks probe it."""
    role: Literal["primary", "secondary"] = "secondary"
    """The primary answers when every region fails its checks (Route 53)."""
    address: pulumi.Input[str] | None = None
    """The gateway load balancer's public IP or hostname. Given, `hostname` is published pointing at it;
    None leaves that record to something else (external-dns, an operator). Cloud DNS needs it (an IP)."""


@dataclass(frozen=True)
class HealthCheck:
    interval_s: int = 30
    """Seconds between checks (Route 53: 10 or 30; Cloud DNS: at least 30)."""
    failure_threshold: int = 3
    """Consecutive failures that mark a region down (1-10)."""
    path: str = "/health"
    """HTTPS path that answers 2xx/3xx without credentials only while the region can serve."""
    checker_regions: Sequence[str] | None = None
    """Route 53 checker regions (default all) or the three Cloud DNS source regions (default: see regions.py)."""


@dataclass
class GlobalLoadBalancerArgs:
    zone: pulumi.Input[str]
    """Route 53 hosted zone id, or Cloud DNS managed zone name, that holds `domain`."""
    domain: str
    """The global hostname clients use (not the zone apex: Route 53 answers it with a CNAME)."""
    regions: Sequence[RegionEndpoint]
    """Every region serving behind the name; exactly one has role primary."""
    provider: DnsProvider = DnsProvider.ROUTE53
    """Route 53 (any cloud) or Cloud DNS (gcp regions, by IP)."""
    ttl: int = 60
    """Seconds resolvers may cache an answer: part of the worst-case failover time."""
    health_check: HealthCheck = field(default_factory=HealthCheck)
    gcp_project: str | None = None
    """Cloud DNS: the zone's project (None: the GCP provider's)."""


class GlobalLoadBalancer(pulumi.ComponentResource):
    endpoint: pulumi.Output[str]
    """`https://<domain>`: the URL clients use, served by the nearest healthy region."""
    health_check_ids: dict[str, pulumi.Output[str]]
    """Region key -> its health check id (Route 53), or the one GCP health check's id for every region."""
    worst_case_failover_s: int
    """Seconds from a region failing until clients resolve elsewhere, at worst (components/traffic/failover.py)."""
    records: list[pulumi.CustomResource]
    """Every DNS record this balancer manages (depend on them to wait until the global name exists)."""

    def __init__(self, name: str, args: GlobalLoadBalancerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmfleet:traffic:GlobalLoadBalancer", name, None, opts)
        primary = _check_regions(name, args)
        check = args.health_check
        self.worst_case_failover_s = estimate_failover(
            args.provider.value, check.interval_s, check.failure_threshold, args.ttl
        ).total_s
        children = pulumi.ResourceOptions(parent=self)
        self.records = []
        if args.provider is DnsProvider.ROUTE53:
            self.health_check_ids = self._route53(name, args, primary, children)
        else:
            self.health_check_ids = self._cloud_dns(name, args, children)
        self.endpoint = pulumi.Output.from_input(f"https://{args.domain}")
        self.register_outputs(
            {
                "endpoint": self.endpoint,
                "health_check_ids": self.health_check_ids,
                "worst_case_failover_s": self.worst_case_failover_s,
            }
        )

    def _route53(
        self, name: str, args: GlobalLoadBalancerArgs, primary: RegionEndpoint, opts: pulumi.ResourceOptions
    ) -> dict[str, pulumi.Output[str]]:
        nearest = f"{route53.NEAREST_LABEL}.{args.domain}"
        checks: dict[str, aws.route53.HealthCheck] = {}
        for region in args.regions:
            check = route53.region_health_check(name, region, args.health_check, opts)
            self.records.append(route53.latency_record(name, args.zone, nearest, region, check, args.ttl, opts))
            if region.address is not None:
                self.records.append(
                    route53.region_address_record(name, args.zone, region, region.address, args.ttl, opts)
                )
            checks[region.key] = check
        any_healthy = route53.any_region_healthy(name, list(checks.values()), opts)
        self.records += route53.failover_records(
            name, args.zone, args.domain, nearest, primary, any_healthy, args.ttl, opts
        )
        return {key: check.id for key, check in checks.items()}

    def _cloud_dns(
        self, name: str, args: GlobalLoadBalancerArgs, opts: pulumi.ResourceOptions
    ) -> dict[str, pulumi.Output[str]]:
        project = args.gcp_project
        check = clouddns.health_check(name, args.domain, args.health_check, project, opts)
        addresses = [r.address for r in args.regions if r.address is not None]
        self.records.append(
            clouddns.geo_record_set(
                name, args.zone, args.domain, args.regions, addresses, check, args.ttl, project, opts
            )
        )
        for region, address in zip(args.regions, addresses, strict=True):
            self.records.append(
                clouddns.region_address_record(name, args.zone, region, address, args.ttl, project, opts)
            )
        return {region.key: check.id for region in args.regions}


def _check_regions(name: str, args: GlobalLoadBalancerArgs) -> RegionEndpoint:
    """The primary region; ValueError for inputs DNS cannot express (the stack schema reports them first)."""
    if not args.regions:
        raise ValueError(f"{name}: no regions to balance")
    keys = [r.key for r in args.regions]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{name}: region keys must be unique, got {keys}")
    primaries = [r for r in args.regions if r.role == "primary"]
    if len(primaries) != 1:
        raise ValueError(f"{name}: exactly one region needs role primary, got {[r.key for r in primaries]}")
    for region in args.regions:
        if args.provider is DnsProvider.CLOUD_DNS and (region.cloud != "gcp" or region.address is None):
            raise ValueError(f"{name}: Cloud DNS balances gcp regions by gateway IP; {region.key} has none")
        if args.provider is DnsProvider.ROUTE53:
            latency_region(region.cloud, region.region)  # KeyError names an unmapped gcp region
    return primaries[0]
