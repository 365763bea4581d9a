"""Dashboards: every query parses (promtool) and names only metrics that exist (the project's list);
the SLO targets are drawn; the cost panel prices the plan's nodes; the name reader itself is tested.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from llmfleet.components.inference.service import engine_spec
from llmfleet.components.observability.dashboards import Dashboard, dashboards, node_usd_per_hour
from llmfleet.components.observability.metrics import KNOWN, Kind, metric_names
from llmfleet.components.observability.rules import RECORDED, TPOT_P95, SloTargets
from llmfleet.components.sizing.plan import DeploymentPlan
from llmfleet.components.sizing.types import Engine
from llmfleet.infra.config import load_stack
from llmfleet.infra.planning import build_plan

SLO = SloTargets(ttft_p95_ms=1500, tpot_p95_ms=50, e2e_p99_ms=30_000, error_rate=0.005)


def plan_of(stack: str) -> tuple[str, list[DeploymentPlan]]:
    """The namespace and the deployments of the stack's first region (dashboards are per region)."""
    _, spec = load_stack(stack)
    region = spec.regions[0]
    deployments = build_plan(stack, spec).deployments
    return spec.namespace, [d for d in deployments if (d.cloud, d.region) == (region.cloud, region.region)]


def boards(stack: str) -> list[Dashboard]:
    namespace, deployments = plan_of(stack)
    return dashboards(namespace, deployments, SLO)


@pytest.mark.parametrize("stack", ["prod", "local"])
def test_every_query_names_only_metrics_that_exist(stack: str) -> None:
    for board in boards(stack):
        for expr in board.expressions():
            names = metric_names(expr)
            assert names or expr.startswith("vector("), f"{board.uid}: {expr} selects no metric"
            unknown = names - set(KNOWN) - RECORDED
            assert not unknown, f"{board.uid}: {expr} names {unknown}, not in components/observability/metrics.py"


def test_every_query_parses(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule ($__rate_interval set to what Grafana would use)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is required in CI: apt-get install prometheus")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    exprs = [e for stack in ("prod", "local") for b in boards(stack) for e in b.expressions()]
    rules = [
        {"record": f"dashboard:query_{i}", "expr": e.replace("$__rate_interval", "1m")} for i, e in enumerate(exprs)
    ]
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(rules)} rules found" in done.stdout


def test_the_areas_the_issue_asks_for_are_there() -> None:
    prod = {b.uid: b for b in boards("prod")}
    assert set(prod) == {
        "llmfleet-latency",
        "llmfleet-throughput",
        "llmfleet-queue-kv",
        "llmfleet-gpus",
        "llmfleet-gateway",
        "llmfleet-cost",
    }
    local = {b.uid for b in boards("local")}
    assert "llmfleet-gpus" not in local, "a CPU-only region has no GPU dashboard"
    names = {n for b in prod.values() for e in b.expressions() for n in metric_names(e)}
    for needed in (
        "vllm:time_to_first_token_seconds",
        TPOT_P95,  # recorded from vllm:request_time_per_output_token_seconds
        "vllm:e2e_request_latency_seconds",
        "vllm:generation_tokens_total",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "envoy_http_downstream_rq_xx",
        "envoy_cluster_ratelimit_over_limit",
    ):
        assert needed in names, needed


def test_slo_targets_are_drawn_as_threshold_lines() -> None:
    latency = next(b for b in boards("prod") if b.uid == "llmfleet-latency").model()
    lines = {p["title"]: p["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"] for p in latency["panels"][:3]}
    assert lines == {"Time to first token": 1.5, "Time per output token": 0.05, "End-to-end latency": 30.0}
    json.dumps(latency)  # a Grafana JSON model is plain JSON


def test_cost_panel_prices_each_models_nodes_from_the_plan() -> None:
    _, deployments = plan_of("prod")
    cost = next(b for b in boards("prod") if b.uid == "llmfleet-cost")
    per_million = cost.panels[0].queries
    for plan in deployments:
        measured = next(q.expr for q in per_million if q.legend == f"{plan.model} (measured)")
        assert f"* {node_usd_per_hour(plan):g})" in measured
        assert f"/ {plan.replicas_per_node})" in measured
        assert f'model_name="{plan.model}"' in measured
        planned = next(q.expr for q in per_million if q.legend == f"{plan.model} (planned)")
        assert planned == f"vector({plan.usd_per_million_output_tokens:g})"
    assert node_usd_per_hour(deployments[0]) * deployments[0].nodes == pytest.approx(deployments[0].usd_per_hour)


def test_llama_cpp_cost_uses_its_own_counters() -> None:
    _, (plan,) = plan_of("local")
    assert plan.engine is Engine.LLAMA_CPP
    cost = next(b for b in boards("local") if b.uid == "llmfleet-cost")
    if not node_usd_per_hour(plan):
        assert not cost.panels[0].queries  # a laptop has no price
        return
    names = {n for q in cost.panels[0].queries for n in metric_names(q.expr)}
    assert names == {"llamacpp:requests_processing", "llamacpp:tokens_predicted_total"}


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket{a="b"}[5m]))',
            {"vllm:e2e_request_latency_seconds"},
        ),
        ("histogram_quantile(0.9, x_bucket)", {"x_bucket"}),  # not a known histogram: kept as written
        ('a / on(pod) group_left(node) b{c=~"d|e"} offset 5m', {"a", "b"}),
        ("sum without (pod) (rate(c_total[$__rate_interval])) > bool 1e3 unless vector(1)", {"c_total"}),
        ('label_replace(up, "x", "$1", "instance", "(.*)")', {"up"}),
    ],
)
def test_metric_names_reads_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


@pytest.mark.parametrize("stack", ["prod", "local"])
def test_the_queue_gauges_keda_scales_on_are_in_the_list(stack: str) -> None:
    """One list: the engines' autoscaling metric (components/inference) is one the list knows."""
    for plan in plan_of(stack)[1]:
        metric = engine_spec(plan).queue_metric
        assert metric in KNOWN and KNOWN[metric].kind is Kind.GAUGE, metric


def test_the_metric_list_follows_the_exporters_conventions() -> None:
    for name, metric in KNOWN.items():
        if name.startswith(("vllm:", "llamacpp:")) and metric.kind is Kind.COUNTER:
            assert name.endswith("_total"), name  # client_python exports counters with _total
        if metric.kind is not Kind.COUNTER:
            assert not name.endswith("_total"), name
    # vLLM's v1 names; the old ones match nothing on current servers.
    assert "vllm:gpu_cache_usage_perc" not in KNOWN and "vllm:num_preemptions" not in KNOWN


def test_a_deployed_mix_is_priced_part_by_part(tmp_path: Path) -> None:
    """Each part's pods at its own instance type's node price (the plan's), not the single type's: promtool
    evaluates the panel's query over pods of both parts."""
    from support.stacks import mixed_70b, write_mix

    name, spec = load_stack(None, write_mix(mixed_70b(), tmp_path))
    (plan,) = build_plan(name, spec).deployments
    assert len(plan.parts) == 2 and {p.instance_type for p in plan.parts} != {plan.instance_type}
    cost = next(b for b in dashboards(spec.namespace, [plan], SLO) if b.uid == "llmfleet-cost")
    (per_hour,) = cost.panels[1].queries
    for part in plan.parts:
        assert f"* {node_usd_per_hour(part):g}" in per_hour.expr
    # The parts' node prices differ, so pricing every pod at one type's price would miss the expected total below.
    assert node_usd_per_hour(plan.parts[0]) != node_usd_per_hour(plan.parts[1])
    planned = next(q.expr for q in cost.panels[0].queries if q.legend == "chat (planned)")
    tokens_per_hour = sum(p.replicas * p.output_tokens_per_s_per_replica for p in plan.parts) * 3600
    assert planned == f"vector({round(sum(p.usd_per_hour for p in plan.parts) / tokens_per_hour * 1e6, 4):g})"
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is required in CI: apt-get install prometheus")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    # Three pods of the first part (one of them of a rollout's second revision), one of the second.
    pods = [
        (plan.parts[0], "a", ""),
        (plan.parts[0], "b", ""),
        (plan.parts[0], "c", "-0a1b2c3d"),
        (plan.parts[1], "d", ""),
    ]
    series = [
        {
            "series": f'vllm:num_requests_running{{namespace="{spec.namespace}",model_name="chat",'
            f'service="chat-{part.part}{revision}",pod="{pod}"}}',
            "values": "1x5",
        }
        for part, pod, revision in pods
    ]
    expected = sum(
        math.ceil(n / part.replicas_per_node) * float(f"{node_usd_per_hour(part):g}")
        for part, n in ((plan.parts[0], 3), (plan.parts[1], 1))
    )
    test = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {"expr": per_hour.expr, "eval_time": "2m", "exp_samples": [{"labels": "{}", "value": expected}]}
                ],
            }
        ],
    }
    path = tmp_path / "cost_test.yaml"
    path.write_text(yaml.safe_dump(test))
    done = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
