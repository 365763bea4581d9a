"""The rollout's shadow stage: mirror, wait, judge both revisions on a (fake) Prometheus, decide, log.

The Prometheus here is a loopback HTTP server answering the HTTP API's instant queries (`/api/v1/query`)
with the figures each test gives per revision; the judge's sleep and clock are replaced, so no test
waits. The deployer and gate are test_rollout_engine's in-memory ones.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from support.rollout import NEW, OLD, REGIONS, MemoryDeployer, ScriptedGate
from support.stacks import StackWriter

from llmfleet.infra.program.revisions import DeployedRevision, RolloutRecord
from llmfleet.infra.rollout.engine import Rollout
from llmfleet.infra.rollout.history import Outcome
from llmfleet.infra.rollout.log import RolloutLog
from llmfleet.infra.rollout.shadow import ShadowJudge, ShadowLimits
from llmfleet.infra.schema.rollout import RolloutSpec
from llmfleet.values import ExitCode

NOW = 1_800_000_000.0
HEALTHY = {"requests": 400.0, "ttft_p95_s": 0.30, "e2e_p95_s": 4.0, "error_ratio": 0.002}


class FakePrometheus:
    """Answers instant queries with `figures[revision][figure]` (None: an empty result), recording each query."""

    def __init__(self, figures: dict[str, dict[str, float | None]]) -> None:
        self.figures = figures
        self.queries: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                outer.queries.append({"path": url.path, **params})
                value = outer.answer(params["query"])
                result = [] if value is None else [{"metric": {}, "value": [float(params["time"]), str(value)]}]
                body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, promql: str) -> float | None:
        revision = next(r for r in self.figures if f'-{r}"' in promql)
        if "time_to_first_token" in promql:
            figure = "ttft_p95_s"
        elif "request_success_total" in promql:
            figure = "error_ratio"
        elif "_count" in promql:
            figure = "requests"
        else:
            figure = "e2e_p95_s"
        return self.figures[revision][figure]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    server = FakePrometheus({OLD: dict(HEALTHY), NEW: dict(HEALTHY)})
    yield server
    server.close()


def make(
    tmp_path: Path, url: str, **limits: Any
) -> tuple[Rollout, MemoryDeployer, ScriptedGate, RolloutLog, list[float]]:
    deployer = MemoryDeployer(REGIONS)
    gate = ScriptedGate(deployer)
    slept: list[float] = []
    settings = ShadowLimits(share=10, duration_s=900, prometheus={r: url for r in REGIONS}, **limits)
    judge = ShadowJudge(settings, sleep=slept.append, clock=lambda: NOW)
    log = RolloutLog(tmp_path, "prod")
    return Rollout(log, deployer, gate, shadow=judge), deployer, gate, log, slept


def start(rollout: Rollout) -> Any:
    return rollout.start({r: NEW for r in REGIONS}, REGIONS, [5, 25, 100])


def shadow_calls(deployer: MemoryDeployer, region: str) -> list[tuple[str, int]]:
    return [arg for name, r, arg in deployer.calls if name == "shadow" and r == region]  # type: ignore[misc]


def test_a_healthy_shadow_stage_precedes_the_steps_and_is_logged(tmp_path: Path, prometheus: FakePrometheus) -> None:
    rollout, deployer, gate, log, slept = make(tmp_path, prometheus.url)
    result = start(rollout)
    assert (result.outcome, result.exit_code) == (Outcome.PROMOTED, ExitCode.OK)
    assert len(gate.runs) == 3 * len(REGIONS)  # the steps ran after the stage
    assert slept == [900] * len(REGIONS)
    for region in REGIONS:
        # mirror on at the share, then off, before the region's first step moved any weight to the new revision
        assert shadow_calls(deployer, region) == [(NEW, 10), (NEW, 0)]
        calls = [(name, arg) for name, r, arg in deployer.calls if r == region]
        off = calls.index(("shadow", (NEW, 0)))
        first_step = calls.index(("weights", {OLD: 95, NEW: 5}))
        assert off < first_step
    records = [r for r in log.current() if r["type"] == "shadow"]
    assert [r["region"] for r in records] == REGIONS
    comparison = records[0]["comparison"]
    assert comparison["revisions"] == {"old": OLD, "new": NEW}
    assert comparison["metrics"][OLD] == HEALTHY and comparison["metrics"][NEW] == HEALTHY
    assert {c["metric"] for c in comparison["checks"]} == {"ttft_p95_s", "e2e_p95_s", "error_ratio"}
    assert all(c["pass"] for c in comparison["checks"])
    # Both revisions' own series, over the window that just ended.
    assert {q["time"] for q in prometheus.queries} == {f"{NOW:.3f}"}
    assert all("[900s]" in q["query"] and q["path"] == "/api/v1/query" for q in prometheus.queries)
    assert {rev for rev in (OLD, NEW) for q in prometheus.queries if f'-{rev}"' in q["query"]} == {OLD, NEW}


def test_a_slower_new_revision_is_rolled_back_before_any_step(tmp_path: Path, prometheus: FakePrometheus) -> None:
    prometheus.figures[NEW]["ttft_p95_s"] = 0.30 * 1.5  # above 1.2 x the old revision's
    rollout, deployer, gate, log, _ = make(tmp_path, prometheus.url)
    result = start(rollout)
    assert (result.outcome, result.exit_code) == (Outcome.ROLLED_BACK, ExitCode.BREACH)
    assert gate.runs == []  # no canary step was taken
    assert result.report["stage"] == "shadow" and result.report["region"] == REGIONS[0]
    assert [c["metric"] for c in result.report["failed_checks"]] == ["ttft_p95_s"]
    assert shadow_calls(deployer, REGIONS[0])[-1] == (NEW, 0)  # the mirror was stopped
    assert deployer.state[REGIONS[0]] == {OLD: 100}
    [record] = [r for r in log.current() if r["type"] == "shadow"]
    assert record["exit_code"] == ExitCode.BREACH


def test_more_errors_on_the_new_revision_breach(tmp_path: Path, prometheus: FakePrometheus) -> None:
    prometheus.figures[NEW]["error_ratio"] = 0.05
    rollout, _, _, _, _ = make(tmp_path, prometheus.url)
    result = start(rollout)
    assert result.exit_code == ExitCode.BREACH
    assert [c["metric"] for c in result.report["failed_checks"]] == ["error_ratio"]


def test_too_few_mirrored_requests_stop_the_rollout_and_resume_runs_the_stage_again(
    tmp_path: Path, prometheus: FakePrometheus
) -> None:
    prometheus.figures[NEW]["requests"] = 3.0
    rollout, deployer, gate, _, _ = make(tmp_path, prometheus.url)
    result = start(rollout)
    assert (result.outcome, result.exit_code) == (Outcome.STOPPED, ExitCode.INVALID)
    assert "mirrored requests" in result.report["reasons"][0]
    assert deployer.state[REGIONS[0]] == {OLD: 100, NEW: 0} and gate.runs == []
    prometheus.figures[NEW]["requests"] = 200.0
    assert rollout.resume().outcome is Outcome.PROMOTED
    assert shadow_calls(deployer, REGIONS[0]) == [(NEW, 10), (NEW, 0), (NEW, 10), (NEW, 0)]


def test_an_unreachable_prometheus_makes_the_run_invalid(tmp_path: Path) -> None:
    server = FakePrometheus({})
    url = server.url
    server.close()  # nothing listens there any more
    rollout, deployer, _, _, _ = make(tmp_path, url)
    result = start(rollout)
    assert result.exit_code == ExitCode.INVALID
    assert "Prometheus of" in result.report["reasons"][0]
    assert shadow_calls(deployer, REGIONS[0])[-1] == (NEW, 0)


def test_the_schema_wants_one_prometheus_per_region() -> None:
    keys = ["aws-us-east-1", "gcp-us-central1"]
    spec = RolloutSpec.model_validate({"shadow": {"prometheus": {"aws-us-east-1": "http://localhost:9090"}}})
    with pytest.raises(ValueError, match=r"rollout\.shadow\.prometheus.*missing \['gcp-us-central1'\]"):
        spec.check_regions(keys)
    with pytest.raises(ValueError, match="http"):
        RolloutSpec.model_validate({"shadow": {"prometheus": {"aws-us-east-1": "localhost:9090"}}})
    assert RolloutSpec().shadow is None


def test_the_record_shadows_only_a_revision_at_zero_and_a_weight_ends_it() -> None:
    record = RolloutRecord(
        regions={
            "aws-us-east-1": {OLD: DeployedRevision(weight=100, models=[]), NEW: DeployedRevision(weight=0, models=[])}
        }
    )
    shadowed = record.with_shadow("aws-us-east-1", NEW, 10)
    assert shadowed.regions["aws-us-east-1"][NEW].shadow == 10
    with pytest.raises(ValueError, match="not shadowed"):
        record.with_shadow("aws-us-east-1", OLD, 10)
    stepped = shadowed.with_weights("aws-us-east-1", {OLD: 95, NEW: 5})
    assert stepped.regions["aws-us-east-1"][NEW].shadow == 0


def gateway_stack() -> dict[str, Any]:
    return {
        "models": [{"name": "chat", "model": "qwen2.5-7b", "load": {"concurrent_sequences": 8}}],
        "regions": [{"cloud": "aws", "region": "us-east-1", "role": "primary"}],
        "api_access_cidrs": ["203.0.113.0/24"],
        "gateway": {"tenants": [{"name": "a", "api_key_secret": "keyA"}]},
    }


def test_the_plan_says_what_the_shadow_stage_adds(write_stack: StackWriter) -> None:
    from typer.testing import CliRunner

    from llmfleet.infra.cli import app

    deployment = gateway_stack()
    deployment["rollout"] = {
        "shadow": {"share": 25, "duration_s": 600, "prometheus": {"aws-us-east-1": "http://p:9090"}}
    }
    result = CliRunner().invoke(app, ["plan", "--stack-file", str(write_stack(deployment, keyA="k"))])
    assert result.exit_code == 0, result.output
    line = " ".join(result.output.split())
    assert "copies 25% of its requests to the new revision for 600 s" in line and "no GPU of its own" in line
    plain = CliRunner().invoke(app, ["plan", "--stack-file", str(write_stack(gateway_stack(), name="b", keyA="k"))])
    assert plain.exit_code == 0 and "Shadow stage" not in plain.output
