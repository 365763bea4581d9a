"""Known answers from the sizing facts (data/README.md): KV bytes, weight sizes, valid TP, config.json estimates."""

import json
from pathlib import Path

import pytest

from llmfleet.components.sizing import memory as mem
from llmfleet.components.sizing.catalog import load_catalog
from llmfleet.components.sizing.hf_config import HfConfigError, architecture_from_config, read_hf_config
from llmfleet.components.sizing.parallelism import tensor_parallel_is_valid, valid_tensor_parallel
from llmfleet.components.sizing.types import KvCacheDtype, ModelArchitecture, Quantization

KIB = 1024


def arch(model_id: str) -> ModelArchitecture:
    return load_catalog().models[model_id].architecture


@pytest.mark.parametrize(
    ("model_id", "kib"),
    [
        ("llama-3.2-1b", 32),
        ("llama-3.2-3b", 112),
        ("llama-3.1-8b", 128),
        ("llama-3.1-70b", 320),
        ("llama-3.1-405b", 504),
        ("qwen2.5-7b", 56),
        ("qwen2.5-14b", 192),
        ("qwen3-32b", 256),
        ("qwen3-30b-a3b", 96),
        ("phi-4", 200),
    ],
)
def test_kv_bytes_per_token_matches_reference_table(model_id: str, kib: int) -> None:
    assert mem.kv_bytes_per_token(arch(model_id), KvCacheDtype.AUTO) == kib * KIB


def test_fp8_kv_cache_halves_the_bytes() -> None:
    assert mem.kv_bytes_per_token(arch("llama-3.1-70b"), KvCacheDtype.FP8) == 160 * KIB


def test_kv_heads_replicate_when_tp_exceeds_them() -> None:
    qwen = arch("qwen3-30b-a3b")  # 4 KV heads
    assert mem.kv_bytes_per_token_per_gpu(qwen, KvCacheDtype.AUTO, tp=2) == 48 * KIB
    assert mem.kv_bytes_per_token_per_gpu(qwen, KvCacheDtype.AUTO, tp=8) == 24 * KIB  # one head per GPU, not 0.5
    assert mem.kv_bytes_per_token(qwen, KvCacheDtype.AUTO, tp=8) == 8 * 24 * KIB


def test_llama_70b_q4_k_m_weighs_about_43_gb() -> None:
    assert mem.weight_bytes(arch("llama-3.1-70b"), Quantization.Q4_K_M) / 1e9 == pytest.approx(43.1, rel=0.02)
    assert mem.weight_bytes(arch("llama-3.1-8b"), Quantization.Q4_K_M) / 1e9 == pytest.approx(4.9, rel=0.02)


def test_vllm_formats_keep_embeddings_16_bit() -> None:
    llama = arch("llama-3.1-70b")
    bf16 = mem.weight_bytes(llama, Quantization.BF16)
    assert bf16 / 1e9 == pytest.approx(141.1, rel=0.01)
    fp8 = mem.weight_bytes(llama, Quantization.FP8)
    assert bf16 / 2 < fp8 < bf16 / 2 * 1.05  # ~2.1 B embedding + lm_head parameters stay at 2 bytes
    awq = mem.weight_bytes(llama, Quantization.AWQ)
    assert 36 * mem.GIB < awq < 38 * mem.GIB  # vLLM logs ~37 GiB for Llama-3.1-70B AWQ


def test_weights_split_over_tp_and_pp() -> None:
    llama = arch("llama-3.1-405b")
    total = mem.weight_bytes(llama, Quantization.BF16)
    assert mem.weight_bytes_per_gpu(llama, Quantization.BF16, tp=8) == pytest.approx(total / 8)
    two_stages = mem.weight_bytes_per_gpu(llama, Quantization.BF16, tp=8, pp=2)
    assert two_stages == pytest.approx(total / 16)  # 63 layers and one of the two vocabulary matrices each
    three_stages = mem.weight_bytes_per_gpu(llama, Quantization.BF16, tp=8, pp=3)
    assert total / 24 < three_stages < total / 24 * 1.05


def test_phi4_allows_tp_1_or_2_only() -> None:
    assert valid_tensor_parallel(arch("phi-4"), 8) == [1, 2]


def test_qwen25_7b_allows_tp_up_to_4() -> None:
    assert valid_tensor_parallel(arch("qwen2.5-7b"), 8) == [1, 2, 4]
    assert not tensor_parallel_is_valid(arch("qwen2.5-7b"), 8)


def test_llama_allows_powers_of_two() -> None:
    assert valid_tensor_parallel(arch("llama-3.1-70b"), 8) == [1, 2, 4, 8]


def test_kv_tokens_follow_vllms_page_arithmetic() -> None:
    llama = arch("llama-3.1-8b")
    settings = mem.EngineSettings(0.9, 2048, 256, subtracts_cuda_graphs=False)
    sized = mem.replica_memory(llama, Quantization.BF16, KvCacheDtype.AUTO, 79.18, 1, 1, settings)
    assert sized.kv_tokens % mem.BLOCK_SIZE == 0
    assert sized.kv_tokens * 128 * KIB <= sized.kv_cache < (sized.kv_tokens + mem.BLOCK_SIZE) * 128 * KIB
    parts = sized.weights + sized.activation + sized.non_torch + sized.kv_cache
    assert parts == pytest.approx(sized.budget)


def test_cuda_graphs_count_only_from_v0_21() -> None:
    old = mem.vllm_defaults("v0.10.1", 79.18, "H100", 8192)
    new = mem.vllm_defaults("v0.21.0", 79.18, "H100", 8192)
    assert (old.gpu_memory_utilization, old.subtracts_cuda_graphs) == (0.90, False)
    assert (new.gpu_memory_utilization, new.subtracts_cuda_graphs) == (0.92, True)
    assert mem.vllm_defaults("v0.9.2", 22.35, "L4", 8192).max_num_batched_tokens == 2048
    assert mem.vllm_defaults("v0.9.2", 79.15, "A100-80GB", 8192).max_num_batched_tokens == 2048
    assert mem.vllm_defaults("v0.9.2", 79.18, "H100", 8192).max_num_batched_tokens == 8192


def test_activation_peak_grows_with_batched_tokens_and_vocabulary() -> None:
    llama = arch("llama-3.1-8b")
    small = mem.activation_peak_bytes(llama, 2048, 256, 1)
    large = mem.activation_peak_bytes(llama, 8192, 1024, 1)
    assert small < large
    assert 1.0 * mem.GIB < large < 4.5 * mem.GIB  # the reference's 1.2-4 GiB range for H100 logs
    wide_vocab = llama.model_copy(update={"vocab_size": 256_000})
    assert mem.activation_peak_bytes(wide_vocab, 8192, 1024, 1) > large


LLAMA_8B_CONFIG = {
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 14336,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "tie_word_embeddings": False,
}


def test_hf_config_estimates_dense_parameters() -> None:
    estimated = architecture_from_config(LLAMA_8B_CONFIG)
    assert estimated.params_b == pytest.approx(8.03, rel=0.005)
    assert (estimated.head_dim, estimated.kv_heads, estimated.active_params_b) == (128, 8, None)


def test_hf_config_estimates_moe_total_and_active() -> None:
    mixtral = {**LLAMA_8B_CONFIG, "vocab_size": 32000, "num_local_experts": 8, "num_experts_per_tok": 2}
    estimated = architecture_from_config(mixtral)
    assert estimated.params_b == pytest.approx(46.70, rel=0.005)
    assert estimated.active_params_b == pytest.approx(12.88, rel=0.005)
    qwen3_moe = {
        "hidden_size": 2048,
        "num_hidden_layers": 48,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "head_dim": 128,
        "moe_intermediate_size": 768,
        "num_experts": 128,
        "num_experts_per_tok": 8,
        "vocab_size": 151936,
        "max_position_embeddings": 40960,
    }
    estimated = architecture_from_config(qwen3_moe)
    assert (estimated.params_b, estimated.active_params_b) == (
        pytest.approx(30.53, rel=0.005),
        pytest.approx(3.35, rel=0.01),
    )


def test_hf_config_file_errors_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(HfConfigError, match="no such file"):
        read_hf_config(tmp_path / "missing.json")
    broken = tmp_path / "config.json"
    broken.write_text("{not json")
    with pytest.raises(HfConfigError, match="not valid JSON"):
        read_hf_config(broken)
    broken.write_text(json.dumps({"hidden_size": 4096}))
    with pytest.raises(HfConfigError, match="num_hidden_layers"):
        read_hf_config(broken)
    broken.write_text(json.dumps({**LLAMA_8B_CONFIG, "num_key_value_heads": 5}))
    with pytest.raises(HfConfigError, match="multiple of kv_heads"):
        read_hf_config(broken)


def test_sampler_by_release() -> None:
    """The profiling run's sampler: V0 before v0.8, FlashInfer by default except the PyTorch-sort releases."""
    assert mem.default_sampler("0.7.3") is mem.Sampler.V0
    assert mem.default_sampler("0.10.1.1") is mem.Sampler.FLASHINFER
    assert mem.default_sampler("v0.11.0") is mem.Sampler.PYTORCH
    assert mem.default_sampler("0.15.1") is mem.Sampler.PYTORCH
    assert mem.default_sampler(mem.DEFAULT_VLLM_VERSION) is mem.Sampler.FLASHINFER
    assert mem.vllm_defaults("0.15.1", 39.38, "A100-40GB", 8192).sampler is mem.Sampler.PYTORCH


def test_activation_peak_is_the_larger_pass_not_their_sum() -> None:
    """The forward pass and the sampler run one after the other: the peak is whichever is larger."""
    llama = arch("llama-3.1-8b")
    sampler_only = 1024 * llama.vocab_size * mem.Sampler.PYTORCH.bytes_per_logit
    assert mem.activation_peak_bytes(llama, 8192, 1024, 1, mem.Sampler.PYTORCH) == pytest.approx(sampler_only)
    forward_only = mem.activation_peak_bytes(llama, 65536, 1, 1, mem.Sampler.PYTORCH)
    assert forward_only > 1 * llama.vocab_size * mem.Sampler.PYTORCH.bytes_per_logit
    assert forward_only == pytest.approx(4 * mem.activation_peak_bytes(llama, 16384, 1, 1, mem.Sampler.PYTORCH))
