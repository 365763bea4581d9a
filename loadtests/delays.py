"""Counting many small delays in bounded memory: a log-binned histogram per second of the run.

The socket-to-handler probe (loadtests/wire.py) takes one reading per socket read: at thousands of
chunks a second a raw list would grow by hundreds of megabytes over a long gate, and workers send
their readings to the master. So readings are counted by (second, bin): bins BIN_STEP wide in ratio
(a value comes back within half a bin, ~1%, of what was read), seconds on the reading process's
perf_counter. The window the gate judges is then cut at whole seconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

BIN_STEP = 1.02
"""Neighbouring bins differ by 2%: a percentile is read within ~1% of its true value."""
_LOG_STEP = math.log(BIN_STEP)
FLOOR_S = 1e-6
"""Delays at or below a microsecond share bin 0 (read as zero)."""

Counts = dict[tuple[int, int], int]
"""(second of perf_counter, bin) -> readings."""


def bin_of(delay_s: float) -> int:
    if delay_s <= FLOOR_S:
        return 0
    return 1 + max(int(math.log(delay_s / FLOOR_S) / _LOG_STEP), 0)


def value_of(bin_index: int) -> float:
    """The middle of a bin, seconds (bin 0: zero)."""
    if bin_index <= 0:
        return 0.0
    return FLOOR_S * math.exp((bin_index - 0.5) * _LOG_STEP)


def add(counts: Counts, when: float, delay_s: float) -> None:
    key = (int(when), bin_of(delay_s))
    counts[key] = counts.get(key, 0) + 1


def in_window(counts: Iterable[tuple[float, int, int]], start: float, end: float) -> dict[int, int]:
    """(second start, bin, count) rows -> bin -> count of the seconds that start within [start, end]."""
    merged: dict[int, int] = {}
    for second, bin_index, count in counts:
        if start <= second + 1 and second <= end:  # any overlap with the window, at one-second grain
            merged[bin_index] = merged.get(bin_index, 0) + count
    return merged


def percentile_s(bins: Mapping[int, int], q: float) -> float | None:
    """The q-th percentile (nearest rank) of the binned readings, seconds; None without readings."""
    total = sum(bins.values())
    if total == 0:
        return None
    rank = max(math.ceil(q / 100 * total), 1)
    seen = 0
    for bin_index in sorted(bins):
        seen += bins[bin_index]
        if seen >= rank:
            return value_of(bin_index)
    return value_of(max(bins))


def largest_s(bins: Mapping[int, int]) -> float | None:
    return value_of(max(bins)) if bins else None
