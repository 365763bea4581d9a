"""The async queue's inputs as plain values, and the limits the clouds put on them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import pulumi

    from llmfleet.components.queue.costs import WorkerPoolPlan

WORKER_SERVICE_ACCOUNT = "llmfleet-queue-worker"
"""Kubernetes service account of the workers: the only subject the workers' cloud identity trusts."""
KEDA_SERVICE_ACCOUNT = ("keda", "keda-operator")
"""Namespace and service account of the KEDA operator as the pinned chart installs it (its identity reads
the queue's length: SQS GetQueueAttributes, Cloud Monitoring for Pub/Sub)."""
POLLING_INTERVAL_S = 15
"""How often KEDA reads the queue's length."""
COOLDOWN_S = 120
"""Idle time (queue empty, nothing in flight) before the workers scale to zero."""
MAX_JOB_TIMEOUT_S = 540
"""A job's gateway call must end within Pub/Sub's longest ack deadline (600 s) less a minute of margin; the
same bound on SQS keeps one meaning for the field on both clouds."""
MAX_ATTEMPTS_RANGE = (5, 100)
"""Pub/Sub's dead-letter policy allows 5-100 delivery attempts; SQS's maxReceiveCount 1-1000: the
intersection keeps one meaning for the field on both clouds."""


@dataclass(frozen=True)
class QueueSettings:
    """How one region's queue, its dead-letter queue and its result bucket behave."""

    max_attempts: int = 5
    """Deliveries of a job before it moves to the dead-letter queue."""
    job_timeout_s: int = 300
    """Longest gateway call of one job (the queue hides a job this long, plus a minute, while it runs)."""
    retention_days: int = 4
    """How long an unprocessed job waits in the queue (SQS 1 minute-14 days, Pub/Sub up to 7 days)."""
    dead_letter_retention_days: int = 7
    """How long a dead job is kept for inspection."""
    result_retention_days: int = 7
    """Results (and their bucket objects) expire after this many days."""

    def __post_init__(self) -> None:
        low, high = MAX_ATTEMPTS_RANGE
        if not low <= self.max_attempts <= high:
            raise ValueError(f"max_attempts {self.max_attempts}: Pub/Sub allows {low}-{high}")
        if not 10 <= self.job_timeout_s <= MAX_JOB_TIMEOUT_S:
            raise ValueError(f"job_timeout_s {self.job_timeout_s}: 10-{MAX_JOB_TIMEOUT_S}")
        if not (1 <= self.retention_days <= 7 and 1 <= self.dead_letter_retention_days <= 7):
            raise ValueError("retention_days, dead_letter_retention_days: 1-7 (Pub/Sub keeps messages 7 days at most)")

    @property
    def lease_s(self) -> int:
        """How long a received job stays hidden from other workers (SQS visibility timeout, Pub/Sub ack deadline)."""
        return self.job_timeout_s + 60


@dataclass(frozen=True)
class WorkerSettings:
    image: str
    """The worker image (built from queueworker/Dockerfile), with a version tag or digest."""
    concurrency: int = 4
    """Jobs in flight per worker pod; also KEDA's target of queued jobs per pod."""
    max_workers: int = 10
    """Most worker pods (KEDA scales between 0 and this on the queue's length)."""
    cpu: str = "250m"
    memory: str = "256Mi"


QueueCloud = Literal["aws", "gcp"]


@dataclass(frozen=True)
class QueueConfig:
    """One region's queue as the fleet builds it (RegionalFleetArgs.queue)."""

    workers: WorkerSettings
    settings: QueueSettings = field(default_factory=QueueSettings)
    api_key: pulumi.Input[str] | None = None
    """The gateway tenant key the workers use (a secret); None for an anonymous gateway."""
    webhook_secret: pulumi.Input[str] | None = None
    """HMAC key signing webhook callbacks (a secret); None: callbacks are refused."""
    pool: WorkerPoolPlan | None = None
    """The workers' own spot node pool as planned (None: they run on the system nodes)."""
