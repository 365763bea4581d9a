"""`rollout:` — how `llmfleet rollout` moves a new revision through the regions.

Regions go one after another (waves): inside a region the new revision takes `steps` percent of the
traffic in turn, and after each step the load-test `suite` runs against the region's gateway for
`gate_duration_s` and the SLO gate decides (pass: next step; breach: roll back).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise

from pydantic import Field, field_validator

from llmfleet.infra.schema.base import Section

DEFAULT_STEPS = (5, 25, 100)


class SharedPrefixSpec(Section):
    """The gate's load as chat traffic: conversations over shared system prompts, resending their history
    (loadtests/conversations.py), so a revision is judged with the prefix-cache hits it will really get."""

    groups: int = Field(ge=1, le=10_000, description="Shared system prompts.")
    prefix_tokens: int = Field(default=1024, ge=1, le=1_000_000, description="Length of each system prompt.")
    turns: int = Field(default=4, ge=1, le=1000, description="Turns per conversation.")
    prompt_tokens: int = Field(default=64, ge=1, le=1_000_000, description="New tokens per turn.")

    def locust_args(self) -> tuple[str, ...]:
        return (
            *("--llm-prefix-groups", str(self.groups), "--llm-prefix-tokens", str(self.prefix_tokens)),
            *("--llm-turns", str(self.turns), "--llm-prompt-tokens", str(self.prompt_tokens)),
        )


class ShadowSpec(Section):
    """The shadow stage before each region's canary steps: real requests copied to the new revision, answers
    dropped, then both revisions judged on their own Prometheus series over that window (docs/patterns.md)."""

    share: int = Field(default=10, ge=1, le=100, description="Percent of each model's requests copied.")
    duration_s: float = Field(default=900, ge=60, le=6 * 3600, description="How long the copies run.")
    prometheus: dict[str, str] = Field(
        description="Region key -> that region's Prometheus URL as the machine running `llmfleet rollout` reaches "
        "it (e.g. through `kubectl port-forward` or an internal load balancer)."
    )
    max_latency_ratio: float = Field(
        default=1.2, ge=1, le=10, description="New revision's TTFT and end-to-end p95 at most this times the old's."
    )
    max_error_increase: float = Field(
        default=0.01, ge=0, le=1, description="New revision's aborted share at most the old's plus this."
    )
    min_requests: int = Field(default=50, ge=1, le=1_000_000, description="Copies the new revision must serve.")

    @field_validator("prometheus")
    @classmethod
    def _urls(cls, urls: dict[str, str]) -> dict[str, str]:
        bad = sorted(k for k, u in urls.items() if not u.startswith(("http://", "https://")))
        if bad:
            raise ValueError(f"URLs start with http:// or https://; not those of {bad}")
        return urls


class InClusterSpec(Section):
    """The gate's load from a LoadGenerator (components/loadgen.py: Locust master + workers as Kubernetes Jobs)
    deployed in each region next to its gateway, instead of from the machine running `llmfleet rollout`."""

    image: str = Field(
        pattern=r"^[^\s:@]+(:[\w][\w.-]{0,127})?(@sha256:[0-9a-f]{64})?$",
        description="The generator's image, built from loadtests/Dockerfile on the pinned Locust image "
        "(components/pins.yaml `locust`); the project publishes none. A fixed tag or digest, not `latest`.",
    )
    workers: int = Field(default=1, ge=1, le=1000, description="Worker pods, one Locust process each.")
    worker_cpu: str = Field(default="1", pattern=r"^\d+(\.\d+)?m?$", description="CPU request and limit per worker.")
    worker_memory: str = Field(
        default="1Gi", pattern=r"^\d+(Ki|Mi|Gi)$", description="Memory request and limit per worker."
    )
    tenant: str | None = Field(
        default=None,
        description="A gateway tenant (`gateway.tenants[].name`) whose API key the generator sends; none: no key.",
    )
    contexts: dict[str, str] = Field(
        description="Region key -> the kubectl context of that region's cluster, as the machine running "
        "`llmfleet rollout` has it configured."
    )

    @field_validator("image")
    @classmethod
    def _pinned(cls, image: str) -> str:
        last = image.rsplit("/", 1)[-1]
        if "@" not in last and (":" not in last or last.endswith(":latest")):
            raise ValueError(f"{image!r}: pin the image with a tag other than latest, or a digest")
        return image


class RolloutSpec(Section):
    """Waves, canary steps and the gate of a rollout (the CLI's --steps/--suite override steps and suite)."""

    region_order: list[str] | None = Field(
        default=None,
        description="Region keys (`<cloud>-<region>`) in rollout order; default: the secondaries in stack order, "
        "then the primary.",
    )
    steps: list[int] = Field(
        default_factory=lambda: list(DEFAULT_STEPS),
        min_length=1,
        description="Percent of a region's traffic on the new revision at each step; a last step below 100 "
        "leaves both revisions serving at that split (an A/B test).",
    )
    gate_duration_s: float = Field(
        default=300, gt=0, le=6 * 3600, description="Seconds of load test after each step before the gate decides."
    )
    suite: str = Field(default="steady", pattern=r"^[a-z][a-z0-9_]*$", description="Load-test suite of the gate.")
    users: int = Field(default=8, ge=1, le=1000, description="Concurrent users the suite runs with.")
    shared_prefix: SharedPrefixSpec | None = Field(
        default=None, description="Gate with the shared-prefix multi-turn workload instead of unique prompts."
    )
    shadow: ShadowSpec | None = Field(
        default=None, description="Shadow stage before the canary steps in each region (default: none)."
    )

    in_cluster: InClusterSpec | None = Field(
        default=None,
        description="Run the gate on a load generator deployed in each region's cluster (default: on this machine).",
    )

    @field_validator("steps")
    @classmethod
    def _steps_climb(cls, steps: list[int]) -> list[int]:
        check_steps(steps)
        return steps

    def check_regions(self, keys: Sequence[str]) -> None:
        """Cross-check against the stack's regions (called by DeploymentSpec)."""
        if self.shadow is not None:
            _one_per_region("rollout.shadow.prometheus", "Prometheus URL", self.shadow.prometheus, keys)
        if self.in_cluster is not None:
            _one_per_region("rollout.in_cluster.contexts", "kubectl context", self.in_cluster.contexts, keys)
        if self.region_order is None:
            return
        unknown = [k for k in self.region_order if k not in keys]
        if unknown:
            raise ValueError(f"rollout.region_order: unknown region keys {unknown}; the stack's regions: {list(keys)}")
        repeated = sorted({k for k in self.region_order if self.region_order.count(k) > 1})
        if repeated:
            raise ValueError(f"rollout.region_order: each region once, repeated: {repeated}")
        missing = [k for k in keys if k not in self.region_order]
        if missing:
            raise ValueError(f"rollout.region_order: every region must be listed, missing: {missing}")


def check_steps(steps: Sequence[int]) -> None:
    """Steps are percentages from 1 to 100 that only go up (also used for --steps)."""
    if not steps:
        raise ValueError("give at least one percentage, e.g. 5,25,100")
    if any(not 1 <= s <= 100 for s in steps):
        raise ValueError(f"each step is a percentage from 1 to 100, got {list(steps)}")
    if any(b <= a for a, b in pairwise(steps)):
        raise ValueError(f"must strictly increase, got {list(steps)}")


def _one_per_region(field: str, what: str, per_region: Mapping[str, object], keys: Sequence[str]) -> None:
    """A mapping keyed by region must name each of the stack's regions, and only those."""
    unknown = sorted(set(per_region) - set(keys))
    missing = [k for k in keys if k not in per_region]
    if unknown or missing:
        raise ValueError(
            f"{field}: one {what} per region; unknown {unknown}, missing {missing} (the stack's regions: {list(keys)})"
        )
