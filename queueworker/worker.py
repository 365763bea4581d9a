"""The queue worker: take a job, call the model through the gateway, store the answer, call back, acknowledge.

Delivery is at least once (SQS and Pub/Sub both redeliver what is not acknowledged), so a job can run
twice; its result is written under its `custom_id`, so a rerun overwrites the same object.

What happens to a job, by what the gateway answered:
- 2xx, or a 4xx that a retry cannot fix (400, 401, 403, 404, 413, 422, ...): the response is stored as
  the job's result line, the webhook (if any) is called, the message is acknowledged;
- 408, 409, 429, 5xx or no answer (connection refused, reset, timeout): nothing is stored; the message
  comes back after a growing delay, and the queue's own policy moves it to its dead-letter queue after
  its last attempt (SQS `maxReceiveCount`, Pub/Sub `max_delivery_attempts`);
- not a job (bad JSON, unknown url): an error result is stored, the message acknowledged (never retried).
A webhook that keeps failing does not rerun the job: its result is stored already; the failure is logged.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from llmfleet.queueworker.jobs import SIGNATURE_HEADER, InvalidJob, Job, result_line, sign

log = logging.getLogger("queueworker")

RETRYABLE_STATUS = frozenset({408, 409, 429})
"""Answers below 500 that a later attempt can change (timeouts, conflicts, the tenant's budget)."""
BACKOFF_BASE_S = 10
BACKOFF_MAX_S = 600
"""Delay before attempt n+1: 10 s x 2^(n-1), at most 10 minutes (also SQS's and Pub/Sub's usual ceilings)."""
CALLBACK_ATTEMPTS = 3
CALLBACK_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Message:
    id: str
    """The queue's message id (names the result of a message that is not a job)."""
    body: bytes
    attempt: int
    """Delivery attempt, 1 for the first (SQS ApproximateReceiveCount, Pub/Sub delivery_attempt)."""
    handle: Any = None
    """What the queue needs to acknowledge it (SQS receipt handle, Pub/Sub ack id)."""


class JobQueue(Protocol):
    def receive(self, max_messages: int) -> list[Message]:
        """Up to `max_messages` messages, waiting a few seconds (long poll) when there are none."""
        ...

    def ack(self, message: Message) -> None:
        """Done: never deliver it again."""
        ...

    def retry_later(self, message: Message, delay_s: int) -> None:
        """Deliver it again in about `delay_s` seconds."""
        ...


class ResultStore(Protocol):
    def put(self, key: str, data: bytes) -> tuple[str, bool]:
        """Store `data` under `key` unless an object is there already (a conditional create: the first result of a
        redelivered job wins); returns the object's URI (s3://..., gs://...) and whether this call created it."""
        ...


@dataclass(frozen=True)
class WorkerConfig:
    gateway_url: str
    """Base URL of the region's gateway (https://<region name>, or the in-cluster Envoy service)."""
    api_key: str | None = None
    """The gateway tenant key the jobs run under (None: an anonymous gateway)."""
    webhook_secret: bytes | None = None
    """HMAC key of the webhook signature (None: callbacks are refused, jobs with one fail)."""
    concurrency: int = 4
    """Jobs in flight per worker process."""
    job_timeout_s: float = 300.0
    """Longest wait for the gateway's answer to one job."""
    result_prefix: str = "results/"
    callback_backoff_s: float = 2.0
    """Wait before the second webhook attempt (doubled before the third)."""


@dataclass
class Counters:
    completed: int = 0
    failed: int = 0
    """Stored with an error (the gateway refused the request, or it was not a job)."""
    retried: int = 0
    duplicates: int = 0
    """Ran again after a redelivery; the first run's result was kept (and its webhook already called)."""
    callbacks: int = 0
    callback_failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)


class Retry(Exception):
    """The job may succeed later: give the message back to the queue."""


def backoff_s(attempt: int) -> int:
    return min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(attempt - 1, 0))


class Worker:
    def __init__(
        self,
        config: WorkerConfig,
        queue: JobQueue,
        store: ResultStore,
        client: httpx.Client | None = None,
    ) -> None:
        self.config = config
        self.queue = queue
        self.store = store
        self.counters = Counters()
        limits = httpx.Limits(max_connections=config.concurrency + 2)
        self._client = client or httpx.Client(timeout=config.job_timeout_s, limits=limits)

    def run(self, stop: threading.Event, on_idle: Callable[[], None] | None = None) -> None:
        """Process jobs with `concurrency` threads until `stop` is set (SIGTERM: finish the jobs in flight)."""
        threads = [
            threading.Thread(target=self._loop, args=(stop, on_idle), name=f"job-{i}", daemon=True)
            for i in range(self.config.concurrency)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _loop(self, stop: threading.Event, on_idle: Callable[[], None] | None) -> None:
        while not stop.is_set():
            try:
                messages = self.queue.receive(1)
            except Exception:
                log.exception("receiving from the queue failed; trying again in 5 s")
                stop.wait(5)
                continue
            if not messages and on_idle is not None:
                on_idle()
            for message in messages:
                self.handle(message)

    def handle(self, message: Message) -> None:
        """One message, start to finish (its outcome is one of the counters)."""
        try:
            self._process(message)
        except Retry as exc:
            log.warning("message %s attempt %d: %s; retrying later", message.id, message.attempt, exc)
            self.counters.add("retried")
            self.queue.retry_later(message, backoff_s(message.attempt))
            return
        self.queue.ack(message)

    def _process(self, message: Message) -> None:
        try:
            job = Job.parse(message.body, message.id)
        except InvalidJob as exc:
            self._store(message.id, result_line(message.id, None, None, None, str(exc)))
            self.counters.add("failed")
            return
        if job.callback_url is not None and self.config.webhook_secret is None:
            self._store(job.custom_id, result_line(job.custom_id, None, None, None, "callbacks are not enabled"))
            self.counters.add("failed")
            return
        status, body, request_id = self._call_model(job)
        line = result_line(job.custom_id, status, body, request_id, None)
        uri, created = self._store_new(job.custom_id, line)
        if not created:
            log.info("job %s: a result is stored already (a redelivery); kept it", job.custom_id)
            self.counters.add("duplicates")
            return
        self.counters.add("completed" if status < 400 else "failed")
        if job.callback_url is not None:
            self._callback(job, line, uri)

    def _call_model(self, job: Job) -> tuple[int, Any, str | None]:
        headers = {"authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        try:
            response = self._client.post(self.config.gateway_url.rstrip("/") + job.url, json=job.body, headers=headers)
        except httpx.HTTPError as exc:
            raise Retry(f"gateway unreachable: {exc!r}") from exc
        if response.status_code >= 500 or response.status_code in RETRYABLE_STATUS:
            raise Retry(f"gateway answered {response.status_code}")
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        return response.status_code, body, response.headers.get("x-request-id")

    def _store(self, custom_id: str, line: dict[str, Any]) -> None:
        self._store_new(custom_id, line)

    def _store_new(self, custom_id: str, line: dict[str, Any]) -> tuple[str, bool]:
        data = json.dumps(line, separators=(",", ":")).encode()
        try:
            return self.store.put(f"{self.config.result_prefix}{custom_id}.json", data)
        except Exception as exc:
            raise Retry(f"storing the result failed: {exc!r}") from exc

    def _callback(self, job: Job, line: dict[str, Any], uri: str) -> None:
        assert job.callback_url is not None and self.config.webhook_secret is not None
        payload = json.dumps({"result_uri": uri, **line}, separators=(",", ":")).encode()
        for attempt in range(1, CALLBACK_ATTEMPTS + 1):
            headers = {
                "content-type": "application/json",
                SIGNATURE_HEADER: sign(self.config.webhook_secret, payload),
            }
            try:
                response = self._client.post(
                    job.callback_url, content=payload, headers=headers, timeout=CALLBACK_TIMEOUT_S
                )
                if response.status_code < 300:
                    self.counters.add("callbacks")
                    return
                problem = f"answered {response.status_code}"
            except httpx.HTTPError as exc:
                problem = repr(exc)
            log.warning("job %s: callback attempt %d %s", job.custom_id, attempt, problem)
            if attempt < CALLBACK_ATTEMPTS:
                time.sleep(self.config.callback_backoff_s * 2 ** (attempt - 1))
        self.counters.add("callback_failures")
        log.error("job %s: callback failed %d times; the result stays at %s", job.custom_id, CALLBACK_ATTEMPTS, uri)
