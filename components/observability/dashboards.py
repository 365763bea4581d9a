"""Grafana dashboards (JSON models) for one region: latency, throughput, queue and KV cache, GPUs,
gateway, and cost per million tokens from the plan's prices.

Each becomes a ConfigMap labelled for Grafana's dashboard sidecar (component.py). Queries name
only metrics in metrics.KNOWN or rules.RECORDED (tested); SLO targets are drawn as threshold lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llmfleet.components.gateway.response_cache import HIT_METRIC, REQUESTS_METRIC
from llmfleet.components.observability.rules import E2E_P99, GATEWAY_SERIES, TPOT_P95, TTFT_P95, SloTargets, error_ratio
from llmfleet.components.sizing.plan import DeploymentPlan
from llmfleet.components.sizing.types import Engine

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
"""The Prometheus datasource kube-prometheus-stack provisions in its Grafana (uid `prometheus`)."""
RATE = "$__rate_interval"
SCHEMA_VERSION = 39
PANEL_WIDTH, PANEL_HEIGHT = 12, 8


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    queries: Sequence[Query]
    unit: str
    description: str
    threshold: float | None = None
    """Drawn as a red line (an SLO target or alert threshold)."""


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    panels: Sequence[Panel] = field(default_factory=tuple[Panel, ...])

    def model(self) -> dict[str, Any]:
        """The Grafana JSON model."""
        return {
            "uid": self.uid,
            "title": self.title,
            "tags": ["llmfleet"],
            "schemaVersion": SCHEMA_VERSION,
            "editable": False,
            "time": {"from": "now-6h", "to": "now"},
            "refresh": "30s",
            "panels": [_panel_model(i, p) for i, p in enumerate(self.panels)],
        }

    def expressions(self) -> list[str]:
        return [q.expr for p in self.panels for q in p.queries]


def _panel_model(index: int, panel: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit}
    if panel.threshold is not None:
        defaults["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": "green", "value": None}, {"color": "red", "value": panel.threshold}],
        }
        defaults["custom"] = {"thresholdsStyle": {"mode": "line"}}
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {
            "x": (index % 2) * PANEL_WIDTH,
            "y": (index // 2) * PANEL_HEIGHT,
            "w": PANEL_WIDTH,
            "h": PANEL_HEIGHT,
        },
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": q.expr, "legendFormat": q.legend}
            for i, q in enumerate(panel.queries)
        ],
    }


def dashboards(
    namespace: str,
    deployments: Sequence[DeploymentPlan],
    slo: SloTargets,
    *,
    routed: bool = False,
    cached: bool = False,
) -> list[Dashboard]:
    """The region's dashboards; GPU panels only where some model runs on GPUs, the endpoint pickers'
    only where some model is routed through an InferencePool, the response cache's only where it runs."""
    found = [
        _latency(namespace, slo),
        _throughput(namespace),
        _queue_and_cache(namespace),
        _gateway(slo),
        _cost(namespace, deployments),
    ]
    if any(d.gpu for d in deployments):
        found.insert(3, _gpus())
    if routed:
        found.append(_routing(namespace))
    if cached:
        found.append(_response_cache(namespace))
    return found


def _quantile(q: float, histogram: str, namespace: str) -> str:
    return (
        f"histogram_quantile({q}, sum by (model_name, le) "
        f'(rate({histogram}_bucket{{namespace="{namespace}"}}[{RATE}])))'
    )


def _latency(ns: str, slo: SloTargets) -> Dashboard:
    return Dashboard(
        "llmfleet-latency",
        "llmfleet / Latency",
        [
            Panel(
                "Time to first token",
                [
                    Query(TTFT_P95, "p95 {{model_name}}"),
                    Query(_quantile(0.5, "vllm:time_to_first_token_seconds", ns), "p50 {{model_name}}"),
                ],
                "s",
                "Arrival at vLLM to first token; the red line is the SLO's p95 target.",
                slo.ttft_p95_ms / 1000,
            ),
            Panel(
                "Time per output token",
                [
                    Query(TPOT_P95, "p95 per request {{model_name}}"),
                    Query(_quantile(0.95, "vllm:inter_token_latency_seconds", ns), "p95 per token {{model_name}}"),
                ],
                "s",
                "Mean time per output token of each request (the SLO's TPOT) and the per-token gap.",
                slo.tpot_p95_ms / 1000,
            ),
            Panel(
                "End-to-end latency",
                [
                    Query(E2E_P99, "p99 {{model_name}}"),
                    Query(_quantile(0.5, "vllm:e2e_request_latency_seconds", ns), "p50 {{model_name}}"),
                ],
                "s",
                "Arrival to last token; the red line is the SLO's p99 target.",
                slo.e2e_p99_ms / 1000,
            ),
            Panel(
                "Queue time",
                [Query(_quantile(0.95, "vllm:request_queue_time_seconds", ns), "p95 {{model_name}}")],
                "s",
                "Time requests wait for a batch slot: the part of TTFT autoscaling controls.",
            ),
        ],
    )


def _throughput(ns: str) -> Dashboard:
    selector = f'{{namespace="{ns}"}}'
    return Dashboard(
        "llmfleet-throughput",
        "llmfleet / Throughput and tokens",
        [
            Panel(
                "Finished requests",
                [
                    Query(
                        f"sum by (model_name, finished_reason) (rate(vllm:request_success_total{selector}[{RATE}]))",
                        "{{model_name}} {{finished_reason}}",
                    )
                ],
                "reqps",
                "Requests vLLM finished per second, by finish reason (stop, length, abort).",
            ),
            Panel(
                "Generated tokens",
                [
                    Query(
                        f"sum by (model_name) (rate(vllm:generation_tokens_total{selector}[{RATE}]))", "{{model_name}}"
                    ),
                    Query(f"sum by (service) (rate(llamacpp:tokens_predicted_total{selector}[{RATE}]))", "{{service}}"),
                ],
                "none",
                "Output tokens per second (vLLM by model, llama.cpp by Service).",
            ),
            Panel(
                "Prompt tokens",
                [
                    Query(f"sum by (model_name) (rate(vllm:prompt_tokens_total{selector}[{RATE}]))", "{{model_name}}"),
                    Query(f"sum by (service) (rate(llamacpp:prompt_tokens_total{selector}[{RATE}]))", "{{service}}"),
                ],
                "none",
                "Prompt tokens processed per second.",
            ),
            Panel(
                "Tokens per request",
                [
                    Query(
                        f"sum by (model_name) (rate(vllm:request_prompt_tokens_sum{selector}[{RATE}])) / "
                        f"sum by (model_name) (rate(vllm:request_prompt_tokens_count{selector}[{RATE}]))",
                        "prompt {{model_name}}",
                    ),
                    Query(
                        f"sum by (model_name) (rate(vllm:request_generation_tokens_sum{selector}[{RATE}])) / "
                        f"sum by (model_name) (rate(vllm:request_generation_tokens_count{selector}[{RATE}]))",
                        "output {{model_name}}",
                    ),
                ],
                "none",
                "Mean prompt and output length: compare with the load the plan was sized for.",
            ),
        ],
    )


def _queue_and_cache(ns: str) -> Dashboard:
    selector = f'{{namespace="{ns}"}}'
    return Dashboard(
        "llmfleet-queue-kv",
        "llmfleet / Queue and KV cache",
        [
            Panel(
                "Waiting and running requests",
                [
                    Query(f"sum by (model_name) (vllm:num_requests_waiting{selector})", "waiting {{model_name}}"),
                    Query(f"sum by (model_name) (vllm:num_requests_running{selector})", "running {{model_name}}"),
                    Query(f"sum by (service) (llamacpp:requests_deferred{selector})", "waiting {{service}}"),
                    Query(f"sum by (service) (llamacpp:requests_processing{selector})", "running {{service}}"),
                ],
                "none",
                "The waiting count is what KEDA scales on.",
            ),
            Panel(
                "KV-cache usage",
                [Query(f"max by (model_name, pod) (vllm:kv_cache_usage_perc{selector})", "{{pod}}")],
                "percentunit",
                "Share of KV-cache blocks in use per replica; near 100% requests wait and running ones are preempted.",
            ),
            Panel(
                "Preemptions",
                [
                    Query(
                        f"sum by (model_name) (rate(vllm:num_preemptions_total{selector}[{RATE}])) * 60",
                        "{{model_name}}",
                    )
                ],
                "none",
                "Requests preempted per minute for lack of KV-cache blocks.",
            ),
            Panel(
                "Prefix-cache hit ratio",
                [
                    Query(
                        f"sum by (model_name) (rate(vllm:prefix_cache_hits_total{selector}[{RATE}])) / "
                        f"sum by (model_name) (rate(vllm:prefix_cache_queries_total{selector}[{RATE}]))",
                        "{{model_name}}",
                    )
                ],
                "percentunit",
                "Share of prompt tokens served from the prefix cache.",
            ),
        ],
    )


def _routing(ns: str) -> Dashboard:
    """The endpoint pickers (one per routed model revision; `name` is the InferencePool, `service` the picker)."""
    selector = f'{{namespace="{ns}"}}'
    return Dashboard(
        "llmfleet-routing",
        "llmfleet / Routing (endpoint picker)",
        [
            Panel(
                "Ready pods per pool",
                [Query(f"max by (name) (inference_pool_ready_pods{selector})", "{{name}}")],
                "none",
                "Model server pods the picker can send requests to.",
            ),
            Panel(
                "Pool queue and KV cache",
                [
                    Query(f"max by (name) (inference_pool_average_queue_size{selector})", "queue {{name}}"),
                    Query(f"max by (name) (inference_pool_average_kv_cache_utilization{selector})", "KV use {{name}}"),
                ],
                "none",
                "Mean waiting requests and KV-cache use (0-1) over each pool, as the picker reads them.",
            ),
            Panel(
                "Picker prefix match (median)",
                [
                    Query(
                        "histogram_quantile(0.5, sum by (service, le) "
                        f"(rate(inference_extension_prefix_indexer_hit_ratio_bucket{selector}[{RATE}])))",
                        "{{service}}",
                    )
                ],
                "percentunit",
                "Share of each prompt's prefix the picker found on the pod it chose (its own index of what it sent "
                "where); compare with the prefix-cache hit ratio the servers report (Queue and KV cache).",
            ),
            Panel(
                "Scheduling time p95 and failures",
                [
                    Query(
                        "histogram_quantile(0.95, sum by (service, le) "
                        f"(rate(inference_extension_scheduler_e2e_duration_seconds_bucket{selector}[{RATE}])))",
                        "p95 {{service}}",
                    ),
                    Query(
                        "sum by (service) (rate(inference_extension_scheduler_attempts_total"
                        f'{{namespace="{ns}", status="failure"}}[{RATE}]))',
                        "failures/s {{service}}",
                    ),
                ],
                "s",
                "Time the picker adds before each request, and picks that found no pod.",
            ),
        ],
    )


def _gpus() -> Dashboard:
    return Dashboard(
        "llmfleet-gpus",
        "llmfleet / GPUs",
        [
            Panel(
                "GPU utilisation",
                [
                    Query("avg by (pod, gpu) (DCGM_FI_DEV_GPU_UTIL)", "{{pod}} gpu{{gpu}}"),
                    Query(
                        "avg by (pod, gpu) (DCGM_FI_PROF_GR_ENGINE_ACTIVE) * 100", "engine active {{pod}} gpu{{gpu}}"
                    ),
                ],
                "percent",
                "Utilisation (any kernel running) and the share of time the compute engine was busy.",
            ),
            Panel(
                "GPU memory",
                [
                    Query(
                        "100 * DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE)",
                        "{{pod}} gpu{{gpu}}",
                    )
                ],
                "percent",
                "Framebuffer in use; vLLM reserves gpu_memory_utilization of it at start.",
            ),
            Panel(
                "Memory bandwidth in use",
                [Query("avg by (pod, gpu) (DCGM_FI_PROF_DRAM_ACTIVE)", "{{pod}} gpu{{gpu}}")],
                "percentunit",
                "Decode is memory-bound: this is the decode capacity in use.",
            ),
            Panel(
                "Temperature, power and XID errors",
                [
                    Query("DCGM_FI_DEV_GPU_TEMP", "°C {{pod}} gpu{{gpu}}"),
                    Query("DCGM_FI_DEV_POWER_USAGE", "W {{pod}} gpu{{gpu}}"),
                    Query("DCGM_FI_DEV_XID_ERRORS", "last XID {{pod}} gpu{{gpu}}"),
                ],
                "none",
                "An XID code other than 0 is a driver-reported GPU error.",
            ),
        ],
    )


def _gateway(slo: SloTargets) -> Dashboard:
    traffic = GATEWAY_SERIES
    return Dashboard(
        "llmfleet-gateway",
        "llmfleet / Gateway",
        [
            Panel(
                "Responses by class",
                [
                    Query(
                        f"sum by (envoy_response_code_class) (rate(envoy_http_downstream_rq_xx{{{traffic}}}[{RATE}]))",
                        "{{envoy_response_code_class}}xx",
                    )
                ],
                "reqps",
                "What the gateway answered clients (4xx: auth, limits, bad requests; 5xx: failures).",
            ),
            Panel(
                "Error ratio (5xx)",
                [Query(error_ratio("5m"), "5m"), Query(error_ratio("1h"), "1h")],
                "percentunit",
                "Failed share of requests; the red line is the SLO's error budget.",
                slo.error_rate,
            ),
            Panel(
                "Client errors (4xx)",
                [
                    Query(
                        f'sum(rate(envoy_http_downstream_rq_xx{{{traffic},envoy_response_code_class="4"}}[{RATE}]))',
                        "4xx",
                    )
                ],
                "reqps",
                "Rejected requests: missing or bad keys (401/403), rate limits (429), bad input (400).",
            ),
            Panel(
                "Rate-limit rejections",
                [
                    Query(
                        f"sum by (envoy_cluster_name) (rate(envoy_cluster_ratelimit_over_limit[{RATE}]))",
                        "{{envoy_cluster_name}}",
                    )
                ],
                "reqps",
                "Requests over a tenant's request or token budget (answered 429).",
            ),
        ],
    )


def _response_cache(ns: str) -> Dashboard:
    """LiteLLM's counters (scraped in the gateway's namespace `ns`): hits over every request the proxy answered (its
    miss counter counts streamed misses only at the pinned release: response_cache.py REQUESTS_METRIC)."""
    hits = f'rate({HIT_METRIC}_total{{namespace="{ns}"}}[{RATE}])'
    requests = f'rate({REQUESTS_METRIC}_total{{namespace="{ns}"}}[{RATE}])'
    return Dashboard(
        "llmfleet-response-cache",
        "llmfleet / Response cache",
        [
            Panel(
                "Cache hit rate",
                [Query(f"sum({hits}) / sum({requests})", "hit rate")],
                "percentunit",
                "Share of the cached models' requests answered from the cache (requests it may not serve, e.g. "
                "non-deterministic ones, count as requests).",
            ),
            Panel(
                "Hits and requests by model",
                [
                    Query(f"sum by (model) ({hits})", "{{model}} hits"),
                    Query(f"sum by (requested_model) ({requests})", "{{requested_model}} requests"),
                ],
                "reqps",
                "Hits are answered by LiteLLM from its Redis; the rest go on to the model through the gateway.",
            ),
        ],
    )


def _serving_pods(plan: DeploymentPlan, ns: str) -> str:
    """Number of the model's server pods up (scraped), from a gauge every pod exports; for a part of a GPU mix, that
    part's pods only (its Service `<model>-<part>`, `-<revision>` appended during a rollout)."""
    if plan.engine is Engine.VLLM:
        part = f',service=~"{plan.model}-{plan.part}(-[0-9a-f]+)?"' if plan.part else ""
        gauge = f'vllm:num_requests_running{{namespace="{ns}",model_name="{plan.model}"{part}}}'
    else:
        gauge = f'llamacpp:requests_processing{{namespace="{ns}",service="{plan.model}"}}'
    return f"count(count by (pod) ({gauge}))"


def _generated_per_s(plan: DeploymentPlan, ns: str) -> str:
    if plan.engine is Engine.VLLM:
        counter = f'vllm:generation_tokens_total{{namespace="{ns}",model_name="{plan.model}"}}'
    else:
        counter = f'llamacpp:tokens_predicted_total{{namespace="{ns}",service="{plan.model}"}}'
    return f"sum(rate({counter}[{RATE}]))"


def node_usd_per_hour(plan: DeploymentPlan) -> float:
    """Price of one node of the plan (its `usd_per_hour` is for `nodes` nodes)."""
    return plan.usd_per_hour / plan.nodes if plan.nodes else 0.0


def _usd_per_hour(plan: DeploymentPlan, ns: str) -> str:
    """Nodes in use: the pods up, packed replicas_per_node to a node, each at the plan's node price. A deployed GPU
    mix sums its parts, each at its own instance type's price in the region and capacity type (a part with no pod up
    counts 0 rather than hiding the other's cost)."""
    if not plan.parts:
        return f"ceil({_serving_pods(plan, ns)} / {plan.replicas_per_node}) * {node_usd_per_hour(plan):g}"
    return " + ".join(
        f"(ceil({_serving_pods(part, ns)} / {part.replicas_per_node}) * {node_usd_per_hour(part):g} or vector(0))"
        for part in plan.parts
    )


def planned_usd_per_million(plan: DeploymentPlan) -> float:
    """The plan's $ per million output tokens at the load it was sized for; a deployed mix's from its parts'
    prices and rates (the plan's own figure is the single type's it beat)."""
    if not plan.parts:
        return plan.usd_per_million_output_tokens
    tokens_per_hour = sum(p.replicas * p.output_tokens_per_s_per_replica for p in plan.parts) * 3600
    return round(sum(p.usd_per_hour for p in plan.parts) / tokens_per_hour * 1e6, 4) if tokens_per_hour else 0.0


def _cost(ns: str, deployments: Sequence[DeploymentPlan]) -> Dashboard:
    per_million: list[Query] = []
    per_hour: list[Query] = []
    for plan in deployments:
        if not any(node_usd_per_hour(part) for part in plan.deployed):
            continue
        usd_per_hour = _usd_per_hour(plan, ns)
        per_hour.append(Query(usd_per_hour, plan.model))
        per_million.append(
            Query(f"({usd_per_hour}) / (3600 * {_generated_per_s(plan, ns)}) * 1e6", f"{plan.model} (measured)")
        )
        per_million.append(Query(f"vector({planned_usd_per_million(plan):g})", f"{plan.model} (planned)"))
    return Dashboard(
        "llmfleet-cost",
        "llmfleet / Cost",
        [
            Panel(
                "Cost per million output tokens",
                per_million,
                "currencyUSD",
                "Node-hours of the pods up at the plan's node price, over the tokens they generated; "
                "the planned figure assumes the load the plan was sized for.",
            ),
            Panel(
                "Serving cost per hour",
                per_hour,
                "currencyUSD",
                "Nodes the model's pods occupy at the plan's (on-demand or spot) price.",
            ),
        ],
    )
