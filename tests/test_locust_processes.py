"""One Locust process vs one master and two workers on the same emulator: the same samples, percentiles
computed exactly over every raw sample the master gathered (never averaged across workers), and the
same verdict. How close the two runs' figures come is load-dependent and left to the benchmarks."""

from __future__ import annotations

import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support.locust_harness import Run, e2es, run_locust, ttfts

from llmfleet.loadtests.emulator import Emulator, EmulatorConfig


def assert_exact_medians(run: Run) -> None:
    """The verdict's medians are those of the raw samples (gathered from every worker)."""
    metrics = run.verdict["metrics"]
    assert metrics["ttft_ms"]["p50"] == pytest.approx(statistics.median(ttfts(run.samples)), abs=0.01), run
    last_token = [(s.last_token_at - s.started_at) * 1000 for s in run.samples if s.last_token_at is not None]
    assert metrics["e2e_ms"]["p50"] == pytest.approx(statistics.median(last_token), abs=0.01), run


def test_one_process_and_two_processes_agree(tmp_path: Path) -> None:
    config = EmulatorConfig(ttft_s=0.5, itl_s=0.02, output_tokens=6, seed=1)
    # Every user starts at once (-r 4), as `llmfleet loadtest` runs them.
    args = ("-u", "4", "-r", "4", "-t", "30s", "--llm-requests-per-user", "5", "--llm-output-tokens", "6")
    with Emulator(config) as emulator:
        single = run_locust("steady", emulator.url, tmp_path / "one", *args)
        double = run_locust("steady", emulator.url, tmp_path / "two", *args, "--processes", "2")
    assert single.code == double.code == 0, (single, double)
    assert len(single.samples) == len(double.samples) == 20, (single, double)
    assert single.verdict["metrics"]["n"] == double.verdict["metrics"]["n"] == 20
    generator = double.verdict["metrics"]["generator"]
    assert generator["processes"] == 2
    # Each worker's chunks are its own (the master attributes samples to the worker that sent them), and
    # the workers' kernel-stamped read delays reach the master.
    rates = generator["chunks_per_s_per_process"]
    assert len(rates) == 2 and all(rate > 0 for rate in rates), generator
    assert generator["socket_to_handler_p95_ms"] is not None and generator["socket_to_handler_p95_ms"] > 0, generator
    for run in (single, double):
        assert_exact_medians(run)
        assert min(ttfts(run.samples)) >= 499.5, run  # the emulator never sends early
        assert min(e2es(run.samples)) >= 499.5 + 5 * 20, run
    assert [c["pass"] for c in single.verdict["checks"]] == [c["pass"] for c in double.verdict["checks"]]


def test_two_multi_process_runs_at_once_do_not_share_a_master_port(tmp_path: Path) -> None:
    """Locust's --processes master binds port 5557 by default: a second run at the same time (parallel CI
    jobs) died with 'Address already in use' and left its workers hanging. Each run gets its own port."""
    args = ("-u", "4", "-r", "4", "-t", "20s", "--llm-requests-per-user", "5", "--llm-output-tokens", "2")
    with Emulator(EmulatorConfig(ttft_s=0.05, itl_s=0.01, output_tokens=2)) as emulator, ThreadPoolExecutor(2) as pool:
        runs = list(
            pool.map(lambda i: run_locust("steady", emulator.url, tmp_path / str(i), *args, "--processes", "2"), (1, 2))
        )
    for run in runs:
        assert run.code == 0 and len(run.samples) == 20, run
