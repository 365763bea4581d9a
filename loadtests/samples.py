"""One measured request: the raw sample every metric and the SLO gate are computed from.

Times are `time.perf_counter()` seconds in the process that made the request. Samples are kept raw
(never rounded, never pre-aggregated) so percentiles are exact, and travel from Locust workers to the
master as plain dicts (`to_dict` / `from_dict`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(slots=True)
class RequestSample:
    started_at: float
    """perf_counter immediately before the request was sent (t0)."""
    ended_at: float
    """When the response was complete (or failed)."""
    ok: bool
    """2xx, at least one token, and no in-stream error."""
    scheduled_at: float | None = None
    """When the request was due (open-loop runs): queue time = started_at - scheduled_at."""
    first_token_at: float | None = None
    """First event whose delta carries content, reasoning or tool calls (a role-only chunk is not a token).
    Like every token time here, when it reached this machine: the kernel's receive stamp of the read that
    delivered it (loadtests/wire.py) where stamps are measured, else when the generator parsed it."""
    first_token_parsed_at: float | None = None
    """When the generator parsed the first token, where stamps are measured (None otherwise): minus
    first_token_at, the generator's own delay in reading it (the first-token read probe)."""
    first_content_at: float | None = None
    """First event with visible `content` (differs from first_token_at when reasoning comes first)."""
    last_token_at: float | None = None
    """Last token-bearing event (usage-only chunks and [DONE] do not extend it)."""
    token_chunk_times: list[float] = field(default_factory=list[float])
    """Arrival time of every token-bearing chunk (ITL per chunk = their gaps)."""
    output_tokens: int = 0
    output_tokens_from_usage: bool = False
    """True when output_tokens is usage.completion_tokens; False when it was counted from chunks."""
    expected_output_tokens: int | None = None
    """max_tokens sent with ignore_eos, to flag a length mismatch."""
    prompt_tokens: int | None = None
    cached_prompt_tokens: int | None = None
    """usage.prompt_tokens_details.cached_tokens: prompt tokens served from the prefix cache (None: not reported)."""
    status: int | None = None
    error: str | None = None
    streamed: bool = True
    unreached: bool = False
    """No connection to the server was made (refused, DNS, TLS, connect timeout): no HTTP response at all."""
    timed_out: bool = False
    """The request outlived its deadline (the run's per-request timeout) or was still open when the run ended."""
    usage_contradicted: int | None = None
    """The `usage.completion_tokens` the stream disproved (fewer than the token-bearing chunks received);
    output_tokens is then the stream's count."""
    send_delay_s: float | None = None
    """From the user deciding to send to the request starting on its connection (started_at): the
    generator's own delay before the server could see the request (loadtests/wire.py); None if not measured."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestSample:
        return cls(**data)

    def shifted(self, offset: float) -> RequestSample:
        """The same sample with every time moved by `offset` s (onto another process's clock), in place."""
        if offset == 0.0:
            return self
        self.started_at += offset
        self.ended_at += offset
        for name in ("scheduled_at", "first_token_at", "first_token_parsed_at", "first_content_at", "last_token_at"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value + offset)
        self.token_chunk_times = [t + offset for t in self.token_chunk_times]
        return self


def timed_out_sample(
    started_at: float, scheduled_at: float | None, max_tokens: int | None, error: str, streamed: bool
) -> RequestSample:
    """A request that had no (complete) answer by its deadline, or was still open when the run ended."""
    return RequestSample(
        started_at=started_at,
        ended_at=time.perf_counter(),
        ok=False,
        scheduled_at=scheduled_at,
        expected_output_tokens=max_tokens,
        error=error,
        streamed=streamed,
        timed_out=True,
    )


def write_samples(samples: Sequence[RequestSample], path: Path) -> None:
    """Raw samples as JSON lines (times are perf_counter seconds of the process that gathered them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for sample in samples:
            out.write(json.dumps(sample.to_dict()) + "\n")


def read_samples(path: Path) -> list[RequestSample]:
    return [RequestSample.from_dict(json.loads(line)) for line in path.read_text().splitlines() if line]
