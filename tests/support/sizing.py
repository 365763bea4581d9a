"""The catalog and the planner requests shared by the sizing tests and the deployed-mix tests."""

from __future__ import annotations

from typing import Any

from llmfleet.components.sizing.calibration import catalog_eta
from llmfleet.components.sizing.catalog import load_catalog
from llmfleet.components.sizing.types import (
    ConcurrencyLoad,
    KvCacheDtype,
    ModelRequest,
    Overrides,
    Quantization,
    RegionRequest,
    TargetLoad,
)

CATALOG = load_catalog()


ETA = catalog_eta(CATALOG)


def request(
    model_id: str = "llama-3.1-8b",
    quantization: Quantization = Quantization.BF16,
    max_model_len: int = 8192,
    load: TargetLoad | None = None,
    kv: KvCacheDtype = KvCacheDtype.AUTO,
    *,
    mixed_gpus: bool = False,
    **pins: Any,
) -> ModelRequest:
    entry = CATALOG.models[model_id]
    return ModelRequest(
        name="m",
        model_id=model_id,
        hf_repo=entry.hf_repo,
        architecture=entry.architecture,
        quantization=quantization,
        kv_cache_dtype=kv,
        max_model_len=max_model_len,
        load=load or ConcurrencyLoad(concurrent_sequences=8),
        mixed_gpus=mixed_gpus,
        overrides=Overrides(**pins),
    )


def mix_request(model_id: str, quantization: Quantization, sequences: int, **pins: str) -> ModelRequest:
    """A request that lets the planner split the load over two GPU types."""
    load = ConcurrencyLoad(concurrent_sequences=sequences)
    return request(model_id, quantization, load=load, mixed_gpus=True, **pins)


US_EAST_1 = RegionRequest(cloud="aws", region="us-east-1")
