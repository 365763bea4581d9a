"""The real Deployer: Pulumi's Automation API on this project (a local workspace; needs the Pulumi CLI).

Every change is one `pulumi up` of the stack with a new `llmfleet:rollout` record (see
`revisions.RolloutRecord`): the program builds one set of inference services per recorded revision
and sets the gateway's route weights from it. The record goes into the stack's config before each
update, so the stack's config always says what was last asked for; the engine's log says which
step that was.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

from pulumi import automation as auto

from llmfleet.infra.config import PROJECT_ROOT, ConfigError
from llmfleet.infra.program.revisions import RECORD_KEY, RegionRevision, RolloutRecord
from llmfleet.infra.rollout.deployer import DeployFailed, Weights

GATEWAY_ENDPOINTS_OUTPUT = "gateway_endpoints"
"""The program's output: region key -> that region's gateway URL."""
ROLLOUT_OUTPUT = "rollout"
"""The program's output: the record it was last applied with."""


class AutomationDeployer:
    """One stack's regions through `pulumi up`. Implements `infra.rollout.deployer.Deployer`."""

    def __init__(
        self,
        stack: str,
        target: Mapping[str, RegionRevision],
        *,
        work_dir: Path = PROJECT_ROOT,
        say: Callable[[str], Any] = print,
    ) -> None:
        self.say = say
        try:
            self.stack = auto.select_stack(stack_name=stack, work_dir=str(work_dir))
        except auto.StackNotFoundError:
            raise ConfigError(
                f"--stack {stack}: no such Pulumi stack (run `pulumi stack init {stack}` first)"
            ) from None
        self.target = target
        self.record = self._read_record()
        self._models: dict[str, list[dict[str, Any]]] = {}
        """Revision id -> the model settings it is built from (removed, deployed, then the stack file's)."""
        for retired in self.record.retired:
            self._models[retired.revision] = retired.models
        for deployed in self.record.regions.values():
            for revision, entry in deployed.items():
                self._models[revision] = entry.models
        for revision in target.values():
            self._models[revision.id] = [dict(m) for m in revision.model_specs]

    # -- Deployer ------------------------------------------------------------------------------

    # Each call runs `pulumi up` even when the record already says so: after a crash the record may
    # hold a change whose update never finished, and an up with nothing to change is cheap.

    def deploy_revision(self, region: str, revision: str) -> None:
        self._update(self.record.with_revision(region, revision, self._models[revision]), f"deploy {revision}")

    def set_weights(self, region: str, weights: Weights) -> None:
        split = ", ".join(f"{r} {w}%" for r, w in weights.items())
        self._update(self.record.with_weights(region, weights), f"weights {region}: {split}")

    def remove_revision(self, region: str, revision: str) -> None:
        self._update(self.record.without_revision(region, revision), f"remove {revision} from {region}")

    def set_shadow(self, region: str, revision: str, share: int) -> None:
        what = f"copy {share}% of {region}'s requests to {revision}" if share else f"stop copying to {revision}"
        self._update(self.record.with_shadow(region, revision, share), what)

    def weights(self, region: str) -> dict[str, int]:
        return self.record.weights(region)

    def in_progress(self) -> str | None:
        """The applied marker (the stack's `rollout` output, which every machine reads), else this
        workspace's (set in its config by an update that has not finished)."""
        applied = self.stack.outputs().get(ROLLOUT_OUTPUT)
        marker = cast(dict[str, Any], applied.value).get("in_progress") if applied is not None else None
        return str(marker) if marker else self.record.in_progress

    def mark_in_progress(self, rollout: str | None) -> None:
        # An update, not only a config change: the marker reaches the `rollout` output other machines read.
        action = f"mark rollout {rollout} in progress" if rollout else "clear the in-progress rollout"
        self._update(self.record.model_copy(update={"in_progress": rollout}), action)

    def endpoints(self) -> dict[str, str]:
        outputs = self.stack.outputs()
        if GATEWAY_ENDPOINTS_OUTPUT not in outputs:
            raise ConfigError(f"stack {self.stack.name} has no `{GATEWAY_ENDPOINTS_OUTPUT}` output (pulumi up first?)")
        return {str(k): str(v) for k, v in cast(dict[str, Any], outputs[GATEWAY_ENDPOINTS_OUTPUT].value).items()}

    # -- beyond the protocol ---------------------------------------------------------------------

    def preview(self) -> None:
        """What the first step (every region's new revision deployed at 0%) would change; nothing is applied."""
        planned = self.record
        for region, revision in self.target.items():
            planned = planned.with_revision(region, revision.id, self._models[revision.id])
        self._set_record(planned)
        try:
            result = self.stack.preview(on_output=self.say, message="llmfleet rollout: preview")
        finally:
            self._set_record(self.record)
        self.say(f"preview: {result.change_summary}")

    def adopt(self) -> None:
        """Record the stack file's revision as the one every region serves (after a plain `pulumi up`)."""
        record = RolloutRecord()
        for region, revision in self.target.items():
            record = record.with_revision(region, revision.id, self._models[revision.id])
            record = record.with_weights(region, {revision.id: 100})
        self._update(record, "adopt the stack file's revision")

    # -- internals -------------------------------------------------------------------------------

    def _read_record(self) -> RolloutRecord:
        """This workspace's record (it may hold a change whose update did not finish), else the last applied
        one from the stack's `rollout` output (another machine, e.g. a new CI runner), else none."""
        config = self.stack.get_all_config()
        if RECORD_KEY in config:
            raw, source = config[RECORD_KEY].value, f"config {RECORD_KEY}"
        else:
            outputs = self.stack.outputs()
            if ROLLOUT_OUTPUT not in outputs:
                return RolloutRecord()
            raw, source = json.dumps(outputs[ROLLOUT_OUTPUT].value), f"output {ROLLOUT_OUTPUT}"
        try:
            return RolloutRecord.model_validate_json(raw)
        except ValueError as exc:
            raise ConfigError(f"stack {self.stack.name}: {source} is not a rollout record: {exc}") from None

    def _set_record(self, record: RolloutRecord) -> None:
        value = json.dumps(record.model_dump(mode="json"), sort_keys=True)
        self.stack.set_config(RECORD_KEY, auto.ConfigValue(value=value, secret=False))

    def _update(self, record: RolloutRecord, message: str) -> None:
        self._set_record(record)
        self.say(f"pulumi up: {message}")
        try:
            self.stack.up(on_output=self.say, message=f"llmfleet rollout: {message}")
        except auto.CommandError as exc:
            raise DeployFailed(f"pulumi up failed ({message}): {str(exc)[-2000:]}") from None
        self.record = record
