"""Alert and recording rules derived from the stack's SLO (one PrometheusRule per region).

Latency alerts compare vLLM's histograms with the SLO's percentiles; the error rate is a
multi-window burn rate of the SLO's error budget on what clients see (the gateway's 5xx share):
the fast pair pages when the budget would be gone in about 2 days (1 h and 5 min windows above
14.4x), the slow pair warns at 5 days (6 h and 30 min above 6x) (Google SRE workbook, "Alerting on
SLOs", multiwindow multi-burn-rate alerts; the factors are its 2% and 5% of a 30-day budget).
Thresholds the SLO does not state (queue, KV cache, GPU memory, preemptions) come from
`AlertThresholds`. Every metric named here is in metrics.KNOWN or RECORDED.

Alert annotations name the thresholds and labels (and `$value` only where it is exact, the XID
code), so the promtool tests can state exactly what each alert says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llmfleet.components.sizing.types import Engine

GATEWAY_SERIES = 'envoy_http_conn_manager_prefix!~"eg-.*"'
"""Client traffic only: Envoy Gateway's own listeners (eg-stats-http, where Prometheus scrapes, and
eg-ready-http, the readiness probe) are not requests to the models."""

BURN_WINDOWS = ("5m", "30m", "1h", "6h")
"""The windows of the two burn-rate pairs (fast: 1h and 5m; slow: 6h and 30m)."""
FAST_BURN = 14.4
"""Budget spent 14.4x too fast: 2% of a 30-day budget in one hour (pages)."""
SLOW_BURN = 6.0
"""6x too fast: 5% of a 30-day budget in six hours (warns)."""
MAX_BURN_THRESHOLD = 0.5
"""With a large budget (error_rate above ~3.5%) 14.4x would exceed 100% of requests and could never
fire; half of all requests failing alerts whatever the budget."""

LATENCY_FOR = "10m"
QUEUE_FOR = "15m"
"""Longer than KEDA needs to add a replica and the replica to load: a queue that outlasts it means
autoscaling cannot keep up (at max replicas, or no GPU capacity)."""
SATURATION_FOR = "10m"
MISSING_FOR = "10m"
"""Longer than a replica takes to start and be scraped after a rollout."""
XID_WINDOW = "10m"
"""How long GPUXidError fires after the XID gauge changes to a new non-zero code. dcgm-exporter's
DCGM_FI_DEV_XID_ERRORS is a gauge holding the value of the last XID encountered (its
etc/default-counters.csv), not a count: it stays at that code after one event, so alerting on `> 0`
would fire until the driver or the exporter restarts. A repeat of the same code leaves the gauge
unchanged and cannot be seen here (the driver's kernel log has every event)."""


@dataclass(frozen=True)
class SloTargets:
    """The stack's SLO as plain numbers (infra.schema.slo.Slo)."""

    ttft_p95_ms: float
    tpot_p95_ms: float
    e2e_p99_ms: float
    error_rate: float
    """The error budget: the highest tolerated share of failed requests."""


@dataclass(frozen=True)
class AlertThresholds:
    """Alert thresholds the SLO does not state."""

    queue_depth_per_replica: int | None = None
    """Waiting requests per replica, sustained QUEUE_FOR; None: the model's autoscaling threshold."""
    kv_cache_usage_percent: float = 95
    """KV-cache blocks in use on one replica, sustained SATURATION_FOR (preemptions follow)."""
    gpu_memory_percent: float = 98
    """GPU framebuffer in use; must exceed what vLLM reserves (gpu_memory_utilization)."""
    preemptions_per_minute: float = 1
    """Preempted requests per minute for one model, sustained SATURATION_FOR."""


@dataclass(frozen=True)
class ServedModel:
    """What the rules need to know about one model of the region."""

    name: str
    """Served model name (vLLM's `model_name` label)."""
    service: str
    """The model's Service name (the `service` label the scrape adds; llama.cpp's series have no model label)."""
    engine: Engine
    queue_threshold: int
    """Waiting requests per replica at which KEDA scales out."""
    always_on: bool = True
    """At least one replica always runs (min_replicas > 0): its queue gauge must always be there."""


def error_ratio(window: str) -> str:
    return f"llmfleet:gateway_error_ratio:rate{window}"


TTFT_P95 = "llmfleet:vllm_time_to_first_token_seconds:p95"
TPOT_P95 = "llmfleet:vllm_time_per_output_token_seconds:p95"
E2E_P99 = "llmfleet:vllm_e2e_request_latency_seconds:p99"
RECORDED = frozenset({TTFT_P95, TPOT_P95, E2E_P99, *(error_ratio(w) for w in BURN_WINDOWS)})
"""The project's own series (recording rules): dashboards may name these too."""


def rule_groups(
    slo: SloTargets,
    thresholds: AlertThresholds,
    namespace: str,
    models: Sequence[ServedModel],
    gpus: bool,
) -> list[dict[str, Any]]:
    """The PrometheusRule's `spec.groups`: recordings, SLO alerts, capacity alerts and (with GPUs) GPU alerts."""
    groups = [
        {"name": "llmfleet.recording", "rules": _recordings(namespace)},
        {"name": "llmfleet.slo", "rules": _slo_alerts(slo)},
        {"name": "llmfleet.capacity", "rules": _capacity_alerts(thresholds, namespace, models)},
    ]
    if gpus:
        groups.append({"name": "llmfleet.gpu", "rules": _gpu_alerts(thresholds)})
    return groups


def _recordings(namespace: str) -> list[dict[str, Any]]:
    by_model = "namespace, model_name, le"
    selector = f'{{namespace="{namespace}"}}'

    def quantile(q: float, histogram: str) -> str:
        return f"histogram_quantile({q}, sum by ({by_model}) (rate({histogram}_bucket{selector}[5m])))"

    rules: list[dict[str, Any]] = [
        {"record": TTFT_P95, "expr": quantile(0.95, "vllm:time_to_first_token_seconds")},
        {"record": TPOT_P95, "expr": quantile(0.95, "vllm:request_time_per_output_token_seconds")},
        {"record": E2E_P99, "expr": quantile(0.99, "vllm:e2e_request_latency_seconds")},
    ]
    for window in BURN_WINDOWS:
        failed = f'sum(rate(envoy_http_downstream_rq_xx{{{GATEWAY_SERIES},envoy_response_code_class="5"}}[{window}]))'
        answered = f"sum(rate(envoy_http_downstream_rq_xx{{{GATEWAY_SERIES}}}[{window}]))"
        rules.append({"record": error_ratio(window), "expr": f"{failed} / {answered}"})
    return rules


def burn_threshold(error_rate: float, factor: float) -> float:
    """The error ratio that spends the budget `factor` times too fast (capped at MAX_BURN_THRESHOLD)."""
    return round(min(error_rate * factor, MAX_BURN_THRESHOLD), 6)


def _slo_alerts(slo: SloTargets) -> list[dict[str, Any]]:
    def latency(alert: str, series: str, target_ms: float, what: str) -> dict[str, Any]:
        return _alert(
            alert,
            f"{series} > {target_ms / 1000:g}",
            LATENCY_FOR,
            "warning",
            f"{what} of {{{{ $labels.model_name }}}} above the SLO's {target_ms:g} ms",
            f"{what} of model {{{{ $labels.model_name }}}} in namespace {{{{ $labels.namespace }}}} has been above "
            f"{target_ms:g} ms for {LATENCY_FOR}.",
        )

    fast = burn_threshold(slo.error_rate, FAST_BURN)
    slow = burn_threshold(slo.error_rate, SLOW_BURN)
    budget = f"{slo.error_rate:.2%}"
    return [
        latency("LLMTimeToFirstTokenSLO", TTFT_P95, slo.ttft_p95_ms, "TTFT p95"),
        latency("LLMTimePerOutputTokenSLO", TPOT_P95, slo.tpot_p95_ms, "TPOT p95"),
        latency("LLMEndToEndLatencySLO", E2E_P99, slo.e2e_p99_ms, "E2E p99"),
        _alert(
            "LLMErrorBudgetBurnFast",
            f"{error_ratio('1h')} > {fast:g} and {error_ratio('5m')} > {fast:g}",
            "2m",
            "critical",
            f"Gateway errors burn the {budget} error budget {FAST_BURN:g}x too fast",
            f"More than {fast:.2%} of requests failed (5xx) over the last hour and the last 5 minutes: "
            "at this rate a 30-day error budget is gone in about 2 days.",
        ),
        _alert(
            "LLMErrorBudgetBurnSlow",
            f"{error_ratio('6h')} > {slow:g} and {error_ratio('30m')} > {slow:g}",
            "15m",
            "warning",
            f"Gateway errors burn the {budget} error budget {SLOW_BURN:g}x too fast",
            f"More than {slow:.2%} of requests failed (5xx) over the last 6 hours and the last 30 minutes: "
            "at this rate a 30-day error budget is gone in 5 days.",
        ),
    ]


def _capacity_alerts(
    thresholds: AlertThresholds, namespace: str, models: Sequence[ServedModel]
) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for model in models:
        limit = thresholds.queue_depth_per_replica or model.queue_threshold
        if model.engine is Engine.VLLM:
            series = f'vllm:num_requests_waiting{{namespace="{namespace}",model_name="{model.name}"}}'
            expr = f"avg by (namespace, model_name) ({series})"
        else:
            series = f'llamacpp:requests_deferred{{namespace="{namespace}",service="{model.service}"}}'
            expr = f"avg by (namespace, service) ({series})"
        rules.append(
            _alert(
                "LLMQueueBacklog",
                f"{expr} > {limit}",
                QUEUE_FOR,
                "warning",
                f"Requests for {model.name} keep queueing: autoscaling is not keeping up",
                f"More than {limit} requests per replica of {model.name} have waited for a slot for {QUEUE_FOR}; "
                "check the replica count against max_replicas and pending pods for GPU capacity.",
                {"model": model.name},
            )
        )
        if model.always_on:
            rules.append(
                _alert(
                    "LLMQueueMetricMissing",
                    f"absent({series})",
                    MISSING_FOR,
                    "warning",
                    f"No queue metric from {model.name}: autoscaling is blind",
                    f"Prometheus has had no queue gauge from {model.name} for {MISSING_FOR} although a replica "
                    "should always run: KEDA cannot scale it. Check the pods, the ServiceMonitor llmfleet-inference "
                    "and NetworkPolicies on the metrics port.",
                    {"model": model.name},
                )
            )
    kv = thresholds.kv_cache_usage_percent
    selector = f'{{namespace="{namespace}"}}'
    rules.append(
        _alert(
            "LLMKVCacheNearlyFull",
            f"max by (namespace, model_name, pod) (vllm:kv_cache_usage_perc{selector}) > {kv / 100:g}",
            SATURATION_FOR,
            "warning",
            f"KV cache of {{{{ $labels.pod }}}} above {kv:g}%",
            f"Replica {{{{ $labels.pod }}}} of {{{{ $labels.model_name }}}} has used more than {kv:g}% of its "
            f"KV cache for {SATURATION_FOR}: new requests queue and running ones get preempted.",
        )
    )
    per_minute = thresholds.preemptions_per_minute
    rules.append(
        _alert(
            "LLMPreemptions",
            f"sum by (namespace, model_name) (rate(vllm:num_preemptions_total{selector}[5m])) * 60 > {per_minute:g}",
            SATURATION_FOR,
            "warning",
            "{{ $labels.model_name }} preempts requests",
            f"{{{{ $labels.model_name }}}} has preempted more than {per_minute:g} requests per minute for "
            f"{SATURATION_FOR}: its KV cache is too small for the load (more replicas, or a shorter context).",
        )
    )
    return rules


def _gpu_alerts(thresholds: AlertThresholds) -> list[dict[str, Any]]:
    memory = thresholds.gpu_memory_percent
    return [
        _alert(
            "GPUMemoryNearlyFull",
            f"100 * DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE) > {memory:g}",
            SATURATION_FOR,
            "warning",
            f"GPU {{{{ $labels.UUID }}}} above {memory:g}% memory",
            f"GPU {{{{ $labels.gpu }}}} ({{{{ $labels.UUID }}}}) has used more than {memory:g}% of its "
            f"memory for {SATURATION_FOR}, beyond what vLLM reserves: out-of-memory errors are likely.",
        ),
        _alert(
            "GPUXidError",
            f"DCGM_FI_DEV_XID_ERRORS > 0 and changes(DCGM_FI_DEV_XID_ERRORS[{XID_WINDOW}]) > 0",
            "0m",
            "critical",
            "GPU {{ $labels.UUID }} reported an XID error",
            "The NVIDIA driver reported XID error {{ $value }} on GPU {{ $labels.gpu }} ({{ $labels.UUID }}) "
            f"in the last {XID_WINDOW}: look the code up in NVIDIA's XID catalogue; many need the node drained "
            "and the GPU reset.",
        ),
    ]


def _alert(
    name: str,
    expr: str,
    for_: str,
    severity: str,
    summary: str,
    description: str,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity, **(labels or {})},
        "annotations": {"summary": summary, "description": description},
    }
