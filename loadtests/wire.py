"""When a request really starts: the moment the Locust user's connection begins sending it.

A request's t0 taken before `self.client.post(...)` is not when the server could first see it. On
the way, urllib3 checks that the pooled connection is still open (`is_connection_dropped` ->
`wait_for_read(sock, timeout=0)`), and under gevent that check yields to the hub: every other
ready greenlet runs before the request is written. With many users in step (closed loop, equal
lengths) that is every other user's chunk handling and request preparation, and it was measured as
the gate's TTFT gap against a raw-socket client (issue 13: emulator, 64 users, the slowest requests
105 ms late to the server while their later chunks came 20 ms apart, so the server was on time).
That wait is the generator's, not the server's.

So the connections of a `ChatUser` stamp, per greenlet, the first moment they act for a request:
`connect()` for a new connection (set-up is part of the request, as in vLLM's `bench serve` and the
raw-socket reference) or `request()` on a kept-alive one. `started_at` is that stamp; the time from
the user's decision to it is kept as the sample's `send_delay_s`, a measure of the generator's own
delay (reported in the verdict's `metrics.generator`).

The receiving side is stamped by the kernel (issue 13: the timer and beacon probes under-read what a
response waits). A plain-HTTP connection turns on SO_TIMESTAMPNS and its response is read with
`recvmsg_into`, which returns, for TCP, the kernel's receive time of the last segment the read
copied (Linux `tcp_recv_timestamp`). The read's socket-to-handler delay is the handler's clock at
the read minus that stamp: how long the newest data of the read waited in the socket for this
process to get to it (a lower bound for older data read with it: see _KernelStampedReads).
Each process keeps its readings (`take_readings`); the gate judges their p95. The stamp of the read
that delivered a request's first token is also kept (`arrived_at`), so the first token's arrival is
known apart from when the handler parsed it. Where the platform has no receive timestamps (not
Linux, TLS connections: an SSL socket has no `recvmsg_into`), nothing is recorded and the probe
reads as not measured.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import socket
import struct
import sys
import time
from typing import Any

from gevent.local import local
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from llmfleet.loadtests import delays

_stamp = local()
"""Per greenlet: `at`, the perf_counter when the current request started on its connection, or None."""


def arm() -> None:
    """Forget the previous request's stamps; call right before sending a request from this greenlet."""
    _stamp.at = None
    _stamp.arrived = None


def sent_at() -> float | None:
    """When this greenlet's request (since `arm`) started on its connection; None if it never did."""
    return getattr(_stamp, "at", None)


SO_TIMESTAMPNS = 35
"""Linux's SO_TIMESTAMPNS (= SCM_TIMESTAMPNS; `socket` does not export it): receive times as a timespec."""
_TIMESPEC = struct.Struct("@ll")
_ANCILLARY_SPACE = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0
_readings: delays.Counts = {}
"""This process's socket-to-handler readings not yet taken, counted by (second, bin) (loadtests/delays.py)."""


def take_readings() -> list[tuple[float, int, int]]:
    """The readings since the last call as (second of perf_counter, bin, count) rows."""
    global _readings
    taken, _readings = _readings, {}
    return [(float(second), bin_index, count) for (second, bin_index, count) in _rows(taken)]


def _rows(counts: delays.Counts) -> list[tuple[int, int, int]]:
    return [(second, bin_index, count) for (second, bin_index), count in counts.items()]


def arrived_at() -> float | None:
    """perf_counter of the kernel's receive stamp of this greenlet's latest read (since `arm`); None
    where not measured. Data parsed now arrived at or before it (the read copied it)."""
    return getattr(_stamp, "arrived", None)


def _enable_timestamps(sock: Any) -> None:
    """Ask the kernel for receive timestamps on a plain TCP socket; where it cannot, read without them."""
    if not sys.platform.startswith("linux") or not _ANCILLARY_SPACE or not hasattr(sock, "recvmsg_into"):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


def _timestamps_on(sock: Any) -> bool:
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS)) and hasattr(sock, "recvmsg_into")
    except (OSError, AttributeError):
        return False


class _KernelStampedReads(io.RawIOBase):
    """A socket's reads through `recvmsg_into`, noting each read's socket-to-handler delay.

    For TCP the kernel stamps a read with the receive time of the LAST segment it copied, and segments
    queued behind one another are merged (`tcp_try_coalesce`), the merged one keeping the newer stamp:
    reading one byte first was tried and gave the same, newest, stamp (tests/test_wire.py). So the
    delay is the age of the newest data in the read: exact for data that arrived alone after a gap
    (a first token after the TTFT, every chunk of a reader that keeps up), a lower bound for a backlog
    (a reader late by more than one inter-chunk gap shows about that gap)."""

    def __init__(self, sock: Any) -> None:
        super().__init__()
        self._sock = sock

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._sock.fileno()

    def readinto(self, buffer: Any) -> int:
        size, ancillary, _flags, _address = self._sock.recvmsg_into([buffer], _ANCILLARY_SPACE)
        now_ns, now = time.time_ns(), time.perf_counter()  # the handler's clock at the read
        stamp = _stamp_of(ancillary)
        if stamp is not None and size > 0:
            # The stamp is CLOCK_REALTIME: compared with the wall clock, placed on perf_counter.
            delay = max((now_ns - stamp) / 1e9, 0.0)
            delays.add(_readings, now, delay)
            _stamp.arrived = now - delay
        return size


def _stamp_of(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    """The kernel's receive time (ns since the epoch) in a read's ancillary data, or None."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return seconds * 1_000_000_000 + nanoseconds
    return None


class _SocketReadStamped:
    """What http.client's response needs of its socket (`makefile("rb")`), reading with kernel stamps."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock

    def makefile(self, mode: str = "rb", *_: Any, **__: Any) -> io.BufferedReader:
        return io.BufferedReader(_KernelStampedReads(self._sock))


class _StampedResponse(http.client.HTTPResponse):
    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(_SocketReadStamped(sock) if _timestamps_on(sock) else sock, *args, **kwargs)


def _mark() -> None:
    if getattr(_stamp, "at", 0.0) is None:  # the first act for this request wins (connect, then request)
        _stamp.at = time.perf_counter()


class _Stamped(HTTPConnection):
    """Stamps the request's start on its first act: set-up of a new connection, or the write on a kept one."""

    def connect(self) -> None:
        _mark()
        super().connect()

    def request(self, *args: Any, **kwargs: Any) -> None:
        _mark()
        super().request(*args, **kwargs)


class _StampedHTTPConnection(_Stamped):
    response_class = _StampedResponse  # reads with the kernel's receive stamps (see the module's docstring)

    def connect(self) -> None:
        super().connect()
        _enable_timestamps(self.sock)


class _StampedHTTPSConnection(_Stamped, HTTPSConnection):  # HTTPSConnection's connect (TLS) runs inside _Stamped's
    pass


class _StampedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _StampedHTTPConnection


class _StampedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _StampedHTTPSConnection


def install(session: Any) -> None:
    """Make every connection a requests `Session` (Locust's HttpSession) opens stamp its requests."""
    for adapter in session.adapters.values():
        manager = getattr(adapter, "poolmanager", None)
        if manager is not None:
            manager.pool_classes_by_scheme = {"http": _StampedHTTPPool, "https": _StampedHTTPSPool}
