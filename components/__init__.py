"""Reusable Pulumi components for self-hosted LLM inference (import them into any Pulumi program).

`from components import Cluster` works, but the provider SDKs load only when a component is first
used: `components.sizing` (and `llmfleet plan`) stays free of pulumi_aws / pulumi_gcp imports.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmfleet.components.cluster import Cluster as Cluster
    from llmfleet.components.cluster import ClusterArgs as ClusterArgs
    from llmfleet.components.cluster import ClusterKind as ClusterKind
    from llmfleet.components.fleet import RegionalFleet as RegionalFleet
    from llmfleet.components.fleet import RegionalFleetArgs as RegionalFleetArgs
    from llmfleet.components.gateway import Gateway as Gateway
    from llmfleet.components.gateway import GatewayArgs as GatewayArgs
    from llmfleet.components.inference import InferenceService as InferenceService
    from llmfleet.components.inference import InferenceServiceArgs as InferenceServiceArgs
    from llmfleet.components.inference import ModelCache as ModelCache
    from llmfleet.components.keda import Keda as Keda
    from llmfleet.components.keda import KedaArgs as KedaArgs
    from llmfleet.components.loadgen import LoadGenerator as LoadGenerator
    from llmfleet.components.loadgen import LoadGeneratorArgs as LoadGeneratorArgs
    from llmfleet.components.node_labels import GPU_TAINT_KEY as GPU_TAINT_KEY
    from llmfleet.components.nodepool import GpuNodePool as GpuNodePool
    from llmfleet.components.nodepool import GpuNodePoolArgs as GpuNodePoolArgs

_EXPORTS = {
    "Cluster": "llmfleet.components.cluster",
    "ClusterArgs": "llmfleet.components.cluster",
    "ClusterKind": "llmfleet.components.cluster",
    "RegionalFleet": "llmfleet.components.fleet",
    "RegionalFleetArgs": "llmfleet.components.fleet",
    "Gateway": "llmfleet.components.gateway",
    "GatewayArgs": "llmfleet.components.gateway",
    "InferenceService": "llmfleet.components.inference",
    "InferenceServiceArgs": "llmfleet.components.inference",
    "ModelCache": "llmfleet.components.inference",
    "Keda": "llmfleet.components.keda",
    "KedaArgs": "llmfleet.components.keda",
    "LoadGenerator": "llmfleet.components.loadgen",
    "LoadGeneratorArgs": "llmfleet.components.loadgen",
    "GPU_TAINT_KEY": "llmfleet.components.node_labels",
    "GpuNodePool": "llmfleet.components.nodepool",
    "GpuNodePoolArgs": "llmfleet.components.nodepool",
}

__all__ = [
    "GPU_TAINT_KEY",
    "Cluster",
    "ClusterArgs",
    "ClusterKind",
    "Gateway",
    "GatewayArgs",
    "GpuNodePool",
    "GpuNodePoolArgs",
    "InferenceService",
    "InferenceServiceArgs",
    "Keda",
    "KedaArgs",
    "LoadGenerator",
    "LoadGeneratorArgs",
    "ModelCache",
    "RegionalFleet",
    "RegionalFleetArgs",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'components' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
