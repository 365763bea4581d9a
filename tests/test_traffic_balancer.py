"""GlobalLoadBalancer under the offline engine's mocks: health checks, records, TTLs, providers, Cloud DNS."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pytest

from llmfleet.components.traffic import (
    DnsProvider,
    GlobalLoadBalancer,
    GlobalLoadBalancerArgs,
    HealthCheck,
    RegionEndpoint,
)
from llmfleet.components.traffic.regions import CLOUD_DNS_SOURCE_REGIONS, ROUTE53_CHECKER_REGIONS
from llmfleet.infra.render.offline import RecordedResource, RecordingMocks

DOMAIN = "llm.example.com"
ZONE = "Z0123456789ABCDEFGHIJ"
HEALTH_CHECK = "aws:route53/healthCheck:HealthCheck"
RECORD = "aws:route53/record:Record"
ELB = "k8s-envoy-abc.elb.us-east-1.amazonaws.com"


def region(key: str, role: str = "secondary", address: str | None = None) -> RegionEndpoint:
    cloud, name = key.split("-", 1)
    assert cloud in ("aws", "gcp")
    return RegionEndpoint(
        key=key,
        cloud=cloud,
        region=name,
        hostname=f"{key}.{DOMAIN}",
        role="primary" if role == "primary" else "secondary",
        address=address,
    )


ROUTE53_REGIONS = [
    region("aws-us-east-1", "primary", ELB),
    region("aws-us-west-2", address="203.0.113.7"),
    region("gcp-us-central1"),
]


def of_type(mocks: RecordingMocks, type_: str) -> list[RecordedResource]:
    return [r for r in mocks.resources if r.type == type_]


def only(resources: list[RecordedResource], **inputs: Any) -> RecordedResource:
    found = [r for r in resources if all(r.inputs.get(k) == v for k, v in inputs.items())]
    assert len(found) == 1, f"expected one resource with {inputs}, got {[r.urn for r in found]}"
    return found[0]


def component_urn(mocks: RecordingMocks) -> str:
    return only(of_type(mocks, "llmfleet:traffic:GlobalLoadBalancer")).urn


@pulumi.runtime.test
def test_route53_checks_latency_records_failover_pair_and_ttl(recording_mocks: RecordingMocks) -> Any:
    provider = aws.Provider("dns-aws", region="us-east-1")
    check = HealthCheck(interval_s=10, failure_threshold=2, path="/health")
    balancer = GlobalLoadBalancer(
        "global",
        GlobalLoadBalancerArgs(zone=ZONE, domain=DOMAIN, regions=ROUTE53_REGIONS, ttl=30, health_check=check),
        opts=pulumi.ResourceOptions(providers=[provider]),
    )
    assert balancer.worst_case_failover_s == 10 * 2 + 6 + 30

    def verify(values: list[Any]) -> None:
        endpoint, ids = values
        mocks = recording_mocks
        assert endpoint == f"https://{DOMAIN}"
        checks = of_type(mocks, HEALTH_CHECK)
        assert len(checks) == 4, [c.urn for c in checks]  # three regions + the calculated "any region"
        for r in ROUTE53_REGIONS:
            probe = only(checks, fqdn=r.hostname)
            expected = {
                "type": "HTTPS",
                "port": 443,
                "enableSni": True,
                "resourcePath": "/health",
                "requestInterval": 10,
                "failureThreshold": 2,
                "measureLatency": True,
                "regions": list(ROUTE53_CHECKER_REGIONS),
            }
            assert {k: probe.inputs.get(k) for k in expected} == expected, probe.urn
        calculated = only(checks, type="CALCULATED")
        assert sorted(calculated.inputs["childHealthchecks"]) == sorted(ids.values())
        assert calculated.inputs["childHealthThreshold"] == 1

        records = of_type(mocks, RECORD)
        assert len(records) == 3 + 2 + 2, [r.urn for r in records]  # latency, failover pair, known addresses
        nearest = f"nearest.{DOMAIN}"
        latency_region = {"aws-us-east-1": "us-east-1", "aws-us-west-2": "us-west-2", "gcp-us-central1": "us-east-2"}
        for r in ROUTE53_REGIONS:
            answer = only(records, setIdentifier=r.key)
            assert answer.inputs["name"] == nearest and answer.inputs["type"] == "CNAME", answer.urn
            assert answer.inputs["records"] == [r.hostname], answer.urn
            assert answer.inputs["healthCheckId"] == ids[r.key], f"{answer.urn} is not tied to {r.key}'s check"
            assert answer.inputs["latencyRoutingPolicies"] == [{"region": latency_region[r.key]}], answer.urn
        preferred = only(records, setIdentifier="nearest-healthy")
        assert preferred.inputs["failoverRoutingPolicies"] == [{"type": "PRIMARY"}]
        assert preferred.inputs["name"] == DOMAIN and preferred.inputs["records"] == [nearest]
        assert preferred.inputs["healthCheckId"] not in ids.values()  # the calculated check, not one region's
        last_resort = only(records, setIdentifier="primary-region")
        assert last_resort.inputs["failoverRoutingPolicies"] == [{"type": "SECONDARY"}]
        assert (
            last_resort.inputs["records"] == ["aws-us-east-1." + DOMAIN] and "healthCheckId" not in last_resort.inputs
        )
        for key, type_, value in (("aws-us-east-1", "CNAME", ELB), ("aws-us-west-2", "A", "203.0.113.7")):
            address = only(records, name=f"{key}.{DOMAIN}")
            assert (address.inputs["type"], address.inputs["records"]) == (type_, [value]), address.urn
        assert not [r for r in records if r.inputs["name"] == f"gcp-us-central1.{DOMAIN}"]  # no address given

        parent = component_urn(mocks)
        provider_urn = only(of_type(mocks, "pulumi:providers:aws")).urn
        for resource in [*checks, *records]:
            assert resource.parent == parent, f"{resource.urn} is not a child of the balancer"
            assert resource.provider == provider_urn, f"{resource.urn} does not use the caller's provider"
            assert resource.inputs.get("zoneId", ZONE) == ZONE, resource.urn
            if resource.type == RECORD:
                assert resource.inputs["ttl"] == 30, f"{resource.urn}: TTL {resource.inputs['ttl']}"
        assert not [r for r in mocks.resources if r.type.startswith("gcp:")]

    every_record = pulumi.Output.all(*[r.urn for r in balancer.records])
    return pulumi.Output.all(balancer.endpoint, pulumi.Output.all(**balancer.health_check_ids), every_record).apply(
        lambda values: verify(values[:2])
    )


GCP_REGIONS = [region("gcp-us-central1", "primary", "34.1.2.3"), region("gcp-europe-west4", address="34.9.8.7")]


@pulumi.runtime.test
def test_cloud_dns_geo_record_set_with_health_checked_ips(recording_mocks: RecordingMocks) -> Any:
    provider = gcp.Provider("dns-gcp", project="llmfleet-prod")
    balancer = GlobalLoadBalancer(
        "global",
        GlobalLoadBalancerArgs(
            zone="llm-zone",
            domain=DOMAIN,
            regions=GCP_REGIONS,
            provider=DnsProvider.CLOUD_DNS,
            ttl=45,
            health_check=HealthCheck(interval_s=30, failure_threshold=4, path="/healthz"),
            gcp_project="llmfleet-prod",
        ),
        opts=pulumi.ResourceOptions(providers=[provider]),
    )
    assert balancer.worst_case_failover_s == 30 * 4 + 5 + 45

    def verify(ids: dict[str, str]) -> None:
        mocks = recording_mocks
        check = only(of_type(mocks, "gcp:compute/healthCheck:HealthCheck"))
        assert check.inputs["checkIntervalSec"] == 30 and check.inputs["unhealthyThreshold"] == 4
        assert check.inputs["timeoutSec"] == 5
        assert check.inputs["sourceRegions"] == list(CLOUD_DNS_SOURCE_REGIONS)
        assert check.inputs["httpsHealthCheck"] == {"port": 443, "requestPath": "/healthz", "host": DOMAIN}
        record_sets = of_type(mocks, "gcp:dns/recordSet:RecordSet")
        geo = only(record_sets, name=f"{DOMAIN}.")
        assert geo.inputs["type"] == "A" and geo.inputs["ttl"] == 45 and geo.inputs["managedZone"] == "llm-zone"
        policy = geo.inputs["routingPolicy"]
        assert set(ids.values()) == {policy["healthCheck"]}, "every region is judged by the one health check"
        assert policy["geos"] == [
            {"location": "us-central1", "healthCheckedTargets": {"externalEndpoints": ["34.1.2.3"]}},
            {"location": "europe-west4", "healthCheckedTargets": {"externalEndpoints": ["34.9.8.7"]}},
        ]
        for r in GCP_REGIONS:
            plain = only(record_sets, name=f"{r.hostname}.")
            assert plain.inputs["rrdatas"] == [r.address] and plain.inputs["ttl"] == 45, plain.urn
        assert len(record_sets) == 3
        provider_urn = only(of_type(mocks, "pulumi:providers:gcp")).urn
        for resource in [check, *record_sets]:
            assert resource.parent == component_urn(mocks) and resource.provider == provider_urn, resource.urn
            assert resource.inputs["project"] == "llmfleet-prod", resource.urn
        assert not [r for r in mocks.resources if r.type.startswith("aws:")]

    every_record = pulumi.Output.all(*[r.urn for r in balancer.records])
    return pulumi.Output.all(pulumi.Output.all(**balancer.health_check_ids), every_record).apply(
        lambda values: verify(values[0])
    )


@pytest.mark.parametrize(
    ("regions", "provider", "message"),
    [
        ([region("gcp-us-central1", "primary")], DnsProvider.CLOUD_DNS, "gcp-us-central1 has none"),
        ([region("aws-us-east-1", "primary", ELB)], DnsProvider.CLOUD_DNS, "aws-us-east-1 has none"),
        ([region("aws-us-east-1"), region("aws-us-west-2")], DnsProvider.ROUTE53, "exactly one region needs role"),
        ([region("aws-us-east-1", "primary"), region("aws-us-east-1")], DnsProvider.ROUTE53, "keys must be unique"),
        ([region("gcp-me-central2", "primary")], DnsProvider.ROUTE53, "me-central2"),
        ([], DnsProvider.ROUTE53, "no regions"),
    ],
)
def test_inputs_dns_cannot_express_are_rejected(
    recording_mocks: RecordingMocks, regions: list[RegionEndpoint], provider: DnsProvider, message: str
) -> None:
    with pytest.raises((ValueError, KeyError), match=message):
        GlobalLoadBalancer(
            "global", GlobalLoadBalancerArgs(zone=ZONE, domain=DOMAIN, regions=regions, provider=provider)
        )
