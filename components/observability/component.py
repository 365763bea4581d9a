"""`Observability`: one region's monitoring, installed into its cluster.

kube-prometheus-stack (stack.py), dcgm-exporter on GPU nodes (dcgm.py), monitors for the engines
and the gateway (monitors.py), the SLO's alert rules (rules.py) and Grafana dashboards
(dashboards.py). Pass the cluster's Kubernetes provider in `opts.providers`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from llmfleet.components.helm import merge_values, pinned_release
from llmfleet.components.inference.engine import object_name
from llmfleet.components.observability import dcgm, stack
from llmfleet.components.observability.dashboards import dashboards
from llmfleet.components.observability.monitors import (
    API_VERSION,
    SCRAPE_KEY,
    gateway_monitor_spec,
    inference_monitor_spec,
    response_cache_monitor_spec,
)
from llmfleet.components.observability.rules import AlertThresholds, ServedModel, SloTargets, rule_groups
from llmfleet.components.sizing.plan import DeploymentPlan

HELM_TIMEOUT_S = 900
"""The stack's first install pulls several images and waits for Prometheus and Grafana to be ready."""
LABELS = {"app.kubernetes.io/part-of": "llmfleet", "app.kubernetes.io/component": "observability"}


@dataclass
class ObservabilitySettings:
    """What a region's monitoring is, as the stack states it: SLO, thresholds, retention, where samples go.

    `RegionalFleetArgs.observability` takes these; the fleet adds what only it knows (the services'
    namespace, its deployments and thresholds, the routed models, the engines' key) and builds the
    `ObservabilityArgs` once."""

    cloud: str
    """The region's cloud (aws, gcp, local): GKE needs extra mounts for dcgm-exporter."""
    region: str
    """Cloud region; written into every series as the external label `region` (and `cloud`)."""
    slo: SloTargets
    """The stack's SLO: alert thresholds and dashboard target lines."""
    thresholds: AlertThresholds = field(default_factory=AlertThresholds)
    """Alert thresholds the SLO does not state."""
    retention: str = "15d"
    """How long Prometheus keeps samples (Prometheus duration)."""
    storage_gib: int = 20
    """Prometheus volume; samples past 90% of it are deleted early."""
    remote_write_url: str | None = None
    """Also send every sample to this central store (Prometheus remote-write endpoint)."""
    remote_write_username: str | None = None
    """Basic-auth user for remote write (the credential is then the password)."""
    remote_write_credential: pulumi.Input[str] | None = None
    """Remote-write password or bearer token (a secret Output); stored in a Secret."""
    grafana_admin_password: pulumi.Input[str] | None = None
    """Grafana's admin password (a secret Output); None lets the Grafana chart generate one."""
    namespace: str = stack.NAMESPACE
    """Namespace of the stack, its monitors, rules and dashboards (created)."""
    stack_values: Mapping[str, Any] = field(default_factory=dict[str, Any])
    """Escape hatch: deep-merged into the kube-prometheus-stack values."""
    dcgm_values: Mapping[str, Any] = field(default_factory=dict[str, Any])
    """Escape hatch: deep-merged into the dcgm-exporter values."""

    @property
    def prometheus_url(self) -> str:
        """Where the Prometheus these arguments install will answer (known before it exists)."""
        return stack.prometheus_url(self.namespace)


@dataclass(kw_only=True)
class ObservabilityArgs(ObservabilitySettings):
    """The settings and what is monitored: the model servers' namespace, plan entries and thresholds."""

    inference_namespace: str = "llmfleet"
    """Namespace of the InferenceServices (what the engine monitor and the rules watch)."""
    deployments: Sequence[DeploymentPlan] = ()
    """The region's plan entries: models, engines, GPUs and prices (cost dashboard)."""
    queue_thresholds: Mapping[str, int] = field(default_factory=dict[str, int])
    """Served model name -> waiting requests per replica at which KEDA scales out (one per deployment)."""
    routed_models: Sequence[str] = ()
    """Served models routed through an InferencePool: adds the pickers' dashboard."""
    cached_models: Sequence[str] = ()
    """Served models behind the gateway's response cache (its LiteLLM runs in `inference_namespace`): adds its
    ServiceMonitor and dashboard."""
    inference_scrape_key: pulumi.Input[str] | None = None
    """The engines' API key (a secret Output): the model servers' scrape sends it as a bearer token, since
    llama.cpp's server demands it on /metrics (vLLM ignores it there). Stored in a Secret of this namespace,
    the only one the Prometheus operator reads scrape credentials from."""

    @classmethod
    def of(
        cls,
        settings: ObservabilitySettings,
        *,
        inference_namespace: str,
        deployments: Sequence[DeploymentPlan],
        queue_thresholds: Mapping[str, int],
        routed_models: Sequence[str],
        inference_scrape_key: pulumi.Input[str] | None,
        cached_models: Sequence[str] = (),
    ) -> ObservabilityArgs:
        """`settings` (each field as is: secrets stay Outputs) with what is monitored."""
        given: dict[str, Any] = {f.name: getattr(settings, f.name) for f in fields(ObservabilitySettings)}
        return cls(
            **given,
            inference_namespace=inference_namespace,
            deployments=deployments,
            queue_thresholds=queue_thresholds,
            routed_models=routed_models,
            inference_scrape_key=inference_scrape_key,
            cached_models=cached_models,
        )


SCRAPE_KEY_SECRET = "llmfleet-scrape-key"
"""Secret (monitoring namespace) with the engines' key, for the model servers' scrape."""


class Observability(pulumi.ComponentResource):
    """Prometheus, Alertmanager and Grafana for one region, with the project's monitors, rules and dashboards."""

    prometheus_url: str
    """In-cluster URL of this region's Prometheus (what KEDA queries)."""
    grafana_url: str
    stack: k8s.helm.v3.Release
    dcgm: k8s.helm.v3.Release | None
    """None when no model of the region runs on GPUs."""
    rules: k8s.apiextensions.CustomResource
    dashboard_names: list[str]
    """Titles of the dashboards installed."""

    def __init__(self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmfleet:observability:Observability", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace", metadata=k8s.meta.v1.ObjectMetaArgs(name=args.namespace, labels=LABELS), opts=child
        )
        ns = namespace.metadata.name
        secrets = self._secrets(name, args, ns, child)

        values = stack.stack_values(
            external_labels={"cloud": args.cloud, "region": args.region},
            retention=args.retention,
            storage_gib=args.storage_gib,
            remote_write=stack.RemoteWrite(
                args.remote_write_url, args.remote_write_username, args.remote_write_credential is not None
            )
            if args.remote_write_url
            else None,
            grafana_admin_secret=args.grafana_admin_password is not None,
        )
        self.stack = pinned_release(
            f"{name}-stack",
            release_name=stack.RELEASE,
            chart=stack.CHART,
            version=stack.CHART_VERSION,
            repository=stack.REPOSITORY,
            namespace=ns,
            values=merge_values(values, args.stack_values),
            timeout_s=HELM_TIMEOUT_S,
            opts=pulumi.ResourceOptions(parent=self, depends_on=secrets),
        )
        # Monitors, rules (and dcgm-exporter's ServiceMonitor) need the operator's CRDs from the stack.
        after_stack = pulumi.ResourceOptions(parent=self, depends_on=[self.stack])

        self.dcgm = None
        if any(d.gpu for d in args.deployments):
            self.dcgm = pinned_release(
                f"{name}-dcgm-exporter",
                release_name=dcgm.RELEASE,
                chart=dcgm.CHART,
                version=dcgm.CHART_VERSION,
                repository=dcgm.REPOSITORY,
                namespace=ns,
                values=merge_values(dcgm.dcgm_values(args.cloud), args.dcgm_values),
                timeout_s=HELM_TIMEOUT_S,
                opts=after_stack,
            )

        def custom(role: str, kind: str, spec: Any) -> k8s.apiextensions.CustomResource:
            return k8s.apiextensions.CustomResource(
                f"{name}-{role}",
                api_version=API_VERSION,
                kind=kind,
                metadata=k8s.meta.v1.ObjectMetaArgs(name=f"llmfleet-{role}", namespace=ns, labels=LABELS),
                spec=spec,
                opts=after_stack,
            )

        scrape_secret = SCRAPE_KEY_SECRET if args.inference_scrape_key is not None else None
        custom("inference", "ServiceMonitor", inference_monitor_spec(args.inference_namespace, scrape_secret))
        custom("gateway", "PodMonitor", gateway_monitor_spec())
        if args.cached_models:
            custom("response-cache", "ServiceMonitor", response_cache_monitor_spec(args.inference_namespace))
        missing = sorted({d.model for d in args.deployments} - set(args.queue_thresholds))
        if missing:
            raise ValueError(f"{name}: queue_thresholds has no entry for models {missing}")
        served = [
            ServedModel(d.model, object_name(d), d.engine, args.queue_thresholds[d.model], d.min_replicas > 0)
            for d in args.deployments
        ]
        groups = rule_groups(args.slo, args.thresholds, args.inference_namespace, served, gpus=self.dcgm is not None)
        self.rules = custom("rules", "PrometheusRule", {"groups": groups})

        self.dashboard_names = []
        boards = dashboards(
            args.inference_namespace,
            args.deployments,
            args.slo,
            routed=bool(args.routed_models),
            cached=bool(args.cached_models),
        )
        for board in boards:
            k8s.core.v1.ConfigMap(
                f"{name}-{board.uid}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=board.uid,
                    namespace=ns,
                    labels={**LABELS, stack.DASHBOARD_LABEL: stack.DASHBOARD_LABEL_VALUE},
                ),
                data={f"{board.uid}.json": json.dumps(board.model(), indent=1, sort_keys=True)},
                opts=child,
            )
            self.dashboard_names.append(board.title)

        self.prometheus_url = args.prometheus_url
        self.grafana_url = stack.grafana_url(args.namespace)
        self.register_outputs(self.summary())

    def summary(self) -> dict[str, Any]:
        """Where the region's monitoring answers and what it shows (the program exports this per region)."""
        return {
            "prometheus_url": self.prometheus_url,
            "grafana_url": self.grafana_url,
            "dashboards": self.dashboard_names,
        }

    @staticmethod
    def _secrets(
        name: str, args: ObservabilityArgs, namespace: pulumi.Output[str], child: pulumi.ResourceOptions
    ) -> list[pulumi.Resource]:
        """The Secrets the chart reads credentials from (values only ever name them)."""
        created: list[pulumi.Resource] = []

        def secret(role: str, secret_name: str, data: Mapping[str, pulumi.Input[str]]) -> None:
            created.append(
                k8s.core.v1.Secret(
                    f"{name}-{role}",
                    metadata=k8s.meta.v1.ObjectMetaArgs(name=secret_name, namespace=namespace, labels=LABELS),
                    type="Opaque",
                    string_data=dict(data),
                    opts=child,
                )
            )

        if args.grafana_admin_password is not None:
            secret(
                "grafana-admin",
                stack.GRAFANA_ADMIN_SECRET,
                {
                    stack.GRAFANA_USER_KEY: "admin",
                    stack.GRAFANA_PASSWORD_KEY: pulumi.Output.secret(args.grafana_admin_password),
                },
            )
        if args.remote_write_url and args.remote_write_credential is not None:
            data: dict[str, pulumi.Input[str]] = {
                stack.REMOTE_WRITE_CREDENTIAL_KEY: pulumi.Output.secret(args.remote_write_credential)
            }
            if args.remote_write_username is not None:
                data[stack.REMOTE_WRITE_USER_KEY] = args.remote_write_username
            secret("remote-write", stack.REMOTE_WRITE_SECRET, data)
        if args.inference_scrape_key is not None:
            secret("scrape-key", SCRAPE_KEY_SECRET, {SCRAPE_KEY: pulumi.Output.secret(args.inference_scrape_key)})
        return created
