"""Which tensor-parallel degrees a model's attention heads allow (sizing facts §3, data/README.md).

vLLM shards query heads evenly across TP ranks, and KV heads either evenly (kv_heads >= TP) or by
replication (TP a multiple of kv_heads). Source: vllm config/model.py verify_with_parallel_config,
models/llama.py.
"""

from llmfleet.components.sizing.types import ModelArchitecture


def tensor_parallel_is_valid(arch: ModelArchitecture, tp: int) -> bool:
    if tp < 1 or arch.attention_heads % tp:
        return False
    if arch.kv_heads >= tp:
        return arch.kv_heads % tp == 0
    return tp % arch.kv_heads == 0


def valid_tensor_parallel(arch: ModelArchitecture, max_tp: int) -> list[int]:
    """Every valid power-of-two TP degree up to max_tp (the GPUs in one node), ascending.

    Nodes carry 1, 2, 4 or 8 GPUs, so other degrees (Phi-4's 40/10 heads would also allow 5) strand
    GPUs; the reference's valid-TP column counts powers of two only.
    """
    degrees = [2**k for k in range(max_tp.bit_length()) if 2**k <= max_tp]
    return [tp for tp in degrees if tensor_parallel_is_valid(arch, tp)]


def why_tensor_parallel_invalid(arch: ModelArchitecture, tp: int) -> str:
    """The rule a TP degree breaks (for rejections of a pinned TP)."""
    if arch.attention_heads % tp:
        return f"{arch.attention_heads} attention heads are not divisible by TP {tp}"
    return f"{arch.kv_heads} KV heads and TP {tp}: one must divide the other"
