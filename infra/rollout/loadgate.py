"""The rollout's gate: the stack's load-test suite against one region's gateway, judged on the stack's SLO.

It runs Locust as `llmfleet loadtest` does (`loadtests.run.run_suite`, in a child process), once per
model the region serves, and reads each JSON verdict. Every request carries `x-llmfleet-revision: <new
revision>`, which the gateway routes to that revision only: at a 5% step the verdict is still the new
revision's own latency and errors, not 5% of them diluted in the old revision's 95%. A region passes
when every model passes; any breach is a breach (exit 3); otherwise any invalid run (no verdict, too
few samples, an overloaded generator) makes the step invalid (exit 4).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from llmfleet.components.gateway.types import REVISION_HEADER
from llmfleet.infra.rollout.engine import GateResult
from llmfleet.loadtests.gate import Verdict
from llmfleet.loadtests.incluster import InClusterError, Kubectl, Overrides, run_in_cluster
from llmfleet.values import ExitCode, Slo

WARMUP_SHARE = 0.1
"""The first tenth of each gate run is excluded from the verdict (as `llmfleet loadtest` does)."""


@dataclass
class LocustGate:
    slo: Slo
    suite: str
    duration_s: float
    users: int
    models: Mapping[str, Sequence[str]]
    """Region -> the served model names to load-test there."""
    work_dir: Path
    """Verdicts and Locust's HTML reports go here, one per run: region, step, attempt, model and a run id
    (UTC time and a random suffix), so a resumed step never overwrites or reuses an earlier run's report."""
    api_key_env: str = "LLM_API_KEY"
    locust_args: Sequence[str] = field(default_factory=tuple[str, ...])
    """More Locust options (e.g. `--llm-output-tokens 64`), appended to each run."""

    def run(self, region: str, endpoint: str, step: int, attempt: int, revision: str) -> GateResult:
        from llmfleet.loadtests.run import SuiteRun, run_suite  # Locust runs in a child process; nothing heavy here

        self.work_dir.mkdir(parents=True, exist_ok=True)
        verdicts: dict[str, GateResult] = {}
        for model in self.models[region]:
            run = SuiteRun(
                suite=self.suite,
                host=endpoint,
                model=model,
                report=self.work_dir / f"{region}-{step}pct-attempt{attempt}-{model}-{run_id()}.json",
                duration_s=self.duration_s,
                warmup_s=self.duration_s * WARMUP_SHARE,
                users=self.users,
                slo=self.slo,
                api_key_env=self.api_key_env,
                extra=(*self.locust_args, "--llm-header", f"{REVISION_HEADER}: {revision}"),
            )
            verdict = run_suite(run)
            verdicts[model] = GateResult(verdict.exit_code, verdict.to_json())
        return combine(verdicts)


def run_id() -> str:
    """Unique per gate run: sortable UTC time plus a random suffix."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}"


def combine(verdicts: Mapping[str, GateResult]) -> GateResult:
    """One result for a region: breach beats invalid beats pass; checks and figures keyed by model."""
    codes = {result.exit_code for result in verdicts.values()}
    code = next((c for c in (ExitCode.BREACH, ExitCode.INVALID) if c in codes), ExitCode.OK)
    if len(verdicts) == 1:
        return GateResult(code, next(iter(verdicts.values())).verdict)
    checks = [
        {**check, "model": model}
        for model, result in verdicts.items()
        for check in cast(list[dict[str, Any]], result.verdict.get("checks") or [])
    ]
    reasons = [
        f"{model}: {reason}"
        for model, result in verdicts.items()
        for reason in cast(list[str], result.verdict.get("reasons") or [])
    ]
    metrics = {model: result.verdict.get("metrics", {}) for model, result in verdicts.items()}
    return GateResult(code, {"exit_code": code, "checks": checks, "reasons": reasons, "metrics": metrics})


@dataclass
class InClusterGate:
    """The same gate on the LoadGenerator deployed next to each region's gateway (`rollout.in_cluster`).

    Each run goes through `llmfleet loadtest --in-cluster`'s code path (loadtests/incluster.py): the
    region's deployed master/worker Jobs are copied under a run id, with what changes per step passed as
    overrides of the copies' args (the model, the revision header, suite, users, duration, warm-up), and
    the verdict is read from the master's log. Verdicts, exit codes and reports are the local gate's; a
    cluster kubectl cannot reach, or a run that wrote no verdict, is an invalid run (exit 4), never a breach.
    """

    suite: str
    duration_s: float
    users: int
    models: Mapping[str, Sequence[str]]
    """Region -> the served model names to load-test there."""
    generators: Mapping[str, str]
    """Region -> the name of its deployed LoadGenerator."""
    kubectl: Mapping[str, Kubectl]
    """Region -> kubectl for that region's cluster (context) and the generator's namespace."""
    work_dir: Path
    """Verdicts and the master's logs, named as LocustGate's reports."""
    say: Callable[[str], None] = lambda _: None

    def run(self, region: str, endpoint: str, step: int, attempt: int, revision: str) -> GateResult:
        # `endpoint` is where a local gate sends its load; the deployed generator already loads its gateway.
        from llmfleet.components.loadgen import SUITES_DIR  # Pulumi's SDK, only when this gate runs

        self.work_dir.mkdir(parents=True, exist_ok=True)
        verdicts: dict[str, GateResult] = {}
        for model in self.models[region]:
            report = self.work_dir / f"{region}-{step}pct-attempt{attempt}-{model}-{run_id()}.json"
            overrides = Overrides(
                model=model,
                headers=(f"{REVISION_HEADER}: {revision}",),
                users=self.users,
                duration_s=self.duration_s,
                warmup_s=self.duration_s * WARMUP_SHARE,
                suite_file=f"{SUITES_DIR}/{self.suite}.py",
            )
            verdict = self._run_one(region, overrides, report)
            verdict.write(report)
            verdicts[model] = GateResult(verdict.exit_code, verdict.to_json())
        return combine(verdicts)

    def _run_one(self, region: str, overrides: Overrides, report: Path) -> Verdict:
        try:
            done = run_in_cluster(self.generators[region], self.kubectl[region], overrides=overrides, say=self.say)
        except InClusterError as exc:  # kubectl missing, failing or the cluster unreachable: no verdict at all
            return Verdict(checks=[], valid=False, reasons=[f"in-cluster gate in {region}: {exc}"])
        report.with_suffix(".log").write_text(done.log)
        if done.verdict is not None and done.problem is None:
            return Verdict.from_json(done.verdict)
        return Verdict(checks=[], valid=False, reasons=[done.problem or "no verdict"])
