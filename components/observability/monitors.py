"""What Prometheus scrapes: the inference Services (vLLM and llama.cpp) and the gateway's Envoy pods.

Both monitors live in the monitoring namespace and name the namespace they watch, so the
selectors stay in one place. A ServiceMonitor (not a PodMonitor) for the engines, because the
scrape then labels every series with `service` (the model's Service name), which llama.cpp's
series need to be told apart (it labels nothing with the model).
"""

from __future__ import annotations

from typing import Any

from llmfleet.components.gateway.cache_deploy import LITELLM_SELECTOR
from llmfleet.components.gateway.cache_deploy import PORT_NAME as LITELLM_PORT_NAME
from llmfleet.components.gateway.install import ENVOY_GATEWAY_NAMESPACE
from llmfleet.components.inference.service import PORT_NAME, InferenceService
from llmfleet.components.observability.stack import SCRAPE_INTERVAL

API_VERSION = "monitoring.coreos.com/v1"
METRICS_PATH = "/metrics"
"""vLLM and llama-server (with --metrics) both serve Prometheus text on their API port."""

ENVOY_PROXY_SELECTOR = {
    "app.kubernetes.io/name": "envoy",
    "app.kubernetes.io/component": "proxy",
    "app.kubernetes.io/managed-by": "envoy-gateway",
}
"""Labels Envoy Gateway gives every Envoy proxy pod it runs (envoyproxy/gateway, EnvoyAppLabel)."""
ENVOY_METRICS_PORT = "metrics"
"""The proxy container's port 19001, named `metrics`."""
ENVOY_METRICS_PATH = "/stats/prometheus"


SCRAPE_KEY = "apiKey"


def inference_monitor_spec(namespace: str, key_secret: str | None = None) -> dict[str, Any]:
    """ServiceMonitor spec for every model server in `namespace`; with `key_secret` (a Secret beside the
    monitor), the scrape sends the engines' key as a bearer token."""
    endpoint: dict[str, Any] = {"port": PORT_NAME, "path": METRICS_PATH, "interval": SCRAPE_INTERVAL}
    if key_secret is not None:
        endpoint["authorization"] = {"type": "Bearer", "credentials": {"name": key_secret, "key": SCRAPE_KEY}}
    return {
        "namespaceSelector": {"matchNames": [namespace]},
        "selector": {"matchLabels": dict(InferenceService.server_selector)},
        "endpoints": [endpoint],
    }


def response_cache_monitor_spec(namespace: str) -> dict[str, Any]:
    """ServiceMonitor spec for the response cache's LiteLLM Services in `namespace` (the gateway's): its /metrics
    answers without a key (LiteLLM's Prometheus callback mounts it unauthenticated)."""
    return {
        "namespaceSelector": {"matchNames": [namespace]},
        "selector": {"matchLabels": dict(LITELLM_SELECTOR)},
        "endpoints": [{"port": LITELLM_PORT_NAME, "path": METRICS_PATH, "interval": SCRAPE_INTERVAL}],
    }


def gateway_monitor_spec(namespace: str = ENVOY_GATEWAY_NAMESPACE) -> dict[str, Any]:
    """PodMonitor spec for the Envoy proxies (their LoadBalancer Service does not expose the metrics port)."""
    return {
        "namespaceSelector": {"matchNames": [namespace]},
        "selector": {"matchLabels": dict(ENVOY_PROXY_SELECTOR)},
        "podMetricsEndpoints": [{"port": ENVOY_METRICS_PORT, "path": ENVOY_METRICS_PATH, "interval": SCRAPE_INTERVAL}],
    }
