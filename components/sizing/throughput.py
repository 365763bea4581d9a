"""Decode throughput from the memory-bandwidth model (sizing facts §5, components/sizing/data/README.md).

A decode step reads every weight a token touches plus the batch's KV cache once:

    step = (weights read + batch x context x KV bytes per token) / (bandwidth x ETA)

and can be no faster than its matrix arithmetic at `DECODE_MFU`. Prompts are prefilled between
decode steps (compute bound at `PREFILL_MFU`), which lengthens every step by the prefill work that
arrives with new requests. ETA, the fraction of the bandwidth roofline real engines reach, is
fitted on the published inter-token latencies in `data/calibration_throughput.yaml`
(`fitted_eta`; tests/test_calibration.py shows the fit).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_ETA = 0.55
"""Used when the catalog holds no latency point (published points imply 0.52-0.57)."""
PREFILL_MFU = 0.4
"""Share of peak tensor FLOPS a prefill reaches (typical of vLLM on Hopper; unverified)."""
DECODE_MFU = 0.5
"""Ceiling on the arithmetic share of a large decode batch (unverified)."""


@dataclass(frozen=True)
class Device:
    """What the throughput model needs of the hardware a replica runs on."""

    bandwidth_gb_s: float
    """Memory bandwidth of one device (GPU HBM, or the host's DRAM for CPU serving)."""
    tflops: float
    """Dense tensor TFLOPS of one device at the precision the model computes in."""
    count: int
    """Devices the weights are split over (TP); PP stages run one after another."""
    stages: int = 1


@dataclass(frozen=True)
class Workload:
    weight_bytes: float
    """All weights of the model (every expert)."""
    active_fraction: float
    """Share of the weights one token reads (1 for dense models)."""
    active_params: float
    """Parameters one token multiplies (billions)."""
    kv_bytes_per_token: float
    """KV-cache bytes of one token across the replica."""
    prompt_tokens: int
    output_tokens: int
    cached_prompt_share: float = 0.0
    """Share of each prompt the prefix cache already holds: attended to in decode, not prefilled."""

    @property
    def prefill_tokens(self) -> float:
        """Prompt tokens a request actually prefills."""
        return self.prompt_tokens * (1.0 - self.cached_prompt_share)

    @property
    def decode_context(self) -> float:
        """Average tokens a decoding sequence attends to."""
        return self.prompt_tokens + self.output_tokens / 2


def weights_read(work: Workload, batch: int) -> float:
    """Bytes of weights a step reads: a MoE batch touches more experts the larger it is."""
    return work.weight_bytes * min(1.0, work.active_fraction * batch)


def decode_step_s(work: Workload, device: Device, batch: int, eta: float) -> float:
    """Seconds for one decode step of `batch` sequences (all PP stages in turn)."""
    bytes_read = weights_read(work, batch) + batch * work.decode_context * work.kv_bytes_per_token
    memory_s = bytes_read / (device.bandwidth_gb_s * 1e9 * eta * device.count * device.stages) * device.stages
    compute_s = 2 * work.active_params * 1e9 * batch / (device.tflops * 1e12 * DECODE_MFU * device.count)
    return max(memory_s, compute_s)


def prefill_s_per_token(work: Workload, device: Device) -> float:
    return 2 * work.active_params * 1e9 / (device.tflops * 1e12 * PREFILL_MFU * device.count * device.stages)


def time_per_output_token_s(work: Workload, device: Device, batch: int, eta: float) -> float:
    """TPOT at a steady batch: the decode step plus the prefill of the requests that keep it full.

    In steady state batch / output_tokens requests start per step, each prefilling the prompt tokens
    its prefix cache does not hold.
    """
    prefill = batch / work.output_tokens * work.prefill_tokens * prefill_s_per_token(work, device)
    return decode_step_s(work, device, batch, eta) + prefill


def output_tokens_per_s(work: Workload, device: Device, batch: int, eta: float) -> float:
    return batch / time_per_output_token_s(work, device, batch, eta)


def largest_batch_within(work: Workload, device: Device, eta: float, ceiling: int, tpot_s: float | None) -> int:
    """The largest batch <= ceiling whose TPOT stays within tpot_s (0 when batch 1 already misses)."""
    if tpot_s is None:
        return ceiling
    if ceiling < 1 or time_per_output_token_s(work, device, 1, eta) > tpot_s:
        return 0
    low, high = 1, ceiling  # TPOT grows with the batch: bisect for the last batch within the SLO
    while low < high:
        middle = (low + high + 1) // 2
        if time_per_output_token_s(work, device, middle, eta) <= tpot_s:
            low = middle
        else:
            high = middle - 1
    return low


@dataclass(frozen=True)
class LatencyPoint:
    """A published inter-token latency at a concurrency, with the model's prediction inputs."""

    work: Workload
    device: Device
    concurrency: int
    itl_s: float


def implied_eta(point: LatencyPoint) -> float:
    """The ETA at which the memory term alone reproduces the published latency."""
    work, device = point.work, point.device
    batch = point.concurrency
    bytes_read = weights_read(work, batch) + batch * work.decode_context * work.kv_bytes_per_token
    return bytes_read / (device.bandwidth_gb_s * 1e9 * device.count * point.itl_s)


def fitted_eta(points: Sequence[LatencyPoint]) -> float:
    """One ETA for every GPU: the median of what the published points imply."""
    if not points:
        return DEFAULT_ETA
    return statistics.median(implied_eta(p) for p in points)
