"""What the planner is asked: the model, how it is quantized and served, and the load it must carry.

These are the planner's inputs. The stack schema (`infra/schema/models.py`) is built from them, so a
field means the same thing in the stack file, in the planner and in its output.
"""

from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Quantization(StrEnum):
    """Weight format. The GGUF formats are served by llama.cpp's server, the rest by vLLM."""

    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    INT8 = "int8"
    AWQ = "awq"
    GPTQ = "gptq"
    Q4_K_M = "q4_k_m"
    Q5_K_M = "q5_k_m"
    Q8_0 = "q8_0"

    @property
    def is_gguf(self) -> bool:
        return self in (Quantization.Q4_K_M, Quantization.Q5_K_M, Quantization.Q8_0)

    @property
    def needs_prequantized_weights(self) -> bool:
        """vLLM reads AWQ, GPTQ and INT8 only from a checkpoint saved in them (made offline by AutoAWQ, GPTQ or
        llm-compressor, with calibration data): it cannot produce them from bf16 weights on load. fp8 it can,
        dynamically and without calibration (`--quantization fp8`, docs.vllm.ai/en/stable/features/quantization/
        fp8/, "Online Dynamic Quantization"); a GGUF file is quantized by its publisher."""
        return self in (Quantization.AWQ, Quantization.GPTQ, Quantization.INT8)


class KvCacheDtype(StrEnum):
    """vLLM's `--kv-cache-dtype`: `auto` keeps the model dtype (2 bytes), fp8 halves the cache."""

    AUTO = "auto"
    FP8 = "fp8"
    FP8_E4M3 = "fp8_e4m3"
    FP8_E5M2 = "fp8_e5m2"

    @property
    def bytes_per_value(self) -> int:
        return 2 if self is KvCacheDtype.AUTO else 1


class Engine(StrEnum):
    VLLM = "vllm"
    LLAMA_CPP = "llama.cpp"


class ModelArchitecture(Frozen):
    """The shape of a transformer, as its HuggingFace config.json gives it."""

    params_b: float = Field(gt=0, description="Total parameters, billions (all experts for MoE).")
    active_params_b: float | None = Field(
        None, gt=0, description="Parameters used per token, billions (MoE only; defaults to params_b)."
    )
    layers: int = Field(gt=0, description="num_hidden_layers")
    hidden_size: int = Field(gt=0, description="hidden_size")
    attention_heads: int = Field(gt=0, description="num_attention_heads")
    kv_heads: int = Field(gt=0, description="num_key_value_heads (equal to attention_heads without GQA)")
    head_dim: int = Field(gt=0, description="head_dim (hidden_size / num_attention_heads where config.json omits it)")
    max_context: int = Field(gt=0, description="max_position_embeddings")
    vocab_size: int = Field(default=32_000, gt=0, description="vocab_size")
    tied_embeddings: bool = Field(
        default=False, description="tie_word_embeddings: the output layer reuses the input embeddings (counted once)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.attention_heads % self.kv_heads:
            raise ValueError(
                f"attention_heads ({self.attention_heads}) must be a multiple of kv_heads ({self.kv_heads})"
            )
        if self.active_params_b is not None and self.active_params_b > self.params_b:
            raise ValueError("active_params_b cannot exceed params_b")
        return self

    @property
    def active_params(self) -> float:
        """Parameters read per decoded token, in billions."""
        return self.active_params_b if self.active_params_b is not None else self.params_b


class ConcurrencyLoad(Frozen):
    """Closed-loop load: this many sequences in flight at once, per region."""

    concurrent_sequences: int = Field(gt=0, description="Sequences in flight at once in the region (closed loop).")
    prompt_tokens: int = Field(default=1024, gt=0, description="Prompt tokens per request.")
    output_tokens: int = Field(default=256, gt=0, description="Output tokens per request.")
    cached_prompt_share: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Share of prompt tokens expected to be served from the prefix cache (shared system "
        "prompts, resent chat history); only the rest is prefilled. 0: none assumed.",
    )


class ThroughputLoad(Frozen):
    """Open-loop load: this many output tokens per second, per region."""

    output_tokens_per_s: float = Field(
        gt=0, description="Output tokens per second the region must generate (open loop)."
    )
    prompt_tokens: int = Field(default=1024, gt=0, description="Prompt tokens per request.")
    output_tokens: int = Field(default=256, gt=0, description="Output tokens per request.")
    cached_prompt_share: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Share of prompt tokens expected to be served from the prefix cache (shared system "
        "prompts, resent chat history); only the rest is prefilled. 0: none assumed.",
    )


TargetLoad = ConcurrencyLoad | ThroughputLoad


class Overrides(Frozen):
    """Pin any planner choice. The planner then checks the pinned value instead of choosing it."""

    gpu: str | None = Field(default=None, description="GPU catalog id, e.g. H100.")
    instance_type: str | None = Field(default=None, description="Instance or machine type, e.g. p5.48xlarge.")
    tensor_parallel: int | None = Field(
        default=None,
        gt=0,
        description="Tensor-parallel degree (GPUs per pipeline stage); must divide the attention heads.",
    )
    pipeline_parallel: int | None = Field(default=None, gt=0, description="Pipeline stages (nodes per replica).")
    replicas: int | None = Field(default=None, ge=0, description="Replicas, instead of the ones the load needs.")
    gpu_memory_utilization: float | None = Field(
        default=None, gt=0, le=1, description="vLLM --gpu-memory-utilization (default: the pinned engine version's)."
    )
    max_num_batched_tokens: int | None = Field(default=None, gt=0, description="vLLM --max-num-batched-tokens.")
    engine_version: str | None = Field(default=None, description="vLLM (or llama.cpp server) image tag.")


class LoraAdapter(Frozen):
    """A LoRA fine-tune of the model, served by the same replicas under its own name (vLLM --lora-modules)."""

    name: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", description="Name clients send as `model` (a DNS label)."
    )
    hf_repo: str = Field(min_length=1, description="HuggingFace repository (or path) of the adapter's weights.")
    rank: int = Field(gt=0, le=512, description="The adapter's LoRA rank (r in its adapter_config.json).")


class ModelRequest(Frozen):
    """One model to serve, as the planner needs it (architecture already resolved)."""

    name: str = Field(description="Served model name: what clients send as `model`.")
    model_id: str = Field(description="Catalog id, or the name of a custom architecture.")
    hf_repo: str | None = Field(default=None, description="HuggingFace repository the weights come from.")
    architecture: ModelArchitecture
    quantization: Quantization
    kv_cache_dtype: KvCacheDtype = KvCacheDtype.AUTO
    max_model_len: int = Field(gt=0)
    load: Annotated[TargetLoad, Field(union_mode="left_to_right")]
    overrides: Overrides = Field(default_factory=Overrides)
    adapters: tuple[LoraAdapter, ...] = Field(default=(), description="LoRA adapters served on the same replicas.")
    mixed_gpus: bool = Field(
        default=False, description="Also search splits of the load over two GPU types (reported in the plan's `mix`)."
    )
    deploy_mix: bool = Field(
        default=False,
        description="Deploy the mix when it is cheaper than the best single type (needs mixed_gpus; vLLM only).",
    )

    @property
    def engine(self) -> Engine:
        return Engine.LLAMA_CPP if self.quantization.is_gguf else Engine.VLLM


class RegionRequest(Frozen):
    """Where to serve: the cloud region and the GPUs it may use."""

    cloud: Literal["aws", "gcp", "local"]
    region: str
    capacity_type: Literal["on-demand", "spot"] = "on-demand"
    allowed_gpus: tuple[str, ...] | None = None
