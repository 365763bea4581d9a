"""Raw samples across Locust processes, and the SLO gate at the end of the run.

Every Locust process keeps the raw `RequestSample` of each request it made. Workers send theirs to
the master with each stats report (`report_to_master` / `worker_report`); the master (or the single
local process) runs the gate when Locust quits (`events.quitting`), writes the JSON verdict and sets
`environment.process_exit_code` to the verdict's 0 / 3 / 4.

Two things Locust does not do for us:
- Draining. At the end Locust kills users mid-request, and in distributed mode the master stops
  listening 0.5 s after telling workers to quit, so requests in flight and the last samples would be
  lost (and the longest requests are the likeliest to be in flight: a bias). When the test stops,
  the master tells each worker to drain (start nothing new, let requests in flight finish, send the
  rest of its samples) and waits for every worker's final batch before Locust goes on.
- Clocks. Samples hold `perf_counter` times of the process that measured them; the master shifts
  each worker's samples onto its own clock through the wall clock (exact on one host, NTP-accurate
  across hosts). Latencies are differences within one sample and are not affected.

The drain is bounded: requests have a deadline (--llm-request-timeout, by default twice the SLO's E2E
p99 target), the drain waits that long plus DRAIN_MARGIN_S, and any request still open then becomes a
`timed_out` failure sample: every request sent ends as a sample, and the run ends on time.

Generator health is measured, not assumed: every process runs a probe that sleeps LAG_PROBE_S and
records how late it woke (its event-loop lag: how long any response waited before its handler ran).
The gate gets the p95 over the measured window of the worst process; a starved generator (other work
on the machine, or too many users in one process) then makes the run invalid instead of condemning
the server with its own delay. Locust's CPU warning does not see starvation (the process is not busy,
it is not scheduled), the probe does. The third probe is the kernel's: every read of a response is
stamped with the time its data arrived (loadtests/wire.py), and the read's socket-to-handler delay is
counted per process (loadtests/delays.py); the gate judges the worst process's p95 like the lag.
Each process's token chunks are counted too, so the busiest process's chunks/s is reported beside
the capacity `--processes auto` sized for (loadtests/capacity.py).
"""

from __future__ import annotations

import logging
import struct
import subprocess
import sys
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gevent
from gevent.event import Event
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from llmfleet.loadtests import capacity, delays, gate, wire
from llmfleet.loadtests.gate import DRAIN_MARGIN_S, request_timeout_s
from llmfleet.loadtests.run import die_with_parent, unwritable
from llmfleet.loadtests.samples import RequestSample, timed_out_sample, write_samples
from llmfleet.loadtests.stats import percentile
from llmfleet.values import ExitCode, Slo

logger = logging.getLogger("llmfleet.loadtest")

DRAIN_MESSAGE = "llmfleet_drain"
SAMPLES_MESSAGE = "llmfleet_samples"
PAYLOAD_KEY = "llmfleet"
Evaluator = Callable[[Sequence[RequestSample], Slo, gate.RunInfo], gate.Verdict]
LATE_START_S = 0.05
"""An open-loop request started this long after it was due, with a free slot, means the generator lags."""
LATE_SHARE_OVERLOADED = 0.01
"""Above this share of late starts the run is invalid: the generator, not the server, set the pace."""
LAG_PROBE_S = 0.05
"""How often each process measures its event-loop lag (20 wake-ups a second: negligible work)."""
_BEACON = (
    "import os, struct, sys, time\n"
    "every = float(sys.argv[1])\n"
    "while True:\n"
    "    os.write(1, struct.pack('d', time.perf_counter()))\n"
    "    time.sleep(every)\n"
)
"""The beacon process: CLOCK_MONOTONIC stamps (perf_counter, the same clock in every process on Linux)."""


LLM_STACK_MOVED = (
    "give the stack's SLO as a file, --llm-slo FILE (its slo: block copied as is), "
    "or run `llmfleet loadtest --stack NAME`, which reads the stack"
)


@events.init_command_line_parser.add_listener
def _add_gate_options(parser: Any, **_: Any) -> None:
    group = parser.add_argument_group("llmfleet SLO gate")
    group.add_argument(
        "--llm-slo", default=None, help="SLO file (YAML/JSON: the stack's slo: block, bare or under slo:)."
    )
    # Stack files are the operator side's (`llmfleet loadtest --stack`); kept only to say what replaced it.
    group.add_argument("--llm-stack", default=None, help=f"Not read by the suites: {LLM_STACK_MOVED}.")
    group.add_argument("--llm-report", default=None, help="Write the JSON verdict here.")
    group.add_argument("--llm-samples", default=None, help="Write every raw sample here (JSON lines).")
    group.add_argument("--llm-warmup", type=float, default=0.0, help="Seconds at the start excluded from the gate.")
    group.add_argument("--llm-min-samples", type=int, default=20, help="Fewer samples than this: the run is invalid.")
    group.add_argument(
        "--llm-drain-timeout",
        type=float,
        default=0.0,
        help="Seconds to let requests in flight end (0: the request timeout plus a margin); then they time out.",
    )


class SampleCollector:
    """The samples and end-of-run bookkeeping of one Locust process."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.samples: list[RequestSample] = []
        """Master/local: every sample of the run. Worker: samples not yet sent to the master."""
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self.draining = False
        """Set when the test stops: users start no new request."""
        self.late_starts = 0
        self.scheduled_starts = 0
        self.expected_samples: int | None = None
        """When every user has a request budget: the run ends once this many samples are in."""
        self.evaluate: Evaluator = gate.evaluate
        """How the samples become a verdict; suites with their own checks (gateway, failover) replace it."""
        self._inflight = 0
        self._idle = Event()
        self._idle.set()
        self._workers_pending: set[str] = set()
        self._workers_done = Event()
        self.processes = 1
        """Load-generating processes seen when the test stopped."""
        self._worker_late: dict[str, tuple[int, int]] = {}
        """Per worker, its cumulative (late starts, scheduled starts)."""
        self._quitting = False
        self.slo: Slo | None = None
        """Master/local: the SLO judging the run, loaded (and checked) when Locust starts."""
        self._open: dict[int, tuple[float, float | None, int | None, bool]] = {}
        """Requests sent and not yet ended: (started_at, scheduled_at, max_tokens, streamed) by ticket."""
        self._tickets = 0
        self._sealed = False
        """Set once the drain ended: what is still open became timeout samples; later samples are dropped."""
        self.loop_lag: list[tuple[float, float]] = []
        """(when, lag s) of this process's probe; a worker sends and clears it with each report."""
        self._worker_lag: dict[str, list[tuple[float, float]]] = {}
        self.socket_delays: list[tuple[float, int, int]] = []
        """This process's socket-to-handler readings (second, bin, count) taken from loadtests/wire.py."""
        self._worker_socket_delays: dict[str, list[tuple[float, int, int]]] = {}
        self._worker_samples: dict[str, list[RequestSample]] = {}
        """Master: each worker's samples (the same objects as in `samples`), for its own chunk rate."""
        self._probe: gevent.Greenlet[Any] | None = None
        self._beacon_reader: gevent.Greenlet[Any] | None = None
        self._beacon: subprocess.Popen[bytes] | None = None

    # -- recording (every process) -------------------------------------------------------------

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        """Wrap each request so draining can wait for it."""
        self._inflight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    def open_request(self, started_at: float, scheduled_at: float | None, max_tokens: int | None) -> int:
        """A request was sent: until close_request, the end of the drain turns it into a timeout sample."""
        self._tickets += 1
        streamed = not bool(getattr(self.environment.parsed_options, "llm_non_streaming", False))
        self._open[self._tickets] = (started_at, scheduled_at, max_tokens, streamed)
        return self._tickets

    def close_request(self, ticket: int) -> None:
        self._open.pop(ticket, None)

    def seal(self) -> None:
        """The drain is over: requests still open are timed-out failures, and nothing is recorded after."""
        if self._sealed:
            return
        for started_at, scheduled_at, max_tokens, streamed in self._open.values():
            error = "still open when the run ended (the drain waited out the request timeout)"
            self.samples.append(timed_out_sample(started_at, scheduled_at, max_tokens, error, streamed))
        self._open.clear()
        self._sealed = True
        self._stop_probes()

    def _stop_probes(self) -> None:
        for greenlet in (self._probe, self._beacon_reader):
            if greenlet is not None:
                greenlet.kill(block=False)
        self._probe = self._beacon_reader = None
        if self._beacon is not None:
            self._beacon.kill()
            self._beacon = None

    def request_timeout_s(self) -> float:
        """--llm-request-timeout, or REQUEST_TIMEOUT_E2E_MULTIPLE x the SLO's E2E p99 target."""
        options = self.environment.parsed_options
        given = float(getattr(options, "llm_request_timeout", 0.0) or 0.0)
        if given > 0:
            return given
        given = float(getattr(options, "llm_request_timeout_s", 0.0) or 0.0)  # a worker: the master's
        if given > 0:
            return given
        return request_timeout_s(self.slo or Slo())

    def drain_timeout_s(self) -> float:
        given = float(getattr(self.environment.parsed_options, "llm_drain_timeout", 0.0) or 0.0)
        return given if given > 0 else self.request_timeout_s() + DRAIN_MARGIN_S

    def _start_probes(self) -> None:
        if self._probe is None:
            self._probe = gevent.spawn(self._measure_loop_lag)
        if self._beacon is None:
            # A separate OS process (not gevent) stamps the time every LAG_PROBE_S into a pipe; reading
            # each stamp is an I/O event like a response chunk, so its lateness is the delay a response
            # waits between arriving and its handler running (the process busy with other users, or
            # not scheduled). A timer alone sees only part of it (measured: a timer p95 of 58 ms while
            # first tokens were read ~230 ms late).
            try:
                self._beacon = subprocess.Popen(
                    [sys.executable, "-c", _BEACON, str(LAG_PROBE_S)],
                    stdout=subprocess.PIPE,
                    stdin=subprocess.DEVNULL,
                    preexec_fn=die_with_parent,
                )
            except (OSError, subprocess.SubprocessError) as exc:  # the timer probe still runs
                logger.warning("generator I/O probe not started (%s): event-loop lag from the timer only", exc)
                return
            self._beacon_reader = gevent.spawn(self._read_beacon, self._beacon)

    def _read_beacon(self, beacon: subprocess.Popen[bytes]) -> None:
        assert beacon.stdout is not None
        pending = b""
        while True:
            data = beacon.stdout.read(8)  # cooperative: Locust runs with gevent's subprocess
            if not data:
                return
            now = time.perf_counter()
            pending += data
            while len(pending) >= 8:
                (stamp,) = struct.unpack("d", pending[:8])
                pending = pending[8:]
                self.loop_lag.append((stamp, max(now - stamp, 0.0)))

    def _measure_loop_lag(self) -> None:
        while True:
            before = time.perf_counter()
            gevent.sleep(LAG_PROBE_S)
            self.loop_lag.append((before, max(time.perf_counter() - before - LAG_PROBE_S, 0.0)))

    def record(self, sample: RequestSample) -> None:
        if self._sealed:
            return  # ended after the drain closed it as timed out: already counted
        self.samples.append(sample)
        if self.expected_samples is not None and len(self.samples) >= self.expected_samples:
            self.end_run()

    def note_start(self, late: bool) -> None:
        """An open-loop arrival started; `late` when the generator (not the in-flight cap) delayed it."""
        self.scheduled_starts += 1
        self.late_starts += int(late)

    def user_finished(self) -> None:
        """A user used up its request budget: on a worker, send what we have now (the master counts)."""
        runner = self.environment.runner
        if isinstance(runner, WorkerRunner):
            runner.send_message(SAMPLES_MESSAGE, self._payload(final=False))

    # -- worker side -----------------------------------------------------------------------------

    def _payload(self, *, final: bool) -> dict[str, Any]:
        batch, self.samples = self.samples, []
        lag, self.loop_lag = self.loop_lag, []
        return {
            "samples": [s.to_dict() for s in batch],
            "loop_lag": lag,
            "socket_delays": wire.take_readings(),
            "late_starts": self.late_starts,
            "scheduled_starts": self.scheduled_starts,
            "wall_minus_perf": time.time() - time.perf_counter(),
            "final": final,
        }

    def _on_report_to_master(self, data: dict[str, Any], **_: Any) -> None:
        data[PAYLOAD_KEY] = self._payload(final=False)

    def _on_drain_request(self, environment: Environment, msg: Any, **_: Any) -> None:
        self.draining = True
        self._idle.wait(timeout=float(msg.data["timeout"]))
        self.seal()
        runner = environment.runner
        assert isinstance(runner, WorkerRunner)
        runner.send_message(SAMPLES_MESSAGE, self._payload(final=True))

    # -- master side -----------------------------------------------------------------------------

    def _ingest(self, client_id: str, payload: dict[str, Any] | None) -> None:
        if not payload:
            return
        master_offset = time.time() - time.perf_counter()
        shift = payload["wall_minus_perf"] - master_offset
        own = self._worker_samples.setdefault(client_id, [])
        for raw in payload["samples"]:
            sample = RequestSample.from_dict(raw).shifted(shift)
            if not self._sealed:
                own.append(sample)
            self.record(sample)
        lag = self._worker_lag.setdefault(client_id, [])
        lag.extend((when + shift, value) for when, value in payload.get("loop_lag", []))
        socket_delays = self._worker_socket_delays.setdefault(client_id, [])
        socket_delays.extend((second + shift, b, n) for second, b, n in payload.get("socket_delays", []))
        self._worker_late[client_id] = (payload["late_starts"], payload["scheduled_starts"])
        if payload["final"]:
            self._workers_pending.discard(client_id)
            if not self._workers_pending:
                self._workers_done.set()

    def _on_worker_report(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        self._ingest(client_id, data.get(PAYLOAD_KEY))

    def _on_samples_message(self, environment: Environment, msg: Any, **_: Any) -> None:
        self._ingest(msg.node_id, msg.data)

    # -- end of run (master / local) -------------------------------------------------------------

    def _on_test_start(self, **_: Any) -> None:
        self.samples.clear()
        self.started_at = time.perf_counter()
        self.stopped_at = None
        self.draining = False
        self._sealed = False
        self.late_starts = self.scheduled_starts = 0
        self.loop_lag.clear()
        self._worker_lag.clear()
        wire.take_readings()  # reads before the test started are not the run's
        self.socket_delays.clear()
        self._worker_socket_delays.clear()
        self._worker_samples.clear()
        self._start_probes()

    def _on_test_stopping(self, environment: Environment, **_: Any) -> None:
        runner = environment.runner
        if isinstance(runner, WorkerRunner) or self.stopped_at is not None:
            return
        self.stopped_at = time.perf_counter()
        self.draining = True
        timeout = self.drain_timeout_s()
        if isinstance(runner, MasterRunner):
            self._workers_pending = {client.id for client in runner.clients.all}
            self.processes = len(self._workers_pending)
            if self._workers_pending:
                self._workers_done.clear()
                runner.send_message(DRAIN_MESSAGE, {"timeout": timeout})
                self._workers_done.wait(timeout=timeout + 10)
        else:
            self._idle.wait(timeout=timeout)
        self.seal()

    def end_run(self) -> None:
        """Every budgeted request is in: end the run now rather than at --run-time."""
        runner = self.environment.runner
        if self._quitting or runner is None:
            return
        self._quitting = True
        gevent.spawn(runner.quit)

    def generator_late_share(self) -> float:
        late, scheduled = self.late_starts, self.scheduled_starts
        for worker_late, worker_scheduled in self._worker_late.values():
            late, scheduled = late + worker_late, scheduled + worker_scheduled
        return late / scheduled if scheduled else 0.0

    def generator_lag_ms(self, start: float, end: float) -> tuple[float | None, float | None]:
        """(p95 of the worst process, max of any) event-loop lag between start and end; None: no reading."""
        worst_p95: float | None = None
        worst: float | None = None
        for readings in [self.loop_lag, *self._worker_lag.values()]:
            window = [lag * 1000 for when, lag in readings if start <= when <= end]
            if window:
                p95 = percentile(window, 95)
                worst_p95 = p95 if worst_p95 is None else max(worst_p95, p95)
                worst = max(window) if worst is None else max(worst, *window)
        return worst_p95, worst

    def socket_delay_ms(self, start: float, end: float) -> tuple[float | None, float | None]:
        """(p95 of the worst process, max of any) socket-to-handler delay between start and end; None: not measured."""
        self.socket_delays.extend(wire.take_readings())
        worst_p95: float | None = None
        worst: float | None = None
        for rows in [self.socket_delays, *self._worker_socket_delays.values()]:
            bins = delays.in_window(rows, start, end)
            p95, top = delays.percentile_s(bins, 95), delays.largest_s(bins)
            if p95 is not None and top is not None:
                worst_p95 = p95 * 1000 if worst_p95 is None else max(worst_p95, p95 * 1000)
                worst = top * 1000 if worst is None else max(worst, top * 1000)
        return worst_p95, worst

    def chunk_rates(self, start: float, end: float) -> list[float]:
        """Token chunks read per second between start and end, per load-generating process."""
        groups = list(self._worker_samples.values()) or [self.samples]
        if end <= start:
            return []
        return [
            sum(1 for s in group for t in s.token_chunk_times if start <= t <= end) / (end - start) for group in groups
        ]

    def verdict(self) -> gate.Verdict:
        environment = self.environment
        options = environment.parsed_options
        runner = environment.runner
        cpu_overloaded = bool(runner and (runner.cpu_warning_emitted or runner.worker_cpu_warning_emitted))
        late_share = self.generator_late_share()
        now = time.perf_counter()
        started_at = self.started_at if self.started_at is not None else now
        ended_at = self.stopped_at if self.stopped_at is not None else now
        warmup_s = float(getattr(options, "llm_warmup", 0.0))
        lag_p95_ms, lag_max_ms = self.generator_lag_ms(started_at + warmup_s, ended_at)
        socket_p95_ms, socket_max_ms = self.socket_delay_ms(started_at + warmup_s, ended_at)
        rates = self.chunk_rates(started_at + warmup_s, ended_at)
        read_p95_ms, read_max_ms = gate.first_token_read_ms(
            [s for s in self.samples if s.started_at >= started_at + warmup_s]
        )
        chunk_capacity = capacity.known_chunks_per_process()
        run = gate.RunInfo(
            started_at=started_at,
            ended_at=ended_at,
            warmup_s=warmup_s,
            min_samples=int(getattr(options, "llm_min_samples", 20)),
            target_rate=getattr(options, "llm_rate", None) or None,
            generator_overloaded=cpu_overloaded or late_share > LATE_SHARE_OVERLOADED,
            generator_lag_p95_ms=lag_p95_ms,
            generator_lag_max_ms=lag_max_ms,
            socket_to_handler_p95_ms=socket_p95_ms,
            socket_to_handler_max_ms=socket_max_ms,
            first_token_read_p95_ms=read_p95_ms,
            first_token_read_max_ms=read_max_ms,
            chunks_per_s_max=max(rates) if rates else None,
            chunks_per_s_capacity=chunk_capacity,
        )
        slo = self.slo or gate.load_slo(_path(getattr(options, "llm_slo", None)))
        verdict = self.evaluate(self.samples, slo, run)
        verdict.metrics["generator"] = {
            "cpu_overloaded": cpu_overloaded,
            "late_start_share": late_share,
            "loop_lag_p95_ms": lag_p95_ms,
            "loop_lag_max_ms": lag_max_ms,
            "send_delay_p95_ms": _send_delay_p95_ms(self.samples, started_at + warmup_s),
            "socket_to_handler_p95_ms": socket_p95_ms,
            "socket_to_handler_max_ms": socket_max_ms,
            "ttft_parsed_ms": _ttft_parsed_ms(self.samples, started_at + warmup_s),
            "first_token_read_p95_ms": read_p95_ms,
            "first_token_read_max_ms": read_max_ms,
            "starved": gate.starved_probes(run, slo) != [],
            "chunks_per_s_per_process": rates,
            "chunks_per_s_capacity": chunk_capacity,
            "over_capacity": gate.over_capacity(run) is not None,
            "processes": self.processes,
            "request_timeout_s": self.request_timeout_s(),
        }
        problems = _run_problems(environment, self._workers_pending)
        if lag_p95_ms is None and ended_at - (started_at + warmup_s) > 1.0:
            problems.append("the load generator's health was not measured (no event-loop probe reading)")
        if problems:
            verdict.valid = False
            verdict.reasons.extend(problems)
        return verdict

    def _on_quitting(self, environment: Environment, **_: Any) -> None:
        if isinstance(environment.runner, WorkerRunner):
            return
        verdict = self.verdict()
        report = getattr(environment.parsed_options, "llm_report", None)
        if report:
            verdict.write(Path(report))
        samples_path = getattr(environment.parsed_options, "llm_samples", None)
        if samples_path:
            write_samples(self.samples, Path(samples_path))
        environment.process_exit_code = verdict.exit_code
        failed = [f"{c.metric} {c.stat} {c.observed} {c.op} {c.threshold}" for c in verdict.checks if not c.passed]
        logger.info(
            "SLO gate: exit %s (%s); %d samples%s%s",
            verdict.exit_code,
            "valid" if verdict.valid else "INVALID: " + "; ".join(verdict.reasons),
            len(self.samples),
            "; breached: " + ", ".join(failed) if failed else "",
            f"; verdict in {report}" if report else "",
        )


def _run_problems(environment: Environment, workers_pending: set[str]) -> list[str]:
    """Reasons the measurement itself cannot be trusted (beyond what the gate checks on samples)."""
    problems: list[str] = []
    runner = environment.runner
    if workers_pending:
        problems.append(f"no final samples from worker(s) {sorted(workers_pending)}: samples are missing")
    if runner is not None and runner.exceptions:
        count = sum(int(row["count"]) for row in runner.exceptions.values())
        first = next(iter(runner.exceptions.values()))["msg"]
        problems.append(f"the load generator raised {count} exception(s), first: {first}")
    return problems


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


_collectors: weakref.WeakKeyDictionary[Environment, SampleCollector] = weakref.WeakKeyDictionary()


def collector_of(environment: Environment) -> SampleCollector:
    """The collector of this Locust process (installed when Locust initialises)."""
    collector = _collectors.get(environment)
    if collector is None:
        collector = _collectors[environment] = SampleCollector(environment)
    return collector


def _check_before_load(environment: Environment) -> str | None:
    """Master/local, before any load: the SLO loads and the report can be written; else what is wrong."""
    options = environment.parsed_options
    collector = collector_of(environment)
    if getattr(options, "llm_stack", None):
        return f"--llm-stack {options.llm_stack}: {LLM_STACK_MOVED}"
    try:
        collector.slo = gate.load_slo(_path(getattr(options, "llm_slo", None)))
    except gate.SloFileError as exc:
        return str(exc)
    for flag, value in (
        ("--llm-report", getattr(options, "llm_report", None)),
        ("--llm-samples", getattr(options, "llm_samples", None)),
    ):
        if value:
            problem = unwritable(Path(value))
            if problem:
                return f"{flag} {value}: {problem}"
    return None


@events.init.add_listener
def _install(environment: Environment, **_: Any) -> None:
    collector = collector_of(environment)
    env_events = environment.events
    env_events.test_start.add_listener(collector._on_test_start)
    env_events.test_stopping.add_listener(collector._on_test_stopping)
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        if getattr(environment.parsed_options, "processes", None):
            die_with_parent()  # forked by --processes: an orphaned worker would keep sending load
        env_events.report_to_master.add_listener(collector._on_report_to_master)
        runner.register_message(DRAIN_MESSAGE, collector._on_drain_request, concurrent=True)
    else:
        problem = _check_before_load(environment)
        if problem:
            logger.error("%s", problem)
            sys.exit(ExitCode.USAGE)  # bad input, before any load: the same exit code as `llmfleet loadtest`'s
        env_events.quitting.add_listener(collector._on_quitting)
        if isinstance(runner, MasterRunner):
            env_events.worker_report.add_listener(collector._on_worker_report)
            runner.register_message(SAMPLES_MESSAGE, collector._on_samples_message)


def _send_delay_p95_ms(samples: list[RequestSample], start: float) -> float | None:
    """p95 of the time from a user deciding to send to its request starting on the connection (over the
    judged window): the generator's own delay, kept out of every latency (loadtests/wire.py), shown here."""
    delays = [s.send_delay_s * 1000 for s in samples if s.send_delay_s is not None and s.started_at >= start]
    return percentile(delays, 95) if delays else None


def _ttft_parsed_ms(samples: list[RequestSample], start: float) -> dict[str, float] | None:
    """TTFT to when the generator parsed the first token (the gated TTFT ends at its kernel receive stamp):
    p50/p95 over the judged window, beside the gated TTFT to show what the correction took out."""
    values = [
        (s.first_token_parsed_at - s.started_at) * 1000
        for s in samples
        if s.ok and s.first_token_parsed_at is not None and s.started_at >= start
    ]
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95)} if values else None
