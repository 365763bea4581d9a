"""The shared vocabulary every layer may import: the SLO value type and the commands' exit codes.

This module imports nothing of llmfleet's own (tests/test_layers.py holds it to that), so the load
tests, the Pulumi program, the rollout tool and the policy pack can all depend on it without depending
on each other.
"""

from __future__ import annotations

from enum import IntEnum

from pydantic import BaseModel, ConfigDict, Field


class ExitCode(IntEnum):
    """What every `llmfleet` command, `python -m llmfleet.loadtests.run` and Locust's master exit with."""

    OK = 0
    """Passed, promoted, rendered: the command did what was asked."""
    FAILED = 1
    """The program or a deployment failed (a render's program error, a `pulumi up` failing mid-rollout)."""
    USAGE = 2
    """Bad input (stack file, options, SLO), reported before anything is created or any load is sent."""
    BREACH = 3
    """The SLO gate found a target breached (a rollout rolled back)."""
    INVALID = 4
    """The load-test run cannot support a verdict (too few samples, an overloaded generator, ...)."""


class Slo(BaseModel):
    """Per-request latency targets and fleet-level quality targets (the stack file's `slo` section).

    One definition feeding autoscaling, alerts and the Locust gate. Latencies are in milliseconds and
    are checked on exact percentiles of raw samples.
    """

    # As the stack schema's sections: unknown keys are errors, values are frozen once validated.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    ttft_p95_ms: float = Field(default=800, gt=0, description="95th percentile time to first token, ms.")
    tpot_p95_ms: float = Field(default=60, gt=0, description="95th percentile time per output token, ms.")
    e2e_p99_ms: float = Field(default=30_000, gt=0, description="99th percentile end-to-end latency, ms.")
    error_rate: float = Field(default=0.01, ge=0, lt=1, description="Highest tolerated failed-request ratio.")
    goodput_ratio: float = Field(
        default=0.9, gt=0, le=1, description="Lowest share of requests that must succeed and meet every latency target."
    )
