"""Failover estimates (known answers from the reference), budget errors, and the load_balancer schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.stacks import StackWriter, one_region_stack
from typer.testing import CliRunner

from llmfleet.components.sizing.catalog import load_catalog
from llmfleet.components.sizing.errors import PlanningError
from llmfleet.components.traffic.failover import ROUTE53_CHECK_TIMEOUT_S, estimate_failover, require_within_budget
from llmfleet.components.traffic.regions import AWS_LATENCY_REGION
from llmfleet.infra.cli import app
from llmfleet.infra.config import ConfigError, parse_deployment
from llmfleet.infra.planning import build_plan

FIELD = "llmfleet:deployment.load_balancer"


def balanced_stack(**load_balancer: Any) -> dict[str, Any]:
    """AWS us-east-1 (primary) + GCP us-central1 behind Route 53, with `load_balancer` overrides."""
    stack = one_region_stack("aws/us-east-1", "gcp/us-central1")
    stack["gcp_project"] = "p"
    stack["gateway"] = {"hostname": "llm.example.com"}
    stack["load_balancer"] = {"zone": "Z0123456789ABCDEFGHIJ", "failover_budget_s": 300} | load_balancer
    return stack


# --- the estimate ----------------------------------------------------------------------------


def test_reference_known_answers() -> None:
    fast = estimate_failover("route53", interval_s=10, failure_threshold=3, ttl_s=60)
    assert (fast.detection_s, fast.ttl_s) == (30, 60)  # "30 s + 60 s with fast checks and TTL 60"
    defaults = estimate_failover("route53", interval_s=30, failure_threshold=3, ttl_s=60)
    assert (defaults.detection_s, defaults.ttl_s) == (90, 60)  # "90 s + 60 s with defaults"
    assert defaults.check_timeout_s == ROUTE53_CHECK_TIMEOUT_S == 6
    assert defaults.total_s == 90 + 6 + 60 and fast.total_s == 30 + 6 + 60


@pytest.mark.parametrize(("interval", "threshold", "ttl"), [(10, 1, 0), (30, 10, 300), (10, 7, 15)])
def test_total_is_the_sum_of_its_parts_and_grows_with_each(interval: int, threshold: int, ttl: int) -> None:
    base = estimate_failover("clouddns", interval, threshold, ttl)
    assert base.total_s == interval * threshold + base.check_timeout_s + ttl
    assert estimate_failover("clouddns", interval, threshold + 1, ttl).total_s == base.total_s + interval
    assert estimate_failover("clouddns", interval, threshold, ttl + 5).total_s == base.total_s + 5


def test_budget_error_names_the_fields_to_change() -> None:
    estimate = estimate_failover("route53", 30, 3, 300, budget_s=120)
    with pytest.raises(PlanningError) as caught:
        require_within_budget(estimate, 30, 3, FIELD)
    message = str(caught.value)
    assert message.startswith(f"{FIELD}: worst-case failover 396 s = 3 x 30 s checks + 6 s check timeout + 300 s TTL")
    assert "> failover_budget_s 120 s" in message
    for field in ("load_balancer.ttl", "load_balancer.health_check.interval_s", "load_balancer.failover_budget_s"):
        assert field in message
    require_within_budget(estimate_failover("route53", 30, 3, 300, budget_s=396), 30, 3, FIELD)  # exactly on budget


# --- through the stack and the planner -------------------------------------------------------


def test_plan_reports_the_estimate_with_its_budget() -> None:
    spec = parse_deployment(balanced_stack(ttl=30, health_check={"interval_s": 10, "failure_threshold": 2}), "t")
    failover = build_plan("t", spec).failover
    assert failover is not None
    assert (failover.detection_s, failover.ttl_s, failover.total_s, failover.budget_s) == (20, 30, 56, 300)


def test_no_load_balancer_no_estimate() -> None:
    assert build_plan("t", parse_deployment(one_region_stack(), "t")).failover is None


def test_over_budget_is_a_planning_error() -> None:
    spec = parse_deployment(balanced_stack(ttl=300, failover_budget_s=120), "t")
    with pytest.raises(PlanningError, match=r"load_balancer: worst-case failover 396 s .* lower load_balancer\.ttl"):
        build_plan("t", spec)


def test_cli_plan_shows_failover_in_json_and_table_and_exits_2_over_budget(write_stack: StackWriter) -> None:
    runner = CliRunner()
    path = write_stack(balanced_stack())
    result = runner.invoke(app, ["plan", "--stack-file", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert '"failover": {' in result.output and '"total_s": 156' in result.output
    result = runner.invoke(app, ["plan", "--stack-file", str(path)])
    assert result.exit_code == 0, result.output
    assert "156 s" in result.output and "budget 300 s" in result.output
    over = write_stack(balanced_stack(failover_budget_s=100), name="over")
    result = runner.invoke(app, ["plan", "--stack-file", str(over)])
    assert result.exit_code == 2
    assert "failover_budget_s 100 s" in result.output and "Traceback" not in result.output


# --- invalid settings name the field ---------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"health_check": {"interval_s": 20}}, "load_balancer.health_check.interval_s: Input should be 10 or 30"),
        ({"health_check": {"failure_threshold": 0}}, "load_balancer.health_check.failure_threshold"),
        ({"health_check": {"failure_threshold": 11}}, "load_balancer.health_check.failure_threshold"),
        ({"health_check": {"path": "health"}}, "load_balancer.health_check.path"),
        ({"health_check": {"checker_regions": ["us-east-1", "mars-1"]}}, "not Route 53 checker regions"),
        ({"health_check": {"checker_regions": ["us-east-1", "us-west-2"]}}, "at least 3"),
        ({"ttl": 0}, "load_balancer.ttl"),
        ({"failover_budget_s": None}, "load_balancer.failover_budget_s"),
        ({"zone": "example.com"}, "zone: route53 needs a hosted zone id"),
        ({"provider": "azure"}, "load_balancer.provider"),
        ({"domain": "other.example.com"}, "load_balancer.domain: 'other.example.com' differs from gateway.hostname"),
        ({"colour": "blue"}, "load_balancer.colour: unknown field"),
        ({"addresses": {"aws-eu-west-1": "203.0.113.9"}}, "load_balancer.addresses.aws-eu-west-1: not a region"),
        ({"addresses": {"aws-us-east-1": "not an address!"}}, "load_balancer.addresses.aws-us-east-1: neither"),
    ],
)
def test_invalid_settings_name_the_field(change: dict[str, Any], expected: str) -> None:
    stack = balanced_stack(**change)
    stack["load_balancer"] = {k: v for k, v in stack["load_balancer"].items() if v is not None}
    with pytest.raises(ConfigError) as caught:
        parse_deployment(stack, "t")
    assert expected in str(caught.value)


def test_stack_cross_checks() -> None:
    no_hostname = balanced_stack()
    del no_hostname["gateway"]
    with pytest.raises(ConfigError, match=r"gateway\.hostname: required with load_balancer"):
        parse_deployment(no_hostname, "t")
    clouddns_on_aws = balanced_stack(provider="clouddns", zone="llm-zone")
    with pytest.raises(ConfigError, match=r"clouddns .* regions\[0\] is aws: use provider route53"):
        parse_deployment(clouddns_on_aws, "t")
    clouddns: dict[str, Any] = {
        "provider": "clouddns",
        "zone": "llm-zone",
        "failover_budget_s": 300,
        "addresses": {"gcp-us-central1": "34.1.2.3"},
    }
    fast_clouddns = one_region_stack("gcp/us-central1") | {
        "gcp_project": "p",
        "gateway": {"hostname": "llm.example.com"},
        "load_balancer": clouddns,
    }
    parse_deployment(fast_clouddns, "t")  # valid as it is
    clouddns["health_check"] = {"interval_s": 10}
    with pytest.raises(ConfigError, match=r"health_check\.interval_s: clouddns .* at least 30 s"):
        parse_deployment(fast_clouddns, "t")
    del clouddns["health_check"]
    clouddns["addresses"] = {"gcp-us-central1": "envoy.example.com"}
    with pytest.raises(ConfigError, match=r"addresses\.gcp-us-central1: clouddns health-checks IPv4 addresses"):
        parse_deployment(fast_clouddns, "t")
    clouddns["addresses"] = {}
    with pytest.raises(ConfigError, match=r"load_balancer\.addresses: clouddns needs every region's gateway IP"):
        parse_deployment(fast_clouddns, "t")
    unmapped = balanced_stack()
    unmapped["regions"][1]["region"] = "me-central2"
    with pytest.raises(ConfigError, match=r"regions\[1\]\.region: no AWS latency region"):
        parse_deployment(unmapped, "t")


def test_every_catalog_gcp_region_has_an_aws_latency_region() -> None:
    missing = sorted(set(load_catalog().regions_of("gcp")) - set(AWS_LATENCY_REGION))
    assert not missing, f"add these GCP regions to AWS_LATENCY_REGION: {missing}"


def test_shipped_prod_stack_states_a_budget_it_meets() -> None:
    from llmfleet.infra.config import load_stack

    _, spec = load_stack("prod")
    assert spec.load_balancer is not None, "stacks/Pulumi.prod.yaml has no load_balancer section"
    failover = build_plan("prod", spec).failover
    assert failover is not None and failover.budget_s is not None and failover.total_s <= failover.budget_s
    assert Path("stacks/Pulumi.prod.yaml").read_text().count("failover_budget_s") == 1
