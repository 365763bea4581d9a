"""`InferenceService`: one model served in one cluster (Deployment, Service, PDB, cache, ScaledObject).

The engine (vLLM on GPUs, llama.cpp's server on CPUs) only changes the container; everything around
it (probes, rollout, cache, autoscaling, disruption budget) is built here the same way for both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import ClassVar

import pulumi
import pulumi_kubernetes as k8s

import llmfleet.components.inference.hardening as hardening
import llmfleet.components.inference.llamacpp as llamacpp
import llmfleet.components.inference.vllm as vllm
from llmfleet.components.hardening import container_hardening, pod_hardening
from llmfleet.components.inference.autoscaling import queue_query, require_a_replica, scaled_object_spec
from llmfleet.components.inference.engine import (
    HEALTH_PATH,
    PORT,
    SERVER_LABELS,
    EngineSpec,
    checkpoint_gib,
    group_name,
    object_name,
    startup_budget_s,
)
from llmfleet.components.secrets import secret_env
from llmfleet.components.sizing.plan import DeploymentPlan
from llmfleet.components.sizing.types import Engine

PORT_NAME = "http"
"""Named port: monitors and probes refer to it by name."""
NODE_PROVISIONING_S = 600
"""Time Pulumi also waits for a GPU node to join before the first pod can start loading."""
TERMINATION_GRACE_S = 120
"""Lets in-flight generations finish when a pod is replaced or scaled in."""


class ModelCache(StrEnum):
    """Where downloaded weights are kept."""

    PER_REPLICA = "per-replica"
    """Each pod gets its own claim (generic ephemeral volume) from the default or given storage class:
    works on every cluster (ReadWriteOnce), survives container restarts, goes with the pod."""
    SHARED = "shared"
    """One PersistentVolumeClaim every replica mounts: weights download once and survive pods. Needs
    ReadWriteMany storage (EFS, Filestore)."""
    SINGLE_NODE = "single-node"
    """One ReadWriteOnce claim every replica mounts: for single-node clusters (kind, minikube), whose
    default storage offers no ReadWriteMany."""


@dataclass
class InferenceServiceArgs:
    deployment: DeploymentPlan
    """The plan entry for this model in this region: the only source of sizes and engine settings."""
    namespace: pulumi.Input[str]
    """Namespace the objects go in (it must exist)."""
    queue_threshold: int
    """Waiting requests per replica that trigger a scale-out (see `waiting_requests_threshold`)."""
    prometheus_url: pulumi.Input[str]
    """Prometheus that scrapes the engine's metrics, as KEDA reaches it."""
    node_selector: Mapping[str, str] = field(default_factory=dict[str, str])
    """Labels of the pool's nodes (GpuNodePool.node_selector); empty on a bring-your-own cluster."""
    tolerations: Sequence[k8s.core.v1.TolerationArgs] = ()
    """Tolerations for the pool's taints (GpuNodePool.tolerations)."""
    hf_token: pulumi.Input[str] | None = None
    """HuggingFace token for gated weights (a secret Output); stored in a Secret, passed as HF_TOKEN."""
    extra_args: Sequence[str] = ()
    """Escape hatch: more engine flags, appended last (later flags win)."""
    model_cache: ModelCache = ModelCache.PER_REPLICA
    """How downloaded weights are kept (see ModelCache)."""
    model_cache_storage_class: pulumi.Input[str] | None = None
    """Storage class of the cache claim; None uses the cluster's default."""
    scaler_depends_on: Sequence[pulumi.Resource] = ()
    """What the ScaledObject waits for: the KEDA release that installs its CRD."""
    api_key_secret: pulumi.Input[str] | None = None
    """Name of a Secret in `namespace` whose `apiKey` the engine then requires on its API (vLLM: `VLLM_API_KEY`,
    /health and /metrics stay open; llama.cpp: `--api-key-file`, /health stays open and the scrape must send
    the key). The gateway holds the same key. None: no key."""
    revision: str | None = None
    """Rollout revision id (`llmfleet rollout`): suffixes every object name (`<model>-<revision>`) so a new
    revision can run beside the old one; None keeps the plain names."""


def engine_spec(plan: DeploymentPlan, extra_args: Sequence[str] = ()) -> EngineSpec:
    engines = {Engine.VLLM: vllm.engine_spec, Engine.LLAMA_CPP: llamacpp.engine_spec}
    return engines[plan.engine](plan, PORT, extra_args)


def cache_size_gi(plan: DeploymentPlan) -> int:
    """Room for the checkpoint as published (not as served: see `checkpoint_gib`) plus a quarter
    (tokenizer, configs, a partial download) and 5 GiB."""
    return math.ceil(checkpoint_gib(plan) * 1.25) + 5


class InferenceService(pulumi.ComponentResource):
    """One model served behind a cluster-local OpenAI-compatible URL, autoscaled by KEDA on its queue."""

    model_name: str
    """Served model name (what clients send as `model`)."""
    service_name: pulumi.Output[str]
    namespace: pulumi.Output[str]
    port: int
    """The server's API port (also /health and /metrics): the gateway's backends and policies use it."""
    health_path: str
    """What answers 200 once the model is loaded (the probes', and the gateway health route's, target)."""
    labels: dict[str, str]
    """Every label of its pods (and Deployment, Service): engine, instance, model, revision, GPU-mix part."""
    server_selector: ClassVar[Mapping[str, str]] = SERVER_LABELS
    """Labels every InferenceService's pods and Service carry (any model, any revision): select them all."""
    object_name: str
    """Name of its Deployment and Service (`<model>` or `<model>-<revision>`); its InferencePool's too."""
    pod_selector: dict[str, str]
    """Labels that select exactly this service's pods."""
    pool_name: str
    """Name of the model revision's InferencePool: `object_name`, or for a part of a GPU mix the name without the
    part (`<model>` or `<model>-<revision>`), shared by both parts."""
    pool_selector: dict[str, str]
    """Labels its InferencePool selects: `pod_selector`, or for a part of a GPU mix labels both parts' pods carry."""
    url: pulumi.Output[str]
    """Cluster-local base URL, e.g. http://chat.llmfleet.svc.cluster.local:8000."""
    deployment: k8s.apps.v1.Deployment
    service: k8s.core.v1.Service
    scaled_object: k8s.apiextensions.CustomResource

    def __init__(self, name: str, args: InferenceServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmfleet:inference:InferenceService", name, None, opts)
        plan = args.deployment
        engine = engine_spec(plan, args.extra_args)
        require_a_replica(plan)
        self.model_name = plan.model
        self.port = PORT
        self.health_path = HEALTH_PATH
        child = pulumi.ResourceOptions(parent=self)
        object_names = object_name(plan) + (f"-{args.revision}" if args.revision else "")
        group = group_name(plan) + (f"-{args.revision}" if args.revision else "")
        labels = {
            "app.kubernetes.io/name": plan.engine.value.replace(".", ""),
            "app.kubernetes.io/instance": object_names,
            **SERVER_LABELS,
            "llmfleet.dev/model": plan.model,
        }
        if args.revision:
            labels["llmfleet.dev/revision"] = args.revision
        if plan.part:
            # Both parts of a GPU mix carry the group's label: one InferencePool selects them both.
            labels["llmfleet.dev/mix"] = group
            labels["llmfleet.dev/part"] = plan.part
        selector = {k: labels[k] for k in ("app.kubernetes.io/instance", "app.kubernetes.io/component")}
        self.object_name, self.pod_selector, self.labels = object_names, selector, labels
        self.pool_name = group if plan.part else object_names
        self.pool_selector = (
            {k: labels[k] for k in ("llmfleet.dev/mix", "app.kubernetes.io/component")} if plan.part else selector
        )
        # A part of a mix scales on its own pods' queue (the scrape's `service` label is its Service), not the model's.
        queue_selector = {**engine.queue_selector, "service": object_names} if plan.part else engine.queue_selector

        def meta(suffix: str = "") -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(name=object_names + suffix, namespace=args.namespace, labels=labels)

        env = [k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in engine.env.items()]
        if args.hf_token is not None:
            env.append(
                secret_env(
                    f"{name}-hf-token",
                    meta("-hf-token"),
                    env_name="HF_TOKEN",
                    data_key="token",
                    value=args.hf_token,
                    opts=child,
                )
            )

        profile = hardening.PROFILES[plan.engine]
        volumes = [self._cache_volume(name, args, meta("-model-cache"), child)]
        mounts = [k8s.core.v1.VolumeMountArgs(name="model-cache", mount_path=engine.cache_path)]
        key_env, key_flag = hardening.API_KEY_ENV.get(plan.engine), hardening.API_KEY_FILE_FLAG.get(plan.engine)
        if args.api_key_secret is not None and key_flag is not None:
            # As a file where the server reads one: a secret in the environment shows in more places.
            items = [k8s.core.v1.KeyToPathArgs(key=hardening.API_KEY_SECRET_KEY, path=hardening.API_KEY_SECRET_KEY)]
            key_files = k8s.core.v1.SecretVolumeSourceArgs(
                secret_name=args.api_key_secret, items=items, default_mode=0o440
            )
            volumes.append(k8s.core.v1.VolumeArgs(name="engine-key", secret=key_files))
            mounts.append(
                k8s.core.v1.VolumeMountArgs(name="engine-key", mount_path=hardening.API_KEY_DIR, read_only=True)
            )
            engine = replace(
                engine, args=[*engine.args, f"{key_flag}={hardening.API_KEY_DIR}/{hardening.API_KEY_SECRET_KEY}"]
            )
        elif args.api_key_secret is not None and key_env is not None:
            key_ref = k8s.core.v1.SecretKeySelectorArgs(name=args.api_key_secret, key=hardening.API_KEY_SECRET_KEY)
            env.append(
                k8s.core.v1.EnvVarArgs(name=key_env, value_from=k8s.core.v1.EnvVarSourceArgs(secret_key_ref=key_ref))
            )
        if engine.shared_memory:
            # Memory-backed, so it counts against the pod's memory: sized, not the node's half of RAM.
            shm = k8s.core.v1.EmptyDirVolumeSourceArgs(medium="Memory", size_limit=f"{hardening.shm_gib(plan)}Gi")
            volumes.append(k8s.core.v1.VolumeArgs(name="shm", empty_dir=shm))
            mounts.append(k8s.core.v1.VolumeMountArgs(name="shm", mount_path="/dev/shm"))
        for i, path in enumerate(profile.writable_paths):
            scratch = k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="1Gi")
            volumes.append(k8s.core.v1.VolumeArgs(name=f"scratch-{i}", empty_dir=scratch))
            mounts.append(k8s.core.v1.VolumeMountArgs(name=f"scratch-{i}", mount_path=path))

        startup_s = startup_budget_s(plan)
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=object_names,
                namespace=args.namespace,
                labels=labels,
                # Pulumi waits for the rollout; a cold pod may first wait for a node, then load weights.
                annotations={"pulumi.com/timeoutSeconds": str(startup_s + NODE_PROVISIONING_S)},
            ),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                # The initial size; KEDA owns it afterwards (ignore_changes below).
                replicas=plan.replicas,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
                # Never below serving capacity: a new pod must be ready before an old one goes.
                strategy=k8s.apps.v1.DeploymentStrategyArgs(
                    type="RollingUpdate",
                    rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_surge=1, max_unavailable=0),
                ),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels),
                    spec=k8s.core.v1.PodSpecArgs(
                        containers=[self._container(engine, env, mounts, startup_s, plan)],
                        volumes=volumes,
                        node_selector=dict(args.node_selector) or None,
                        tolerations=list(args.tolerations) or None,
                        termination_grace_period_seconds=TERMINATION_GRACE_S,
                        # No token to steal from a compromised server; a uid (and the cache volume's group) where
                        # the image runs as any user (components/inference/hardening.py: what each image allows).
                        # Re-owning a 100 GiB cache on every start would delay it: only when its root differs.
                        **pod_hardening(profile.run_as_user, fs_group_change_policy="OnRootMismatch"),
                        topology_spread_constraints=_spread(selector),
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["spec.replicas"]),
        )

        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=meta(),
            spec=k8s.core.v1.ServiceSpecArgs(
                selector=selector,
                ports=[k8s.core.v1.ServicePortArgs(name=PORT_NAME, port=PORT, target_port=PORT_NAME, protocol="TCP")],
            ),
            opts=child,
        )

        # Voluntary disruptions (node drains, upgrades) take one replica at a time and never the last one:
        # a model planned at one replica keeps it through a drain, which waits until a second replica is
        # ready elsewhere (KEDA scaled out) or the operator adds one (docs/security.md, "Availability").
        single = plan.min_replicas <= 1
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=meta(),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                min_available=1 if single else None,
                max_unavailable=None if single else 1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
            ),
            opts=child,
        )

        query = pulumi.Output.from_input(args.namespace).apply(
            lambda ns: queue_query(engine.queue_metric, ns, queue_selector)
        )
        spec = pulumi.Output.all(pulumi.Output.from_input(args.prometheus_url), query).apply(
            lambda parts: scaled_object_spec(
                deployment=object_names,
                plan=plan,
                prometheus_url=parts[0],
                query=parts[1],
                threshold=args.queue_threshold,
            )
        )
        self.scaled_object = k8s.apiextensions.CustomResource(
            f"{name}-scaledobject",
            api_version="keda.sh/v1alpha1",
            kind="ScaledObject",
            metadata=meta(),
            spec=spec,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.scaler_depends_on)),
        )

        self.service_name = self.service.metadata.name
        self.namespace = self.service.metadata.namespace
        self.url = pulumi.Output.format("http://{0}.{1}.svc.cluster.local:{2}", self.service_name, self.namespace, PORT)
        self.register_outputs({"model_name": self.model_name, "service_name": self.service_name, "url": self.url})

    @staticmethod
    def _container(
        engine: EngineSpec,
        env: list[k8s.core.v1.EnvVarArgs],
        mounts: list[k8s.core.v1.VolumeMountArgs],
        startup_s: int,
        plan: DeploymentPlan,
    ) -> k8s.core.v1.ContainerArgs:
        def probe(period_s: int, failures: int) -> k8s.core.v1.ProbeArgs:
            return k8s.core.v1.ProbeArgs(
                http_get=k8s.core.v1.HTTPGetActionArgs(path=HEALTH_PATH, port=PORT_NAME),
                period_seconds=period_s,
                timeout_seconds=5,
                failure_threshold=failures,
            )

        resources: dict[str, str] = {}
        if engine.gpus:
            resources["nvidia.com/gpu"] = str(engine.gpus)
        sized = hardening.pod_requests(plan, engine.memory_request_gib)
        requests = {**resources, "cpu": f"{sized.cpu_millis}m", "memory": f"{sized.memory_gib}Gi"}
        profile = hardening.PROFILES[plan.engine]
        return k8s.core.v1.ContainerArgs(
            name="server",
            image=engine.image,
            args=engine.args,
            env=env or None,
            ports=[k8s.core.v1.ContainerPortArgs(name=PORT_NAME, container_port=PORT, protocol="TCP")],
            resources=k8s.core.v1.ResourceRequirementsArgs(requests=requests or None, limits=resources or None),
            volume_mounts=mounts,
            security_context=container_hardening(read_only_root=profile.read_only_root),
            # Up to the startup budget to download and load the weights, then the usual checks.
            startup_probe=probe(10, math.ceil(startup_s / 10)),
            readiness_probe=probe(5, 3),
            liveness_probe=probe(15, 4),
        )

    def _cache_volume(
        self, name: str, args: InferenceServiceArgs, metadata: k8s.meta.v1.ObjectMetaArgs, child: pulumi.ResourceOptions
    ) -> k8s.core.v1.VolumeArgs:
        claim_spec = k8s.core.v1.PersistentVolumeClaimSpecArgs(
            access_modes=["ReadWriteMany" if args.model_cache is ModelCache.SHARED else "ReadWriteOnce"],
            storage_class_name=args.model_cache_storage_class,
            resources=k8s.core.v1.VolumeResourceRequirementsArgs(
                requests={"storage": f"{cache_size_gi(args.deployment)}Gi"}
            ),
        )
        if args.model_cache is ModelCache.PER_REPLICA:
            return k8s.core.v1.VolumeArgs(
                name="model-cache",
                ephemeral=k8s.core.v1.EphemeralVolumeSourceArgs(
                    volume_claim_template=k8s.core.v1.PersistentVolumeClaimTemplateArgs(spec=claim_spec)
                ),
            )
        claim = k8s.core.v1.PersistentVolumeClaim(f"{name}-model-cache", metadata=metadata, spec=claim_spec, opts=child)
        return k8s.core.v1.VolumeArgs(
            name="model-cache",
            persistent_volume_claim=k8s.core.v1.PersistentVolumeClaimVolumeSourceArgs(claim_name=claim.metadata.name),
        )


def _spread(selector: Mapping[str, str]) -> list[k8s.core.v1.TopologySpreadConstraintArgs]:
    """Replicas spread over zones, then nodes, as far as capacity allows: a zone outage then takes part of a
    model, not all of it. ScheduleAnyway: GPUs are often in one zone only, and a pending replica is worse."""
    return [
        k8s.core.v1.TopologySpreadConstraintArgs(
            max_skew=1,
            topology_key=key,
            when_unsatisfiable="ScheduleAnyway",
            label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(selector)),
        )
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]
