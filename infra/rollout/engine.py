"""The rollout state machine: waves of regions, a canary through the steps in each, the gate after each.

A rollout is a list of coarse, idempotent actions, decided up front and logged as a `plan`:

    deploy(region)         the new revision beside the old one, at 0%
    shadow(region, share)  with rollout.shadow: share% of the real requests copied to the new revision (answers
                           dropped) for a set time, then judged against the old one on both revisions' own
                           Prometheus series over that window (infra/rollout/shadow.py); the mirror stops after
    step(region, percent)  weights old/new = 100-percent/percent, then the load test + SLO gate
    promote(region)        the old revision removed (only after a 100% step passed)
    restore(region)        old revision back (redeployed if promoted), all traffic on it, new one removed
    settle(region, percent) weights back to the last split that passed a gate

Each action is logged (`begin`) before it is taken and again (`done`) after, so replaying the log
says exactly where a rollout stopped. A breach plans `restore` for the region and, unless
--keep-promoted, for every region before it; two invalid gate runs plan `settle` and stop; `--resume`
continues the latest unfinished plan; `--abort` plans the restores. A/B testing is a rollout whose
last step is below 100: it ends `held` at that split, until resumed with more steps or aborted.

The gate judges the new revision on its own samples: its load carries the revision id (the gateway
pins such requests to that revision) while the region's real traffic keeps the step's weights.

The log can be behind the fleet (a lost CI runner whose last appends never reached the bucket), so
--resume and --abort first reconcile with the deployer's real weights: a region of the rollout that
is not on one of its two revisions at 100% (and is not the region the log says was mid-step) is
restored to the old revision, the last known good. The lock (log.py) holds on one machine; across
machines the deployer keeps an in-progress marker in the stack's shared state, set before the first
step and cleared when the rollout ends, and a rollout with another id is refused while it is set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from llmfleet.infra.rollout.deployer import Deployer, serving
from llmfleet.infra.rollout.history import UNFINISHED, Action, History, Outcome, PlanState, forward_actions
from llmfleet.infra.rollout.log import Record, RolloutLog
from llmfleet.infra.schema.rollout import check_steps
from llmfleet.values import ExitCode

GATE_ATTEMPTS = 2
"""An invalid gate run (exit 4) is retried once; a second one stops the rollout."""
GATE_VERDICTS: dict[int, str] = {ExitCode.OK: "pass", ExitCode.BREACH: "SLO BREACHED"}
"""How the log reads a gate's exit code; any other code is an invalid run."""


class RolloutError(Exception):
    """The rollout cannot start, resume or abort as asked (the message says why and what to do)."""


@dataclass(frozen=True)
class GateResult:
    exit_code: int
    """0 pass, 3 SLO breached, 4 the run was invalid (anything else counts as invalid)."""
    verdict: Mapping[str, Any] = field(default_factory=dict[str, Any])
    """The gate's JSON verdict (checks and figures), as written by the load test."""

    def decided(self) -> GateResult:
        """This result with any code but a pass or a breach read as an invalid run."""
        if self.exit_code in (ExitCode.OK, ExitCode.BREACH):
            return self
        return GateResult(ExitCode.INVALID, self.verdict)


class Gate(Protocol):
    def run(self, region: str, endpoint: str, step: int, attempt: int, revision: str) -> GateResult:
        """Load-test `revision` through `endpoint` (the region's gateway, requests pinned to the revision
        by the `x-llmfleet-revision` header) and judge the SLO on its samples alone."""
        ...


class ShadowStage(Protocol):
    """The shadow stage before the canary steps (infra/rollout/shadow.py is the real one)."""

    @property
    def share(self) -> int:
        """Percent of each model's requests copied to the new revision."""
        ...

    def run(self, region: str, old: str, new: str) -> GateResult:
        """Let the copies run, then judge `new` against `old` on their own server-side series over that window."""
        ...


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    exit_code: int
    report: dict[str, Any] = field(default_factory=dict[str, Any])
    """On a breach or an invalid run: region, step, failed checks and figures."""


class Rollout:
    """Drives one stack's rollouts through a Deployer and a Gate, writing everything to the log."""

    def __init__(
        self,
        log: RolloutLog,
        deployer: Deployer,
        gate: Gate,
        *,
        shadow: ShadowStage | None = None,
        say: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.log = log
        self.deployer = deployer
        self.gate = gate
        self.shadow = shadow
        """With a shadow stage, each region mirrors real requests to the new revision before its first step."""
        self.say = say

    # -- commands --------------------------------------------------------------------------------

    def start(
        self,
        target: Mapping[str, str],
        order: Sequence[str],
        steps: Sequence[int],
        *,
        keep_promoted: bool = False,
        preview: Callable[[], None] | None = None,
    ) -> Result:
        """Roll `target` (region -> new revision id) out over the regions in `order`.

        `preview` runs first, under the lock, once the start is known to be possible: if it raises,
        nothing was changed or logged.
        """
        check_steps(steps)
        with self.log.locked():
            history = History.replay(self.log.current())
            if history is not None and (history.end is None or history.outcome in UNFINISHED):
                state = history.outcome or "interrupted"
                raise RolloutError(
                    f"stack {self.log.stack} has an unfinished rollout ({state}, log {self.log.path}); "
                    "run with --resume to continue it or --abort to go back to the old revision"
                )
            self._check_marker(history)
            previous: dict[str, str] = {}
            for region in order:
                weights = self.deployer.weights(region)
                current = serving(weights)
                if not weights:
                    raise RolloutError(
                        f"region {region}: no revision is recorded as serving there (a stack deployed before "
                        "its first rollout): record the stack file's revision once with --adopt"
                    )
                if current is None:
                    raise RolloutError(
                        f"region {region} serves {weights}, not one revision at 100%: bring it to a known "
                        "state first (--abort a rollout left behind, or set the weights with pulumi up)"
                    )
                previous[region] = current
            regions = [r for r in order if previous[r] != target[r]]
            if not regions:
                self.say("every region already serves the target revision: nothing to roll out")
                return Result(Outcome.PROMOTED, ExitCode.OK)
            if preview is not None:
                preview()
            rollout = uuid.uuid4().hex[:12]
            self.log.append(
                {
                    "type": "start",
                    "rollout": rollout,
                    "stack": self.log.stack,
                    "regions": regions,
                    "from": {r: previous[r] for r in regions},
                    "to": {r: target[r] for r in regions},
                    "steps": list(steps),
                    "keep_promoted": keep_promoted,
                    "pid": os.getpid(),
                }
            )
            self.deployer.mark_in_progress(rollout)
            share = self.shadow.share if self.shadow is not None else 0
            return self._run_plan("forward", forward_actions(regions, steps, shadow=share))

    def resume(self, steps: Sequence[int] | None = None) -> Result:
        """Continue the latest rollout where it stopped; a held (A/B) one climbs the new `steps`."""
        with self.log.locked():
            history = self._unfinished("resume")
            if steps is not None and history.outcome is not Outcome.HELD:
                raise RolloutError("--steps with --resume applies to a held (A/B) rollout only")
            self._claim(history)
            if history.outcome is Outcome.HELD:
                return self._climb(history, steps)
            mid_step = history.plans[history.active].record["phase"] != "rollback"
            last = history.last_region()
            self._reconcile(history, {last} if mid_step and last is not None else set())
            if history.end is None:  # interrupted: finish what was being done (it ends the rollout its way)
                return self._resume_plan(self._history(), history.active)
            return self._resume_plan(self._history(), history.last_forward())  # stopped: back up the steps

    def abort(self, *, keep_promoted: bool | None = None) -> Result:
        """Take the latest rollout back to the old revision (regions already promoted too, by default)."""
        with self.log.locked():
            aside = self.log.salvage()
            if aside is not None:
                self.say(f"the rollout log was damaged: moved to {aside}; aborting from the records before the damage")
            history = self._unfinished("abort")
            self._claim(history)
            active = history.plans[history.active] if history.plans else None
            if history.end is None and active is not None and active.record["phase"] == "rollback":  # interrupted
                self._reconcile(history, set())
                return self._resume_plan(self._history(), history.active)
            keep = bool(history.start["keep_promoted"]) if keep_promoted is None else keep_promoted
            return self._roll_back(history, "abort", Outcome.ABORTED, ExitCode.OK, {}, keep)

    # -- shared state ----------------------------------------------------------------------------

    def _check_marker(self, ended: History | None) -> None:
        """Refuse to start while the deployer's shared state says another rollout is in progress.

        `ended`: this log's last rollout, which has ended (the marker is cleared before the end is
        logged); a marker still naming it is stale and is cleared.
        """
        marker = self.deployer.in_progress()
        if marker is None:
            return
        if ended is not None and marker == ended.start.get("rollout"):
            self.deployer.mark_in_progress(None)
            return
        raise RolloutError(
            f"stack {self.log.stack}: rollout {marker} is in progress (the stack's shared rollout state says "
            "so; it may run on another machine): wait for it to end, or, if its runner was lost, fetch its "
            "log and run --resume to continue it or --abort to go back to the old revision"
        )

    def _claim(self, history: History) -> None:
        """--resume/--abort: the marker must be unset or this log's rollout's; then it is (again) ours."""
        rollout = str(history.start["rollout"])
        marker = self.deployer.in_progress()
        if marker is not None and marker != rollout:
            raise RolloutError(
                f"stack {self.log.stack}: rollout {marker} is in progress (the stack's shared rollout state), "
                f"but this log ({self.log.path}) is rollout {rollout}'s: --resume or --abort with rollout "
                f"{marker}'s log (e.g. the CI bucket's copy)"
            )
        if marker is None:
            self.deployer.mark_in_progress(rollout)

    def _reconcile(self, history: History, mid_step: set[str]) -> None:
        """Restore every region of the rollout that is not on one of its two revisions at 100% (except
        the regions in `mid_step`, which the log says are between steps): the log may be behind."""
        start = history.start
        stray: dict[str, dict[str, int]] = {}
        for region in start["regions"]:
            weights = self.deployer.weights(region)
            known = {start["from"][region], start["to"][region]}
            if region not in mid_step and (serving(weights) not in known or not set(weights) <= known):
                stray[region] = weights
        if not stray:
            return
        self.say(f"the log is behind the fleet: restoring {', '.join(stray)} to the old revision")
        self.log.append({"type": "reconcile", "restore": list(stray), "weights": stray})
        for region in reversed(list(stray)):
            self._apply(start, Action("restore", region))

    # -- plans -----------------------------------------------------------------------------------

    def _history(self) -> History:
        history = History.replay(self.log.current())
        assert history is not None, "a rollout was started"
        return history

    def _unfinished(self, verb: str) -> History:
        history = History.replay(self.log.current())
        if history is None or (history.end is not None and history.outcome not in UNFINISHED):
            last = f" (the last one ended {history.outcome})" if history else ""
            raise RolloutError(f"stack {self.log.stack} has no unfinished rollout to {verb}{last}")
        return history

    def _run_plan(
        self,
        phase: str,
        actions: Sequence[Action],
        *,
        outcome: Outcome | None = None,
        exit_code: int = ExitCode.OK,
        report: Mapping[str, Any] | None = None,
    ) -> Result:
        """Log a new plan, then take it."""
        self.log.append(
            {
                "type": "plan",
                "phase": phase,
                "actions": [a.to_record() for a in actions],
                "outcome": outcome,
                "exit_code": exit_code,
                "report": dict(report or {}),
            }
        )
        history = self._history()
        return self._take(history, len(history.plans) - 1)

    def _resume_plan(self, history: History, plan_index: int) -> Result:
        self.log.append({"type": "resume", "plan": plan_index})
        self.say(f"resuming the {history.plans[plan_index].record['phase']} plan")
        return self._take(self._history(), plan_index)

    def _take(self, history: History, plan_index: int) -> Result:
        """Take the actions of a plan that are not done yet (a begun one again), then end as the plan says."""
        plan = history.plans[plan_index]
        for index, action in enumerate(plan.actions):
            if index in plan.done:
                continue
            self.log.append({"type": "begin", "plan": plan_index, "index": index, **action.to_record()})
            self.say(str(action))
            if action.kind in ("step", "shadow"):
                failed = self._step(history.start, action) if action.kind == "step" else self._shadow(history, action)
                if failed is not None:
                    return self._after_failed_gate(history, plan, index, action, failed)
            else:
                self._apply(history.start, action)
            self.log.append({"type": "done", "plan": plan_index, "index": index, **action.to_record()})
        record = plan.record
        if record["phase"] == "forward":
            last = plan.actions[-1]
            held_at = last.percent if last.kind == "step" else 100
            return self._end(Result(Outcome.PROMOTED if held_at == 100 else Outcome.HELD, ExitCode.OK), held_at)
        return self._end(Result(Outcome(record["outcome"]), int(record["exit_code"]), dict(record["report"])))

    def _apply(self, start: Record, action: Action) -> None:
        region = action.region
        old, new = start["from"][region], start["to"][region]
        if action.kind == "deploy":
            self.deployer.deploy_revision(region, new)
        elif action.kind == "promote":
            self.deployer.set_weights(region, {new: 100})
            self.deployer.remove_revision(region, old)
        elif action.kind == "restore":
            self.deployer.deploy_revision(region, old)
            self.deployer.set_weights(region, {old: 100})
            self.deployer.remove_revision(region, new)
        elif action.kind == "settle":
            self.deployer.set_weights(region, _split(old, new, action.percent))

    def _step(self, start: Record, action: Action) -> GateResult | None:
        """Move the weights and gate them; None when the gate passed, else the failing result."""
        region = action.region
        old, new = start["from"][region], start["to"][region]
        # A resumed step whose region the fleet had already moved past (the log was behind): both back.
        for revision in (old, new):
            if revision not in self.deployer.weights(region):
                self.deployer.deploy_revision(region, revision)
        self.deployer.set_weights(region, _split(old, new, action.percent))
        endpoint = self.deployer.endpoints()[region]
        result = GateResult(ExitCode.INVALID)
        for attempt in range(1, GATE_ATTEMPTS + 1):
            result = self.gate.run(region, endpoint, action.percent, attempt, new).decided()
            self.log.append(
                {
                    "type": "gate",
                    "region": region,
                    "percent": action.percent,
                    "attempt": attempt,
                    "exit_code": result.exit_code,
                    "verdict": dict(result.verdict),
                }
            )
            verdict = GATE_VERDICTS.get(result.exit_code, "run invalid")
            self.say(f"gate {region} at {action.percent}% (attempt {attempt}): {verdict}")
            if result.exit_code != ExitCode.INVALID:
                break
        return None if result.exit_code == ExitCode.OK else result

    def _shadow(self, history: History, action: Action) -> GateResult | None:
        """Mirror the action's share of the region's requests to the new revision, judge it, stop the mirror;
        None when the judge passed, else its result (a breach rolls back, an invalid run stops)."""
        region = action.region
        old, new = history.start["from"][region], history.start["to"][region]
        if self.shadow is None:
            raise RolloutError(
                f"the rollout's plan has a shadow stage in {region} but the stack has no rollout.shadow now: "
                "put it back to --resume, or --abort"
            )
        if new not in self.deployer.weights(region):  # a resumed stage whose region the log was behind on
            self.deployer.deploy_revision(region, new)
        self.deployer.set_weights(region, {old: 100, new: 0})
        self.deployer.set_shadow(region, new, action.percent)
        try:
            result = self.shadow.run(region, old, new).decided()
        finally:
            self.deployer.set_shadow(region, new, 0)
        self.log.append(
            {
                "type": "shadow",
                "region": region,
                "percent": action.percent,
                "exit_code": result.exit_code,
                "comparison": dict(result.verdict),
            }
        )
        verdict: dict[int, str] = {ExitCode.OK: "pass", ExitCode.BREACH: "WORSE THAN THE OLD REVISION"}
        self.say(f"shadow {region} at {action.percent}%: {verdict.get(result.exit_code, 'run invalid')}")
        return None if result.exit_code == ExitCode.OK else result

    def _after_failed_gate(
        self, history: History, plan: PlanState, index: int, action: Action, result: GateResult
    ) -> Result:
        report = failure_report(action, result)
        if result.exit_code == ExitCode.BREACH:
            keep = bool(history.start["keep_promoted"])
            return self._roll_back(self._history(), "breach", Outcome.ROLLED_BACK, ExitCode.BREACH, report, keep)
        passed = [a.percent for a in plan.actions[:index] if a.kind == "step" and a.region == action.region]
        settle = Action("settle", action.region, passed[-1] if passed else 0)
        return self._run_plan("stop", [settle], outcome=Outcome.STOPPED, exit_code=ExitCode.INVALID, report=report)

    def _roll_back(
        self,
        history: History,
        reason: str,
        outcome: Outcome,
        exit_code: int,
        report: Mapping[str, Any],
        keep_promoted: bool,
    ) -> Result:
        touched, promoted = history.regions_in_state()
        start = history.start
        # The log's view, and the fleet's (the log may be behind): anything but the old revision alone.
        for region in start["regions"]:
            old, new = start["from"][region], start["to"][region]
            weights = self.deployer.weights(region)
            if weights != {old: 100} and region not in touched:
                touched.append(region)
            if serving(weights) == new and old not in weights and region not in promoted:
                promoted.append(region)
        back = [r for r in reversed(start["regions"]) if r in touched and not (keep_promoted and r in promoted)]
        self.say(f"rolling back ({reason}): {', '.join(back) or 'nothing to undo'}")
        return self._run_plan(
            "rollback", [Action("restore", r) for r in back], outcome=outcome, exit_code=exit_code, report=report
        )

    def _climb(self, history: History, steps: Sequence[int] | None) -> Result:
        """A held A/B split goes on up the new `steps`, in every region of the rollout."""
        assert history.end is not None
        held = int(history.end["held_at"])
        if steps is None:
            raise RolloutError(
                f"the rollout is held at {held}% (A/B): give --steps above {held} (ending at 100) to go on, "
                "or --abort to go back"
            )
        check_steps(steps)
        if steps[0] <= held:
            raise RolloutError(f"--steps {list(steps)}: must climb above the held split of {held}%")
        touched, _ = history.regions_in_state()
        return self._run_plan("forward", forward_actions(touched, steps, deploy=False))

    def _end(self, result: Result, held_at: int | None = None) -> Result:
        if result.outcome not in UNFINISHED:  # cleared before the end is logged: see _check_marker
            self.deployer.mark_in_progress(None)
        record: Record = {"type": "end", "outcome": result.outcome, "exit_code": result.exit_code}
        if result.report:
            record["report"] = result.report
        if result.outcome is Outcome.HELD:
            record["held_at"] = held_at
        self.log.append(record)
        self.say(f"rollout {result.outcome} (exit {result.exit_code})")
        return result


def _split(old: str, new: str, percent: int) -> dict[str, int]:
    return {old: 100 - percent, new: percent}


def failure_report(action: Action, result: GateResult) -> dict[str, Any]:
    """Region, step, failed checks and the figures they were judged on, from the gate's verdict."""
    verdict = dict(result.verdict)
    checks = cast(list[dict[str, Any]], verdict.get("checks") or [])
    return {
        "region": action.region,
        "step": action.percent,
        **({"stage": "shadow"} if action.kind == "shadow" else {}),
        "gate_exit_code": result.exit_code,
        "failed_checks": [c for c in checks if not c.get("pass", False)],
        "reasons": verdict.get("reasons", []),
        "figures": verdict.get("metrics", {}),
    }
