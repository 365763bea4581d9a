"""The program with a load_balancer section, under the offline engine: the balancer follows the regions,
probes the path every gateway opens, and the stack outputs report the endpoint and the worst-case failover."""

from __future__ import annotations

from typing import Any

from support.stacks import StackWriter, one_region_stack

from llmfleet.infra.render.offline import OfflineRun, RecordedResource, run_program

HOSTNAME = "llm.example.com"


def balanced(*regions: str, **load_balancer: Any) -> dict[str, Any]:
    stack = one_region_stack(*regions)
    stack |= {"gcp_project": "p", "gateway": {"hostname": HOSTNAME}}
    stack["load_balancer"] = {"zone": "Z0123456789ABCDEFGHIJ", "failover_budget_s": 200} | load_balancer
    for region in stack["regions"]:
        region["allowed_gpus"] = ["L4"]  # one small GPU shape: these tests are about DNS, not sizing
    return stack


def health_routes(run: OfflineRun) -> dict[str, RecordedResource]:
    """Region key -> the gateway's HTTPRoute that matches a path without an API key."""
    open_routes = {
        p.inputs["spec"]["targetRefs"][0]["name"]
        for p in run.by_type("kubernetes:gateway.envoyproxy.io/v1alpha1:SecurityPolicy")
        if p.inputs["spec"].get("authorization", {}).get("defaultAction") == "Allow"
        and p.inputs["spec"]["targetRefs"][0]["kind"] == "HTTPRoute"
    }
    routes = run.by_type("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute")
    found: dict[str, RecordedResource] = {}
    for route in routes:
        if route.inputs["metadata"]["name"] in open_routes:
            region = run.region_of(route)
            assert region is not None, route.urn
            found[region] = route
    return found


def test_route53_balancer_after_the_regions_probing_the_path_each_gateway_opens(write_stack: StackWriter) -> None:
    stack = balanced(
        "aws/us-east-1",
        "gcp/us-central1",
        health_check={"interval_s": 10, "path": "/healthz"},
        addresses={"aws-us-east-1": "k8s-envoy.elb.us-east-1.amazonaws.com"},
    )
    run = run_program(stack_file=write_stack(stack))
    balancer = [r for r in run.resources if r.type == "llmfleet:traffic:GlobalLoadBalancer"]
    assert len(balancer) == 1 and balancer[0].parent is not None and "Stack" in balancer[0].parent
    provider = run.by_name("global-dns-aws")
    assert provider.inputs["region"] == "us-east-1"

    checks = {
        r.inputs["fqdn"]: r for r in run.by_type("aws:route53/healthCheck:HealthCheck") if r.inputs["type"] == "HTTPS"
    }
    assert sorted(checks) == [f"aws-us-east-1.{HOSTNAME}", f"gcp-us-central1.{HOSTNAME}"]
    routes = health_routes(run)
    assert sorted(routes) == ["aws-us-east-1", "gcp-us-central1"], "every region's gateway must open the health path"
    for key, route in routes.items():
        check = checks[f"{key}.{HOSTNAME}"]
        matched = route.inputs["spec"]["rules"][0]["matches"][0]["path"]["value"]
        assert check.inputs["resourcePath"] == matched == "/healthz", f"{check.urn} probes what {route.urn} serves"
        assert check.inputs["requestInterval"] == 10 and check.provider == provider.urn

    records = run.by_type("aws:route53/record:Record")
    assert {r.inputs["name"] for r in records} == {HOSTNAME, f"nearest.{HOSTNAME}", f"aws-us-east-1.{HOSTNAME}"}
    assert {r.inputs["ttl"] for r in records} == {60}
    assert run.outputs["global_endpoint"] == f"https://{HOSTNAME}"
    assert run.outputs["failover"] == {
        "provider": "route53",
        "detection_s": 30,
        "check_timeout_s": 6,
        "ttl_s": 60,
        "total_s": 96,
        "budget_s": 200,
    }


def test_gcp_only_stack_on_cloud_dns(write_stack: StackWriter) -> None:
    stack = balanced(
        "gcp/us-central1",
        "gcp/europe-west4",
        provider="clouddns",
        zone="llm-example-com",
        ttl=30,
        addresses={"gcp-us-central1": "34.1.2.3", "gcp-europe-west4": "34.9.8.7"},
    )
    run = run_program(stack_file=write_stack(stack))
    assert not [r for r in run.resources if r.type.startswith("aws:route53")]
    (check,) = run.by_type("gcp:compute/healthCheck:HealthCheck")
    assert check.inputs["httpsHealthCheck"]["requestPath"] == "/health" and check.inputs["project"] == "p"
    geo = next(r for r in run.by_type("gcp:dns/recordSet:RecordSet") if r.inputs["name"] == f"{HOSTNAME}.")
    locations = [g["location"] for g in geo.inputs["routingPolicy"]["geos"]]
    assert locations == ["us-central1", "europe-west4"] and geo.inputs["ttl"] == 30
    assert sorted(health_routes(run)) == ["gcp-europe-west4", "gcp-us-central1"]
    assert run.outputs["failover"]["total_s"] == 30 * 3 + 5 + 30


def test_no_load_balancer_section_no_global_resources(write_stack: StackWriter) -> None:
    run = run_program(stack_file=write_stack(one_region_stack()))
    assert not [r for r in run.resources if r.type.startswith(("aws:route53", "gcp:dns", "llmfleet:traffic"))]
    assert "global_endpoint" not in run.outputs and "failover" not in run.outputs
    assert not health_routes(run), "without a load balancer no path may be open without credentials"
