"""Failover drill: steady traffic while one region's endpoint is removed; errors and time to recover.

Traffic goes to --host (the global endpoint: Route 53 / Cloud DNS steer it), or is spread over
--llm-endpoints (the regions' endpoints, comma-separated) the way a client with several DNS answers
behaves: round robin, and an endpoint that refused a connection is skipped for
--llm-endpoint-retry-s. At --llm-failover-at seconds the suite runs --llm-failover-command (for
example a `kubectl scale --replicas 0` of one region's gateway), or the operator removes the region
by hand.

Measured: the failed requests, and the time to recover, from the removal (or the first failure when
the suite did not remove anything) to the first success after the last failure. The verdict checks
time to recover <= --llm-max-recovery-s, and the SLO on the requests outside the outage.

    locust -f loadtests/suites/failover.py --headless -u 8 -t 3m --host URL --llm-model NAME \\
        --llm-failover-at 60 --llm-failover-command "kubectl --context eu scale deploy/gw --replicas 0"
"""

from __future__ import annotations

import itertools
import logging
import shlex
import subprocess
import time
from collections.abc import Sequence
from typing import Any

import gevent
from locust import events
from locust.env import Environment
from locust.runners import WorkerRunner

from llmfleet.loadtests import gate
from llmfleet.loadtests.collect import collector_of
from llmfleet.loadtests.samples import RequestSample
from llmfleet.loadtests.user import ChatUser
from llmfleet.values import Slo

logger = logging.getLogger("llmfleet.loadtest")
COMMAND_TIMEOUT_S = 120


@events.init_command_line_parser.add_listener
def _failover_options(parser: Any, **_: Any) -> None:
    group = parser.add_argument_group("llmfleet failover drill")
    group.add_argument("--llm-endpoints", default="", help="Regional endpoints to spread over (comma-separated).")
    group.add_argument("--llm-endpoint-retry-s", type=float, default=5.0, help="Skip a refusing endpoint this long.")
    group.add_argument("--llm-failover-at", type=float, default=0.0, help="Seconds into the run to remove a region.")
    group.add_argument("--llm-failover-command", default="", help="Command that removes one region's endpoint.")
    group.add_argument("--llm-max-recovery-s", type=float, default=60.0, help="Longest tolerated time to recover.")


class Drill:
    """The removal (if the suite does it) and the recovery measured from the samples."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.removed_at: float | None = None

    def remove_region(self, command: str) -> None:
        self.removed_at = time.perf_counter()
        logger.info("failover drill: running %s", command)
        try:
            done = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
            if done.returncode != 0:
                logger.error("failover command exited %s: %s", done.returncode, done.stderr.strip()[-500:])
        except (OSError, subprocess.TimeoutExpired) as exc:
            logger.error("failover command failed: %s", exc)

    def evaluate(self, samples: Sequence[RequestSample], slo: Slo, run: gate.RunInfo) -> gate.Verdict:
        options = self.environment.parsed_options
        ordered = sorted(samples, key=lambda s: s.started_at)
        failed = [s for s in ordered if not s.ok]
        outage_start = self.removed_at if self.removed_at is not None else (failed[0].started_at if failed else None)
        recovered_at: float | None = None
        if failed:
            last_failure = failed[-1].started_at
            recovered_at = next((s.started_at for s in ordered if s.ok and s.started_at > last_failure), None)
        elif outage_start is not None:
            recovered_at = outage_start  # removed, and nothing failed
        time_to_recover = recovered_at - outage_start if recovered_at is not None and outage_start is not None else None
        outside = [
            s
            for s in ordered
            if outage_start is None or s.ended_at < outage_start or (recovered_at and s.started_at >= recovered_at)
        ]
        verdict = gate.evaluate(outside, slo, run)
        limit = float(options.llm_max_recovery_s)
        verdict.checks.append(
            gate.Check(
                metric="failover.time_to_recover_s",
                stat="value",
                op="<=",
                threshold=limit,
                observed=time_to_recover,
                n=len(failed),
                passed=time_to_recover is not None and time_to_recover <= limit,
            )
        )
        verdict.metrics["failover"] = {
            "failed_requests": len(failed),
            "requests": len(ordered),
            "time_to_recover_s": time_to_recover,
            "removed_by_suite": self.removed_at is not None,
            "errors": sorted({s.error or "" for s in failed})[:10],
        }
        if outage_start is None:
            verdict.valid = False
            verdict.reasons.append("no region was removed and no request failed: the drill did not happen")
        return verdict


@events.test_start.add_listener
def _schedule_drill(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return
    drill = Drill(environment)
    collector_of(environment).evaluate = drill.evaluate
    options = environment.parsed_options
    if options.llm_failover_command:
        gevent.spawn_later(options.llm_failover_at, drill.remove_region, options.llm_failover_command)


class FailoverUser(ChatUser):
    def on_start(self) -> None:
        super().on_start()
        options = self.environment.parsed_options
        endpoints = [e.strip().rstrip("/") for e in options.llm_endpoints.split(",") if e.strip()]
        self.endpoints = endpoints or [""]  # "": the --host
        self.retry_s = float(options.llm_endpoint_retry_s)
        self.down_until = dict.fromkeys(self.endpoints, 0.0)
        self.rotation = itertools.cycle(self.endpoints)
        self.base_path = self.chat_path

    def next_request(self) -> None:  # pick a region, send, note refusals
        self.take_budget()
        now = time.perf_counter()
        for _ in self.endpoints:
            endpoint = next(self.rotation)
            if self.down_until[endpoint] <= now:
                break
        self.chat_path = endpoint + self.base_path
        sample = self.send_chat()
        if sample.status is None:  # no HTTP answer: connection refused or dropped
            self.down_until[endpoint] = time.perf_counter() + self.retry_s
