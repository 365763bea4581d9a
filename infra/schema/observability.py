"""`observability:` — kube-prometheus-stack, dcgm-exporter, alert rules and dashboards per region.

On by default: KEDA scales the models on the queue gauge this Prometheus scrapes. Alert
thresholds for latency and errors come from `slo:`; this section holds only those the SLO does
not state. Credentials never appear in the stack file: fields ending in `_secret` name a secret
stack config key (`pulumi config set --secret llmfleet:<key> ...`) that the program resolves.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import Field, model_validator

from llmfleet.infra.schema.base import Section

SECRET_KEY = r"^[A-Za-z][A-Za-z0-9_-]*$"
"""A Pulumi config key inside the `llmfleet:` namespace (the part after `llmfleet:`)."""
DURATION = r"^[1-9][0-9]*(h|d|w|y)$"
GPU_MEMORY_MARGIN_PERCENT = 2
"""The GPU memory alert must sit this far above what vLLM reserves, or it fires on every healthy GPU."""


class RemoteWriteSpec(Section):
    """Also send every sample to a central store (Mimir, Thanos receive, a managed Prometheus)."""

    url: str = Field(pattern=r"^https?://", description="The store's Prometheus remote-write endpoint.")
    username: str | None = Field(
        default=None, min_length=1, description="Basic-auth user; without it the credential is a bearer token."
    )
    credentials_secret: str | None = Field(
        default=None, pattern=SECRET_KEY, description="Secret stack config key holding the password or token."
    )

    @model_validator(mode="after")
    def _credentials(self) -> Self:
        if self.username is not None and self.credentials_secret is None:
            raise ValueError("credentials_secret: required with `username` (the basic-auth password)")
        return self


class AlertsSpec(Section):
    """Alert thresholds the SLO does not state."""

    queue_depth_per_replica: int | None = Field(
        default=None,
        gt=0,
        description="Waiting requests per replica that alert after 15 minutes; "
        "none: each model's autoscaling threshold (from the SLO).",
    )
    kv_cache_usage_percent: float = Field(default=95, gt=0, le=100, description="KV-cache use of one replica.")
    gpu_memory_percent: float = Field(
        default=98, gt=0, le=100, description="GPU memory use; must exceed what vLLM reserves."
    )
    preemptions_per_minute: float = Field(default=1, ge=0, description="Preempted requests per minute of one model.")


class ObservabilitySpec(Section):
    """Per-region Prometheus, Alertmanager and Grafana with the project's monitors, rules and dashboards."""

    enabled: bool = Field(
        default=True,
        description="Install the stack in every region (false: bring your own Prometheus at the same address).",
    )
    retention: str = Field(default="15d", pattern=DURATION, description="How long samples are kept, e.g. 15d.")
    storage_gib: int = Field(default=20, ge=2, le=10_000, description="Prometheus volume per region, GiB.")
    remote_write: RemoteWriteSpec | None = Field(
        default=None,
        description="Optional central store (Mimir, Thanos receive, managed Prometheus) every region's Prometheus "
        "writes to.",
    )
    grafana_admin_secret: str | None = Field(
        default=None,
        pattern=SECRET_KEY,
        description="Secret stack config key holding Grafana's admin password; none: the chart generates one.",
    )
    alerts: AlertsSpec = Field(default_factory=AlertsSpec, description="Alert thresholds the SLO does not state.")
    chart_values: dict[str, Any] = Field(
        default_factory=dict[str, Any],
        description="Escape hatch: deep-merged into the kube-prometheus-stack values, e.g. Alertmanager "
        "receivers under alertmanager.config (the chart routes alerts nowhere by default).",
    )

    def secret_refs(self) -> list[tuple[str, str]]:
        """(stack secret key, field path) of every secret this section names, for `require_secret`."""
        refs: list[tuple[str, str]] = []
        if self.enabled and self.grafana_admin_secret:
            refs.append((self.grafana_admin_secret, "observability.grafana_admin_secret"))
        if self.enabled and self.remote_write and self.remote_write.credentials_secret:
            refs.append((self.remote_write.credentials_secret, "observability.remote_write.credentials_secret"))
        return refs
