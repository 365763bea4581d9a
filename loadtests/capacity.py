"""How many streamed token chunks per second one Locust process reads on this machine: measured, cached.

`--processes auto` sizes local workers from this figure (`auto_processes` below). It is
measured, not assumed: a machine twice as fast, or a CI runner half as fast, changes it. Calibration
runs the steady suite in one Locust process against a loopback emulator streaming at a real pace
(CALIBRATION_USERS streams, a chunk every CALIBRATION_ITL_MS, each read on its own wake-up) and
divides the token chunks read over a window after Locust's start-up by the CPU time the process
spent in it: chunks per CPU-second, the process's cost, which another process's load on a shared
machine does not change much (wall-clock rates there measure the machine's load). A process at
100% of a CPU has no slack left for what it reads late, so it is given USABLE_SHARE of that
(tests/benchmarks/bench_locust.py: the TTFT error grew from +11.5 ms at 2,306 chunks/s to +43.9 ms
at 4,472), and never more than one process per CPU is started.

The load `--processes auto` sizes for is the faster of the SLO's pace (1000 / TPOT target chunks/s
per user: a server just meeting it) and the server's own, measured by `probe_pace` just before the
run: a few streamed requests, one at a time, each read for its token chunks per second. A server
faster than its target sends more chunks than the SLO says (issue 13: 256 users sized at the 30 ms
TPOT target for 8,533 chunks/s read ~12,800 in one process, over its capacity, and the gate was
off). A lone request is the server's fastest pace (at load it slows), so the estimate errs towards
more processes.

The result is cached per machine in `$XDG_CACHE_HOME/llmfleet/locust-capacity.json` (~/.cache when
unset), keyed by host name, CPU count, Python and Locust versions, for CACHE_DAYS; the environment
variable LLMFLEET_LOCUST_CHUNKS_PER_S sets it instead (e.g. a CI runner that should not calibrate).
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import httpx

from llmfleet.loadtests.prompts import SyntheticPrompts, chat_body
from llmfleet.loadtests.run import SuiteRun, die_with_parent
from llmfleet.loadtests.samples import RequestSample, read_samples
from llmfleet.loadtests.stream import StreamMeter
from llmfleet.values import Slo

ENV_OVERRIDE = "LLMFLEET_LOCUST_CHUNKS_PER_S"
CACHE_DAYS = 7.0
CALIBRATION_S = 6.0
CALIBRATION_WARMUP_S = 2.0
CALIBRATION_USERS = 24
CALIBRATION_ITL_MS = 5
CALIBRATION_TOKENS = 32
"""24 streams at a chunk every 5 ms: 4,800 chunks/s offered, each chunk its own read, as at a real
server's pace (a faster pace batches chunks per read and makes each look cheaper). Answers are short,
so the per-request cost (preparing, sending, recording the sample) is spread over few chunks: the
figure errs low for the longer answers of most gates, i.e. towards more processes."""
USABLE_SHARE = 0.5
"""Share of a whole CPU's worth of chunks one process is given (bench_locust: its delay grows near saturation)."""
MIN_CHUNKS_PER_S = 50.0
"""A calibration reading below this (a machine too busy to measure) is not trusted or cached: it is
raised to this floor for the run, which then asks for as many processes as CPUs allow."""


class CalibrationError(RuntimeError):
    """The calibration run produced no measurement (Locust or the emulator failed)."""


def cache_path() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(cache) if cache and Path(cache).is_absolute() else Path.home() / ".cache"
    return base / "llmfleet" / "locust-capacity.json"


READER_COST_VERSION = 2
"""Raised when what a process does per chunk changes, so cached figures are measured again (2: reads
stamped by the kernel, loadtests/wire.py: 13,588 and 14,326 chunks per CPU-second against 15,954 and
14,643 with plain reads, measured here at load average ~6)."""


def machine_key() -> str:
    """What the measurement depends on: the machine, its CPUs, the interpreter, Locust and our reader."""
    locust = f"locust {version('locust')}"
    return f"{platform.node()}|{os.cpu_count()}|{platform.python_version()}|{locust}|reader {READER_COST_VERSION}"


def chunks_per_process(
    *, calibrate: Callable[[], float] | None = None, path: Path | None = None, now: float | None = None
) -> float:
    """Token chunks/s one Locust process is given: the override, the cached measurement, or a new one."""
    override = os.environ.get(ENV_OVERRIDE, "").strip()
    if override:
        try:
            value = float(override)
        except ValueError:
            value = 0.0
        if value <= 0:
            raise ValueError(f"{ENV_OVERRIDE}={override!r}: expected a positive number of chunks per second")
        return value
    path = path or cache_path()
    now = time.time() if now is None else now
    key = machine_key()
    try:
        cached = json.loads(path.read_text())
        if cached["key"] == key and now - float(cached["measured_at"]) < CACHE_DAYS * 86400:
            return float(cached["chunks_per_s"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no cache, another machine's, stale or unreadable: measure
    per_cpu_s = (calibrate or calibrate_chunks_per_cpu_second)()
    usable = per_cpu_s * USABLE_SHARE
    if usable < MIN_CHUNKS_PER_S:
        return MIN_CHUNKS_PER_S
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"key": key, "measured_at": now, "chunks_per_cpu_s": per_cpu_s, "chunks_per_s": usable}
        path.write_text(json.dumps(record, indent=2) + "\n")
    except OSError:
        pass  # an unwritable cache only means measuring again next time
    return usable


def known_chunks_per_process(*, path: Path | None = None, now: float | None = None) -> float | None:
    """The override or this machine's cached measurement, without calibrating (None: neither is known)."""
    if os.environ.get(ENV_OVERRIDE, "").strip():
        try:
            return chunks_per_process(path=path, now=now)
        except ValueError:
            return None
    try:
        cached = json.loads((path or cache_path()).read_text())
        fresh = (time.time() if now is None else now) - float(cached["measured_at"]) < CACHE_DAYS * 86400
        return float(cached["chunks_per_s"]) if cached["key"] == machine_key() and fresh else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def auto_processes(
    users: int,
    tpot_target_ms: float,
    cpus: int | None = None,
    chunks_per_process: float | None = None,
    *,
    observed_chunks_per_s: float | None = None,
) -> int:
    """Local Locust processes for `users` streams, each expected at the faster of 1000/tpot_target_ms
    chunks/s (a server just meeting the SLO) and `observed_chunks_per_s` (the server's pace, from
    `probe_pace`), at most one per CPU. `chunks_per_process`: what one process reads on this machine,
    measured and cached here when not given. Where even one process per CPU is not enough, the gate's
    generator probes call the run invalid rather than blaming the server."""
    per_process = chunks_per_process if chunks_per_process is not None else _measured_chunks_per_process()
    per_user = max(1000 / tpot_target_ms, observed_chunks_per_s or 0.0)
    needed = math.ceil(users * per_user / per_process)
    return max(1, min(needed, cpus if cpus is not None else (os.cpu_count() or 1)))


def _measured_chunks_per_process() -> float:
    return chunks_per_process()  # the module's function: auto_processes' argument of that name shadows it


def calibrate_chunks_per_cpu_second() -> float:
    """Run the calibration (about CALIBRATION_S + Locust's start-up): token chunks one Locust process
    reads per second of its own CPU time, at a realistic pace (a chunk every CALIBRATION_ITL_MS per
    stream, each its own wake-up). CPU time, not wall time: on a shared machine a process waiting for
    a CPU reads nothing but spends nothing, so the figure is the process's cost, not the machine's load."""
    emulator = [sys.executable, "-m", "llmfleet.loadtests.emulator", "--port", "0", "--ttft-ms", "0"]
    emulator += ["--itl-ms", str(CALIBRATION_ITL_MS), "--output-tokens", str(CALIBRATION_TOKENS)]
    server = subprocess.Popen(emulator, stdout=subprocess.PIPE, text=True, preexec_fn=die_with_parent)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().partition(" on ")[2].split(" ")[0].strip()
        if not url:
            raise CalibrationError("the calibration emulator did not start")
        with tempfile.TemporaryDirectory(prefix="llmfleet-calibrate-") as folder:
            samples_path = Path(folder) / "samples.jsonl"
            run = SuiteRun(
                suite="steady",
                host=url,
                model="calibration",
                report=Path(folder) / "verdict.json",
                duration_s=CALIBRATION_S,
                users=CALIBRATION_USERS,
                slo=Slo(ttft_p95_ms=60_000, tpot_p95_ms=60_000, e2e_p99_ms=60_000, error_rate=0.99, goodput_ratio=0.01),
                extra=("--llm-output-tokens", str(CALIBRATION_TOKENS), "--llm-prompt-tokens", "8"),
            )
            run.slo_file().write_text(run.slo.model_dump_json())
            command = [*run.command(), "--llm-samples", str(samples_path)]
            locust = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent
            )
            try:
                time.sleep(CALIBRATION_WARMUP_S)  # Locust's start-up (imports) spends CPU reading nothing
                window = (time.perf_counter(), _cpu_seconds(locust.pid))
                time.sleep(CALIBRATION_S - CALIBRATION_WARMUP_S - 1.0)  # ends before the run stops
                window_end = (time.perf_counter(), _cpu_seconds(locust.pid))
                locust.wait(timeout=CALIBRATION_S + 120)
            finally:
                locust.kill()
                locust.wait(timeout=10)
            samples = read_samples(samples_path) if samples_path.exists() else []
    finally:
        server.kill()
        server.wait(timeout=10)
    chunks = sum(1 for s in samples for t in s.token_chunk_times if window[0] <= t <= window_end[0])
    cpu_s = window_end[1] - window[1]
    if chunks == 0 or cpu_s <= 0:
        raise CalibrationError(f"the calibration run measured nothing ({chunks} chunks in {cpu_s:.2f} CPU s)")
    return chunks / cpu_s


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; perf_counter shares its clock, CLOCK_MONOTONIC)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def chunk_rate(samples: list[RequestSample], warmup_s: float) -> float | None:
    """Token chunks read per second between the warm-up's end and the last chunk (None: none read)."""
    times = [t for s in samples for t in s.token_chunk_times]
    if not times:
        return None
    start = min(s.started_at for s in samples) + warmup_s
    end = max(times)
    window = [t for t in times if t >= start]
    return len(window) / (end - start) if end > start and window else None


PACE_PROBE_REQUESTS = 3
PACE_PROBE_TOKENS = 32
PACE_PROBE_TIMEOUT_S = 30.0


def probe_pace(
    host: str,
    model: str,
    headers: dict[str, str] | None = None,
    *,
    requests: int = PACE_PROBE_REQUESTS,
    output_tokens: int = PACE_PROBE_TOKENS,
    timeout_s: float = PACE_PROBE_TIMEOUT_S,
) -> float | None:
    """Token chunks per second the server streams one request at, the fastest of `requests` sent one
    after another (each: (chunks - 1) / (last chunk - first chunk)); None when no request streamed two
    chunks (unreachable, failing, one-token answers: then the SLO's TPOT alone sizes the run)."""
    path = "/chat/completions" if host.rstrip("/").endswith("/v1") else "/v1/chat/completions"
    prompts = SyntheticPrompts(16, output_tokens, seed=0)
    paces: list[float] = []
    try:
        with httpx.Client(base_url=host.rstrip("/"), timeout=timeout_s, headers=headers or {}) as client:
            for _ in range(requests):
                meter = StreamMeter(time.perf_counter())
                body = chat_body(model, prompts.next(), stream=True)
                with client.stream("POST", path, json=body) as response:
                    if response.status_code != 200:
                        continue
                    for data in response.iter_raw():
                        meter.feed(data)
                        if meter.done:
                            break
                times = meter.finish(response.status_code).token_chunk_times
                if len(times) >= 2 and times[-1] > times[0]:
                    paces.append((len(times) - 1) / (times[-1] - times[0]))
    except httpx.HTTPError:
        pass  # the run itself will say what is wrong with the server; here it only means no figure
    return max(paces) if paces else None
