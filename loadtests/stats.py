"""Exact statistics over raw RequestSamples: the numbers the SLO gate and the reports print.

Definitions (docs/loadtesting.md, as vLLM `bench serve`, AIPerf and GuideLLM compute them):

- Percentiles are exact, on the raw values, with linear interpolation between order statistics
  (numpy's default `method="linear"`); nothing is rounded or averaged across workers first.
- Latency distributions (TTFT, TPOT, ITL, E2E) are over successful requests; TPOT only where n_out > 1.
- TTFVT (time to first visible token) is to the first chunk with `content`: after TTFT when a model
  reasons (or calls tools) first, equal to it otherwise; the role-only chunk counts for neither.
- ITL here is the gap between token-bearing *chunks* (`itl_per_chunk_ms`): a chunk may carry several
  tokens, so it is not a per-token figure; TPOT is the per-token one (from usage when sent).
- Open-loop runs record when each request was due (`scheduled_at`). Latency "from due" starts there, so
  time a request spent queued in a lagging generator counts (no coordinated omission).
- Throughput is over the span of the samples (first start to last end); goodput counts the requests
  that succeeded and met every per-request latency limit, exactly at a limit included.
- An empty distribution is NaN, never 0: no data must not look like a good result.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from llmfleet.loadtests.samples import RequestSample

PERCENTILES = (50, 90, 95, 99)
NAN = float("nan")


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation like numpy's default; NaN if empty or any NaN."""
    ordered = sorted(values)
    if not ordered or any(math.isnan(v) for v in ordered):
        return NAN
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within [0, 100], got {q}")
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Distribution:
    """Exact summary of one metric's raw values (milliseconds for latencies)."""

    n: int
    mean: float
    min: float
    max: float
    p50: float
    p90: float
    p95: float
    p99: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Distribution:
        if not values:
            return cls(0, NAN, NAN, NAN, NAN, NAN, NAN, NAN)
        p50, p90, p95, p99 = (percentile(values, q) for q in PERCENTILES)
        return cls(len(values), math.fsum(values) / len(values), min(values), max(values), p50, p90, p95, p99)

    def stat(self, name: str) -> float:
        """`p95`, `mean`, `max`, ... by name (the gate's `stat` field)."""
        return float(getattr(self, name))

    def to_json(self) -> dict[str, float | int | None]:
        return {name: json_number(value) for name, value in vars(self).items()}


def json_number(value: float | int | None) -> float | int | None:
    """JSON has no NaN: an undefined figure is written as null."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


# Per-request figures, in seconds; None where undefined for that request.


def due_at(sample: RequestSample) -> float:
    """When the request was due: `scheduled_at` in open-loop runs, else when it was sent."""
    return sample.scheduled_at if sample.scheduled_at is not None else sample.started_at


def ttft_s(sample: RequestSample, *, from_due: bool = False) -> float | None:
    if sample.first_token_at is None:
        return None
    return sample.first_token_at - (due_at(sample) if from_due else sample.started_at)


def ttfvt_s(sample: RequestSample) -> float | None:
    """Time to first visible token: to the first `content` delta (None if none came, e.g. only tool calls)."""
    return None if sample.first_content_at is None else sample.first_content_at - sample.started_at


def e2e_s(sample: RequestSample, *, from_due: bool = False) -> float | None:
    if sample.last_token_at is None:
        return None
    return sample.last_token_at - (due_at(sample) if from_due else sample.started_at)


def tpot_s(sample: RequestSample) -> float | None:
    """(E2E - TTFT) / (n_out - 1), defined only when n_out > 1 (AIPerf calls this ITL)."""
    if sample.first_token_at is None or sample.last_token_at is None or sample.output_tokens <= 1:
        return None
    return (sample.last_token_at - sample.first_token_at) / (sample.output_tokens - 1)


def queue_s(sample: RequestSample) -> float | None:
    return None if sample.scheduled_at is None else sample.started_at - sample.scheduled_at


def chunk_gaps_s(sample: RequestSample) -> list[float]:
    return [later - earlier for earlier, later in pairwise(sample.token_chunk_times)]


@dataclass(frozen=True)
class LatencyLimits:
    """Per-request limits for goodput, in ms (None: no limit on that metric)."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None


# Float round-off in seconds -> ms must not turn "exactly at the limit" into a breach.
_AT_LIMIT_TOLERANCE = 1e-9


def within(observed: float, limit: float) -> bool:
    """observed <= limit, exactly at the limit included; NaN is never within."""
    return not math.isnan(observed) and observed <= limit * (1 + _AT_LIMIT_TOLERANCE) + _AT_LIMIT_TOLERANCE


def meets(sample: RequestSample, limits: LatencyLimits, *, from_due: bool = False) -> bool:
    """Succeeded and met every per-request limit (an undefined TPOT, n_out = 1, does not fail it)."""
    if not sample.ok:
        return False
    figures = (  # (value, limit, may be undefined)
        (ttft_s(sample, from_due=from_due), limits.ttft_ms, False),
        (tpot_s(sample), limits.tpot_ms, True),
        (e2e_s(sample, from_due=from_due), limits.e2e_ms, False),
    )
    for value, limit, may_be_undefined in figures:
        if limit is None or (value is None and may_be_undefined):
            continue
        if value is None or not within(value * 1000, limit):
            return False
    return True


def _ms(values: Iterable[float | None]) -> list[float]:
    return [value * 1000 for value in values if value is not None]


@dataclass(frozen=True)
class Summary:
    """Everything a report or the gate needs from one set of samples."""

    n: int
    succeeded: int
    open_loop: bool
    """Some samples carry scheduled_at: latencies from the due time are reported too."""
    ttft_ms: Distribution
    ttfvt_ms: Distribution
    """Time to first visible token (first `content`), over successful requests that had visible content."""
    tpot_ms: Distribution
    e2e_ms: Distribution
    itl_per_chunk_ms: Distribution
    queue_ms: Distribution
    ttft_from_due_ms: Distribution
    e2e_from_due_ms: Distribution
    error_rate: float
    duration_s: float
    output_tokens_per_s: float
    requests_per_s: float
    goodput: float
    """Requests per second that succeeded and met every limit (NaN without limits)."""
    goodput_ratio: float
    tokens_per_chunk: float
    output_tokens_counted_from_chunks: int
    """Successful streamed requests without usage: n_out is a chunk count, not a token count."""
    output_length_mismatches: int
    """Successful requests whose usage-reported n_out differs from the max_tokens sent with ignore_eos."""
    usage_contradicted: int
    """Successful requests whose usage block the stream disproved (n_out counted from the stream instead)."""
    timed_out: int
    """Requests that outlived the per-request timeout or were still open when the run ended (failures)."""
    unreached: int
    """Requests that never reached the server (connection refused, DNS, TLS): no HTTP response at all."""
    errors: dict[str, int]
    prefix_cache_hit_share: float = NAN
    """Cached prompt tokens over prompt tokens, on successful requests whose usage reports both (NaN: none did)."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in vars(self).items():
            out[name] = value.to_json() if isinstance(value, Distribution) else value
            if isinstance(value, float):
                out[name] = json_number(value)
        if not self.open_loop:
            for name in ("queue_ms", "ttft_from_due_ms", "e2e_from_due_ms"):
                del out[name]
        return out


def summarize(samples: Sequence[RequestSample], limits: LatencyLimits | None = None) -> Summary:
    ok = [s for s in samples if s.ok]
    open_loop = any(s.scheduled_at is not None for s in samples)
    duration = (max(s.ended_at for s in samples) - min(s.started_at for s in samples)) if samples else NAN

    def per_second(count: float) -> float:
        return count / duration if duration > 0 else NAN

    chunks = sum(len(s.token_chunk_times) for s in ok if s.streamed)
    streamed_tokens = sum(s.output_tokens for s in ok if s.streamed)
    good = sum(meets(s, limits, from_due=open_loop) for s in samples) if limits is not None else None
    return Summary(
        n=len(samples),
        succeeded=len(ok),
        open_loop=open_loop,
        ttft_ms=Distribution.of(_ms(ttft_s(s) for s in ok)),
        ttfvt_ms=Distribution.of(_ms(ttfvt_s(s) for s in ok)),
        tpot_ms=Distribution.of(_ms(tpot_s(s) for s in ok)),
        e2e_ms=Distribution.of(_ms(e2e_s(s) for s in ok)),
        itl_per_chunk_ms=Distribution.of(_ms(gap for s in ok for gap in chunk_gaps_s(s))),
        queue_ms=Distribution.of(_ms(queue_s(s) for s in samples)),
        ttft_from_due_ms=Distribution.of(_ms(ttft_s(s, from_due=True) for s in ok)),
        e2e_from_due_ms=Distribution.of(_ms(e2e_s(s, from_due=True) for s in ok)),
        error_rate=(len(samples) - len(ok)) / len(samples) if samples else NAN,
        duration_s=duration,
        output_tokens_per_s=per_second(sum(s.output_tokens for s in ok)),
        requests_per_s=per_second(len(ok)),
        goodput=per_second(good) if good is not None else NAN,
        goodput_ratio=good / len(samples) if good is not None and samples else NAN,
        tokens_per_chunk=streamed_tokens / chunks if chunks else NAN,
        output_tokens_counted_from_chunks=sum(1 for s in ok if s.streamed and not s.output_tokens_from_usage),
        output_length_mismatches=sum(
            1
            for s in ok
            if s.output_tokens_from_usage
            and s.expected_output_tokens is not None
            and s.output_tokens != s.expected_output_tokens
        ),
        usage_contradicted=sum(1 for s in ok if s.usage_contradicted is not None),
        timed_out=sum(1 for s in samples if s.timed_out),
        unreached=sum(1 for s in samples if s.unreached),
        errors=dict(Counter(s.error or "unknown" for s in samples if not s.ok).most_common(10)),
        prefix_cache_hit_share=prefix_cache_hit_share(ok),
    )


def prefix_cache_hit_share(samples: Sequence[RequestSample]) -> float:
    """Share of prompt tokens the servers' prefix caches held, as the servers report it."""
    reported = [s for s in samples if s.prompt_tokens and s.cached_prompt_tokens is not None]
    total = sum(s.prompt_tokens or 0 for s in reported)
    return sum(s.cached_prompt_tokens or 0 for s in reported) / total if total else NAN
