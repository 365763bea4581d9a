"""Route 53: an HTTPS health check per region, latency records that drop unhealthy regions, and a failover pair.

Names (for `domain` llm.example.com and regions aws-us-east-1, gcp-us-central1):

    llm.example.com          CNAME  nearest.llm.example.com      failover PRIMARY, healthy while any region is
                             CNAME  aws-us-east-1.llm...         failover SECONDARY: the primary region
    nearest.llm.example.com  CNAME  aws-us-east-1.llm...         latency, region us-east-1, its health check
                             CNAME  gcp-us-central1.llm...       latency, region us-east-2 (nearest AWS region)
    aws-us-east-1.llm...     CNAME/A  the region's gateway load balancer (when its address is known)

Clients resolve the nearest healthy region. A region whose check fails leaves the latency answers; when
every region fails, Route 53 would otherwise answer all latency records as if healthy, so the failover
pair answers the primary region instead: a stated, predictable last resort. The PRIMARY's health is a
CALCULATED check over the regional ones (healthy when at least one is). Plain CNAME chains, no aliases:
every hop is an ordinary record with the same deliberate TTL.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pulumi
import pulumi_aws as aws

from llmfleet.components.traffic.regions import ROUTE53_CHECKER_REGIONS, latency_region

if TYPE_CHECKING:
    from llmfleet.components.traffic.balancer import HealthCheck, RegionEndpoint

HTTPS_PORT = 443
NEAREST_LABEL = "nearest"
"""The latency set's name under the domain: `nearest.<domain>`."""
PRIMARY_REGION_ID = "primary-region"
NEAREST_ID = "nearest-healthy"


def record_type(address: str) -> str:
    """A for an IPv4 address, AAAA for IPv6, CNAME for a load balancer's hostname."""
    try:
        return "AAAA" if ipaddress.ip_address(address).version == 6 else "A"
    except ValueError:
        return "CNAME"


def region_health_check(
    name: str, region: RegionEndpoint, check: HealthCheck, opts: pulumi.ResourceOptions
) -> aws.route53.HealthCheck:
    """HTTPS GET https://<region hostname><path> from each checker region, with SNI (the listener picks its cert)."""
    return aws.route53.HealthCheck(
        f"{name}-{region.key}-health",
        type="HTTPS",
        fqdn=region.hostname,
        port=HTTPS_PORT,
        enable_sni=True,
        resource_path=check.path,
        request_interval=check.interval_s,
        failure_threshold=check.failure_threshold,
        regions=list(check.checker_regions or ROUTE53_CHECKER_REGIONS),
        measure_latency=True,
        tags={"Name": f"{name}-{region.key}", "llmfleet/region": region.key},
        opts=opts,
    )


def any_region_healthy(
    name: str, checks: Sequence[aws.route53.HealthCheck], opts: pulumi.ResourceOptions
) -> aws.route53.HealthCheck:
    """Healthy while at least one regional check is: the failover PRIMARY's health."""
    return aws.route53.HealthCheck(
        f"{name}-any-region-health",
        type="CALCULATED",
        child_healthchecks=[c.id for c in checks],
        child_health_threshold=1,
        tags={"Name": f"{name}-any-region"},
        opts=opts,
    )


def latency_record(
    name: str,
    zone_id: pulumi.Input[str],
    nearest: str,
    region: RegionEndpoint,
    check: aws.route53.HealthCheck,
    ttl: int,
    opts: pulumi.ResourceOptions,
) -> aws.route53.Record:
    """`nearest.<domain>` -> this region's hostname, answered to clients nearest its (AWS) region while healthy."""
    return aws.route53.Record(
        f"{name}-{region.key}-latency",
        zone_id=zone_id,
        name=nearest,
        type="CNAME",
        ttl=ttl,
        records=[region.hostname],
        set_identifier=region.key,
        health_check_id=check.id,
        latency_routing_policies=[
            aws.route53.RecordLatencyRoutingPolicyArgs(region=latency_region(region.cloud, region.region))
        ],
        opts=opts,
    )


def failover_records(
    name: str,
    zone_id: pulumi.Input[str],
    domain: str,
    nearest: str,
    primary: RegionEndpoint,
    any_healthy: aws.route53.HealthCheck,
    ttl: int,
    opts: pulumi.ResourceOptions,
) -> tuple[aws.route53.Record, aws.route53.Record]:
    """`<domain>`: the nearest healthy region while any is healthy, else the primary region."""
    preferred = aws.route53.Record(
        f"{name}-nearest",
        zone_id=zone_id,
        name=domain,
        type="CNAME",
        ttl=ttl,
        records=[nearest],
        set_identifier=NEAREST_ID,
        health_check_id=any_healthy.id,
        failover_routing_policies=[aws.route53.RecordFailoverRoutingPolicyArgs(type="PRIMARY")],
        opts=opts,
    )
    last_resort = aws.route53.Record(
        f"{name}-primary-region",
        zone_id=zone_id,
        name=domain,
        type="CNAME",
        ttl=ttl,
        records=[primary.hostname],
        set_identifier=PRIMARY_REGION_ID,
        failover_routing_policies=[aws.route53.RecordFailoverRoutingPolicyArgs(type="SECONDARY")],
        opts=opts,
    )
    return preferred, last_resort


def region_address_record(
    name: str,
    zone_id: pulumi.Input[str],
    region: RegionEndpoint,
    address: pulumi.Input[str],
    ttl: int,
    opts: pulumi.ResourceOptions,
) -> aws.route53.Record:
    """`<region key>.<domain>` -> the region's gateway load balancer (A for an IP, CNAME for a hostname)."""
    value = pulumi.Output.from_input(address)
    return aws.route53.Record(
        f"{name}-{region.key}-address",
        zone_id=zone_id,
        name=region.hostname,
        type=value.apply(record_type),
        ttl=ttl,
        records=[value],
        opts=opts,
    )
