"""Benchmark: the SLO gate's TTFT and TPOT against a raw-socket asyncio client measuring the same
server at the same time, at 8, 64 and 256 users, on GuideLLM's mock server and on the emulator.

    .venv/bin/python tests/benchmarks/bench_gate.py [--users 8 64 256] [--seconds 20] \\
        [--guidellm /path/to/guidellm] [--servers emulator guidellm] [--processes 1 auto]

A script, not a test. Each server runs in its own process (TTFT 200 ms, 20 ms per token, 64 tokens;
GuideLLM's is `guidellm mock-server --ttft-ms 200 --itl-ms 20 --output-tokens 64`). For each step the
gate runs the steady suite exactly as `llmfleet loadtest` runs it (`locust -f loadtests/suites/steady.py
--headless`, N users, the SLO below), while tests/support/raw_client.py (8 users, at a higher scheduling
priority where allowed) measures the same server over the same window. The script prints both
clients' TTFT and TPOT p50/p95, the gate's deviation from the reference, whether the gate declared the
run valid (and why not), the generator's event-loop lag, and the machine's load average before and
after: on a shared machine that number decides what the figures mean.

The issue's goal: within 2% at every level where the run is declared valid; where one process cannot
keep within that, the run says so (invalid) or `--processes auto` adds workers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.raw_client import command as raw_command  # noqa: E402

from llmfleet.loadtests.capacity import auto_processes  # noqa: E402
from llmfleet.loadtests.samples import read_samples  # noqa: E402
from llmfleet.loadtests.stats import summarize  # noqa: E402
from llmfleet.values import Slo  # noqa: E402

TTFT_MS, ITL_MS, OUTPUT_TOKENS = 200, 20, 64
REFERENCE_USERS = 8
WARMUP_S = 5.0
SLO = Slo(ttft_p95_ms=250, tpot_p95_ms=30, e2e_p99_ms=5000, error_rate=0.01, goodput_ratio=0.9)
"""Close to the server's figures, so a generator's delay matters (its lag limit: 5% of 250 ms, 12.5 ms)."""


@contextlib.contextmanager
def server(kind: str, guidellm: str | None) -> Iterator[str]:
    if kind == "emulator":
        command = [sys.executable, "-m", "llmfleet.loadtests.emulator", "--port", "0", "--ttft-ms", str(TTFT_MS)]
        command += ["--itl-ms", str(ITL_MS), "--output-tokens", str(OUTPUT_TOKENS)]
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, preexec_fn=_priority)
        assert process.stdout is not None
        url = process.stdout.readline().split(" on ")[1].split()[0]
    else:
        port = _free_port()
        command = [guidellm or "guidellm", "mock-server", "--host", "127.0.0.1", "--port", str(port)]
        command += ["--ttft-ms", str(TTFT_MS), "--itl-ms", str(ITL_MS), "--output-tokens", str(OUTPUT_TOKENS)]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_priority)
        url = f"http://127.0.0.1:{port}"
        _wait_for(url)
    try:
        yield url
    finally:
        process.kill()
        process.wait(timeout=10)


def _priority() -> None:
    with contextlib.suppress(PermissionError):
        os.nice(-10)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(url: str) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"{url}/health", timeout=1)
            return
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


def step(url: str, users: int, processes: int, seconds: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        (out / "slo.json").write_text(SLO.model_dump_json())
        load_before = os.getloadavg()[0]
        reference = subprocess.Popen(
            raw_command(url, REFERENCE_USERS, seconds + 120, out / "raw.jsonl", output_tokens=OUTPUT_TOKENS),
            preexec_fn=_priority,
        )
        locust = [
            *(sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "suites" / "steady.py"), "--headless"),
            *("--only-summary", "--host", url, "-u", str(users), "-r", str(users), "-t", f"{seconds:g}s"),
            *("--llm-model", "m", "--llm-output-tokens", str(OUTPUT_TOKENS), "--llm-prompt-tokens", "16"),
            *("--llm-slo", str(out / "slo.json"), "--llm-report", str(out / "verdict.json")),
            *("--llm-samples", str(out / "samples.jsonl"), "--llm-warmup", f"{WARMUP_S:g}"),
        ]
        if processes > 1:
            locust += ["--processes", str(processes)]
        subprocess.run(locust, cwd=ROOT, capture_output=True, timeout=seconds + 300, check=False)
        reference.terminate()
        reference.wait(timeout=10)
        load_after = os.getloadavg()[0]
        verdict = json.loads((out / "verdict.json").read_text())
        samples = read_samples(out / "samples.jsonl")
        start = min(s.started_at for s in samples) + WARMUP_S
        end = max(s.started_at for s in samples)
        raw = summarize([s for s in read_samples(out / "raw.jsonl") if start <= s.started_at <= end])
    metrics = verdict["metrics"]
    return {
        "users": users,
        "processes": processes,
        "valid": verdict["valid"],
        "reasons": verdict["reasons"],
        "gate_ttft": (metrics["ttft_ms"]["p50"], metrics["ttft_ms"]["p95"]),
        "raw_ttft": (raw.ttft_ms.p50, raw.ttft_ms.p95),
        "gate_tpot": (metrics["tpot_ms"]["p50"], metrics["tpot_ms"]["p95"]),
        "raw_tpot": (raw.tpot_ms.p50, raw.tpot_ms.p95),
        "n": (metrics["n"], raw.n),
        "lag_p95_ms": metrics["generator"]["loop_lag_p95_ms"],
        "send_delay_p95_ms": metrics["generator"].get("send_delay_p95_ms"),
        "load": (load_before, load_after),
    }


def _pct(gate: float | None, raw: float) -> str:
    if gate is None or math.isnan(raw) or raw == 0:
        return "n/a"
    return f"{(gate - raw) / raw * 100:+.1f}%"


def row(kind: str, figures: dict[str, object]) -> str:
    gt, rt = figures["gate_ttft"], figures["raw_ttft"]
    gp, rp = figures["gate_tpot"], figures["raw_tpot"]
    assert isinstance(gt, tuple) and isinstance(rt, tuple) and isinstance(gp, tuple) and isinstance(rp, tuple)
    load = figures["load"]
    assert isinstance(load, tuple)
    valid = "valid" if figures["valid"] else "INVALID"
    lag = figures["lag_p95_ms"]
    send_delay = figures["send_delay_p95_ms"]
    cells = [
        kind,
        str(figures["users"]),
        str(figures["processes"]),
        valid,
        f"{gt[0]:.1f} / {gt[1]:.1f}",
        f"{rt[0]:.1f} / {rt[1]:.1f}",
        f"{_pct(gt[0], rt[0])} / {_pct(gt[1], rt[1])}",
        f"{gp[0]:.2f} / {gp[1]:.2f}",
        f"{rp[0]:.2f} / {rp[1]:.2f}",
        f"{_pct(gp[0], rp[0])} / {_pct(gp[1], rp[1])}",
        f"{lag:.1f}" if isinstance(lag, float) else "n/a",
        f"{send_delay:.1f}" if isinstance(send_delay, float) else "n/a",
        f"{load[0]:.2f} -> {load[1]:.2f}",
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| server | users | processes | verdict | gate TTFT p50 / p95 ms | raw TTFT p50 / p95 ms | deviation | "
    "gate TPOT p50 / p95 ms | raw TPOT p50 / p95 ms | deviation | loop lag p95 ms | send delay p95 ms | "
    "load average |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, nargs="+", default=[8, 64, 256])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--servers", nargs="+", default=["emulator", "guidellm"], choices=["emulator", "guidellm"])
    parser.add_argument("--processes", nargs="+", default=["1", "auto"], help="1, N or auto (per step)")
    parser.add_argument("--guidellm", default=shutil.which("guidellm"), help="the guidellm executable")
    args = parser.parse_args(argv)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs; SLO {SLO.model_dump()}")
    print(HEADER, flush=True)
    for kind in args.servers:
        with server(kind, args.guidellm) as url:
            for users in args.users:
                counts: list[int] = []
                for choice in args.processes:
                    count = auto_processes(users, SLO.tpot_p95_ms) if choice == "auto" else int(choice)
                    if count not in counts:
                        counts.append(count)
                for count in counts:
                    figures = step(url, users, count, args.seconds)
                    print(row(kind, figures), flush=True)
                    if not figures["valid"]:
                        print(f"|   | | | reasons: {'; '.join(map(str, figures['reasons']))[:300]} |", flush=True)


if __name__ == "__main__":
    import benchdoc  # tests/benchmarks/, beside this script: --write-docs records the output

    benchdoc.run("gate", main)
