"""`RegionalFleet`: everything one region serves, composed: cluster, node pools, KEDA, inference services.

One method per concern, called in order from `__init__`. To add a concern (the gateway, observability):
1. a field in `RegionalFleetArgs` (default None: the concern is off), with a docstring;
2. a public attribute on the class, and a method `_<concern>(self, name, args)` that builds it with
   `self.kubernetes_opts()` (parent: the fleet; provider: the region's cluster) and returns it;
3. one line in `__init__` at the marked place, after the services, which it may read (`self.services`).
The cloud provider of the region comes in through `opts.providers` and reaches the cloud children by
inheritance; Kubernetes children get the cluster's provider explicitly, never a default provider.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from llmfleet.components.cluster import Cluster, ClusterArgs, ClusterKind
from llmfleet.components.gateway import (
    CanaryBackend,
    Gateway,
    GatewayArgs,
    GatewaySettings,
    ModelBackend,
    SplitBackend,
)
from llmfleet.components.gateway.shadow import CREDENTIAL_KEY
from llmfleet.components.inference import InferenceService, InferenceServiceArgs, ModelCache
from llmfleet.components.inference.engine import object_name
from llmfleet.components.inference.hardening import API_KEY_SECRET_KEY
from llmfleet.components.keda import Keda, KedaArgs
from llmfleet.components.loadgen import ROLE as LOADGEN_ROLE
from llmfleet.components.loadgen import LoadGenerator, LoadGeneratorSettings
from llmfleet.components.nodepool import GpuNodePool, GpuNodePoolArgs
from llmfleet.components.observability import (
    PROMETHEUS_URL,
    Observability,
    ObservabilityArgs,
    ObservabilitySettings,
)
from llmfleet.components.queue import AsyncQueue, AsyncQueueArgs, QueueConfig, QueueWorkers, QueueWorkersArgs
from llmfleet.components.queue.pool import WorkerPool, WorkerPoolArgs
from llmfleet.components.routing import InferencePool, InferencePoolArgs, RoutingOptions
from llmfleet.components.sizing.plan import DeploymentPlan
from llmfleet.components.sizing.types import Engine

DEFAULT_PROMETHEUS_URL = PROMETHEUS_URL
"""Where kube-prometheus-stack serves Prometheus when installed as components.observability installs it."""
ENGINE_KEY_SECRET = "llmfleet-engine-key"
"""Secret (in the services' namespace) holding the key the engines require and the gateway sends."""


@dataclass(frozen=True)
class Revision:
    """A second revision of the region's models, served beside `deployments` (`llmfleet rollout`)."""

    id: str
    """Revision id: suffixes its services' names."""
    deployments: Sequence[DeploymentPlan]
    """Its plan entries: the same served models as `deployments`, served differently."""
    weight: int
    """Percent of each model's requests it takes at the gateway."""
    shadow: int = 0
    """Shadow stage: percent of each model's requests copied to it, the copies' answers dropped (weight 0)."""


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
    api_access_cidrs: Sequence[str] | None = None
    """Created clusters: IPv4 CIDRs allowed to reach the Kubernetes API (required for eks and gke)."""
    namespace: str = "llmfleet"
    """Namespace of the inference services (created)."""
    hf_token: pulumi.Input[str] | None = None
    """HuggingFace token (a secret Output) for gated weights."""
    prometheus_url: str = DEFAULT_PROMETHEUS_URL
    """Prometheus that KEDA queries for the engines' queue gauges when `observability` is None (with it,
    KEDA queries the Prometheus it installs)."""
    model_cache: ModelCache = ModelCache.PER_REPLICA
    """How the services keep downloaded weights (SINGLE_NODE for kind/minikube)."""
    engine_args: Mapping[str, Sequence[str]] = field(default_factory=dict[str, Sequence[str]])
    """Escape hatch: served model name -> extra engine flags."""
    gateway: GatewaySettings | None = None
    """The API gateway in front of the services: its settings; the fleet adds the namespace, the models'
    services, the pod selector and the engine key. None: no gateway, the services are reachable in the cluster only."""
    observability: ObservabilitySettings | None = None
    """Prometheus, Grafana, dcgm-exporter, monitors, SLO alerts and dashboards for the region: its settings; the
    fleet adds the services' namespace, deployments and queue thresholds. None: bring your own at `prometheus_url`."""
    revision: str | None = None
    """Revision id of `deployments` once a rollout recorded one (suffixes the services' names); None: plain names."""
    canary: Revision | None = None
    """During a rollout or an A/B test: a second revision on the same pools, weighted at the gateway."""
    shadow: int = 0
    """Shadow stage of a rollout whose new revision is `deployments`: percent of each model's requests copied to it
    while `canary` (the old revision) takes them all."""
    queue: QueueConfig | None = None
    """Async queue of the region (components/queue/): its queue, bucket and identities are built before KEDA
    (whose operator reads the queue's length), its workers after the gateway they call; None: no queue."""
    routing: Mapping[str, RoutingOptions] = field(default_factory=dict[str, RoutingOptions])
    """Served model name -> prefix- and load-aware routing: each revision of the model becomes an
    InferencePool with the upstream endpoint picker, and the gateway routes the model through it
    (needs `gateway`). Models not listed are routed to their Service."""
    load_generator: LoadGeneratorSettings | None = None
    """An SLO-gate load generator (Locust master + workers as Jobs) next to the gateway, for the rollout's
    in-cluster gate (needs `gateway`); None: none."""


class RegionalFleet(pulumi.ComponentResource):
    """One region: its cluster, one node pool and one inference service per model, and KEDA."""

    cluster: Cluster
    namespace: k8s.core.v1.Namespace
    """The namespace of the inference services (and of the region's other workloads)."""
    keda: Keda
    engine_key: k8s.core.v1.Secret | None
    """The key the engines require and only the gateway holds (None without a gateway)."""
    pools: dict[str, GpuNodePool]
    """Served model name -> its node pool (a deployed GPU mix: `<model>-<part>` -> each part's pool)."""
    services: dict[str, InferenceService]
    """Served model name -> its inference service (a deployed GPU mix: its first part's)."""
    mix_services: dict[str, list[InferenceService]]
    """Served model name -> both parts' services, for models deployed as a GPU mix."""
    canary_services: dict[str, InferenceService]
    """Served model name -> its second revision's service (empty outside a rollout; a GPU mix: its first part's)."""
    canary_mix_services: dict[str, list[InferenceService]]
    """Served model name -> both parts' services of its second revision, where that revision is a GPU mix."""
    inference_pools: dict[str, InferencePool]
    """Pool name (`<model>[-<revision>]`, one for both parts of a GPU mix) -> its InferencePool (routed models only)."""
    gateway: Gateway | None
    """The region's API gateway (None when the stack has none)."""
    observability: Observability | None
    """The region's monitoring (None when the stack turns it off)."""
    queue: AsyncQueue | None
    """The region's async queue (None when the stack has none)."""
    queue_workers: QueueWorkers | None
    queue_pool: WorkerPool | None
    load_generator: LoadGenerator | None
    """The in-cluster gate's load generator (None unless `args.load_generator`)."""
    """The queue workers' own spot node pool (None: they run on the system nodes)."""
    endpoints: pulumi.Output[dict[str, str]]
    """Served model name -> cluster-local OpenAI-compatible base URL."""

    def __init__(self, name: str, args: RegionalFleetArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmfleet:fleet:RegionalFleet", name, None, opts)
        elsewhere = [d.model for d in args.deployments if (d.cloud, d.region) != (args.cloud, args.region)]
        if elsewhere:
            raise ValueError(f"{name}: deployments {elsewhere} are planned for another region")
        self.cluster = self._cluster(name, args)
        self.namespace = self._namespace(name, args)
        self.queue = self._queue(name, args)
        self.keda = self._keda(name)
        self._engine_key_value: pulumi.Output[str] | None = None
        self.engine_key = self._engine_key(name, args)
        self.pools = {}
        self.services = {}
        self.mix_services = {}
        for plan in args.deployments:
            # A deployed GPU mix: a pool and a service per part, each sized by its own part of the plan.
            for part in plan.deployed:
                self.pools[object_name(part)] = self._pool(name, args, part)
            services = [self._service(name, args, part, args.revision) for part in plan.deployed]
            self.services[plan.model] = services[0]
            if plan.parts:
                self.mix_services[plan.model] = services
        self.canary_services = {}
        self.canary_mix_services = {}
        if args.canary is not None:
            for plan in args.canary.deployments:
                # The canary revision is deployed as its plan says: a GPU mix as a mix of its own (its parts on the
                # pools of their GPU types, a pool added where the first revision has none of that type).
                for part in plan.deployed:
                    if object_name(part) not in self.pools:
                        self.pools[object_name(part)] = self._pool(name, args, part)
                services = [self._service(name, args, part, args.canary.id) for part in plan.deployed]
                self.canary_services[plan.model] = services[0]
                if plan.parts:
                    self.canary_mix_services[plan.model] = services
        # More concerns: one line each here, after the services they read.
        self.gateway = self._gateway(name, args)
        self.observability = self._observability(name, args)
        self.queue_pool = self._queue_pool(name, args)
        self.queue_workers = self._queue_workers(name, args)
        self.inference_pools = self._routing(name, args)
        self.load_generator = self._load_generator(name, args)
        self.endpoints = pulumi.Output.all(**{model: s.url for model, s in self.services.items()}).apply(
            lambda urls: dict(sorted(urls.items()))
        )
        gateway_endpoint = self.gateway.endpoint if self.gateway else None
        self.register_outputs({"endpoints": self.endpoints, "gateway_endpoint": gateway_endpoint})

    def _load_generator(self, name: str, args: RegionalFleetArgs) -> LoadGenerator | None:
        """The gate's generator in the services' namespace, loading the region's gateway; created after it."""
        settings = args.load_generator
        if settings is None:
            return None
        if self.gateway is None or not args.deployments:
            raise ValueError(f"{name}: a load generator loads the region's gateway and models; add them")
        return LoadGenerator(
            f"{name}-{LOADGEN_ROLE}",
            settings.args(self.gateway.endpoint, args.deployments[0].model, self.namespace.metadata.name),
            opts=self.kubernetes_opts(depends_on=[self.gateway]),
        )

    def kubernetes_opts(self, depends_on: Sequence[pulumi.Resource] = ()) -> pulumi.ResourceOptions:
        """Options for a Kubernetes child: parented to the fleet, deployed with the region's cluster provider."""
        return pulumi.ResourceOptions(parent=self, providers=[self.cluster.provider], depends_on=list(depends_on))

    def _cluster(self, name: str, args: RegionalFleetArgs) -> Cluster:
        return Cluster(
            f"{name}-cluster",
            ClusterArgs(
                kind=args.cluster_kind,
                region=args.region,
                kubernetes_version=args.kubernetes_version,
                kubeconfig=args.kubeconfig,
                gcp_project=args.gcp_project,
                api_access_cidrs=args.api_access_cidrs,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _namespace(self, name: str, args: RegionalFleetArgs) -> k8s.core.v1.Namespace:
        return k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=args.namespace, labels={"app.kubernetes.io/part-of": "llmfleet"}),
            opts=self.kubernetes_opts(),
        )

    def _keda(self, name: str) -> Keda:
        """The autoscaler operator; the ScaledObjects wait for it (their CRD comes with its chart). With a queue,
        its operator runs with the identity that reads the queue's length."""
        values = self.queue.keda_operator_values if self.queue is not None else {}
        return Keda(f"{name}-keda", KedaArgs(values=values), opts=self.kubernetes_opts())

    def _queue(self, name: str, args: RegionalFleetArgs) -> AsyncQueue | None:
        """The queue, its dead-letter queue, the result bucket and the identities (cloud resources)."""
        if args.queue is None:
            return None
        if args.cloud == "local" or args.cluster_kind == ClusterKind.existing:
            raise ValueError(f"{name}: the async queue needs a cluster llmfleet creates (IRSA / Workload Identity)")
        return AsyncQueue(
            f"{name}-queue",
            AsyncQueueArgs(
                cloud=args.cloud,
                region=args.region,
                namespace=args.namespace,
                settings=args.queue.settings,
                oidc_provider_arn=self.cluster.oidc_provider_arn,
                oidc_issuer=self.cluster.oidc_issuer,
                gcp_project=args.gcp_project,
                tags={"llmfleet": name},
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _queue_workers(self, name: str, args: RegionalFleetArgs) -> QueueWorkers | None:
        """The workers, calling the models through the region's gateway, scaled by KEDA on the queue."""
        if args.queue is None or self.queue is None:
            return None
        if self.gateway is None:
            raise ValueError(f"{name}: the async queue's workers call the models through the gateway; add one")
        return QueueWorkers(
            f"{name}-queue-workers",
            QueueWorkersArgs(
                queue=self.queue,
                namespace=self.namespace.metadata.name,
                gateway_url=self.gateway.endpoint,
                workers=args.queue.workers,
                api_key=args.queue.api_key,
                webhook_secret=args.queue.webhook_secret,
                scaler_depends_on=[self.keda],
                node_selector=self.queue_pool.node_selector if self.queue_pool else None,
                tolerations=self.queue_pool.tolerations if self.queue_pool else (),
            ),
            opts=self.kubernetes_opts(),
        )

    def _engine_key_for(self, plan: DeploymentPlan, args: RegionalFleetArgs) -> pulumi.Output[str] | None:
        """The key Secret's name for a model's server. llama.cpp's server demands the key on /metrics too, so it
        is keyed only when this fleet's own Prometheus scrapes it (with the key); a Prometheus brought along
        (`observability` None) would be refused, and KEDA would lose the queue gauge."""
        if self.engine_key is None or (plan.engine is Engine.LLAMA_CPP and args.observability is None):
            return None
        return self.engine_key.metadata.name

    def _engine_key(self, name: str, args: RegionalFleetArgs) -> k8s.core.v1.Secret | None:
        """A random key per region, generated in the state (secret) and stored once as a Secret that both the
        engines (env) and the AI Gateway (BackendSecurityPolicy) read. Only with a gateway to hold it."""
        if args.gateway is None:
            return None
        key = random.RandomPassword(
            f"{name}-engine-key", length=48, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        self._engine_key_value = pulumi.Output.secret(key.result)
        return k8s.core.v1.Secret(
            f"{name}-engine-key-secret",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=ENGINE_KEY_SECRET, namespace=self.namespace.metadata.name),
            type="Opaque",
            # `credential`: the same key as the header value Envoy Gateway injects into shadow copies.
            string_data={
                API_KEY_SECRET_KEY: pulumi.Output.secret(key.result),
                CREDENTIAL_KEY: pulumi.Output.secret(pulumi.Output.concat("Bearer ", key.result)),
            },
            opts=self.kubernetes_opts(),
        )

    def _queue_pool(self, name: str, args: RegionalFleetArgs) -> WorkerPool | None:
        """The workers' spot node pool when the plan sized one (cloud resources, the region's provider)."""
        if args.queue is None or args.queue.pool is None:
            return None
        return WorkerPool(
            f"{name}-queue-pool",
            WorkerPoolArgs(pool=args.queue.pool, cluster=self.cluster),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _pool(self, name: str, args: RegionalFleetArgs, plan: DeploymentPlan) -> GpuNodePool:
        """The nodes of one deployment, with the device plugin where the image lacks one (nothing is
        created on an existing cluster). Cloud resources inherit the region's cloud provider."""
        return GpuNodePool(
            f"{name}-{object_name(plan)}-pool",
            GpuNodePoolArgs(deployment=plan, cluster=self.cluster),
            opts=self.kubernetes_opts(),
        )

    def _service(
        self, name: str, args: RegionalFleetArgs, plan: DeploymentPlan, revision: str | None
    ) -> InferenceService:
        """One model's server (or one part of its GPU mix) on its pool's nodes, autoscaled once KEDA is installed."""
        key = object_name(plan)
        pool = self.pools[key]
        if key not in args.queue_thresholds:
            raise ValueError(f"{name}: queue_thresholds has no entry for {key}")
        return InferenceService(
            f"{name}-{key}" + (f"-{revision}" if revision else ""),
            InferenceServiceArgs(
                deployment=plan,
                namespace=self.namespace.metadata.name,
                queue_threshold=args.queue_thresholds[key],
                prometheus_url=args.observability.prometheus_url if args.observability else args.prometheus_url,
                node_selector=pool.node_selector,
                tolerations=pool.tolerations,
                hf_token=args.hf_token,
                extra_args=args.engine_args.get(plan.model, ()),
                model_cache=args.model_cache,
                scaler_depends_on=[self.keda],
                revision=revision,
                api_key_secret=self._engine_key_for(plan, args),
            ),
            opts=self.kubernetes_opts(),
        )

    def _gateway(self, name: str, args: RegionalFleetArgs) -> Gateway | None:
        """Every model of the region behind one gateway (`gateway.endpoint`: the region's https URL); its
        NetworkPolicy keeps the inference pods off every other path."""
        if args.gateway is None:
            return None
        unknown = sorted(set(args.routing) - set(self.services))
        if unknown:
            raise ValueError(f"{name}: routing names models this region does not serve: {unknown}")
        models = [
            ModelBackend(
                model,
                s.service_name,
                s.port,
                self._canary(model, args, args.canary, routed=model in args.routing),
                revision=args.revision,
                pool=s.pool_name if model in args.routing else None,
                split=self._split(model, args),
                shadow=args.shadow,
            )
            for model, s in self.services.items()
        ]
        # A LoRA adapter is routed by its own name to its base model's replicas (which serve it): one more model at
        # the gateway, with the same tenants and limits as any other.
        models += [
            ModelBackend(
                adapter.name,
                s.service_name,
                s.port,
                # Adapters keep the Service route (round robin), also when their base model has a pool.
                self._canary(plan.model, args, args.canary, routed=False),
                revision=args.revision,
                split=self._split(plan.model, args),
                shadow=args.shadow,
            )
            for plan in args.deployments
            for adapter in plan.adapters
            if (s := self.services.get(plan.model)) is not None
        ]
        gateway_args = GatewayArgs.of(
            args.gateway,
            namespace=self.namespace.metadata.name,
            models=models,
            # Every model server, any revision: the gateway's NetworkPolicy admits only itself to them.
            inference_pod_selector=InferenceService.server_selector,
            metrics_namespace=args.observability.namespace if args.observability else args.gateway.metrics_namespace,
            engine_key_secret=self.engine_key.metadata.name if self.engine_key else None,
        )
        return Gateway(f"{name}-gateway", gateway_args, opts=self.kubernetes_opts())

    def _split(self, model: str, args: RegionalFleetArgs, canary: Revision | None = None) -> tuple[SplitBackend, ...]:
        """A GPU mix's parts at the gateway (the canary revision's with `canary`), weighted by the plan's share of
        capacity (percent, whole numbers)."""
        deployments, mixes = (
            (args.deployments, self.mix_services)
            if canary is None
            else (
                canary.deployments,
                self.canary_mix_services,
            )
        )
        plan = next(d for d in deployments if d.model == model)
        if not plan.parts or plan.mix is None:
            return ()
        services = mixes[model]
        weights = [round(100 * pool.weight) for pool in plan.mix.pools]
        return tuple(
            SplitBackend(part.part or "", s.service_name, weight, s.port)
            for part, s, weight in zip(plan.parts, services, weights, strict=True)
        )

    def _canary(
        self, model: str, args: RegionalFleetArgs, canary: Revision | None, *, routed: bool
    ) -> CanaryBackend | None:
        """The model's second revision at the gateway, with its share of the requests."""
        service = self.canary_services.get(model)
        if canary is None or service is None:
            return None
        pool = service.pool_name if routed else None
        split = self._split(model, args, canary)
        return CanaryBackend(
            canary.id, service.service_name, canary.weight, service.port, pool=pool, split=split, shadow=canary.shadow
        )

    def _routing(self, name: str, args: RegionalFleetArgs) -> dict[str, InferencePool]:
        """Each revision of a routed model as an InferencePool with its endpoint picker, after the gateway
        (it installs the InferencePool CRD) and the monitoring (the Prometheus Operator CRDs, for the
        picker's ServiceMonitor); the gateway's rules already name the pools."""
        if args.routing and self.gateway is None:
            raise ValueError(f"{name}: routing through InferencePools needs the gateway (args.gateway)")
        pools: dict[str, InferencePool] = {}
        after = [r for r in (self.gateway, self.observability) if r is not None]
        for services in (self.services, self.canary_services):
            for model, service in services.items():
                if model not in args.routing:
                    continue
                # A GPU mix: one pool selecting both parts' pods (the picker weighs them by queue and KV cache).
                mixes = self.mix_services if services is self.services else self.canary_mix_services
                parts = [*mixes.get(model, [])][1:]
                pools[service.pool_name] = InferencePool(
                    f"{name}-{service.pool_name}-inference-pool",
                    InferencePoolArgs(
                        service=service,
                        options=args.routing[model],
                        monitoring=args.observability is not None,
                        depends_on=[*after, *parts],
                    ),
                    opts=self.kubernetes_opts(),
                )
        return pools

    def _observability(self, name: str, args: RegionalFleetArgs) -> Observability | None:
        """The region's Prometheus (the one the ScaledObjects query), its monitors, rules and dashboards."""
        if args.observability is None:
            return None
        observability_args = ObservabilityArgs.of(
            args.observability,
            inference_namespace=args.namespace,
            deployments=args.deployments,
            queue_thresholds=args.queue_thresholds,
            routed_models=sorted(args.routing),
            inference_scrape_key=self._engine_key_value,
            cached_models=self.gateway.cached_models if self.gateway is not None else (),
        )
        return Observability(f"{name}-observability", observability_args, opts=self.kubernetes_opts())
