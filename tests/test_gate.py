"""The SLO gate's boundaries (reference case 13): at the threshold passes, NaN and zero samples fail,
the warm-up is excluded, invalid runs exit 4 whatever the latencies, and the verdict JSON has the
fields the issue names. Samples are built by hand so every expected figure is known exactly.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from llmfleet.loadtests import gate
from llmfleet.loadtests.gate import RunInfo, evaluate, load_slo
from llmfleet.loadtests.samples import RequestSample
from llmfleet.values import ExitCode, Slo

SLO = Slo(ttft_p95_ms=200, tpot_p95_ms=20, e2e_p99_ms=1000, error_rate=0.1, goodput_ratio=0.5)


def sample(
    start: float,
    *,
    ttft_ms: float = 100,
    tpot_ms: float = 10,
    tokens: int = 11,
    ok: bool = True,
    scheduled: float | None = None,
    reasoning_ms: float = 0,
) -> RequestSample:
    """A streamed request started at `start` s with exactly these TTFT and TPOT; its visible content
    starts `reasoning_ms` after the first token (the model reasons first)."""
    first = start + ttft_ms / 1000
    last = first + tpot_ms / 1000 * (tokens - 1)
    return RequestSample(
        started_at=start,
        ended_at=last,
        ok=ok,
        scheduled_at=scheduled,
        first_token_at=first if ok else None,
        first_content_at=first + reasoning_ms / 1000 if ok else None,
        last_token_at=last if ok else None,
        token_chunk_times=[first + i * tpot_ms / 1000 for i in range(tokens)] if ok else [],
        output_tokens=tokens if ok else 0,
        output_tokens_from_usage=ok,
        status=200 if ok else 500,
        error=None if ok else "HTTP 500",
    )


def steady(n: int = 40, **kwargs: Any) -> list[RequestSample]:
    return [sample(10 + i * 0.1, **kwargs) for i in range(n)]


RUN = RunInfo(started_at=10, ended_at=20, min_samples=20)


def checks_by_metric(verdict: gate.Verdict) -> dict[str, gate.Check]:
    return {c.metric: c for c in verdict.checks}


def test_a_run_well_inside_the_slo_passes_with_one_check_per_target() -> None:
    verdict = evaluate(steady(), SLO, RUN)
    assert verdict.exit_code == ExitCode.OK, verdict
    checks = checks_by_metric(verdict)
    assert set(checks) == {"ttft_ms", "tpot_ms", "e2e_ms", "error_rate", "goodput_ratio"}
    assert checks["ttft_ms"].observed == pytest.approx(100)
    assert checks["tpot_ms"].observed == pytest.approx(10)
    assert checks["e2e_ms"].observed == pytest.approx(200)
    assert checks["goodput_ratio"].observed == 1.0
    assert all(c.n == 40 for c in checks.values())


def test_exactly_at_every_threshold_passes() -> None:
    # TTFT 200 ms, TPOT 20 ms over 41 tokens: E2E = 200 + 40 * 20 = 1000 ms, all exactly at the SLO.
    samples = steady(36, ttft_ms=200, tpot_ms=20, tokens=41) + [sample(20, ok=False) for _ in range(4)]
    verdict = evaluate(samples, SLO, RunInfo(started_at=10, ended_at=21, min_samples=20))
    checks = checks_by_metric(verdict)
    assert checks["ttft_ms"].observed == pytest.approx(200)
    assert checks["e2e_ms"].observed == pytest.approx(1000)
    assert checks["error_rate"].observed == pytest.approx(0.1)
    assert verdict.exit_code == ExitCode.OK, verdict


@pytest.mark.parametrize(
    ("metric", "kwargs"),
    [("ttft_ms", {"ttft_ms": 200.5}), ("tpot_ms", {"tpot_ms": 20.1}), ("e2e_ms", {"ttft_ms": 150, "tpot_ms": 19.9})],
)
def test_just_past_a_latency_threshold_breaches(metric: str, kwargs: dict[str, float]) -> None:
    tokens = 51 if metric == "e2e_ms" else 11  # 150 + 50 * 19.9 = 1145 ms > 1000 with TPOT inside
    verdict = evaluate(steady(40, tokens=tokens, **kwargs), SLO, RUN)
    assert verdict.exit_code == ExitCode.BREACH
    # Every request misses that target, so none counts towards goodput either.
    assert {c.metric for c in verdict.breaches} == {metric, "goodput_ratio"}


def test_the_p95_is_exact_on_raw_samples() -> None:
    # 100 samples with TTFT 1..100 ms: numpy's linear p95 is 95.05 ms.
    samples = [sample(10 + i * 0.05, ttft_ms=i + 1) for i in range(100)]
    just_below = Slo(ttft_p95_ms=95.04, tpot_p95_ms=20, e2e_p99_ms=1000, error_rate=0.1, goodput_ratio=0.01)
    at = just_below.model_copy(update={"ttft_p95_ms": 95.05})
    assert checks_by_metric(evaluate(samples, at, RUN))["ttft_ms"].passed
    assert not checks_by_metric(evaluate(samples, just_below, RUN))["ttft_ms"].passed


def test_error_rate_and_goodput_breach() -> None:
    failing = steady(30) + [sample(12, ok=False) for _ in range(10)]  # 25% errors
    verdict = evaluate(failing, SLO, RUN)
    assert {c.metric for c in verdict.breaches} == {"error_rate"}
    slow = steady(20) + steady(20, ttft_ms=300)  # half the requests miss TTFT: goodput ratio 0.5 (at the limit)
    assert checks_by_metric(evaluate(slow, SLO, RUN))["goodput_ratio"].passed
    slower = steady(19) + steady(21, ttft_ms=300)
    assert "goodput_ratio" in {c.metric for c in evaluate(slower, SLO, RUN).breaches}


def test_zero_samples_never_pass() -> None:
    verdict = evaluate([], SLO, RunInfo(started_at=0, ended_at=10, min_samples=0))
    assert verdict.exit_code == ExitCode.INVALID
    assert not verdict.valid and "too few samples" in verdict.reasons[0]
    assert not any(c.passed for c in verdict.checks)  # NaN observed fails every check
    json.dumps(verdict.to_json(), allow_nan=False)  # NaN is written as null


def test_all_requests_failed_is_a_breach_not_a_pass() -> None:
    verdict = evaluate([sample(11 + i * 0.1, ok=False) for i in range(30)], SLO, RUN)
    assert verdict.exit_code == ExitCode.BREACH
    checks = checks_by_metric(verdict)
    assert checks["ttft_ms"].observed is not None and math.isnan(checks["ttft_ms"].observed)
    assert not checks["ttft_ms"].passed and checks["ttft_ms"].n == 0


def test_the_warmup_is_excluded() -> None:
    cold = [sample(10 + i * 0.05, ttft_ms=5000) for i in range(20)]  # 10.0 .. 10.95 s: in the 1 s warm-up
    warm = [sample(11 + i * 0.1) for i in range(30)]
    verdict = evaluate(cold + warm, SLO, RunInfo(started_at=10, ended_at=20, warmup_s=1, min_samples=20))
    assert verdict.exit_code == ExitCode.OK, verdict
    assert verdict.metrics["run"]["samples_in_warmup"] == 20
    assert checks_by_metric(verdict)["ttft_ms"].n == 30
    assert evaluate(cold + warm, SLO, RUN).exit_code == ExitCode.BREACH  # without the warm-up it breaches


def test_too_few_samples_after_the_warmup_is_invalid() -> None:
    verdict = evaluate(steady(19), SLO, RUN)
    assert verdict.exit_code == ExitCode.INVALID
    assert verdict.reasons == ["too few samples after the warm-up: 19 < 20"]
    assert evaluate(steady(20), SLO, RUN).exit_code == ExitCode.OK


def test_an_overloaded_generator_is_invalid_even_when_latencies_pass() -> None:
    overloaded = RunInfo(started_at=10, ended_at=20, generator_overloaded=True)
    verdict = evaluate(steady(), SLO, overloaded)
    assert all(c.passed for c in verdict.checks)
    assert verdict.exit_code == ExitCode.INVALID and "overloaded" in verdict.reasons[0]


def test_open_loop_judges_latency_from_the_due_time_and_the_achieved_rate() -> None:
    # 10 req/s asked for over 10 s; each request started 300 ms after it was due (queued).
    queued = [sample(10.3 + i * 0.1, scheduled=10 + i * 0.1) for i in range(100)]
    verdict = evaluate(queued, SLO, RunInfo(started_at=10, ended_at=20, target_rate=10))
    checks = checks_by_metric(verdict)
    assert checks["ttft_from_due_ms"].observed == pytest.approx(400)  # 300 queued + 100 TTFT
    assert verdict.exit_code == ExitCode.BREACH
    # Arrivals are counted by due time: queueing (the server's doing) does not lower the achieved rate.
    assert verdict.metrics["run"]["achieved_rate"] == pytest.approx(10)
    # Half the arrivals: the generator fell behind, the run says nothing about the server.
    sparse = [sample(10 + i * 0.2, scheduled=10 + i * 0.2) for i in range(50)]
    short = evaluate(sparse, SLO, RunInfo(started_at=10, ended_at=20, target_rate=10))
    assert short.exit_code == ExitCode.INVALID and "below the target" in short.reasons[0]
    # A Poisson count a little under the target over a short window is not a shortfall.
    assert gate.rate_shortfall(arrived=85, window_s=10, target_rate=10) is None
    assert gate.rate_shortfall(arrived=60, window_s=10, target_rate=10) is not None


def test_time_to_first_visible_token_is_reported_apart_from_ttft() -> None:
    """Reasoning before content (reference case 3): TTFT counts the first reasoning token, TTFVT the
    first visible one; both are in the verdict's metrics, and a sample with no content is left out."""
    samples = [sample(10 + i * 0.1, ttft_ms=100 + i, reasoning_ms=60) for i in range(40)]
    samples[0].first_content_at = None  # e.g. only tool calls
    metrics = evaluate(samples, SLO, RUN).metrics
    assert metrics["ttft_ms"]["n"] == 40 and metrics["ttfvt_ms"]["n"] == 39
    assert metrics["ttft_ms"]["p50"] == pytest.approx(119.5)  # 100..139 ms
    assert metrics["ttfvt_ms"]["p50"] == pytest.approx(180)  # 101..139 ms + 60 ms
    assert metrics["ttfvt_ms"]["p99"] == pytest.approx(100 + 1 + 0.99 * 38 + 60)


def test_the_verdict_json_round_trips_with_the_issue_fields(tmp_path: Path) -> None:
    verdict = evaluate(steady(), SLO, RUN)
    path = tmp_path / "out" / "verdict.json"
    verdict.write(path)
    data = json.loads(path.read_text())
    assert {"checks", "metrics", "valid", "reasons", "exit_code"} <= set(data)
    assert set(data["checks"][0]) == {"metric", "stat", "op", "threshold", "observed", "n", "pass"}
    for name in ("ttft_ms", "ttfvt_ms", "tpot_ms", "e2e_ms"):
        assert {"p50", "p90", "p95", "p99"} <= set(data["metrics"][name])
    for name in ("error_rate", "output_tokens_per_s", "requests_per_s", "goodput"):
        assert isinstance(data["metrics"][name], float | int), name
    again = gate.Verdict.read(path)
    assert again.exit_code == verdict.exit_code and again.checks == verdict.checks


def test_an_accepted_values_check_keeps_the_issue_schema(tmp_path: Path) -> None:
    """The gateway suite's wrong-key check: op "in", the accepted statuses as the threshold."""
    path = tmp_path / "verdict.json"
    refused = gate.Check("gateway.status_with_wrong_key", "value", "in", [401, 403], 401, 1, passed=True)
    gate.Verdict(checks=[refused]).write(path)
    data = json.loads(path.read_text())
    assert data["checks"] == [
        {"metric": "gateway.status_with_wrong_key", "stat": "value", "op": "in", "threshold": [401, 403]}
        | {"observed": 401, "n": 1, "pass": True}
    ]
    assert gate.Verdict.read(path).checks == [refused] and gate.Verdict.read(path).exit_code == ExitCode.OK
    served = gate.Check("gateway.status_with_wrong_key", "value", "in", [401, 403], 200, 1, passed=False)
    assert gate.Verdict(checks=[served]).exit_code == ExitCode.BREACH


def test_load_slo_from_a_file_or_defaults(tmp_path: Path) -> None:
    assert load_slo() == Slo()
    bare = tmp_path / "slo.yaml"
    bare.write_text("ttft_p95_ms: 300\n")
    assert load_slo(path=bare).ttft_p95_ms == 300
    wrapped = tmp_path / "slo.json"
    wrapped.write_text('{"slo": {"e2e_p99_ms": 5000}}')
    assert load_slo(path=wrapped).e2e_p99_ms == 5000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ttft_p95_ms: -1\n", "slo.ttft_p95_ms: Input should be greater than 0"),
        ("ttft_p95: 100\n", "slo.ttft_p95: unknown field"),
        ("error_rate: 1.5\n", "slo.error_rate: Input should be less than 1"),
        ("[1, 2]\n", "expected a mapping of SLO fields"),
        ("a: [\n", "not valid YAML"),
    ],
)
def test_a_bad_slo_file_names_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "slo.yaml"
    path.write_text(text)
    with pytest.raises(gate.SloFileError, match=message.replace("[", r"\[")):
        load_slo(path=path)


def test_a_missing_slo_file_is_an_slo_file_error(tmp_path: Path) -> None:
    with pytest.raises(gate.SloFileError, match="cannot read"):
        load_slo(path=tmp_path / "absent.yaml")


def test_a_binary_slo_file_is_an_slo_file_error_not_a_traceback(tmp_path: Path) -> None:
    binary = tmp_path / "slo.yaml"
    binary.write_bytes(b"\xff\xfe\x00ttft")
    with pytest.raises(gate.SloFileError, match=r"not UTF-8 text \(byte 0\)"):
        load_slo(path=binary)


# Issue 13: checks that do not apply, a server never reached, a starved generator.


def test_a_check_with_no_applicable_sample_passes_and_says_so() -> None:
    one_token = steady(tokens=1)  # classifiers and routers answer one token: TPOT is undefined
    verdict = evaluate(one_token, SLO, RUN)
    assert verdict.exit_code == ExitCode.OK, verdict
    tpot = checks_by_metric(verdict)["tpot_ms"]
    assert (tpot.passed, tpot.applicable, tpot.observed, tpot.n) == (True, False, None, 0)
    assert tpot.to_json()["applicable"] is False and "applicable" not in checks_by_metric(verdict)["ttft_ms"].to_json()
    assert verdict.metrics["goodput_ratio"] == 1.0
    # A few multi-token answers among them: TPOT applies, judged on those.
    mixed = one_token + steady(5, tpot_ms=30)
    assert checks_by_metric(evaluate(mixed, SLO, RUN))["tpot_ms"].applicable
    assert "tpot_ms" in {c.metric for c in evaluate(mixed, SLO, RUN).breaches}
    assert gate.Check.from_json(tpot.to_json()) == tpot


def unreached(start: float) -> RequestSample:
    return RequestSample(started_at=start, ended_at=start + 0.001, ok=False, error="ConnectionError", unreached=True)


def test_a_server_never_reached_is_invalid_not_a_breach() -> None:
    verdict = evaluate([unreached(11 + i * 0.1) for i in range(30)], SLO, RUN)
    assert verdict.exit_code == ExitCode.INVALID
    assert any("never reached" in reason for reason in verdict.reasons), verdict.reasons
    # Reached once: the refusals are real failures of a server that exists, a breach.
    partly = [unreached(11 + i * 0.1) for i in range(30)] + steady(10)
    verdict = evaluate(partly, SLO, RUN)
    assert verdict.exit_code == ExitCode.BREACH and not verdict.reasons, verdict


def test_a_starved_generator_never_gives_a_latency_breach() -> None:
    limit_ms = gate.GENERATOR_LAG_SHARE * SLO.ttft_p95_ms  # 10 ms of lag against a 200 ms target
    within = RunInfo(started_at=10, ended_at=20, min_samples=20, generator_lag_p95_ms=limit_ms)
    assert evaluate(steady(ttft_ms=240), SLO, within).exit_code == ExitCode.BREACH  # lag at the limit: valid
    starved = RunInfo(
        started_at=10, ended_at=20, min_samples=20, generator_lag_p95_ms=limit_ms * 1.01, generator_lag_max_ms=50
    )
    # Any latency breach measured by a starved generator, however large: invalid, not a breach (its
    # probes understate what a response waits).
    for ttft_ms in (240, 2000):
        verdict = evaluate(steady(ttft_ms=ttft_ms), SLO, starved)
        assert verdict.exit_code == ExitCode.INVALID, (ttft_ms, verdict)
        assert any("starved" in reason and "ttft_ms" in reason for reason in verdict.reasons), verdict.reasons
    # An error-rate breach is the server's: it stands.
    failing = steady(30) + [sample(12, ok=False) for _ in range(10)]
    assert evaluate(failing, SLO, starved).exit_code == ExitCode.BREACH
    # A pass is no evidence either: its figures carry the lag, and its users sent less load than asked.
    verdict = evaluate(steady(tpot_ms=10), SLO, starved)
    assert verdict.exit_code == ExitCode.INVALID, verdict
    assert any("starved" in r and "a pass is no evidence" in r for r in verdict.reasons), verdict.reasons
    assert evaluate(steady(tpot_ms=10), SLO, within).exit_code == ExitCode.OK  # at the limit: the pass stands


def test_a_late_socket_to_handler_delay_makes_a_breach_invalid_and_names_that_probe() -> None:
    """The kernel-stamped read delay (loadtests/wire.py) is judged like the event-loop lag: over 5% of the
    TTFT target it voids a verdict it could have made, and the reason says which probe was over."""
    limit_ms = gate.GENERATOR_LAG_SHARE * SLO.ttft_p95_ms
    at_limit = RunInfo(started_at=10, ended_at=20, min_samples=20, socket_to_handler_p95_ms=limit_ms)
    assert evaluate(steady(ttft_ms=240), SLO, at_limit).exit_code == ExitCode.BREACH
    quiet_loop = RunInfo(
        started_at=10,
        ended_at=20,
        min_samples=20,
        generator_lag_p95_ms=1.0,  # the timer saw nothing: only the socket probe did
        generator_lag_max_ms=3.0,
        socket_to_handler_p95_ms=limit_ms * 1.01,
        socket_to_handler_max_ms=40.0,
    )
    assert gate.starved_probes(quiet_loop, SLO) == [gate.Probe("socket-to-handler delay", limit_ms * 1.01, 40.0)]
    verdict = evaluate(steady(ttft_ms=240), SLO, quiet_loop)
    assert verdict.exit_code == ExitCode.INVALID, verdict
    (reason,) = verdict.reasons
    assert "socket-to-handler delay p95 10.1 ms (worst 40.0 ms)" in reason and "event-loop" not in reason, reason
    # A pass is invalid too; an error-rate breach stands.
    assert evaluate(steady(), SLO, quiet_loop).exit_code == ExitCode.INVALID
    failing = steady(30) + [sample(12, ok=False) for _ in range(10)]
    assert evaluate(failing, SLO, quiet_loop).exit_code == ExitCode.BREACH
    # Both probes over: both named. Neither measured: nothing is assumed.
    both = RunInfo(started_at=10, ended_at=20, min_samples=20, generator_lag_p95_ms=30.0, socket_to_handler_p95_ms=20.0)
    (reason,) = evaluate(steady(ttft_ms=240), SLO, both).reasons
    assert "event-loop lag p95 30.0 ms" in reason and "socket-to-handler delay p95 20.0 ms" in reason, reason
    assert gate.starved_probes(RUN, SLO) == []


def test_a_process_over_its_capacity_voids_what_it_could_have_made() -> None:
    """Issue 13: one process read ~12,800 chunks/s against a capacity of 9,955 with its loop lag at 2.3 ms,
    and its TTFT p95 was far off a raw client's in runs called valid. Over capacity is judged like a
    starved probe for breaches (invalid) and error-rate breaches (they stand); its pass stands while the
    probes show the process kept up (the capacity is a sizing figure with margin)."""
    full = RunInfo(started_at=10, ended_at=20, min_samples=20, chunks_per_s_max=9955, chunks_per_s_capacity=9955)
    assert gate.over_capacity(full) is None
    assert evaluate(steady(ttft_ms=240), SLO, full).exit_code == ExitCode.BREACH
    over = RunInfo(
        started_at=10,
        ended_at=20,
        min_samples=20,
        generator_lag_p95_ms=2.3,  # under the 10 ms limit: only the chunk rate says it
        generator_lag_max_ms=30.0,
        chunks_per_s_max=12_800,
        chunks_per_s_capacity=9955,
    )
    verdict = evaluate(steady(ttft_ms=240), SLO, over)
    assert verdict.exit_code == ExitCode.INVALID, verdict
    (reason,) = verdict.reasons
    assert "12,800 token chunks/s, over the 9,955" in reason and "starved" not in reason, reason
    assert evaluate(steady(), SLO, over).exit_code == ExitCode.OK
    failing = steady(30) + [sample(12, ok=False) for _ in range(10)]
    assert evaluate(failing, SLO, over).exit_code == ExitCode.BREACH
    starved_too = replace(over, generator_lag_p95_ms=30.0)  # a probe over its limit: the pass is void too
    assert evaluate(steady(), SLO, starved_too).exit_code == ExitCode.INVALID
    unknown = RunInfo(started_at=10, ended_at=20, min_samples=20, chunks_per_s_max=12_800)  # never calibrated
    assert evaluate(steady(ttft_ms=240), SLO, unknown).exit_code == ExitCode.BREACH


def test_the_first_token_read_late_is_judged_from_the_samples_themselves() -> None:
    """Each sample keeps the kernel's receive stamp of the read that delivered its first token; the time
    from it to the first token parsed is the generator's own share of that TTFT. `evaluate` reads it from
    the samples (no probe needed from the caller), and judges its p95 like the other probes."""

    def late(delay_ms: float) -> list[RequestSample]:
        samples = steady(ttft_ms=240)
        for s in samples:
            assert s.first_token_at is not None
            s.first_token_parsed_at = s.first_token_at + delay_ms / 1000
        return samples

    assert gate.first_token_read_ms(late(4.0)) == (pytest.approx(4.0), pytest.approx(4.0))
    assert gate.first_token_read_ms(steady()) == (None, None)  # no stamps (TLS): not measured
    assert evaluate(late(4.0), SLO, RUN).exit_code == ExitCode.BREACH  # under the 10 ms limit: the server's
    verdict = evaluate(late(30.0), SLO, RUN)
    assert verdict.exit_code == ExitCode.INVALID, verdict
    (reason,) = verdict.reasons
    assert "first-token read delay p95 30.0 ms" in reason, reason
    # A caller's own figure wins over the samples' (the collector passes what it measured).
    given = RunInfo(
        started_at=10, ended_at=20, min_samples=20, first_token_read_p95_ms=1.0, first_token_read_max_ms=1.0
    )
    assert evaluate(late(30.0), SLO, given).exit_code == ExitCode.BREACH
