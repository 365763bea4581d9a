"""KEDA autoscaling on the engine's queue: the threshold from the SLO, and the ScaledObject's spec."""

from __future__ import annotations

import math
from typing import Any

from llmfleet.components.sizing.errors import PlanningError
from llmfleet.components.sizing.plan import DeploymentPlan

QUEUE_SHARE_OF_TTFT = 0.5
"""Part of the TTFT p95 budget a request may spend queued; the rest is its prefill and first step."""
POLLING_INTERVAL_S = 15
COOLDOWN_S = 300
"""KEDA's wait before deactivating (it only matters at zero replicas, which `require_a_replica` refuses)."""
SCALE_DOWN_STABILIZATION_S = 300
"""A replica takes minutes to start: remove one only after the queue stayed short for 5 minutes."""


def waiting_requests_threshold(plan: DeploymentPlan, output_tokens_per_request: int, ttft_p95_ms: float) -> int:
    """Requests waiting per replica above which KEDA adds replicas, derived from the TTFT SLO.

    By Little's law a request that joins a queue of `q` requests waits about `q / mu`, where `mu` is
    the rate at which one replica completes requests: its planned output tokens per second divided by
    the output tokens of a request. Keeping that wait within half of the TTFT p95 target gives
    `q = mu x 0.5 x TTFT p95`, at least 1. Example: 2,000 tokens/s per replica, 256-token answers and
    an 800 ms TTFT target give mu = 7.8 requests/s and a threshold of 3 waiting requests per replica.
    KEDA compares the fleet-wide sum with `threshold x replicas` (metric type AverageValue).
    """
    completions_per_s = plan.output_tokens_per_s_per_replica / output_tokens_per_request
    queue_budget_s = QUEUE_SHARE_OF_TTFT * ttft_p95_ms / 1000
    return max(1, math.floor(completions_per_s * queue_budget_s))


def queue_query(metric: str, namespace: str, selector: dict[str, str]) -> str:
    """PromQL summing the engine's queue gauge over this model's pods."""
    labels = ",".join(f'{k}="{v}"' for k, v in {"namespace": namespace, **selector}.items())
    return f"sum({metric}{{{labels}}})"


def require_a_replica(plan: DeploymentPlan) -> None:
    """Refuse a plan that may scale to zero replicas: it could never wake up.

    The only trigger is the engine's queue gauge, and at zero replicas no pod exports it, so KEDA
    would read no queue and keep the model at zero however many requests the gateway receives.
    Waking needs a trigger on a metric the gateway exports per model; until one exists (and is
    proven), the stack schema rejects `autoscaling.scale_to_zero` and this guards other callers.
    """
    if plan.min_replicas < 1:
        raise PlanningError(
            f"model {plan.model}: min_replicas {plan.min_replicas}: scale to zero is not supported (no pod "
            "exports the queue metric KEDA scales on, so the model would never wake up); plan at least 1 replica"
        )


def scaled_object_spec(
    *, deployment: str, plan: DeploymentPlan, prometheus_url: str, query: str, threshold: int
) -> dict[str, Any]:
    """The ScaledObject's spec (keda.sh/v1alpha1): replicas between the plan's min (at least 1) and max."""
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
        "minReplicaCount": plan.min_replicas,
        "maxReplicaCount": plan.max_replicas,
        "pollingInterval": POLLING_INTERVAL_S,
        "cooldownPeriod": COOLDOWN_S,
        "advanced": {
            "horizontalPodAutoscalerConfig": {
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": SCALE_DOWN_STABILIZATION_S}}
            }
        },
        "triggers": [
            {
                "type": "prometheus",
                "metricType": "AverageValue",
                "metadata": {
                    "serverAddress": prometheus_url,
                    "query": query,
                    "threshold": str(threshold),
                },
            }
        ],
    }
