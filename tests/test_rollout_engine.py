"""The rollout state machine against an in-memory deployer and a scripted gate (no load, milliseconds).

tests/test_rollout.py runs the same engine against emulators with the real Locust gate; these cover
every path of the state machine: waves, breach and rollback, --keep-promoted, invalid runs and the
retry, A/B holds, crashes with --resume and --abort, the lock and the log itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from support.rollout import NEW, OLD, REGIONS, Crash, MemoryDeployer, Script, ScriptedGate

from llmfleet.infra.rollout.engine import Rollout, RolloutError
from llmfleet.infra.rollout.history import Outcome
from llmfleet.infra.rollout.log import RolloutBusy, RolloutLog, RolloutLogDamaged
from llmfleet.values import ExitCode


def make(tmp_path: Path, script: Script = lambda *_: 0, crash_on_call: int | None = None, crash_after: bool = False):
    deployer = MemoryDeployer(REGIONS, crash_on_call, crash_after)
    gate = ScriptedGate(deployer, script)
    log = RolloutLog(tmp_path, "prod")
    return Rollout(log, deployer, gate), deployer, gate, log


def start(rollout: Rollout, steps: list[int] | None = None, keep_promoted: bool = False):
    return rollout.start({r: NEW for r in REGIONS}, REGIONS, steps or [5, 25, 100], keep_promoted=keep_promoted)


def test_healthy_rollout_goes_region_by_region_through_every_step(tmp_path: Path) -> None:
    rollout, deployer, gate, log = make(tmp_path)
    result = start(rollout)
    assert (result.outcome, result.exit_code) == (Outcome.PROMOTED, 0)
    assert deployer.state == {r: {NEW: 100} for r in REGIONS}
    assert [(r, s) for r, s, _, _ in gate.runs] == [(r, s) for r in REGIONS for s in (5, 25, 100)]
    # each gate saw its region at the step's split, the regions after it untouched
    assert gate.runs[1][3] == {OLD: 75, NEW: 25}
    assert [t for t in log.current() if t["type"] == "end"][-1]["outcome"] == "promoted"


def test_every_step_is_logged_before_it_is_taken(tmp_path: Path) -> None:
    rollout, deployer, _, log = make(tmp_path)
    seen: list[int] = []
    original = deployer.set_weights

    def checking(region: str, weights: dict[str, int]) -> None:
        last = log.records()[-1]
        assert last["type"] == "begin" and last["region"] == region, last
        seen.append(1)
        original(region, weights)

    deployer.set_weights = checking  # type: ignore[method-assign]
    start(rollout, [50, 100])
    assert len(seen) == 9  # 2 steps + promote per region


def test_breach_in_the_second_region_rolls_back_it_and_the_first(tmp_path: Path) -> None:
    rollout, deployer, gate, _ = make(tmp_path, lambda region, step, _: 3 if region == REGIONS[1] and step == 25 else 0)
    result = start(rollout)
    assert (result.outcome, result.exit_code) == (Outcome.ROLLED_BACK, ExitCode.BREACH)
    assert deployer.state == {r: {OLD: 100} for r in REGIONS}
    assert result.report["region"] == REGIONS[1] and result.report["step"] == 25
    assert result.report["failed_checks"][0]["metric"] == "ttft"
    assert not any(r == REGIONS[2] for r, *_ in gate.runs), "the third region was never touched"
    assert ("deploy", REGIONS[2], NEW) not in deployer.calls
    restores = [c for c in deployer.calls if c[0] == "deploy" and c[2] == OLD]
    assert [c[1] for c in restores] == [REGIONS[1], REGIONS[0]], "undone newest first"


def test_keep_promoted_leaves_regions_that_passed(tmp_path: Path) -> None:
    rollout, deployer, _, _ = make(tmp_path, lambda region, step, _: 3 if region == REGIONS[1] else 0)
    result = start(rollout, keep_promoted=True)
    assert result.exit_code == ExitCode.BREACH
    assert deployer.state == {REGIONS[0]: {NEW: 100}, REGIONS[1]: {OLD: 100}, REGIONS[2]: {OLD: 100}}


def test_an_invalid_run_is_retried_once(tmp_path: Path) -> None:
    rollout, deployer, gate, _ = make(tmp_path, lambda region, step, attempt: 4 if attempt == 1 and step == 25 else 0)
    assert start(rollout).outcome is Outcome.PROMOTED
    assert sum(1 for _, step, attempt, _ in gate.runs if step == 25 and attempt == 2) == len(REGIONS)
    assert deployer.state == {r: {NEW: 100} for r in REGIONS}


def test_two_invalid_runs_stop_at_the_last_passed_split_and_resume_continues(tmp_path: Path) -> None:
    flaky = {"on": True}
    rollout, deployer, gate, _ = make(
        tmp_path, lambda region, step, _: 7 if flaky["on"] and region == REGIONS[1] and step == 25 else 0
    )
    result = start(rollout)
    assert (result.outcome, result.exit_code) == (Outcome.STOPPED, ExitCode.INVALID)
    assert deployer.state[REGIONS[0]] == {NEW: 100}
    assert deployer.state[REGIONS[1]] == {OLD: 95, NEW: 5}, "back to the split that passed"
    assert deployer.state[REGIONS[2]] == {OLD: 100}
    with pytest.raises(RolloutError, match="unfinished rollout"):
        start(rollout)
    flaky["on"] = False
    assert rollout.resume().outcome is Outcome.PROMOTED
    assert deployer.state == {r: {NEW: 100} for r in REGIONS}
    assert [(r, s) for r, s, _, _ in gate.runs].count((REGIONS[1], 25)) == 3


def test_a_crash_while_resuming_a_stopped_rollout_resumes_the_steps_again(tmp_path: Path) -> None:
    flaky = {"on": True}
    rollout, deployer, _, _ = make(tmp_path, lambda region, step, _: 4 if flaky["on"] and region == REGIONS[1] else 0)
    assert start(rollout, [50, 100]).outcome is Outcome.STOPPED
    flaky["on"] = False
    deployer.crash_on_call = len(deployer.calls) + 2  # the resumed 50% step passes, then dies moving to 100%
    with pytest.raises(Crash):
        rollout.resume()
    deployer.crash_on_call = None
    assert rollout.resume().outcome is Outcome.PROMOTED
    assert deployer.state == {r: {NEW: 100} for r in REGIONS}


@pytest.mark.parametrize(
    ("script", "outcome"), [(lambda *_: 0, "promoted"), (lambda r, *_: 3 if r == REGIONS[2] else 0, "rolled_back")]
)
def test_dying_after_the_last_action_but_before_the_end_record(tmp_path: Path, script: Script, outcome: str) -> None:
    rollout, deployer, gate, log = make(tmp_path, script)
    start(rollout, [100])
    lines = log.path.read_text().splitlines()
    assert '"type": "end"' in lines[-1]
    log.path.write_text("\n".join(lines[:-1]) + "\n")  # the end record never made it to disk
    calls, runs = len(deployer.calls), len(gate.runs)
    result = rollout.resume()
    assert result.outcome == outcome and len(gate.runs) == runs and len(deployer.calls) == calls


def test_a_b_split_is_held_then_climbs_or_aborts(tmp_path: Path) -> None:
    rollout, deployer, _, _ = make(tmp_path)
    assert start(rollout, [50]).outcome is Outcome.HELD
    assert deployer.state == {r: {OLD: 50, NEW: 50} for r in REGIONS}
    with pytest.raises(RolloutError, match="held at 50%"):
        rollout.resume()
    with pytest.raises(RolloutError, match="climb above"):
        rollout.resume([25, 100])
    assert rollout.resume([100]).outcome is Outcome.PROMOTED
    assert deployer.state == {r: {NEW: 100} for r in REGIONS}


def test_a_held_split_can_be_aborted(tmp_path: Path) -> None:
    rollout, deployer, _, _ = make(tmp_path)
    start(rollout, [10, 50])
    assert rollout.abort().outcome is Outcome.ABORTED
    assert deployer.state == {r: {OLD: 100} for r in REGIONS}
    with pytest.raises(RolloutError, match="no unfinished rollout"):
        rollout.abort()


@pytest.mark.parametrize("crash_after", [False, True])
@pytest.mark.parametrize("crash_on_call", range(1, 16))
def test_crash_anywhere_then_resume_promotes(tmp_path: Path, crash_on_call: int, crash_after: bool) -> None:
    rollout, deployer, _, log = make(tmp_path, crash_on_call=crash_on_call, crash_after=crash_after)
    with pytest.raises(Crash):
        start(rollout, [50, 100])
    deployer.crash_on_call = None
    assert rollout.resume().outcome is Outcome.PROMOTED
    assert deployer.state == {r: {NEW: 100} for r in REGIONS}
    assert log.current()[-1]["type"] == "end"


@pytest.mark.parametrize("crash_after", [False, True])
@pytest.mark.parametrize("crash_on_call", range(1, 16))
def test_crash_anywhere_then_abort_restores(tmp_path: Path, crash_on_call: int, crash_after: bool) -> None:
    rollout, deployer, _, log = make(tmp_path, crash_on_call=crash_on_call, crash_after=crash_after)
    with pytest.raises(Crash):
        start(rollout, [50, 100])
    deployer.crash_on_call = None
    assert rollout.abort().outcome is Outcome.ABORTED
    assert deployer.state == {r: {OLD: 100} for r in REGIONS}
    assert log.current()[-1]["outcome"] == "aborted"


def test_crash_during_a_rollback_is_finished_by_resume(tmp_path: Path) -> None:
    rollout, deployer, _, _ = make(tmp_path, lambda region, *_: 3 if region == REGIONS[2] else 0)
    deployer.crash_on_call = 18  # inside the rollback of the first regions
    with pytest.raises(Crash):
        start(rollout, [50, 100])
    deployer.crash_on_call = None
    result = rollout.resume()
    assert (result.outcome, result.exit_code) == (Outcome.ROLLED_BACK, ExitCode.BREACH)
    assert deployer.state == {r: {OLD: 100} for r in REGIONS}


def test_a_second_rollout_of_the_stack_is_refused_while_one_runs(tmp_path: Path) -> None:
    rollout, deployer, _, log = make(tmp_path)
    with RolloutLog(tmp_path, "prod").locked(), pytest.raises(RolloutBusy, match=r"in progress \(pid"):
        start(rollout)
    assert deployer.calls == [] and log.records() == []
    other = RolloutLog(tmp_path, "dev")
    with other.locked():  # another stack's lock does not matter
        assert start(rollout).outcome is Outcome.PROMOTED


def test_the_preview_runs_first_and_a_failing_one_changes_nothing(tmp_path: Path) -> None:
    rollout, deployer, gate, log = make(tmp_path)
    seen: list[int] = []

    def failing_preview() -> None:
        seen.append(len(deployer.calls))
        raise RuntimeError("pulumi preview failed")

    with pytest.raises(RuntimeError, match="preview failed"):
        rollout.start({r: NEW for r in REGIONS}, REGIONS, [100], preview=failing_preview)
    assert seen == [0] and deployer.calls == [] and gate.runs == [] and log.records() == []
    assert rollout.start({r: NEW for r in REGIONS}, REGIONS, [100], preview=lambda: None).outcome is Outcome.PROMOTED


def test_nothing_to_do_when_every_region_serves_the_target(tmp_path: Path) -> None:
    rollout, _, gate, log = make(tmp_path)
    result = rollout.start({r: OLD for r in REGIONS}, REGIONS, [5, 100])
    assert result.exit_code == 0 and gate.runs == [] and log.records() == []


def test_a_region_on_a_split_is_not_a_known_start(tmp_path: Path) -> None:
    rollout, deployer, _, _ = make(tmp_path)
    deployer.state[REGIONS[1]] = {OLD: 60, "other": 40}
    with pytest.raises(RolloutError, match="not one revision at 100%"):
        start(rollout)
    deployer.state[REGIONS[1]] = {}
    with pytest.raises(RolloutError, match=f"region {REGIONS[1]}: no revision is recorded.*--adopt"):
        start(rollout)


def test_a_torn_last_line_is_ignored_but_damage_elsewhere_is_an_error(tmp_path: Path) -> None:
    rollout, _, _, log = make(tmp_path)
    start(rollout, [100])
    good = log.path.read_text()
    with log.path.open("a") as out:
        out.write('{"type": "beg')
    assert log.records()[-1]["type"] == "end", "the torn line is dropped"
    lines = good.splitlines(keepends=True)
    log.path.write_text(lines[0] + "not json\n" + "".join(lines[1:]))
    with pytest.raises(RolloutLogDamaged, match=r"prod\.jsonl:2: the rollout log is damaged \(not a JSON record\)"):
        log.records()


@pytest.mark.parametrize(
    ("kind", "edit", "problem"),
    [
        ("start", lambda r: r.pop("from"), r"from: missing"),
        ("start", lambda r: r.update(regions=[*r["regions"], "aws-xx-1"]), r"lack a `from` or `to` revision"),
        ("plan", lambda r: r.update(phase="sideways"), r"phase: Input should be"),
        ("begin", lambda r: r.pop("region"), r"region: missing"),
        ("begin", lambda r: r.update(plan=7), r"plan: 7 names no plan of this rollout"),
        ("done", lambda r: r.update(index=99), r"index: 99 names no action of plan 0"),
        ("gate", lambda r: r.update(exit_code="zero"), r"exit_code: Input should be a valid integer"),
        ("end", lambda r: r.pop("held_at") and r.update(outcome="held"), r"needs `held_at`"),
    ],
)
def test_a_record_missing_or_mistyping_a_field_names_the_line_and_the_field(
    tmp_path: Path, kind: str, edit: Callable[[dict[str, object]], object], problem: str
) -> None:
    rollout, _, _, log = make(tmp_path)
    start(rollout, [50])
    records = [json.loads(x) for x in log.path.read_text().splitlines()]
    line = next(i for i, r in enumerate(records, start=1) if r["type"] == kind)
    edit(records[line - 1])
    log.path.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(RolloutLogDamaged, match=rf"jsonl:{line}: .*{problem}.*--abort") as damage:
        log.records()
    assert len(damage.value.valid) == line - 1, "the records before the damage are kept"


def test_abort_after_a_damaged_line_rolls_back_from_the_fleet_s_real_weights(tmp_path: Path) -> None:
    rollout, deployer, _, log = half_promoted_fleet_with_a_stale_log(tmp_path)
    lines = log.path.read_text().splitlines(keepends=True)
    log.path.write_text(lines[0] + '{"type": "plan"}\n' + "".join(lines[1:]))  # damage right after the start
    with pytest.raises(RolloutLogDamaged):
        rollout.resume()
    assert rollout.abort().outcome is Outcome.ABORTED
    assert deployer.state == {r: {OLD: 100} for r in REGIONS}, "both changed regions restored from their weights"
    assert deployer.marker is None
    aside = list(tmp_path.glob("prod.jsonl.damaged-*"))
    assert len(aside) == 1 and aside[0].read_text().splitlines()[1] == '{"type": "plan"}', "kept as evidence"
    assert [r["type"] for r in log.current()][:2] == ["start", "plan"] and log.current()[-1]["outcome"] == "aborted"


def test_a_breach_at_the_5_percent_step_stops_the_rollout_there(tmp_path: Path) -> None:
    rollout, _, gate, _ = make(tmp_path, lambda region, step, _: 3 if region == REGIONS[0] and step == 5 else 0)
    result = start(rollout)
    assert (result.outcome, result.report["step"]) == (Outcome.ROLLED_BACK, 5)
    assert [(r, s) for r, s, _, _ in gate.runs] == [(REGIONS[0], 5)], "no step past 5% was taken"
    assert gate.runs[0][3] == {OLD: 95, NEW: 5}, "the region's real traffic was at 5% when the gate judged it"


def truncate_after(log: RolloutLog, matches: Callable[[dict[str, object]], bool]) -> None:
    """The log as a lost runner's last sync left it: up to the first record that `matches`."""
    records = log.records()
    keep = next(i for i, r in enumerate(records) if matches(r)) + 1
    log.path.write_text("".join(json.dumps(r) + "\n" for r in records[:keep]))


def half_promoted_fleet_with_a_stale_log(tmp_path: Path):
    """The runner died with region 1 promoted and region 2 at 25%; its log was last synced when region 1
    began its 25% step."""
    rollout, deployer, gate, log = make(tmp_path)
    stop = {"at": (REGIONS[1], 25)}

    def crash_at_25(region: str, step: int, _: int) -> int:
        if (region, step) == stop["at"]:
            raise Crash("runner lost")
        return 0

    gate.script = crash_at_25
    with pytest.raises(Crash):
        start(rollout)
    assert deployer.state[REGIONS[0]] == {NEW: 100} and deployer.state[REGIONS[1]] == {OLD: 75, NEW: 25}
    truncate_after(log, lambda r: r["type"] == "begin" and (r["region"], r["percent"]) == (REGIONS[0], 25))
    gate.script, gate.runs = (lambda *_: 0), []
    return rollout, deployer, gate, log


def test_abort_with_a_stale_log_restores_every_region_the_fleet_shows_changed(tmp_path: Path) -> None:
    rollout, deployer, _, log = half_promoted_fleet_with_a_stale_log(tmp_path)
    assert rollout.abort().outcome is Outcome.ABORTED
    assert deployer.state == {r: {OLD: 100} for r in REGIONS}
    assert deployer.marker is None and log.current()[-1]["outcome"] == "aborted"


def test_resume_with_a_stale_log_restores_the_stray_split_and_gates_it_again_from_the_first_step(
    tmp_path: Path,
) -> None:
    rollout, deployer, gate, log = half_promoted_fleet_with_a_stale_log(tmp_path)
    assert rollout.resume().outcome is Outcome.PROMOTED
    assert deployer.state == {r: {NEW: 100} for r in REGIONS}
    steps = [(r, s) for r, s, _, _ in gate.runs]
    assert steps == [(REGIONS[0], 25), (REGIONS[0], 100)] + [(r, s) for r in REGIONS[1:] for s in (5, 25, 100)]
    reconciled = [r for r in log.current() if r["type"] == "reconcile"]
    assert [r["restore"] for r in reconciled] == [[REGIONS[1]]]


def test_a_rollout_marked_in_progress_elsewhere_is_refused_and_its_own_log_can_finish_it(tmp_path: Path) -> None:
    rollout, deployer, gate, log = make(tmp_path / "runner-1")
    seen: list[str | None] = []
    gate.script = lambda *_: seen.append(deployer.marker) or 0  # type: ignore[func-returns-value]
    assert start(rollout, [50]).outcome is Outcome.HELD
    rollout_id = log.current()[0]["rollout"]
    assert set(seen) == {rollout_id}, "marked before the first step"
    assert deployer.marker == rollout_id, "a held A/B split is still in progress"
    other = Rollout(RolloutLog(tmp_path / "runner-2", "prod"), deployer, gate)  # another machine, its own log
    calls = len(deployer.calls)
    with pytest.raises(RolloutError, match=f"rollout {rollout_id} is in progress.*--resume.*--abort"):
        start(other)
    with pytest.raises(RolloutError, match="no unfinished rollout"):
        other.abort()
    assert len(deployer.calls) == calls, "the refused rollout changed nothing"
    assert rollout.resume([100]).outcome is Outcome.PROMOTED
    assert deployer.marker is None, "cleared at the end"
    assert start(other).exit_code == 0, "no longer refused (and nothing is left to roll out)"


def test_resume_or_abort_refuse_a_marker_set_by_another_rollout(tmp_path: Path) -> None:
    rollout, deployer, _, _ = make(tmp_path, lambda region, *_: 4 if region == REGIONS[1] else 0)
    assert start(rollout, [50, 100]).outcome is Outcome.STOPPED
    deployer.marker = "feedfacecafe"
    for command in (rollout.resume, rollout.abort):
        with pytest.raises(RolloutError, match=r"rollout feedfacecafe is in progress.*feedfacecafe's log"):
            command()


def test_a_marker_left_by_this_log_s_finished_rollout_is_stale_and_cleared(tmp_path: Path) -> None:
    breach = {"on": True}
    rollout, deployer, _, log = make(tmp_path, lambda *_: 3 if breach["on"] else 0)
    assert start(rollout, [100]).outcome is Outcome.ROLLED_BACK
    deployer.marker = log.current()[0]["rollout"]  # left behind, however (the end is logged after the clear)
    breach["on"] = False
    assert start(rollout, [100]).outcome is Outcome.PROMOTED
    assert deployer.marker is None and deployer.state == {r: {NEW: 100} for r in REGIONS}
