"""What a rollout needs from the infrastructure, as a small protocol.

Revisions and their ids are the program's (infra/program/revisions.py); the rollout tool moves traffic
between them and reaches the stack only through a Deployer.

The rollout engine only ever calls a `Deployer`: the real one drives Pulumi's Automation API
(`infra/rollout/automation.py`); tests use one that starts emulators on loopback. Every method is
idempotent (deploying a revision that is there, or removing one that is gone, does nothing), because
after a crash `--resume` repeats the step that was logged but may not have been taken.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class DeployFailed(Exception):
    """A deployer's update failed (e.g. `pulumi up`); the rollout log still says which step, so
    --resume retries it and --abort goes back."""


Weights = Mapping[str, int]
"""Revision id -> percent of the region's requests; the values sum to 100."""


class Deployer(Protocol):
    """One stack's regions, as the rollout engine sees them. Regions are keys like `aws-us-east-1`."""

    def deploy_revision(self, region: str, revision: str) -> None:
        """Start `revision`'s inference services in `region` beside what serves there, at 0% of traffic."""
        ...

    def set_weights(self, region: str, weights: Weights) -> None:
        """Split `region`'s gateway traffic between deployed revisions."""
        ...

    def remove_revision(self, region: str, revision: str) -> None:
        """Delete `revision`'s inference services in `region` (it must carry no traffic)."""
        ...

    def set_shadow(self, region: str, revision: str, share: int) -> None:
        """Copy `share` percent of `region`'s requests to `revision` (deployed at 0%), its answers dropped; 0 stops."""
        ...

    def weights(self, region: str) -> dict[str, int]:
        """The revisions deployed in `region` and their share of traffic (a revision at 0% is deployed)."""
        ...

    def endpoints(self) -> dict[str, str]:
        """Region -> its gateway's base URL, where the gate sends its load."""
        ...

    def in_progress(self) -> str | None:
        """The id of the rollout marked in progress in the stack's shared state (any machine can read it)."""
        ...

    def mark_in_progress(self, rollout: str | None) -> None:
        """Set (or with None clear) the in-progress marker in the stack's shared state."""
        ...


def serving(weights: Weights) -> str | None:
    """The revision carrying all of a region's traffic, if one does."""
    full = [revision for revision, share in weights.items() if share == 100]
    return full[0] if full else None
