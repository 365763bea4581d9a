"""An in-memory rollout deployer (the engine's Deployer protocol) and a scripted gate, for state-machine tests."""

from __future__ import annotations

from collections.abc import Callable

from llmfleet.infra.rollout.engine import GateResult

OLD, NEW = "0ld0ld00", "5ca1ab1e"


class Crash(Exception):
    """Stands for the process dying (Ctrl-C, a lost runner) in the middle of a rollout."""


class MemoryDeployer:
    """Regions as dicts of revision -> weight; can crash on the n-th call."""

    def __init__(self, regions: list[str], crash_on_call: int | None = None, crash_after: bool = False) -> None:
        self.state = {r: {OLD: 100} for r in regions}
        self.marker: str | None = None
        """The in-progress marker, as the stack's shared state holds it (any process sees it)."""
        self.calls: list[tuple[str, str, object]] = []
        self.crash_on_call = crash_on_call
        self.crash_after = crash_after
        """Crash after the call took effect (it happened but was not logged done) instead of before."""

    def _call(self, name: str, region: str, arg: object, change: Callable[[], None]) -> None:
        self.calls.append((name, region, arg))
        crash = self.crash_on_call is not None and len(self.calls) == self.crash_on_call
        if crash and not self.crash_after:
            raise Crash(f"crash before {name} {region}")
        change()
        if crash:
            raise Crash(f"crash after {name} {region}")

    def deploy_revision(self, region: str, revision: str) -> None:
        self._call("deploy", region, revision, lambda: self.state[region].setdefault(revision, 0) and None)

    def set_weights(self, region: str, weights: dict[str, int]) -> None:
        assert set(weights) <= set(self.state[region]), f"{region}: weights for a revision not deployed"
        assert sum(weights.values()) == 100

        def change() -> None:
            self.state[region] = {r: weights.get(r, 0) for r in self.state[region]}

        self._call("weights", region, dict(weights), change)

    def remove_revision(self, region: str, revision: str) -> None:
        assert self.state[region].get(revision, 0) == 0, f"{region}: removing {revision} while it serves"
        self._call("remove", region, revision, lambda: self.state[region].pop(revision, None) and None)

    def set_shadow(self, region: str, revision: str, share: int) -> None:
        assert self.state[region].get(revision) == 0, f"{region}: shadowing {revision} while it serves"
        self._call("shadow", region, (revision, share), lambda: None)

    def weights(self, region: str) -> dict[str, int]:
        return dict(self.state[region])

    def endpoints(self) -> dict[str, str]:
        return {r: f"http://{r}.example" for r in self.state}

    def in_progress(self) -> str | None:
        return self.marker

    def mark_in_progress(self, rollout: str | None) -> None:
        self.marker = rollout


REGIONS = ["aws-eu-west-1", "gcp-us-central1", "aws-us-east-1"]


Script = Callable[[str, int, int], int]


class ScriptedGate:
    """Exit code per (region, percent, attempt); records every run and the deployer state it saw."""

    def __init__(self, deployer: MemoryDeployer, script: Script = lambda *_: 0) -> None:
        self.deployer = deployer
        self.script = script
        self.runs: list[tuple[str, int, int, dict[str, int]]] = []

    def run(self, region: str, endpoint: str, step: int, attempt: int, revision: str) -> GateResult:
        assert endpoint == f"http://{region}.example" and revision == NEW, "the gate judges the new revision"
        self.runs.append((region, step, attempt, self.deployer.weights(region)))
        code = self.script(region, step, attempt)
        checks = [{"metric": "ttft", "stat": "p95", "observed": 900.0, "op": "<=", "threshold": 800.0, "pass": False}]
        return GateResult(code, {"checks": checks if code == 3 else [], "metrics": {"ttft_ms": {"p95": 900.0}}})
