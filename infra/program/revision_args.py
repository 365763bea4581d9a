"""The program's side of a rollout: the `llmfleet:rollout` record turned into RegionalFleet arguments.

Without a record for a region, the region serves the stack file's models under plain names, as
before any rollout. With one, every recorded revision is served under its id: the stack file's
revision from the stack's own plan, an older one from the model settings the record kept (planned
again, so it is rebuilt exactly). At most two revisions share a region; the second one is the
fleet's `canary`, weighted at the gateway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from llmfleet.components.fleet import Revision
from llmfleet.components.inference import waiting_requests_threshold
from llmfleet.components.inference.engine import object_name
from llmfleet.components.sizing.plan import DeploymentPlan
from llmfleet.infra.config import CONFIG_KEY, ConfigError, DeploymentSpec
from llmfleet.infra.planning import build_plan
from llmfleet.infra.program.revisions import RECORD_KEY, RolloutRecord, region_revision
from llmfleet.infra.schema.models import ModelSpec
from llmfleet.infra.schema.regions import RegionSpec


@dataclass(frozen=True)
class RegionRevisions:
    """What a region serves once its rollout record is read: the RegionalFleetArgs fields it decides."""

    deployments: Sequence[DeploymentPlan]
    """The first revision's plan entries (the stack file's, without a record)."""
    revision: str | None = None
    """The first revision's id (None: no record, plain names)."""
    canary: Revision | None = None
    """The second revision, weighted at the gateway."""
    queue_thresholds: Mapping[str, int] = field(default_factory=dict[str, int])
    """Thresholds for GPU-mix parts only one revision has (the stack file's thresholds name the others)."""
    shadow: int = 0
    """Shadow stage when the new revision is the first one: percent of requests copied to it while the second
    (the old revision) takes them all (RegionalFleetArgs.shadow)."""


def region_revisions(
    stack: str,
    spec: DeploymentSpec,
    region: RegionSpec,
    deployments: Sequence[DeploymentPlan],
    record: RolloutRecord,
) -> RegionRevisions:
    """The region's recorded revisions and weights over `deployments` (the stack file's plan for the region)."""
    recorded = record.regions.get(region.key) or {}
    if not recorded:
        return RegionRevisions(deployments)
    if len(recorded) > 2:
        raise ConfigError(f"{RECORD_KEY}: {region.key} records {sorted(recorded)}; a region serves at most two")
    current, _ = region_revision(deployments)

    def planned(revision: str) -> list[DeploymentPlan]:
        if revision == current:
            return list(deployments)
        models = [ModelSpec.model_validate(m) for m in recorded[revision].models]
        plan = build_plan(stack, spec.model_copy(update={"models": models}))
        return [d for d in plan.deployments if (d.cloud, d.region) == (region.cloud, region.region)]

    # The stack file's revision first (its plan sized the pools), else the one with the most traffic.
    order = sorted(recorded, key=lambda r: (r != current, -recorded[r].weight, r))
    main = planned(order[0])
    if sorted(d.model for d in main) != sorted(d.model for d in deployments):
        raise ConfigError(
            f"{RECORD_KEY}: {region.key} revision {order[0]} serves {[d.model for d in main]}, the stack file "
            f"{[d.model for d in deployments]}: a rollout changes how models are served, not which "
            f"(see {CONFIG_KEY}.models)"
        )
    if len(order) == 1:
        return RegionRevisions(main, order[0])
    second = planned(order[1])
    if sorted(d.model for d in second) != sorted(d.model for d in main):
        raise ConfigError(f"{RECORD_KEY}: {region.key} revisions {order} serve different models")
    # A GPU mix in one revision only (deploy_mix turned on or off, or a split over other types) has parts
    # the stack file's thresholds do not name: each scales on its own queue, with its own threshold.
    output_tokens = {m.name: m.load.output_tokens for m in spec.models}
    thresholds = {
        object_name(part): waiting_requests_threshold(part, output_tokens[d.model], spec.slo.ttft_p95_ms)
        for d in [*main, *second]
        for part in d.deployed
    }
    canary = Revision(order[1], second, recorded[order[1]].weight, shadow=recorded[order[1]].shadow)
    # The new revision may be the first one: its shadow share is then the first revision's.
    return RegionRevisions(main, order[0], canary, thresholds, shadow=recorded[order[0]].shadow)
