"""Prefix- and load-aware routing: InferencePools of model replicas and the upstream endpoint picker.

`components.routing.picker` (the picker's configuration) is plain Python; the Pulumi component loads
on first use, so the stack schema can name routing options without importing the Pulumi SDK.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from llmfleet.components.routing.picker import RoutingOptions, ScorerWeights

if TYPE_CHECKING:
    from llmfleet.components.routing.component import InferencePool as InferencePool
    from llmfleet.components.routing.component import InferencePoolArgs as InferencePoolArgs

__all__ = ["InferencePool", "InferencePoolArgs", "RoutingOptions", "ScorerWeights"]


def __getattr__(name: str) -> Any:
    if name in ("InferencePool", "InferencePoolArgs"):
        return getattr(import_module("llmfleet.components.routing.component"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
