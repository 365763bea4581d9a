"""Locust users for the OpenAI chat-completions API, measuring what GuideLLM and vLLM bench measure.

`ChatUser` is closed loop (each user sends its next request when the previous one ends);
`OpenLoopChatUser` sends requests at Poisson arrival times whatever the server does, and records when
each was due, so a slow server shows up as queue time instead of as fewer requests (coordinated
omission). Suites (loadtests/suites/) subclass them.

Measurement, following the pitfalls measured in docs/loadtesting.md:
- Streams are read with HttpUser's `iter_lines()` (FastHttpUser delays streamed data) and every SSE
  line goes to a `StreamMeter` as it arrives; the meter applies the metric definitions.
- Locust's own response time for a stream is time-to-headers. Inside `catch_response` the recorded
  time is replaced by the real E2E, and a second entry named "TTFT" records time to first token, so
  Locust's tables and HTML report show both.
- Locust rounds what it stores; the gate uses the raw `RequestSample`s kept by `loadtests.collect`.

Faults end as samples, never as silence (issue 13):
- Every request has a deadline, `--llm-request-timeout` (default: REQUEST_TIMEOUT_E2E_MULTIPLE times
  the SLO's E2E p99 target): one that outlives it is a failed sample (`timed_out`), so a server that
  never answers some requests shows in the error rate, and the run's drain is bounded by it.
- A request that never reached the server (refused, DNS, TLS, connect timeout) is marked `unreached`;
  the user then backs off (BACKOFF_FIRST_S doubling to BACKOFF_MAX_S) instead of hammering a dead
  address, and the gate calls a run where nothing was reached invalid, not a breach.
- A 429's `Retry-After` (seconds or an HTTP date, capped at RETRY_AFTER_MAX_S) is honoured: this user
  sends nothing before it. The 429 itself is a failed sample.

Options (`locust --help` lists them; `LOCUST_LLM_*` environment variables and locust.conf work too):
--llm-model, --llm-api-key-env, --llm-non-streaming, --llm-prompt-tokens, --llm-output-tokens,
--llm-dataset, --llm-prefix-groups / --llm-prefix-tokens / --llm-turns (shared-prefix, multi-turn
conversations: loadtests/conversations.py), --llm-timeout, --llm-request-timeout, --llm-requests-per-user,
--llm-rate, --llm-max-inflight.
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import itertools
import logging
import os
import random
import ssl
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import gevent
from gevent.lock import BoundedSemaphore
from locust import HttpUser, events, task
from locust.clients import ResponseContextManager
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import WorkerRunner
from requests.exceptions import ConnectTimeout
from requests.exceptions import SSLError as RequestsSSLError
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.exceptions import SSLError as Urllib3SSLError

from llmfleet.loadtests import wire
from llmfleet.loadtests.collect import LATE_START_S, collector_of
from llmfleet.loadtests.conversations import SharedPrefixPrompts
from llmfleet.loadtests.prompts import ChatPrompt, DatasetPrompts, PromptSource, SyntheticPrompts, chat_body
from llmfleet.loadtests.samples import RequestSample, timed_out_sample
from llmfleet.loadtests.stream import StreamMeter, measure_response

logger = logging.getLogger("llmfleet.loadtest")

CONNECT_TIMEOUT_S = 10.0
IDLE_POLL_S = 0.1
REUSE_WAIT_S = 0.02
TTFT_ENTRY = "TTFT"
"""Request type of the extra Locust entry that records time to first token."""
BACKOFF_FIRST_S = 0.25
BACKOFF_MAX_S = 8.0
"""After a request that never reached the server the user waits BACKOFF_FIRST_S, doubling per such
failure up to BACKOFF_MAX_S (plus up to a quarter more, so users do not retry in step)."""
RETRY_AFTER_MAX_S = 60.0
"""A longer Retry-After is cut to this: the run has a set length."""
_user_serial = itertools.count()
_UNREACHED = (NewConnectionError, ConnectTimeoutError, ConnectTimeout, Urllib3SSLError, RequestsSSLError, ssl.SSLError)
"""Failures before any byte of HTTP came back: refused, DNS (NameResolutionError), connect timeout, TLS."""


class RequestTimeout(Exception):
    """Raised in a user's greenlet when its request outlives --llm-request-timeout (an Exception, not a
    BaseException like gevent.Timeout, so the stream reader turns it into this request's failure)."""


def parse_header(text: str) -> tuple[str, str]:
    """`--llm-header 'Name: value'` -> (name, value); a malformed one is a usage error (exit 2)."""
    name, colon, value = text.partition(":")
    if not colon or not name.strip() or " " in name.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected 'Name: value', e.g. 'x-llmfleet-revision: 5ca1ab1e'")
    return name.strip(), value.strip()


@events.init_command_line_parser.add_listener
def _add_request_options(parser: Any, **_: Any) -> None:
    group = parser.add_argument_group("llmfleet requests")
    group.add_argument("--llm-model", default="", help="Served model name sent in each request.")
    group.add_argument(
        "--llm-api-key-env",
        default="LLM_API_KEY",
        help="Environment variable holding the API key (sent as Authorization: Bearer); unset: no key.",
    )
    group.add_argument("--llm-non-streaming", action="store_true", help="Send stream: false (E2E only, no TTFT).")
    group.add_argument("--llm-prompt-tokens", type=int, default=128, help="Synthetic prompt length, tokens.")
    group.add_argument("--llm-output-tokens", type=int, default=128, help="max_tokens with ignore_eos.")
    group.add_argument("--llm-dataset", default=None, help="JSONL dataset of requests instead of synthetic prompts.")
    group.add_argument("--llm-timeout", type=float, default=120.0, help="Seconds without a byte before failing.")
    group.add_argument(
        "--llm-request-timeout",
        type=float,
        default=0.0,
        help="Seconds a request may take in all; later it is a failure (0: twice the SLO's E2E p99 target).",
    )
    group.add_argument(
        "--llm-requests-per-user", type=int, default=0, help="Each user stops after this many (0: no limit)."
    )
    group.add_argument(
        "--llm-header",
        type=parse_header,
        action="append",
        default=[],
        help="'Name: value' sent with every request (repeatable); e.g. x-llmfleet-revision: <id> pins a revision.",
    )
    group.add_argument(
        "--llm-prefix-groups",
        type=int,
        default=0,
        help="Shared-prefix workload: this many shared system prompts (0: unique prompts; loadtests/conversations.py).",
    )
    group.add_argument("--llm-prefix-tokens", type=int, default=1024, help="Length of each shared system prompt.")
    group.add_argument(
        "--llm-turns", type=int, default=1, help="Turns per conversation, each resending the history (with groups)."
    )
    group.add_argument("--llm-rate", type=float, default=0.0, help="Open loop: total requests/s (Poisson).")
    group.add_argument(
        "--llm-max-inflight", type=int, default=0, help="Open loop: cap on requests in flight per user (0: none)."
    )


@events.init.add_listener
def _refresh_loop_clock(**_: Any) -> None:
    """Locust arms its --run-time timer (`gevent.spawn_later`) right after `init`, on gevent's loop
    clock, which is only refreshed when the loop runs: during Locust's start-up (imports, parsing,
    the runner) it does not, so the clock is stale by that start-up time (0.7 s on a quiet machine,
    ~2 s on a busy one) and the run stopped that much early: a 2 s run ended ~50 ms after users
    started. Refreshing it here makes the run last -t. Every suite imports this module."""
    gevent.get_hub().loop.update_now()


@events.test_start.add_listener
def _plan_run(environment: Environment, **_: Any) -> None:
    """On the master (or single process): split the rate among users, count the request budget.

    Workers receive the master's options with each spawn message, so the split reaches them.
    """
    if isinstance(environment.runner, WorkerRunner):
        return
    options = environment.parsed_options
    users = max(int(getattr(options, "num_users", None) or 1), 1)
    options.llm_rate_per_user = float(getattr(options, "llm_rate", 0.0) or 0.0) / users
    budget = int(getattr(options, "llm_requests_per_user", 0) or 0)
    collector = collector_of(environment)
    collector.expected_samples = users * budget if budget > 0 else None
    options.llm_request_timeout_s = collector.request_timeout_s()


class ChatUser(HttpUser):
    """Closed loop: one chat completion after another (no think time)."""

    abstract = True

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.collector = collector_of(self.environment)
        wire.install(self.client)  # t0 is when a request goes on its connection, not when the user decided
        self.model: str = options.llm_model
        if not self.model:
            logger.error("--llm-model is required (the served model name)")
            raise StopUser()
        self.stream = not options.llm_non_streaming
        self.request_timeout_s = float(getattr(options, "llm_request_timeout_s", 0.0) or 0.0) or float(
            options.llm_timeout
        )
        # The idle-read timeout never undercuts the request's own deadline, which ends it as `timed_out`.
        read_timeout = float(options.llm_timeout)
        self.timeout = (CONNECT_TIMEOUT_S, read_timeout if read_timeout < self.request_timeout_s else None)
        self.not_before = 0.0
        """perf_counter before which this user sends nothing (back-off or Retry-After)."""
        self.backoff_s = 0.0
        key = os.environ.get(options.llm_api_key_env or "")
        self.auth_headers: dict[str, str] = {"Authorization": f"Bearer {key}"} if key else {}
        self.extra_headers: dict[str, str] = dict(options.llm_header or [])
        """--llm-header: sent with every request, whatever its auth headers."""
        self.serial = next(_user_serial)
        self.prompts: PromptSource | SharedPrefixPrompts = (
            DatasetPrompts(Path(options.llm_dataset), options.llm_output_tokens)
            if options.llm_dataset
            else _shared_prefix_prompts(options, f"{getattr(self.environment.runner, 'worker_index', 0)}-{self.serial}")
            or SyntheticPrompts(options.llm_prompt_tokens, options.llm_output_tokens, seed=self.serial)
        )
        self.budget = int(options.llm_requests_per_user or 0)
        self.sent = 0
        self.chat_path = (
            "/chat/completions" if (self.host or "").rstrip("/").endswith("/v1") else "/v1/chat/completions"
        )

    def take_budget(self) -> None:
        """Stop the user when the run is draining or its request budget is used up."""
        if self.collector.draining:
            raise StopUser()
        if self.budget and self.sent >= self.budget:
            self.collector.user_finished()
            # Stay alive until the run ends: while Locust is still spawning (-r below -u) it replaces a
            # user that stopped, and the replacement would send a budget of its own.
            while not self.collector.draining:
                gevent.sleep(IDLE_POLL_S)
            raise StopUser()
        self.sent += 1

    @task
    def request(self) -> None:
        # The one task; subclasses override next_request (Locust would keep a base class's task too).
        self.next_request()

    def next_request(self) -> None:
        self.hold_off()
        self.take_budget()
        self.send_chat()

    def hold_off(self) -> None:
        """Wait out a back-off after unreached requests or a 429's Retry-After."""
        delay = self.not_before - time.perf_counter()
        if delay > 0:
            gevent.sleep(delay)

    def _pace(self, sample: RequestSample, headers: Mapping[str, str]) -> None:
        now = time.perf_counter()
        if sample.unreached:
            self.backoff_s = min(BACKOFF_MAX_S, self.backoff_s * 2) if self.backoff_s else BACKOFF_FIRST_S
            self.not_before = max(self.not_before, now + self.backoff_s * (1 + random.random() / 4))
        elif sample.status is not None:
            self.backoff_s = 0.0
        if sample.status == 429:
            retry_after = parse_retry_after(headers.get("retry-after"))
            if retry_after is not None:
                self.not_before = max(self.not_before, now + min(retry_after, RETRY_AFTER_MAX_S))

    def send_chat(
        self,
        prompt: ChatPrompt | None = None,
        *,
        scheduled_at: float | None = None,
        headers: dict[str, str] | None = None,
        name: str = "chat",
        record: bool = True,
    ) -> RequestSample:
        """Send one request, report it to Locust, keep its raw sample (unless `record` is False)."""
        prompt = prompt or self.prompts.next()
        body = chat_body(self.model, prompt, stream=self.stream)
        headers_sent = {**self.extra_headers, **(self.auth_headers if headers is None else headers)}
        response_headers: Mapping[str, str] = {}
        with self.collector.in_flight():
            decided_at = time.perf_counter()
            ticket = self.collector.open_request(decided_at, scheduled_at, prompt.max_tokens)
            deadline = gevent.Timeout(
                self.request_timeout_s, RequestTimeout(f"no complete answer within {self.request_timeout_s:g}s")
            )
            wire.arm()
            try:
                with (
                    deadline,
                    self.client.post(
                        self.chat_path,
                        json=body,
                        headers=headers_sent,
                        stream=self.stream,
                        catch_response=True,
                        name=name,
                        timeout=self.timeout,
                    ) as response,
                ):
                    response_headers = response.headers
                    started_at = wire.sent_at() or decided_at  # t0: when the request went on its connection
                    if self.stream:
                        sample = _read_stream(response, started_at, scheduled_at, prompt.max_tokens)
                    else:
                        sample = measure_response(
                            started_at,
                            time.perf_counter(),
                            response.status_code,
                            response.content or b"",
                            scheduled_at=scheduled_at,
                            expected_output_tokens=prompt.max_tokens,
                        )
                        if response.error is not None:
                            sample.error, sample.ok, sample.status = _describe(response.error), False, None
                            sample.unreached = _is_unreached(response.error)
                    self._report(response, sample, name)
            except RequestTimeout as exc:  # before the response headers: Locust has not reported it
                started_at = wire.sent_at() or decided_at
                sample = timed_out_sample(started_at, scheduled_at, prompt.max_tokens, _describe(exc), self.stream)
                self.environment.events.request.fire(
                    request_type="POST",
                    name=name,
                    response_time=(sample.ended_at - started_at) * 1000,
                    response_length=0,
                    exception=exc,
                    context={},
                )
            finally:
                self.collector.close_request(ticket)
        sample.send_delay_s = sample.started_at - decided_at
        self._pace(sample, response_headers)
        if record:
            self.collector.record(sample)
        return sample

    def _report(self, response: ResponseContextManager, sample: RequestSample, name: str) -> None:
        """Locust's entry gets the real E2E (not time-to-headers), plus a TTFT entry for streams."""
        response.request_meta["response_time"] = (sample.ended_at - sample.started_at) * 1000
        if sample.ok:
            response.success()
            if sample.first_token_at is not None:
                self.environment.events.request.fire(
                    request_type=TTFT_ENTRY,
                    name=name,
                    response_time=(sample.first_token_at - sample.started_at) * 1000,
                    response_length=0,
                    exception=None,
                    context={},
                )
        else:
            response.failure(sample.error or "failed")


def _shared_prefix_prompts(options: Any, seed: str) -> SharedPrefixPrompts | None:
    """--llm-prefix-groups N > 0: conversations over N shared system prompts instead of unique prompts."""
    groups = int(getattr(options, "llm_prefix_groups", 0) or 0)
    if groups <= 0:
        return None
    return SharedPrefixPrompts(
        groups=groups,
        prefix_tokens=int(options.llm_prefix_tokens),
        turns=int(options.llm_turns),
        prompt_tokens=options.llm_prompt_tokens,
        output_tokens=options.llm_output_tokens,
        seed=seed,
    )


def _read_stream(
    response: ResponseContextManager, started_at: float, scheduled_at: float | None, max_tokens: int
) -> RequestSample:
    meter = StreamMeter(
        started_at, scheduled_at=scheduled_at, expected_output_tokens=max_tokens, arrival=wire.arrived_at
    )
    error: str | None = _describe(response.error) if response.error is not None else None
    status = response.status_code or None  # 0: no response at all
    lines = response.iter_lines() if status is not None and 200 <= status < 300 else iter(())
    timed_out = False
    try:
        for line in lines:
            meter.feed_line(line)
            if meter.done:
                break  # a server may hold the connection open after [DONE]
    except Exception as exc:  # any transport error mid-stream is this request's failure
        error, timed_out = _describe(exc), isinstance(exc, RequestTimeout)
    sample = meter.finish(status, error)
    sample.timed_out = timed_out
    sample.unreached = status is None and response.error is not None and _is_unreached(response.error)
    if response.raw is not None:  # None when the request never got a response
        _finish_body(lines)
        response.close()
    return sample


def _finish_body(lines: Iterator[bytes]) -> None:
    """Read what follows [DONE] (the chunked terminator) if it comes at once, so the connection goes
    back to the pool: opening a new one per request added ~25 ms to TTFT at 16 users on a busy
    machine. A server holding the stream open is left after REUSE_WAIT_S (the connection is closed)."""
    with contextlib.suppress(Exception), gevent.Timeout(REUSE_WAIT_S, False):
        for _ in lines:
            pass


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def _is_unreached(exc: BaseException) -> bool:
    """The request failed before reaching the server: somewhere in the exception's causes (requests
    wraps urllib3's errors in MaxRetryError.reason and in args) is a connect, DNS or TLS failure."""
    pending: list[object] = [exc]
    seen: set[int] = set()
    while pending:
        error = pending.pop()
        if not isinstance(error, BaseException) or id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, _UNREACHED):
            return True
        pending += [error.__cause__, error.__context__, getattr(error, "reason", None), *error.args]
    return False


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date (RFC 9110 10.2.3); None if absent or bad."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


class OpenLoopChatUser(ChatUser):
    """Open loop: requests at Poisson arrival times (rate = --llm-rate / users), each in its own greenlet.

    Arrivals keep coming whatever the server does. A request due while `--llm-max-inflight` are in
    flight waits for a slot, and that wait counts as its queue time (start - due): a stalled server
    shows up as latency, not as fewer requests. Requests due before the run stops are still sent
    while it drains. A request the generator itself started late means it could not keep up: the
    collector counts those, and the gate marks the run invalid past a small share.
    """

    abstract = True

    def on_start(self) -> None:
        super().on_start()
        options = self.environment.parsed_options
        self.rate = float(getattr(options, "llm_rate_per_user", 0.0) or 0.0)
        if self.rate <= 0:
            logger.error("an open-loop suite needs --llm-rate (total requests per second)")
            raise StopUser()
        worker = getattr(self.environment.runner, "worker_index", 0)
        self.arrivals = random.Random(f"{worker}-{self.serial}")
        cap = int(options.llm_max_inflight)
        self.slots: BoundedSemaphore | None = BoundedSemaphore(cap) if cap > 0 else None
        self.next_due = time.perf_counter()

    def next_request(self) -> None:
        self.next_due += self.arrivals.expovariate(self.rate)
        delay = self.next_due - time.perf_counter()
        if delay > 0:
            gevent.sleep(delay)
        self.take_budget()
        self.collector.note_start(late=time.perf_counter() - self.next_due > LATE_START_S)
        gevent.spawn(self._send_when_free, self.next_due)

    def _send_when_free(self, due: float) -> None:
        with self.collector.in_flight():  # queued requests count as in flight: the drain waits for them
            self.hold_off()  # a Retry-After delays what is due meanwhile: that wait is queue time
            if self.slots is None:
                self.send_chat(scheduled_at=due)
                return
            with self.slots:
                self.send_chat(scheduled_at=due)
