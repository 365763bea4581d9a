"""The shadow stage's judge: the new revision, fed copies of real requests, against the old one in Prometheus.

While the stage runs, the gateway copies `share` percent of each model's real requests to the new revision
and drops its answers (components/gateway/shadow.py); clients are served by the old revision alone. After
`duration_s` the judge reads both revisions' own server-side series over that same window from the region's
Prometheus, where every vLLM series carries `service`, the model's Service name, which ends in the revision
id (`<model>-<revision>`, components/inference/service.py; the ServiceMonitor adds the label):

- requests: `vllm:e2e_request_latency_seconds_count` increase (the new revision must have served
  `min_requests`, else the run is invalid: too little traffic to judge);
- TTFT p95 and end-to-end p95: `histogram_quantile(0.95, ...)` of `vllm:time_to_first_token_seconds` and
  `vllm:e2e_request_latency_seconds` (new at most `max_latency_ratio` x old);
- error ratio: aborted over finished requests, `vllm:request_success_total{finished_reason="abort"}` (new at
  most old + `max_error_increase`).

The verdict is a GateResult: 0 pass, 3 breach (a check failed), 4 invalid (Prometheus unreachable, no
samples); its `verdict` holds both revisions' figures and each check, which the rollout log records.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from llmfleet.infra.rollout.engine import GateResult
from llmfleet.values import ExitCode

QUERY_TIMEOUT_S = 10.0


class PrometheusUnavailable(Exception):
    """The region's Prometheus did not answer a query (the judge calls the run invalid)."""


@dataclass(frozen=True)
class ShadowLimits:
    share: int
    """Percent of each model's requests copied to the new revision."""
    duration_s: float
    """How long the copies run before the judge reads the window."""
    prometheus: Mapping[str, str]
    """Region key -> its Prometheus base URL, as the machine running the rollout reaches it."""
    max_latency_ratio: float = 1.2
    max_error_increase: float = 0.01
    min_requests: int = 50


def _selector(revision: str) -> str:
    return f'service=~".+-{revision}"'


def queries(revision: str, window_s: int) -> dict[str, str]:
    """The PromQL of each figure for one revision over the last `window_s` seconds (all its models together)."""
    sel, w = _selector(revision), f"{window_s}s"

    def p95(metric: str) -> str:
        return f"histogram_quantile(0.95, sum by (le) (rate({metric}_bucket{{{sel}}}[{w}])))"

    return {
        "requests": f"sum(increase(vllm:e2e_request_latency_seconds_count{{{sel}}}[{w}]))",
        "ttft_p95_s": p95("vllm:time_to_first_token_seconds"),
        "e2e_p95_s": p95("vllm:e2e_request_latency_seconds"),
        "error_ratio": (
            f'(sum(increase(vllm:request_success_total{{{sel},finished_reason="abort"}}[{w}])) or vector(0)) / '
            f"sum(increase(vllm:request_success_total{{{sel}}}[{w}]))"
        ),
    }


@dataclass
class ShadowJudge:
    """Runs the window (sleeps) and compares; `sleep`/`clock`/`transport` are replaceable for tests."""

    limits: ShadowLimits
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    transport: httpx.BaseTransport | None = None
    say: Callable[[str], None] = field(default=lambda _: None)

    @property
    def share(self) -> int:
        return self.limits.share

    def run(self, region: str, old: str, new: str) -> GateResult:
        self.say(f"shadow {region}: copying {self.limits.share}% of requests to {new} for {self.limits.duration_s:g} s")
        self.sleep(self.limits.duration_s)
        return self.compare(region, old, new, self.clock())

    def compare(self, region: str, old: str, new: str, at: float) -> GateResult:
        window = max(1, round(self.limits.duration_s))
        verdict: dict[str, Any] = {"stage": "shadow", "region": region, "share": self.limits.share}
        verdict["window"] = {"end": at, "seconds": window}
        try:
            figures = {rev: self._figures(region, rev, window, at) for rev in (old, new)}
        except PrometheusUnavailable as exc:
            return GateResult(ExitCode.INVALID, {**verdict, "reasons": [str(exc)]})
        verdict["revisions"] = {"old": old, "new": new}
        verdict["metrics"] = figures
        old_figures, new_figures = figures[old], figures[new]
        served = new_figures["requests"] or 0.0
        complete = {k: v for k, v in old_figures.items() if v is not None} if None not in new_figures.values() else {}
        if served < self.limits.min_requests or len(complete) != len(old_figures):
            reason = (
                f"{new} served {served:g} mirrored requests (at least {self.limits.min_requests} needed) or a "
                "figure had no samples: raise rollout.shadow.share or duration_s"
            )
            return GateResult(ExitCode.INVALID, {**verdict, "reasons": [reason], "checks": []})
        ratio, increase = self.limits.max_latency_ratio, self.limits.max_error_increase
        limits = {
            "ttft_p95_s": complete["ttft_p95_s"] * ratio,
            "e2e_p95_s": complete["e2e_p95_s"] * ratio,
            "error_ratio": complete["error_ratio"] + increase,
        }
        checks: list[dict[str, Any]] = [
            {
                "metric": metric,
                "old": complete[metric],
                "observed": new_figures[metric],
                "op": "<=",
                "threshold": limit,
                "pass": (new_figures[metric] or 0.0) <= limit,
            }
            for metric, limit in limits.items()
        ]
        verdict["checks"] = checks
        return GateResult(ExitCode.OK if all(c["pass"] for c in checks) else ExitCode.BREACH, verdict)

    def _figures(self, region: str, revision: str, window: int, at: float) -> dict[str, float | None]:
        return {name: self._query(region, promql, at) for name, promql in queries(revision, window).items()}

    def _query(self, region: str, promql: str, at: float) -> float | None:
        """One instant query (Prometheus HTTP API `/api/v1/query`): the first sample's value; None without one
        or when it is NaN (e.g. a quantile over no requests)."""
        base = self.limits.prometheus[region].rstrip("/")
        try:
            with httpx.Client(transport=self.transport, timeout=QUERY_TIMEOUT_S) as client:
                response = client.get(f"{base}/api/v1/query", params={"query": promql, "time": f"{at:.3f}"})
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PrometheusUnavailable(f"Prometheus of {region} ({base}): {exc}") from None
        if body.get("status") != "success":
            raise PrometheusUnavailable(f"Prometheus of {region} refused {promql!r}: {body.get('error')}")
        result = body["data"]["result"]
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value
