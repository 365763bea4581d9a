"""What the planner decides: one `DeploymentPlan` per (region, model), and the stack's totals.

This is the contract between sizing and everything downstream: the components take these values
as they are (they never re-derive sizes), and `llmfleet plan --format json` prints them.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from llmfleet.components.queue.costs import QueueCost
from llmfleet.components.sizing.cpu_pods import CpuPodsCost
from llmfleet.components.sizing.types import Engine, KvCacheDtype, LoraAdapter, Quantization


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MemorySplit(Frozen):
    """How one GPU's memory is spent (GiB), and the KV-cache cost of one token."""

    gpu_total_gib: float = Field(description="Memory the CUDA driver reports for one GPU.")
    budget_gib_per_gpu: float = Field(description="gpu_total_gib x gpu_memory_utilization.")
    weights_gib_per_gpu: float
    activation_gib_per_gpu: float = Field(
        description="Peak of vLLM's profiling run: a forward pass of max_num_batched_tokens, or the sampler."
    )
    non_torch_gib_per_gpu: float = Field(description="Memory outside PyTorch vLLM counts: cuBLAS, NCCL buffers.")
    cuda_graph_gib_per_gpu: float = Field(description="CUDA graph pool (0 where the engine ignores it).")
    kv_cache_gib_per_gpu: float
    kv_bytes_per_token: int = Field(description="KV-cache bytes of one token, per replica (all GPUs).")
    lora_gib_per_gpu: float = Field(default=0.0, description="LoRA weight slots vLLM reserves (--max-loras x rank).")


class Rejection(Frozen):
    """An option the planner considered and did not take, and why."""

    option: str = Field(description="e.g. 'L4 x1 g6.xlarge TP1'")
    reason: str


class MixPool(Frozen):
    """One pool of a two-GPU-type mix."""

    instance_type: str
    gpu: str | None
    replicas: int
    nodes: int
    usd_per_hour: float
    weight: float = Field(description="This pool's share of the mix's capacity (route weight in proportion).")


class MixPlan(Frozen):
    """models[].mixed_gpus: the cheapest split of the load over two GPU types, against the best single type."""

    pools: tuple[MixPool, ...] = Field(description="The two pools of the cheapest split; empty when none exists.")
    usd_per_hour: float | None = Field(description="Price of the split; None when no two types fit.")
    single_usd_per_hour: float = Field(description="Price of the best single type (the plan above).")
    saves_usd_per_hour: float = Field(description="What the split saves against the single type (0 when it does not).")
    saves_percent: float
    summary: str = Field(description="What the mix saves, or why no mix is cheaper.")
    deployed: bool = Field(
        default=False,
        description="True: the program deploys the two pools (the plan's `parts`) instead of the single type above "
        "(models[].deploy_mix and a cheaper mix); False: the mix is advice.",
    )


class DeploymentPlan(Frozen):
    """One model in one region: hardware, parallelism, engine settings, capacity and cost."""

    cloud: Literal["aws", "gcp", "local"]
    region: str
    capacity_type: Literal["on-demand", "spot"]
    model: str = Field(description="Served model name.")
    model_id: str = Field(description="Catalog id or custom architecture name.")
    hf_repo: str | None
    quantization: Quantization
    kv_cache_dtype: KvCacheDtype
    engine: Engine
    engine_version: str
    max_model_len: int
    gpu: str | None = Field(description="GPU catalog id; None for CPU serving (llama.cpp).")
    accelerator: str | None = Field(description="GKE accelerator type (gcp) or None.")
    ami_type: str | None = Field(description="EKS AMI type for the node group (aws) or None.")
    instance_type: str
    gpus_per_node: int
    gpus_per_replica: int
    tensor_parallel: int
    pipeline_parallel: int
    replicas: int = Field(description="Replicas the target load needs.")
    min_replicas: int = Field(description="Autoscaling floor (0 only when the stack allows scale to zero).")
    max_replicas: int = Field(description="Autoscaling ceiling.")
    replicas_per_node: int
    nodes: int = Field(description="Nodes for `replicas` replicas.")
    max_nodes: int = Field(description="Nodes for `max_replicas` replicas.")
    gpu_memory_utilization: float
    max_num_batched_tokens: int
    memory: MemorySplit
    kv_cache_tokens_per_replica: int
    max_concurrency_at_context: float = Field(description="KV tokens / max_model_len, as vLLM logs it.")
    max_num_seqs: int = Field(description="Concurrent sequences per replica the plan assumes.")
    output_tokens_per_s_per_replica: float
    cached_prompt_share: float = Field(
        default=0.0,
        description="Share of prompt tokens the stack expects the prefix cache to hold (load.cached_prompt_share); "
        "the throughput and replicas above count only the rest as prefill.",
    )
    usd_per_hour: float = Field(description="Price of `nodes` nodes in the region's capacity type (on-demand or spot).")
    usd_per_hour_on_demand: float | None = Field(
        default=None,
        description="The same nodes on-demand in this region; None where the price source lists no on-demand price.",
    )
    usd_per_hour_spot: float | None = Field(
        default=None,
        description="The same nodes on spot in this region; None where the price source lists no spot price.",
    )
    price_source: str = Field(default="", description="Where the node price comes from (file @ commit, region).")
    spot_interruption: str | None = Field(
        default=None,
        description="Spot deployments: the interruption notice and frequency the cloud states, with the page.",
    )
    usd_per_million_output_tokens: float
    fallback_instance_types: tuple[str, ...] = Field(
        description="Other instance types that can host the same replica shape in this region."
    )
    price_verified: bool = Field(description="False when a price in the catalog is flagged unverified.")
    rejected: tuple[Rejection, ...]
    adapters: tuple[LoraAdapter, ...] = Field(default=(), description="LoRA adapters the replicas serve by name.")
    max_loras: int = Field(default=0, description="vLLM --max-loras: adapters in one batch (0: LoRA off).")
    max_lora_rank: int = Field(default=0, description="vLLM --max-lora-rank: the largest adapter rank, rounded up.")
    mix: MixPlan | None = Field(default=None, description="With models[].mixed_gpus: the two-type split, or why none.")
    part: str | None = Field(
        default=None, description="In a deployed mix: this part's name (its GPU), suffixing its pool and service."
    )
    parts: tuple["DeploymentPlan", ...] = Field(
        default=(),
        description="A deployed mix's two parts, each a full plan for its instance type and share of the load; "
        "the program deploys these instead of the single type above (empty: it deploys the plan above).",
    )

    @property
    def deployed(self) -> tuple["DeploymentPlan", ...]:
        """What the program deploys for this model: its parts when a mix is deployed, else the plan itself."""
        return self.parts or (self,)


class Totals(Frozen):
    deployments: int
    regions: int
    gpus: int
    nodes: int
    replicas: int
    usd_per_hour: float
    usd_per_month: float = Field(description="usd_per_hour x 730.")
    output_tokens_per_s: float


class FailoverEstimate(Frozen):
    """Worst-case seconds from a region failing to clients resolving the global name elsewhere.

    total_s = detection_s + check_timeout_s + ttl_s; components/traffic/failover.py derives and explains each part.
    """

    provider: Literal["route53", "clouddns"]
    detection_s: int = Field(description="Health check interval x failure threshold.")
    check_timeout_s: int = Field(description="How long the last failing check may take to fail (a hung endpoint).")
    ttl_s: int = Field(description="Resolvers may keep serving the old answer this long.")
    total_s: int
    budget_s: int | None = Field(default=None, description="The stack's load_balancer.failover_budget_s.")


class Plan(Frozen):
    """The whole stack's plan. Serialised as the `llmfleet plan --format json` contract."""

    stack: str
    deployments: tuple[DeploymentPlan, ...]
    totals: Totals
    failover: FailoverEstimate | None = Field(
        default=None, description="Global load balancing's worst-case failover (None without a load_balancer)."
    )
    queue: tuple[QueueCost, ...] = Field(
        default=(), description="What each region's async queue adds (empty without a `queue` section)."
    )
    cascade: tuple[CpuPodsCost, ...] = Field(
        default=(), description="What each region's cascade router pods add (empty without `gateway.cascade`)."
    )
    response_cache: tuple[CpuPodsCost, ...] = Field(
        default=(),
        description="What each region's response cache adds: its LiteLLM pods, then its Redis (empty without "
        "`gateway.response_cache`).",
    )
