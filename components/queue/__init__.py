"""The async queue pattern: jobs on the cloud's own queue, workers that call the models through the gateway.

The components load the provider SDKs on first use only, so the stack schema can read `types` (plain values)
without importing pulumi_aws / pulumi_gcp.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from llmfleet.components.queue.types import QueueConfig, QueueSettings, WorkerSettings

if TYPE_CHECKING:
    from llmfleet.components.queue.component import AsyncQueue as AsyncQueue
    from llmfleet.components.queue.component import AsyncQueueArgs as AsyncQueueArgs
    from llmfleet.components.queue.component import QueueWorkers as QueueWorkers
    from llmfleet.components.queue.component import QueueWorkersArgs as QueueWorkersArgs

_COMPONENTS = {"AsyncQueue", "AsyncQueueArgs", "QueueWorkers", "QueueWorkersArgs"}

__all__ = [
    "AsyncQueue",
    "AsyncQueueArgs",
    "QueueConfig",
    "QueueSettings",
    "QueueWorkers",
    "QueueWorkersArgs",
    "WorkerSettings",
]


def __getattr__(name: str) -> Any:
    if name not in _COMPONENTS:
        raise AttributeError(f"module 'llmfleet.components.queue' has no attribute {name!r}")
    return getattr(import_module("llmfleet.components.queue.component"), name)
