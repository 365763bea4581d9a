"""What the async queue adds to a region's cost, from the request prices in prices.yaml (pure Python).

Per job, one message of about `job_bytes` is sent, received and deleted once (more when it is retried),
and one result object is written:
- AWS: SendMessage + ReceiveMessage (each one request per 64 KiB of payload) + DeleteMessage on SQS, one
  S3 PUT; KEDA's operator also calls GetQueueAttributes every polling interval while the queue exists;
- GCP: one Pub/Sub publish and one pull (each billed for at least 1000 bytes), one GCS Class A operation;
  KEDA reads the backlog from Cloud Monitoring (not priced here).
The workers are CPU pods on the cluster's system nodes: the plan gives their most vCPU and memory, which
the system node group must have room for; it does not price the system nodes (the plan prices GPU pools).
Not priced: result storage (GB-months, bounded by result_retention_days), data transfer and NAT
processing between the workers and the cloud APIs, the free tiers (SQS 1 million requests, Pub/Sub 10 GiB a
month), Cloud Monitoring reads.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

PRICES = Path(__file__).with_name("prices.yaml")
BYTES_PER_TOKEN = 4
"""Rough UTF-8 bytes per token of English text (a job line carries its prompt as text)."""
JOB_OVERHEAD_BYTES = 512
"""The batch line's JSON around the prompt (custom_id, url, model, parameters)."""
SECONDS_PER_MONTH = 730 * 3600


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    value: float
    verified: bool
    source: str


class WorkerPoolPlan(BaseModel):
    """The workers' spot node pool in one region (`llmfleet plan`, JSON `queue[].pool`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    model: str = Field(description="Served model the jobs call (their latency sizes the pool).")
    jobs_per_minute: int
    seconds_per_job: float = Field(description="output_tokens / the model's decode rate per sequence.")
    jobs_in_flight: float
    workers: int = Field(description="Worker pods needed: jobs in flight / concurrency, rounded up.")
    instance_type: str
    fallback_instance_types: tuple[str, ...]
    pods_per_node: int
    max_nodes: int
    usd_per_hour_at_max: float = Field(description="max_nodes at the type's price in the region (see price_basis).")
    price_verified: bool
    price_basis: str = Field(
        description="`spot`, or the on-demand price as an upper bound where no spot price is cited."
    )
    batch_output_tokens_per_s: float
    batch_share: float = Field(description="Batch output tokens/s over the model's max replicas' rate in the region.")


class QueueCost(BaseModel):
    """One region's async queue in the plan (`llmfleet plan`, JSON `queue[]`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    cloud: Literal["aws", "gcp"]
    region: str
    job_bytes: int = Field(description="Assumed size of one job message (prompt tokens x 4 bytes + 512).")
    usd_per_million_jobs: float = Field(description="Queue requests and result writes of a million jobs.")
    idle_usd_per_month: float = Field(description="What the queue costs with no jobs (KEDA's polling).")
    worker_pods_max: int
    worker_vcpu_max: float = Field(description="vCPU requests of max_workers pods, on the system nodes.")
    worker_memory_gib_max: float
    price_verified: bool = Field(description="False when a price used comes from a third-party summary.")
    not_priced: tuple[str, ...]
    pool: WorkerPoolPlan | None = Field(
        default=None, description="The workers' own spot node pool, with `queue.spot_pool` (None: system nodes)."
    )


@cache
def prices() -> dict[str, Price]:
    raw: dict[str, object] = yaml.safe_load(PRICES.read_text())
    return {key: Price.model_validate(value) for key, value in raw.items()}


def quantity(text: str) -> float:
    """A Kubernetes quantity of CPU (`250m`, `2`) or memory (`256Mi`, `1Gi`) in cores or GiB."""
    units = {"m": 1e-3, "Ki": 2**-20, "Mi": 2**-10, "Gi": 1.0, "Ti": 1024.0}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text.removesuffix(suffix)) * factor
    return float(text)


def queue_cost(
    cloud: Literal["aws", "gcp"],
    region: str,
    prompt_tokens: int,
    max_workers: int,
    worker_cpu: str,
    worker_memory: str,
    polling_interval_s: int,
    pool: WorkerPoolPlan | None = None,
) -> QueueCost:
    """With `pool`, the workers run on their own spot nodes (sized and priced there) instead of the system nodes."""
    p = prices()
    if pool is not None:
        max_workers = pool.workers
    job_bytes = prompt_tokens * BYTES_PER_TOKEN + JOB_OVERHEAD_BYTES
    if cloud == "aws":
        chunks = math.ceil(job_bytes / p["sqs_request_chunk_bytes"].value)
        sqs_requests = 2 * chunks + 1  # send + receive of the payload, one delete
        per_job = sqs_requests * p["sqs_standard_usd_per_million_requests"].value / 1e6
        per_job += p["s3_standard_put_usd_per_thousand"].value / 1e3
        polls = SECONDS_PER_MONTH / polling_interval_s
        idle = polls * p["sqs_standard_usd_per_million_requests"].value / 1e6
        used = ("sqs_standard_usd_per_million_requests", "sqs_request_chunk_bytes", "s3_standard_put_usd_per_thousand")
        missing = ("result storage", "data transfer and NAT processing", "free tier (1 million SQS requests a month)")
    else:
        billed = 2 * max(job_bytes, p["pubsub_min_bytes_per_request"].value)  # publish + pull
        per_job = billed / 2**40 * p["pubsub_usd_per_tib"].value + p["gcs_class_a_usd_per_thousand"].value / 1e3
        idle = 0.0
        used = ("pubsub_usd_per_tib", "pubsub_min_bytes_per_request", "gcs_class_a_usd_per_thousand")
        missing = (
            "result storage",
            "data transfer and NAT processing",
            "Cloud Monitoring reads by KEDA",
            "free tier (10 GiB of Pub/Sub a month)",
        )
    return QueueCost(
        cloud=cloud,
        region=region,
        job_bytes=job_bytes,
        usd_per_million_jobs=round(per_job * 1e6, 2),
        idle_usd_per_month=round(idle, 2),
        worker_pods_max=max_workers,
        worker_vcpu_max=round(max_workers * quantity(worker_cpu), 2),
        worker_memory_gib_max=round(max_workers * quantity(worker_memory), 2),
        price_verified=all(p[key].verified for key in used),
        not_priced=missing if pool is not None else ("worker pods (system nodes)", *missing),
        pool=pool,
    )
