"""loadtests/capacity.py: `--processes auto` sizes workers from a measured, cached per-process capacity."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llmfleet.loadtests import capacity
from llmfleet.loadtests.capacity import ENV_OVERRIDE, USABLE_SHARE, chunk_rate, chunks_per_process
from llmfleet.loadtests.emulator import Emulator, EmulatorConfig
from llmfleet.loadtests.samples import RequestSample


class Calibration:
    def __init__(self, rate: float) -> None:
        self.rate, self.calls = rate, 0

    def __call__(self) -> float:
        self.calls += 1
        return self.rate


@pytest.fixture(autouse=True)
def _no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_OVERRIDE, raising=False)


def test_measured_once_then_read_from_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "capacity.json"
    calibrate = Calibration(6000.0)
    assert chunks_per_process(calibrate=calibrate, path=cache, now=1000.0) == 6000.0 * USABLE_SHARE
    assert chunks_per_process(calibrate=calibrate, path=cache, now=2000.0) == 6000.0 * USABLE_SHARE
    assert calibrate.calls == 1
    assert json.loads(cache.read_text())["chunks_per_cpu_s"] == 6000.0


def test_another_machine_or_a_stale_reading_is_measured_again(tmp_path: Path) -> None:
    cache = tmp_path / "capacity.json"
    cache.write_text(json.dumps({"key": "another machine", "measured_at": 1000.0, "chunks_per_s": 99999.0}))
    calibrate = Calibration(4000.0)
    assert chunks_per_process(calibrate=calibrate, path=cache, now=1000.0) == 2000.0
    stale = 1000.0 + capacity.CACHE_DAYS * 86400 + 1
    assert chunks_per_process(calibrate=Calibration(8000.0), path=cache, now=stale) == 4000.0


def test_a_broken_cache_is_measured_again_and_an_unusable_reading_is_not_kept(tmp_path: Path) -> None:
    cache = tmp_path / "capacity.json"
    cache.write_text("{not json")
    assert chunks_per_process(calibrate=Calibration(10.0), path=cache, now=1.0) == capacity.MIN_CHUNKS_PER_S
    assert cache.read_text() == "{not json"  # a machine too busy to measure: nothing cached


def test_the_environment_overrides_and_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calibrate = Calibration(6000.0)
    monkeypatch.setenv(ENV_OVERRIDE, "1234")
    assert chunks_per_process(calibrate=calibrate, path=tmp_path / "c.json") == 1234.0
    assert calibrate.calls == 0
    monkeypatch.setenv(ENV_OVERRIDE, "fast")
    with pytest.raises(ValueError, match=ENV_OVERRIDE):
        chunks_per_process(calibrate=calibrate, path=tmp_path / "c.json")


def test_chunk_rate_counts_chunks_after_the_warm_up() -> None:
    sample = RequestSample(started_at=0.0, ended_at=4.0, ok=True, token_chunk_times=[0.5, 1.5, 2.0, 3.0, 4.0])
    assert chunk_rate([sample], warmup_s=1.0) == pytest.approx(4 / 3.0)
    assert chunk_rate([RequestSample(started_at=0.0, ended_at=1.0, ok=False)], warmup_s=0.0) is None


def test_a_real_calibration_reads_a_plausible_rate() -> None:
    """One Locust process against the loopback emulator: a minimum, not a timing figure (chunks per
    CPU-second are thousands on this machine; a busy machine slows the run, not the per-chunk cost)."""
    rate = capacity.calibrate_chunks_per_cpu_second()
    assert rate > 100.0, rate


def test_a_bad_override_is_a_usage_error_before_any_load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_OVERRIDE, "fast")
    llmfleet = Path(sys.executable).parent / "llmfleet"
    command = [str(llmfleet), "loadtest", "--suite", "steady", "--model", "m", "--host", "http://127.0.0.1:9"]
    done = subprocess.run(
        [*command, "--processes", "auto", "--report", str(tmp_path / "v.json")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert ENV_OVERRIDE in done.stderr and "--processes N" in done.stderr
    assert not (tmp_path / "v.json").exists()


def test_auto_sizes_for_the_faster_of_the_slo_and_the_server() -> None:
    """Issue 13: sized on the SLO's TPOT alone, 256 users of a server faster than its target overfilled
    one process. The server's observed pace counts when it is the faster."""
    # 30 ms TPOT target: 33.3 chunks/s a user, 256 users 8,533 chunks/s: one process of 9,955.
    assert capacity.auto_processes(256, 30, cpus=8, chunks_per_process=9955) == 1
    # The server streams 50 chunks/s a request: 12,800 chunks/s, two processes.
    assert capacity.auto_processes(256, 30, cpus=8, chunks_per_process=9955, observed_chunks_per_s=50) == 2
    # A server slower than its target does not shrink the estimate below the SLO's pace.
    assert capacity.auto_processes(256, 30, cpus=8, chunks_per_process=9955, observed_chunks_per_s=5) == 1


def test_the_pace_probe_reads_a_faster_server_as_faster_and_an_absent_one_as_unknown() -> None:
    """An order, not a timing figure: an emulator streaming a chunk every 5 ms is probed faster than one
    streaming every 50 ms (under load both only slow down, each bounded by its own pace)."""
    paces: list[float] = []
    for itl_s in (0.005, 0.05):
        with Emulator(EmulatorConfig(ttft_s=0.0, itl_s=itl_s, output_tokens=8)) as emulator:
            pace = capacity.probe_pace(emulator.url, "m", requests=2, output_tokens=8)
        assert pace is not None
        paces.append(pace)
    assert paces[0] > paces[1], paces
    with Emulator(EmulatorConfig(refuse_connections=True)) as refusing:
        assert capacity.probe_pace(refusing.url, "m", requests=1, timeout_s=5) is None
    with Emulator(EmulatorConfig(ttft_s=0.0, itl_s=0.0, max_output_tokens=1)) as one_token:
        assert capacity.probe_pace(one_token.url, "m", requests=1) is None  # one chunk: no pace to read


def test_processes_auto_adds_workers_for_a_server_faster_than_its_slo(tmp_path: Path) -> None:
    """End to end: the SLO's TPOT target (1 s: one chunk a second a user) alone sizes 2 users into one
    process of 20 chunks/s; the emulator streams a chunk every 5 ms (over 20 a second even on a loaded
    machine), which the probe before the run sees, so `--processes auto` starts one a CPU."""
    slo = tmp_path / "slo.yaml"
    slo.write_text("ttft_p95_ms: 5000\ntpot_p95_ms: 1000\ne2e_p99_ms: 20000\nerror_rate: 0.5\ngoodput_ratio: 0.1\n")
    assert capacity.auto_processes(2, 1000, cpus=8, chunks_per_process=20) == 1
    llmfleet = Path(sys.executable).parent / "llmfleet"
    with Emulator(EmulatorConfig(ttft_s=0.0, itl_s=0.005, output_tokens=8)) as emulator:
        done = subprocess.run(
            [
                *(str(llmfleet), "loadtest", "--suite", "steady", "--model", "m", "--host", emulator.url),
                *("--users", "2", "--duration", "3s", "--slo", str(slo), "--processes", "auto"),
                *("--report", str(tmp_path / "v.json"), "--", "--llm-output-tokens", "8", "--llm-min-samples", "1"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, ENV_OVERRIDE: "20", "XDG_CACHE_HOME": str(tmp_path)},
        )
    assert "the server streams" in done.stderr, done.stderr
    chosen = re.search(r"--processes auto: (\d+) Locust process", done.stderr)
    assert chosen is not None, done.stderr
    cpus = os.cpu_count() or 1
    assert min(2, cpus) <= int(chosen.group(1)) <= cpus, done.stderr
