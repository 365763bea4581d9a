"""`llmfleet rollout`: move a stack to the revision its stack file describes, region by region, SLO-gated.

    llmfleet rollout --stack prod [--steps 5,25,100] [--suite steady] [--dry-run]
                     [--resume | --abort] [--keep-promoted] [--adopt]

Exit codes: 0 promoted (or held at an A/B split, or aborted as asked), 1 a `pulumi up` failed
(--resume retries the step, --abort goes back), 2 bad input or a rollout
that cannot run now (another one in progress, one left unfinished), 3 an SLO breach rolled back
(report on stderr and in the log), 4 the gate run was invalid twice (stopped; --resume or --abort).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Protocol

import typer

from llmfleet.infra.commands.common import user_errors_exit_2
from llmfleet.infra.config import PROJECT_ROOT, DeploymentSpec, load_stack
from llmfleet.infra.errors import UsageError
from llmfleet.infra.program.revisions import RegionRevision, target_revisions, wave_order
from llmfleet.infra.rollout.deployer import Deployer, DeployFailed
from llmfleet.infra.rollout.engine import Gate, Rollout, RolloutError
from llmfleet.infra.rollout.history import Outcome, forward_actions
from llmfleet.infra.rollout.loadgate import InClusterGate, LocustGate
from llmfleet.infra.rollout.log import RolloutBusy, RolloutLog, RolloutLogDamaged
from llmfleet.infra.rollout.shadow import ShadowJudge, ShadowLimits
from llmfleet.infra.schema.rollout import check_steps
from llmfleet.values import ExitCode

DEFAULT_LOG_DIR = PROJECT_ROOT / ".llmfleet" / "rollouts"
OPEN_LOOP_SUITES = {"rate", "failover"}
"""Suites that need a target rate or a failure to inject: not gates a rollout can run on its own."""


def parse_steps(text: str) -> list[int]:
    try:
        steps = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--steps {text!r}: not a list of whole percentages; e.g. --steps 5,25,100") from None
    try:
        check_steps(steps)
    except ValueError as exc:
        raise UsageError(f"--steps {text!r}: {exc}; e.g. --steps 5,25,100") from None
    return steps


def check_suite(suite: str) -> None:
    from llmfleet.loadtests.run import suites

    known = [s for s in suites() if s not in OPEN_LOOP_SUITES]
    if suite not in known:
        raise UsageError(f"--suite {suite!r}: a rollout gates on one of {known}")


def pulumi_available() -> bool:
    return shutil.which("pulumi") is not None


class StackDeployer(Deployer, Protocol):
    """A Deployer that can also preview the first step and adopt what a plain `pulumi up` deployed."""

    def preview(self) -> None: ...

    def adopt(self) -> None: ...


def make_deployer(stack: str, target: Mapping[str, RegionRevision]) -> StackDeployer:
    """The Automation API deployer (tests replace this)."""
    if not pulumi_available():
        raise UsageError(
            "llmfleet rollout drives `pulumi up`: install the Pulumi CLI (https://www.pulumi.com/docs/install/)"
        )
    from llmfleet.infra.rollout.automation import AutomationDeployer

    return AutomationDeployer(stack, target, say=_say)


def make_gate(spec: DeploymentSpec, suite: str, target: Mapping[str, RegionRevision], work_dir: Path) -> Gate:
    """The stack's load-test suite and SLO, per region's models (tests replace this)."""
    models = {region: revision.model_names for region, revision in target.items()}
    workload = spec.rollout.shared_prefix.locust_args() if spec.rollout.shared_prefix else ()
    in_cluster = spec.rollout.in_cluster
    if in_cluster is not None:  # each region's deployed LoadGenerator (components/loadgen.py), through kubectl
        from llmfleet.components.loadgen import ROLE, SUITES
        from llmfleet.loadtests.incluster import InClusterError, Kubectl, find_kubectl

        if suite not in SUITES:
            raise UsageError(
                f"--suite {suite!r}: with rollout.in_cluster the gate runs distributed, on one of {', '.join(SUITES)}"
            )
        try:
            executable = find_kubectl()
        except InClusterError as exc:
            raise UsageError(f"rollout.in_cluster: {exc}") from None
        return InClusterGate(
            suite,
            spec.rollout.gate_duration_s,
            spec.rollout.users,
            models,
            generators={region: f"{region}-{ROLE}" for region in target},
            kubectl={region: Kubectl(spec.namespace, in_cluster.contexts[region], executable) for region in target},
            work_dir=work_dir,
            say=_say,
        )
    return LocustGate(
        spec.slo, suite, spec.rollout.gate_duration_s, spec.rollout.users, models, work_dir, locust_args=workload
    )


def make_shadow(spec: DeploymentSpec) -> ShadowJudge | None:
    """The stack's shadow stage (`rollout.shadow`), judged on each region's Prometheus; None without one."""
    shadow = spec.rollout.shadow
    if shadow is None:
        return None
    limits = ShadowLimits(
        shadow.share,
        shadow.duration_s,
        dict(shadow.prometheus),
        shadow.max_latency_ratio,
        shadow.max_error_increase,
        shadow.min_requests,
    )
    return ShadowJudge(limits, say=_say)


def _say(line: str) -> None:
    typer.echo(line.rstrip("\n"), err=True)


def describe_plan(
    order: Sequence[str], target: Mapping[str, RegionRevision], steps: Sequence[int], shadow: int = 0
) -> str:
    lines = [f"waves: {' -> '.join(order)}; steps {', '.join(f'{s}%' for s in steps)}"]
    lines += [f"  {region}: revision {target[region].id} ({', '.join(target[region].model_names)})" for region in order]
    lines += [f"  {action}" for action in forward_actions(order, steps, shadow=shadow)]
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("rollout")
    @user_errors_exit_2
    def rollout(
        stack: Annotated[str, typer.Option("--stack", "-s", help="Stack name (stacks/Pulumi.<name>.yaml).")],
        steps: Annotated[
            str | None, typer.Option("--steps", help="Percent on the new revision per step (default: the stack's).")
        ] = None,
        suite: Annotated[str | None, typer.Option("--suite", help="Gate suite (default: the stack's).")] = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Show the plan and the preview; change nothing.")
        ] = False,
        resume: Annotated[bool, typer.Option("--resume", help="Continue the rollout the log left unfinished.")] = False,
        abort: Annotated[
            bool, typer.Option("--abort", help="Take the unfinished rollout back to the old revision.")
        ] = False,
        keep_promoted: Annotated[
            bool, typer.Option("--keep-promoted", help="On a breach or abort, leave regions already promoted.")
        ] = False,
        adopt: Annotated[
            bool, typer.Option("--adopt", help="Record the stack file's revision as serving (first rollout only).")
        ] = False,
        log_dir: Annotated[Path, typer.Option("--log-dir", help="Rollout logs and locks.")] = DEFAULT_LOG_DIR,
    ) -> None:
        """Roll the stack's revision out region by region, gating each canary step on the SLO."""
        if resume and abort:
            raise UsageError("give --resume or --abort, not both")
        if adopt and (resume or abort or dry_run):
            raise UsageError("--adopt records the current revision and cannot be combined with other modes")
        name, spec = load_stack(stack)
        chosen_steps = parse_steps(steps) if steps is not None else list(spec.rollout.steps)
        chosen_suite = suite or spec.rollout.suite
        check_suite(chosen_suite)
        target = target_revisions(name, spec)
        order = wave_order(spec)
        if dry_run:
            share = spec.rollout.shadow.share if spec.rollout.shadow else 0
            typer.echo(describe_plan(order, target, chosen_steps, share))
            if not pulumi_available():
                typer.echo("(no Pulumi CLI here: the preview is skipped)")
                return
        deployer = make_deployer(name, target)
        if adopt:
            deployer.adopt()
            return
        if dry_run:
            deployer.preview()
            return
        log = RolloutLog(log_dir, name)
        gate = make_gate(spec, chosen_suite, target, log_dir / f"{name}-gate")
        engine = Rollout(log, deployer, gate, shadow=make_shadow(spec), say=_say)
        try:
            if resume:
                result = engine.resume(chosen_steps if steps is not None else None)
            elif abort:
                result = engine.abort(keep_promoted=keep_promoted or None)
            else:
                revisions = {region: revision.id for region, revision in target.items()}
                result = engine.start(
                    revisions, order, chosen_steps, keep_promoted=keep_promoted, preview=deployer.preview
                )
        except (RolloutError, RolloutBusy, RolloutLogDamaged) as exc:
            raise UsageError(str(exc)) from None
        except DeployFailed as exc:
            typer.echo(f"error: {exc}", err=True)
            typer.echo(f"the log ({log.path}) keeps the step: rerun with --resume to retry it or --abort", err=True)
            raise typer.Exit(ExitCode.FAILED) from None  # `pulumi up` failed, not the SLO: resume or abort
        if result.report:
            print(json.dumps(result.report, indent=2), file=sys.stderr)
        typer.echo(f"rollout of stack {name}: {result.outcome} (log {log.path})")
        if result.outcome is Outcome.HELD:
            typer.echo("held at an A/B split: --resume --steps ...,100 to promote, --abort to go back")
        raise typer.Exit(result.exit_code)
