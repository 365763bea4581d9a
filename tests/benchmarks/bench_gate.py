"""Benchmark: the SLO gate's TTFT and TPOT against what the wire saw of its own requests, and against a
raw-socket asyncio client measuring the same server at the same time, at 8, 64 and 256 users, on
GuideLLM's mock server and on the emulator.

    .venv/bin/python tests/benchmarks/bench_gate.py [--users 8 64 256] [--seconds 20] \\
        [--guidellm /path/to/guidellm] [--servers emulator guidellm] [--processes 1 auto] [--keep DIR]

A script, not a test. Each server runs in its own process (TTFT 200 ms, 20 ms per token, 64 tokens;
GuideLLM's is `guidellm mock-server --ttft-ms 200 --itl-ms 20 --output-tokens 64`). For each step the
gate runs the steady suite exactly as `llmfleet loadtest` runs it (`locust -f loadtests/suites/steady.py
--headless`, N users, the SLO below), while tests/support/raw_client.py (8 users, at a higher scheduling
priority where allowed, its connections from 127.0.0.2) measures the same server over the same window.

The wire: tcpdump captures the loopback packets to and from the server's port while the step runs
(tests/support/wire_capture.py). Kernel timestamps are taken as each packet is sent, so no client's
scheduling moves them: a request starts at the client's packet carrying it, its first token is the
server packet that completes the first SSE event with content (the gate's own definition, the gate's
own StreamMeter). Requests from 127.0.0.1 are the gate's, from 127.0.0.2 the reference's. Without
tcpdump (as root: `apt-get install -y tcpdump`) the wire columns are skipped and the script says so.
The captures are parsed after the last step, so parsing does not load the machine during a step.

Printed per step: the gate against the wire of its own requests (the goal: within 2% wherever the
gate calls the run valid), the reference against the wire of its requests (how far a raw client is
from the wire), the gate against the reference (the issue's first yardstick), and the wire of the
gate's requests against the wire of the reference's (how differently the server served the two), with
the gate's validity and reasons, its generator probes and the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.raw_client import command as raw_command  # noqa: E402
from support.wire_capture import Capture, CaptureUnavailable, WireReading, pair, read_pcap  # noqa: E402

from llmfleet.loadtests.capacity import auto_processes, probe_pace  # noqa: E402
from llmfleet.loadtests.samples import RequestSample, read_samples  # noqa: E402
from llmfleet.loadtests.stats import percentile, summarize  # noqa: E402
from llmfleet.values import Slo  # noqa: E402

TTFT_MS, ITL_MS, OUTPUT_TOKENS = 200, 20, 64
REFERENCE_USERS = 8
WARMUP_S = 5.0
SLO = Slo(ttft_p95_ms=250, tpot_p95_ms=30, e2e_p99_ms=5000, error_rate=0.01, goodput_ratio=0.9)
"""Close to the server's figures, so a generator's delay matters (its lag limit: 5% of 250 ms, 12.5 ms)."""
GATE_ADDRESS, REFERENCE_ADDRESS = "127.0.0.1", "127.0.0.2"
"""Source addresses that tell the two clients' connections apart on the wire: the reference binds its
own; the gate (Locust, as users run it) is left alone and connects from the server's address."""
GOAL_PCT = 2.0


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


def _clock_offset() -> float:
    """time.time() - time.perf_counter() (CLOCK_MONOTONIC, the clients' clock), read with the least delay
    between the two clocks of 20 tries: packet times minus this are perf_counter times."""
    best = (math.inf, 0.0)
    for _ in range(20):
        before = time.perf_counter()
        real = time.time()
        after = time.perf_counter()
        best = min(best, (after - before, real - (before + after) / 2))
    return best[1]


@dataclass
class Step:
    """One step as run: the gate's verdict and samples, the reference's samples, the capture."""

    kind: str
    users: int
    processes: int
    port: int
    verdict: dict[str, Any]
    gate: list[RequestSample]
    reference: list[RequestSample]
    window: tuple[float, float]
    """perf_counter seconds: the gate's first request + the warm-up, to its last request's start."""
    load: tuple[float, float]
    offset: float
    capture: Path | None
    dropped: int | None


def run_step(kind: str, url: str, users: int, processes: int, seconds: float, out: Path, wire: bool) -> Step:
    out.mkdir(parents=True)
    (out / "slo.json").write_text(SLO.model_dump_json())
    port = int(url.rsplit(":", 1)[1])
    capture = Capture(port, out / "step.pcap") if wire else None
    load_before = os.getloadavg()[0]
    offset = _clock_offset()
    with contextlib.ExitStack() as running:
        if capture is not None:
            try:
                running.enter_context(capture)
            except CaptureUnavailable as exc:  # e.g. not root: the step runs, without its wire columns
                print(f"{kind}, {users} users: no capture ({exc}); the wire columns are skipped", flush=True)
                capture = None
        reference = subprocess.Popen(
            raw_command(
                url,
                REFERENCE_USERS,
                seconds + 120,
                out / "raw.jsonl",
                output_tokens=OUTPUT_TOKENS,
                bind=REFERENCE_ADDRESS,
            ),
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
    gate = read_samples(out / "samples.jsonl")
    window = (min(s.started_at for s in gate) + WARMUP_S, max(s.started_at for s in gate))
    facts = {"kind": kind, "users": users, "processes": processes, "port": port, "offset": offset, "window": window}
    facts |= {"load": (load_before, load_after), "captured": capture is not None}
    facts |= {"dropped": capture.stats.dropped if capture else None}
    (out / "step.json").write_text(json.dumps(facts))
    return load_step(out)


def load_step(out: Path) -> Step:
    """A step from the files run_step wrote (so --reread can print a kept run again)."""
    facts = json.loads((out / "step.json").read_text())
    window = (float(facts["window"][0]), float(facts["window"][1]))
    capture = out / "step.pcap" if facts.get("captured", True) else None
    return Step(
        kind=facts["kind"],
        users=facts["users"],
        processes=facts["processes"],
        port=facts["port"],
        verdict=json.loads((out / "verdict.json").read_text()),
        gate=_within(read_samples(out / "samples.jsonl"), window),
        reference=_within(read_samples(out / "raw.jsonl"), window),
        window=window,
        load=(float(facts["load"][0]), float(facts["load"][1])),
        offset=facts["offset"],
        capture=capture,
        dropped=facts["dropped"],
    )


def _within(samples: list[RequestSample], window: tuple[float, float]) -> list[RequestSample]:
    return [s for s in samples if window[0] <= s.started_at <= window[1]]


@dataclass
class Figures:
    n: int
    ttft: tuple[float, float]
    tpot: tuple[float, float]

    @classmethod
    def of(cls, samples: list[RequestSample]) -> Figures:
        summary = summarize(samples)
        return cls(
            summary.succeeded, (summary.ttft_ms.p50, summary.ttft_ms.p95), (summary.tpot_ms.p50, summary.tpot_ms.p95)
        )

    def against(self, truth: Figures) -> list[float]:
        """TTFT p50, p95 and TPOT p50, p95 of these figures against `truth`, percent."""
        return [_pct(m, t) for m, t in zip((*self.ttft, *self.tpot), (*truth.ttft, *truth.tpot), strict=True)]

    def cells(self) -> list[str]:
        return [str(self.n), f"{self.ttft[0]:.1f} / {self.ttft[1]:.1f}", f"{self.tpot[0]:.2f} / {self.tpot[1]:.2f}"]


def _pct(measured: float, truth: float) -> float:
    return (measured - truth) / truth * 100 if truth and not (math.isnan(truth) or math.isnan(measured)) else math.nan


def _pcts(values: list[float]) -> str:
    return " / ".join("n/a" if math.isnan(v) else f"{v:+.1f}%" for v in values)


@dataclass
class Result:
    """One step's figures: each client's, and the wire's of each client's requests."""

    step: Step
    gate: Figures
    reference: Figures
    wire_gate: Figures | None
    wire_reference: Figures | None
    capture_note: str
    pairs: list[tuple[RequestSample, RequestSample]]
    """The gate's samples with the wire's of the same requests (wire_capture.pair)."""
    bursts: dict[tuple[str, str], list[float]]
    """(client address, burst class): the wire TTFTs, ms, of that client's requests in that class."""

    @classmethod
    def of(cls, step: Step) -> Result:
        wire_gate = wire_reference = None
        note = "not captured"
        pairs: list[tuple[RequestSample, RequestSample]] = []
        bursts: dict[tuple[str, str], list[float]] = {}
        if step.capture is not None:
            reading = read_pcap(step.capture, step.port, offset=step.offset, expected_output_tokens=OUTPUT_TOKENS)
            # A little beyond the window, so the wire of the gate's last requests (sent after their t0) is in.
            seen = reading.samples(GATE_ADDRESS, step.window[0], step.window[1] + 1.0)
            wire_reference = Figures.of(reading.samples(REFERENCE_ADDRESS, *step.window))
            pairs = pair([s for s in step.gate if s.ok], [s for s in seen if s.ok])
            # The wire of the very requests the gate judged, paired one to one, not of a time window: the
            # gate's last request starts on the window's edge by its t0 and a send later on the wire, so a
            # window kept it from the wire's figures (wire n one short in every step), and a slow last
            # request then moved the gate's p95 and not the wire's.
            wire_gate = Figures.of([wire for _, wire in pairs])
            dropped = "?" if step.dropped is None else str(step.dropped)
            note = f"{reading.connections} conn., {dropped} dropped, {len(reading.problems)} unreadable"
            bursts = _bursts(reading, step.window)
        gate, reference = Figures.of(step.gate), Figures.of(step.reference)
        return cls(step, gate, reference, wire_gate, wire_reference, note, pairs, bursts)

    def delays(self) -> list[str]:
        """p50 / p95 ms, over the paired requests: t0 to the request on the wire, the first token on the wire to
        the gate parsing it, gate TTFT - wire TTFT (the send side plus the gate's first token, which is the kernel's
        receive stamp of the read that delivered it), and that stamp minus the wire's time."""
        sent = [(seen.started_at - own.started_at) * 1000 for own, seen in self.pairs]
        read = [
            ((own.first_token_parsed_at or own.first_token_at or 0) - (seen.first_token_at or 0)) * 1000
            for own, seen in self.pairs
        ]
        both = [
            ((own.first_token_at or 0) - (seen.first_token_at or 0)) * 1000 + s
            for (own, seen), s in zip(self.pairs, sent, strict=True)
        ]
        stamped = [
            (own.first_token_at - seen.first_token_at) * 1000
            for own, seen in self.pairs
            if own.first_token_parsed_at is not None
            and own.first_token_at is not None
            and seen.first_token_at is not None
        ]
        return [
            f"{percentile(v, 50):.1f} / {percentile(v, 95):.1f}" if v else "n/a" for v in (sent, read, both, stamped)
        ]

    @property
    def valid(self) -> bool:
        return bool(self.step.verdict["valid"])

    def statement(self) -> str:
        """The goal, stated for this step."""
        if not self.valid:
            return "invalid: " + "; ".join(map(str, self.step.verdict["reasons"]))[:240]
        if self.wire_gate is None:
            return "valid; no wire figure (no capture)"
        worst = max(abs(v) for v in self.gate.against(self.wire_gate))
        if worst <= GOAL_PCT:
            return f"valid & within {GOAL_PCT:g}% of the wire (worst {worst:.1f}%)"
        if self.step.verdict["metrics"].get("generator", {}).get("starved"):
            # The gate keeps a pass its delay cannot have made, and flags the figures as carrying that delay.
            return (
                f"valid & off the wire by up to {worst:.1f}%, flagged: generator.starved (the pass stands, "
                "the gate says its figures carry its own delay)"
            )
        return f"valid & OFF the wire by up to {worst:.1f}% (a failure of the goal)"


QUEUE_CLASSES = ((0, "none"), (3, "1-3"), (15, "4-15"), (63, "16-63"), (1_000_000, "64 or more"))
"""How many requests (either client's) were at the server without their first token when a request arrived."""


def _bursts(reading: WireReading, window: tuple[float, float]) -> dict[tuple[str, str], list[float]]:
    """The wire TTFTs of each client's requests by how many requests were waiting for their first token
    when each arrived: a server that takes a burst one request at a time answers the later ones later,
    whoever measures them."""
    events = sorted(
        [(r.sample.started_at, 1) for r in reading.requests if r.sample.first_token_at is not None]
        + [(r.sample.first_token_at, -1) for r in reading.requests if r.sample.first_token_at is not None]
    )
    times = [at for at, _ in events]
    waiting = list(itertools.accumulate(change for _, change in events))
    found: dict[tuple[str, str], list[float]] = {}
    for request in reading.requests:
        sample = request.sample
        if not (sample.ok and window[0] <= sample.started_at <= window[1]) or sample.first_token_at is None:
            continue
        before = bisect.bisect_left(times, sample.started_at) - 1
        ahead = waiting[before] if before >= 0 else 0
        name = next(label for most, label in QUEUE_CLASSES if ahead <= most)
        found.setdefault((request.client, name), []).append((sample.first_token_at - sample.started_at) * 1000)
    return found


def _probe(p95: object, most: object) -> str:
    if not isinstance(p95, float):
        return "n/a"
    return f"{p95:.1f} ({most:.1f})" if isinstance(most, float) else f"{p95:.1f}"


def _step_cells(result: Result) -> list[str]:
    step = result.step
    return [step.kind, str(step.users), str(step.processes), "valid" if result.valid else "INVALID"]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def print_results(results: list[Result]) -> None:
    print("\nThe gate against the wire of its own requests (the goal: within 2% wherever it is valid):\n")
    print(
        "| server | users | processes | verdict | gate n | gate TTFT p50 / p95 ms | gate TPOT p50 / p95 ms | "
        "wire n | wire TTFT p50 / p95 ms | wire TPOT p50 / p95 ms | gate vs wire: TTFT p50 / p95, TPOT p50 / p95 | "
        "loop lag p95 ms | send delay p95 ms | load average |"
    )
    print("|" + "---|" * 14)
    for result in results:
        generator = result.step.verdict["metrics"].get("generator", {})
        lag, delay = generator.get("loop_lag_p95_ms"), generator.get("send_delay_p95_ms")
        wire = result.wire_gate
        print(
            _row(
                [
                    *_step_cells(result),
                    *result.gate.cells(),
                    *(wire.cells() if wire else ["n/a"] * 3),
                    _pcts(result.gate.against(wire)) if wire else "n/a",
                    f"{lag:.1f}" if isinstance(lag, float) else "n/a",
                    f"{delay:.1f}" if isinstance(delay, float) else "n/a",
                    f"{result.step.load[0]:.2f} -> {result.step.load[1]:.2f}",
                ]
            )
        )
    print("\nThe raw reference (8 users, from 127.0.0.2) against the wire of its requests, and the two yardsticks:\n")
    print(
        "| server | users | processes | verdict | ref. n | ref. TTFT p50 / p95 ms | ref. TPOT p50 / p95 ms | "
        "wire n | wire TTFT p50 / p95 ms | wire TPOT p50 / p95 ms | ref. vs wire | gate vs ref. | "
        "wire: gate's vs ref.'s requests | capture |"
    )
    print("|" + "---|" * 14)
    for result in results:
        wire, gate_wire = result.wire_reference, result.wire_gate
        print(
            _row(
                [
                    *_step_cells(result),
                    *result.reference.cells(),
                    *(wire.cells() if wire else ["n/a"] * 3),
                    _pcts(result.reference.against(wire)) if wire else "n/a",
                    _pcts(result.gate.against(result.reference)),
                    _pcts(gate_wire.against(wire)) if wire and gate_wire else "n/a",
                    result.capture_note,
                ]
            )
        )
    print("\nThe gate's own delay, request by request (its samples paired with the wire's of the same requests):\n")
    print(
        "| server | users | processes | verdict | paired / gate n | its t0 -> request on the wire p50 / p95 ms | "
        "first token on the wire -> read by the gate p50 / p95 ms | gate TTFT - wire TTFT p50 / p95 ms | "
        "its kernel stamp of the first token - the wire's p50 / p95 ms | "
        "its probes p95 (max) ms: send delay (before t0), loop lag, socket-to-handler, first-token read |"
    )
    print("|" + "---|" * 10)
    for result in results:
        generator = result.step.verdict["metrics"].get("generator", {})
        probes = [
            (generator.get(f"{name}_p95_ms"), generator.get(f"{name}_max_ms"))
            for name in ("send_delay", "loop_lag", "socket_to_handler", "first_token_read")
        ]
        print(
            _row(
                [
                    *_step_cells(result),
                    f"{len(result.pairs)} / {result.gate.n}",
                    *result.delays(),
                    ", ".join(_probe(p95, most) for p95, most in probes),
                ]
            )
        )
    print(
        "\nThe wire's TTFT p50 / p95 ms (and how many requests) by how many requests, either client's, were at the"
        " server without their first token when a request arrived:\n"
    )
    print("| server | users | processes | client | " + " | ".join(label for _, label in QUEUE_CLASSES) + " |")
    print("|" + "---|" * (4 + len(QUEUE_CLASSES)))
    for result in results:
        for client, name in ((GATE_ADDRESS, "gate"), (REFERENCE_ADDRESS, "reference")):
            cells: list[str] = []
            for _, label in QUEUE_CLASSES:
                ttfts = result.bursts.get((client, label), [])
                cells.append(
                    f"{percentile(ttfts, 50):.0f} / {percentile(ttfts, 95):.0f} ({len(ttfts)})" if ttfts else ""
                )
            step = result.step
            print(_row([step.kind, str(step.users), str(step.processes), name, *cells]))
    print("\nPer step:")
    for result in results:
        step = result.step
        metrics = step.verdict["metrics"]
        claimed = (
            f"its verdict's TTFT p95 {metrics['ttft_ms']['p95']:.1f} ms, TPOT p95 {metrics['tpot_ms']['p95']:.2f} ms"
        )
        print(f"- {step.kind}, {step.users} users, {step.processes} process(es) ({claimed}): {result.statement()}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, nargs="+", default=[8, 64, 256])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--servers", nargs="+", default=["emulator", "guidellm"], choices=["emulator", "guidellm"])
    parser.add_argument("--processes", nargs="+", default=["1", "auto"], help="1, N or auto (per step)")
    parser.add_argument("--guidellm", default=shutil.which("guidellm"), help="the guidellm executable")
    parser.add_argument("--keep", type=Path, help="keep each step's samples, verdict and capture in this folder")
    parser.add_argument("--reread", type=Path, help="print the figures of a run kept with --keep, without running")
    args = parser.parse_args(argv)
    if args.reread:
        steps = [load_step(path.parent) for path in args.reread.glob("*/step.json")]
        steps.sort(key=lambda s: (args.servers.index(s.kind) if s.kind in args.servers else 9, s.users, s.processes))
        print_results([Result.of(step) for step in steps])
        return
    wire = shutil.which("tcpdump") is not None
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs; SLO {SLO.model_dump()}")
    if not wire:
        print("no tcpdump on this machine (as root: apt-get install -y tcpdump): the wire columns are skipped")
    steps: list[Step] = []
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.keep or Path(temporary)
        for kind in args.servers:
            with server(kind, args.guidellm) as url:
                # As `llmfleet loadtest --processes auto` sizes: this machine's calibrated capacity per process
                # and the faster of the SLO's pace and the server's, probed with a few requests.
                pace = probe_pace(url, "m") if "auto" in args.processes else None
                if pace is not None:
                    print(f"{kind}: the server streams {pace:.3g} chunks/s a request (--processes auto sizes from it)")
                for users in args.users:
                    counts: list[int] = []
                    for choice in args.processes:
                        auto = choice == "auto"
                        count = (
                            auto_processes(users, SLO.tpot_p95_ms, observed_chunks_per_s=pace) if auto else int(choice)
                        )
                        if count not in counts:
                            counts.append(count)
                    for count in counts:
                        out = folder / f"{kind}-{users}u-{count}p"
                        steps.append(run_step(kind, url, users, count, args.seconds, out, wire))
                        print(f"ran {out.name}", file=sys.stderr, flush=True)
        print_results([Result.of(step) for step in steps])


if __name__ == "__main__":
    import benchdoc  # tests/benchmarks/, beside this script: --write-docs records the output

    benchdoc.run("gate", main)
