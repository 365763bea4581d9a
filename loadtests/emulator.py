"""An OpenAI-compatible chat-completions server with set latencies, for tests and dry runs.

It serves `POST /v1/chat/completions` (streamed or not), `GET /v1/models` and `GET /health` on
loopback, from an asyncio loop in a background thread, and can misbehave on purpose: role-only first
chunks, reasoning before content, missing usage or `[DONE]`, connections held open, HTTP and in-stream
errors, stalls, odd SSE framing, API keys (401 like Envoy Gateway, or 403 for a wrong key) and
request/token limits (429). The faults the SLO gate must judge right (issue 13) are options too: a
share of requests that never answer (`hang_share`), answers capped at N tokens whatever the request
asks (`max_output_tokens`, e.g. 1 for a classifier), a usage block that lies (`usage_tokens`), 429s
with Retry-After (`rate_limit_share`, `retry_after_s`) and a port that refuses every connection
(`refuse_connections`).

Timing model: the first token is sent `ttft_s` after the request is read; the server then decodes one
token every `itl_s` and sends `tokens_per_chunk` of them per chunk, so chunks are
`itl_s * tokens_per_chunk` apart. Chunk deadlines are absolute (start + offset), so the event loop's
wake-up jitter does not accumulate: 128 tokens at 200 ms / 20 ms end at 0.2 + 127 * 0.02 = 2.74 s.
With a prefix cache (`prefix_cache_tokens`, one per emulator: it is one replica), the first token
comes `prefill_s_per_token` later per prompt token the cache did not hold (loadtests/prefix_cache.py),
usage reports `prompt_tokens_details.cached_tokens`, and `GET /metrics` serves vLLM's prefix-cache
counters.

    with Emulator(EmulatorConfig(ttft_s=0.2, itl_s=0.02)) as em:
        httpx.post(f"{em.url}/v1/chat/completions", json={...})

    python -m llmfleet.loadtests.emulator --port 8000 --ttft-ms 200 --itl-ms 20 --output-tokens 128
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, cast

from llmfleet.loadtests.prefix_cache import Lookup, PrefixCache, chat_tokens

MODEL_NAME = "emulated-model"
MAX_HEADER_BYTES = 64 * 1024
REASONS = {
    **{200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"},
    **{405: "Method Not Allowed", 429: "Too Many Requests", 500: "Internal Server Error"},
}


@dataclass(frozen=True)
class EmulatorConfig:
    ttft_s: float = 0.2
    """Delay from reading the request to the first token-bearing chunk."""
    itl_s: float = 0.02
    """Decode time per token; chunks are `itl_s * tokens_per_chunk` apart."""
    tokens_per_chunk: int = 1
    output_tokens: int = 128
    """Output length when the request sets no `max_tokens` (with `max_tokens` + `ignore_eos`: exactly that)."""
    role_chunk: bool = True
    """Send `{"role": "assistant", "content": ""}` as soon as the headers go out (not a token)."""
    usage_chunk: bool = True
    """Send the usage-only final chunk (`choices: []`) when the client asks with stream_options.include_usage."""
    usage_on_every_chunk_null: bool = False
    """Add `"usage": null` to every chunk (as vLLM does with include_usage)."""
    reasoning_chunks: int = 0
    """The first N token chunks carry `reasoning_content` instead of `content`."""
    send_done: bool = True
    hold_open_after_done_s: float = 0.0
    """Keep the response open this long after `data: [DONE]` (the client must stop reading at [DONE])."""
    error_status_rate: float = 0.0
    """Share of requests answered with HTTP 500 before any byte of stream."""
    in_stream_error_after: int | None = None
    """After this many token chunks, send `data: {"error": ...}` instead of the rest (status stays 200)."""
    stall_s: float = 0.0
    stall_every: int = 0
    """Every `stall_every`-th token chunk of a stream is delayed by a further `stall_s` (0: never)."""
    split_events: bool = False
    """Write each event in two pieces, cut inside the JSON, with a short pause between them."""
    crlf: bool = False
    comments: bool = False
    """Send a `: keep-alive` comment line before each event."""
    no_space_after_data: bool = False
    api_keys: frozenset[str] | None = None
    """When set, `Authorization: Bearer <key>` is required: 401 without a key, `wrong_key_status` with a wrong one."""
    wrong_key_status: int = 401
    """What a key not in `api_keys` gets: 401 as Envoy Gateway's API-key auth answers, or 403 as other gateways do."""
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    """Limits per API key over a sliding minute (output tokens are charged at admission); 429 past them."""
    rate_limit_share: float = 0.0
    """Share of chat requests answered 429 at once, whatever the limits (a shared upstream's quota)."""
    retry_after_s: float | None = None
    """Sent as `Retry-After` (whole seconds, rounded up) with every 429; None: no header."""
    hang_share: float = 0.0
    """Share of chat requests that are read and then never answered (no byte; the connection stays open)."""
    max_output_tokens: int | None = None
    """Every answer ends after at most this many tokens, whatever max_tokens/ignore_eos ask (1: a classifier)."""
    usage_tokens: int | None = None
    """`usage.completion_tokens` reports this, whatever was sent (a lying usage block); None: the truth."""
    refuse_connections: bool = False
    """Hold the port without listening: every connection is refused (nothing served at that address)."""
    seed: int = 0
    prefix_cache_tokens: int = 0
    """Per-replica prefix cache (loadtests/prefix_cache.py): tokens it holds, LRU past that; 0: none."""
    prefill_s_per_token: float = 0.0
    """Prefill time per prompt token the cache does not hold, added to `ttft_s`."""
    cache_block_tokens: int = 16
    """Tokens per cached block (vLLM's default block size)."""

    def __post_init__(self) -> None:
        if self.wrong_key_status not in (401, 403):
            raise ValueError("wrong_key_status must be 401 or 403")
        if self.tokens_per_chunk < 1 or self.output_tokens < 1:
            raise ValueError("tokens_per_chunk and output_tokens must be at least 1")
        if self.prefix_cache_tokens < 0 or self.cache_block_tokens < 1:
            raise ValueError("prefix_cache_tokens must be >= 0 and cache_block_tokens >= 1")
        if min(self.ttft_s, self.itl_s, self.stall_s, self.hold_open_after_done_s, self.prefill_s_per_token) < 0:
            raise ValueError("times must not be negative")
        for name in ("error_status_rate", "rate_limit_share", "hang_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be within [0, 1]")
        if self.max_output_tokens is not None and self.max_output_tokens < 1:
            raise ValueError("max_output_tokens must be at least 1")
        if self.retry_after_s is not None and self.retry_after_s < 0:
            raise ValueError("retry_after_s must not be negative")


SPLIT_PAUSE_S = 0.002
"""Pause between the two halves of a split event: long enough that the client reads them separately."""


@dataclass
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _SlidingWindow:
    """Amounts charged over the last minute, per API key."""

    def __init__(self) -> None:
        self._charges: dict[str, deque[tuple[float, int]]] = {}

    def admit(self, key: str, amount: int, limit: int, now: float) -> bool:
        charges = self._charges.setdefault(key, deque())
        while charges and charges[0][0] <= now - 60.0:
            charges.popleft()
        if sum(a for _, a in charges) + amount > limit:
            return False
        charges.append((now, amount))
        return True


def _error_body(status: int, message: str, kind: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind, "code": status}}).encode()


class _Server:
    """The asyncio side: one instance per Emulator, all methods run on the emulator's loop."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.requests_served = 0
        self._random = random.Random(config.seed)
        self._request_window = _SlidingWindow()
        self._token_window = _SlidingWindow()
        self._stall_until = 0.0
        self._writers: set[asyncio.StreamWriter] = set()
        self.prefix_cache = PrefixCache(config.prefix_cache_tokens, config.cache_block_tokens)

    def _prefill(self, config: EmulatorConfig, payload: dict[str, Any]) -> tuple[EmulatorConfig, Lookup]:
        """Look the prompt up in this replica's prefix cache; the uncached tokens lengthen TTFT."""
        cache = self.prefix_cache
        if (cache.capacity_tokens, cache.block_tokens) != (
            config.prefix_cache_tokens,
            config.cache_block_tokens,
        ):  # set_config changed the cache: start an empty one
            cache = self.prefix_cache = PrefixCache(config.prefix_cache_tokens, config.cache_block_tokens)
        tokens = chat_tokens(payload.get("messages"))
        lookup = cache.lookup_and_insert(tokens) if cache.capacity_blocks else Lookup(len(tokens), 0)
        ttft_s = config.ttft_s + config.prefill_s_per_token * lookup.uncached_tokens
        return replace(config, ttft_s=ttft_s), lookup

    def metrics_text(self) -> str:
        """vLLM's prefix-cache counters (token counts), as its /metrics names them."""
        label = f'{{model_name="{MODEL_NAME}"}}'
        return (
            "# TYPE vllm:prefix_cache_queries_total counter\n"
            f"vllm:prefix_cache_queries_total{label} {self.prefix_cache.queries_tokens}\n"
            "# TYPE vllm:prefix_cache_hits_total counter\n"
            f"vllm:prefix_cache_hits_total{label} {self.prefix_cache.hits_tokens}\n"
        )

    def stall(self, seconds: float) -> None:
        self._stall_until = max(self._stall_until, time.monotonic() + seconds)

    def drop_connections(self) -> None:
        for writer in list(self._writers):
            writer.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = cast(socket.socket | None, writer.get_extra_info("socket"))
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delay between chunks
        self._writers.add(writer)
        try:
            while (request := await self._read_request(reader)) is not None:
                keep_alive = request.headers.get("connection", "").lower() != "close"
                await self._respond(request, writer)
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_request(self, reader: asyncio.StreamReader) -> _Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = [*lines[0].split(" ", 2), "", ""][:3]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
        return _Request(method, path.split("?", 1)[0], headers, body)

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        extra_headers: str = "",
    ) -> None:
        head = (
            f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
            f"content-type: {content_type}\r\ncontent-length: {len(body)}\r\n{extra_headers}\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()

    async def _respond(self, request: _Request, writer: asyncio.StreamWriter) -> None:
        self.requests_served += 1
        config = self.config  # one config per request, even if set_config runs meanwhile
        if request.path == "/health":
            await self._send(writer, 200, b"{}")
            return
        if request.path == "/metrics":
            await self._send(writer, 200, self.metrics_text().encode(), "text/plain; version=0.0.4")
            return
        if request.path == "/v1/models":
            models = {"object": "list", "data": [{"id": MODEL_NAME, "object": "model", "owned_by": "llmfleet"}]}
            await self._send(writer, 200, json.dumps(models).encode())
            return
        if request.path != "/v1/chat/completions":
            await self._send(writer, 404, _error_body(404, f"no route {request.path}", "not_found"))
            return
        if request.method != "POST":
            await self._send(writer, 405, _error_body(405, "use POST", "invalid_request_error"))
            return
        try:
            payload = cast(dict[str, Any], json.loads(request.body))
            if not isinstance(payload, dict):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise ValueError("not an object")
        except ValueError:
            await self._send(writer, 400, _error_body(400, "body must be a JSON object", "invalid_request_error"))
            return
        key = self._api_key(request)
        refusal = self._refusal(config, key)
        output_tokens = self._output_tokens(config, payload)
        if refusal is None:
            refusal = self._over_limit(config, key or "", output_tokens)
        if refusal is None and config.rate_limit_share and self._random.random() < config.rate_limit_share:
            refusal = 429, _error_body(429, "emulated quota exhausted", "rate_limit_error")
        if refusal is None and self._random.random() < config.error_status_rate:
            refusal = 500, _error_body(500, "emulated server error", "internal_error")
        if refusal is not None:
            status, body = refusal
            retry = config.retry_after_s
            extra = f"retry-after: {math.ceil(retry)}\r\n" if status == 429 and retry is not None else ""
            await self._send(writer, status, body, extra_headers=extra)
            return
        config, lookup = self._prefill(config, payload)
        if config.hang_share and self._random.random() < config.hang_share:
            await asyncio.Event().wait()  # never answers; ends when the client hangs up or the emulator closes
        if payload.get("stream"):
            options = cast(dict[str, Any], payload.get("stream_options") or {})
            await self._stream(writer, config, output_tokens, bool(options.get("include_usage")), lookup)
        else:
            await self._complete(writer, config, output_tokens, lookup)

    @staticmethod
    def _api_key(request: _Request) -> str | None:
        auth = request.headers.get("authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    @staticmethod
    def _refusal(config: EmulatorConfig, key: str | None) -> tuple[int, bytes] | None:
        if config.api_keys is None:
            return None
        if not key:
            return 401, _error_body(401, "missing API key (Authorization: Bearer ...)", "authentication_error")
        if key not in config.api_keys:
            kind = "authentication_error" if config.wrong_key_status == 401 else "permission_error"
            return config.wrong_key_status, _error_body(config.wrong_key_status, "API key not allowed", kind)
        return None

    def _over_limit(self, config: EmulatorConfig, key: str, output_tokens: int) -> tuple[int, bytes] | None:
        now = time.monotonic()
        rpm, tpm = config.requests_per_minute, config.tokens_per_minute
        if rpm is not None and not self._request_window.admit(key, 1, rpm, now):
            return 429, _error_body(429, f"request limit {rpm}/min reached", "rate_limit_error")
        if tpm is not None and not self._token_window.admit(key, output_tokens, tpm, now):
            return 429, _error_body(429, f"token limit {tpm}/min reached", "rate_limit_error")
        return None

    @staticmethod
    def _output_tokens(config: EmulatorConfig, payload: dict[str, Any]) -> int:
        limit = payload.get("max_completion_tokens") or payload.get("max_tokens")
        if not isinstance(limit, int) or limit < 1:
            wanted = config.output_tokens
        else:
            wanted = limit if payload.get("ignore_eos") else min(limit, config.output_tokens)
        return wanted if config.max_output_tokens is None else min(wanted, config.max_output_tokens)

    async def _wait_until(self, deadline: float) -> float:
        """Sleep until `deadline` (monotonic), plus any stall; returns the stall time added."""
        stalled = 0.0
        while True:
            now = time.monotonic()
            if now < self._stall_until:
                stalled += self._stall_until - now
                deadline += self._stall_until - now
                await asyncio.sleep(self._stall_until - now)
                continue
            if now >= deadline:
                return stalled
            await asyncio.sleep(deadline - now)

    async def _complete(
        self, writer: asyncio.StreamWriter, config: EmulatorConfig, output_tokens: int, lookup: Lookup
    ) -> None:
        start = time.monotonic()
        await self._wait_until(start + config.ttft_s + config.itl_s * max(output_tokens - 1, 0))
        body = {
            "id": "chatcmpl-emulated",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL_NAME,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": " tok" * output_tokens},
                    "finish_reason": "length",
                }
            ],
            "usage": _usage(config, output_tokens, lookup),
        }
        await self._send(writer, 200, json.dumps(body).encode())

    async def _stream(
        self,
        writer: asyncio.StreamWriter,
        config: EmulatorConfig,
        output_tokens: int,
        include_usage: bool,
        lookup: Lookup,
    ) -> None:
        start = time.monotonic()
        newline = "\r\n" if config.crlf else "\n"
        prefix = "data:" if config.no_space_after_data else "data: "

        async def event(data: str) -> None:
            text = (f": keep-alive{newline}" if config.comments else "") + f"{prefix}{data}{newline}{newline}"
            raw = text.encode()
            if config.split_events and len(raw) > 1:
                cut = len(raw) // 2
                await _write_chunk(writer, raw[:cut])
                await asyncio.sleep(SPLIT_PAUSE_S)
                raw = raw[cut:]
            await _write_chunk(writer, raw)

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
            body: dict[str, Any] = {
                "id": "chatcmpl-emulated",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": MODEL_NAME,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }
            if config.usage_on_every_chunk_null:
                body["usage"] = None
            return json.dumps(body)

        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        await writer.drain()
        if config.role_chunk:
            await event(chunk({"role": "assistant", "content": ""}))
        chunk_gap = config.itl_s * config.tokens_per_chunk
        n_chunks = math.ceil(output_tokens / config.tokens_per_chunk)
        for index in range(n_chunks):
            if config.in_stream_error_after is not None and index >= config.in_stream_error_after:
                await event(_error_body(500, "emulated in-stream error", "internal_error").decode())
                break
            if config.stall_every and index and index % config.stall_every == 0:
                start += config.stall_s  # a stall delays every later chunk too
            start += await self._wait_until(start + config.ttft_s + index * chunk_gap)
            tokens = min(config.tokens_per_chunk, output_tokens - index * config.tokens_per_chunk)
            field = "reasoning_content" if index < config.reasoning_chunks else "content"
            last = index == n_chunks - 1
            await event(chunk({field: " tok" * tokens}, "length" if last else None))
        if include_usage and config.usage_chunk:
            usage = _usage(config, output_tokens, lookup)
            body = {"id": "chatcmpl-emulated", "object": "chat.completion.chunk", "model": MODEL_NAME}
            await event(json.dumps(body | {"created": int(time.time()), "choices": [], "usage": usage}))
        if config.send_done:
            await event("[DONE]")
            if config.hold_open_after_done_s > 0:
                await asyncio.sleep(config.hold_open_after_done_s)
        writer.write(b"0\r\n\r\n")
        await writer.drain()


def _usage(config: EmulatorConfig, output_tokens: int, lookup: Lookup) -> dict[str, Any]:
    """OpenAI usage, with vLLM's `prompt_tokens_details.cached_tokens` (--enable-prompt-tokens-details);
    `completion_tokens` is `config.usage_tokens` when set (a usage block that lies)."""
    reported = output_tokens if config.usage_tokens is None else config.usage_tokens
    return {
        "prompt_tokens": lookup.prompt_tokens,
        "completion_tokens": reported,
        "total_tokens": lookup.prompt_tokens + reported,
        "prompt_tokens_details": {"cached_tokens": lookup.cached_tokens},
    }


async def _write_chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    """One HTTP/1.1 chunk, flushed at once so the client sees it when it is sent."""
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    await writer.drain()


class Emulator:
    """Runs the emulator in a background thread: `with Emulator(config) as em: ... em.url ...`."""

    def __init__(self, config: EmulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _Server(config or EmulatorConfig())
        self._host = host
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._listener: asyncio.Server | None = None
        self._refuser: socket.socket | None = None
        """With refuse_connections: a bound socket that never listens, so the kernel refuses connections."""
        self._thread = threading.Thread(target=self._loop.run_forever, name="llm-emulator", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def config(self) -> EmulatorConfig:
        return self._server.config

    @property
    def prefix_cache(self) -> PrefixCache:
        """This replica's prefix cache (empty with capacity 0): its counters are the known truth."""
        return self._server.prefix_cache

    @property
    def requests_served(self) -> int:
        """HTTP requests answered so far, of any status."""
        return self._server.requests_served

    def set_config(self, config: EmulatorConfig | None = None, **changes: Any) -> None:
        """Replace the config (or change some fields); requests already admitted keep theirs."""
        self._server.config = replace(config or self._server.config, **changes)

    def stall(self, seconds: float) -> None:
        """Stop sending anything (first tokens, chunks, whole responses) for `seconds`, from now."""
        self._loop.call_soon_threadsafe(self._server.stall, seconds)

    def start(self) -> Emulator:
        self._thread.start()
        self.start_serving()
        return self

    def start_serving(self) -> None:
        """Listen (again, on the same port after stop_serving); with refuse_connections, hold the port only."""
        if self.config.refuse_connections:
            if self._refuser is None:
                self._refuser = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self._refuser.bind((self._host, self._port))
                self._port = cast(tuple[str, int], self._refuser.getsockname())[1]
            return
        self._run(self._listen())

    def stop_serving(self) -> None:
        """Refuse new connections and drop open ones: the endpoint is gone, as in a region failure."""
        self._run(self._close_listener())

    def close(self) -> None:
        if self._refuser is not None:
            self._refuser.close()
        if self._thread.is_alive():
            self.stop_serving()
            self._run(self._cancel_handlers())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self, coroutine: Any) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        if self._listener is not None:
            return
        self._listener = await asyncio.start_server(
            self._server.handle, self._host, self._port, limit=MAX_HEADER_BYTES, reuse_address=True
        )
        self._port = cast(tuple[str, int], self._listener.sockets[0].getsockname())[1]

    @staticmethod
    async def _cancel_handlers() -> None:
        current = asyncio.current_task()
        handlers = [task for task in asyncio.all_tasks() if task is not current]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    async def _close_listener(self) -> None:
        if self._listener is None:
            return
        self._listener.close()
        self._server.drop_connections()
        await self._listener.wait_closed()
        self._listener = None


def _parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, EmulatorConfig]:
    parser = argparse.ArgumentParser(
        prog="python -m llmfleet.loadtests.emulator", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--ttft-ms", type=float, default=200.0)
    parser.add_argument("--itl-ms", type=float, default=20.0)
    parser.add_argument("--stall-ms", type=float, default=0.0)
    parser.add_argument("--hold-open-after-done-ms", type=float, default=0.0)
    parser.add_argument("--api-key", action="append", dest="api_keys", help="allowed key (repeatable)")
    skip = {"ttft_s", "itl_s", "stall_s", "hold_open_after_done_s", "api_keys"}
    for spec in fields(EmulatorConfig):
        if spec.name in skip:
            continue
        flag = "--" + spec.name.replace("_", "-")
        kind = str(spec.type)  # annotations are strings here (from __future__ import annotations)
        if kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=spec.default)
        elif kind.startswith("float"):
            parser.add_argument(flag, type=float, default=spec.default)
        elif kind.startswith("int"):
            parser.add_argument(flag, type=int, default=spec.default)
        else:
            raise TypeError(f"EmulatorConfig.{spec.name}: no command-line option for type {kind}")
    args = parser.parse_args(argv)
    values = {spec.name: getattr(args, spec.name) for spec in fields(EmulatorConfig) if spec.name not in skip}
    try:
        config = EmulatorConfig(
            ttft_s=args.ttft_ms / 1000,
            itl_s=args.itl_ms / 1000,
            stall_s=args.stall_ms / 1000,
            hold_open_after_done_s=args.hold_open_after_done_ms / 1000,
            api_keys=frozenset(args.api_keys) if args.api_keys else None,
            **values,
        )
    except ValueError as exc:  # a negative time, zero tokens...: usage and exit 2, not a traceback
        parser.error(str(exc))
    return args, config


def main(argv: Sequence[str] | None = None) -> None:
    args, config = _parse_args(argv)
    emulator = Emulator(config, host=args.host, port=args.port)
    try:
        emulator.start()
    except OSError as exc:  # the port is taken (docs start it on 8000), or the host is not this machine's
        emulator.close()
        print(f"error: --host {args.host} --port {args.port}: cannot listen ({exc.strerror or exc})", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        print(f"OpenAI-compatible emulator on {emulator.url} (model {MODEL_NAME}); Ctrl-C stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    finally:
        emulator.close()


if __name__ == "__main__":
    main()
