"""loadtests/wire.py: a request's t0 is when its connection starts sending it, so a wait inside the
HTTP client before that (urllib3's pooled-connection check yields to the gevent hub) is not counted
as the server's latency (issue 13's TTFT gap against the raw-socket client)."""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Iterator

import pytest
import requests
import urllib3.connectionpool

from llmfleet.loadtests import delays, wire
from llmfleet.loadtests.emulator import Emulator, EmulatorConfig

CHECK_DELAY_S = 0.05
GAP_S = 0.05


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as client:
        wire.install(client)
        yield client


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with Emulator(EmulatorConfig(ttft_s=0.0, itl_s=0.0, output_tokens=1)) as emulator:
        yield emulator.url


def test_nothing_is_stamped_before_a_request(session: requests.Session) -> None:
    wire.arm()
    assert wire.sent_at() is None


def test_a_new_connection_is_stamped_when_it_starts_connecting(session: requests.Session, url: str) -> None:
    wire.arm()
    before = time.perf_counter()
    session.get(f"{url}/health", timeout=10).raise_for_status()
    after = time.perf_counter()
    first = wire.sent_at()
    assert first is not None and before <= first <= after
    wire.arm()
    session.get(f"{url}/health", timeout=10).raise_for_status()  # the kept-alive connection: a new stamp
    second = wire.sent_at()
    assert second is not None and second >= after


def test_a_wait_before_the_request_is_written_is_not_part_of_it(
    session: requests.Session, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    session.get(f"{url}/health", timeout=10).raise_for_status()  # a pooled connection to check
    checked = urllib3.connectionpool.is_connection_dropped

    def slow_check(conn: object) -> bool:
        time.sleep(CHECK_DELAY_S)  # under gevent this check yields to every other ready greenlet
        return checked(conn)  # type: ignore[arg-type]

    monkeypatch.setattr(urllib3.connectionpool, "is_connection_dropped", slow_check)
    wire.arm()
    decided = time.perf_counter()
    session.get(f"{url}/health", timeout=10).raise_for_status()
    sent = wire.sent_at()
    assert sent is not None and sent - decided >= CHECK_DELAY_S


def test_an_unreached_server_leaves_the_connect_stamp(session: requests.Session) -> None:
    with Emulator(EmulatorConfig(refuse_connections=True)) as refusing:
        wire.arm()
        before = time.perf_counter()
        with pytest.raises(requests.ConnectionError):
            session.get(f"{refusing.url}/health", timeout=10)
    stamp = wire.sent_at()
    assert stamp is not None and stamp >= before


def test_a_read_reports_how_long_its_newest_data_waited_in_the_socket() -> None:
    """The kernel stamps a TCP read with its last segment's arrival, and merges segments queued behind one
    another under the newer stamp: a backlog read late shows the wait of its newest data (a lower bound
    for the rest). Minimums only: load only adds delay."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
        with client, peer:
            wire._enable_timestamps(client)
            if not wire._timestamps_on(client):
                pytest.skip("no receive timestamps on this platform")
            reader = io.BufferedReader(wire._KernelStampedReads(client))
            wire.take_readings()
            wire.arm()
            peer.sendall(b"first ")
            time.sleep(GAP_S)
            peer.sendall(b"second")
            second_sent = time.perf_counter()
            time.sleep(GAP_S)
            assert reader.read1(64) == b"first second"  # one read takes the backlog
            read_at = time.perf_counter()
            rows = wire.take_readings()
    assert sum(count for _, _, count in rows) == 1, rows
    ((_, bin_index, _),) = rows
    waited = delays.value_of(bin_index)
    assert waited >= GAP_S * 0.98, waited  # at least the newest segment's wait (within a 2% bin)
    arrived = wire.arrived_at()
    assert arrived is not None and arrived <= second_sent + 0.001, (arrived, second_sent)  # stamped when sent
    assert read_at - arrived >= GAP_S, (read_at, arrived)
