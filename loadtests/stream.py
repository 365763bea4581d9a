"""Measuring one OpenAI chat-completions response, streamed (SSE) or not, into a RequestSample.

The metric definitions are those of vLLM `bench serve`, AIPerf and GuideLLM (see
docs/loadtesting.md):

- TTFT: the first event whose delta carries non-empty `content`, `reasoning`/`reasoning_content` or
  `tool_calls`. A role-only chunk (`{"role": "assistant", "content": ""}`) is not a token.
- E2E: the last token-bearing event. The usage-only chunk (`choices: []`) and `[DONE]` do not extend it.
- Output tokens: `usage.completion_tokens` when the server sends it, else the number of token-bearing
  chunks (and `output_tokens_from_usage` is False so the report can say so). A usage block the stream
  disproves (fewer tokens than token-bearing chunks received: each chunk carries at least one) is not
  used: the count falls back to the stream and `usage_contradicted` keeps the reported figure. Trusting
  it made TPOT 4.9x too high (16 reported, 64 streamed) and breached a healthy server.
- Failures: non-2xx, an exception, no token, an in-stream `{"error": ...}` event, undecodable data,
  and a stream that ends before `data: [DONE]` (the response is incomplete).

Each event is timestamped with `clock()` when it is parsed, so the caller must feed bytes as soon as
they are read. Framing follows the SSE specification: lines end in `\\n`, `\\r\\n` or `\\r`; a line
starting with `:` is a comment; `data:` may or may not be followed by a space; events may be split
across reads and several may arrive in one read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, cast

from llmfleet.loadtests.samples import RequestSample

DONE_SENTINEL = "[DONE]"
TOKEN_DELTA_KEYS = ("content", "reasoning_content", "reasoning", "tool_calls")
"""Delta fields that carry generated tokens (visible text, reasoning, tool calls)."""


def _as_dict(value: object) -> dict[str, Any] | None:
    return cast(dict[str, Any], value) if isinstance(value, dict) else None


def _as_list(value: object) -> list[Any]:
    return cast(list[Any], value) if isinstance(value, list) else []


def _child(value: object, key: str) -> dict[str, Any]:
    """`value[key]` when both are JSON objects, else an empty object."""
    body = _as_dict(value)
    return (_as_dict(body.get(key)) if body is not None else None) or {}


def _error_text(error: object) -> str:
    """The human part of an OpenAI-style error object (`{"message": ..., "type": ...}`) or any value."""
    body = _as_dict(error)
    if body is not None and body.get("message"):
        return str(body["message"])
    return str(error)


def _completion_tokens(usage: object) -> tuple[int | None, int | None]:
    """(completion_tokens, prompt_tokens) from a usage object; None where absent or not an integer."""
    body = _as_dict(usage)
    if body is None:
        return None, None
    completion, prompt = body.get("completion_tokens"), body.get("prompt_tokens")
    return (
        completion if isinstance(completion, int) and not isinstance(completion, bool) else None,
        prompt if isinstance(prompt, int) and not isinstance(prompt, bool) else None,
    )


def _cached_tokens(usage: object) -> int | None:
    """usage.prompt_tokens_details.cached_tokens: prompt tokens the server's prefix cache held
    (OpenAI's field; vLLM sends it with --enable-prompt-tokens-details)."""
    cached = _child(_as_dict(usage) or {}, "prompt_tokens_details").get("cached_tokens")
    return cached if isinstance(cached, int) and not isinstance(cached, bool) else None


class StreamMeter:
    """Turns the bytes of one streamed chat-completions response into a RequestSample.

    Usage: `meter = StreamMeter(t0)`; for each read, `meter.feed(chunk)` (or `feed_line` per line) and
    stop reading once `meter.done`; then `meter.finish(status)`, or `finish(status, error=str(exc))`
    when the request raised.
    """

    def __init__(
        self,
        started_at: float,
        *,
        scheduled_at: float | None = None,
        expected_output_tokens: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
        arrival: Callable[[], float | None] | None = None,
    ) -> None:
        self._started_at = started_at
        self._scheduled_at = scheduled_at
        self._expected_output_tokens = expected_output_tokens
        self._clock = clock
        self._arrival = arrival
        """When the data being parsed arrived (the kernel's stamp of the read that delivered it), if known."""
        self._first_token_parsed_at: float | None = None
        self._buffer = b""
        self._pending_cr = False
        self._data_lines: list[str] = []
        self._done = False
        self._first_token_at: float | None = None
        self._first_content_at: float | None = None
        self._chunk_times: list[float] = []
        self._usage_tokens: int | None = None
        self._prompt_tokens: int | None = None
        self._cached_tokens: int | None = None
        self._stream_error: str | None = None

    @property
    def done(self) -> bool:
        """`data: [DONE]` was seen: stop reading (a server may hold the connection open after it)."""
        return self._done

    def feed(self, data: bytes) -> None:
        """Raw bytes exactly as read from the socket, with any framing."""
        if self._pending_cr and data.startswith(b"\n"):
            data = data[1:]  # the \n of a \r\n split across two reads
        self._pending_cr = False
        self._buffer += data
        while True:
            cut = min((i for i in (self._buffer.find(b"\n"), self._buffer.find(b"\r")) if i >= 0), default=-1)
            if cut < 0:
                return
            line, ending = self._buffer[:cut], self._buffer[cut : cut + 1]
            rest = self._buffer[cut + 1 :]
            if ending == b"\r":
                if rest.startswith(b"\n"):
                    rest = rest[1:]
                elif not rest:
                    self._pending_cr = True
            self._buffer = rest
            self._line(line.decode("utf-8", errors="replace"))

    def feed_line(self, line: bytes | str) -> None:
        """One line without its terminator, as yielded by `iter_lines()` (an empty line ends an event)."""
        text = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
        self._line(text.rstrip("\r\n"))

    def _line(self, line: str) -> None:
        if not line:
            self._dispatch_pending()
            return
        if line.startswith(":"):
            return  # comment / keep-alive
        field, _, value = line.partition(":")
        if field != "data":
            return  # event:, id:, retry: carry nothing we measure
        self._data_lines.append(value.removeprefix(" "))
        # OpenAI-style servers send one JSON document per data line; dispatch it now so the timestamp
        # does not wait for the blank line (which `iter_lines` consumers may never see separately).
        # A payload spread over several data lines is kept until it parses or the event ends.
        payload = "\n".join(self._data_lines)
        if payload == DONE_SENTINEL or self._try_event(payload):
            self._data_lines.clear()
            if payload == DONE_SENTINEL:
                self._done = True

    def _dispatch_pending(self) -> None:
        if not self._data_lines:
            return
        payload = "\n".join(self._data_lines)
        self._data_lines.clear()
        if payload == DONE_SENTINEL:
            self._done = True
        elif not self._try_event(payload) and self._stream_error is None:
            self._stream_error = f"undecodable SSE data: {payload[:200]!r}"

    def _try_event(self, payload: str) -> bool:
        """Apply one JSON event; False if the payload is not (yet) a JSON document."""
        try:
            event: object = json.loads(payload)
        except ValueError:
            return False
        self._on_event(event, self._clock())
        return True

    def _on_event(self, event: object, at: float) -> None:
        body = _as_dict(event)
        if body is None:
            if self._stream_error is None:
                self._stream_error = f"SSE event is not a JSON object: {str(event)[:200]!r}"
            return
        if body.get("error") is not None:
            if self._stream_error is None:
                self._stream_error = f"in-stream error: {_error_text(body['error'])}"
            return
        completion, prompt = _completion_tokens(body.get("usage"))
        if completion is not None:
            self._usage_tokens = completion
        if prompt is not None:
            self._prompt_tokens = prompt
        if (cached := _cached_tokens(body.get("usage"))) is not None:
            self._cached_tokens = cached
        carries_token = carries_content = False
        for choice in _as_list(body.get("choices")):
            delta = _child(choice, "delta")
            if any(delta.get(key) for key in TOKEN_DELTA_KEYS):
                carries_token = True
            if delta.get("content"):
                carries_content = True
        parsed_at: float | None = None  # set only where a stamp replaced it: else nothing was corrected or measured
        if self._arrival is not None and (arrived := self._arrival()) is not None:
            parsed_at = at
            # The kernel's stamp of the read that delivered this event: when it reached the machine, not
            # when a busy generator got round to parsing it. Exact when the read kept up; after a late read
            # that also took later segments it is the newest one's, still no later than the parse.
            at = min(arrived, at)
        if carries_token:
            self._chunk_times.append(at)
            if self._first_token_at is None:
                self._first_token_at = at
                self._first_token_parsed_at = parsed_at
        if carries_content and self._first_content_at is None:
            self._first_content_at = at

    def finish(self, status: int | None, error: str | None = None) -> RequestSample:
        """The sample of this request; `error` is the exception text when the request raised."""
        ended_at = self._clock()
        self._dispatch_pending()
        ok_status = status is not None and 200 <= status < 300
        if error is None and not ok_status:
            error = f"HTTP {status}" if status is not None else "no response"
        if error is None:
            error = self._stream_error
        if error is None and not self._chunk_times:
            error = "no token received"
        if error is None and not self._done:
            error = "incomplete: the stream ended before data: [DONE]"
        usage = self._usage_tokens
        contradicted = usage if usage is not None and usage < len(self._chunk_times) else None
        from_usage = usage is not None and contradicted is None
        return RequestSample(
            started_at=self._started_at,
            ended_at=ended_at,
            ok=error is None,
            scheduled_at=self._scheduled_at,
            first_token_at=self._first_token_at,
            first_token_parsed_at=self._first_token_parsed_at,
            first_content_at=self._first_content_at,
            last_token_at=self._chunk_times[-1] if self._chunk_times else None,
            token_chunk_times=list(self._chunk_times),
            output_tokens=usage if from_usage and usage is not None else len(self._chunk_times),
            output_tokens_from_usage=from_usage,
            usage_contradicted=contradicted,
            expected_output_tokens=self._expected_output_tokens,
            prompt_tokens=self._prompt_tokens,
            cached_prompt_tokens=self._cached_tokens,
            status=status,
            error=error,
            streamed=True,
        )


def measure_response(
    started_at: float,
    ended_at: float,
    status: int,
    body: bytes,
    *,
    scheduled_at: float | None = None,
    expected_output_tokens: int | None = None,
) -> RequestSample:
    """The sample of a non-streamed response: E2E only (no TTFT or ITL exist without a stream)."""
    error: str | None = None
    document: dict[str, Any] = {}
    if not 200 <= status < 300:
        error = f"HTTP {status}"
    else:
        try:
            document = _as_dict(json.loads(body)) or {}
        except ValueError:
            error = f"undecodable response body: {body[:200]!r}"
    if error is None and document.get("error") is not None:
        error = f"error in response: {_error_text(document['error'])}"
    completion, prompt = _completion_tokens(document.get("usage"))
    has_output = any(
        any(_child(choice, "message").get(key) for key in TOKEN_DELTA_KEYS)
        for choice in _as_list(document.get("choices"))
    )
    if error is None and not has_output and not completion:
        error = "no token received"
    return RequestSample(
        started_at=started_at,
        ended_at=ended_at,
        ok=error is None,
        scheduled_at=scheduled_at,
        last_token_at=ended_at if error is None else None,
        output_tokens=completion if completion is not None else 0,
        output_tokens_from_usage=completion is not None,
        expected_output_tokens=expected_output_tokens,
        prompt_tokens=prompt,
        cached_prompt_tokens=_cached_tokens(document.get("usage")),
        status=status,
        error=error,
        streamed=False,
    )
