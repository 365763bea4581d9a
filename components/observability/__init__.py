"""Per-region observability: kube-prometheus-stack, dcgm-exporter, monitors, SLO alert rules, dashboards.

Exports load lazily, so the pure modules (metrics, rules, dashboards, stack) import without the
Pulumi SDKs.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmfleet.components.observability.component import Observability as Observability
    from llmfleet.components.observability.component import ObservabilityArgs as ObservabilityArgs
    from llmfleet.components.observability.component import ObservabilitySettings as ObservabilitySettings
    from llmfleet.components.observability.rules import AlertThresholds as AlertThresholds
    from llmfleet.components.observability.rules import SloTargets as SloTargets
    from llmfleet.components.observability.stack import PROMETHEUS_URL as PROMETHEUS_URL

_EXPORTS = {
    "Observability": "llmfleet.components.observability.component",
    "ObservabilityArgs": "llmfleet.components.observability.component",
    "ObservabilitySettings": "llmfleet.components.observability.component",
    "AlertThresholds": "llmfleet.components.observability.rules",
    "SloTargets": "llmfleet.components.observability.rules",
    "PROMETHEUS_URL": "llmfleet.components.observability.stack",
}

__all__ = [
    "PROMETHEUS_URL",
    "AlertThresholds",
    "Observability",
    "ObservabilityArgs",
    "ObservabilitySettings",
    "SloTargets",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'llmfleet.components.observability' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
