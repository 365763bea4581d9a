"""The Pulumi program: one RegionalFleet per region of the stack, each with the region's own providers.

Order matters: read and validate the stack, plan it, and resolve every secret it names BEFORE the
first resource is created, so a bad stack or a missing secret stops `pulumi up` with the field named
and nothing half-built. Then build each region and export its endpoints and the plan summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pulumi_random as random

from llmfleet.components.cluster import ClusterKind
from llmfleet.components.fleet import RegionalFleet, RegionalFleetArgs
from llmfleet.components.inference import ModelCache, waiting_requests_threshold
from llmfleet.components.inference.engine import object_name
from llmfleet.components.queue.costs import WorkerPoolPlan
from llmfleet.components.sizing.plan import DeploymentPlan, Plan
from llmfleet.components.traffic import GlobalLoadBalancer
from llmfleet.infra.config import CURRENT_KUBECONFIG, ConfigError, DeploymentSpec, from_pulumi_config, require_secret
from llmfleet.infra.planning import build_plan
from llmfleet.infra.program.args import (
    gateway_settings,
    load_balancer_args,
    load_generator_settings,
    observability_settings,
    queue_config,
    routing_in,
)
from llmfleet.infra.program.revision_args import region_revisions
from llmfleet.infra.program.revisions import RolloutRecord
from llmfleet.infra.schema.regions import RegionSpec

"""`cluster.kubeconfig_secret: local` means the current kubeconfig ($KUBECONFIG or ~/.kube/config)."""
CREATED_CLUSTER = {"aws": ClusterKind.eks, "gcp": ClusterKind.gke}


@dataclass(frozen=True)
class Secrets:
    """Every secret the stack names, resolved (as secret Outputs) before any resource exists."""

    hf_token: pulumi.Output[str] | None
    kubeconfigs: dict[str, pulumi.Output[str] | None]
    """Region key -> kubeconfig of an existing cluster (None: the current kubeconfig)."""
    gateway: dict[str, pulumi.Output[str]]
    """Stack secret key -> value, for the gateway's tenant API keys and fallback key."""
    observability: dict[str, pulumi.Output[str]]
    """Stack secret key -> value, for Grafana's admin password and the remote-write credential."""
    queue: dict[str, pulumi.Output[str]]
    """Stack secret key -> value, for the queue's webhook signing key."""


def resolve_secrets(spec: DeploymentSpec) -> Secrets:
    """Resolve each secret the stack refers to; the first one missing raises ConfigError naming its field."""
    hf_token = None
    if spec.huggingface_token_secret:
        hf_token = require_secret(spec.huggingface_token_secret, "huggingface_token_secret")
    kubeconfigs: dict[str, pulumi.Output[str] | None] = {}
    for i, region in enumerate(spec.regions):
        if region.cluster.mode != "existing":
            continue
        key = region.cluster.kubeconfig_secret
        field = f"regions[{i}].cluster.kubeconfig_secret"
        if key is None:
            raise ConfigError(
                f"llmfleet:deployment.{field}: required with cluster.mode existing: the name of a secret "
                f"config key holding the kubeconfig, or `{CURRENT_KUBECONFIG}` for the current kubeconfig"
            )
        kubeconfigs[region.key] = None if key == CURRENT_KUBECONFIG else require_secret(key, field)
    gateway = {key: require_secret(key, field) for key, field in spec.gateway.secret_refs()}
    observability = {key: require_secret(key, field) for key, field in spec.observability.secret_refs()}
    queue = {key: require_secret(key, field) for key, field in spec.queue.secret_refs()} if spec.queue else {}
    return Secrets(
        hf_token=hf_token, kubeconfigs=kubeconfigs, gateway=gateway, observability=observability, queue=queue
    )


def cloud_providers(spec: DeploymentSpec, region: RegionSpec) -> list[pulumi.ProviderResource]:
    """The region's own providers: its cloud's (none for an existing cluster: nothing is created in the
    cloud), and `random` for the keys and passwords generated in the state (the engines' key, Redis's)."""
    generated = random.Provider(f"{region.key}-random")
    if region.cluster.mode == "existing":
        return [generated]
    if region.cloud == "aws":
        return [aws.Provider(f"{region.key}-aws", region=region.region), generated]
    return [gcp.Provider(f"{region.key}-gcp", project=spec.gcp_project, region=region.region), generated]


def fleet_args(
    spec: DeploymentSpec, region: RegionSpec, plan: Plan, secrets: Secrets, record: RolloutRecord
) -> RegionalFleetArgs:
    """The region's fleet arguments, with the revisions `record` says it serves (`llmfleet rollout`)."""
    deployments = [d for d in plan.deployments if (d.cloud, d.region) == (region.cloud, region.region)]
    output_tokens = {m.name: m.load.output_tokens for m in spec.models}
    existing = region.cluster.mode == "existing"
    revisions = region_revisions(pulumi.get_stack(), spec, region, deployments, record)
    return RegionalFleetArgs(
        cloud=region.cloud,
        region=region.region,
        role=region.role,
        cluster_kind=ClusterKind.existing if existing else CREATED_CLUSTER[region.cloud],
        deployments=revisions.deployments,
        revision=revisions.revision,
        canary=revisions.canary,
        shadow=revisions.shadow,
        # Per model, and per part of a deployed GPU mix (`<model>-<part>`: each part scales on its own queue).
        queue_thresholds={
            **revisions.queue_thresholds,
            **{
                object_name(part): waiting_requests_threshold(part, output_tokens[d.model], spec.slo.ttft_p95_ms)
                for d in deployments
                for part in (d, *d.parts)
            },
        },
        kubeconfig=secrets.kubeconfigs.get(region.key),
        kubernetes_version=region.cluster.kubernetes_version,
        api_access_cidrs=spec.api_access_cidrs,
        gcp_project=spec.gcp_project if region.cloud == "gcp" else None,
        namespace=spec.namespace,
        hf_token=secrets.hf_token,
        # kind and minikube run one node whose storage has no ReadWriteMany: one claim, shared.
        model_cache=ModelCache.SINGLE_NODE if region.cloud == "local" else ModelCache.PER_REPLICA,
        gateway=gateway_settings(
            spec.gateway,
            secrets.gateway,
            region.key,
            # DNS health checkers send no credentials: the gateway opens their path, and only theirs.
            health_path=spec.load_balancer.health_check.path if spec.load_balancer else None,
        ),
        routing=routing_in(spec, region),
        load_generator=load_generator_settings(spec.rollout, spec.gateway, spec.slo, secrets.gateway),
        observability=observability_settings(
            spec.observability,
            cloud=region.cloud,
            region=region.region,
            slo=spec.slo,
            deployments=deployments,
            secrets=secrets.observability,
        ),
        queue=queue_config(
            spec.queue, region.key, spec.gateway, secrets.gateway | secrets.queue, queue_pool(plan, region)
        )
        if spec.queue
        else None,
    )


def queue_pool(plan: Plan, region: RegionSpec) -> WorkerPoolPlan | None:
    """The region's planned worker pool (`queue.spot_pool`), if any."""
    found = [q.pool for q in plan.queue if (q.cloud, q.region) == (region.cloud, region.region)]
    return found[0] if found else None


def plan_summary(plan: Plan) -> dict[str, Any]:
    """What `llmfleet plan` decided, in short: per region and model, and the totals."""

    def entry(d: DeploymentPlan) -> dict[str, Any]:
        return {
            "gpu": d.gpu or "cpu",
            "instance_type": d.instance_type,
            "tensor_parallel": d.tensor_parallel,
            "pipeline_parallel": d.pipeline_parallel,
            "replicas": d.replicas,
            "min_replicas": d.min_replicas,
            "max_replicas": d.max_replicas,
            "nodes": d.nodes,
            "usd_per_hour": d.usd_per_hour,
            # A deployed GPU mix: what runs is its parts (the fields above are the single type it beat).
            **({"mix_parts": {p.part: entry(p) for p in d.parts}} if d.parts else {}),
        }

    regions: dict[str, dict[str, Any]] = {}
    for d in plan.deployments:
        regions.setdefault(f"{d.cloud}-{d.region}", {})[d.model] = entry(d)
    return {"regions": regions, "totals": plan.totals.model_dump(mode="json")}


ROUTE53_PROVIDER_REGION = "us-east-1"
"""Route 53 is global; the AWS provider that manages it still needs a region (us-east-1 is Route 53's home)."""


def global_load_balancer(spec: DeploymentSpec, fleets: list[RegionalFleet]) -> GlobalLoadBalancer | None:
    """One global name over the regions' gateways, after them, with the DNS service's own provider."""
    balancer = spec.load_balancer
    if balancer is None:
        return None
    assert spec.gateway.hostname is not None  # the schema requires it with a load_balancer
    if balancer.provider == "route53":
        provider: pulumi.ProviderResource = aws.Provider("global-dns-aws", region=ROUTE53_PROVIDER_REGION)
    else:
        provider = gcp.Provider("global-dns-gcp", project=spec.gcp_project)
    gateways: list[pulumi.Resource] = [f.gateway for f in fleets if f.gateway is not None]
    return GlobalLoadBalancer(
        "global",
        load_balancer_args(balancer, spec.regions, spec.gateway.hostname, spec.gcp_project),
        opts=pulumi.ResourceOptions(providers=[provider], depends_on=gateways),
    )


def main() -> None:
    spec = from_pulumi_config()
    for warning in spec.warnings():
        pulumi.log.warn(warning)
    plan = build_plan(pulumi.get_stack(), spec)
    secrets = resolve_secrets(spec)
    # Every region's arguments before any resource: an error in the last region leaves nothing half-built.
    record = RolloutRecord.from_pulumi_config()  # `llmfleet rollout`: the revisions each region serves
    regions = [(region, fleet_args(spec, region, plan, secrets, record)) for region in spec.regions]
    endpoints: dict[str, pulumi.Output[dict[str, str]]] = {}
    gateway_endpoints: dict[str, pulumi.Output[str]] = {}
    monitoring: dict[str, dict[str, Any]] = {}
    queues: dict[str, dict[str, pulumi.Output[str]]] = {}
    fleets: list[RegionalFleet] = []
    for region, args in regions:
        fleet = RegionalFleet(region.key, args, opts=pulumi.ResourceOptions(providers=cloud_providers(spec, region)))
        endpoints[region.key] = fleet.endpoints
        fleets.append(fleet)
        if fleet.gateway is not None:
            gateway_endpoints[region.key] = fleet.gateway.endpoint
        if fleet.observability is not None:
            monitoring[region.key] = fleet.observability.summary()
        if fleet.queue is not None:
            queues[region.key] = {
                "submit_to": fleet.queue.submit_to,
                "dead_letter": fleet.queue.dead_letter,
                "bucket": fleet.queue.bucket,
            }
    pulumi.export("endpoints", endpoints)
    pulumi.export("gateway_endpoints", gateway_endpoints)
    pulumi.export("observability", monitoring)
    if queues:
        pulumi.export("queues", queues)  # where producers send jobs and results land, per region
    pulumi.export("plan", plan_summary(plan))
    pulumi.export("rollout", record.model_dump(mode="json"))  # what was applied, for a rollout on another machine
    balancer = global_load_balancer(spec, fleets)
    if balancer is not None and plan.failover is not None:
        pulumi.export("global_endpoint", balancer.endpoint)
        pulumi.export("failover", plan.failover.model_dump(mode="json"))


main()
