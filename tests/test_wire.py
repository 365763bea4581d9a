"""loadtests/wire.py: a request's t0 is when its connection starts sending it, so a wait inside the
HTTP client before that (urllib3's pooled-connection check yields to the gevent hub) is not counted
as the server's latency (issue 13's TTFT gap against the raw-socket client)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
import urllib3.connectionpool

from llmfleet.loadtests import wire
from llmfleet.loadtests.emulator import Emulator, EmulatorConfig

CHECK_DELAY_S = 0.05


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
