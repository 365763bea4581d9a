"""kube-prometheus-stack: Prometheus (operator), Alertmanager, Grafana, node-exporter, kube-state-metrics.

The release name and `fullnameOverride` are fixed so Prometheus' address is known before anything
runs: `PROMETHEUS_URL` is the one place it is written, and KEDA's ScaledObjects query it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmfleet.components import pins

_PIN = pins.chart("kube-prometheus-stack")
CHART = _PIN.name
REPOSITORY = _PIN.repository
CHART_VERSION = _PIN.version
"""Pinned in components/pins.yaml (release tag kube-prometheus-stack-88.5.3)."""
RELEASE = "kube-prometheus-stack"
NAMESPACE = "monitoring"
PROMETHEUS_PORT = 9090


def prometheus_url(namespace: str = NAMESPACE) -> str:
    """In-cluster URL of the Prometheus this release runs (Service `<fullname>-prometheus`)."""
    return f"http://{RELEASE}-prometheus.{namespace}.svc.cluster.local:{PROMETHEUS_PORT}"


PROMETHEUS_URL = prometheus_url()
"""Where KEDA (and anything else in the cluster) reaches the region's Prometheus."""


def grafana_url(namespace: str = NAMESPACE) -> str:
    """In-cluster URL of the release's Grafana (Service `<release>-grafana`, port 80)."""
    return f"http://{RELEASE}-grafana.{namespace}.svc.cluster.local"


DASHBOARD_LABEL = "grafana_dashboard"
DASHBOARD_LABEL_VALUE = "1"
"""ConfigMaps with this label are loaded by Grafana's dashboard sidecar (set explicitly below)."""

SCRAPE_INTERVAL = "15s"
"""KEDA polls the queue every 15 s (inference/autoscaling.py): older samples would only delay scaling."""
RETENTION_SIZE_SHARE = 0.9
"""Prometheus deletes old blocks past 90% of its volume rather than failing when the disk fills."""

GRAFANA_ADMIN_SECRET = "grafana-admin"
GRAFANA_USER_KEY = "admin-user"
GRAFANA_PASSWORD_KEY = "admin-password"
REMOTE_WRITE_SECRET = "remote-write-credentials"
REMOTE_WRITE_USER_KEY = "username"
REMOTE_WRITE_CREDENTIAL_KEY = "credential"


@dataclass(frozen=True)
class RemoteWrite:
    """Forward every sample to a central store (Mimir, Thanos receive, Cortex, a managed Prometheus)."""

    url: str
    username: str | None = None
    """With a username: basic auth with the credential as password; without: the credential is a bearer token."""
    has_credential: bool = False


def stack_values(
    *,
    external_labels: Mapping[str, str],
    retention: str,
    storage_gib: int,
    remote_write: RemoteWrite | None,
    grafana_admin_secret: bool,
) -> dict[str, Any]:
    """Chart values; `grafana_admin_secret`: Grafana reads its admin login from GRAFANA_ADMIN_SECRET."""
    prometheus_spec: dict[str, Any] = {
        # The chart's defaults (true) select only monitors and rules labelled with its release:
        # false makes Prometheus pick up every ServiceMonitor, PodMonitor and PrometheusRule.
        "serviceMonitorSelectorNilUsesHelmValues": False,
        "podMonitorSelectorNilUsesHelmValues": False,
        "ruleSelectorNilUsesHelmValues": False,
        "probeSelectorNilUsesHelmValues": False,
        "scrapeInterval": SCRAPE_INTERVAL,
        "evaluationInterval": SCRAPE_INTERVAL,
        "retention": retention,
        "retentionSize": f"{int(storage_gib * RETENTION_SIZE_SHARE)}GB",
        "externalLabels": dict(external_labels),
        "storageSpec": {
            "volumeClaimTemplate": {
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": f"{storage_gib}Gi"}}}
            }
        },
    }
    if remote_write is not None:
        prometheus_spec["remoteWrite"] = [_remote_write(remote_write)]
    grafana: dict[str, Any] = {
        "sidecar": {"dashboards": {"enabled": True, "label": DASHBOARD_LABEL, "labelValue": DASHBOARD_LABEL_VALUE}},
    }
    if grafana_admin_secret:
        grafana["admin"] = {
            "existingSecret": GRAFANA_ADMIN_SECRET,
            "userKey": GRAFANA_USER_KEY,
            "passwordKey": GRAFANA_PASSWORD_KEY,
        }
    else:
        # kube-prometheus-stack's default password is the public "prom-operator"; an empty one makes
        # the Grafana chart generate a random password into the Secret <release>-grafana (key
        # admin-password) and keep it across upgrades (its `grafana.password` helper looks it up).
        # (Not None: Pulumi drops None values, which would leave the public default in place.)
        grafana["adminPassword"] = ""
    return {
        "fullnameOverride": RELEASE,
        "prometheus": {"prometheusSpec": prometheus_spec},
        "grafana": grafana,
    }


def _remote_write(target: RemoteWrite) -> dict[str, Any]:
    entry: dict[str, Any] = {"url": target.url}

    def key(name: str) -> dict[str, str]:
        return {"name": REMOTE_WRITE_SECRET, "key": name}

    if target.has_credential and target.username is not None:
        entry["basicAuth"] = {"username": key(REMOTE_WRITE_USER_KEY), "password": key(REMOTE_WRITE_CREDENTIAL_KEY)}
    elif target.has_credential:
        entry["authorization"] = {"type": "Bearer", "credentials": key(REMOTE_WRITE_CREDENTIAL_KEY)}
    return entry
