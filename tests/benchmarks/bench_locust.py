"""Benchmark: how much streaming load one Locust process generates before its measurements drift,
against a plain asyncio client of raw streams in the same run.

    .venv/bin/python tests/benchmarks/bench_locust.py [--users 1 4 16 64] [--seconds 8] [--ttft-ms 500] [--itl-ms 20]

A script, not a test (pytest collects test_*.py only). The emulator runs in its own process with a
known TTFT and inter-token latency; each client runs in a fresh process, one at a time, at rising
concurrency (closed loop, no think time). Both measure with the same code (loadtests.stream's
StreamMeter, loadtests.stats), so the only difference is the client: Locust's HttpUser on gevent
(one process, `--processes` not used) or tests/support/raw_client.py's asyncio streams (requests written by hand,
the chunked body fed to the meter as read: no HTTP library, so the baseline is the client's floor, not
httpx's overhead, which collapsed at 96 users where Locust did not).

For each step it prints requests/s and token chunks/s achieved, and the measurement error: median and
p90 TTFT minus the injected TTFT, and the median gap between chunks minus the injected ITL. A client
"drifts" once its median TTFT error passes 10% of the injected TTFT or its median chunk-gap error 10%
of the ITL (or a request fails): past that, what it reports is its own delay. The defaults (TTFT
500 ms, ITL 20 ms, 10%) are for a shared machine: there, scheduling alone moved a 200 ms median TTFT
by 10-100 ms at 1-8 users, for both clients alike.
The sustained figures are those of the last step before it drifted; the script prints both clients'
and their ratio. The emulator's own CPU time is
printed too: if it is near one core, the server, not the client, is the limit of that step.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.raw_client import command as raw_command  # noqa: E402

from llmfleet.loadtests.samples import RequestSample, read_samples  # noqa: E402
from llmfleet.loadtests.stats import summarize  # noqa: E402

TTFT_MS = 500.0
ITL_MS = 20.0
OUTPUT_TOKENS = 32
PROMPT_TOKENS = 16
WARMUP_S = 1.5
"""Samples started in the first seconds of a step are left out (connections, imports, spawning)."""
TTFT_DRIFT = 0.10
ITL_DRIFT = 0.10
MODEL = "emulated-model"


@dataclass(frozen=True)
class Step:
    client: str
    users: int
    injected_ttft_ms: float
    injected_itl_ms: float
    requests_per_s: float
    chunks_per_s: float
    ttft_error_p50_ms: float
    ttft_error_p90_ms: float
    itl_error_p50_ms: float
    samples: int
    failed: int
    emulator_cpu: float
    """Emulator CPU seconds per wall second during the step (1.0: one core busy)."""
    client_cpu: float
    """The client process's CPU seconds per wall second while it measured (after its warm-up)."""

    @property
    def chunks_per_cpu_s(self) -> float:
        """Chunks handled per second of the client's CPU: its efficiency, whatever else runs on the machine."""
        return self.chunks_per_s / self.client_cpu if self.client_cpu > 0 else float("nan")

    @property
    def drifted(self) -> bool:
        return (
            math.isnan(self.ttft_error_p50_ms)
            or self.ttft_error_p50_ms > self.injected_ttft_ms * TTFT_DRIFT
            or abs(self.itl_error_p50_ms) > self.injected_itl_ms * ITL_DRIFT
            or self.failed > 0
        )

    def row(self) -> str:
        return (
            f"{self.client:8} {self.users:5} {self.requests_per_s:9.1f} {self.chunks_per_s:9.0f} "
            f"{self.ttft_error_p50_ms:+9.1f} {self.ttft_error_p90_ms:+9.1f} {self.itl_error_p50_ms:+9.2f} "
            f"{self.samples:7} {self.failed:6} {self.emulator_cpu:6.2f} {self.client_cpu:6.2f} "
            f"{self.chunks_per_cpu_s:9.0f}  {'DRIFTED' if self.drifted else 'ok'}"
        )


HEADER = (
    f"{'client':8} {'users':>5} {'req/s':>9} {'chunks/s':>9} {'TTFTerr50':>9} {'TTFTerr90':>9} "
    f"{'ITLerr50':>9} {'samples':>7} {'failed':>6} {'emuCPU':>6} {'cliCPU':>6} {'chunk/CPUs':>9}  state"
)


def step_figures(
    client: str,
    users: int,
    samples: Sequence[RequestSample],
    emulator: EmulatorProcess,
    emulator_cpu: float,
    client_cpu: CpuTrace,
) -> Step:
    if not samples:
        nan = float("nan")
        return Step(client, users, emulator.ttft_ms, emulator.itl_ms, 0.0, 0.0, nan, nan, nan, 0, 0, emulator_cpu, nan)
    first = min(s.started_at for s in samples)
    kept = [s for s in samples if s.started_at >= first + WARMUP_S]
    window = (first + WARMUP_S, max(s.ended_at for s in samples))
    summary = summarize(kept)
    chunks = sum(len(s.token_chunk_times) for s in kept if s.ok)
    per_s = summary.duration_s if summary.duration_s > 0 else float("nan")
    return Step(
        client=client,
        users=users,
        injected_ttft_ms=emulator.ttft_ms,
        injected_itl_ms=emulator.itl_ms,
        requests_per_s=summary.requests_per_s,
        chunks_per_s=chunks / per_s,
        ttft_error_p50_ms=summary.ttft_ms.p50 - emulator.ttft_ms,
        ttft_error_p90_ms=summary.ttft_ms.p90 - emulator.ttft_ms,
        itl_error_p50_ms=summary.itl_per_chunk_ms.p50 - emulator.itl_ms,
        samples=len(kept),
        failed=summary.n - summary.succeeded,
        emulator_cpu=emulator_cpu,
        client_cpu=client_cpu.share(*window),
    )


# -- driving the steps ---------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux; clock ticks of 1/100 s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


class CpuTrace:
    """A child process's CPU time, sampled every POLL_S on the samples' clock (perf_counter)."""

    POLL_S = 0.25

    def __init__(self) -> None:
        self.points: list[tuple[float, float]] = []

    def run(self, command: list[str], timeout: float) -> None:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.perf_counter() + timeout
        while process.poll() is None and time.perf_counter() < deadline:
            with contextlib.suppress(OSError, IndexError, ValueError):  # the process is exiting
                self.points.append((time.perf_counter(), cpu_seconds(process.pid)))
            time.sleep(self.POLL_S)
        process.kill()
        self.stderr = process.communicate()[1]

    def share(self, start: float, end: float) -> float:
        """CPU seconds per wall second between the polls nearest `start` and `end`."""
        inside = [p for p in self.points if start <= p[0] <= end]
        if len(inside) < 2:
            return float("nan")
        (t0, c0), (t1, c1) = inside[0], inside[-1]
        return (c1 - c0) / (t1 - t0)


class EmulatorProcess:
    def __init__(self, ttft_ms: float, itl_ms: float) -> None:
        self.ttft_ms, self.itl_ms = ttft_ms, itl_ms
        command = [sys.executable, "-m", "llmfleet.loadtests.emulator", "--port", "0"]
        command += ["--ttft-ms", f"{ttft_ms:g}", "--itl-ms", f"{itl_ms:g}", "--output-tokens", str(OUTPUT_TOKENS)]
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().split(" on ")[1].split()[0]

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def close(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


def locust_command(url: str, users: int, seconds: float, samples: Path) -> list[str]:
    return [
        *(sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "suites" / "steady.py"), "--headless"),
        *("--only-summary", "--host", url, "-u", str(users), "-r", str(users), "-t", f"{seconds:g}s"),
        *("--llm-model", MODEL, "--llm-output-tokens", str(OUTPUT_TOKENS), "--llm-prompt-tokens", str(PROMPT_TOKENS)),
        *("--llm-samples", str(samples), "--llm-min-samples", "1"),
    ]


def asyncio_command(url: str, users: int, seconds: float, samples: Path) -> list[str]:
    """The raw-socket reference client the SLO gate is compared with too (tests/support/raw_client.py)."""
    return raw_command(url, users, seconds, samples, output_tokens=OUTPUT_TOKENS, model=MODEL)


def sweep(client: str, emulator: EmulatorProcess, users: Sequence[int], seconds: float) -> list[Step]:
    command = locust_command if client == "locust" else asyncio_command
    steps: list[Step] = []
    for count in users:
        with tempfile.TemporaryDirectory() as out:
            samples_path = Path(out) / "samples.jsonl"
            trace = CpuTrace()
            cpu_before, wall_before = emulator.cpu_seconds(), time.perf_counter()
            trace.run(command(emulator.url, count, seconds, samples_path), timeout=seconds + 120)
            cpu = (emulator.cpu_seconds() - cpu_before) / (time.perf_counter() - wall_before)
            samples = read_samples(samples_path) if samples_path.exists() else []
        if "CPU usage above" in trace.stderr:
            print(f"  ({client}, {count} users: Locust's CPU warning fired)")
        step = step_figures(client, count, samples, emulator, cpu, trace)
        print(step.row(), flush=True)
        steps.append(step)
    return steps


def sustained(steps: Sequence[Step]) -> Step | None:
    """The last step before the first drifted one."""
    good = list(itertools.takewhile(lambda step: not step.drifted, steps))
    return good[-1] if good else None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--seconds", type=float, default=8.0, help="Length of each step.")
    parser.add_argument("--ttft-ms", type=float, default=TTFT_MS, help="Injected time to first token.")
    parser.add_argument("--itl-ms", type=float, default=ITL_MS, help="Injected inter-token latency.")
    args = parser.parse_args(argv)
    emulator = EmulatorProcess(args.ttft_ms, args.itl_ms)
    try:
        print(f"emulator {emulator.url}: TTFT {args.ttft_ms:g} ms, ITL {args.itl_ms:g} ms, {OUTPUT_TOKENS} tokens")
        print(f"drift: median TTFT error > {TTFT_DRIFT:.0%} or median chunk-gap error > {ITL_DRIFT:.0%}")
        print(HEADER)
        results = {client: sweep(client, emulator, args.users, args.seconds) for client in ("locust", "asyncio")}
    finally:
        emulator.close()
    best = {client: sustained(steps) for client, steps in results.items()}
    print()
    for client, step in best.items():
        if step is None:
            print(f"{client}: drifted at the first step")
        else:
            print(
                f"{client}: sustains {step.requests_per_s:.1f} req/s, "
                f"{step.chunks_per_s:.0f} chunks/s ({step.users} users)"
            )
    locust, plain = best["locust"], best["asyncio"]
    if locust and plain:
        print(
            f"ratio locust/asyncio: {locust.requests_per_s / plain.requests_per_s:.2f} (req/s), "
            f"{locust.chunks_per_s / plain.chunks_per_s:.2f} (chunks/s)"
        )
    print(json.dumps({client: step.__dict__ if step else None for client, step in best.items()}))


if __name__ == "__main__":
    import benchdoc  # tests/benchmarks/, beside this script: --write-docs records the output

    benchdoc.run("locust", main)
