"""Cloud DNS, for stacks without AWS: one A record set with a geo routing policy over health-checked IPs.

Cloud DNS health-checks external endpoints only by IP address, so each region contributes its gateway
load balancer's IP (GKE gives a LoadBalancer Service an IP). A query is answered with the region whose
location is nearest the client; a region failing its check is skipped for the next nearest. One global
GCP health check with three source regions probes every endpoint (GCP requires exactly three and an
interval of at least 30 s for such checks; see pulumi_gcp compute.HealthCheck `source_regions`); it sends
the global hostname as Host, which every gateway's listener serves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pulumi
import pulumi_gcp as gcp

from llmfleet.components.traffic.failover import CLOUD_DNS_CHECK_TIMEOUT_S
from llmfleet.components.traffic.regions import CLOUD_DNS_SOURCE_REGIONS

if TYPE_CHECKING:
    from llmfleet.components.traffic.balancer import HealthCheck, RegionEndpoint

HTTPS_PORT = 443


def fqdn(name: str) -> str:
    """Cloud DNS names end with a dot."""
    return name if name.endswith(".") else f"{name}."


def health_check(
    name: str, domain: str, check: HealthCheck, project: str | None, opts: pulumi.ResourceOptions
) -> gcp.compute.HealthCheck:
    return gcp.compute.HealthCheck(
        f"{name}-health",
        description=f"llmfleet: {domain} regions' gateways, for Cloud DNS routing",
        project=project,
        check_interval_sec=check.interval_s,
        timeout_sec=CLOUD_DNS_CHECK_TIMEOUT_S,
        unhealthy_threshold=check.failure_threshold,
        healthy_threshold=2,  # GCP's default: two passing checks bring a region back
        source_regions=list(check.checker_regions or CLOUD_DNS_SOURCE_REGIONS),
        https_health_check=gcp.compute.HealthCheckHttpsHealthCheckArgs(
            port=HTTPS_PORT, request_path=check.path, host=domain
        ),
        opts=opts,
    )


def geo_record_set(
    name: str,
    zone: pulumi.Input[str],
    domain: str,
    regions: Sequence[RegionEndpoint],
    addresses: Sequence[pulumi.Input[str]],
    check: gcp.compute.HealthCheck,
    ttl: int,
    project: str | None,
    opts: pulumi.ResourceOptions,
) -> gcp.dns.RecordSet:
    """`<domain>.` A: per region, its location and its health-checked gateway IP."""
    return gcp.dns.RecordSet(
        f"{name}-geo",
        managed_zone=zone,
        project=project,
        name=fqdn(domain),
        type="A",
        ttl=ttl,
        routing_policy=gcp.dns.RecordSetRoutingPolicyArgs(
            health_check=check.id,
            geos=[
                gcp.dns.RecordSetRoutingPolicyGeoArgs(
                    location=region.region,
                    health_checked_targets=gcp.dns.RecordSetRoutingPolicyGeoHealthCheckedTargetsArgs(
                        external_endpoints=[address]
                    ),
                )
                for region, address in zip(regions, addresses, strict=True)
            ],
        ),
        opts=opts,
    )


def region_address_record(
    name: str,
    zone: pulumi.Input[str],
    region: RegionEndpoint,
    address: pulumi.Input[str],
    ttl: int,
    project: str | None,
    opts: pulumi.ResourceOptions,
) -> gcp.dns.RecordSet:
    """`<region key>.<domain>.` A -> the region's gateway IP (what clients and tools use to reach one region)."""
    return gcp.dns.RecordSet(
        f"{name}-{region.key}-address",
        managed_zone=zone,
        project=project,
        name=fqdn(region.hostname),
        type="A",
        ttl=ttl,
        rrdatas=[address],
        opts=opts,
    )
