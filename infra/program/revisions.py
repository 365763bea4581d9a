"""What each region should serve (its revision, from the stack file) and what it does serve (the record).

- `target_revisions` plans the stack and hashes, per region, what its models are served with
  (image, engine arguments, model version, quantization): the revision a rollout moves to.
- `RolloutRecord` is the stack config value `llmfleet:rollout` the Automation API deployer keeps:
  per region, the deployed revisions, their traffic weights and the model settings each was built
  from (so the old revision can still be built while the new one takes over, and rebuilt on rollback).
  The Pulumi program reads it with `RolloutRecord.from_pulumi_config()`; no record: one revision,
  the stack file's.
- `wave_order` is the stack's region order for waves.
- `ModelRevision` / `revision_id`: what makes a served model's revision and the id hashed from it.
The program is built from these; the rollout tool (infra/rollout/) imports them, never the reverse.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from llmfleet.infra.config import DeploymentSpec

if TYPE_CHECKING:
    from llmfleet.components.sizing.plan import DeploymentPlan

RECORD_KEY = "llmfleet:rollout"
"""Stack config key (a JSON object) holding the RolloutRecord."""

REVISION_ID_LENGTH = 8
"""Hex characters of the revision id: short enough for Kubernetes names, 2^32 values."""


@dataclass(frozen=True)
class ModelRevision:
    """What makes one served model's revision: change any of these and the revision id changes."""

    model: str
    """Served model name."""
    image: str
    """Engine container image (pinned)."""
    engine_args: tuple[str, ...]
    """Engine arguments, in order."""
    model_version: str
    """Weights: repository (and revision) or catalog id."""
    quantization: str


def revision_id(models: Sequence[ModelRevision]) -> str:
    """A region's revision id: a hash of what its models are served with, independent of listing order."""
    canonical = json.dumps(sorted((asdict(m) for m in models), key=lambda m: m["model"]), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:REVISION_ID_LENGTH]


@dataclass(frozen=True)
class RegionRevision:
    id: str
    models: tuple[ModelRevision, ...]
    model_specs: tuple[dict[str, Any], ...]
    """The stack file's `models:` entries of this region, as the record stores them."""

    @property
    def model_names(self) -> list[str]:
        return [m.model for m in self.models]


def wave_order(spec: DeploymentSpec) -> list[str]:
    """`rollout.region_order`, or the secondaries in stack order and the primary last."""
    if spec.rollout.region_order is not None:
        return list(spec.rollout.region_order)
    secondaries = [r.key for r in spec.regions if r.role != "primary"]
    return secondaries + [r.key for r in spec.regions if r.role == "primary"]


def region_revision(deployments: Sequence[DeploymentPlan]) -> tuple[str, tuple[ModelRevision, ...]]:
    """The revision id of one region's planned deployments, and what it was derived from."""
    from llmfleet.components.inference.service import engine_spec

    models: list[ModelRevision] = []
    for d in deployments:
        engine = engine_spec(d)
        models.append(
            ModelRevision(
                model=d.model,
                image=engine.image,
                # A deployed GPU mix runs its parts: their flags (TP, memory, batch) make the revision.
                engine_args=tuple(a for part in d.parts for a in engine_spec(part).args)
                if d.parts
                else tuple(engine.args),
                model_version=d.hf_repo or d.model_id,
                quantization=d.quantization.value,
            )
        )
    return revision_id(models), tuple(models)


def target_revisions(stack: str, spec: DeploymentSpec, base_dir: Path | None = None) -> dict[str, RegionRevision]:
    """Region key -> the revision the stack file describes there (plans the stack: may raise PlanningError)."""
    from llmfleet.infra.planning import build_plan

    plan = build_plan(stack, spec, base_dir)
    revisions: dict[str, RegionRevision] = {}
    for region in spec.regions:
        deployments = [d for d in plan.deployments if (d.cloud, d.region) == (region.cloud, region.region)]
        revision, models = region_revision(deployments)
        specs = tuple(m.model_dump(mode="json", exclude_defaults=True) for m in spec.models_in(region))
        revisions[region.key] = RegionRevision(revision, models, specs)
    return revisions


class DeployedRevision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weight: int = Field(ge=0, le=100, description="Percent of the region's requests.")
    models: list[dict[str, Any]] = Field(description="The stack's `models:` entries this revision was built from.")
    shadow: int = Field(
        default=0,
        ge=0,
        le=100,
        description="Shadow stage: percent of the region's requests copied to it (weight 0).",
        exclude_if=lambda share: share == 0,  # records without a shadow stage stay as older versions wrote them
    )


class RetiredRevision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    revision: str
    models: list[dict[str, Any]] = Field(description="The `models:` entries it was built from.")


RETIRED_KEPT = 8
"""Removed revisions whose model settings the record keeps (newest last): after a promotion removed the
old revision, --abort on another machine (a new CI runner) can still rebuild it."""


class RolloutRecord(BaseModel):
    """`llmfleet:rollout`: region key -> revision id -> its weight and model settings."""

    model_config = ConfigDict(extra="forbid")

    regions: dict[str, dict[str, DeployedRevision]] = Field(default_factory=dict[str, dict[str, DeployedRevision]])
    retired: list[RetiredRevision] = Field(
        default_factory=list[RetiredRevision], description="Recently removed revisions (see RETIRED_KEPT)."
    )
    in_progress: str | None = Field(
        default=None,
        description="Id of the rollout under way (set before its first step, cleared at its end); another "
        "machine's rollout of the stack refuses to start while it is set.",
    )

    def weights(self, region: str) -> dict[str, int]:
        return {revision: deployed.weight for revision, deployed in self.regions.get(region, {}).items()}

    def with_revision(self, region: str, revision: str, models: Sequence[Mapping[str, Any]]) -> RolloutRecord:
        """Deployed at 0% (kept as is when already there)."""
        deployed = dict(self.regions.get(region, {}))
        deployed.setdefault(revision, DeployedRevision(weight=0, models=[dict(m) for m in models]))
        return self.model_copy(update={"regions": {**self.regions, region: deployed}})

    def with_weights(self, region: str, weights: Mapping[str, int]) -> RolloutRecord:
        deployed = self.regions.get(region, {})
        missing = sorted(set(weights) - set(deployed))
        if missing:
            raise ValueError(f"{region}: revisions {missing} are not deployed; deployed: {sorted(deployed)}")
        # A revision given requests is no longer shadowed (the shadow stage only runs at 0%).
        updated = {
            r: d.model_copy(update={"weight": weights.get(r, 0), "shadow": d.shadow if not weights.get(r) else 0})
            for r, d in deployed.items()
        }
        return self.model_copy(update={"regions": {**self.regions, region: updated}})

    def with_shadow(self, region: str, revision: str, share: int) -> RolloutRecord:
        """`revision` (deployed, at 0%) gets copies of `share` percent of the region's requests; 0 stops them."""
        deployed = self.regions.get(region, {})
        if revision not in deployed:
            raise ValueError(f"{region}: revision {revision} is not deployed; deployed: {sorted(deployed)}")
        if share and deployed[revision].weight:
            raise ValueError(f"{region}: {revision} takes {deployed[revision].weight}% of the requests: not shadowed")
        updated = {**deployed, revision: deployed[revision].model_copy(update={"shadow": share})}
        return self.model_copy(update={"regions": {**self.regions, region: updated}})

    def without_revision(self, region: str, revision: str) -> RolloutRecord:
        removed = self.regions.get(region, {}).get(revision)
        deployed = {r: d for r, d in self.regions.get(region, {}).items() if r != revision}
        retired = self.retired
        if removed is not None:
            retired = [r for r in retired if r.revision != revision]
            retired.append(RetiredRevision(revision=revision, models=removed.models))
        return self.model_copy(
            update={"regions": {**self.regions, region: deployed}, "retired": retired[-RETIRED_KEPT:]}
        )

    @staticmethod
    def from_pulumi_config() -> RolloutRecord:
        """The running program's record (empty when the stack never had a rollout)."""
        import pulumi

        value = pulumi.Config("llmfleet").get_object("rollout")
        return RolloutRecord.model_validate(value or {})
