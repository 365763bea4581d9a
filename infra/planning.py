"""A validated stack -> the Plan: resolve each model against the catalogs, then plan every (region, model).

Catalog look-ups that fail (unknown model, GPU, instance type, region) are ConfigErrors naming the
stack-file field; requests no hardware can satisfy are PlanningErrors saying what fell short.
"""

from __future__ import annotations

from pathlib import Path

from llmfleet.components.queue.costs import QueueCost, queue_cost
from llmfleet.components.queue.sizing import plan_worker_pool
from llmfleet.components.queue.types import POLLING_INTERVAL_S, WorkerSettings
from llmfleet.components.sizing.calibration import catalog_eta
from llmfleet.components.sizing.catalog import Catalog, load_catalog
from llmfleet.components.sizing.cpu_pods import CACHE_REDIS_CPU, CpuPodsCost, cache_redis_memory, cpu_pods_cost
from llmfleet.components.sizing.errors import PlanningError
from llmfleet.components.sizing.hf_config import HfConfigError, read_hf_config
from llmfleet.components.sizing.plan import DeploymentPlan, FailoverEstimate, Plan, Totals
from llmfleet.components.sizing.planner import plan_deployment
from llmfleet.components.sizing.types import ModelArchitecture, ModelRequest, RegionRequest
from llmfleet.components.traffic.failover import estimate_failover, require_within_budget
from llmfleet.infra.config import CONFIG_KEY, PROJECT_ROOT, ConfigError, DeploymentSpec
from llmfleet.infra.schema.models import ModelSpec
from llmfleet.infra.schema.regions import RegionSpec
from llmfleet.infra.schema.traffic import LoadBalancerSpec

DEFAULT_MAX_MODEL_LEN = 8192
"""max_model_len when the stack gives none: the model's context, capped to keep KV memory modest."""
HOURS_PER_MONTH = 730


def _known(names: list[str]) -> str:
    return ", ".join(sorted(names))


def _read_architecture(path_text: str, field: str, base_dir: Path | None) -> ModelArchitecture:
    path = Path(path_text).expanduser()
    if not path.is_absolute():
        candidates = [d / path for d in (base_dir, Path.cwd(), PROJECT_ROOT) if d is not None]
        path = next((c for c in candidates if c.exists()), candidates[0])
    try:
        return read_hf_config(path)
    except HfConfigError as exc:
        raise ConfigError(f"{field}: {exc}") from None


def _require_prequantized_repo(spec: ModelSpec, field: str, hf_repo: str | None, catalog: Catalog) -> None:
    """AWQ, GPTQ and INT8 are served from weights saved in that format: a catalog repository (bf16) won't do.

    A repository the stack names is trusted, unless it is one of the catalog's own bf16 repositories.
    """
    if not spec.quantization.needs_prequantized_weights:
        return
    bf16_repos = {entry.hf_repo for entry in catalog.models.values()}
    if hf_repo is not None and hf_repo not in bf16_repos:
        return
    method = spec.quantization.value.upper()
    held = f"{hf_repo} holds bf16 weights" if hf_repo else "no repository is given"
    raise ConfigError(
        f"{field}.hf_repo: quantization {spec.quantization.value} needs weights already quantized to {method}, "
        f"but {held} and vLLM quantizes on load only to fp8; set hf_repo to a repository of {method} weights "
        f"for {spec.model or spec.name}, or choose quantization fp8 or bf16"
    )


def resolve_model(spec: ModelSpec, index: int, catalog: Catalog, base_dir: Path | None = None) -> ModelRequest:
    """A stack model -> the planner's ModelRequest (architecture, repository, context, checked pins)."""
    field = f"{CONFIG_KEY}.models[{index}]"
    hf_repo = spec.hf_repo
    if spec.model is not None:
        entry = catalog.models.get(spec.model)
        if entry is None:
            raise ConfigError(f"{field}.model: unknown model '{spec.model}'; known: {_known(list(catalog.models))}")
        architecture, model_id, hf_repo = entry.architecture, entry.id, hf_repo or entry.hf_repo
    elif spec.architecture is not None:
        architecture, model_id = spec.architecture, f"custom:{spec.name}"
    else:
        assert spec.hf_config is not None  # the schema guarantees exactly one source
        architecture = _read_architecture(spec.hf_config, f"{field}.hf_config", base_dir)
        model_id = f"hf:{spec.hf_config}"
    _require_prequantized_repo(spec, field, hf_repo, catalog)
    max_model_len = spec.max_model_len or min(architecture.max_context, DEFAULT_MAX_MODEL_LEN)
    if max_model_len > architecture.max_context:
        raise ConfigError(
            f"{field}.max_model_len: {max_model_len} exceeds the model's context of {architecture.max_context} tokens"
        )
    load = spec.load
    if load.prompt_tokens + load.output_tokens > max_model_len:
        raise ConfigError(
            f"{field}.load: prompt_tokens + output_tokens ({load.prompt_tokens} + {load.output_tokens}) exceed "
            f"max_model_len {max_model_len}; shorten them or raise max_model_len"
        )
    if spec.adapters and spec.quantization.is_gguf:
        raise ConfigError(
            f"{field}.adapters: LoRA adapters are served by vLLM, not llama.cpp's server; serve the model in a vLLM "
            f"format (bf16, fp8, awq, gptq, int8) or remove the adapters"
        )
    pins = spec.overrides
    if pins.gpu is not None and pins.gpu not in catalog.gpus:
        raise ConfigError(f"{field}.overrides.gpu: unknown GPU '{pins.gpu}'; known: {_known(list(catalog.gpus))}")
    if pins.instance_type is not None and pins.instance_type not in catalog.instances:
        raise ConfigError(
            f"{field}.overrides.instance_type: unknown instance type '{pins.instance_type}'; "
            f"known: {_known(list(catalog.instances))}"
        )
    return ModelRequest(
        name=spec.name,
        model_id=model_id,
        hf_repo=hf_repo,
        architecture=architecture,
        quantization=spec.quantization,
        kv_cache_dtype=spec.kv_cache_dtype,
        max_model_len=max_model_len,
        load=load,
        overrides=pins,
        mixed_gpus=spec.mixed_gpus,
        deploy_mix=spec.deploy_mix,
        adapters=tuple(spec.adapters),
    )


def resolve_region(spec: RegionSpec, index: int, catalog: Catalog) -> RegionRequest:
    field = f"{CONFIG_KEY}.regions[{index}]"
    known_regions = catalog.regions_of(spec.cloud)
    if spec.region not in known_regions:
        raise ConfigError(
            f"{field}.region: unknown region '{spec.region}' for {spec.cloud}; known: {_known(known_regions)}"
        )
    for gpu in spec.allowed_gpus or []:
        if gpu not in catalog.gpus:
            raise ConfigError(f"{field}.allowed_gpus: unknown GPU '{gpu}'; known: {_known(list(catalog.gpus))}")
    return RegionRequest(
        cloud=spec.cloud,
        region=spec.region,
        capacity_type=spec.capacity_type,
        allowed_gpus=tuple(spec.allowed_gpus) if spec.allowed_gpus is not None else None,
    )


def totals(plans: list[DeploymentPlan]) -> Totals:
    deployments = [part for d in plans for part in d.deployed]  # a deployed mix counts its two parts
    usd_per_hour = sum(d.usd_per_hour for d in deployments)
    return Totals(
        deployments=len(plans),
        regions=len({(d.cloud, d.region) for d in plans}),
        gpus=sum(d.nodes * d.gpus_per_node for d in deployments),
        nodes=sum(d.nodes for d in deployments),
        replicas=sum(d.replicas for d in deployments),
        usd_per_hour=round(usd_per_hour, 4),
        usd_per_month=round(usd_per_hour * HOURS_PER_MONTH, 2),
        output_tokens_per_s=round(sum(d.replicas * d.output_tokens_per_s_per_replica for d in deployments), 1),
    )


LARGE_DEPLOYMENT_GPUS = 1024
"""More GPUs than this for one model in one region is more likely a slip in its `load` (a concurrency or rate
a thousand times too high) than a plan: cloud GPU quotas start far lower. The plan is still made; `plan`
warns, naming the field."""


def load_warnings(spec: DeploymentSpec, plan: Plan) -> list[str]:
    """A warning per (region, model) whose load needs more than LARGE_DEPLOYMENT_GPUS GPUs."""
    index = {m.name: i for i, m in enumerate(spec.models)}
    found: list[str] = []
    for d in plan.deployments:
        gpus = sum(part.nodes * part.gpus_per_node for part in d.deployed)
        if gpus > LARGE_DEPLOYMENT_GPUS:
            usd_per_month = sum(part.usd_per_hour for part in d.deployed) * HOURS_PER_MONTH
            found.append(
                f"{CONFIG_KEY}.models[{index[d.model]}].load: {d.model} in {d.cloud}/{d.region} needs {gpus:,} GPUs "
                f"on {sum(part.nodes for part in d.deployed):,} nodes (${usd_per_month:,.0f} a "
                f"month); check concurrent_sequences / output_tokens_per_s, and the region's GPU quota"
            )
    return found


def require_token_for_gated_weights(spec: DeploymentSpec, catalog: Catalog) -> None:
    """A catalog repository HuggingFace gates needs `huggingface_token_secret`: without it the pods would
    fail on download, after the GPUs are paid for. A repository the stack names itself is not known here."""
    if spec.huggingface_token_secret:
        return
    for i, model in enumerate(spec.models):
        entry = catalog.models.get(model.model) if model.model else None
        if entry is None or not entry.gated or (model.hf_repo not in (None, entry.hf_repo)):
            continue
        raise ConfigError(
            f"{CONFIG_KEY}.huggingface_token_secret: required: models[{i}] ({model.name}) downloads "
            f"{entry.hf_repo}, which HuggingFace gates ({entry.gated_source.ref}); request access there, then "
            "name a secret stack config key holding a token of that account (`huggingface_token_secret: hfToken`, "
            "`pulumi config set --secret llmfleet:hfToken hf_...`), or set models[].hf_repo to an ungated copy"
        )


def build_plan(stack: str, spec: DeploymentSpec, base_dir: Path | None = None) -> Plan:
    """Plan every (region, model) pair of the stack; `base_dir` resolves relative hf_config paths."""
    catalog = load_catalog()
    eta = catalog_eta(catalog)
    requests = {m.name: (i, resolve_model(m, i, catalog, base_dir)) for i, m in enumerate(spec.models)}
    deployments: list[DeploymentPlan] = []
    for r, region_spec in enumerate(spec.regions):
        region = resolve_region(region_spec, r, catalog)
        for model_spec in spec.models_in(region_spec):
            m, request = requests[model_spec.name]
            scaling = model_spec.autoscaling
            try:
                planned = plan_deployment(
                    catalog,
                    request,
                    region,
                    eta=eta,
                    tpot_slo_ms=spec.slo.tpot_p95_ms,
                    min_replicas=scaling.min_replicas,
                    max_replicas=scaling.max_replicas,
                )
            except PlanningError as exc:
                raise PlanningError(f"{CONFIG_KEY}.models[{m}] in regions[{r}]: {exc}") from None
            if planned.max_replicas < planned.replicas:
                raise PlanningError(
                    f"{CONFIG_KEY}.models[{m}].autoscaling.max_replicas: {planned.max_replicas} is below the "
                    f"{planned.replicas} replicas the load needs in {region.cloud}/{region.region}"
                )
            deployments.append(planned)
    require_token_for_gated_weights(spec, catalog)  # after sizing: a stack that cannot fit says that first
    balancer = spec.load_balancer
    failover = failover_within_budget(balancer) if balancer else None
    return Plan(
        stack=stack,
        deployments=tuple(deployments),
        totals=totals(deployments),
        failover=failover,
        queue=queue_costs(spec, deployments, catalog),
        cascade=cascade_costs(spec, catalog),
        response_cache=response_cache_costs(spec, catalog),
    )


def cascade_costs(spec: DeploymentSpec, catalog: Catalog) -> tuple[CpuPodsCost, ...]:
    """The cascade's router pods per cloud region (gateway.cascade: replicas x its CPU and memory requests)."""
    cascade = spec.gateway.cascade
    if cascade is None:
        return ()
    return tuple(
        cpu_pods_cost(catalog, r.cloud, r.region, "semantic router", cascade.replicas, cascade.cpu, cascade.memory)
        for r in spec.regions
        if r.cloud != "local"  # a laptop's cluster has no price
    )


def response_cache_costs(spec: DeploymentSpec, catalog: Catalog) -> tuple[CpuPodsCost, ...]:
    """The response cache per cloud region that serves one of its models: the LiteLLM pods (replicas x their CPU and
    memory requests), then the cache's Redis (one pod, its memory from max_memory_mb)."""
    cache = spec.gateway.response_cache
    if cache is None:
        return ()
    costs: list[CpuPodsCost] = []
    for r in spec.regions:
        if r.cloud == "local" or not set(cache.models) & set(spec.served_in(r)):
            continue  # a laptop's cluster has no price; a region serving none of the models runs no cache
        litellm = cpu_pods_cost(
            catalog, r.cloud, r.region, "Response cache LiteLLM", cache.replicas, cache.cpu, cache.memory
        )
        redis = cache_redis_memory(cache.max_memory_mb)
        costs += [litellm, cpu_pods_cost(catalog, r.cloud, r.region, "Response cache Redis", 1, CACHE_REDIS_CPU, redis)]
    return tuple(costs)


def queue_costs(spec: DeploymentSpec, deployments: list[DeploymentPlan], catalog: Catalog) -> tuple[QueueCost, ...]:
    """What the async queue adds in each region that has one (jobs sized by the region's longest prompt), with the
    workers' spot pool sized for `queue.spot_pool.jobs_per_minute` where the stack asks for one."""
    queue = spec.queue
    if queue is None:
        return ()
    workers = WorkerSettings(image=queue.worker_image, concurrency=queue.concurrency, max_workers=queue.max_workers)
    costs: list[QueueCost] = []
    for region in queue.served_regions(spec.regions):
        if region.cloud == "local":
            continue  # the schema refuses it; keeps the type narrow
        models = spec.models_in(region)
        pool = None
        if queue.spot_pool is not None:
            name = queue.spot_pool.model or models[0].name
            [plan] = [d for d in deployments if (d.cloud, d.region, d.model) == (region.cloud, region.region, name)]
            [model] = [m for m in models if m.name == name]
            pool = plan_worker_pool(
                catalog,
                plan,
                jobs_per_minute=queue.spot_pool.jobs_per_minute,
                output_tokens=model.load.output_tokens,
                concurrency=workers.concurrency,
                worker_cpu=workers.cpu,
                worker_memory=workers.memory,
            )
        costs.append(
            queue_cost(
                region.cloud,
                region.region,
                max(m.load.prompt_tokens for m in models),
                workers.max_workers,
                workers.cpu,
                workers.memory,
                POLLING_INTERVAL_S,
                pool,
            )
        )
    return tuple(costs)


def failover_within_budget(balancer: LoadBalancerSpec) -> FailoverEstimate:
    """The worst-case failover the `load_balancer:` settings imply, or a PlanningError naming the fields to
    change when it exceeds the stack's budget."""
    check = balancer.health_check
    estimate = estimate_failover(
        balancer.provider, check.interval_s, check.failure_threshold, balancer.ttl, balancer.failover_budget_s
    )
    require_within_budget(estimate, check.interval_s, check.failure_threshold, f"{CONFIG_KEY}.load_balancer")
    return estimate
