"""`RegionalFleet`: everything one region serves, composed: cluster, node pools, KEDA, inference services.

One method per concern, so later concerns (gateway, observability) are one more method each. The
cloud provider of the region comes in through `opts.providers`; the cluster's Kubernetes provider is
passed explicitly to every Kubernetes child.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s

from components.cluster import Cluster, ClusterArgs, ClusterKind
from components.inference import InferenceService, InferenceServiceArgs, ModelCache
from components.keda import Keda
from components.nodepool import GpuNodePool, GpuNodePoolArgs
from components.sizing.plan import DeploymentPlan

DEFAULT_PROMETHEUS_URL = "http://kube-prometheus-stack-prometheus.monitoring.svc.cluster.local:9090"
"""Where kube-prometheus-stack (release `kube-prometheus-stack`, namespace `monitoring`) serves Prometheus."""


@dataclass
class RegionalFleetArgs:
    cloud: Literal["aws", "gcp", "local"]
    """The region's cloud (`local`: a kind/minikube cluster)."""
    region: str
    """Cloud region, e.g. us-east-1; the cloud provider in opts.providers must be for it."""
    cluster_kind: ClusterKind
    """eks / gke create the cluster; existing connects to `kubeconfig`."""
    deployments: Sequence[DeploymentPlan]
    """The plan entries of this region, one per served model."""
    queue_thresholds: Mapping[str, int]
    """Served model name -> waiting requests per replica that trigger a scale-out (from the SLO)."""
    role: Literal["primary", "secondary"] = "secondary"
    """The region's role for global load balancing."""
    kubeconfig: pulumi.Input[str] | None = None
    """existing: the cluster's kubeconfig (secret); None uses the current kubeconfig."""
    kubernetes_version: str | None = None
    """Created clusters: control-plane version; None takes the cloud's default."""
    gcp_project: str | None = None
    """gcp: the project the cluster lives in."""
    namespace: str = "llmfleet"
    """Namespace of the inference services (created)."""
    hf_token: pulumi.Input[str] | None = None
    """HuggingFace token (a secret Output) for gated weights."""
    prometheus_url: str = DEFAULT_PROMETHEUS_URL
    """Prometheus that KEDA queries for the engines' queue gauges."""
    model_cache: ModelCache = ModelCache.PER_REPLICA
    """How the services keep downloaded weights (SINGLE_NODE for kind/minikube)."""
    engine_args: Mapping[str, Sequence[str]] = field(default_factory=dict[str, Sequence[str]])
    """Escape hatch: served model name -> extra engine flags."""


class RegionalFleet(pulumi.ComponentResource):
    """One region: its cluster, one node pool and one inference service per model, and KEDA."""

    cluster: Cluster
    keda: Keda
    pools: dict[str, GpuNodePool]
    """Served model name -> its node pool."""
    services: dict[str, InferenceService]
    """Served model name -> its inference service."""
    endpoints: pulumi.Output[dict[str, str]]
    """Served model name -> cluster-local OpenAI-compatible base URL."""

    def __init__(self, name: str, args: RegionalFleetArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmfleet:fleet:RegionalFleet", name, None, opts)
        elsewhere = [d.model for d in args.deployments if (d.cloud, d.region) != (args.cloud, args.region)]
        if elsewhere:
            raise ValueError(f"{name}: deployments {elsewhere} are planned for another region")
        self.cluster = self._cluster(name, args)
        kubernetes = pulumi.ResourceOptions(parent=self, providers=[self.cluster.provider])
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace", metadata=k8s.meta.v1.ObjectMetaArgs(name=args.namespace), opts=kubernetes
        )
        self.keda = Keda(f"{name}-keda", opts=kubernetes)
        self.pools = {}
        self.services = {}
        for plan in args.deployments:
            self.pools[plan.model] = self._pool(name, args, plan, kubernetes)
            self.services[plan.model] = self._service(name, args, plan, namespace, kubernetes)
        self.endpoints = pulumi.Output.all(**{model: s.url for model, s in self.services.items()}).apply(
            lambda urls: dict(sorted(urls.items()))
        )
        self.register_outputs({"endpoints": self.endpoints})

    def _cluster(self, name: str, args: RegionalFleetArgs) -> Cluster:
        return Cluster(
            f"{name}-cluster",
            ClusterArgs(
                kind=args.cluster_kind,
                region=args.region,
                kubernetes_version=args.kubernetes_version,
                kubeconfig=args.kubeconfig,
                gcp_project=args.gcp_project,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _pool(
        self, name: str, args: RegionalFleetArgs, plan: DeploymentPlan, kubernetes: pulumi.ResourceOptions
    ) -> GpuNodePool:
        """The nodes of one deployment (nothing is created on an existing cluster)."""
        cluster = self.cluster
        return GpuNodePool(
            f"{name}-{plan.model}-pool",
            GpuNodePoolArgs(
                deployment=plan,
                cluster_name=cluster.cluster_name,
                kind=args.cluster_kind,
                node_role_arn=cluster.node_role_arn,
                subnet_ids=cluster.private_subnet_ids,
                location=cluster.location,
                gcp_project=args.gcp_project,
            ),
            opts=kubernetes,
        )

    def _service(
        self,
        name: str,
        args: RegionalFleetArgs,
        plan: DeploymentPlan,
        namespace: k8s.core.v1.Namespace,
        kubernetes: pulumi.ResourceOptions,
    ) -> InferenceService:
        """One model's server on its pool's nodes, autoscaled once KEDA is installed."""
        pool = self.pools[plan.model]
        return InferenceService(
            f"{name}-{plan.model}",
            InferenceServiceArgs(
                deployment=plan,
                namespace=namespace.metadata.name,
                queue_threshold=args.queue_thresholds[plan.model],
                prometheus_url=args.prometheus_url,
                node_selector=pool.node_selector,
                tolerations=pool.tolerations,
                hf_token=args.hf_token,
                extra_args=args.engine_args.get(plan.model, ()),
                model_cache=args.model_cache,
                scaler_depends_on=[self.keda],
            ),
            opts=kubernetes,
        )
