"""Running a Locust suite as a subprocess against the emulator, for tests/test_locust_*.py.

Each run gets its own output folder: the verdict, the raw samples and Locust's JSON stats, read back
into a `Run`. Runs are bounded by --run-time (or a request budget) and by RUN_TIMEOUT_S.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llmfleet.loadtests.run import master_port_options
from llmfleet.loadtests.samples import RequestSample, read_samples

ROOT = Path(__file__).resolve().parents[2]
SUITES = ROOT / "loadtests" / "suites"
LLMFLEET = Path(sys.executable).parent / "llmfleet"
RUN_TIMEOUT_S = 60
LENIENT_SLO = "ttft_p95_ms: 5000\ntpot_p95_ms: 1000\ne2e_p99_ms: 20000\nerror_rate: 0.5\ngoodput_ratio: 0.1\n"


class Run:
    """One finished Locust run: exit code, output, verdict and raw samples."""

    def __init__(self, done: subprocess.CompletedProcess[str], out: Path) -> None:
        self.code = done.returncode
        self.output = done.stdout + done.stderr
        verdict = out / "verdict.json"
        self.verdict: dict[str, Any] = json.loads(verdict.read_text()) if verdict.exists() else {}
        samples = out / "samples.jsonl"
        self.samples: list[RequestSample] = read_samples(samples) if samples.exists() else []
        stats = out / "stats.json"
        self.locust_stats: list[dict[str, Any]] = json.loads(stats.read_text()) if stats.exists() else []

    def __repr__(self) -> str:
        return f"exit {self.code}, verdict {json.dumps(self.verdict)[:1500]}\n{self.output[-3000:]}"


def slo_file(tmp_path: Path, text: str = LENIENT_SLO) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "slo.yaml"
    path.write_text(text)
    return path


def run_locust(
    suite: str, host: str, tmp_path: Path, *args: str, env: dict[str, str] | None = None, slo: str = LENIENT_SLO
) -> Run:
    out = tmp_path / "out"
    out.mkdir(parents=True, exist_ok=True)
    if "--processes" in args:
        args = (*args, *master_port_options())
    command = [
        *(sys.executable, "-m", "locust", "-f", str(SUITES / f"{suite}.py"), "--headless", "--only-summary"),
        *("--host", host, "--llm-model", "emulated-model", "--llm-slo", str(slo_file(tmp_path, slo))),
        *("--llm-report", str(out / "verdict.json"), "--llm-samples", str(out / "samples.jsonl")),
        *("--json-file", str(out / "stats")),
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env, check=False)
    return Run(done, out)


@contextmanager
def emulator_process(*args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """An emulator in its own process (a region a command can kill): (url, process)."""
    command = [sys.executable, "-m", "llmfleet.loadtests.emulator", "--port", "0", *args]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        ready = process.stdout.readline()  # printed once it listens
        url = ready.split(" on ")[1].split()[0]
        yield url, process
    finally:
        process.kill()
        process.wait(timeout=10)


def ms(seconds: float) -> float:
    return seconds * 1000


def ttfts(samples: list[RequestSample]) -> list[float]:
    return [ms(s.first_token_at - s.started_at) for s in samples if s.ok and s.first_token_at is not None]


def e2es(samples: list[RequestSample]) -> list[float]:
    return [ms(s.ended_at - s.started_at) for s in samples if s.ok]


def generator_fell_behind(verdict: dict[str, Any]) -> bool:
    """True when a verdict is invalid only because its own load generator fell behind, with the
    measurement to show it (late starts over the limit, Locust's CPU warning, or event-loop lag over the
    starved limit). On a busy shared machine that is the right verdict, and a test can then hold only
    what load cannot change; on an idle machine (CI) such a run fails the test's stricter branch."""
    generator = verdict.get("metrics", {}).get("generator", {})
    measured = (
        generator.get("late_start_share", 0) > 0.01
        or generator.get("cpu_overloaded", False)
        or generator.get("starved", False)
    )
    reasons = verdict.get("reasons") or []
    only_generator = bool(reasons) and all("load generator" in reason for reason in reasons)
    return verdict.get("valid") is False and only_generator and measured
