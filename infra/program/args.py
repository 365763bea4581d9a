"""From the stack file to the components' arguments: the one place the program translates the schema.

The stack schema (infra/schema/*, infra/config.py) is plain pydantic and knows no component; the
components know no stack file. Each function here takes a validated section (and what the program
resolved: secrets, the plan, the region) and builds one component's arguments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi

from llmfleet.components.gateway.component import GatewaySettings
from llmfleet.components.gateway.types import (
    AcmeIssuer,
    Cascade,
    Fallback,
    FallbackProvider,
    JwtAuth,
    PriorityRouting,
    RateLimit,
    ResponseCache,
    Tenant,
    Tls,
)
from llmfleet.components.loadgen import SUITES as LOADGEN_SUITES
from llmfleet.components.loadgen import LoadGeneratorSettings
from llmfleet.components.observability.component import ObservabilitySettings
from llmfleet.components.observability.rules import AlertThresholds, SloTargets
from llmfleet.components.queue.costs import WorkerPoolPlan
from llmfleet.components.queue.types import QueueConfig, QueueSettings, WorkerSettings
from llmfleet.components.routing.picker import RoutingOptions, ScorerWeights
from llmfleet.components.sizing.plan import DeploymentPlan
from llmfleet.components.traffic.balancer import DnsProvider, GlobalLoadBalancerArgs, HealthCheck, RegionEndpoint
from llmfleet.infra.config import CONFIG_KEY, ConfigError, DeploymentSpec
from llmfleet.infra.schema.gateway import CascadeSpec, GatewaySpec, RateLimits, ResponseCacheSpec
from llmfleet.infra.schema.observability import GPU_MEMORY_MARGIN_PERCENT, ObservabilitySpec
from llmfleet.infra.schema.queue import QueueSpec
from llmfleet.infra.schema.regions import RegionSpec
from llmfleet.infra.schema.rollout import RolloutSpec
from llmfleet.infra.schema.routing import RoutingSpec
from llmfleet.infra.schema.traffic import LoadBalancerSpec
from llmfleet.values import Slo


def gateway_settings(
    gateway: GatewaySpec,
    secrets: Mapping[str, pulumi.Output[str]],
    region_key: str,
    health_path: str | None = None,
) -> GatewaySettings:
    """The gateway's settings for one region, `secrets` resolved from `gateway.secret_refs()`: the RegionalFleet
    builds the Gateway's arguments from them and the region's InferenceServices.
    `health_path`: the global load balancer's health-check path, the one path open without credentials.
    """
    jwt = gateway.jwt
    fallback = gateway.fallback
    return GatewaySettings(
        tenants=[
            Tenant(
                t.name,
                api_key=secrets[t.api_key_secret] if t.api_key_secret else None,
                limits=rate_limit(t.limits) if t.limits else None,
            )
            for t in gateway.tenants
        ],
        default_limits=rate_limit(gateway.default_limits),
        jwt=JwtAuth(jwt.issuer, jwt.jwks_uri, tuple(jwt.audiences), jwt.tenant_claim) if jwt else None,
        allow_anonymous=gateway.allow_anonymous,
        fallback=Fallback(FallbackProvider(fallback.provider), secrets[fallback.api_key_secret], fallback.models)
        if fallback
        else None,
        priority=PriorityRouting(dict(gateway.priority.quality_models)) if gateway.priority else None,
        cascade=cascade(gateway.cascade) if gateway.cascade else None,
        response_cache=response_cache(gateway.response_cache) if gateway.response_cache else None,
        tls=Tls(
            secret_name=None if gateway.tls.mode == "none" else gateway.tls.secret_name,
            cluster_issuer=gateway.tls.issuer,
            acme=AcmeIssuer(gateway.tls.acme.email, gateway.tls.acme.server) if gateway.tls.acme else None,
            install_cert_manager=gateway.tls.install_cert_manager,
        ),
        hostname=gateway.hostname,
        region_hostname=f"{region_key}.{gateway.hostname}" if gateway.hostname else None,
        request_timeout_s=gateway.request_timeout_s,
        replicas=gateway.replicas,
        health_path=health_path,
    )


def cascade(spec: CascadeSpec) -> Cascade:
    return Cascade(
        cheap_model=spec.cheap_model,
        strong_model=spec.strong_model,
        hard_examples=tuple(spec.hard_examples),
        easy_examples=tuple(spec.easy_examples),
        auto_model=spec.auto_model,
        threshold=spec.threshold,
        escalate_medium=spec.escalate_on == "medium",
        fail_open=spec.fail_open,
        replicas=spec.replicas,
        cpu=spec.cpu,
        memory=spec.memory,
        memory_limit=spec.memory_limit,
        values=dict(spec.router_values),
    )


def response_cache(spec: ResponseCacheSpec) -> ResponseCache:
    return ResponseCache(
        models=tuple(spec.models),
        ttl_s=spec.ttl_s,
        stale_s=spec.stale_s,
        deterministic_only=spec.deterministic_only,
        opt_in_tenants=tuple(spec.opt_in_tenants),
        replicas=spec.replicas,
        cpu=spec.cpu,
        memory=spec.memory,
        memory_limit=spec.memory_limit,
        max_memory_mb=spec.max_memory_mb,
        config=dict(spec.litellm_config),
    )


def rate_limit(limits: RateLimits) -> RateLimit:
    return RateLimit(requests_per_minute=limits.requests_per_minute, tokens_per_minute=limits.tokens_per_minute)


def observability_settings(
    observability: ObservabilitySpec,
    *,
    cloud: str,
    region: str,
    slo: Slo,
    deployments: Sequence[DeploymentPlan],
    secrets: Mapping[str, pulumi.Output[str]],
) -> ObservabilitySettings | None:
    """The monitoring settings of one region (None when disabled).

    `secrets` holds the values of `observability.secret_refs()`. The region's `deployments` are checked
    here (ConfigError when the GPU memory threshold is not above what a model's vLLM reserves: the alert
    would never stop firing); RegionalFleet builds the Observability arguments from the settings, the
    deployments, the namespace and the queue thresholds.
    """
    if not observability.enabled:
        return None
    alerts = observability.alerts
    for plan in deployments:
        reserved = plan.gpu_memory_utilization * 100
        if plan.gpu and alerts.gpu_memory_percent < reserved + GPU_MEMORY_MARGIN_PERCENT:
            raise ConfigError(
                f"{CONFIG_KEY}.observability.alerts.gpu_memory_percent: {alerts.gpu_memory_percent:g} is within "
                f"{GPU_MEMORY_MARGIN_PERCENT} points of the {reserved:g}% of GPU memory vLLM reserves for model "
                f"{plan.model} (gpu_memory_utilization {plan.gpu_memory_utilization:g}), so it would fire on "
                f"every healthy GPU; set it to at least {reserved + GPU_MEMORY_MARGIN_PERCENT:g}"
            )
    remote = observability.remote_write
    return ObservabilitySettings(
        cloud=cloud,
        region=region,
        slo=SloTargets(
            ttft_p95_ms=slo.ttft_p95_ms,
            tpot_p95_ms=slo.tpot_p95_ms,
            e2e_p99_ms=slo.e2e_p99_ms,
            error_rate=slo.error_rate,
        ),
        thresholds=AlertThresholds(
            queue_depth_per_replica=alerts.queue_depth_per_replica,
            kv_cache_usage_percent=alerts.kv_cache_usage_percent,
            gpu_memory_percent=alerts.gpu_memory_percent,
            preemptions_per_minute=alerts.preemptions_per_minute,
        ),
        retention=observability.retention,
        storage_gib=observability.storage_gib,
        remote_write_url=remote.url if remote else None,
        remote_write_username=remote.username if remote else None,
        remote_write_credential=secrets[remote.credentials_secret] if remote and remote.credentials_secret else None,
        grafana_admin_password=secrets[observability.grafana_admin_secret]
        if observability.grafana_admin_secret
        else None,
        stack_values=observability.chart_values,
    )


def queue_config(
    queue: QueueSpec,
    region_key: str,
    gateway: GatewaySpec,
    secrets: Mapping[str, pulumi.Output[str]],
    pool: WorkerPoolPlan | None = None,
) -> QueueConfig | None:
    """The fleet's queue for one region (None where the queue is not served); `secrets` holds the gateway's
    and the queue's resolved secrets by stack key; `pool`: the region's planned worker pool (with spot_pool)."""
    if queue.regions is not None and region_key not in queue.regions:
        return None
    tenant = next((t for t in gateway.tenants if t.name == queue.tenant), None)
    key_ref = tenant.api_key_secret if tenant is not None else None
    return QueueConfig(
        workers=WorkerSettings(
            image=queue.worker_image,
            concurrency=queue.concurrency,
            max_workers=pool.workers if pool is not None else queue.max_workers,
        ),
        settings=QueueSettings(
            max_attempts=queue.max_attempts,
            job_timeout_s=queue.job_timeout_s,
            retention_days=queue.retention_days,
            result_retention_days=queue.result_retention_days,
        ),
        api_key=secrets[key_ref] if key_ref else None,
        webhook_secret=secrets[queue.webhook_secret] if queue.webhook_secret else None,
        pool=pool,
    )


def load_balancer_args(
    balancer: LoadBalancerSpec, regions: Sequence[RegionSpec], hostname: str, gcp_project: str | None
) -> GlobalLoadBalancerArgs:
    """The GlobalLoadBalancer's arguments: every region's gateway at `<region key>.<hostname>`."""
    check = balancer.health_check
    endpoints: list[RegionEndpoint] = []
    for region in regions:
        assert region.cloud != "local"  # LoadBalancerSpec.check_stack rejects local regions
        endpoints.append(
            RegionEndpoint(
                key=region.key,
                cloud=region.cloud,
                region=region.region,
                hostname=f"{region.key}.{hostname}",
                role=region.role,
                address=balancer.addresses.get(region.key),
            )
        )
    return GlobalLoadBalancerArgs(
        zone=balancer.zone,
        domain=balancer.domain or hostname,
        regions=endpoints,
        provider=DnsProvider(balancer.provider),
        ttl=balancer.ttl,
        health_check=HealthCheck(check.interval_s, check.failure_threshold, check.path, check.checker_regions),
        gcp_project=gcp_project if balancer.provider == "clouddns" else None,
    )


def routing_options(routing: RoutingSpec) -> RoutingOptions:
    scorers = routing.scorers
    weights = ScorerWeights(scorers.prefix_cache, scorers.queue, scorers.kv_cache_utilization)
    return RoutingOptions(weights, routing.picker_replicas, routing.chart_values or None)


def routing_in(spec: DeploymentSpec, region: RegionSpec) -> dict[str, RoutingOptions]:
    """Served name -> its routing options, for the models this region routes through an InferencePool."""
    return {
        m.name: routing_options(m.routing)
        for m in spec.models_in(region)
        if m.routing.enabled(m.quantization, spec.has_fallback(m.name), region.key)
    }


def load_generator_settings(
    rollout: RolloutSpec, gateway: GatewaySpec, slo: Slo, secrets: Mapping[str, pulumi.Output[str]]
) -> LoadGeneratorSettings | None:
    """`rollout.in_cluster`: the LoadGenerator each region deploys for the gate, running the rollout's suite, users
    and duration on the stack's SLO (a gate run overrides model, revision header and load per step). `secrets`
    resolved from `gateway.secret_refs()`: the tenant's API key."""
    spec = rollout.in_cluster
    if spec is None:
        return None
    if rollout.suite not in LOADGEN_SUITES:
        raise ConfigError(
            f"{CONFIG_KEY}.rollout.suite: {rollout.suite!r} runs in one process; with rollout.in_cluster the gate "
            f"runs distributed, on one of {', '.join(LOADGEN_SUITES)}"
        )
    keys = {t.name: t.api_key_secret for t in gateway.tenants}
    key = keys.get(spec.tenant) if spec.tenant else None
    return LoadGeneratorSettings(
        image=spec.image,
        slo=slo.model_dump(),
        users=rollout.users,
        duration_s=rollout.gate_duration_s,
        suite=rollout.suite,
        workers=spec.workers,
        worker_cpu=spec.worker_cpu,
        worker_memory=spec.worker_memory,
        api_key=secrets[key] if key else None,
        extra_args=rollout.shared_prefix.locust_args() if rollout.shared_prefix else (),
    )
