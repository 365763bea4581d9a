"""The one list of the metrics the project relies on, as the exporters name them, with their sources.

Alert rules and dashboards may name only these (and the project's own recorded series, rules.py);
the tests check every expression against this list with `metric_names`, so a misspelt or renamed
metric fails a test instead of silently matching nothing.

Sources (upstream, at the pinned releases):
- vLLM: vllm/v1/metrics/loggers.py (PrometheusStatLogger) and docs/design/metrics.md; the names and types
  of the pinned release are vendored in components/inference/data/ and the tests hold these to them. Labels
  `model_name`, `engine`; counters carry `_total`. Renamed in v1: `gpu_cache_usage_perc` ->
  `kv_cache_usage_perc`, `time_per_output_token_seconds` -> `inter_token_latency_seconds` (per
  token); `request_time_per_output_token_seconds` is the per-request mean, the TPOT the Locust
  gate measures ((E2E - TTFT) / (n_out - 1), docs/loadtesting.md).
- llama.cpp: tools/server/server.cpp, `/metrics` with `--metrics`; no model label (the scrape adds
  `service`, the model's Service name).
- DCGM: dcgm-exporter's default-counters.csv up to 4.8.x (4.9 renames the defaults: see dcgm.py).
- Envoy (Envoy Gateway's proxies, /stats/prometheus on port 19001): Envoy's statistics with the
  default tag extraction, e.g. `http.<prefix>.downstream_rq_5xx` ->
  `envoy_http_downstream_rq_xx{envoy_response_code_class="5"}`; the HTTP rate limit filter counts
  rejections in `cluster.<route target cluster>.ratelimit.over_limit`. Envoy's counters keep
  Envoy's names (no `_total` added).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from llmfleet.components.gateway.response_cache import HIT_METRIC, REQUESTS_METRIC


class Kind(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Kind
    exporter: str
    meaning: str


def _metrics(exporter: str, *entries: tuple[str, Kind, str]) -> dict[str, Metric]:
    return {name: Metric(name, kind, exporter, meaning) for name, kind, meaning in entries}


C, G, H = Kind.COUNTER, Kind.GAUGE, Kind.HISTOGRAM

VLLM = _metrics(
    "vllm",
    ("vllm:num_requests_running", G, "Requests in the running batch."),
    ("vllm:num_requests_waiting", G, "Requests queued for a batch slot (what KEDA scales on)."),
    ("vllm:kv_cache_usage_perc", G, "Fraction of KV-cache blocks in use, 0 to 1."),
    ("vllm:prompt_tokens_total", C, "Prompt tokens processed."),
    ("vllm:generation_tokens_total", C, "Tokens generated."),
    ("vllm:request_success_total", C, "Finished requests, label finished_reason (stop, length, abort)."),
    ("vllm:num_preemptions_total", C, "Requests preempted for lack of KV-cache blocks (recomputed later)."),
    ("vllm:prefix_cache_queries_total", C, "Prefix-cache lookups, in tokens."),
    ("vllm:prefix_cache_hits_total", C, "Prefix-cache hits, in tokens."),
    ("vllm:time_to_first_token_seconds", H, "Arrival to first token, per request."),
    ("vllm:inter_token_latency_seconds", H, "Time between successive tokens, per token."),
    ("vllm:request_time_per_output_token_seconds", H, "Mean time per output token of each request."),
    ("vllm:e2e_request_latency_seconds", H, "Arrival to last token, per request."),
    ("vllm:request_queue_time_seconds", H, "Time spent waiting for a batch slot, per request."),
    ("vllm:request_prompt_tokens", H, "Prompt length of each request."),
    ("vllm:request_generation_tokens", H, "Generated length of each request."),
)

LLAMA_CPP = _metrics(
    "llama.cpp",
    ("llamacpp:prompt_tokens_total", C, "Prompt tokens processed."),
    ("llamacpp:tokens_predicted_total", C, "Tokens generated."),
    ("llamacpp:requests_processing", G, "Requests holding a slot."),
    ("llamacpp:requests_deferred", G, "Requests waiting for a free slot (what KEDA scales on)."),
)

DCGM = _metrics(
    "dcgm-exporter",
    ("DCGM_FI_DEV_GPU_UTIL", G, "GPU utilisation, percent."),
    ("DCGM_FI_DEV_FB_USED", G, "Framebuffer memory used, MiB."),
    ("DCGM_FI_DEV_FB_FREE", G, "Framebuffer memory free, MiB."),
    ("DCGM_FI_DEV_GPU_TEMP", G, "GPU temperature, degrees C."),
    ("DCGM_FI_DEV_POWER_USAGE", G, "Power draw, W."),
    ("DCGM_FI_DEV_XID_ERRORS", G, "Code of the last XID error the driver reported (0: none)."),
    ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", G, "Fraction of time the graphics/compute engine was active."),
    ("DCGM_FI_PROF_DRAM_ACTIVE", G, "Fraction of cycles the memory interface was busy."),
)

ENVOY = _metrics(
    "envoy",
    ("envoy_http_downstream_rq_xx", C, "Responses to clients by envoy_response_code_class (1-5)."),
    ("envoy_http_downstream_rq_total", C, "Requests from clients."),
    ("envoy_cluster_ratelimit_over_limit", C, "Requests the global rate limit rejected (429), per route cluster."),
)

PICKER = _metrics(
    "endpoint picker",
    ("inference_pool_ready_pods", G, "Ready pods of an InferencePool, label name (the pool)."),
    ("inference_pool_average_queue_size", G, "Mean waiting requests over the pool's model servers."),
    ("inference_pool_average_kv_cache_utilization", G, "Mean KV-cache use over the pool's model servers, 0 to 1."),
    ("inference_extension_scheduler_e2e_duration_seconds", H, "Time the picker took to choose a pod."),
    ("inference_extension_scheduler_attempts_total", C, "Picks, label status (success, failure)."),
    ("inference_extension_prefix_indexer_hit_ratio", H, "Share of a prompt's prefix the picker's index matched."),
)
"""The Gateway API Inference Extension's endpoint picker at the pinned chart's release (v1.5.0:
pkg/epp/metrics/metrics.go; site-src/guides/metrics-and-observability.md), scraped by the chart's
ServiceMonitor; counters keep their names (Go client)."""

LITELLM = _metrics(
    "litellm",
    (f"{HIT_METRIC}_total", C, "Requests LiteLLM answered from its cache, label `model`."),
    (f"{REQUESTS_METRIC}_total", C, "Every request the proxy answered, hits included, label `requested_model`."),
)
"""LiteLLM's proxy (the response cache, components/gateway/cache_deploy.py), its Prometheus callback on the proxy's
/metrics at the pinned 1.108.5: litellm/integrations/prometheus.py (counters of prometheus_client, which appends
`_total`), labels from litellm/types/integrations/prometheus.py (`_cache_metric_labels`: `model`;
`litellm_proxy_total_requests_metric`: `requested_model`, the model group clients name). Not
`litellm_cache_misses_metric`: it counts streamed misses only at that release (response_cache.py REQUESTS_METRIC)."""

KNOWN: dict[str, Metric] = {**VLLM, **LLAMA_CPP, **DCGM, **ENVOY, **PICKER, **LITELLM}
"""Every exporter metric the project's rules and dashboards may name."""

HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")

# PromQL words that look like metric names but are not.
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"inf", "nan", "atan2"}
)
_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}|\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w:]|\s*\()")
"""A whole name (no backtracking into a shorter one) that is not followed by `(` (a function)."""


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects, histogram series folded to their histogram.

    A small lexer rather than a parser: strings, label matchers, ranges and grouping clauses are
    removed, then every identifier that is not a function, keyword or Grafana variable is a metric
    name. (`promtool check rules` proves the expressions parse; this only reads the names.)
    """
    text = _STRINGS.sub('""', expr)
    text = _BRACES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names: set[str] = set()
    for match in _IDENTIFIER.finditer(text):
        word = match.group(1)
        if word.lower() in _KEYWORDS:
            continue
        names.add(_fold_histogram(word))
    return names


def _fold_histogram(name: str) -> str:
    for suffix in HISTOGRAM_SERIES:
        base = name.removesuffix(suffix)
        if base != name and base in KNOWN and KNOWN[base].kind is Kind.HISTOGRAM:
            return base
    return name
