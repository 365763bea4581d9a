"""`observability:` — kube-prometheus-stack, dcgm-exporter, alert rules and dashboards per region."""

from infra.schema.base import Section


class ObservabilitySpec(Section):
    """Placeholder until the observability section lands; unknown keys are rejected."""
