"""The service-level objective: one definition feeding autoscaling, alerts and the Locust gate."""

from pydantic import Field

from llmfleet.infra.schema.base import Section


class Slo(Section):
    """Per-request latency targets and fleet-level quality targets.

    Latencies are in milliseconds and are checked on exact percentiles of raw samples.
    """

    ttft_p95_ms: float = Field(default=800, gt=0, description="95th percentile time to first token, ms.")
    tpot_p95_ms: float = Field(default=60, gt=0, description="95th percentile time per output token, ms.")
    e2e_p99_ms: float = Field(default=30_000, gt=0, description="99th percentile end-to-end latency, ms.")
    error_rate: float = Field(default=0.01, ge=0, lt=1, description="Highest tolerated failed-request ratio.")
    goodput_ratio: float = Field(
        default=0.9, gt=0, le=1, description="Lowest share of requests that must succeed and meet every latency target."
    )
