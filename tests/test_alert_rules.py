"""The SLO's alert rules under promtool: every group passes `promtool check rules`, and with synthetic
series each alert fires when its condition holds and stays silent when it does not (`promtool test rules`).

promtool comes with the Debian package `prometheus`; without it these tests skip, except in CI
(env CI set), where a missing promtool is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmfleet.components.observability.metrics import KNOWN, metric_names
from llmfleet.components.observability.rules import (
    RECORDED,
    AlertThresholds,
    ServedModel,
    SloTargets,
    burn_threshold,
    rule_groups,
)
from llmfleet.components.sizing.types import Engine

PROMTOOL = shutil.which("promtool")
NS = "llmfleet"
SLO = SloTargets(ttft_p95_ms=800, tpot_p95_ms=60, e2e_p99_ms=30_000, error_rate=0.01)
MODELS = [
    ServedModel("chat", "chat", Engine.VLLM, 3),
    ServedModel("tiny", "tiny", Engine.LLAMA_CPP, 2),
    ServedModel("spare", "spare", Engine.VLLM, 3, always_on=False),  # scales to zero
]
GROUPS = rule_groups(SLO, AlertThresholds(), NS, MODELS, gpus=True)


def promtool() -> str:
    if PROMTOOL is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is required in CI: apt-get install prometheus")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return PROMTOOL


def run_promtool(*args: str, cwd: Path) -> str:
    done = subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"promtool {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def rules_by_alert(groups: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for group in groups:
        for rule in group["rules"]:
            if "alert" in rule:
                found.setdefault(rule["alert"], []).append(rule)
    return found


ALERTS = rules_by_alert(GROUPS)


def annotations(alert: str, labels: dict[str, str], value: str = "", index: int = 0) -> dict[str, str]:
    """The rule's annotations as Prometheus expands them for an alert with these labels."""

    def expand(text: str) -> str:
        text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)
        return text.replace("{{ $value }}", value)

    return {k: expand(v) for k, v in ALERTS[alert][index]["annotations"].items()}


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{text}}}", "values": values}


def histogram(name: str, target_s: float, slow: bool, minutes: int = 30) -> list[dict[str, str]]:
    """10 requests a minute, all in (target, 2 x target] when slow, all at or below target / 2 otherwise."""
    counts = {target_s / 2: not slow, target_s: not slow, target_s * 2: True, float("inf"): True}
    return [
        series(
            f"{name}_bucket",
            f"0+{10 if counted else 0}x{minutes}",
            namespace=NS,
            model_name="chat",
            le="+Inf" if le == float("inf") else f"{le:g}",
        )
        for le, counted in counts.items()
    ]


def case(
    alert: str,
    inputs: list[dict[str, str]],
    eval_minutes: int,
    expected: list[dict[str, str]],
    value: str = "",
) -> dict[str, Any]:
    """A promtool test: input samples a minute apart; at `eval_minutes` exactly the alerts with
    `expected` labels are firing."""
    return {
        "interval": "1m",
        "input_series": inputs,
        "alert_rule_test": [
            {
                "eval_time": f"{eval_minutes}m",
                "alertname": alert,
                "exp_alerts": [
                    {"exp_labels": labels, "exp_annotations": annotations(alert, labels, value, index)}
                    for labels, index in ((labels, _rule_index(alert, labels)) for labels in expected)
                ],
            }
        ],
    }


def _rule_index(alert: str, labels: dict[str, str]) -> int:
    """Which of an alert's rules (one per model for the queue) produced an alert with these labels."""
    for index, rule in enumerate(ALERTS[alert]):
        if all(labels.get(k) == v for k, v in rule["labels"].items()):
            return index
    raise AssertionError(f"no {alert} rule has labels {labels}")


def model_labels(severity: str = "warning", **extra: str) -> dict[str, str]:
    return {"severity": severity, "namespace": NS, "model_name": "chat", **extra}


def gateway(ok_per_min: int, failed_per_min: int, minutes: int, prefix: str = "https-10443") -> list[dict[str, str]]:
    """Gateway response counters of one listener over `minutes`."""
    labels = {"namespace": "envoy-gateway-system", "envoy_http_conn_manager_prefix": prefix}
    per_minute = {"2": ok_per_min, "5": failed_per_min}
    return [
        series("envoy_http_downstream_rq_xx", f"0+{rate}x{minutes}", envoy_response_code_class=code, **labels)
        for code, rate in per_minute.items()
    ]


def latency_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for alert, metric, target_ms in (
        ("LLMTimeToFirstTokenSLO", "vllm:time_to_first_token_seconds", SLO.ttft_p95_ms),
        ("LLMTimePerOutputTokenSLO", "vllm:request_time_per_output_token_seconds", SLO.tpot_p95_ms),
        ("LLMEndToEndLatencySLO", "vllm:e2e_request_latency_seconds", SLO.e2e_p99_ms),
    ):
        cases.append(case(alert, histogram(metric, target_ms / 1000, slow=True), 20, [model_labels()]))
        cases.append(case(alert, histogram(metric, target_ms / 1000, slow=False), 20, []))
    # Slow for less than the rule's `for` (10 minutes): not yet.
    cases.append(case("LLMTimeToFirstTokenSLO", histogram("vllm:time_to_first_token_seconds", 0.8, True, 8), 8, []))
    return cases


def burn_cases() -> list[dict[str, Any]]:
    fast = burn_threshold(SLO.error_rate, 14.4)
    slow = burn_threshold(SLO.error_rate, 6)
    assert (fast, slow) == (0.144, 0.06)
    spike = [  # 80 minutes without errors, then 5 minutes with half the requests failing
        series(
            "envoy_http_downstream_rq_xx",
            "0+100x80 8000+50x5",
            namespace="envoy-gateway-system",
            envoy_http_conn_manager_prefix="https-10443",
            envoy_response_code_class="2",
        ),
        series(
            "envoy_http_downstream_rq_xx",
            "0+0x80 0+50x5",
            namespace="envoy-gateway-system",
            envoy_http_conn_manager_prefix="https-10443",
            envoy_response_code_class="5",
        ),
    ]
    return [
        # 20% failing for 90 minutes: above 14.4 x 1% in both windows.
        case("LLMErrorBudgetBurnFast", gateway(80, 20, 90), 80, [{"severity": "critical"}]),
        # 10% failing: below the fast threshold (silent) but above the slow one (fires).
        case("LLMErrorBudgetBurnFast", gateway(90, 10, 90), 80, []),
        # (A rate over 6 h uses the samples there are: 90 minutes of them show the same ratio.)
        case("LLMErrorBudgetBurnSlow", gateway(90, 10, 90), 80, [{"severity": "warning"}]),
        # 3% failing: within 6 x 1%, so even the slow burn stays silent.
        case("LLMErrorBudgetBurnSlow", gateway(97, 3, 90), 80, []),
        # A 5-minute spike after a clean hour: the 5 m window is high, the 1 h window is not.
        case("LLMErrorBudgetBurnFast", spike, 85, []),
        # Errors on Envoy Gateway's own stats listener are not client traffic.
        case("LLMErrorBudgetBurnFast", gateway(100, 0, 90) + gateway(0, 50, 90, prefix="eg-stats-http"), 80, []),
    ]


def capacity_cases() -> list[dict[str, Any]]:
    waiting = "vllm:num_requests_waiting"
    deferred = "llamacpp:requests_deferred"
    kv = "vllm:kv_cache_usage_perc"
    chat_pod = {"namespace": NS, "model_name": "chat", "pod": "chat-0"}
    tiny_pod = {"namespace": NS, "service": "tiny", "pod": "tiny-0"}
    return [
        # chat scales out at 3 waiting per replica, tiny at 2: sustained above that for 15 minutes alerts.
        case("LLMQueueBacklog", [series(waiting, "10x30", **chat_pod)], 25, [model_labels(model="chat")]),
        case("LLMQueueBacklog", [series(waiting, "2x30", **chat_pod)], 25, []),
        case(
            "LLMQueueBacklog",
            [series(deferred, "5x30", **tiny_pod)],
            25,
            [{"severity": "warning", "namespace": NS, "service": "tiny", "model": "tiny"}],
        ),
        case("LLMQueueBacklog", [series(deferred, "1x30", **tiny_pod)], 25, []),
        # A model that always runs but exports no queue gauge: KEDA is blind (`spare` may scale to zero).
        case("LLMQueueMetricMissing", [series(deferred, "1x30", **tiny_pod)], 15, [model_labels(model="chat")]),
        case(
            "LLMQueueMetricMissing",
            [series(waiting, "1x30", **chat_pod)],
            15,
            [{"severity": "warning", "namespace": NS, "service": "tiny", "model": "tiny"}],
        ),
        case(
            "LLMQueueMetricMissing", [series(waiting, "1x30", **chat_pod), series(deferred, "1x30", **tiny_pod)], 15, []
        ),
        # Another namespace's vLLM is not ours.
        case("LLMQueueBacklog", [series(waiting, "10x30", namespace="other", model_name="chat", pod="x")], 25, []),
        case("LLMKVCacheNearlyFull", [series(kv, "0.97x30", **chat_pod)], 20, [model_labels(pod="chat-0")]),
        case("LLMKVCacheNearlyFull", [series(kv, "0.9x30", **chat_pod)], 20, []),
        case("LLMPreemptions", [series("vllm:num_preemptions_total", "0+5x30", **chat_pod)], 20, [model_labels()]),
        case("LLMPreemptions", [series("vllm:num_preemptions_total", "0+0.5x30", **chat_pod)], 20, []),
    ]


def gpu_cases() -> list[dict[str, Any]]:
    gpu = {"gpu": "0", "UUID": "GPU-1b2c", "Hostname": "ip-10-0-1-5", "namespace": NS, "pod": "chat-0"}

    def memory(used: int, free: int) -> list[dict[str, str]]:
        return [series("DCGM_FI_DEV_FB_USED", f"{used}x30", **gpu), series("DCGM_FI_DEV_FB_FREE", f"{free}x30", **gpu)]

    xid_alert = [{"severity": "critical", **gpu}]
    return [
        case("GPUMemoryNearlyFull", memory(79_000, 1_000), 20, [{"severity": "warning", **gpu}]),
        # vLLM's own reservation (92% here) is normal.
        case("GPUMemoryNearlyFull", memory(75_000, 5_000), 20, []),
        case("GPUXidError", [series("DCGM_FI_DEV_XID_ERRORS", "0 0 79x10", **gpu)], 5, xid_alert, value="79"),
        case("GPUXidError", [series("DCGM_FI_DEV_XID_ERRORS", "0x10", **gpu)], 5, []),
        # The gauge keeps the last code after one event: the alert resolves once the change is older
        # than its window, however long the value stays...
        case("GPUXidError", [series("DCGM_FI_DEV_XID_ERRORS", "0 0 79x30", **gpu)], 9, xid_alert, value="79"),
        case("GPUXidError", [series("DCGM_FI_DEV_XID_ERRORS", "0 0 79x30", **gpu)], 13, []),
        case("GPUXidError", [series("DCGM_FI_DEV_XID_ERRORS", "0 0 79x30", **gpu)], 30, []),
        # ...a new code fires again, and the gauge going back to 0 (driver reload) does not.
        case("GPUXidError", [series("DCGM_FI_DEV_XID_ERRORS", "0 0 79x15 48x10", **gpu)], 20, xid_alert, value="48"),
        case("GPUXidError", [series("DCGM_FI_DEV_XID_ERRORS", "79x15 0x10", **gpu)], 20, []),
    ]


def write_rules(directory: Path, groups: list[dict[str, Any]]) -> Path:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def test_every_rule_group_passes_promtool_check(tmp_path: Path) -> None:
    path = write_rules(tmp_path, GROUPS)
    out = run_promtool("check", "rules", str(path), cwd=tmp_path)
    rules = sum(len(g["rules"]) for g in GROUPS)
    assert f"{rules} rules found" in out


def test_each_alert_fires_when_its_condition_holds_and_not_otherwise(tmp_path: Path) -> None:
    write_rules(tmp_path, GROUPS)
    cases = latency_cases() + burn_cases() + capacity_cases() + gpu_cases()
    tested = {c["alert_rule_test"][0]["alertname"] for c in cases}
    assert tested == set(ALERTS), f"alerts without a promtool test: {set(ALERTS) - tested}"
    for alert in ALERTS:  # each alert is shown both firing and silent
        outcomes = {
            bool(c["alert_rule_test"][0]["exp_alerts"]) for c in cases if c["alert_rule_test"][0]["alertname"] == alert
        }
        assert outcomes == {True, False}, alert
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": cases}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    run_promtool("test", "rules", "tests.yaml", cwd=tmp_path)


def test_promtool_catches_a_wrong_expectation(tmp_path: Path) -> None:
    """The harness can fail: the TTFT alert expected to fire on fast requests is reported."""
    write_rules(tmp_path, GROUPS)
    wrong = case("LLMTimeToFirstTokenSLO", histogram("vllm:time_to_first_token_seconds", 0.8, slow=False), 20, [])
    wrong["alert_rule_test"][0]["exp_alerts"] = [{"exp_labels": model_labels()}]
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [wrong]}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    done = subprocess.run(
        [promtool(), "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and "LLMTimeToFirstTokenSLO" in done.stdout + done.stderr


def test_rules_carry_the_slo_and_thresholds() -> None:
    slo = SloTargets(ttft_p95_ms=1500, tpot_p95_ms=50, e2e_p99_ms=20_000, error_rate=0.005)
    groups = rule_groups(slo, AlertThresholds(queue_depth_per_replica=7, kv_cache_usage_percent=90), NS, MODELS, False)
    alerts = rules_by_alert(groups)
    assert alerts["LLMTimeToFirstTokenSLO"][0]["expr"].endswith("> 1.5")
    assert alerts["LLMTimePerOutputTokenSLO"][0]["expr"].endswith("> 0.05")
    assert alerts["LLMEndToEndLatencySLO"][0]["expr"].endswith("> 20")
    assert "> 0.072 and" in alerts["LLMErrorBudgetBurnFast"][0]["expr"]  # 14.4 x 0.5%
    assert "> 0.03 and" in alerts["LLMErrorBudgetBurnSlow"][0]["expr"]  # 6 x 0.5%
    assert [r["expr"].rsplit(" ", 1)[1] for r in alerts["LLMQueueBacklog"]] == ["7", "7", "7"]
    assert [r["labels"]["model"] for r in alerts["LLMQueueMetricMissing"]] == ["chat", "tiny"]  # not `spare`
    assert alerts["LLMKVCacheNearlyFull"][0]["expr"].endswith("> 0.9")
    assert "GPUXidError" not in alerts and "GPUMemoryNearlyFull" not in alerts  # no GPUs, no GPU rules


def test_a_large_error_budget_still_alerts() -> None:
    """14.4 x 10% would need 144% of requests failing; the threshold is capped so the alert can fire."""
    assert burn_threshold(0.1, 14.4) == 0.5
    assert burn_threshold(0.0, 14.4) == 0.0


def test_rules_name_only_known_metrics() -> None:
    for group in GROUPS:
        for rule in group["rules"]:
            unknown = metric_names(rule["expr"]) - set(KNOWN) - RECORDED
            assert not unknown, f"{rule.get('alert') or rule.get('record')}: unknown metrics {unknown}"
