"""The SLO gate: raw samples + an SLO -> a verdict with an exit code (0 pass, 3 breach, 4 invalid).

`evaluate(samples, slo, run)` is a pure function; Locust's master calls it when a run ends
(loadtests/collect.py), the rollout command can call it on any samples, and `loadtests.run.run_suite`
runs a suite against a host and returns the verdict.

Rules (issue 6, docs/loadtesting.md):
- Samples due before `started_at + warmup_s` are dropped first; everything after is judged raw.
- One check per SLO target, each {metric, stat, op, threshold, observed, n, pass}. Exactly at the
  threshold passes; an undefined (NaN) figure fails, except where the metric does not apply: a
  latency check with no applicable sample while requests did succeed (TPOT when every answer is one
  token, TTFT/TPOT when nothing was streamed) passes with `applicable: false`, observed null, n 0.
  Without any successful request the latency figures are NaN and fail.
- Open-loop runs are judged on latencies from when each request was due, so queue time in a lagging
  generator or behind a stalled server counts; the check's metric says so (`ttft_from_due_ms`).
- The verdict's `metrics` are the judged samples' stats.Summary (ttft_ms, ttfvt_ms, tpot_ms, e2e_ms,
  itl_per_chunk_ms with p50/p90/p95/p99, error_rate, throughput, goodput, ...) plus the run and the SLO.
  TTFVT (first visible content) is reported, not gated: the SLO's TTFT target is on the first token.
- The run is invalid (exit 4, whatever the checks say) when it cannot support a verdict: fewer samples
  than `min_samples` (zero samples never pass), the load generator overloaded, an open-loop run whose
  achieved arrival rate fell short of its target, no request ever reaching the server (every judged
  request refused, unresolved or failing TLS: a typo in --host is not a breach), or the generator's own
  delay (its event-loop lag, the socket-to-handler delay of its reads stamped by the kernel: p95 of
  its worst process; or the first token's read delay, p95 over requests) over GENERATOR_LAG_SHARE of
  the TTFT target, whatever the checks say: its figures carry its own delay and its users sent less
  load than asked, so neither a breach nor a pass is evidence; only an error-rate breach stands. The
  probes are in the verdict's `generator` metrics either way. A process reading more token chunks/s
  than its measured capacity voids the breaches it could have made (its probes judge its passes).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import yaml
from pydantic import ValidationError

from llmfleet.loadtests.samples import RequestSample
from llmfleet.loadtests.stats import (
    Distribution,
    LatencyLimits,
    Summary,
    due_at,
    json_number,
    percentile,
    summarize,
    within,
)
from llmfleet.values import ExitCode, Slo

DEFAULT_MIN_SAMPLES = 20
RATE_SHORTFALL = 0.1
"""An open-loop run whose arrivals fall more than this share below the target rate is invalid..."""
RATE_SIGMAS = 3.0
"""...unless the shortfall is within this many standard deviations of a Poisson count (short runs)."""

REQUEST_TIMEOUT_E2E_MULTIPLE = 2.0
"""Default request deadline: this many times the SLO's E2E p99 target (a request that slow has failed it)."""
DRAIN_MARGIN_S = 2.0
"""At the end of a run the drain waits the request deadline plus this; what is still open then times out."""
GENERATOR_LAG_SHARE = 0.05
"""A generator whose delay p95 (any probe) exceeds this share of the TTFT (or E2E) target is starved: its
figures carry its own delay and its users sent less load than asked, so the run is invalid (see _starved)."""

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": within,
    ">=": lambda observed, floor: not math.isnan(observed) and observed >= floor,
}


Threshold = float | list[float]
"""A check's limit: a number for "<=", ">=" and "==", the accepted values for "in" (e.g. [401, 403])."""


@dataclass
class Check:
    """One comparison in the verdict; `passed` is written as `pass` in JSON."""

    metric: str
    stat: str
    op: str
    threshold: Threshold
    observed: float | None
    n: int
    passed: bool
    applicable: bool = True
    """False: no sample this metric applies to (e.g. TPOT of one-token answers); such a check passes."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "metric": self.metric,
            "stat": self.stat,
            "op": self.op,
            "threshold": self.threshold,
            "observed": json_number(self.observed),
            "n": self.n,
            "pass": self.passed,
        }
        if not self.applicable:
            out["applicable"] = False  # only written where a metric does not apply
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Check:
        fields = {k: data[k] for k in ("metric", "stat", "op", "threshold", "observed", "n")}
        return cls(**fields, passed=bool(data["pass"]), applicable=bool(data.get("applicable", True)))


@dataclass
class Verdict:
    checks: list[Check]
    metrics: dict[str, Any] = field(default_factory=dict[str, Any])
    valid: bool = True
    reasons: list[str] = field(default_factory=list[str])
    """Why the run is invalid (empty when valid)."""

    @property
    def passed(self) -> bool:
        return self.valid and all(check.passed for check in self.checks)

    @property
    def exit_code(self) -> ExitCode:
        if not self.valid:
            return ExitCode.INVALID
        return ExitCode.OK if self.passed else ExitCode.BREACH

    @property
    def breaches(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]

    def to_json(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "valid": self.valid,
            "reasons": self.reasons,
            "checks": [check.to_json() for check in self.checks],
            "metrics": self.metrics,
        }

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, allow_nan=False) + "\n")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verdict:
        return cls(
            checks=[Check.from_json(c) for c in data["checks"]],
            metrics=data.get("metrics", {}),
            valid=bool(data["valid"]),
            reasons=list(data.get("reasons", [])),
        )

    @classmethod
    def read(cls, path: Path) -> Verdict:
        return cls.from_json(cast(dict[str, Any], json.loads(path.read_text())))


@dataclass(frozen=True)
class RunInfo:
    """What the gate needs to know about the run besides its samples (perf_counter seconds)."""

    started_at: float
    ended_at: float
    warmup_s: float = 0.0
    min_samples: int = DEFAULT_MIN_SAMPLES
    target_rate: float | None = None
    """Open loop: the total arrival rate asked for, requests/s (None: closed loop)."""
    generator_overloaded: bool = False
    """Locust's CPU warning fired, or open-loop requests started late: the generator set the pace."""
    generator_lag_p95_ms: float | None = None
    """The generator's event-loop lag p95 over the measured window, of its worst process (None: not measured)."""
    generator_lag_max_ms: float | None = None
    """The largest event-loop lag over the measured window, any process."""
    socket_to_handler_p95_ms: float | None = None
    """p95 over the measured window, of the worst process, of how long response data waited in the
    socket (kernel receive stamp) before the generator read it (loadtests/wire.py; None: not measured)."""
    socket_to_handler_max_ms: float | None = None
    """The largest socket-to-handler delay over the measured window, any process."""
    first_token_read_p95_ms: float | None = None
    """p95 over the judged requests of the time from the kernel's receive stamp of the read that
    delivered the first token to the first token parsed (None: not measured; `evaluate` computes it
    from the samples when not given)."""
    first_token_read_max_ms: float | None = None
    chunks_per_s_max: float | None = None
    """Token chunks/s read over the measured window by the busiest load-generating process."""
    chunks_per_s_capacity: float | None = None
    """What one process is sized to read on this machine (loadtests/capacity.py; None: never measured)."""

    @property
    def measured_from(self) -> float:
        return self.started_at + self.warmup_s


class SloFileError(ValueError):
    """An SLO file cannot be read or holds no valid SLO (the message names the file and the field): exit 2."""


def load_slo(path: Path | None = None) -> Slo:
    """The SLO of a YAML/JSON file with the `slo:` schema; None: the schema's defaults.

    The file holds the Slo fields at the top level, or under `slo:` (a stack's block copied as is).
    Reading a stack file is the command's job (`llmfleet loadtest --stack`): the load tests take values.
    Bad input raises SloFileError naming the field.
    """
    if path is None:
        return Slo()
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML
    except OSError as exc:
        raise SloFileError(f"--slo {path}: cannot read the SLO file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise SloFileError(f"--slo {path}: not UTF-8 text (byte {exc.start}): save the SLO file as UTF-8") from None
    except yaml.YAMLError as exc:
        raise SloFileError(f"--slo {path}: not valid YAML or JSON: {exc}") from None
    if isinstance(document, dict) and set(cast(dict[str, Any], document)) == {"slo"}:
        document = cast(dict[str, Any], document)["slo"]
    if not isinstance(document, dict):
        raise SloFileError(f"--slo {path}: expected a mapping of SLO fields ({', '.join(Slo.model_fields)})")
    try:
        return Slo.model_validate(document)
    except ValidationError as exc:
        problems = [f"slo.{'.'.join(str(p) for p in e['loc'])}: {_message(e['type'], e['msg'])}" for e in exc.errors()]
        raise SloFileError(f"--slo {path}: invalid SLO\n  " + "\n  ".join(problems)) from None


def _message(kind: str, msg: str) -> str:
    if kind == "extra_forbidden":
        return f"unknown field (allowed: {', '.join(Slo.model_fields)})"
    return msg


@dataclass(frozen=True)
class Probe:
    """One measure of the generator's own delay over the judged window."""

    name: str
    p95_ms: float
    max_ms: float


def starved_probes(run: RunInfo, slo: Slo) -> list[Probe]:
    """The generator-delay probes whose p95 is over lag_limit_ms (empty: not starved, or not measured)."""
    limit = lag_limit_ms(slo)
    measured = [
        ("event-loop lag", run.generator_lag_p95_ms, run.generator_lag_max_ms),
        ("socket-to-handler delay", run.socket_to_handler_p95_ms, run.socket_to_handler_max_ms),
        ("first-token read delay", run.first_token_read_p95_ms, run.first_token_read_max_ms),
    ]
    return [Probe(name, p95, max(top or 0.0, p95)) for name, p95, top in measured if p95 is not None and p95 > limit]


def first_token_read_ms(samples: Sequence[RequestSample]) -> tuple[float | None, float | None]:
    """(p95, max) over successful samples of first token parsed - its read's kernel receive stamp: how late
    the generator read each first token, measured where it counts (None: no stamp, e.g. TLS). The TTFT
    itself ends at the stamp; the probe says when even the stamp may be late (a read so late that it took
    the next segments too is stamped with the newest)."""
    delays = [
        (s.first_token_parsed_at - s.first_token_at) * 1000
        for s in samples
        if s.ok and s.first_token_at is not None and s.first_token_parsed_at is not None
    ]
    return (percentile(delays, 95), max(delays)) if delays else (None, None)


def over_capacity(run: RunInfo) -> str | None:
    """How a process read more token chunks/s than its measured capacity, or None."""
    rate, capacity = run.chunks_per_s_max, run.chunks_per_s_capacity
    if rate is None or capacity is None or rate <= capacity:
        return None
    return f"a process read {rate:,.0f} token chunks/s, over the {capacity:,.0f} one process is sized for"


def lag_limit_ms(slo: Slo) -> float:
    """Event-loop lag p95 above which the generator is starved: GENERATOR_LAG_SHARE of the TTFT (or E2E) target."""
    return GENERATOR_LAG_SHARE * min(slo.ttft_p95_ms, slo.e2e_p99_ms)


def request_timeout_s(slo: Slo) -> float:
    """The default per-request deadline, seconds (--llm-request-timeout overrides it)."""
    return REQUEST_TIMEOUT_E2E_MULTIPLE * slo.e2e_p99_ms / 1000


def after_warmup(samples: Sequence[RequestSample], run: RunInfo) -> list[RequestSample]:
    """The samples the gate judges: those due at or after the end of the warm-up."""
    return [s for s in samples if due_at(s) >= run.measured_from]


def slo_checks(summary: Summary, slo: Slo) -> list[Check]:
    """One check per SLO target, on latencies from the due time in open-loop runs."""
    due = "_from_due" if summary.open_loop else ""
    latency: list[tuple[str, Distribution, str, float]] = [
        (f"ttft{due}_ms", summary.ttft_from_due_ms if due else summary.ttft_ms, "p95", slo.ttft_p95_ms),
        ("tpot_ms", summary.tpot_ms, "p95", slo.tpot_p95_ms),
        (f"e2e{due}_ms", summary.e2e_from_due_ms if due else summary.e2e_ms, "p99", slo.e2e_p99_ms),
    ]
    checks: list[Check] = []
    for metric, dist, stat, limit in latency:
        if dist.n == 0 and summary.succeeded > 0:
            # Requests succeeded, none of them is one this metric is defined on: it does not apply.
            checks.append(Check(metric, stat, "<=", limit, None, 0, passed=True, applicable=False))
        else:
            checks.append(_check(metric, stat, "<=", limit, dist.stat(stat), dist.n))
    checks.append(_check("error_rate", "value", "<=", slo.error_rate, summary.error_rate, summary.n))
    checks.append(_check("goodput_ratio", "value", ">=", slo.goodput_ratio, summary.goodput_ratio, summary.n))
    return checks


def _check(metric: str, stat: str, op: str, threshold: float, observed: float, n: int) -> Check:
    return Check(metric, stat, op, threshold, observed, n, passed=_OPS[op](observed, threshold))


def rate_shortfall(arrived: int, window_s: float, target_rate: float) -> str | None:
    """Why the achieved arrival rate is too far below the target to judge the server, or None."""
    expected = target_rate * window_s
    floor = min(expected * (1 - RATE_SHORTFALL), expected - RATE_SIGMAS * math.sqrt(expected))
    if arrived >= floor:
        return None
    achieved = arrived / window_s if window_s > 0 else 0.0
    return (
        f"achieved rate {achieved:.3g} req/s is below the target {target_rate:g} req/s "
        f"({arrived} requests due, {expected:.0f} expected): the load generator could not keep up"
    )


def evaluate(samples: Sequence[RequestSample], slo: Slo, run: RunInfo) -> Verdict:
    """Judge the samples after the warm-up against the SLO."""
    judged = after_warmup(samples, run)
    if run.first_token_read_p95_ms is None:
        read_p95, read_max = first_token_read_ms(judged)
        run = replace(run, first_token_read_p95_ms=read_p95, first_token_read_max_ms=read_max)
    limits = LatencyLimits(ttft_ms=slo.ttft_p95_ms, tpot_ms=slo.tpot_p95_ms, e2e_ms=slo.e2e_p99_ms)
    summary = summarize(judged, limits)
    reasons: list[str] = []
    min_samples = max(run.min_samples, 1)
    if summary.n < min_samples:
        reasons.append(f"too few samples after the warm-up: {summary.n} < {min_samples}")
    if judged and all(s.unreached for s in judged):
        first = next((s.error for s in judged if s.error), "no response")
        reasons.append(
            f"the server was never reached: all {len(judged)} requests failed before any HTTP response "
            f"(connection refused, DNS or TLS; first: {first}); check --host"
        )
    if run.generator_overloaded:
        reasons.append("the load generator was overloaded (CPU or late starts): latencies include its delays")
    window_s = run.ended_at - run.measured_from
    achieved_rate: float | None = None
    if run.target_rate and window_s > 0:
        # Arrivals due within the window, however long they queued: a generator that falls behind
        # reaches fewer due times by the end (a stalled server does not; its requests just wait).
        arrived = sum(1 for s in judged if due_at(s) <= run.ended_at)
        achieved_rate = arrived / window_s
        shortfall = rate_shortfall(arrived, window_s, run.target_rate)
        if shortfall:
            reasons.append(shortfall)
    metrics = summary.to_json()
    metrics["run"] = {
        "samples_total": len(samples),
        "samples_in_warmup": len(samples) - len(judged),
        "warmup_s": run.warmup_s,
        "window_s": json_number(window_s),
        "target_rate": run.target_rate,
        "achieved_rate": json_number(achieved_rate),
    }
    metrics["slo"] = slo.model_dump()
    checks = slo_checks(summary, slo)
    starved = _starved(checks, slo, run)
    if starved:
        reasons.append(starved)
    return Verdict(checks=checks, metrics=metrics, valid=not reasons, reasons=reasons)


def _starved(checks: Sequence[Check], slo: Slo, run: RunInfo) -> str | None:
    """Why the generator's own delay makes this verdict unsafe, or None.

    A generator whose delay p95 (event-loop lag, socket-to-handler delay, or first-token read delay) is
    over GENERATOR_LAG_SHARE of the TTFT (or E2E) target reads responses late, by more than a timer shows
    (a response waits behind the other users' work: a timer p95 of 58 ms was measured while first tokens
    were read ~230 ms late), and even the kernel's receive stamps are late after such a stall (a late read
    takes the next segments too and carries the newest one's stamp). Its figures then carry its own delay,
    and its closed-loop users, slower to finish each request, sent less load than asked for. So neither a
    breach nor a pass it measures is evidence about the server at that load: the run is invalid (issue 13:
    "make the run invalid when it is a material share of the SLO targets"). Only an error-rate breach
    stands: refusals and broken streams are the server's, whatever the generator's delay.

    A process reading more chunks/s than its measured capacity makes the breaches it could have made
    invalid: on a quiet machine one process at 256 users read ~12,800 chunks/s against its 9,955, its loop
    lag p95 was 2.3 ms, and its TTFT p95 was 14% over a raw client's in a run called valid
    (docs/benchmarks.md). Its pass stands while every probe shows it kept up: the capacity is a sizing
    figure with margin (half a CPU's worth of chunks), and the probes measure what it actually did."""
    probes = starved_probes(run, slo)
    overfull = over_capacity(run)
    if not probes and overfull is None:
        return None
    if any(check.metric == "error_rate" and not check.passed for check in checks):
        return None  # the server's failures, whatever the generator's delay
    breached = [
        f"{check.metric} {check.stat} {check.observed:.4g} breached, measured with that delay"
        for check in checks
        if check.applicable and not check.passed and check.observed is not None
    ]
    limit = lag_limit_ms(slo)
    causes: list[str] = []
    if probes:
        measured = " and ".join(f"its {p.name} p95 {p.p95_ms:.1f} ms (worst {p.max_ms:.1f} ms)" for p in probes)
        causes.append(f"was starved: {measured} over {GENERATOR_LAG_SHARE:.0%} of the TTFT target ({limit:.1f} ms)")
    if overfull is not None:
        causes.append(f"was over its capacity: {overfull}")
    if breached:
        why = f"that could have made this verdict ({'; '.join(breached)})"
    elif probes:
        why = "its figures carry that delay and its users sent less load than asked, so a pass is no evidence either"
    else:
        return None  # over its sized capacity, but every probe shows it kept up: its pass stands
    return (
        f"the load generator {'; and '.join(causes)}; {why}: more --processes, fewer users per process, "
        "or a less busy machine"
    )
