"""`models:` — what to serve, how it is quantized, and the load it must carry."""

from typing import Annotated, Self

from pydantic import Field, field_validator, model_validator

from llmfleet.components.sizing.types import (
    KvCacheDtype,
    LoraAdapter,
    ModelArchitecture,
    Overrides,
    Quantization,
    TargetLoad,
)
from llmfleet.infra.schema.base import Section
from llmfleet.infra.schema.routing import RoutingSpec

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$"
NO_SCALE_TO_ZERO = (
    "scale to zero is not supported: at zero replicas no pod exports the queue metric KEDA scales on, "
    "so the model would never wake up"
)


class AutoscalingSpec(Section):
    """Bounds for KEDA around the planned replica count."""

    min_replicas: int | None = Field(default=None, ge=0, description="Default: the planned replicas.")
    max_replicas: int | None = Field(default=None, gt=0, description="Default: twice the planned replicas.")
    scale_to_zero: bool = Field(default=False, description="Not supported yet: must stay false.")

    # KEDA scales on the engine's queue gauge, which no pod exports at zero replicas: a model scaled to
    # zero would never wake (components/inference/autoscaling.py). Refused until a gateway-side trigger exists.
    @field_validator("scale_to_zero")
    @classmethod
    def _no_scale_to_zero(cls, value: bool) -> bool:
        if value:
            raise ValueError(NO_SCALE_TO_ZERO + "; remove scale_to_zero (or set it to false)")
        return value

    @field_validator("min_replicas")
    @classmethod
    def _at_least_one(cls, value: int | None) -> int | None:
        if value == 0:
            raise ValueError(NO_SCALE_TO_ZERO + "; set min_replicas to 1 or more")
        return value

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.min_replicas is not None and self.max_replicas is not None and self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) > max_replicas ({self.max_replicas})")
        return self


class ModelSpec(Section):
    """One served model. Give exactly one of `model` (catalog id), `architecture`, `hf_config`."""

    name: str = Field(pattern=DNS_LABEL, description="Served model name clients send as `model`.")
    model: str | None = Field(default=None, description="Catalog id, e.g. llama-3.1-8b.")
    architecture: ModelArchitecture | None = Field(default=None, description="A custom or fine-tuned model's shape.")
    hf_config: str | None = Field(default=None, description="Path to a HuggingFace config.json to read the shape from.")
    hf_repo: str | None = Field(default=None, description="Weights repository (default: the catalog's).")
    quantization: Quantization = Field(
        default=Quantization.BF16,
        description="Weights format: bf16, fp16, fp8 (quantized by vLLM on load, or a pre-quantized hf_repo), int8, "
        "awq, gptq (vLLM; these need hf_repo), or GGUF q4_k_m, q5_k_m, q8_0 (llama.cpp's server).",
    )
    kv_cache_dtype: KvCacheDtype = Field(
        default=KvCacheDtype.AUTO, description="vLLM --kv-cache-dtype: auto (the model's dtype) or an fp8 variant."
    )
    max_model_len: int | None = Field(default=None, gt=0, description="Default: min(model context, 8192).")
    load: Annotated[
        TargetLoad,
        Field(
            union_mode="left_to_right",
            description="The target per region: concurrent_sequences (closed loop) or output_tokens_per_s (open "
            "loop), with the request lengths.",
        ),
    ]
    overrides: Overrides = Field(
        default_factory=Overrides,
        description="Pins, each optional; the planner checks a pinned choice and says why it cannot work instead of "
        "choosing another.",
    )
    autoscaling: AutoscalingSpec = Field(
        default_factory=AutoscalingSpec, description="KEDA's replica bounds around the planned replicas."
    )
    adapters: list[LoraAdapter] = Field(
        default_factory=list[LoraAdapter],
        description="LoRA fine-tunes served by this model's replicas, each under its own name (vLLM only).",
    )
    mixed_gpus: bool = Field(
        default=False,
        description="Also search a split of the load over two GPU types; the plan's `mix` says what it would save "
        "(advice unless deploy_mix).",
    )
    deploy_mix: bool = Field(
        default=False,
        description="With mixed_gpus: deploy the mix when it is cheaper than the best single type (two node pools "
        "and two Deployments behind the model's route, weighted by capacity; vLLM models only).",
    )
    routing: RoutingSpec = Field(
        default_factory=RoutingSpec,
        description="Prefix- and load-aware routing through an InferencePool and its endpoint picker "
        "(docs/routing.md).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        given = [k for k in ("model", "architecture", "hf_config") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of `model` (a catalog id), `architecture` (layers, heads, ...) "
                f"or `hf_config` (a config.json path); got {given or 'none'}"
            )
        if self.deploy_mix and not self.mixed_gpus:
            raise ValueError("deploy_mix deploys the mix the planner finds: set mixed_gpus: true as well")
        if self.deploy_mix and self.quantization.is_gguf:
            raise ValueError(
                f"deploy_mix: a mix is deployed for vLLM models only ({self.quantization.value} is served by "
                "llama.cpp); remove deploy_mix or choose a vLLM quantization"
            )
        return self
