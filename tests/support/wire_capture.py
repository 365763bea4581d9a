"""What the wire saw: streamed chat completions measured from a loopback capture's kernel timestamps.

A client's own clock reads a response when its process gets round to it; the kernel stamps each
packet when it is sent, whatever any user-space scheduler does. tests/benchmarks/bench_gate.py
captures the loopback traffic to the server's port with tcpdump while a step runs (`Capture`) and
turns the capture into one RequestSample per request (`read_pcap`), timed by the packets:

- started_at: the client's packet carrying the request's first byte (`POST ...`);
- each SSE event: the server packet that completes it, so an event split over two packets is
  timed by the second; the body is de-chunked first (chunked transfer-encoding is the servers'
  framing) and fed to the same `StreamMeter` the gate's users feed, so TTFT (first non-empty
  content, reasoning or tool-call delta), TPOT and the token count follow the gate's definitions
  (loadtests/stream.py, docs/loadtesting.md) exactly.

Each TCP direction is reassembled in sequence order (a byte is readable once every earlier byte has
arrived; retransmitted bytes keep their first time); HTTP/1.1 framing is h11's. Requests are
attributed to clients by source address: bench_gate's reference client binds 127.0.0.2, the gate
stays on 127.0.0.1. Packets are parsed with dpkt. A benchmark helper: no test runs tcpdump.
"""

from __future__ import annotations

import bisect
import contextlib
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dpkt  # pyright: ignore[reportMissingTypeStubs]
import h11

from llmfleet.loadtests.samples import RequestSample
from llmfleet.loadtests.stream import StreamMeter

SEQ_SPACE = 1 << 32
PAYLOAD_OR_CONTROL = (
    "(tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0 or ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2) != 0)"
)
"""Pure ACKs carry nothing measured: leaving them out halves what tcpdump writes and this module reads."""


@dataclass(frozen=True)
class WireRequest:
    client: str
    """The client's source address (127.0.0.1: the gate, 127.0.0.2: bench_gate's reference)."""
    port: int
    sample: RequestSample


@dataclass
class WireReading:
    requests: list[WireRequest] = field(default_factory=list[WireRequest])
    connections: int = 0
    incomplete: int = 0
    """Requests whose response the capture did not hold to its end (cut by the capture's end or a gap)."""
    problems: list[str] = field(default_factory=list[str])
    """Connections whose bytes could not be read as HTTP/1.1, or had a hole (a packet the capture lost)."""

    def samples(self, client: str, start: float = float("-inf"), end: float = float("inf")) -> list[RequestSample]:
        """The samples of one client's connections whose request started within [start, end]."""
        return [r.sample for r in self.requests if r.client == client and start <= r.sample.started_at <= end]


@dataclass
class _Direction:
    base: int | None = None
    """Sequence number of the first payload byte (the SYN's + 1), once known."""
    segments: list[tuple[int, float, bytes]] = field(default_factory=list[tuple[int, float, bytes]])

    def stream(self) -> tuple[list[tuple[float, bytes]], bool]:
        """(when each piece became readable, its bytes) in sequence order, and whether a hole cut it short."""
        if not self.segments:
            return [], False
        base = self.base if self.base is not None else min(seq for seq, _, _ in self.segments)
        ordered = sorted(((seq - base) % SEQ_SPACE, at, data) for seq, at, data in self.segments)
        pieces: list[tuple[float, bytes]] = []
        offset, readable = 0, float("-inf")
        for start, at, data in ordered:
            if start + len(data) <= offset:
                continue  # a retransmission of bytes already placed: their first time stands
            if start > offset:
                return pieces, True
            readable = max(readable, at)  # not readable before every earlier byte is there
            pieces.append((readable, data[offset - start :]))
            offset = start + len(data)
        return pieces, False


@dataclass
class _Connection:
    client: tuple[str, int]
    to_server: _Direction = field(default_factory=_Direction)
    to_client: _Direction = field(default_factory=_Direction)


def _packets(path: Path) -> Iterator[tuple[float, Any]]:
    """(timestamp, dpkt TCP-in-IPv4 packet) for every such packet of an Ethernet or Linux cooked capture."""
    with path.open("rb") as file:
        reader: Any = dpkt.pcap.Reader(file)
        link = reader.datalink()
        frame: Any = {dpkt.pcap.DLT_EN10MB: dpkt.ethernet.Ethernet, dpkt.pcap.DLT_LINUX_SLL: dpkt.sll.SLL}.get(link)
        if frame is None:
            raise ValueError(f"{path}: link type {link} (expected Ethernet, as tcpdump -i lo writes)")
        for at, buffer in reader:
            ip = frame(buffer).data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP):
                yield float(at), ip


def read_pcap(
    path: Path, server_port: int, *, offset: float = 0.0, expected_output_tokens: int | None = None
) -> WireReading:
    """Every request to `server_port` in the capture at `path`, timed by its packets.

    `offset` is subtracted from every packet time (pass time.time() - time.perf_counter() to compare
    with samples a client stamped with perf_counter)."""
    finished: list[_Connection] = []
    open_: dict[tuple[str, int], _Connection] = {}
    for at, ip in _packets(path):
        tcp = ip.data
        if tcp.sport == server_port:
            key, towards_server = (socket.inet_ntoa(ip.dst), tcp.dport), False
        elif tcp.dport == server_port:
            key, towards_server = (socket.inet_ntoa(ip.src), tcp.sport), True
        else:
            continue
        connection = open_.get(key)
        opening = bool(tcp.flags & dpkt.tcp.TH_SYN) and not tcp.flags & dpkt.tcp.TH_ACK
        if connection is None or (opening and (connection.to_server.segments or connection.to_client.segments)):
            if connection is not None:
                finished.append(connection)  # the client port reused for a new connection
            connection = open_[key] = _Connection(key)
        direction = connection.to_server if towards_server else connection.to_client
        if tcp.flags & dpkt.tcp.TH_SYN:
            direction.base = (tcp.seq + 1) % SEQ_SPACE
        if tcp.data:
            direction.segments.append((tcp.seq, at - offset, bytes(tcp.data)))
    reading = WireReading()
    for connection in [*finished, *open_.values()]:
        reading.connections += 1
        _read_connection(connection, reading, expected_output_tokens)
    reading.requests.sort(key=lambda r: r.sample.started_at)
    return reading


def _read_connection(connection: _Connection, reading: WireReading, expected_output_tokens: int | None) -> None:
    address, port = connection.client
    requests, hole_up = _requests(connection.to_server)
    pieces, hole_down = connection.to_client.stream()
    if hole_up or hole_down:
        reading.problems.append(f"{address}:{port}: a hole in the byte stream (a packet the capture dropped)")
    client = h11.Connection(h11.CLIENT)
    now = [0.0]
    meter: StreamMeter | None = None
    status = 0
    answered = 0
    if requests:
        _mirror(client, requests[0][1])
    try:
        for at, data in pieces:
            now[0] = at
            client.receive_data(data)
            while (event := client.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
                if isinstance(event, h11.Response):
                    status = event.status_code
                    started = requests[answered][0]
                    meter = StreamMeter(started, expected_output_tokens=expected_output_tokens, clock=lambda: now[0])
                elif isinstance(event, h11.Data) and meter is not None:
                    meter.feed(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage) and meter is not None:
                    reading.requests.append(WireRequest(address, port, meter.finish(status)))
                    meter, answered = None, answered + 1
                    if answered == len(requests) or client.our_state is h11.MUST_CLOSE:
                        break
                    client.start_next_cycle()
                    _mirror(client, requests[answered][1])
                elif isinstance(event, h11.ConnectionClosed):
                    break
    except (h11.ProtocolError, IndexError) as exc:
        reading.problems.append(f"{address}:{port}: responses not readable as HTTP/1.1 ({exc})")
    reading.incomplete += len(requests) - answered


def _requests(direction: _Direction) -> tuple[list[tuple[float, h11.Request]], bool]:
    """Each request the client sent, with the time of the packet carrying its first byte."""
    pieces, hole = direction.stream()
    server = h11.Connection(h11.SERVER)
    found: list[tuple[float, h11.Request]] = []
    first_byte_at: float | None = None
    head: h11.Request | None = None
    with contextlib.suppress(h11.ProtocolError):
        for at, data in pieces:
            if first_byte_at is None and server.their_state is h11.IDLE:
                first_byte_at = at
            server.receive_data(data)
            while (event := server.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
                if isinstance(event, h11.Request):
                    head = event
                elif isinstance(event, h11.EndOfMessage) and head is not None:
                    found.append((first_byte_at if first_byte_at is not None else at, head))
                    # Answer our mirror so it accepts the next request (its bytes are not read here).
                    server.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
                    server.send(h11.EndOfMessage())
                    if server.our_state is h11.MUST_CLOSE:
                        return found, hole
                    server.start_next_cycle()
                    head, first_byte_at = None, None
                    if server.trailing_data[0]:
                        first_byte_at = at  # the next request began in this same packet
                elif isinstance(event, h11.ConnectionClosed):
                    return found, hole
    return found, hole


def _mirror(client: h11.Connection, request: h11.Request) -> None:
    """Put the response parser in the state of a client that sent `request` (same method: same framing)."""
    client.send(h11.Request(method=request.method, target=request.target, headers=[("host", "wire")]))
    client.send(h11.EndOfMessage())


class CaptureUnavailable(RuntimeError):
    """No tcpdump, or it could not capture (not root, no loopback capture): the wire figures are skipped."""


@dataclass
class CaptureStats:
    """tcpdump's own counts; any dropped by the kernel leaves holes (on lo, "received by filter"
    counts each packet twice, once per direction of the device, so it is not compared with captured)."""

    captured: int | None
    received: int | None
    dropped: int | None


class Capture:
    """tcpdump writing the loopback packets to and from `port` into `path` while the `with` block runs.

    Kernel timestamps are taken when each packet is sent, so tcpdump's own scheduling does not move
    them; it runs at a low priority (nice 10) so it takes CPU from the measured processes last, with
    a large kernel buffer so that waiting does not drop packets (the count it reports is kept)."""

    BUFFER_KIB = 65536
    SETTLE_S = 2.5

    def __init__(self, port: int, path: Path, *, tcpdump: str | None = None) -> None:
        self.port, self.path = port, path
        self.tcpdump = tcpdump or shutil.which("tcpdump")
        self.stats = CaptureStats(None, None, None)
        self._process: subprocess.Popen[bytes] | None = None
        self._log = path.with_suffix(".tcpdump.log")

    def command(self) -> list[str]:
        if self.tcpdump is None:
            raise CaptureUnavailable("tcpdump not found (apt-get install -y tcpdump)")
        return [
            *("nice", "-n", "10", self.tcpdump, "-i", "lo", "-n", "-s", "0", "-B", str(self.BUFFER_KIB)),
            *("-w", str(self.path), f"tcp port {self.port} and {PAYLOAD_OR_CONTROL}"),
        ]

    def __enter__(self) -> Capture:
        command = self.command()
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 15
        while b"listening on" not in self._log.read_bytes():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self._process.kill()
                self._process.wait()
                message = self._log.read_text(errors="replace").strip()
                raise CaptureUnavailable(f"tcpdump did not start: {message or 'no output'}")
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        if self._process is None:
            return
        # libpcap hands packets over in blocks, each at the latest after its 1 s timeout; tcpdump
        # stopped before that loses the last ones (the ends of the last responses).
        time.sleep(self.SETTLE_S)
        self._process.send_signal(signal.SIGINT)  # tcpdump flushes the file and prints its counts
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        log = self._log.read_text(errors="replace")
        self.stats = CaptureStats(
            _count(log, "captured"), _count(log, "received by filter"), _count(log, "dropped by kernel")
        )


def _count(log: str, what: str) -> int | None:
    found = re.search(rf"(\d+) packets? {what}", log)
    return int(found.group(1)) if found else None


TOLERANCE_S = 0.001
"""How far a client's time may precede the wire's for the same event: the clock offset's error."""
LONGEST_SEND_S = 1.0
"""A client's request that reached the wire later than this after its t0 is left unpaired."""


def pair(client: list[RequestSample], wire: list[RequestSample]) -> list[tuple[RequestSample, RequestSample]]:
    """Each of a client's samples with the wire's of the same request, where one can be told.

    Samples carry no request id, so a pair is found by time: the same number of token chunks, the
    wire's start no earlier than the client's t0 and within LONGEST_SEND_S of it, neither token time
    read before the wire carried it; of the candidates, the nearest (summed over start, first and
    last token) pairs first. Requests sent in one burst on equal timings can pair across each other;
    their delays are then off by the difference of near-equal times, so the pairs stay meaningful.
    """
    by_start = sorted(range(len(wire)), key=lambda j: wire[j].started_at)
    starts = [wire[j].started_at for j in by_start]
    candidates: list[tuple[float, int, int]] = []
    for i, sample in enumerate(client):
        if sample.first_token_at is None or sample.last_token_at is None:
            continue
        low = bisect.bisect_left(starts, sample.started_at - TOLERANCE_S)
        high = bisect.bisect_right(starts, sample.started_at + LONGEST_SEND_S)
        for j in by_start[low:high]:
            seen = wire[j]
            if seen.first_token_at is None or seen.last_token_at is None:
                continue
            if len(seen.token_chunk_times) != len(sample.token_chunk_times):
                continue
            first_late = sample.first_token_at - seen.first_token_at
            last_late = sample.last_token_at - seen.last_token_at
            if first_late < -TOLERANCE_S or last_late < -TOLERANCE_S:
                continue
            candidates.append((seen.started_at - sample.started_at + first_late + last_late, i, j))
    candidates.sort()
    paired: list[tuple[RequestSample, RequestSample]] = []
    used_client: set[int] = set()
    used_wire: set[int] = set()
    for _, i, j in candidates:
        if i not in used_client and j not in used_wire:
            used_client.add(i)
            used_wire.add(j)
            paired.append((client[i], wire[j]))
    return paired
