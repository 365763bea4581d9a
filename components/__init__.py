"""Reusable Pulumi components for self-hosted LLM inference (import them into any Pulumi program).

`from components import Cluster` works, but the provider SDKs load only when a component is first
used: `components.sizing` (and `llmfleet plan`) stays free of pulumi_aws / pulumi_gcp imports.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from components.cluster import Cluster as Cluster
    from components.cluster import ClusterArgs as ClusterArgs
    from components.cluster import ClusterKind as ClusterKind
    from components.fleet import RegionalFleet as RegionalFleet
    from components.fleet import RegionalFleetArgs as RegionalFleetArgs
    from components.gateway import Gateway as Gateway
    from components.gateway import GatewayArgs as GatewayArgs
    from components.inference import InferenceService as InferenceService
    from components.inference import InferenceServiceArgs as InferenceServiceArgs
    from components.inference import ModelCache as ModelCache
    from components.keda import Keda as Keda
    from components.keda import KedaArgs as KedaArgs
    from components.loadgen import LoadGenerator as LoadGenerator
    from components.loadgen import LoadGeneratorArgs as LoadGeneratorArgs
    from components.nodepool import GPU_TAINT_KEY as GPU_TAINT_KEY
    from components.nodepool import GpuNodePool as GpuNodePool
    from components.nodepool import GpuNodePoolArgs as GpuNodePoolArgs

_EXPORTS = {
    "Cluster": "components.cluster",
    "ClusterArgs": "components.cluster",
    "ClusterKind": "components.cluster",
    "RegionalFleet": "components.fleet",
    "RegionalFleetArgs": "components.fleet",
    "Gateway": "components.gateway",
    "GatewayArgs": "components.gateway",
    "InferenceService": "components.inference",
    "InferenceServiceArgs": "components.inference",
    "ModelCache": "components.inference",
    "Keda": "components.keda",
    "KedaArgs": "components.keda",
    "LoadGenerator": "components.loadgen",
    "LoadGeneratorArgs": "components.loadgen",
    "GPU_TAINT_KEY": "components.nodepool",
    "GpuNodePool": "components.nodepool",
    "GpuNodePoolArgs": "components.nodepool",
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
