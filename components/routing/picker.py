"""The endpoint picker's configuration: which scorers rank a model's replicas, and how much each counts.

The picker (EPP) of the Gateway API Inference Extension scores every ready pod of an InferencePool
for each request and sends the request to the best one. The scorers and their default weights are
the upstream chart's own default configuration (config/charts/epplib/templates/_config.yaml at the
pinned tag), so a stack that sets nothing runs exactly what upstream ships:

- `prefix-cache-scorer` (3): the share of the prompt's blocks the picker last sent to that pod (the
  picker's approximate index of each pod's prefix cache, per-pod LRU, block hashes like vLLM's);
- `queue-scorer` (2): fewer waiting requests (`vllm:num_requests_waiting`) is better;
- `kv-cache-utilization-scorer` (2): more free KV cache (1 - `vllm:kv_cache_usage_perc`) is better.

Every scorer gives each pod a score in [0, 1]; the picker adds them times their weights and takes the
highest. Weights are relative: prefix 3 vs queue 2 means a pod holding the whole prefix wins over an
idle pod holding none unless its queue is the longest by a wide margin.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

PLUGINS_FILE = "llmfleet-plugins.yaml"
"""Key of the picker's configuration in the chart's ConfigMap (`inferenceExtension.pluginsCustomConfig`),
selected with `inferenceExtension.pluginsConfigFile`."""
EXT_PROC_PORT = 9002
"""The picker's gRPC ext_proc port (the chart's `inferenceExtension.extProcPort` default)."""
METRICS_PORT = 9090
"""The picker's own Prometheus metrics port (the chart's Service port `http-metrics`)."""
PICKER_SELECTOR_LABEL = "inferencepool"
"""Label the chart puts on the picker's pods: `inferencepool: <release>-epp`."""
PICKER_RESOURCES = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}
"""The chart asks 4 CPUs and 8 GiB per picker (sized upstream for scale tests at high QPS): more than a
whole default system node (m6i.xlarge, 4 vCPUs), so the pod would never schedule there. One picker per
model revision here asks for half a CPU; raise it with `chart_values` (inferenceExtension.resources)."""


@dataclass(frozen=True)
class ScorerWeights:
    """Relative weights of the picker's scorers (0 drops a scorer)."""

    prefix_cache: int = 3
    """Prefix-cache affinity: requests go where their prompt's prefix was sent before (upstream default 3)."""
    queue: int = 2
    """Queue depth: fewer waiting requests scores higher (upstream default 2)."""
    kv_cache_utilization: int = 2
    """KV-cache use: more free KV cache scores higher (upstream default 2)."""

    def __post_init__(self) -> None:
        weights = (self.prefix_cache, self.queue, self.kv_cache_utilization)
        if min(weights) < 0 or not any(weights):
            raise ValueError(f"scorer weights must be >= 0 and not all 0 (got {weights})")

    def by_plugin(self) -> dict[str, int]:
        """Upstream plugin type -> weight, for the scorers that count."""
        weights = {
            "prefix-cache-scorer": self.prefix_cache,
            "queue-scorer": self.queue,
            "kv-cache-utilization-scorer": self.kv_cache_utilization,
        }
        return {plugin: weight for plugin, weight in weights.items() if weight > 0}


@dataclass(frozen=True)
class RoutingOptions:
    """How one model's requests are spread over its replicas by the endpoint picker."""

    weights: ScorerWeights = field(default_factory=ScorerWeights)
    """How the picker ranks the pods (prefix-cache affinity, queue depth, free KV cache)."""
    picker_replicas: int = 1
    """Picker replicas; more than one runs active-passive (leader election), for availability only."""
    chart_values: Mapping[str, Any] | None = None
    """Escape hatch: deep-merged into the chart values (e.g. `inferenceExtension.resources`)."""


def plugins_config(weights: ScorerWeights) -> dict[str, Any]:
    """The picker's EndpointPickerConfig: upstream's default for vLLM with these weights.

    The metrics data source and extractor are the chart's defaults (scrape `/metrics` over http, vLLM's
    metric names); they feed the queue and KV-cache scorers."""
    scorers = weights.by_plugin()
    return {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha1",
        "kind": "EndpointPickerConfig",
        "plugins": [
            *({"type": plugin} for plugin in scorers),
            {
                "type": "metrics-data-source",
                "parameters": {"scheme": "http", "path": "/metrics", "insecureSkipVerify": True},
            },
            {"type": "core-metrics-extractor"},
        ],
        "schedulingProfiles": [
            {"name": "default", "plugins": [{"pluginRef": p, "weight": w} for p, w in scorers.items()]}
        ],
    }


def plugins_yaml(weights: ScorerWeights) -> str:
    return yaml.safe_dump(plugins_config(weights), sort_keys=False)


def chart_values(
    *,
    pod_labels: dict[str, str],
    port: int,
    weights: ScorerWeights,
    picker_replicas: int = 1,
    monitoring: bool = True,
) -> dict[str, Any]:
    """Values of the upstream `inferencepool` chart: the pool over `pod_labels` on `port`, and its picker.

    `monitoring` turns on the chart's ServiceMonitor for the picker's metrics (authenticated with a
    service-account token the chart creates), which kube-prometheus-stack picks up."""
    if picker_replicas < 1:
        raise ValueError("picker_replicas must be at least 1")
    return {
        "inferencePool": {
            "targetPorts": [{"number": port}],
            "modelServerType": "vllm",
            "modelServers": {"matchLabels": dict(pod_labels)},
        },
        "inferenceExtension": {
            # More than one replica runs active-passive with leader election (the chart adds the flag).
            "replicas": picker_replicas,
            "pluginsConfigFile": PLUGINS_FILE,
            "pluginsCustomConfig": {PLUGINS_FILE: plugins_yaml(weights)},
            "monitoring": {"prometheus": {"enabled": monitoring}},
            "resources": PICKER_RESOURCES,
        },
        "provider": {"name": "none"},
    }


def picker_name(pool: str) -> str:
    """The picker's Deployment and Service: the chart names them `<release, first 40 chars>-epp`."""
    return f"{pool.lower().strip()[:40]}-epp"
