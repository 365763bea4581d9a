"""The shape of every rollout log record, checked on read.

The engine trusts the log to decide what to deploy, so a record that lost a field (a hand edit, a
partial copy from another runner) must stop the command with the line at fault and what to do, not
crash it midway with a KeyError. One pydantic model per record `type`; extra keys are allowed (older
or newer writers may add some), missing or mistyped ones are not.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    time: str | None = None


class _ActionFields(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    kind: Literal["deploy", "shadow", "step", "promote", "restore", "settle"]
    region: str
    percent: int = Field(default=0, ge=0, le=100)


class StartRecord(_Record):
    type: Literal["start"]
    rollout: str = Field(min_length=1)
    stack: str
    regions: list[str] = Field(min_length=1)
    from_: dict[str, str] = Field(alias="from")
    to: dict[str, str]
    steps: list[int] = Field(min_length=1)
    keep_promoted: bool

    @model_validator(mode="after")
    def _every_region_has_both_revisions(self) -> StartRecord:
        missing = [r for r in self.regions if r not in self.from_ or r not in self.to]
        if missing:
            raise ValueError(f"regions {missing} lack a `from` or `to` revision")
        return self


class PlanRecord(_Record):
    type: Literal["plan"]
    phase: Literal["forward", "rollback", "stop"]
    actions: list[_ActionFields]
    outcome: Literal["promoted", "held", "rolled_back", "stopped", "aborted"] | None
    exit_code: int
    report: dict[str, Any]


class ResumeRecord(_Record):
    type: Literal["resume"]
    plan: int = Field(ge=0)


class StepRecord(_Record, _ActionFields):
    type: Literal["begin", "done"]
    plan: int = Field(ge=0)
    index: int = Field(ge=0)


class GateRecord(_Record):
    type: Literal["gate"]
    region: str
    percent: int
    attempt: int
    exit_code: int
    verdict: dict[str, Any]


class ShadowRecord(_Record):
    """The shadow stage's judgement: both revisions' figures over the window and each check."""

    type: Literal["shadow"]
    region: str
    percent: int
    exit_code: int
    comparison: dict[str, Any]


class ReconcileRecord(_Record):
    type: Literal["reconcile"]
    restore: list[str]
    weights: dict[str, dict[str, int]]


class EndRecord(_Record):
    type: Literal["end"]
    outcome: Literal["promoted", "held", "rolled_back", "stopped", "aborted"]
    exit_code: int
    report: dict[str, Any] = Field(default_factory=dict[str, Any])
    held_at: int | None = None

    @model_validator(mode="after")
    def _held_says_where(self) -> EndRecord:
        if self.outcome == "held" and self.held_at is None:
            raise ValueError("a held rollout's end needs `held_at`")
        return self


AnyRecord = Annotated[
    StartRecord | PlanRecord | ResumeRecord | StepRecord | GateRecord | ShadowRecord | ReconcileRecord | EndRecord,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyRecord)


def record_problem(value: object) -> str | None:
    """What is wrong with one decoded record (field and problem), or None when it is well formed."""
    if not isinstance(value, dict):
        return f"a record is a JSON object, got {type(value).__name__}"
    try:
        _ADAPTER.validate_python(value)
    except ValidationError as exc:
        problems: list[str] = []
        for error in exc.errors():
            # The first loc item is the union tag (the record's type); the rest is the field path.
            path = ".".join(str(p) for p in error["loc"][1:]) or "type"
            message = "missing" if error["type"] == "missing" else error["msg"].removeprefix("Value error, ")
            problems.append(f"{path}: {message}")
        return "; ".join(problems)
    return None


def sequence_problem(records: list[dict[str, Any]], index: int) -> str | None:
    """What is wrong with record `index` given the records before it (plan numbers and action indexes
    must name a plan and an action that exist); None when it fits."""
    record = records[index]
    kind = record.get("type")
    if kind not in ("resume", "begin", "done"):
        return None
    start = max((i for i in range(index) if records[i].get("type") == "start"), default=None)
    if start is None:
        return f"a `{kind}` record before any `start`"
    plans = [r for r in records[start:index] if r.get("type") == "plan"]
    plan = int(record["plan"])
    if plan >= len(plans):
        return f"plan: {plan} names no plan of this rollout (it has {len(plans)})"
    if kind != "resume" and int(record["index"]) >= len(plans[plan]["actions"]):
        return f"index: {record['index']} names no action of plan {plan} (it has {len(plans[plan]['actions'])})"
    return None
