"""The throughput model's calibration: published decode latencies from the catalog, and the ETA they imply.

The planner rates options with one bandwidth efficiency (ETA) for every GPU, fitted here on the
inter-token latencies in `data/calibration_throughput.yaml`; tests/test_calibration.py prints the fit.
"""

from __future__ import annotations

from llmfleet.components.sizing import memory as mem
from llmfleet.components.sizing.catalog import Catalog
from llmfleet.components.sizing.throughput import Device, LatencyPoint, Workload, fitted_eta
from llmfleet.components.sizing.types import KvCacheDtype

CALIBRATION_PROMPT_TOKENS = 1000
CALIBRATION_OUTPUT_TOKENS = 1000
"""Sequence shape assumed for published latency points that do not state theirs (NIM's 1000/1000 runs)."""


def latency_points(catalog: Catalog) -> list[LatencyPoint]:
    """The catalog's published inter-token latencies, as inputs to the throughput model."""
    points: list[LatencyPoint] = []
    for p in catalog.throughput_calibration:
        if p.itl_ms is None or p.concurrency is None:
            continue
        arch = catalog.models[p.model].architecture
        gpu = catalog.gpus[p.gpu]
        work = Workload(
            weight_bytes=mem.weight_bytes(arch, p.quantization),
            active_fraction=arch.active_params / arch.params_b,
            active_params=arch.active_params,
            kv_bytes_per_token=mem.kv_bytes_per_token(arch, KvCacheDtype.AUTO, p.tensor_parallel),
            prompt_tokens=p.prompt_tokens or CALIBRATION_PROMPT_TOKENS,
            output_tokens=p.output_tokens or CALIBRATION_OUTPUT_TOKENS,
        )
        device = Device(gpu.bandwidth_gb_s, gpu.bf16_tflops, p.tensor_parallel)
        points.append(LatencyPoint(work=work, device=device, concurrency=p.concurrency, itl_s=p.itl_ms / 1000))
    return points


def catalog_eta(catalog: Catalog) -> float:
    """The bandwidth efficiency fitted on the catalog's published latencies."""
    return fitted_eta(latency_points(catalog))
