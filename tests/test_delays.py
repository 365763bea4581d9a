"""loadtests/delays.py: per-read delays counted in bounded memory still give their percentiles within
a bin (~1%), cut to the judged window at one-second grain."""

from __future__ import annotations

import math
import random

from llmfleet.loadtests import delays
from llmfleet.loadtests.stats import percentile


def test_binned_percentiles_are_within_a_bin_of_the_exact_ones() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(math.log(0.002), 1.0) for _ in range(5000)]  # ~2 ms, a long tail
    counts: delays.Counts = {}
    for i, value in enumerate(values):
        delays.add(counts, 100 + i / 1000, value)
    rows = [(float(second), b, n) for (second, b), n in counts.items()]
    bins = delays.in_window(rows, 0, 1e9)
    assert sum(bins.values()) == len(values)
    for q in (50, 95, 99):
        exact = percentile(values, q)
        binned = delays.percentile_s(bins, q)
        assert binned is not None and abs(binned / exact - 1) <= 0.011, (q, binned, exact)
    top = delays.largest_s(bins)
    assert top is not None and abs(top / max(values) - 1) <= 0.011


def test_the_window_keeps_only_the_seconds_it_overlaps() -> None:
    counts: delays.Counts = {}
    delays.add(counts, 5.5, 0.5)  # warm-up: outside
    delays.add(counts, 12.2, 0.010)
    delays.add(counts, 30.0, 0.5)  # after the run: outside
    rows = [(float(second), b, n) for (second, b), n in counts.items()]
    bins = delays.in_window(rows, 10.0, 20.0)
    assert sum(bins.values()) == 1
    value = delays.percentile_s(bins, 95)
    assert value is not None and abs(value - 0.010) <= 0.0002
    assert delays.percentile_s({}, 95) is None and delays.largest_s({}) is None
    assert delays.value_of(delays.bin_of(0.0)) == 0.0
