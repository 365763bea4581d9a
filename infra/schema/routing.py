"""`models[].routing` — prefix- and load-aware routing through an InferencePool and its endpoint picker.

On by default for vLLM models, off for llama.cpp (GGUF) ones, whose server exports none of the
metrics the picker reads. A model with the hosted fallback (`gateway.fallback.models`) keeps its
Service route by default: an AIGatewayRoute rule holds an InferencePool alone (its CRD's CEL rules),
so a pool and the fallback's priority-1 backend cannot share the model's rule; asking for both is an
error naming the fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

from pydantic import Field, model_validator

from llmfleet.components.sizing.types import Quantization
from llmfleet.infra.schema.base import Section


class ScorersSpec(Section):
    """Relative weights of the endpoint picker's scorers (the upstream chart's defaults; 0 drops one)."""

    prefix_cache: int = Field(default=3, ge=0, le=100, description="Prefix-cache affinity.")
    queue: int = Field(default=2, ge=0, le=100, description="Fewer waiting requests.")
    kv_cache_utilization: int = Field(default=2, ge=0, le=100, description="More free KV cache.")

    @model_validator(mode="after")
    def _not_all_zero(self) -> Self:
        if not (self.prefix_cache or self.queue or self.kv_cache_utilization):
            raise ValueError("at least one scorer weight must be above 0")
        return self


class RoutingSpec(Section):
    """How requests for one model are spread over its replicas."""

    prefix_aware: bool | None = Field(
        default=None,
        description="Route through an InferencePool and the endpoint picker. Default: on for vLLM models "
        "without a hosted fallback, off otherwise.",
    )
    regions: list[str] | None = Field(
        default=None, description="Region keys (<cloud>-<region>) where it is on; default: every region."
    )
    scorers: ScorersSpec = Field(default_factory=ScorersSpec, description="Weights of the endpoint picker's scorers.")
    picker_replicas: int = Field(default=1, ge=1, le=5, description="Endpoint picker replicas (active-passive).")
    chart_values: dict[str, Any] = Field(
        default_factory=dict[str, Any], description="Deep-merged into the inferencepool chart values."
    )

    def check(self, where: str, quantization: Quantization, has_fallback: bool, region_keys: Sequence[str]) -> None:
        """Cross-field checks (stack order of fields in the message: the one to change first)."""
        if self.prefix_aware and quantization.is_gguf:
            raise ValueError(
                f"{where}.routing.prefix_aware: llama.cpp (GGUF {quantization.value}) exports none of the metrics "
                "the endpoint picker reads; remove prefix_aware or serve a vLLM quantization"
            )
        if self.prefix_aware and has_fallback:
            raise ValueError(
                f"{where}.routing.prefix_aware: this model is in gateway.fallback.models (or "
                "gateway.priority.quality_models), and an AIGatewayRoute rule holds an InferencePool alone (no "
                "hosted backend beside it); remove prefix_aware (the model keeps its Service route and the hosted "
                "API) or drop it from those lists"
            )
        unknown = sorted(set(self.regions or []) - set(region_keys))
        if unknown:
            raise ValueError(f"{where}.routing.regions: unknown region keys {unknown}; defined: {list(region_keys)}")

    def enabled(self, quantization: Quantization, has_fallback: bool, region_key: str) -> bool:
        on = self.prefix_aware if self.prefix_aware is not None else not (quantization.is_gguf or has_fallback)
        return on and (self.regions is None or region_key in self.regions)
