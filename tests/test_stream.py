"""StreamMeter and measure_response on hand-made bytes, with a controlled clock (no network)."""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmfleet.loadtests.samples import RequestSample
from llmfleet.loadtests.stats import summarize
from llmfleet.loadtests.stream import StreamMeter, measure_response


class Clock:
    """A settable clock: every event parsed while `now` is t gets timestamp t."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def chunk(delta: dict[str, Any] | None = None, *, usage: Any = "absent", choices: bool = True) -> bytes:
    body: dict[str, Any] = {"object": "chat.completion.chunk"}
    body["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": None}] if choices else []
    if usage != "absent":
        body["usage"] = usage
    return b"data: " + json.dumps(body).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"
ROLE = chunk({"role": "assistant", "content": ""})


def text(n: int = 1) -> bytes:
    return chunk({"content": " tok" * n})


def usage_chunk(completion: int) -> bytes:
    return chunk(usage={"prompt_tokens": 7, "completion_tokens": completion}, choices=False)


def run(timeline: list[tuple[float, bytes]], status: int | None = 200, end_at: float | None = None) -> RequestSample:
    """Feed each piece at its time (seconds after t0 = 0) and finish."""
    clock = Clock()
    meter = StreamMeter(0.0, clock=clock)
    for at, data in timeline:
        clock.now = at
        meter.feed(data)
    clock.now = end_at if end_at is not None else clock.now
    return meter.finish(status)


def test_role_only_chunk_is_not_a_token() -> None:
    sample = run([(0.001, ROLE), (0.5, text()), (0.52, text()), (0.53, usage_chunk(2)), (0.54, DONE)])
    assert sample.ok, sample.error
    assert sample.first_token_at == 0.5
    assert sample.token_chunk_times == [0.5, 0.52]


def test_reasoning_is_a_token_but_not_visible_content() -> None:
    timeline = [
        (0.1, chunk({"reasoning_content": "hmm"})),
        (0.2, chunk({"reasoning": "so"})),
        (0.3, text()),
        (0.4, DONE),
    ]
    sample = run(timeline)
    assert (sample.first_token_at, sample.first_content_at) == (0.1, 0.3)
    assert sample.output_tokens == 3 and not sample.output_tokens_from_usage


def test_tool_calls_are_tokens() -> None:
    call = {"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "{"}}]}
    sample = run([(0.25, chunk(call)), (0.3, DONE)])
    assert sample.ok and sample.first_token_at == 0.25 and sample.first_content_at is None


def test_usage_only_chunk_and_done_do_not_extend_e2e() -> None:
    sample = run([(0.2, text(3)), (0.4, text(3)), (0.9, usage_chunk(6)), (1.5, DONE)], end_at=2.0)
    assert sample.last_token_at == 0.4
    assert sample.ended_at == 2.0
    assert (sample.output_tokens, sample.output_tokens_from_usage, sample.prompt_tokens) == (6, True, 7)


def test_usage_null_on_every_chunk_falls_back_to_counting_chunks() -> None:
    sample = run([(0.2, chunk({"content": "a"}, usage=None)), (0.3, chunk({"content": "b"}, usage=None)), (0.4, DONE)])
    assert sample.ok
    assert (sample.output_tokens, sample.output_tokens_from_usage) == (2, False)


def test_a_usage_block_the_stream_disproves_falls_back_to_the_stream() -> None:
    """Each token-bearing chunk carries at least one token: usage below the chunk count is false."""
    lying = run([(0.1, text()), (0.2, text()), (0.3, text()), (0.31, usage_chunk(2)), (0.32, DONE)])
    assert (lying.output_tokens, lying.output_tokens_from_usage, lying.usage_contradicted) == (3, False, 2)
    # More tokens than chunks is what several tokens per chunk look like: usage stands.
    packed = run([(0.1, text(3)), (0.2, text(3)), (0.31, usage_chunk(6)), (0.32, DONE)])
    assert (packed.output_tokens, packed.output_tokens_from_usage, packed.usage_contradicted) == (6, True, None)


def test_missing_done_is_an_incomplete_failure() -> None:
    sample = run([(0.2, text()), (0.3, usage_chunk(1))])
    assert not sample.ok
    assert sample.error is not None and "[DONE]" in sample.error
    assert sample.first_token_at == 0.2  # what was measured is kept


def test_in_stream_error_after_http_200_is_a_failure() -> None:
    error = b'data: {"error": {"message": "engine died", "type": "internal_error", "code": 500}}\n\n'
    sample = run([(0.2, text()), (0.3, error), (0.4, DONE)])
    assert not sample.ok and sample.status == 200
    assert sample.error == "in-stream error: engine died"


@pytest.mark.parametrize(
    ("timeline", "status", "error"),
    [
        ([(0.1, ROLE), (0.2, DONE)], 200, "no token received"),
        ([], 503, "HTTP 503"),
        ([], None, "no response"),
        ([(0.1, b"data: {not json\n\n"), (0.2, text()), (0.3, DONE)], 200, "undecodable SSE data"),
        ([(0.1, b"data: [1, 2]\n\n"), (0.2, text()), (0.3, DONE)], 200, "not a JSON object"),
    ],
)
def test_failures(timeline: list[tuple[float, bytes]], status: int | None, error: str) -> None:
    sample = run(timeline, status=status)
    assert not sample.ok
    assert sample.error is not None and error in sample.error


def test_exception_text_wins() -> None:
    meter = StreamMeter(0.0, clock=Clock())
    meter.feed(text())
    sample = meter.finish(200, error="ReadTimeout")
    assert (sample.ok, sample.error) == (False, "ReadTimeout")


FRAMING_VARIANTS = {
    "crlf": lambda raw: raw.replace(b"\n", b"\r\n"),
    "cr": lambda raw: raw.replace(b"\n", b"\r"),
    "no space after data": lambda raw: raw.replace(b"data: ", b"data:"),
    "comments": lambda raw: raw.replace(b"data: ", b": keep-alive\ndata: "),
    "other fields": lambda raw: raw.replace(b"data: ", b"event: message\nid: 1\ndata: "),
}


@pytest.mark.parametrize("variant", FRAMING_VARIANTS)
def test_framing_variants_measure_the_same(variant: str) -> None:
    pieces = [ROLE, text(2), text(2), usage_chunk(4), DONE]
    plain = run([(0.1 * i, piece) for i, piece in enumerate(pieces)])
    framed = run([(0.1 * i, FRAMING_VARIANTS[variant](piece)) for i, piece in enumerate(pieces)])
    assert plain.ok and framed.ok, framed.error
    assert framed.token_chunk_times == plain.token_chunk_times == [0.1, 0.2]
    assert framed.output_tokens == plain.output_tokens == 4


def test_several_events_in_one_read_and_an_event_split_across_reads() -> None:
    together = ROLE + text() + text()
    tail = text() + DONE
    sample = run([(0.3, together), (0.4, tail[:10]), (0.45, tail[10:-3]), (0.5, tail[-3:])])
    assert sample.ok
    assert sample.token_chunk_times == [0.3, 0.3, 0.45]  # an event is timed when its line completes


def test_crlf_split_between_cr_and_lf() -> None:
    raw = text().replace(b"\n", b"\r\n")
    sample = run([(0.1, raw[:-3]), (0.2, raw[-3:-1]), (0.3, raw[-1:]), (0.4, DONE)])
    assert sample.ok and sample.token_chunk_times == [0.1]


def test_multi_line_data_event() -> None:
    event = b'data: {"choices": [{"delta":\ndata: {"content": "hi"}}]}\n\n'
    sample = run([(0.2, event), (0.3, DONE)])
    assert sample.ok and sample.token_chunk_times == [0.2]


def test_feed_line_for_iter_lines_consumers() -> None:
    clock = Clock()
    meter = StreamMeter(0.0, clock=clock, scheduled_at=-0.5, expected_output_tokens=2)
    for at, line in [(0.01, ROLE), (0.2, text()), (0.25, text()), (0.3, usage_chunk(2)), (0.31, DONE)]:
        clock.now = at
        meter.feed_line(line.rstrip(b"\n"))  # iter_lines() drops terminators and may drop blank lines
        assert meter.done == (line == DONE)
    sample = meter.finish(200)
    assert sample.ok and sample.token_chunk_times == [0.2, 0.25]
    assert (sample.scheduled_at, sample.expected_output_tokens) == (-0.5, 2)


def test_sub_millisecond_times_are_kept_exactly() -> None:
    times = [0.2 + 0.00537 * i for i in range(5)]
    sample = run([*((t, text()) for t in times), (1.0, DONE)])
    gaps = [b - a for a, b in pairwise(sample.token_chunk_times)]
    assert all(abs(gap - 0.00537) < 1e-9 for gap in gaps)


STREAM = ROLE + text() + text(2) + b": ping\n\n" + text() + usage_chunk(4) + DONE


@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_of_the_bytes_gives_the_same_result(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    pieces = [STREAM[a:b] for a, b in pairwise(bounds)]
    sample = run([(0.0, piece) for piece in pieces])
    assert sample.ok, sample.error
    assert len(sample.token_chunk_times) == 3 and sample.output_tokens == 4


def test_measure_response_non_streamed() -> None:
    body = {"choices": [{"message": {"role": "assistant", "content": "hi"}}], "usage": {"completion_tokens": 9}}
    sample = measure_response(1.0, 3.5, 200, json.dumps(body).encode(), expected_output_tokens=9)
    assert sample.ok and not sample.streamed
    assert (sample.last_token_at, sample.first_token_at, sample.output_tokens) == (3.5, None, 9)


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (500, b"{}", "HTTP 500"),
        (200, b"<html>", "undecodable"),
        (200, b'{"error": {"message": "boom"}}', "boom"),
        (200, b'{"choices": [{"message": {"role": "assistant", "content": ""}}]}', "no token"),
    ],
)
def test_measure_response_failures(status: int, body: bytes, error: str) -> None:
    sample = measure_response(0.0, 1.0, status, body)
    assert not sample.ok and sample.error is not None and error in sample.error


def test_several_tokens_per_chunk_tpot_per_token_from_usage_itl_per_chunk() -> None:
    """Reviewer case 8 with exact times: 16 chunks of 4 tokens, 20 ms apart, usage 64. TPOT is per token
    (15 x 20 ms over 63 token gaps); the ITL distribution stays per chunk (20 ms each)."""
    times = [0.05 + 0.02 * i for i in range(16)]
    sample = run([*((t, text(4)) for t in times), (0.4, usage_chunk(64)), (0.41, DONE)])
    assert sample.ok and (sample.output_tokens, sample.output_tokens_from_usage) == (64, True)
    assert [round(b - a, 9) for a, b in pairwise(sample.token_chunk_times)] == [0.02] * 15
    assert summarize([sample]).tpot_ms.p50 == pytest.approx(15 * 20 / 63)


@pytest.mark.parametrize("stamped", [True, False])
def test_token_times_are_the_kernel_stamps_where_given_and_the_parse_is_kept_only_then(stamped: bool) -> None:
    """Each token is timed at its read's kernel receive stamp (never later than its parse); the first token's parse
    time is kept beside it, for the read-delay probe, only where a stamp replaced it: a connection that gives no
    stamps (TLS) reports the probe as not measured, not as a zero delay."""
    clock = Clock()
    meter = StreamMeter(0.0, clock=clock, arrival=lambda: clock.now - 0.004 if stamped else None)
    for at, data in [(0.1, ROLE), (0.2, text()), (0.25, text()), (0.3, DONE)]:
        clock.now = at
        meter.feed(data)
    sample = meter.finish(200)
    if stamped:
        assert sample.first_token_at == pytest.approx(0.196) and sample.first_token_parsed_at == pytest.approx(0.2)
        assert sample.token_chunk_times == pytest.approx([0.196, 0.246])
    else:
        assert sample.first_token_at == pytest.approx(0.2) and sample.first_token_parsed_at is None
        assert sample.token_chunk_times == pytest.approx([0.2, 0.25])
