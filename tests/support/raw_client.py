"""A raw-socket asyncio client: the reference the SLO gate's figures are compared with.

`users` loops, each on its own kept-alive HTTP/1.1 connection, send the next streamed chat completion
when the last one ends. The request is written by hand and each chunk of the body goes from the
socket to the same StreamMeter the Locust user feeds: no HTTP library, no gevent, so what it measures
is the server plus the least a Python client can add. Used by tests/test_gate_generator.py and
tests/benchmarks/bench_gate.py, in its own process:

    python tests/support/raw_client.py URL USERS SECONDS OUT.jsonl [--output-tokens N] [--model NAME] [--bind ADDR]

`--bind` sets the connections' source address (bench_gate: 127.0.0.2, so a loopback capture tells
its requests from the gate's on 127.0.0.1 without either client reporting its ports).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from llmfleet.loadtests.prompts import SyntheticPrompts, chat_body  # noqa: E402
from llmfleet.loadtests.samples import RequestSample  # noqa: E402
from llmfleet.loadtests.stream import StreamMeter  # noqa: E402

REUSE_WAIT_S = 0.02
"""After [DONE], read the end of the body if it comes at once, so the connection is reused."""


async def run_users(
    url: str,
    users: int,
    seconds: float,
    *,
    output_tokens: int = 16,
    prompt_tokens: int = 16,
    model: str = "m",
    out: TextIO | None = None,
    bind: str | None = None,
) -> list[RequestSample]:
    """Closed-loop users for `seconds`; each sample is also written to `out` (a JSON line, flushed) as
    soon as it ends, so a caller may stop the client at any time and keep what it measured."""
    address = urlsplit(url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    path = address.path.rstrip("/") + "/v1/chat/completions"
    samples: list[RequestSample] = []
    deadline = time.perf_counter() + seconds

    def keep(sample: RequestSample) -> None:
        samples.append(sample)
        if out is not None:
            out.write(json.dumps(sample.to_dict()) + "\n")
            out.flush()

    async def user(serial: int) -> None:
        prompts = SyntheticPrompts(prompt_tokens, output_tokens, seed=10_000 + serial)
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while time.perf_counter() < deadline:
            body = json.dumps(chat_body(model, prompts.next(), stream=True)).encode()
            head = (
                f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\n"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
            )
            started = time.perf_counter()
            meter = StreamMeter(started, expected_output_tokens=output_tokens)
            recorded = False
            try:
                connection = connection or await asyncio.open_connection(
                    host, port, local_addr=(bind, 0) if bind else None
                )
                reader, writer = connection
                writer.write(head.encode() + body)
                status, headers = await _read_head(reader)
                chunks = _body(reader, headers)
                async for data in chunks:
                    meter.feed(data)
                    if meter.done:
                        break
                keep(meter.finish(status))
                recorded = True
                async with asyncio.timeout(REUSE_WAIT_S):
                    async for _ in chunks:
                        pass
            except (OSError, EOFError, ValueError, TimeoutError, asyncio.IncompleteReadError) as exc:
                if not recorded:
                    keep(meter.finish(None, f"{type(exc).__name__}: {exc}"))
                if connection is not None:
                    connection[1].close()
                connection = None
        if connection is not None:
            connection[1].close()

    await asyncio.gather(*(user(i) for i in range(users)))
    return samples


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ", 2)[1]), headers


async def _body(reader: asyncio.StreamReader, headers: dict[str, str]) -> AsyncIterator[bytes]:
    """Each chunk of a chunked body as it arrives, or the whole of a content-length one."""
    if "chunked" not in headers.get("transfer-encoding", ""):
        yield await reader.readexactly(int(headers.get("content-length", "0")))
        return
    while size := int((await reader.readline()).split(b";")[0], 16):
        data = await reader.readexactly(size + 2)  # the chunk and its CRLF
        yield data[:-2]
    await reader.readline()


def command(
    url: str,
    users: int,
    seconds: float,
    out: Path,
    *,
    output_tokens: int = 16,
    model: str = "m",
    bind: str | None = None,
) -> list[str]:
    options = ["--output-tokens", str(output_tokens), "--model", model, *(["--bind", bind] if bind else [])]
    return [sys.executable, __file__, url, str(users), f"{seconds:g}", str(out), *options]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="raw-socket asyncio streaming client (reference measurements)")
    parser.add_argument("url")
    parser.add_argument("users", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("out", type=Path)
    parser.add_argument("--output-tokens", type=int, default=16)
    parser.add_argument("--model", default="m")
    parser.add_argument("--bind", help="source address of the connections (e.g. 127.0.0.2)")
    args = parser.parse_args(argv)
    with args.out.open("w", encoding="utf-8") as out:
        asyncio.run(
            run_users(
                args.url,
                args.users,
                args.seconds,
                output_tokens=args.output_tokens,
                model=args.model,
                out=out,
                bind=args.bind,
            )
        )


if __name__ == "__main__":
    main()
