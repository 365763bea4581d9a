"""The reviewer cases of docs/loadtesting.md, measured end to end on loopback.

A plain httpx client feeds StreamMeter exactly as the Locust user does; the emulator injects the
latencies, and the measured values are checked against them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from itertools import pairwise
from typing import Any

import httpx
import pytest

from llmfleet.loadtests.emulator import Emulator, EmulatorConfig
from llmfleet.loadtests.samples import RequestSample
from llmfleet.loadtests.stats import summarize
from llmfleet.loadtests.stream import StreamMeter, measure_response

TIMEOUT = httpx.Timeout(10.0)


def chat(max_tokens: int, *, stream: bool = True, usage: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "emulated-model",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": stream,
    }
    if stream and usage:
        body["stream_options"] = {"include_usage": True}
    return body


_CLIENT = httpx.Client(timeout=TIMEOUT)  # built once: an httpx.Client costs ~30 ms (its TLS context)


def stream_sample(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> RequestSample:
    """One streamed request, measured as a load-test user would: feed every read, stop at [DONE]."""
    started = time.perf_counter()
    meter = StreamMeter(started, expected_output_tokens=body.get("max_tokens"))
    with _CLIENT.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as response:
        for data in response.iter_raw():
            meter.feed(data)
            if meter.done:
                break
        return meter.finish(response.status_code)


def concurrent_samples(url: str, body: dict[str, Any], n: int = 4) -> list[RequestSample]:
    """n identical requests at once (several measurements for the price of one)."""
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: stream_sample(url, body), range(n)))


# Timing on a shared 2-core machine: scheduling delays only ever ADD time, and by any amount, so these
# end-to-end tests hold measured times only to what load cannot break: nothing is measured before the
# server could have sent it (a meter that stamps early fails), and events come in the order sent. That
# the meter does not stamp late (one read behind, bunched events) is held exactly, with a controlled
# clock, in test_stream.py; how close it comes on real sockets is measured in tests/benchmarks/.


def assert_not_before(measured_ms: list[float], injected_ms: float) -> None:
    """No measurement may fall before the moment the server injected (0.5 ms for timer resolution)."""
    assert min(measured_ms) >= injected_ms - 0.5, f"measured {min(measured_ms):.2f} ms < injected {injected_ms} ms"


def after_start_ms(samples: list[RequestSample], moment: str) -> list[float]:
    """`first_token_at`, `first_content_at` or `last_token_at` of each sample, in ms after its t0."""
    values = [getattr(sample, moment) for sample in samples]
    assert None not in values, f"{moment} missing"
    return [(value - sample.started_at) * 1000 for value, sample in zip(values, samples, strict=True)]


@contextmanager
def served(**changes: Any) -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(**changes)) as emulator:
        # warm-up, as in a load test: the client's first request pays for lazy imports and the connection
        assert _CLIENT.get(f"{emulator.url}/health").status_code == 200
        yield emulator


def ms(seconds: float | None) -> float:
    assert seconds is not None
    return seconds * 1000


def gaps_ms(sample: RequestSample) -> list[float]:
    times = sample.token_chunk_times
    return [(b - a) * 1000 for a, b in pairwise(times)]


def tpot_ms(sample: RequestSample) -> float:
    assert sample.first_token_at is not None and sample.last_token_at is not None
    return (sample.last_token_at - sample.first_token_at) / (sample.output_tokens - 1) * 1000


def test_case1_known_latency() -> None:
    with served(ttft_s=0.2, itl_s=0.02) as em:
        samples = concurrent_samples(em.url, chat(128))
    assert all(s.ok for s in samples), [s.error for s in samples]
    assert {(s.output_tokens, s.output_tokens_from_usage) for s in samples} == {(128, True)}
    assert_not_before(after_start_ms(samples, "first_token_at"), 200)
    assert_not_before(after_start_ms(samples, "last_token_at"), 200 + 127 * 20)


def test_case2_role_chunk_first_then_content_at_500ms() -> None:
    with served(ttft_s=0.5, itl_s=0.01, role_chunk=True) as em:
        samples = concurrent_samples(em.url, chat(4))
    assert all(s.ok for s in samples), [s.error for s in samples]
    assert_not_before(after_start_ms(samples, "first_token_at"), 500)


def test_case3_reasoning_before_content() -> None:
    with served(ttft_s=0.1, itl_s=0.05, reasoning_chunks=3) as em:
        samples = concurrent_samples(em.url, chat(5))
    assert all(s.ok and s.output_tokens == 5 for s in samples)  # reasoning tokens are output tokens
    assert_not_before(after_start_ms(samples, "first_token_at"), 100)
    assert_not_before(after_start_ms(samples, "first_content_at"), 250)


def test_case3_role_chunk_then_reasoning_ttft_before_ttfvt_by_the_reasoning_time() -> None:
    """The role chunk at t=0 counts for neither; TTFT is the first reasoning chunk (200 ms), TTFVT the
    first content chunk, 3 chunks x 50 ms later: the summary shows them apart by exactly that gap."""
    with served(ttft_s=0.2, itl_s=0.05, role_chunk=True, reasoning_chunks=3) as em:
        samples = concurrent_samples(em.url, chat(5))
    assert all(s.ok for s in samples), [s.error for s in samples]
    summary = summarize(samples)
    assert summary.ttft_ms.n == summary.ttfvt_ms.n == len(samples)
    assert_not_before(after_start_ms(samples, "first_token_at"), 200)
    assert_not_before(after_start_ms(samples, "first_content_at"), 350)
    # the visible token comes after the reasoning, in every request and so in the summary
    assert all(ms(s.first_content_at) > ms(s.first_token_at) for s in samples)
    assert summary.ttfvt_ms.p50 > summary.ttft_ms.p50


@pytest.mark.parametrize(
    ("config", "tokens", "from_usage"),
    [
        ({"usage_chunk": True}, 6, True),
        ({"usage_chunk": True, "usage_on_every_chunk_null": True}, 6, True),
        ({"usage_chunk": False, "usage_on_every_chunk_null": True, "tokens_per_chunk": 2}, 3, False),
    ],
)
def test_case4_usage_only_final_chunk_and_usage_null(config: dict[str, Any], tokens: int, from_usage: bool) -> None:
    with served(ttft_s=0.01, itl_s=0.002, **config) as em:
        sample = stream_sample(em.url, chat(6))
    assert sample.ok, sample.error
    assert (sample.output_tokens, sample.output_tokens_from_usage) == (tokens, from_usage)
    assert len(sample.token_chunk_times) == 6 // config.get("tokens_per_chunk", 1)


def test_case5_missing_done_is_incomplete() -> None:
    with served(ttft_s=0.01, itl_s=0.002, send_done=False) as em:
        sample = stream_sample(em.url, chat(4))
    assert not sample.ok and sample.error is not None and "[DONE]" in sample.error
    assert len(sample.token_chunk_times) == 4


def test_case5_connection_held_open_after_done_does_not_hang() -> None:
    with served(ttft_s=0.01, itl_s=0.002, hold_open_after_done_s=30) as em:
        began = time.perf_counter()
        sample = stream_sample(em.url, chat(4))
        elapsed = time.perf_counter() - began
    assert sample.ok, sample.error
    assert elapsed < 15, f"the client kept reading after [DONE] for {elapsed:.1f} s (the server holds 30 s)"


def test_case6_http_200_then_in_stream_error() -> None:
    with served(ttft_s=0.01, itl_s=0.002, in_stream_error_after=2) as em:
        sample = stream_sample(em.url, chat(8))
    assert sample.status == 200 and not sample.ok
    assert sample.error is not None and "in-stream error" in sample.error


@pytest.mark.parametrize(
    "framing",
    [
        {"split_events": True},
        {"crlf": True},
        {"comments": True},
        {"no_space_after_data": True},
        {"split_events": True, "crlf": True, "comments": True, "no_space_after_data": True},
    ],
)
def test_case7_sse_framing(framing: dict[str, Any]) -> None:
    with served(**({"ttft_s": 0.05, "itl_s": 0.04} | framing)) as em:
        samples = concurrent_samples(em.url, chat(5))
    for sample in samples:
        assert sample.ok, sample.error
        assert len(sample.token_chunk_times) == 5 and sample.output_tokens == 5
    # every chunk is stamped in the order sent, none before the server sent it (50 ms + 4 x 40 ms)
    for sample in samples:
        assert sample.token_chunk_times == sorted(sample.token_chunk_times)
    assert_not_before(after_start_ms(samples, "last_token_at"), 50 + 4 * 40)
    assert_not_before(after_start_ms(samples, "first_token_at"), 50)


def test_case7_several_events_in_one_burst() -> None:
    with served(ttft_s=0.01, itl_s=0.0) as em:
        sample = stream_sample(em.url, chat(6))
    assert sample.ok and len(sample.token_chunk_times) == 6 and sample.output_tokens == 6


def test_case8_several_tokens_per_chunk() -> None:
    with served(ttft_s=0.05, itl_s=0.005, tokens_per_chunk=4) as em:
        sample = stream_sample(em.url, chat(64))
    assert sample.ok, sample.error
    assert (len(sample.token_chunk_times), sample.output_tokens, sample.output_tokens_from_usage) == (16, 64, True)
    # 16 chunks, 4 tokens x 5 ms apart: the last cannot come before 50 + 15 x 20 ms; TPOT divides by the
    # 63 token gaps that usage reports, not by the 15 chunk gaps (exact figures: test_stream.py)
    assert_not_before(after_start_ms([sample], "last_token_at"), 50 + 15 * 20)
    span_ms = ms(sample.last_token_at) - ms(sample.first_token_at)
    assert summarize([sample]).tpot_ms.p50 == pytest.approx(span_ms / 63)


def test_case9_sub_10ms_itl_to_a_tenth_of_a_millisecond() -> None:
    with served(ttft_s=0.02, itl_s=0.005) as em:
        sample = stream_sample(em.url, chat(200))
    assert sample.ok, sample.error
    chunk_gaps = gaps_ms(sample)
    assert len(chunk_gaps) == 199
    assert_not_before(after_start_ms([sample], "last_token_at"), 20 + 199 * 5)
    # kept to sub-millisecond precision (not rounded to whole ms, as Locust's own stats are)
    assert len({round(gap, 4) for gap in chunk_gaps}) > 10, "gaps look quantised"


def test_non_streamed_completion() -> None:
    with served(ttft_s=0.05, itl_s=0.01) as em:
        started = time.perf_counter()
        response = _CLIENT.post(f"{em.url}/v1/chat/completions", json=chat(6, stream=False))
        sample = measure_response(started, time.perf_counter(), response.status_code, response.content)
    assert sample.ok and sample.output_tokens == 6
    assert_not_before([ms(sample.ended_at - sample.started_at)], 50 + 5 * 10)


def test_output_length_without_ignore_eos_is_capped_by_the_server() -> None:
    body = chat(50) | {"ignore_eos": False}
    with served(ttft_s=0.01, itl_s=0.001, output_tokens=5) as em:
        sample = stream_sample(em.url, body)
    assert sample.ok and sample.output_tokens == 5 and sample.expected_output_tokens == 50


@pytest.mark.parametrize(
    ("config", "wrong_status"),
    [({}, 401), ({"wrong_key_status": 403}, 403)],  # Envoy Gateway's answer by default; 403 as others answer
)
def test_api_keys_401_without_a_key_refused_wrong_200_right(config: dict[str, Any], wrong_status: int) -> None:
    with served(ttft_s=0.01, itl_s=0.001, api_keys=frozenset({"good"}), **config) as em:
        missing = stream_sample(em.url, chat(2))
        wrong = stream_sample(em.url, chat(2), {"Authorization": "Bearer bad"})
        right = stream_sample(em.url, chat(2), {"Authorization": "Bearer good"})
    assert (missing.status, wrong.status, right.status) == (401, wrong_status, 200)
    assert not missing.ok and not wrong.ok and right.ok


def test_wrong_key_status_is_a_refusal() -> None:
    with pytest.raises(ValueError, match="401 or 403"):
        EmulatorConfig(wrong_key_status=200)


@pytest.mark.parametrize(
    ("limit", "tokens_each", "admitted"), [("requests_per_minute", 1, 3), ("tokens_per_minute", 4, 2)]
)
def test_rate_limits_answer_429_past_the_limit(limit: str, tokens_each: int, admitted: int) -> None:
    with served(ttft_s=0.0, itl_s=0.0, **{limit: 3 if limit == "requests_per_minute" else 10}) as em:
        statuses = [stream_sample(em.url, chat(tokens_each)).status for _ in range(5)]
        other_key = stream_sample(em.url, chat(tokens_each), {"Authorization": "Bearer other"}).status
    assert statuses == [200] * admitted + [429] * (5 - admitted)
    assert other_key == 200  # limits are per key


def test_error_status_rate_is_seeded() -> None:
    def statuses(seed: int) -> list[int | None]:
        with served(ttft_s=0.0, itl_s=0.0, error_status_rate=0.5, seed=seed) as em:
            return [stream_sample(em.url, chat(1)).status for _ in range(20)]

    first = statuses(7)
    assert first == statuses(7)
    assert 3 <= first.count(500) <= 17 and set(first) == {200, 500}


def test_stall_every_delays_later_chunks() -> None:
    with served(ttft_s=0.01, itl_s=0.002, stall_s=0.1, stall_every=3) as em:
        sample = stream_sample(em.url, chat(7))
    assert sample.ok, sample.error
    # two 100 ms stalls (before chunks 3 and 6) on top of 10 ms + 6 x 2 ms: without them it would end at 22 ms
    assert_not_before(after_start_ms([sample], "last_token_at"), 10 + 6 * 2 + 2 * 100)


def test_stall_pauses_the_whole_server() -> None:
    with served(ttft_s=0.01, itl_s=0.001) as em:
        stalled_at = time.perf_counter()
        em.stall(0.3)
        sample = stream_sample(em.url, chat(3))
    assert ms(sample.first_token_at - stalled_at) >= 300  # type: ignore[operator]


def test_stop_and_restart_serving_for_failover_drills() -> None:
    with served(ttft_s=0.0, itl_s=0.0) as em:
        assert _CLIENT.get(f"{em.url}/health").status_code == 200
        em.stop_serving()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{em.url}/health", timeout=2)
        em.start_serving()
        em.set_config(output_tokens=2)
        assert stream_sample(em.url, chat(9) | {"ignore_eos": False}).output_tokens == 2
        assert em.requests_served == 3  # warm-up, health, stream


def test_command_line_dry_run_server() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "llmfleet.loadtests.emulator", "--port", "0", "--ttft-ms", "5", "--no-role-chunk"],
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            banner = process.stdout.readline()
            url = banner.split(" on ", 1)[1].split()[0]
            sample = stream_sample(url, chat(3))
            assert sample.ok and sample.output_tokens == 3
        finally:
            process.terminate()


# The faults the SLO gate must judge right (issue 13), as the emulator injects them.


def test_hang_share_reads_the_request_and_never_answers() -> None:
    with served(ttft_s=0.0, itl_s=0.0, hang_share=1.0) as em:
        with pytest.raises(httpx.ReadTimeout):
            _CLIENT.post(f"{em.url}/v1/chat/completions", json=chat(2), timeout=httpx.Timeout(10.0, read=0.5))
        em.set_config(hang_share=0.0)
        assert stream_sample(em.url, chat(2)).ok  # the server itself still answers


def test_max_output_tokens_caps_every_answer_whatever_the_request_asks() -> None:
    with served(ttft_s=0.0, itl_s=0.0, max_output_tokens=1) as em:
        sample = stream_sample(em.url, chat(64))  # max_tokens 64 with ignore_eos
        whole = _CLIENT.post(f"{em.url}/v1/chat/completions", json=chat(64, stream=False)).json()
    assert sample.ok and sample.output_tokens == 1 and len(sample.token_chunk_times) == 1
    assert whole["usage"]["completion_tokens"] == 1


def test_usage_tokens_makes_the_usage_block_lie() -> None:
    with served(ttft_s=0.0, itl_s=0.0, usage_tokens=16) as em:
        body = _CLIENT.post(f"{em.url}/v1/chat/completions", json=chat(64)).text
    events = [line.removeprefix("data: ") for line in body.splitlines() if line.startswith("data: {")]
    usages = [json.loads(e)["usage"] for e in events if json.loads(e).get("usage")]
    tokens = [e for e in events if json.loads(e)["choices"] and json.loads(e)["choices"][0]["delta"].get("content")]
    assert len(tokens) == 64 and [usage["completion_tokens"] for usage in usages] == [16]


def test_rate_limit_share_answers_429_with_retry_after() -> None:
    with served(ttft_s=0.0, itl_s=0.0, rate_limit_share=1.0, retry_after_s=1.5) as em:
        response = _CLIENT.post(f"{em.url}/v1/chat/completions", json=chat(2))
        em.set_config(retry_after_s=None)
        bare = _CLIENT.post(f"{em.url}/v1/chat/completions", json=chat(2))
    assert response.status_code == 429 and response.headers["retry-after"] == "2"  # whole seconds, rounded up
    assert bare.status_code == 429 and "retry-after" not in bare.headers


def test_refuse_connections_holds_a_port_nothing_answers_on() -> None:
    with Emulator(EmulatorConfig(refuse_connections=True)) as em:
        assert em.port > 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{em.url}/health", timeout=2)


def test_command_line_exposes_the_fault_options() -> None:
    from llmfleet.loadtests.emulator import _parse_args  # pyright: ignore[reportPrivateUsage]

    faults = ["--hang-share", "0.05", "--max-output-tokens", "1", "--usage-tokens", "16", "--rate-limit-share", "0.5"]
    _, config = _parse_args([*faults, "--retry-after-s", "2", "--refuse-connections"])
    assert (config.hang_share, config.max_output_tokens, config.usage_tokens) == (0.05, 1, 16)
    assert (config.rate_limit_share, config.retry_after_s, config.refuse_connections) == (0.5, 2.0, True)


def test_bad_command_line_input_is_exit_2_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    from llmfleet.loadtests.emulator import _parse_args, main  # pyright: ignore[reportPrivateUsage]

    with pytest.raises(SystemExit) as negative:
        _parse_args(["--ttft-ms", "-5"])
    assert negative.value.code == 2
    assert "times must not be negative" in capsys.readouterr().err
    with Emulator(EmulatorConfig()) as taken, pytest.raises(SystemExit) as busy:
        main(["--port", str(taken.port)])  # the docs start it on 8000, which may be in use
    assert busy.value.code == 2
    assert f"--port {taken.port}: cannot listen" in capsys.readouterr().err
