"""`queue:` — the async queue pattern (off unless present): jobs on SQS or Pub/Sub, workers through the gateway.

Each listed region (default: every region) gets its own queue, dead-letter queue, result bucket and
workers. The workers call the region's gateway with one tenant's API key, so batch jobs share that
tenant's budgets with its online traffic and never bypass authentication.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from pydantic import Field, field_validator

from llmfleet.components.queue.types import MAX_ATTEMPTS_RANGE, MAX_JOB_TIMEOUT_S
from llmfleet.infra.schema.base import Section
from llmfleet.infra.schema.gateway import DNS_LABEL, SECRET_KEY, GatewaySpec
from llmfleet.infra.schema.regions import RegionSpec

PINNED_IMAGE = re.compile(r"^[^\s:@]+(:[0-9A-Za-z_][0-9A-Za-z_.-]{0,127}|@sha256:[0-9a-f]{64})$")


class SpotPoolSpec(Section):
    """Run the workers on their own spot CPU node pool, sized by the planner for a stated batch throughput."""

    jobs_per_minute: int = Field(gt=0, le=1_000_000, description="Jobs per minute the workers must sustain.")
    model: str | None = Field(
        default=None, description="Served model the jobs call (sizes a job's duration); default: the region's first."
    )


class QueueSpec(Section):
    """Async inference: OpenAI batch lines in, results in a bucket, an optional signed webhook."""

    worker_image: str = Field(
        description="The worker image built from queueworker/Dockerfile, with a version tag or a digest."
    )
    tenant: str | None = Field(
        default=None,
        pattern=DNS_LABEL,
        description="Gateway tenant whose API key the workers use (required unless the gateway is anonymous).",
    )
    webhook_secret: str | None = Field(
        default=None, pattern=SECRET_KEY, description="Secret stack key of the HMAC key signing webhook callbacks."
    )
    regions: list[str] | None = Field(default=None, description="Region keys (`<cloud>-<region>`); default: all.")
    concurrency: int = Field(default=4, ge=1, le=64, description="Jobs in flight per worker pod.")
    max_workers: int = Field(default=10, ge=1, le=500, description="Most worker pods per region.")
    max_attempts: int = Field(
        default=5, ge=MAX_ATTEMPTS_RANGE[0], le=MAX_ATTEMPTS_RANGE[1], description="Deliveries before dead-lettering."
    )
    job_timeout_s: int = Field(default=300, ge=10, le=MAX_JOB_TIMEOUT_S, description="Longest gateway call per job.")
    retention_days: int = Field(default=4, ge=1, le=7, description="How long a job waits in the queue.")
    result_retention_days: int = Field(default=7, ge=1, le=3650, description="How long results are kept.")
    spot_pool: SpotPoolSpec | None = Field(
        default=None, description="The workers' own spot node pool sized for a batch throughput; None: system nodes."
    )

    @field_validator("worker_image")
    @classmethod
    def _pinned(cls, image: str) -> str:
        if not PINNED_IMAGE.match(image) or image.endswith(":latest"):
            raise ValueError("name a version tag or digest, e.g. registry.example.com/llmfleet-worker:0.1.0")
        return image

    def check_stack(
        self,
        regions: Sequence[RegionSpec],
        gateway: GatewaySpec,
        request_timeout_s: int,
        served: Mapping[str, list[str]] | None = None,
    ) -> None:
        """`served`: region key -> the served model names of that region."""
        keys = {r.key: r for r in regions}
        if self.spot_pool is not None:
            if "max_workers" in self.model_fields_set:
                raise ValueError(
                    "queue.max_workers: with queue.spot_pool the planner sizes the workers from jobs_per_minute; "
                    "remove one of them"
                )
            model = self.spot_pool.model
            for region in self.served_regions(regions):
                names = (served or {}).get(region.key, [])
                if model is not None and model not in names:
                    raise ValueError(
                        f"queue.spot_pool.model: {model!r} is not served in {region.key}; served there: {names}"
                    )
        for i, key in enumerate(self.regions or []):
            if key not in keys:
                raise ValueError(f"queue.regions[{i}]: unknown region {key!r}; the stack's: {sorted(keys)}")
        for region in self.served_regions(regions):
            if region.cloud == "local" or region.cluster.mode != "create":
                raise ValueError(
                    f"queue.regions: {region.key} runs on an existing cluster; the queue needs a cluster llmfleet "
                    "creates (EKS with IRSA, GKE with Workload Identity): list only such regions in queue.regions"
                )
        if gateway.allow_anonymous:
            if self.tenant is not None:
                raise ValueError("queue.tenant: the gateway is anonymous (allow_anonymous), leave tenant out")
        else:
            tenants = {t.name: t for t in gateway.tenants}
            if gateway.jwt is not None:
                raise ValueError("queue: the gateway takes JWTs, which workers cannot present; use API-key tenants")
            if self.tenant is None or self.tenant not in tenants:
                raise ValueError(f"queue.tenant: name the gateway tenant the workers run as, one of {sorted(tenants)}")
        if self.job_timeout_s > request_timeout_s:
            raise ValueError(
                f"queue.job_timeout_s: {self.job_timeout_s} is longer than gateway.request_timeout_s "
                f"{request_timeout_s}, which would cut every longer job"
            )

    def served_regions(self, regions: Sequence[RegionSpec]) -> list[RegionSpec]:
        wanted = self.regions
        return [r for r in regions if wanted is None or r.key in wanted]

    def secret_refs(self) -> list[tuple[str, str]]:
        """(stack secret key, field path) of the queue's own secrets (the tenant key is the gateway's)."""
        return [(self.webhook_secret, "queue.webhook_secret")] if self.webhook_secret else []
