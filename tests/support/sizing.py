"""The catalog and small planner requests shared by the sizing tests and the deployed-mix tests."""

from __future__ import annotations

from llmfleet.components.sizing.calibration import catalog_eta
from llmfleet.components.sizing.catalog import load_catalog
from llmfleet.components.sizing.types import ConcurrencyLoad, ModelRequest, Overrides, Quantization, RegionRequest

CATALOG = load_catalog()


ETA = catalog_eta(CATALOG)


def request(model_id: str, quantization: Quantization, sequences: int, **pins: str) -> ModelRequest:
    entry = CATALOG.models[model_id]
    return ModelRequest(
        name="m",
        model_id=model_id,
        hf_repo=entry.hf_repo,
        architecture=entry.architecture,
        quantization=quantization,
        max_model_len=8192,
        load=ConcurrencyLoad(concurrent_sequences=sequences),
        mixed_gpus=True,
        overrides=Overrides(**pins),
    )


US_EAST_1 = RegionRequest(cloud="aws", region="us-east-1")
