"""The loopback capture reader bench_gate times requests with (tests/support/wire_capture.py).

Each capture is written here with dpkt from synthetic packets, with times chosen by the test: no
network, no tcpdump, and every expected figure follows from the packets' own timestamps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from support.raw_client import run_users

from llmfleet.loadtests.samples import RequestSample

# dpkt is in the dev extra since this file was added; a venv installed before says so instead of failing to collect.
dpkt: Any = pytest.importorskip("dpkt", reason="dpkt is missing: pip install -e '.[dev]'")
from support.wire_capture import Capture, CaptureUnavailable, pair, read_pcap  # noqa: E402

SERVER = ("127.0.0.1", 8000)
GATE, REFERENCE = ("127.0.0.1", 40000), ("127.0.0.2", 40001)
SYN, ACK, PSH = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_PUSH


class Pcap:
    """Writes TCP-over-IPv4-over-Ethernet frames, as `tcpdump -i lo` records them, at given times."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("wb")
        self.writer: Any = dpkt.pcap.Writer(self.file, linktype=dpkt.pcap.DLT_EN10MB)
        self.next_seq: dict[tuple[tuple[str, int], tuple[str, int]], int] = {}

    def packet(self, at: float, src: tuple[str, int], dst: tuple[str, int], data: bytes = b"", **tcp: Any) -> None:
        segment = dpkt.tcp.TCP(sport=src[1], dport=dst[1], data=data, **tcp)
        ip = dpkt.ip.IP(
            src=socket.inet_aton(src[0]), dst=socket.inet_aton(dst[0]), p=dpkt.ip.IP_PROTO_TCP, data=segment
        )
        ip.len = len(ip)
        frame = dpkt.ethernet.Ethernet(src=b"\0" * 6, dst=b"\0" * 6, type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
        self.writer.writepkt(bytes(frame), ts=at)

    def open(self, at: float, client: tuple[str, int], isn: int = 1000, server_isn: int = 5000) -> None:
        self.packet(at, client, SERVER, seq=isn, flags=SYN)
        self.packet(at, SERVER, client, seq=server_isn, flags=SYN | ACK)
        self.next_seq[client, SERVER] = isn + 1
        self.next_seq[SERVER, client] = server_isn + 1

    def send(self, at: float, src: tuple[str, int], dst: tuple[str, int], data: bytes) -> int:
        """The next bytes of src -> dst at `at`; returns their sequence number (to replay or reorder them)."""
        seq = self.next_seq[src, dst]
        self.packet(at, src, dst, data, seq=seq % (1 << 32), flags=ACK | PSH)
        self.next_seq[src, dst] = seq + len(data)
        return seq

    def close(self) -> None:
        self.file.close()


def request(body: str = '{"model": "m", "stream": true}') -> bytes:
    head = f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body.encode()


RESPONSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def event(delta: dict[str, Any] | None = None, **extra: Any) -> bytes:
    body = {"choices": [{"delta": delta}] if delta is not None else [], **extra}
    return f"data: {json.dumps(body)}\n\n".encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


END = chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"


def test_a_streamed_request_is_timed_by_the_packets_that_carry_it(tmp_path: Path) -> None:
    pcap = Pcap(tmp_path / "a.pcap")
    pcap.open(999.0, GATE)
    whole = request()
    pcap.send(1000.000, GATE, SERVER, whole[:40])  # the head split over two packets: t0 is the first
    pcap.send(1000.002, GATE, SERVER, whole[40:])
    pcap.send(1000.010, SERVER, GATE, RESPONSE_HEAD)
    pcap.send(1000.050, SERVER, GATE, chunk(event({"role": "assistant", "content": ""})))  # role-only: no token
    first = chunk(event({"content": "Hi"}))
    pcap.send(1000.200, SERVER, GATE, first[:25])  # the first token's SSE event split over two packets
    pcap.send(1000.210, SERVER, GATE, first[25:])
    pcap.send(1000.230, SERVER, GATE, chunk(event({"content": " a"})))
    third = event({"content": " b"})
    pcap.send(1000.250, SERVER, GATE, chunk(third[:10]))  # one SSE event over two HTTP chunks, two packets
    pcap.send(1000.260, SERVER, GATE, chunk(third[10:]))
    pcap.send(1000.270, SERVER, GATE, chunk(event(usage={"completion_tokens": 3, "prompt_tokens": 7})) + END)
    pcap.close()

    reading = read_pcap(tmp_path / "a.pcap", SERVER[1], expected_output_tokens=3)

    assert reading.connections == 1 and reading.incomplete == 0 and reading.problems == []
    [sample] = reading.samples("127.0.0.1")
    assert sample.ok, sample.error
    assert sample.started_at == pytest.approx(1000.000, abs=1e-6)
    assert sample.first_token_at == pytest.approx(1000.210, abs=1e-6)  # when the event was whole, not begun
    assert sample.token_chunk_times == pytest.approx([1000.210, 1000.230, 1000.260], abs=1e-6)
    assert (sample.output_tokens, sample.output_tokens_from_usage, sample.prompt_tokens) == (3, True, 7)
    assert sample.ended_at == pytest.approx(1000.270, abs=1e-6)
    assert reading.samples("127.0.0.2") == []


def test_requests_are_told_apart_by_client_address_and_kept_in_sequence_order(tmp_path: Path) -> None:
    pcap = Pcap(tmp_path / "b.pcap")
    pcap.open(1.0, GATE, isn=(1 << 32) - 10)  # the client's sequence numbers wrap inside the first request
    pcap.open(1.0, REFERENCE)
    for start, client in ((2.0, GATE), (2.5, GATE), (2.1, REFERENCE)):
        pcap.send(start, client, SERVER, request())
        pcap.send(start + 0.01, SERVER, client, RESPONSE_HEAD + chunk(event({"content": "x"})))
        if start == 2.5:
            # Captured out of order: the later bytes at +0.30, the earlier at +0.35. The token in the
            # later bytes is readable only at +0.35; a retransmission at +0.40 changes nothing.
            early = chunk(event({"content": "y"}))
            late = chunk(event({"content": "z"})) + END
            seq = pcap.next_seq[SERVER, client]
            pcap.packet(start + 0.30, SERVER, client, late, seq=seq + len(early), flags=ACK)
            pcap.packet(start + 0.35, SERVER, client, early, seq=seq, flags=ACK)
            pcap.packet(start + 0.40, SERVER, client, early, seq=seq, flags=ACK)
            pcap.next_seq[SERVER, client] = seq + len(early) + len(late)
        else:
            pcap.send(start + 0.05, SERVER, client, chunk(event({"content": "y"})) + END)
    pcap.send(3.0, REFERENCE, SERVER, request())  # the capture ends during this response
    pcap.send(3.01, SERVER, REFERENCE, RESPONSE_HEAD + chunk(event({"content": "x"})))
    pcap.close()

    reading = read_pcap(tmp_path / "b.pcap", SERVER[1], offset=2.0)

    gate, reference = reading.samples("127.0.0.1"), reading.samples("127.0.0.2")
    assert [round(s.started_at, 6) for s in gate] == [0.0, 0.5]  # offset subtracted from every time
    assert [round(s.started_at, 6) for s in reference] == [0.1]
    assert all(s.ok for s in [*gate, *reference])
    assert [round(t, 6) for t in gate[1].token_chunk_times] == [0.51, 0.85, 0.85]
    assert reading.incomplete == 1 and reading.problems == []
    assert [round(s.started_at, 6) for s in reading.samples("127.0.0.1", start=0.2, end=1.0)] == [0.5]


def test_a_hole_in_the_capture_is_reported_and_nothing_after_it_is_timed(tmp_path: Path) -> None:
    pcap = Pcap(tmp_path / "c.pcap")
    pcap.open(1.0, GATE)
    pcap.send(2.0, GATE, SERVER, request())
    pcap.send(2.01, SERVER, GATE, RESPONSE_HEAD + chunk(event({"content": "x"})))
    pcap.next_seq[SERVER, GATE] += 100  # 100 bytes the capture lost
    pcap.send(2.05, SERVER, GATE, chunk(event({"content": "y"})) + END)
    pcap.close()

    reading = read_pcap(tmp_path / "c.pcap", SERVER[1])

    assert reading.samples("127.0.0.1") == [] and reading.incomplete == 1
    assert reading.problems == ["127.0.0.1:40000: a hole in the byte stream (a packet the capture dropped)"]


def test_without_tcpdump_the_capture_says_so(tmp_path: Path) -> None:
    capture = Capture(8000, tmp_path / "x.pcap", tcpdump=None)
    capture.tcpdump = None  # as on a machine where shutil.which finds none
    with pytest.raises(CaptureUnavailable, match="apt-get install -y tcpdump"):
        capture.command()


def test_the_reference_client_sends_from_the_address_it_is_bound_to() -> None:
    """bench_gate tells the reference's requests from the gate's by this address."""
    peers: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peername")[0])
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                writer.write(RESPONSE_HEAD + chunk(event({"content": "x"})) + END)
                await writer.drain()
        writer.close()

    async def scenario() -> list[RequestSample]:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, asyncio.timeout(10):
            return await run_users(f"http://127.0.0.1:{port}", 2, 0.2, output_tokens=1, bind="127.0.0.2")

    samples = asyncio.run(scenario())

    assert samples and all(s.ok for s in samples), [s.error for s in samples]
    assert peers and set(peers) == {"127.0.0.2"}


def sample(started: float, first: float, last: float, chunks: int = 3) -> RequestSample:
    times = [first + (last - first) * k / (chunks - 1) for k in range(chunks)]
    return RequestSample(
        started_at=started, ended_at=last, ok=True, first_token_at=first, last_token_at=last, token_chunk_times=times
    )


def test_a_clients_samples_pair_with_the_wires_of_the_same_requests() -> None:
    """Two requests sent in one burst, each read late by its client, and one the wire cannot account for."""
    late, prompt = sample(10.000, 10.300, 11.000), sample(10.000, 10.250, 10.900)
    unmatched = sample(20.000, 20.200, 20.800, chunks=5)
    seen_late, seen_prompt = sample(10.010, 10.210, 10.990), sample(10.002, 10.240, 10.890)
    before_t0 = sample(19.990, 20.100, 20.700, chunks=5)  # on the wire before the client's t0: another request

    pairs = pair([late, prompt, unmatched], [seen_prompt, before_t0, seen_late])

    assert sorted(pairs, key=lambda p: p[0].first_token_at or 0) == [(prompt, seen_prompt), (late, seen_late)]


def test_a_tcpdump_that_cannot_capture_is_reported_not_waited_for(tmp_path: Path) -> None:
    """As when tcpdump runs without the right to capture: it exits at once, and the bench skips the wire."""
    failing = tmp_path / "tcpdump"
    failing.write_text(
        "#!/bin/sh\necho 'tcpdump: lo: You do not have permission to capture on that device' >&2\nexit 1\n"
    )
    failing.chmod(0o755)
    with (
        pytest.raises(CaptureUnavailable, match="permission to capture"),
        Capture(8000, tmp_path / "x.pcap", tcpdump=str(failing)),
    ):
        pass
