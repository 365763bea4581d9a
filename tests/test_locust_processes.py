"""One Locust process vs one master and two workers on the same emulator: the same samples, the same
percentiles (within what a busy machine moves) and the same verdict."""

from __future__ import annotations

from pathlib import Path

import pytest
from locust_harness import Run, run_locust

from loadtests.emulator import Emulator, EmulatorConfig


def gate_percentiles(run: Run) -> dict[str, float]:
    """Percentiles the gate computed (over every raw sample the master gathered) that a busy machine
    leaves alone: the medians, and TPOT's p90 (each TPOT averages a request's gaps). The other tails
    of 20 samples are one or two requests a scheduler hiccup can move by 100 ms."""
    metrics = run.verdict["metrics"]
    return {
        "ttft_ms_p50": metrics["ttft_ms"]["p50"],
        "tpot_ms_p50": metrics["tpot_ms"]["p50"],
        "tpot_ms_p90": metrics["tpot_ms"]["p90"],
        "e2e_ms_p50": metrics["e2e_ms"]["p50"],
    }


def test_one_process_and_two_processes_agree(tmp_path: Path) -> None:
    # Latencies large against what a busy shared machine adds to any one wake-up (tens of ms).
    config = EmulatorConfig(ttft_s=0.5, itl_s=0.02, output_tokens=6, seed=1)
    # Every user starts at once (-r 4), as `llmfleet loadtest` runs them.
    args = ("-u", "4", "-r", "4", "-t", "30s", "--llm-requests-per-user", "5", "--llm-output-tokens", "6")
    with Emulator(config) as emulator:
        single = run_locust("steady", emulator.url, tmp_path / "one", *args)
        double = run_locust("steady", emulator.url, tmp_path / "two", *args, "--processes", "2")
    assert single.code == double.code == 0, (single, double)
    assert len(single.samples) == len(double.samples) == 20, (single, double)
    assert single.verdict["metrics"]["n"] == double.verdict["metrics"]["n"] == 20
    assert double.verdict["metrics"]["generator"]["processes"] == 2
    one, two = gate_percentiles(single), gate_percentiles(double)
    for key in one:
        assert two[key] == pytest.approx(one[key], rel=0.1), (key, one, two)
    for run in (single, double):
        assert 500 <= gate_percentiles(run)["ttft_ms_p50"] <= 550, run  # the emulator never sends early
    assert [c["pass"] for c in single.verdict["checks"]] == [c["pass"] for c in double.verdict["checks"]]
