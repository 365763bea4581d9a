"""The async queue's worker against the emulator (as the gateway) and a webhook receiver, on loopback.

The queue and the store are test doubles (tests/support/queue_fakes.py) with the semantics the worker relies on:
redelivery of what is not acknowledged, and a dead-letter list after the last attempt.
"""

from __future__ import annotations

import json
import re
import threading
import time
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from support.queue_fakes import FakeQueue, FakeStore, WebhookReceiver

from llmfleet.components import pins
from llmfleet.loadtests.emulator import Emulator, EmulatorConfig
from llmfleet.queueworker.jobs import SIGNATURE_HEADER, SIGNATURE_TOLERANCE_S, InvalidJob, Job, sign, verify
from llmfleet.queueworker.worker import BACKOFF_MAX_S, Worker, WorkerConfig, backoff_s

KEY = "batch-tenant-key"
SECRET = b"webhook-secret"
FAST = EmulatorConfig(ttft_s=0.0, itl_s=0.0, output_tokens=4, api_keys=frozenset({KEY}))


def job(custom_id: str, callback_url: str | None = None, **extra: object) -> bytes:
    line: dict[str, object] = {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        **extra,
    }
    if callback_url:
        line["callback_url"] = callback_url
    return json.dumps(line).encode()


def worker(emulator: Emulator, queue: FakeQueue, store: FakeStore, **config: object) -> Worker:
    settings: dict[str, object] = {
        "gateway_url": emulator.url,
        "api_key": KEY,
        "webhook_secret": SECRET,
        "job_timeout_s": 10.0,
        "callback_backoff_s": 0.01,
        **config,
    }
    return Worker(WorkerConfig(**settings), queue, store)  # type: ignore[arg-type]


def drain(w: Worker, queue: FakeQueue, limit: int = 50) -> None:
    """Handle messages one at a time until the queue is empty (bounded)."""
    for _ in range(limit):
        messages = queue.receive(1)
        if not messages:
            return
        w.handle(messages[0])
    raise AssertionError("queue did not drain")


def test_a_job_reaches_the_model_the_store_and_a_signed_webhook() -> None:
    with Emulator(FAST) as em, WebhookReceiver() as hook:
        queue, store = FakeQueue([job("job-1", hook.url)]), FakeStore()
        w = worker(em, queue, store)
        drain(w, queue)
        assert em.requests_served == 1
    line = store.line("job-1")
    assert line["custom_id"] == "job-1" and line["error"] is None
    assert line["response"]["status_code"] == 200
    assert line["response"]["body"]["usage"]["completion_tokens"] == 4
    assert [m.id for m in queue.acked] == ["m1"] and not queue.dead
    [(headers, body)] = hook.received
    assert verify(SECRET, body, headers[SIGNATURE_HEADER])
    delivered = json.loads(body)
    assert delivered["result_uri"] == "mem://bucket/results/job-1.json"
    assert delivered["response"] == line["response"]
    assert w.counters.completed == 1 and w.counters.callbacks == 1


def test_the_gateway_key_is_sent_and_a_refused_key_is_a_stored_failure_not_a_retry() -> None:
    with Emulator(FAST) as em:
        queue, store = FakeQueue([job("job-1")]), FakeStore()
        drain(worker(em, queue, store, api_key="wrong"), queue)
    line = store.line("job-1")
    assert line["response"]["status_code"] == 401
    assert len(queue.acked) == 1 and not queue.delays and not queue.dead


def test_server_errors_are_retried_with_growing_delays_then_dead_lettered_and_nothing_is_stored() -> None:
    with Emulator(FAST) as em:
        em.set_config(error_status_rate=1.0)
        queue, store = FakeQueue([job("job-1")], max_attempts=3), FakeStore()
        w = worker(em, queue, store)
        drain(w, queue)
        assert em.requests_served == 3
    assert store.objects == {}
    assert [m.attempt for m in queue.dead] == [4] and not queue.acked
    assert queue.delays == [backoff_s(1), backoff_s(2), backoff_s(3)]
    assert queue.delays[0] < queue.delays[1] < queue.delays[2]
    assert w.counters.retried == 3


def test_a_budget_refusal_is_retried_and_the_job_succeeds_once_the_budget_allows() -> None:
    with Emulator(FAST) as em:
        em.set_config(requests_per_minute=1)
        queue, store = FakeQueue([job("a"), job("b")]), FakeStore()
        w = worker(em, queue, store)
        w.handle(queue.receive(1)[0])  # a: admitted
        w.handle(queue.receive(1)[0])  # b: 429, back to the queue
        assert queue.delays == [backoff_s(1)] and "results/b.json" not in store.objects
        em.set_config(requests_per_minute=None)
        drain(w, queue)
    assert store.line("b")["response"]["status_code"] == 200
    assert sorted(m.id for m in queue.acked) == ["m1", "m2"]


def test_an_unreachable_gateway_or_store_is_retried() -> None:
    with Emulator(FAST) as em:
        url = em.url
    queue, store = FakeQueue([job("job-1")]), FakeStore()
    w = Worker(WorkerConfig(gateway_url=url, job_timeout_s=2.0), queue, store)
    w.handle(queue.receive(1)[0])
    assert queue.delays == [backoff_s(1)] and not queue.acked
    with Emulator(FAST) as em:
        queue, store = FakeQueue([job("job-2")]), FakeStore(fail_times=1)
        drain(worker(em, queue, store), queue)
    assert len(queue.delays) == 1 and store.line("job-2")["response"]["status_code"] == 200


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json", "not JSON"),
        (json.dumps({"custom_id": "x", "url": "/v1/files", "body": {"model": "m"}}).encode(), "url"),
        (json.dumps({"custom_id": "x", "body": {"messages": []}}).encode(), "naming a model"),
        (json.dumps({"custom_id": "a/b", "body": {"model": "m"}}).encode(), "custom_id"),
        (json.dumps({"custom_id": "x", "method": "GET", "body": {"model": "m"}}).encode(), "POST"),
    ],
)
def test_a_message_that_is_not_a_job_is_stored_as_an_error_and_never_retried(body: bytes, problem: str) -> None:
    with pytest.raises(InvalidJob, match=problem):
        Job.parse(body, "m1")
    with Emulator(FAST) as em:
        queue, store = FakeQueue([body]), FakeStore()
        drain(worker(em, queue, store), queue)
        assert em.requests_served == 0
    [stored] = store.objects.values()
    line = json.loads(stored)
    assert line["response"] is None and problem in line["error"]["message"]
    assert len(queue.acked) == 1 and not queue.delays


def test_jobs_are_never_streamed_and_keep_their_parameters() -> None:
    parsed = Job.parse(job("j", temperature=0), "m1")
    assert parsed.body["stream"] is False and parsed.body["model"] == "chat"
    assert Job.parse(json.dumps({"body": {"model": "m", "stream": True}}).encode(), "msg-9").custom_id == "msg-9"
    assert Job.parse(json.dumps({"body": {"model": "m", "stream": True}}).encode(), "m").body["stream"] is False


def test_a_failing_webhook_is_retried_then_given_up_without_rerunning_the_job() -> None:
    with Emulator(FAST) as em, WebhookReceiver(status=503) as hook:
        queue, store = FakeQueue([job("job-1", hook.url)]), FakeStore()
        w = worker(em, queue, store)
        drain(w, queue)
        assert em.requests_served == 1
    assert len(hook.received) == 3
    assert store.line("job-1")["response"]["status_code"] == 200 and len(queue.acked) == 1
    assert w.counters.callback_failures == 1


def test_a_callback_without_a_webhook_secret_is_refused() -> None:
    with Emulator(FAST) as em, WebhookReceiver() as hook:
        queue, store = FakeQueue([job("job-1", hook.url)]), FakeStore()
        drain(worker(em, queue, store, webhook_secret=None), queue)
        assert em.requests_served == 0
    assert not hook.received and "callbacks" in store.line("job-1")["error"]["message"]


def test_signatures_fail_on_a_changed_body_a_wrong_secret_an_old_stamp_or_garbage() -> None:
    now = 1_800_000_000.0
    header = sign(SECRET, b'{"a":1}', now=now)
    assert verify(SECRET, b'{"a":1}', header, now=now + 1)
    assert not verify(SECRET, b'{"a":2}', header, now=now)
    assert not verify(b"other", b'{"a":1}', header, now=now)
    assert not verify(SECRET, b'{"a":1}', header, now=now + SIGNATURE_TOLERANCE_S + 1)
    assert not verify(SECRET, b'{"a":1}', "v1=abc", now=now)
    assert not verify(SECRET, b'{"a":1}', "nonsense", now=now)


def test_backoff_grows_and_is_capped() -> None:
    delays = [backoff_s(n) for n in range(1, 12)]
    assert delays == sorted(delays) and delays[0] > 0 and max(delays) == BACKOFF_MAX_S


def test_run_processes_every_job_with_several_threads_and_stops_when_told() -> None:
    with Emulator(FAST) as em:
        queue = FakeQueue([job(f"j{i}") for i in range(24)])
        store = FakeStore()
        w = worker(em, queue, store, concurrency=4)
        stop = threading.Event()

        def idle() -> None:
            if queue.drained():
                stop.set()
            time.sleep(0.01)

        runner = threading.Thread(target=w.run, args=(stop, idle))
        runner.start()
        runner.join(timeout=60)
        assert not runner.is_alive()
        assert em.requests_served == 24
    assert sorted(store.objects) == sorted(f"results/j{i}.json" for i in range(24))
    assert len(queue.acked) == 24 and w.counters.completed == 24


def test_a_redelivered_job_keeps_the_first_result_and_calls_back_once() -> None:
    with Emulator(FAST) as em, WebhookReceiver() as hook:
        queue, store = FakeQueue([job("job-1", hook.url), job("job-1", hook.url)]), FakeStore()
        w = worker(em, queue, store)
        drain(w, queue)
        assert em.requests_served == 2
    assert list(store.objects) == ["results/job-1.json"] and len(hook.received) == 1
    assert w.counters.completed == 1 and w.counters.duplicates == 1 and len(queue.acked) == 2


def test_the_worker_image_builds_on_the_pinned_base_with_sdks_the_worker_extra_allows() -> None:
    root = Path(__file__).resolve().parents[1]
    dockerfile = (root / "queueworker" / "Dockerfile").read_text()
    [base] = re.findall(r"^FROM (\S+)$", dockerfile, re.MULTILINE)
    assert base == pins.image("queue-worker-base")
    installed = dict(re.findall(r"([a-z0-9-]+)==([0-9.]+)", dockerfile))
    extra = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]["worker"]
    for requirement in map(Requirement, extra):
        assert requirement.name in installed, f"{requirement.name} is not installed in the worker image"
        assert requirement.specifier.contains(installed[requirement.name]), (requirement, installed[requirement.name])
    assert "httpx" in installed
