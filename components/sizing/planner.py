"""Choose hardware, parallelism and replica count for one model in one region.

The search: every instance type the region offers (honouring allowed_gpus and pins) x every tensor-
parallel degree the model's heads allow within one node x pipeline stages when no single node
holds a replica. Each option is sized (memory.py), rated (throughput.py) and priced for the target
load; the cheapest per hour wins (tie: $ per million output tokens, then fewer GPUs). Every other
option is returned with the reason it lost. GGUF models run on llama.cpp on CPU types unless a GPU
is pinned.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

from llmfleet.components.sizing import memory as mem
from llmfleet.components.sizing.catalog import Catalog, GpuEntry, InstanceEntry, NodePrice
from llmfleet.components.sizing.errors import PlanningError
from llmfleet.components.sizing.mix import Split, cheapest_mix
from llmfleet.components.sizing.parallelism import (
    tensor_parallel_is_valid,
    valid_tensor_parallel,
    why_tensor_parallel_invalid,
)
from llmfleet.components.sizing.plan import DeploymentPlan, MemorySplit, MixPlan, MixPool, Rejection
from llmfleet.components.sizing.throughput import (
    Device,
    Workload,
    largest_batch_within,
    output_tokens_per_s,
    time_per_output_token_s,
)
from llmfleet.components.sizing.types import ConcurrencyLoad, Engine, ModelRequest, Quantization, RegionRequest

MAX_PIPELINE_STAGES = 4
"""Nodes one replica may span (beyond that, inter-node latency dominates)."""
FALLBACKS_LISTED = 3

# llama.cpp serving (GGUF): on a CPU type the whole RAM minus what the node keeps for itself; on a GPU type one
# GPU per replica (llama.cpp's CUDA server, every layer offloaded).
CPU_RAM_USABLE_FRACTION = 0.9
NODE_RESERVED_GIB = 1.0
"""kubelet, the OS and system pods on a CPU node."""
LLAMA_CPP_UBATCH = 512
"""llama.cpp's default physical batch (n_ubatch): sizes its compute buffer."""
LLAMA_CPP_LOGIT_BYTES = 4
"""The compute buffer holds the f32 logits of one ubatch: n_ubatch x n_vocab x 4 bytes. Two llama.cpp CUDA logs
(data/calibration_llamacpp.yaml) print 300.75 and 304 MiB where this gives 296.8 and 297.0 MiB."""
LLAMA_CPP_RUNTIME_GIB = 0.5
"""What llama.cpp does not log: the CUDA context and cuBLAS workspaces on a GPU, the process and its buffers on a
CPU. An assumption (vLLM's logs put the CUDA part at 0.15-0.55 GiB), not calibrated."""
CPU_TFLOPS_PER_VCPU = 0.1
"""Peak dense arithmetic per vCPU (AVX-512 / AMX class cores; unverified)."""
GPU_MEMORY_FRACTION_LLAMA_CPP = 0.95


@dataclass(frozen=True)
class Option:
    """A replica shape on an instance type: the unit the search evaluates."""

    instance: InstanceEntry
    gpu: GpuEntry | None
    tp: int
    pp: int

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp if self.gpu else 0

    @property
    def label(self) -> str:
        if self.gpu is None:
            return f"CPU {self.instance.type}"
        parallel = f"TP{self.tp}" + (f" PP{self.pp}" if self.pp > 1 else "")
        return f"{self.gpu.id} x{self.tp * self.pp} {self.instance.type} {parallel}"

    @property
    def type_label(self) -> str:
        """The instance type as a whole, e.g. 'H100 x2 a3-highgpu-2g'."""
        gpus = f"{self.instance.gpu} x{self.instance.gpu_count}" if self.instance.gpu else "CPU"
        return f"{gpus} {self.instance.type}"


@dataclass(frozen=True)
class Sized:
    """An option that fits, with what it delivers and costs for the load."""

    option: Option
    memory: mem.ReplicaMemory
    settings: mem.EngineSettings
    batch: int
    tokens_per_s: float
    replicas: int
    replicas_per_node: int
    nodes: int
    price: NodePrice
    capacity_type: str
    capacity: float
    """What one replica carries of the load: sequences in flight (concurrency load) or output tokens/s."""

    @property
    def node_price(self) -> float:
        return self.price.of(self.capacity_type) or 0.0  # an unpriced capacity type never reaches sizing

    @property
    def price_verified(self) -> bool:
        return self.price.verified

    @property
    def usd_per_hour(self) -> float:
        return self.nodes * self.node_price

    @property
    def usd_per_million(self) -> float:
        tokens_per_hour = self.replicas * self.tokens_per_s * 3600
        return self.usd_per_hour / tokens_per_hour * 1e6 if tokens_per_hour else 0.0

    @property
    def gpus(self) -> int:
        return self.nodes * self.option.instance.gpu_count

    # what components.sizing.mix needs of a candidate
    @property
    def gpu_id(self) -> str:
        return self.option.gpu.id if self.option.gpu else "CPU"

    @property
    def label(self) -> str:
        return self.option.label

    @property
    def instance_type(self) -> str:
        return self.option.instance.type

    @property
    def pipeline_stages(self) -> int:
        return self.option.pp

    @property
    def sort_key(self) -> tuple[float, float, int, str]:
        return (round(self.usd_per_hour, 6), round(self.usd_per_million, 6), self.gpus, self.option.label)


class Shortfall(Exception):
    """An option that cannot work; `gib_short` says by how much memory it missed (when it did), `fix`
    which stack fields would make options like it work."""

    def __init__(self, reason: str, fix: str, gib_short: float | None = None) -> None:
        super().__init__(reason)
        self.fix = fix
        self.gib_short = gib_short


MORE_MEMORY_FIX = (
    "more memory per replica: larger GPUs (the region's allowed_gpus, overrides.gpu), fewer bytes per weight "
    "(quantization fp8, awq or gptq), kv_cache_dtype fp8, or a shorter max_model_len"
)


def smaller_gguf(quantization: Quantization) -> list[str]:
    """GGUF formats with fewer bits per weight than `quantization` (a hint never suggests the one already chosen)."""
    ladder = [Quantization.Q8_0, Quantization.Q5_K_M, Quantization.Q4_K_M]
    return [q.value for q in ladder[ladder.index(quantization) + 1 :]] if quantization in ladder else []


def more_room_fix(quantization: Quantization, gpu: bool) -> str:
    """What would make a GGUF replica fit: more memory, fewer bits per weight (only smaller ones), a shorter context."""
    smaller = smaller_gguf(quantization)
    bits = f", a smaller GGUF quantization ({' or '.join(smaller)})" if smaller else ""
    room = "a GPU with more memory (allowed_gpus, overrides.gpu)" if gpu else "a CPU type with more RAM"
    return f"{room}{bits}, or a shorter max_model_len"


def quantization_problem(quantization: Quantization, option: Option) -> str | None:
    """Why this hardware cannot run the format in its engine (None when it can); sizing facts §3 (data/README.md)."""
    gpu = option.gpu
    if gpu is None:
        if not quantization.is_gguf:
            return f"{quantization.value} needs a GPU for vLLM; CPU types serve GGUF formats (q4_k_m, q5_k_m, q8_0)"
        return None
    if quantization is Quantization.FP8 and gpu.fp8_support == "none":
        return f"fp8 needs FP8 tensor cores (compute capability >= 8.9) or weight-only kernels; {gpu.id} has neither"
    return None


MAX_LORAS_IN_A_BATCH = 4
"""--max-loras when a model has adapters: up to this many adapters share a batch; vLLM keeps every adapter in
CPU memory (--max-cpu-loras = their number) and swaps them into these GPU slots. Each slot costs GPU memory
(memory.lora_bytes_per_gpu), so more slots trade KV cache for fewer swaps."""


def max_loras(model: ModelRequest) -> int:
    return min(len(model.adapters), MAX_LORAS_IN_A_BATCH)


def nodes_for(replicas: int, replicas_per_node: int, pipeline_stages: int) -> int:
    """Nodes for `replicas`: packed per node, or one node per stage when a replica spans nodes."""
    if pipeline_stages > 1:
        return replicas * pipeline_stages
    return math.ceil(replicas / replicas_per_node)


class Planner:
    """Plans one ModelRequest in one RegionRequest against the catalog."""

    def __init__(
        self, catalog: Catalog, model: ModelRequest, region: RegionRequest, eta: float, tpot_slo_ms: float | None
    ) -> None:
        self.catalog = catalog
        self.model = model
        self.region = region
        self.eta = eta
        self.tpot_ms = tpot_slo_ms or 0.0
        self.tpot_s = tpot_slo_ms / 1000 if tpot_slo_ms else None
        self.pins = model.overrides
        self.arch = model.architecture
        self.rejected: list[Rejection] = []
        self.shortfalls: list[tuple[Option, Shortfall]] = []

    # --- the options -------------------------------------------------------------------------------

    def serves_on_cpu(self) -> bool:
        """GGUF may run on CPU types (llama.cpp's CPU server) unless a GPU is pinned."""
        if not self.model.quantization.is_gguf or self.pins.gpu:
            return False
        pinned = self.catalog.instances.get(self.pins.instance_type or "")
        return pinned is None or pinned.gpu is None

    def gpu_allowed(self, instance: InstanceEntry) -> bool:
        return (
            instance.gpu is not None
            and (self.pins.gpu is None or instance.gpu == self.pins.gpu)
            and (self.region.allowed_gpus is None or instance.gpu in self.region.allowed_gpus)
        )

    def instances(self) -> list[InstanceEntry]:
        """The region's instance types this model may use, pins and allowed_gpus applied."""
        found: list[InstanceEntry] = []
        for instance in self.catalog.instances_in(self.region.cloud, self.region.region):
            if self.pins.instance_type and instance.type != self.pins.instance_type:
                continue
            if self.pins.instance_type:
                found.append(instance)  # a pinned type is checked (and explained) even if off-profile
            elif self.serves_on_cpu() and instance.gpu is None and instance.memory_bandwidth_gb_s:
                found.append(instance)  # GGUF: CPU types compete with GPU types on price within the SLO
            elif self.gpu_allowed(instance):
                found.append(instance)
        return found

    def options(self, instance: InstanceEntry) -> list[Option]:
        gpu = self.catalog.gpus.get(instance.gpu) if instance.gpu else None
        if gpu is None or self.model.engine is Engine.LLAMA_CPP:
            return [Option(instance, gpu, 1, 1)]
        if self.pins.gpu and gpu.id != self.pins.gpu:
            option = Option(instance, gpu, 1, 1)
            mismatch = Shortfall(
                f"pinned gpu {self.pins.gpu}, this type has {gpu.id}",
                "an overrides.instance_type with the pinned overrides.gpu, or only one of the two",
            )
            self.reject(option, str(mismatch))
            self.shortfalls.append((option, mismatch))
            return []
        pinned_tp, pinned_pp = self.pins.tensor_parallel, self.pins.pipeline_parallel
        tps = [pinned_tp] if pinned_tp is not None else valid_tensor_parallel(self.arch, instance.gpu_count)
        if pinned_pp is not None:
            pps = [pinned_pp]
        else:
            pps = [1]
            largest = max(tps, default=1)
            budget = gpu.memory_gib * mem.GIB * 0.95 * largest  # rough: would one node hold the weights?
            if tps and mem.weight_bytes(self.arch, self.model.quantization) > budget and pinned_tp is None:
                pps = list(range(1, MAX_PIPELINE_STAGES + 1))
                tps = [largest]
        return [Option(instance, gpu, tp, pp) for pp in pps for tp in tps]

    # --- sizing one option -------------------------------------------------------------------------

    def reject(self, option: Option, reason: str) -> None:
        self.rejected.append(Rejection(option=option.label, reason=reason))

    def engine_settings(self, gpu: GpuEntry) -> mem.EngineSettings:
        version = self.pins.engine_version or mem.DEFAULT_VLLM_VERSION
        defaults = mem.vllm_defaults(version, gpu.memory_gib, gpu.id, self.model.max_model_len)
        return mem.EngineSettings(
            gpu_memory_utilization=self.pins.gpu_memory_utilization or defaults.gpu_memory_utilization,
            max_num_batched_tokens=self.pins.max_num_batched_tokens or defaults.max_num_batched_tokens,
            max_num_seqs=defaults.max_num_seqs,
            subtracts_cuda_graphs=defaults.subtracts_cuda_graphs,
            sampler=defaults.sampler,
            max_loras=max_loras(self.model),
            max_lora_rank=max((mem.lora_rank_slot(a.rank) for a in self.model.adapters), default=0),
        )

    def vllm_memory(self, option: Option, gpu: GpuEntry) -> tuple[mem.ReplicaMemory, mem.EngineSettings]:
        if not tensor_parallel_is_valid(self.arch, option.tp):
            valid = valid_tensor_parallel(self.arch, 8)
            raise Shortfall(
                why_tensor_parallel_invalid(self.arch, option.tp),
                f"overrides.tensor_parallel one of {valid} (or unset)",
            )
        if option.tp > option.instance.gpu_count:
            has = option.instance.gpu_count
            raise Shortfall(
                f"TP {option.tp} needs {option.tp} GPUs in one node, the type has {has}",
                f"an instance type with at least {option.tp} GPUs, or a lower overrides.tensor_parallel",
            )
        settings = self.engine_settings(gpu)
        model = self.model
        sized = mem.replica_memory(
            self.arch, model.quantization, model.kv_cache_dtype, gpu.memory_gib, option.tp, option.pp, settings
        )
        return sized, settings

    def llama_cpp_memory(self, option: Option) -> tuple[mem.ReplicaMemory, mem.EngineSettings]:
        """llama.cpp holds the GGUF file's weights, a KV cache for its slots (f16) and a compute buffer (the logits of
        one ubatch) in RAM, or all of it on one GPU; plus what it does not log (LLAMA_CPP_RUNTIME_GIB)."""
        if option.gpu is not None:
            total_gib, fraction, reserved = option.gpu.memory_gib, GPU_MEMORY_FRACTION_LLAMA_CPP, 0.0
        else:
            total_gib, fraction, reserved = option.instance.ram_gib, CPU_RAM_USABLE_FRACTION, NODE_RESERVED_GIB
        budget = total_gib * mem.GIB * fraction - reserved * mem.GIB
        weights = mem.weight_bytes(self.arch, self.model.quantization)
        compute = LLAMA_CPP_UBATCH * self.arch.vocab_size * LLAMA_CPP_LOGIT_BYTES + LLAMA_CPP_RUNTIME_GIB * mem.GIB
        kv_cache = max(0.0, budget - weights - compute)
        per_token = mem.kv_bytes_per_token_per_gpu(self.arch, self.model.kv_cache_dtype, 1)
        sized = mem.ReplicaMemory(
            gpu_total=total_gib * mem.GIB,
            budget=budget,
            weights=weights,
            activation=compute,
            non_torch=0.0,
            cuda_graphs=0.0,
            kv_cache=kv_cache,
            kv_bytes_per_token_per_gpu=per_token,
            kv_tokens=int(kv_cache // per_token),
        )
        return sized, mem.EngineSettings(fraction, LLAMA_CPP_UBATCH, max_num_seqs=64, subtracts_cuda_graphs=False)

    def device(self, option: Option) -> Device:
        gpu, instance = option.gpu, option.instance
        if gpu is None:
            return Device(instance.memory_bandwidth_gb_s or 0.0, instance.vcpu * CPU_TFLOPS_PER_VCPU, 1)
        eight_bit = self.model.quantization in (Quantization.FP8, Quantization.INT8)
        tflops = gpu.fp8_tflops if eight_bit and gpu.fp8_tflops else gpu.bf16_tflops
        return Device(gpu.bandwidth_gb_s, tflops, option.tp, option.pp)

    def workload(self, option: Option) -> Workload:
        arch, load = self.arch, self.model.load
        return Workload(
            weight_bytes=mem.weight_bytes(arch, self.model.quantization),
            active_fraction=arch.active_params / arch.params_b,
            active_params=arch.active_params,
            kv_bytes_per_token=mem.kv_bytes_per_token(arch, self.model.kv_cache_dtype, option.tp, option.pp),
            prompt_tokens=load.prompt_tokens,
            output_tokens=load.output_tokens,
            cached_prompt_share=load.cached_prompt_share,
        )

    def size(self, option: Option) -> Sized:
        """Fit, rate and price one option, or raise Shortfall with the reason it cannot work."""
        problem = quantization_problem(self.model.quantization, option)
        if problem:
            raise Shortfall(
                problem, "a GGUF quantization (q4_k_m, q5_k_m, q8_0) for CPU types, or a GPU type (overrides)"
            )
        if option.gpu is not None and self.model.engine is Engine.VLLM:
            sized, settings = self.vllm_memory(option, option.gpu)
        else:
            sized, settings = self.llama_cpp_memory(option)
        context = self.model.max_model_len
        if sized.kv_tokens < context:
            need = context * sized.kv_bytes_per_token_per_gpu
            overheads = sized.weights + sized.lora + sized.activation + sized.non_torch + sized.cuda_graphs
            short = (overheads + need - sized.budget) / mem.GIB
            raise Shortfall(
                f"needs {(overheads + need) / mem.GIB:.1f} GiB per GPU (weights {sized.weights / mem.GIB:.1f}, "
                f"one {context}-token request's KV {need / mem.GIB:.1f}, overheads "
                f"{(overheads - sized.weights) / mem.GIB:.1f}), budget gives {sized.budget / mem.GIB:.1f}"
                if option.gpu
                else f"needs {(overheads + need) / mem.GIB:.1f} GiB of RAM, {sized.budget / mem.GIB:.1f} usable",
                MORE_MEMORY_FIX
                if option.gpu and self.model.engine is Engine.VLLM
                else more_room_fix(self.model.quantization, gpu=option.gpu is not None),
                gib_short=short,
            )
        load = self.model.load
        per_sequence = min(load.prompt_tokens + load.output_tokens, context)
        slots = sized.kv_tokens // context if self.model.engine is Engine.LLAMA_CPP else sized.kv_tokens // per_sequence
        ceiling = min(settings.max_num_seqs, slots)
        work, device = self.workload(option), self.device(option)
        batch = largest_batch_within(work, device, self.eta, ceiling, self.tpot_s)
        if batch == 0:
            tpot_ms = time_per_output_token_s(work, device, 1, self.eta) * 1000
            raise Shortfall(
                f"TPOT at batch 1 is {tpot_ms:.0f} ms, above the SLO's tpot_p95_ms {self.tpot_ms:.0f}",
                "a higher slo.tpot_p95_ms, faster GPUs (allowed_gpus), or fewer bytes per weight (quantization)",
            )
        if option.gpu is not None and self.model.engine is Engine.VLLM:
            # The service starts vLLM with --max-num-seqs = this batch, and its profiling run samples that many
            # rows of logits, not the release default: size the split it will log. Fewer rows only free memory,
            # so the KV cache grows and the batch chosen above still fits.
            settings = replace(settings, max_num_seqs=batch)
            model = self.model
            sized = mem.replica_memory(
                self.arch,
                model.quantization,
                model.kv_cache_dtype,
                option.gpu.memory_gib,
                option.tp,
                option.pp,
                settings,
            )
        tokens_per_s = output_tokens_per_s(work, device, batch, self.eta)
        if isinstance(load, ConcurrencyLoad):
            needed = math.ceil(load.concurrent_sequences / batch)
        else:
            needed = math.ceil(load.output_tokens_per_s / tokens_per_s)
        replicas = needed
        if self.pins.replicas is not None:
            if self.pins.replicas < needed:
                raise Shortfall(
                    f"pinned {self.pins.replicas} replicas, the load needs {needed} "
                    f"({batch} sequences / {tokens_per_s:.0f} output tokens/s per replica)",
                    f"overrides.replicas of at least {needed}, or unset",
                )
            replicas = self.pins.replicas
        gpus = option.tp if option.gpu else 1
        replicas_per_node = max(1, option.instance.gpu_count // gpus) if option.pp == 1 and option.gpu else 1
        nodes = nodes_for(replicas, replicas_per_node, option.pp)
        instance = option.instance
        return Sized(
            option=option,
            memory=sized,
            settings=settings,
            batch=batch,
            tokens_per_s=tokens_per_s,
            replicas=replicas,
            replicas_per_node=replicas_per_node,
            nodes=nodes,
            price=self.catalog.price(instance, self.region.region),
            capacity_type=self.region.capacity_type,
            capacity=float(batch) if isinstance(load, ConcurrencyLoad) else tokens_per_s,
        )

    # --- the search --------------------------------------------------------------------------------

    def where(self) -> str:
        return f"{self.region.cloud}/{self.region.region}"

    def not_offered(self, instance: InstanceEntry) -> Shortfall | None:
        """The type is not sold in the region's capacity type: the catalog says so (`capacity`), or the cited price
        source has no price for it there (e.g. no spot price in any zone, or p5e.48xlarge with no on-demand price)."""
        wanted = self.region.capacity_type
        if wanted in instance.capacity:
            price = self.catalog.price(instance, self.region.region)
            if price.of(wanted) is not None:
                return None
            return Shortfall(
                f"no {wanted} price in {self.region.region} in the cited source ({price.source})",
                "another instance type (unset overrides.instance_type to let the search choose), "
                f"or the region's capacity_type {'on-demand' if wanted == 'spot' else 'spot'}",
            )
        source = instance.capacity_source
        unconfirmed = (
            " (unconfirmed: see its capacity_source in instances.yaml)" if source and not source.verified else ""
        )
        return Shortfall(
            f"not offered {wanted}: only {', '.join(instance.capacity)}{unconfirmed}",
            "another instance type (unset overrides.instance_type to let the search choose), "
            "or the region's capacity_type spot",
        )

    def search(self) -> tuple[Sized, list[Sized]]:
        fits: list[Sized] = []
        instances = self.instances()
        if not instances:
            raise PlanningError(self.nothing_offered())
        for instance in instances:
            unavailable = self.not_offered(instance)
            if unavailable is not None:  # one rejection for the whole type, not one per replica shape
                whole_type = Option(instance, None, 1, 1)
                self.rejected.append(Rejection(option=whole_type.type_label, reason=str(unavailable)))
                self.shortfalls.append((whole_type, unavailable))
                continue
            for option in self.options(instance):
                try:
                    fits.append(self.size(option))
                except Shortfall as short:
                    self.reject(option, str(short))
                    self.shortfalls.append((option, short))
        if not fits:
            raise PlanningError(self.nothing_fits())
        fits.sort(key=lambda s: s.sort_key)
        return fits[0], fits[1:]

    def describe_model(self) -> str:
        m = self.model
        return f"model '{m.name}' ({m.model_id} {m.quantization.value}, max_model_len {m.max_model_len})"

    def nothing_offered(self) -> str:
        wanted: list[str] = []
        if self.pins.instance_type:
            wanted.append(f"pinned instance_type {self.pins.instance_type}")
        elif self.serves_on_cpu():
            gpus = f"allowed_gpus {list(self.region.allowed_gpus)}" if self.region.allowed_gpus is not None else "GPU"
            wanted.append(f"CPU types for llama.cpp or {gpus} types")
        else:
            if self.pins.gpu:
                wanted.append(f"pinned gpu {self.pins.gpu}")
            if self.region.allowed_gpus is not None:
                wanted.append(f"allowed_gpus {list(self.region.allowed_gpus)}")
        what = " and ".join(wanted) or "GPU instance types"
        cloud = self.region.cloud
        offered = sorted({i.gpu or "CPU" for i in self.catalog.instances_in(cloud, self.region.region)})
        message = (
            f"{self.where()}, {self.describe_model()}: the region offers no {what} (it has: {offered or 'nothing'})"
        )
        gpus = [self.pins.gpu] if self.pins.gpu else list(self.region.allowed_gpus or [])
        elsewhere = sorted(
            {r for i in self.catalog.instances.values() if i.cloud == cloud and i.gpu in gpus for r in i.regions}
        )
        if gpus and not self.pins.instance_type:
            message += "\n  to fix: allow one of the GPUs it has (allowed_gpus, overrides.gpu)"
            message += f", or use another {cloud} region with {'/'.join(gpus)}: {elsewhere}" if elsewhere else ""
        return message

    def nothing_fits(self) -> str:
        closest = [(o, s) for o, s in self.shortfalls if s.gib_short is not None]
        head = f"{self.where()}, {self.describe_model()}: no option works; tried {len(self.shortfalls)}"
        if closest:
            option, short = min(closest, key=lambda pair: pair[1].gib_short or 0.0)
            head += f"; closest {option.label} {short} ({short.gib_short:.1f} GiB short)"
        reasons = "\n  ".join(f"{r.option}: {r.reason}" for r in self.rejected[:12])
        more = f"\n  ... and {len(self.rejected) - 12} more" if len(self.rejected) > 12 else ""
        fixes = list(dict.fromkeys(s.fix for _, s in self.shortfalls))  # distinct, in the order met
        return f"{head}\n  {reasons}{more}\n  to fix, any of: " + "; ".join(fixes)

    def fallbacks(self, chosen: Sized, others: list[Sized]) -> tuple[str, ...]:
        """Other types that host the same replica shape (TP x PP), the same GPU first, then cheapest."""
        shape = (chosen.option.tp, chosen.option.pp, chosen.option.gpu is None)
        same_shape = [s for s in others if (s.option.tp, s.option.pp, s.option.gpu is None) == shape]
        same_shape.sort(key=lambda s: (s.option.instance.gpu != chosen.option.instance.gpu, s.sort_key))
        types: list[str] = []
        for s in same_shape:
            if s.option.instance.type not in types and s.option.instance.type != chosen.option.instance.type:
                types.append(s.option.instance.type)
        return tuple(types[:FALLBACKS_LISTED])


def plan_deployment(
    catalog: Catalog,
    model: ModelRequest,
    region: RegionRequest,
    *,
    eta: float,
    tpot_slo_ms: float | None = None,
    min_replicas: int | None = None,
    max_replicas: int | None = None,
) -> DeploymentPlan:
    """The cheapest option that carries `model.load` in `region`, or PlanningError saying what fell short.

    Autoscaling bounds default to the planned replicas and twice that.
    """
    planner = Planner(catalog, model, region, eta, tpot_slo_ms)
    best, others = planner.search()
    for other in others:
        planner.reject(
            other.option,
            f"${other.usd_per_hour:.2f}/h for the load ({other.replicas} replicas on {other.nodes} nodes), "
            f"chosen ${best.usd_per_hour:.2f}/h",
        )
    fallbacks = planner.fallbacks(best, others)
    risk = catalog.spot_risk(region.cloud) if region.capacity_type == "spot" else None
    planned = to_plan(model, region, best, fallbacks, tuple(planner.rejected), min_replicas, max_replicas, risk)
    if model.mixed_gpus:
        mix, found = mix_plan(model, best, others)
        if model.deploy_mix and found is not None and mix.saves_usd_per_hour > 0:
            weights = [p.weight for p in mix.pools]
            parts = tuple(
                part_plan(model, region, split, weight, min_replicas, max_replicas, risk)
                for split, weight in zip(found, weights, strict=True)
            )
            mix = mix.model_copy(update={"deployed": True})
            return planned.model_copy(update={"mix": mix, "parts": parts})
        if model.deploy_mix:
            why = "no mix is cheaper" if found is not None else "no mix exists"
            mix = mix.model_copy(update={"summary": f"{mix.summary}; not deployed: {why}, the single type is"})
        planned = planned.model_copy(update={"mix": mix})
    return planned


def part_plan(
    model: ModelRequest,
    region: RegionRequest,
    split: Split,
    weight: float,
    min_replicas: int | None,
    max_replicas: int | None,
    risk: str | None,
) -> DeploymentPlan:
    """One pool of a deployed mix as a full plan of its own: the split's replicas and nodes of its candidate,
    autoscaling bounds in proportion to its share of the capacity (the stack's bounds are the model's)."""
    candidate = split.candidate
    assert isinstance(candidate, Sized)  # the planner hands cheapest_mix its own Sized options
    sized = replace(candidate, replicas=split.replicas, nodes=split.nodes)
    floor = split.replicas if min_replicas is None else min(split.replicas, math.ceil(min_replicas * weight))
    ceiling = None if max_replicas is None else max(floor, 1, math.ceil(max_replicas * weight))
    planned = to_plan(model, region, sized, (), (), floor, ceiling, risk)
    part = re.sub(r"[^a-z0-9]+", "-", candidate.gpu_id.lower()).strip("-")
    return planned.model_copy(update={"part": part})


def mix_plan(model: ModelRequest, best: Sized, others: list[Sized]) -> tuple[MixPlan, tuple[Split, Split] | None]:
    """The cheapest split of the load over two GPU types (components/sizing/mix.py), or why none is cheaper;
    with the split itself (None when there is none)."""
    single = best.usd_per_hour
    pins = model.overrides
    if pins.instance_type or pins.gpu or pins.replicas is not None:
        return MixPlan(
            pools=(),
            usd_per_hour=None,
            single_usd_per_hour=round(single, 4),
            saves_usd_per_hour=0.0,
            saves_percent=0.0,
            summary="no mix: the model pins its instance type, GPU or replicas (overrides)",
        ), None
    load = model.load
    demand = float(load.concurrent_sequences) if isinstance(load, ConcurrencyLoad) else load.output_tokens_per_s
    found = cheapest_mix([best, *others], demand)
    if found is None or found.pools is None:
        return MixPlan(
            pools=(),
            usd_per_hour=None,
            single_usd_per_hour=round(single, 4),
            saves_usd_per_hour=0.0,
            saves_percent=0.0,
            summary="no mix: only one GPU type can serve the model in this region",
        ), None
    mixed = found.usd_per_hour or 0.0
    total_capacity = sum(p.capacity for p in found.pools)
    pools = tuple(
        MixPool(
            instance_type=p.candidate.instance_type,
            gpu=None if p.candidate.gpu_id == "CPU" else p.candidate.gpu_id,
            replicas=p.replicas,
            nodes=p.nodes,
            usd_per_hour=round(p.usd_per_hour, 4),
            weight=round(p.capacity / total_capacity, 4),
        )
        for p in found.pools
    )
    described = " + ".join(f"{p.replicas} x {p.candidate.label} ({p.nodes} nodes)" for p in found.pools)
    if mixed < single - 1e-9:
        saves = single - mixed
        summary = (
            f"mix {described} costs ${mixed:.2f}/h, saves ${saves:.2f}/h ({saves / single:.0%}) against ${single:.2f}/h"
        )
    else:
        saves = 0.0
        summary = (
            f"no mix is cheaper: the best split ({described}) costs ${mixed:.2f}/h, the single type ${single:.2f}/h"
        )
    return MixPlan(
        pools=pools,
        usd_per_hour=round(mixed, 4),
        single_usd_per_hour=round(single, 4),
        saves_usd_per_hour=round(saves, 4),
        saves_percent=round(100 * saves / single, 2) if single else 0.0,
        summary=summary,
    ), found.pools


def to_plan(
    model: ModelRequest,
    region: RegionRequest,
    best: Sized,
    fallbacks: tuple[str, ...],
    rejected: tuple[Rejection, ...],
    min_replicas: int | None,
    max_replicas: int | None,
    spot_interruption: str | None = None,
) -> DeploymentPlan:
    option, sized = best.option, best.memory
    on_demand, spot = best.price.on_demand, best.price.spot
    floor = best.replicas if min_replicas is None else min_replicas
    ceiling = max(2 * best.replicas, floor, 1) if max_replicas is None else max_replicas
    per_node = best.replicas_per_node
    gib = mem.GIB
    version = model.overrides.engine_version or (
        mem.DEFAULT_LLAMA_CPP_VERSION if model.engine is Engine.LLAMA_CPP else mem.DEFAULT_VLLM_VERSION
    )
    return DeploymentPlan(
        cloud=region.cloud,
        region=region.region,
        capacity_type=region.capacity_type,
        model=model.name,
        model_id=model.model_id,
        hf_repo=model.hf_repo,
        quantization=model.quantization,
        kv_cache_dtype=model.kv_cache_dtype,
        engine=model.engine,
        engine_version=version,
        max_model_len=model.max_model_len,
        gpu=option.gpu.id if option.gpu else None,
        accelerator=option.instance.gke_accelerator,
        ami_type=option.instance.eks_ami_type,
        instance_type=option.instance.type,
        gpus_per_node=option.instance.gpu_count,
        gpus_per_replica=option.gpus_per_replica,
        tensor_parallel=option.tp,
        pipeline_parallel=option.pp,
        replicas=best.replicas,
        min_replicas=floor,
        max_replicas=ceiling,
        replicas_per_node=per_node,
        nodes=best.nodes,
        max_nodes=nodes_for(ceiling, per_node, option.pp),
        gpu_memory_utilization=best.settings.gpu_memory_utilization,
        max_num_batched_tokens=best.settings.max_num_batched_tokens,
        memory=MemorySplit(
            gpu_total_gib=round(sized.gpu_total / gib, 2),
            budget_gib_per_gpu=round(sized.budget / gib, 2),
            weights_gib_per_gpu=round(sized.weights / gib, 2),
            activation_gib_per_gpu=round(sized.activation / gib, 2),
            non_torch_gib_per_gpu=round(sized.non_torch / gib, 2),
            cuda_graph_gib_per_gpu=round(sized.cuda_graphs / gib, 2),
            kv_cache_gib_per_gpu=round(sized.kv_cache / gib, 2),
            kv_bytes_per_token=mem.kv_bytes_per_token(model.architecture, model.kv_cache_dtype, option.tp, option.pp),
            lora_gib_per_gpu=round(sized.lora / gib, 2),
        ),
        kv_cache_tokens_per_replica=sized.kv_tokens,
        max_concurrency_at_context=round(sized.kv_tokens / model.max_model_len, 2),
        max_num_seqs=best.batch,
        output_tokens_per_s_per_replica=round(best.tokens_per_s, 1),
        cached_prompt_share=model.load.cached_prompt_share,
        usd_per_hour=round(best.usd_per_hour, 4),
        usd_per_hour_on_demand=None if on_demand is None else round(best.nodes * on_demand, 4),
        usd_per_hour_spot=None if spot is None else round(best.nodes * spot, 4),
        price_source=best.price.source,
        spot_interruption=spot_interruption,
        adapters=model.adapters,
        max_loras=best.settings.max_loras,
        max_lora_rank=best.settings.max_lora_rank,
        usd_per_million_output_tokens=round(best.usd_per_million, 4),
        fallback_instance_types=fallbacks,
        price_verified=best.price_verified,
        rejected=rejected,
    )
