"""A rollout as data: its outcomes, its actions, and its state replayed from the log.

The engine (`engine.py`) decides and takes actions; this module only says what they are and, from the
log's records, which plans exist, which of their actions began or finished, and how the rollout ended.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, cast

from llmfleet.infra.rollout.log import Record


class Outcome(StrEnum):
    PROMOTED = "promoted"
    """Every region serves the new revision only."""
    HELD = "held"
    """Every region serves both revisions at the last step's split (A/B); --resume --steps or --abort."""
    ROLLED_BACK = "rolled_back"
    """A gate breached; the affected regions serve the old revision only."""
    STOPPED = "stopped"
    """A gate run was invalid twice; traffic is back at the last split that passed; --resume or --abort."""
    ABORTED = "aborted"
    """--abort: the affected regions serve the old revision only."""


UNFINISHED = {Outcome.HELD, Outcome.STOPPED}
"""Outcomes that leave the fleet on two revisions: a new rollout must wait for --resume or --abort."""


ActionKind = Literal["deploy", "shadow", "step", "promote", "restore", "settle"]


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    region: str
    percent: int = 0

    def to_record(self) -> Record:
        return {"kind": self.kind, "region": self.region, "percent": self.percent}

    @staticmethod
    def from_record(record: Record) -> Action:
        return Action(cast(ActionKind, record["kind"]), str(record["region"]), int(record.get("percent", 0)))

    def __str__(self) -> str:
        return f"{self.kind} {self.region}" + (f" {self.percent}%" if self.kind in ("shadow", "step", "settle") else "")


@dataclass
class PlanState:
    record: Record
    begun: set[int] = field(default_factory=set[int])
    done: set[int] = field(default_factory=set[int])

    @property
    def actions(self) -> list[Action]:
        return [Action.from_record(a) for a in self.record["actions"]]

    @property
    def complete(self) -> bool:
        return len(self.done) == len(self.record["actions"])


@dataclass
class History:
    """The current rollout, replayed from its log records."""

    start: Record
    plans: list[PlanState]
    active: int
    """Index of the plan taken last (a new plan, or an older one resumed)."""
    end: Record | None
    """The `end` record, unless a plan was started or resumed after it."""

    @staticmethod
    def replay(records: Sequence[Record]) -> History | None:
        if not records:
            return None
        plans: list[PlanState] = []
        active = -1
        end: Record | None = None
        for record in records:
            kind = record["type"]
            if kind == "plan":
                plans.append(PlanState(record))
                active, end = len(plans) - 1, None
            elif kind == "resume":
                active, end = int(record["plan"]), None
            elif kind == "begin":
                plans[int(record["plan"])].begun.add(int(record["index"]))
            elif kind == "done":
                plans[int(record["plan"])].done.add(int(record["index"]))
            elif kind == "end":
                end = record
        return History(records[0], plans, active, end)

    @property
    def outcome(self) -> Outcome | None:
        return Outcome(self.end["outcome"]) if self.end else None

    def regions_in_state(self) -> tuple[list[str], list[str]]:
        """(regions where the new revision was deployed, of those the promoted ones), in rollout order."""
        touched: list[str] = []
        promoted: list[str] = []
        for plan in self.plans:
            for index, action in enumerate(plan.actions):
                region = action.region
                if action.kind == "deploy" and index in plan.begun and region not in touched:
                    touched.append(region)
                elif action.kind == "promote" and index in plan.done:
                    promoted.append(region)
                elif action.kind == "restore" and index in plan.done:
                    touched = [r for r in touched if r != region]
                    promoted = [r for r in promoted if r != region]
        return touched, promoted

    def last_region(self) -> str | None:
        """The region of the last action the active plan began: the one the log says is mid-change."""
        plan = self.plans[self.active] if self.plans else None
        if plan is None or not plan.begun:
            return None
        return plan.actions[max(plan.begun)].region

    def last_forward(self) -> int:
        return max(i for i, plan in enumerate(self.plans) if plan.record["phase"] == "forward")


def forward_actions(
    regions: Sequence[str], steps: Sequence[int], *, deploy: bool = True, shadow: int = 0
) -> list[Action]:
    """Waves: each region in turn deploys, runs the shadow stage (`shadow` percent of its requests copied to
    the new revision, when above 0), climbs the steps, and is promoted when the last step is 100."""
    actions: list[Action] = []
    for region in regions:
        if deploy:
            actions.append(Action("deploy", region))
            if shadow:
                actions.append(Action("shadow", region, shadow))
        actions += [Action("step", region, percent) for percent in steps]
        if steps[-1] == 100:
            actions.append(Action("promote", region))
    return actions
