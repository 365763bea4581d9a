"""The catalogs: models, GPUs, instance types, and published calibration points.

Data lives in `components/sizing/data/*.yaml`, one entry per item, each with its source; this module
only validates and indexes it. Figures that could not be confirmed against a primary source carry
`verified: false` and are reported as such wherever they are used (e.g. an unverified price).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmfleet.components.sizing.memory import LORA_RANKS, Sampler
from llmfleet.components.sizing.types import KvCacheDtype, ModelArchitecture, Quantization

DATA_DIR = Path(__file__).parent / "data"

CapacityType = Literal["on-demand", "spot", "flex-start"]
"""How a type's nodes can be bought: on-demand, spot (preemptible), or GCP Flex-start (Dynamic Workload
Scheduler: queued, at most seven days). Stacks choose on-demand or spot per region (capacity_type)."""
DEFAULT_CAPACITY: tuple[CapacityType, ...] = ("on-demand", "spot")


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(Entry):
    """Where a figure comes from. `verified: false` marks figures not confirmed at a primary source."""

    ref: str = Field(description="URL or citation (repository, path, commit or date).")
    verified: bool = True
    note: str | None = None


class ModelEntry(Entry):
    id: str = Field(description="Catalog id used in stack files, e.g. llama-3.1-8b.")
    hf_repo: str
    gated: bool = Field(description="HF asks for an access request before `hf_repo` downloads (a token is needed).")
    gated_source: Source = Field(description="Where `gated` comes from (the model page, reports of the gate).")
    architecture: ModelArchitecture
    moe_experts: int | None = Field(default=None, description="Routed experts (MoE only).")
    sliding_window: bool = Field(
        default=False, description="Some layers use a sliding window (KV formula is an upper bound)."
    )
    source: Source


class GpuEntry(Entry):
    id: str = Field(description="e.g. H100, A10G, L40S.")
    name: str
    generation: Literal["ampere", "ada", "hopper", "blackwell"]
    compute_capability: float
    memory_gib: float = Field(description="Memory the CUDA driver reports (what vLLM's fraction applies to).")
    memory_gb_marketing: float
    bandwidth_gb_s: float
    bf16_tflops: float = Field(description="Dense BF16 tensor TFLOPS.")
    fp8_tflops: float | None = Field(description="Dense FP8 tensor TFLOPS; None without FP8 tensor cores.")
    nvlink: bool
    fp8_support: Literal["native", "weight-only", "none"]
    source: Source


class InstanceEntry(Entry):
    cloud: Literal["aws", "gcp", "local"]
    type: str = Field(description="Instance type (aws) or machine type (gcp).")
    gpu: str | None = Field(description="GPU catalog id; None for a CPU-only type.")
    gpu_count: int = Field(ge=0)
    vcpu: int
    ram_gib: float
    usd_per_hour: float = Field(description="On-demand list price in price_region (prices.yaml has per-region ones).")
    spot_usd_per_hour: float | None = Field(default=None, description="Spot price in price_region, when cited.")
    price_region: str
    regions: list[str] = Field(
        default_factory=list[str], description="Where it is sold; from prices.yaml for the types priced there."
    )
    eks_ami_type: str | None = Field(default=None, description="aws: EKS AMI type for a node group of this type.")
    gke_accelerator: str | None = Field(default=None, description="gcp: guest accelerator type string.")
    memory_bandwidth_gb_s: float | None = Field(
        default=None, description="CPU-only types: DRAM bandwidth llama.cpp decode can use (GB/s)."
    )
    capacity: tuple[CapacityType, ...] = Field(
        default=DEFAULT_CAPACITY, description="The capacity types the type is offered in; the planner uses no other."
    )
    price_source: Source
    regions_source: Source | None = Field(default=None, description="Required unless prices.yaml lists the type.")
    memory_bandwidth_source: Source | None = Field(
        default=None, description="Where memory_bandwidth_gb_s comes from (estimates flagged verified: false)."
    )
    capacity_source: Source | None = Field(
        default=None, description="Where a capacity other than the default (on-demand and spot) comes from."
    )

    @model_validator(mode="after")
    def _capacity_is_sourced(self) -> InstanceEntry:
        if set(self.capacity) != set(DEFAULT_CAPACITY) and self.capacity_source is None:
            raise ValueError(
                f"{self.type}: capacity {list(self.capacity)} differs from the default; add capacity_source"
            )
        return self


class RegionPrice(Entry):
    """One region's $/h per node; None: the source lists no price for that capacity type there."""

    on_demand: float | None = Field(ge=0)
    spot: float | None = Field(ge=0)


class PriceSource(Source):
    commit: str = Field(description="Commit of the source file the figures were read from.")
    date: str = Field(description="Date of the figures, or why it is unknown.")


class SpotRisk(Entry):
    """What a spot node's user should expect, per cloud, with the page that says it."""

    notice: str
    frequency: str
    ref: str


class PriceTable(Entry):
    """prices.yaml: per cloud, instance type -> region -> RegionPrice."""

    sources: dict[str, PriceSource]
    spot_risk: dict[str, SpotRisk]
    aws: dict[str, dict[str, RegionPrice]]
    gcp: dict[str, dict[str, RegionPrice]]


@dataclass(frozen=True)
class NodePrice:
    """A node's price in one region: on-demand and spot (None where not sold so), and where the figure is from."""

    on_demand: float | None
    spot: float | None
    verified: bool
    source: str

    def of(self, capacity_type: str) -> float | None:
        return self.spot if capacity_type == "spot" else self.on_demand


class KvCalibrationPoint(Entry):
    """A 'GPU KV cache size: N tokens' line that real vLLM printed, with the settings it ran with."""

    model: str = Field(description="Catalog id.")
    gpu: str
    gpu_count: int = Field(description="GPUs per replica (TP x PP).")
    tensor_parallel: int
    pipeline_parallel: int = 1
    quantization: Quantization
    kv_cache_dtype: KvCacheDtype = KvCacheDtype.AUTO
    gpu_memory_utilization: float
    max_model_len: int
    max_num_batched_tokens: int | None = None
    vllm_version: str
    enforce_eager: bool = False
    block_size: int = Field(default=16, description="--block-size: tokens per KV-cache page.")
    sampler: Sampler | None = Field(
        default=None, description="The top-k/top-p sampler the log names; None: the release's default."
    )
    max_loras: int = Field(default=0, ge=0, description="--max-loras: LoRA adapter slots on the GPU (0: LoRA off).")
    max_lora_rank: int = Field(default=0, ge=0, description="--max-lora-rank the slots are sized for (0: LoRA off).")
    reported_kv_tokens: int
    reported_memory_gib: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Other figures the same log printed, GiB per GPU: weights, kv_cache (available KV memory), "
            "activation_peak, non_torch, cuda_graph, gpu_total. Only the ones the log shows."
        ),
    )
    fitted: bool = Field(
        default=False,
        description=(
            "A constant of the memory model was fitted or set on this point, so it is no test of the model; "
            "the other points are held out (tests/test_calibration.py reports them separately)."
        ),
    )
    unexplained: str | None = Field(
        default=None,
        description=(
            "Why the memory model cannot reproduce this point (a setting the log does not show, behaviour the "
            "planner never plans). Such points stay in the table but are not held to the calibration target."
        ),
    )
    source: Source

    @model_validator(mode="after")
    def _lora_settings_go_together(self) -> KvCalibrationPoint:
        if (self.max_loras == 0) != (self.max_lora_rank == 0):
            raise ValueError("max_loras and max_lora_rank are both set (LoRA on) or both 0 (LoRA off)")
        if self.max_lora_rank and self.max_lora_rank not in LORA_RANKS:
            raise ValueError(f"max_lora_rank {self.max_lora_rank} is not one vLLM accepts: {LORA_RANKS}")
        return self


class LlamaCppCalibrationPoint(Entry):
    """The KV and compute buffers llama.cpp's CUDA backend printed at start-up, with the shapes behind them."""

    id: str
    model: str
    gpu: str
    n_ctx: int = Field(gt=0, description="KV cache tokens (all slots).")
    n_ubatch: int = Field(gt=0)
    layers: int = Field(gt=0)
    n_embd_k_gqa: int = Field(gt=0, description="K (and V) width per layer: KV heads x head_dim.")
    n_vocab: int = Field(gt=0)
    reported_kv_buffer_mib: float
    reported_compute_buffer_mib: float
    source: Source


class ThroughputCalibrationPoint(Entry):
    """A published decode measurement: inter-token latency at a concurrency, or offline tokens/s."""

    model: str
    gpu: str
    gpu_count: int
    tensor_parallel: int
    quantization: Quantization
    concurrency: int | None = Field(description="None for an offline (max-throughput) run.")
    itl_ms: float | None = None
    output_tokens_per_s: float | None = None
    prompt_tokens: int | None = Field(default=None, description="Input length of the run, when the source gives it.")
    output_tokens: int | None = Field(default=None, description="Output length of the run, when the source gives it.")
    source: Source


class Catalog(Entry):
    models: dict[str, ModelEntry]
    gpus: dict[str, GpuEntry]
    instances: dict[str, InstanceEntry] = Field(description="Keyed by instance/machine type.")
    kv_calibration: list[KvCalibrationPoint]
    throughput_calibration: list[ThroughputCalibrationPoint]
    llamacpp_calibration: list[LlamaCppCalibrationPoint]
    prices: PriceTable

    def region_prices(self, instance: InstanceEntry) -> dict[str, RegionPrice] | None:
        table = self.prices.aws if instance.cloud == "aws" else self.prices.gcp if instance.cloud == "gcp" else {}
        return table.get(instance.type)

    def price(self, instance: InstanceEntry, region: str) -> NodePrice:
        """What a node of `instance` costs in `region`, per capacity type, and from where."""
        table = self.region_prices(instance)
        if table is not None and region in table:
            row, source = table[region], self.prices.sources[instance.cloud]
            where = f"{source.ref} @ {source.commit[:8]}, {region}"
            return NodePrice(row.on_demand, row.spot, source.verified, where)
        source = instance.price_source
        elsewhere = region != instance.price_region
        where = f"{source.ref}" + (f" (priced in {instance.price_region}, not {region})" if elsewhere else "")
        return NodePrice(instance.usd_per_hour, instance.spot_usd_per_hour, source.verified and not elsewhere, where)

    def spot_risk(self, cloud: str) -> str | None:
        risk = self.prices.spot_risk.get(cloud)
        return None if risk is None else f"notice {risk.notice}; interruption frequency {risk.frequency} ({risk.ref})"

    def instances_in(self, cloud: str, region: str) -> list[InstanceEntry]:
        return [i for i in self.instances.values() if i.cloud == cloud and region in i.regions]

    def regions_of(self, cloud: str) -> list[str]:
        return sorted({r for i in self.instances.values() if i.cloud == cloud for r in i.regions})


def _read(name: str) -> list[dict[str, object]]:
    data = yaml.safe_load((DATA_DIR / name).read_text())
    return list(data["entries"])


def _with_priced_regions(instance: InstanceEntry, prices: PriceTable) -> InstanceEntry:
    """A type priced per region in prices.yaml is sold exactly where it is priced (one source of truth)."""
    table = prices.aws if instance.cloud == "aws" else prices.gcp if instance.cloud == "gcp" else {}
    priced = table.get(instance.type)
    if priced is not None:
        if instance.regions:
            raise ValueError(f"instances.yaml {instance.type}: regions come from prices.yaml; remove them")
        return instance.model_copy(update={"regions": sorted(priced)})
    if not instance.regions or instance.regions_source is None:
        raise ValueError(f"instances.yaml {instance.type}: not in prices.yaml, so it needs regions and regions_source")
    return instance


@cache
def load_catalog() -> Catalog:
    """Load and validate every catalog file (cached: the catalog is read-only)."""
    models = [ModelEntry.model_validate(e) for e in _read("models.yaml")]
    gpus = [GpuEntry.model_validate(e) for e in _read("gpus.yaml")]
    prices = PriceTable.model_validate(yaml.safe_load((DATA_DIR / "prices.yaml").read_text()))
    instances = [_with_priced_regions(InstanceEntry.model_validate(e), prices) for e in _read("instances.yaml")]
    return Catalog(
        models={m.id: m for m in models},
        gpus={g.id: g for g in gpus},
        instances={i.type: i for i in instances},
        prices=prices,
        llamacpp_calibration=[LlamaCppCalibrationPoint.model_validate(e) for e in _read("calibration_llamacpp.yaml")],
        kv_calibration=[KvCalibrationPoint.model_validate(e) for e in _read("calibration_kv.yaml")],
        throughput_calibration=[
            ThroughputCalibrationPoint.model_validate(e) for e in _read("calibration_throughput.yaml")
        ],
    )
