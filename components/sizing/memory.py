"""How one vLLM replica spends GPU memory, and how many KV-cache tokens are left (sizing facts §1, data/README.md).

vLLM sizes its KV cache once, at start-up (vllm/v1/worker/gpu_worker.py determine_available_memory):

    kv budget = CUDA total x gpu_memory_utilization
                - weights - activation peak - non-torch memory - CUDA graphs (from v0.21)

and cuts it into pages of `BLOCK_SIZE` tokens per layer (vllm/v1/kv_cache_interface.py). Each
overhead is modelled from the settings that drive it; the constants below were fitted once against
the "GPU KV cache size: N tokens" lines in `data/calibration_kv.yaml` (tests/test_calibration.py
prints predicted vs reported for every point).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum

from llmfleet.components import pins
from llmfleet.components.sizing.types import KvCacheDtype, ModelArchitecture, Quantization

GIB = 1024**3
BLOCK_SIZE = 16
"""Tokens per KV-cache page (vLLM's default --block-size on CUDA)."""

DEFAULT_VLLM_VERSION = pins.engine("vllm")
"""The vLLM image the plan pins when the stack does not (overrides.engine_version)."""

DEFAULT_LLAMA_CPP_VERSION = pins.engine("llama.cpp")
"""The llama.cpp server build the plan pins for GGUF models."""

# Bits per weight on the linear layers; embeddings and lm_head keep 16 bits in vLLM's formats.
# GGUF figures are whole-file averages measured by llama.cpp (tools/quantize/README.md).
LINEAR_BITS: dict[Quantization, float] = {
    Quantization.BF16: 16,
    Quantization.FP16: 16,
    Quantization.FP8: 8,
    Quantization.INT8: 8,
    Quantization.AWQ: 4.16,  # int4 + a 16-bit scale and zero per group of 128 (derived, unverified)
    Quantization.GPTQ: 4.16,
    Quantization.Q4_K_M: 4.89,
    Quantization.Q5_K_M: 5.70,
    Quantization.Q8_0: 8.50,
}

# Activation peak of vLLM's profiling run (see activation_peak_bytes).
MLP_ACTIVATION_COPIES = 3.0
"""bf16 copies of the MLP intermediate alive at the forward peak (gate_up output and the activated half)."""
HIDDEN_ACTIVATION_COPIES = 6.0
"""bf16 copies of the hidden state alive at the forward peak (residual, norm output, attention in/out)."""


class Sampler(StrEnum):
    """The sampler that ends vLLM's profiling pass, by what it keeps per logit at its peak."""

    V0 = "v0"
    """V0 engine (before v0.8): fp32 logits and fp32 probabilities. An A10 log of v0.7 prints an activation
    peak of 0.22 GiB for 256 rows of Llama-3.1's 128,256 logits (7.2 bytes each; calibration_kv.yaml)."""
    FLASHINFER = "flashinfer"
    """V1 with FlashInfer's top-k/top-p kernel (vllm PR #11394; log: "Using FlashInfer for top-p & top-k
    sampling"): bf16 logits, an fp32 copy, fp32 probabilities, no sort."""
    PYTORCH = "pytorch"
    """V1's PyTorch-native top-k/top-p, which sorts the fp32 logits (values, int64 indices, probabilities,
    cumulative sums); log: "Falling back to the PyTorch-native implementation of top-p & top-k sampling"."""

    @property
    def bytes_per_logit(self) -> float:
        return SAMPLER_BYTES_PER_LOGIT[self]


SAMPLER_BYTES_PER_LOGIT = {Sampler.V0: 8.0, Sampler.FLASHINFER: 12.0, Sampler.PYTORCH: 39.0}
"""FLASHINFER: the v0.10.1.1 A100 logs leave 0.5 GiB for activation and non-torch memory together at 256
rows x 152,064 logits. PYTORCH: fitted on the v0.11.0 H100 logs (4.76-5.64 GiB at 1024 rows x 128-152K
logits) and matching a v0.10.1.1 A100 log that fell back to it (1.54 GiB at 256 x 152,064)."""

PYTORCH_SAMPLER_RELEASES = ((0, 11, 0), (0, 19, 0))
"""[first, end) releases whose default sampler is the PyTorch one: FlashInfer's sampler was turned off by
default in Oct 2025 (vllm PR #26859; the v0.11.0 logs already show the sorting cost) and back on by PR
#40376, merged before May 2026 (PR #42472 of 2026-05-13 describes it as on). The end release is estimated
from those dates, not read from a changelog. Outside it, FlashInfer is the default where it is installed."""


NON_TORCH_GIB_SINGLE_GPU = 0.15
"""cuBLAS workspaces and allocator slack outside PyTorch on one GPU (v0.11 H100 logs: 0.13-0.14 GiB;
the reference's 0.25 is the rounder figure of older logs)."""
NON_TORCH_GIB_MULTI_GPU = 0.55
"""Adds NCCL and custom all-reduce buffers when the replica spans GPUs: 0.54-0.55 GiB in the v0.11 H100
TP 2 logs. The reference quotes ~2 GiB at TP >= 2; no calibration log shows that much (an A100 TP 2 run
of v0.10 leaves at most 0.2 GiB for it), so the measured figure is used."""

CUDA_GRAPH_GIB_BASE = 0.4
CUDA_GRAPH_GIB_PER_LAYER = 0.01
"""CUDA graph pool: a fixed part plus a part per captured layer. The calibration logs capture 0.50-1.00 GiB
(Qwen2-7B, 28 layers: 0.68 modelled; Qwen3-Coder-30B, 48 layers: "~1 GiB", 0.88 modelled); the reference
quotes 0.6-1.8 GiB. Only subtracted from the KV budget from v0.21."""


def parse_version(version: str) -> tuple[int, int, int]:
    """`v0.10.1.1` / `0.6.3.post1` -> (0, 10, 1); unknown shapes are treated as the newest."""
    found = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", version)
    if not found:
        return (99, 0, 0)
    major, minor, patch = found.groups()
    return (int(major), int(minor), int(patch or 0))


def default_sampler(version: str) -> Sampler:
    """The sampler a release uses unless FlashInfer is missing from the image."""
    release = parse_version(version)
    if release < (0, 8, 0):
        return Sampler.V0
    first, end = PYTORCH_SAMPLER_RELEASES
    return Sampler.PYTORCH if first <= release < end else Sampler.FLASHINFER


@dataclass(frozen=True)
class VllmDefaults:
    """What one vLLM release does by default, as far as memory is concerned."""

    gpu_memory_utilization: float
    subtracts_cuda_graphs: bool
    max_num_batched_tokens: int
    max_num_seqs: int
    sampler: Sampler


def vllm_defaults(version: str, gpu_total_gib: float, gpu_id: str, max_model_len: int) -> VllmDefaults:
    """vLLM's defaults for a version and GPU (vllm/engine/arg_utils.py, vllm/config/cache.py).

    From v0.8 (V1 engine, chunked prefill always on) the OpenAI server batches 8192 tokens and 1024
    sequences on GPUs of 70 GiB or more except A100, otherwise 2048 tokens and 256 sequences. Before
    that, without chunked prefill, a step had to hold a whole prompt: max(max_model_len, 2048).
    """
    release = parse_version(version)
    big_gpu = gpu_total_gib >= 70 and not gpu_id.upper().startswith("A100")
    if release >= (0, 8, 0):
        batched, seqs = (8192, 1024) if big_gpu else (2048, 256)
    else:
        batched, seqs = max(max_model_len, 2048), 256
    return VllmDefaults(
        gpu_memory_utilization=0.92 if release >= (0, 11, 0) else 0.90,
        subtracts_cuda_graphs=release >= (0, 21, 0),
        max_num_batched_tokens=batched,
        max_num_seqs=seqs,
        sampler=default_sampler(version),
    )


def embedding_params(arch: ModelArchitecture) -> float:
    """Parameters in the token embedding and, unless tied, the lm_head."""
    matrices = 1 if arch.tied_embeddings else 2
    return float(matrices * arch.vocab_size * arch.hidden_size)


def weight_bytes(arch: ModelArchitecture, quantization: Quantization) -> float:
    """Bytes of all weights. GGUF bits are whole-file averages; vLLM formats keep embeddings 16-bit."""
    total = arch.params_b * 1e9
    bits = LINEAR_BITS[quantization]
    if quantization.is_gguf:
        return total * bits / 8
    embeddings = min(embedding_params(arch), total)
    return (total - embeddings) * bits / 8 + embeddings * 2


def weight_bytes_per_gpu(arch: ModelArchitecture, quantization: Quantization, tp: int, pp: int = 1) -> float:
    """The busiest GPU's share: layers split over PP stages, everything split over TP ranks.

    With PP the first stage holds the embedding and the last the lm_head, so a stage carries its
    layers plus one embedding matrix.
    """
    total = weight_bytes(arch, quantization)
    if pp == 1:
        return total / tp
    one_matrix = arch.vocab_size * arch.hidden_size * (2 if not quantization.is_gguf else LINEAR_BITS[quantization] / 8)
    layers_part = total - one_matrix * (1 if arch.tied_embeddings else 2)
    return (layers_part * math.ceil(arch.layers / pp) / arch.layers + one_matrix) / tp


def kv_heads_per_gpu(arch: ModelArchitecture, tp: int) -> int:
    """KV heads each TP rank caches: split when kv_heads >= TP, else replicated (one per rank)."""
    return max(1, arch.kv_heads // tp)


def kv_bytes_per_token_per_gpu(arch: ModelArchitecture, kv_dtype: KvCacheDtype, tp: int, pp: int = 1) -> int:
    layers = math.ceil(arch.layers / pp)
    return 2 * layers * kv_heads_per_gpu(arch, tp) * arch.head_dim * kv_dtype.bytes_per_value


def kv_bytes_per_token(arch: ModelArchitecture, kv_dtype: KvCacheDtype, tp: int = 1, pp: int = 1) -> int:
    """KV-cache bytes of one token across the replica's GPUs (replicated KV heads counted per copy)."""
    return 2 * arch.layers * kv_heads_per_gpu(arch, tp) * tp * arch.head_dim * kv_dtype.bytes_per_value


def mlp_intermediate_size(arch: ModelArchitecture) -> float:
    """The gated MLP's width per token, derived from the parameter count (no config field needed).

    Per layer, attention holds hidden x (q + 2 kv + o) head projections and a gated MLP holds
    3 x hidden x intermediate; for MoE the active parameters give the routed experts' total width.
    """
    per_layer = (arch.active_params * 1e9 - min(embedding_params(arch), arch.active_params * 1e9)) / arch.layers
    attention = arch.hidden_size * arch.head_dim * (2 * arch.attention_heads + 2 * arch.kv_heads)
    return max(per_layer - attention, 0.0) / (3 * arch.hidden_size)


def activation_peak_bytes(
    arch: ModelArchitecture,
    max_num_batched_tokens: int,
    max_num_seqs: int,
    tp: int,
    sampler: Sampler = Sampler.FLASHINFER,
) -> float:
    """Peak of vLLM's profiling run: a forward pass of max_num_batched_tokens, then the sampler.

    The two run one after the other, so the peak is the larger of them, not their sum. In the forward
    pass the MLP intermediate is sharded over TP ranks and the hidden state is not. The sampler sees one
    row of logits per request (up to max_num_seqs, at most one per token), gathered to the full vocabulary
    on every rank; what it keeps per logit depends on the sampler.
    """
    tokens = max_num_batched_tokens
    forward = (
        tokens
        * 2
        * (MLP_ACTIVATION_COPIES * mlp_intermediate_size(arch) / tp + HIDDEN_ACTIVATION_COPIES * arch.hidden_size)
    )
    sampling = min(max_num_seqs, tokens) * arch.vocab_size * sampler.bytes_per_logit
    return max(forward, sampling)


def non_torch_bytes(gpus_per_replica: int) -> float:
    return (NON_TORCH_GIB_SINGLE_GPU if gpus_per_replica == 1 else NON_TORCH_GIB_MULTI_GPU) * GIB


def cuda_graph_bytes(arch: ModelArchitecture, pp: int = 1) -> float:
    return (CUDA_GRAPH_GIB_BASE + CUDA_GRAPH_GIB_PER_LAYER * math.ceil(arch.layers / pp)) * GIB


LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The values vLLM accepts for --max-lora-rank (vllm/config/lora.py, MaxLoRARanks)."""


def lora_rank_slot(rank: int) -> int:
    """The --max-lora-rank that holds an adapter of `rank`: the smallest allowed value not below it."""
    return next(r for r in LORA_RANKS if r >= rank)


def lora_bytes_per_gpu(arch: ModelArchitecture, max_loras: int, max_lora_rank: int, tp: int, pp: int = 1) -> float:
    """GPU memory vLLM reserves for LoRA weights: `max_loras` slots of rank `max_lora_rank` on every linear layer.

    Each slot of a layer holds A (rank x in) and B (out x rank) in the model dtype (2 bytes). With TP, vLLM shards
    one of the two: B of the column-parallel projections (q, k, v, gate, up) and A of the row-parallel ones
    (o, down), keeping the other whole on every rank. Derived from the shapes, not calibrated on a log.
    """
    if max_loras == 0:
        return 0.0
    h, q, kv = arch.hidden_size, arch.attention_heads * arch.head_dim, arch.kv_heads * arch.head_dim
    inter = mlp_intermediate_size(arch)
    column = (h + q / tp) + 2 * (h + kv / tp) + 2 * (h + inter / tp)  # q, k, v, gate, up: in x rank + rank x out
    row = (q / tp + h) + (inter / tp + h)  # o, down
    layers = math.ceil(arch.layers / pp)
    return 2.0 * max_loras * max_lora_rank * layers * (column + row)


@dataclass(frozen=True)
class ReplicaMemory:
    """One GPU of a replica, in bytes, and the KV-cache tokens vLLM will report."""

    gpu_total: float
    budget: float
    weights: float
    activation: float
    non_torch: float
    cuda_graphs: float
    kv_cache: float
    kv_bytes_per_token_per_gpu: int
    kv_tokens: int
    lora: float = 0.0


@dataclass(frozen=True)
class EngineSettings:
    gpu_memory_utilization: float
    max_num_batched_tokens: int
    max_num_seqs: int
    subtracts_cuda_graphs: bool
    enforce_eager: bool = False
    sampler: Sampler = Sampler.FLASHINFER
    block_size: int = BLOCK_SIZE
    max_loras: int = 0
    """--max-loras (0: LoRA off)."""
    max_lora_rank: int = 0


def replica_memory(
    arch: ModelArchitecture,
    quantization: Quantization,
    kv_dtype: KvCacheDtype,
    gpu_total_gib: float,
    tp: int,
    pp: int,
    settings: EngineSettings,
) -> ReplicaMemory:
    """vLLM's start-up arithmetic for one GPU of a TP x PP replica; kv_tokens 0 when nothing is left."""
    total = gpu_total_gib * GIB
    budget = total * settings.gpu_memory_utilization
    weights = weight_bytes_per_gpu(arch, quantization, tp, pp)
    activation = activation_peak_bytes(
        arch, settings.max_num_batched_tokens, settings.max_num_seqs, tp, settings.sampler
    )
    non_torch = non_torch_bytes(tp * pp)
    graphs = 0.0 if settings.enforce_eager else cuda_graph_bytes(arch, pp)
    subtracted_graphs = graphs if settings.subtracts_cuda_graphs else 0.0
    lora = lora_bytes_per_gpu(arch, settings.max_loras, settings.max_lora_rank, tp, pp)
    kv_cache = max(0.0, budget - weights - lora - activation - non_torch - subtracted_graphs)
    per_token = kv_bytes_per_token_per_gpu(arch, kv_dtype, tp, pp)
    page = per_token * settings.block_size  # one block of every layer this GPU holds
    kv_tokens = int(kv_cache // page) * settings.block_size
    return ReplicaMemory(
        gpu_total=total,
        budget=budget,
        weights=weights,
        activation=activation,
        non_torch=non_torch,
        cuda_graphs=subtracted_graphs,
        kv_cache=kv_cache,
        kv_bytes_per_token_per_gpu=per_token,
        kv_tokens=kv_tokens,
        lora=lora,
    )
