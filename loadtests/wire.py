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
"""

from __future__ import annotations

import time
from typing import Any

from gevent.local import local
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_stamp = local()
"""Per greenlet: `at`, the perf_counter when the current request started on its connection, or None."""


def arm() -> None:
    """Forget the previous request's stamp; call right before sending a request from this greenlet."""
    _stamp.at = None


def sent_at() -> float | None:
    """When this greenlet's request (since `arm`) started on its connection; None if it never did."""
    return getattr(_stamp, "at", None)


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
    pass


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
