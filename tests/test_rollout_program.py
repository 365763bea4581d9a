"""The Pulumi program reads the `llmfleet:rollout` record: two revisions side by side, weighted at the gateway.

The dev stack runs under the offline engine with a record like the one the Automation API deployer
writes mid-rollout: the stack file's revision at 75% and an older fp8 revision at 25%.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmfleet.infra.config import ConfigError, load_stack, stack_path
from llmfleet.infra.program.revisions import RECORD_KEY, RolloutRecord, target_revisions
from llmfleet.infra.render.offline import PROGRAM, OfflineRun, run_program

REGION = "aws-us-east-1"
OLD = "0ld0ld00"


def run_with(tmp_path: Path, record: RolloutRecord) -> OfflineRun:
    document = yaml.safe_load(stack_path("dev").read_text())
    document["config"][RECORD_KEY] = record.model_dump(mode="json")
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump(document))
    return run_program(stack_file=path)


def objects(run: OfflineRun, kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for _, m in run.kubernetes_objects() if m["kind"] == kind}


def dev_models(**change: Any) -> list[dict[str, Any]]:
    return [{**m.model_dump(mode="json", exclude_defaults=True), **change} for m in load_stack("dev")[1].models]


def test_two_recorded_revisions_serve_side_by_side_at_their_weights(tmp_path: Path) -> None:
    current = target_revisions(*load_stack("dev"))[REGION].id
    record = RolloutRecord()
    record = record.with_revision(REGION, OLD, dev_models(quantization="fp8"))
    record = record.with_revision(REGION, current, dev_models())
    record = record.with_weights(REGION, {OLD: 25, current: 75})
    run = run_with(tmp_path, record)
    assert run.outputs["rollout"] == record.model_dump(mode="json"), "what was applied, for the next runner"
    deployments = objects(run, "Deployment")
    assert {f"chat-{current}", f"chat-{OLD}"} <= set(deployments) and "chat" not in deployments
    old_args = " ".join(deployments[f"chat-{OLD}"]["spec"]["template"]["spec"]["containers"][0]["args"])
    new_args = " ".join(deployments[f"chat-{current}"]["spec"]["template"]["spec"]["containers"][0]["args"])
    assert "fp8" in old_args and "fp8" not in new_args, "each revision is built from its own model settings"
    route = next(iter(objects(run, "AIGatewayRoute").values()))
    refs = {r["name"].rsplit("-", 1)[-1]: r["weight"] for r in route["spec"]["rules"][0]["backendRefs"]}
    assert refs == {"chat": 75, OLD: 25}
    # A pool per revision: the weighted split stays on the Services (an AIGatewayRoute rule holds one
    # InferencePool alone, so two pools cannot be weighted in one rule), and a request pinned to a
    # revision goes to that revision's own pool, whose endpoint picker chooses among its replicas only.
    pinned = {r["name"]: r["backendRefs"] for r in route["spec"]["rules"][1:3]}
    pool = {"group": "inference.networking.k8s.io", "kind": "InferencePool"}
    assert pinned == {f"chat-{rev}": [{**pool, "name": f"chat-{rev}"}] for rev in (current, OLD)}, (
        "x-llmfleet-revision reaches either revision, through its own pool"
    )
    backends = objects(run, "Backend")
    hostnames = {b["spec"]["endpoints"][0]["fqdn"]["hostname"].split(".")[0] for b in backends.values()}
    assert {f"chat-{current}", f"chat-{OLD}"} <= hostnames
    releases = {release["name"]: release for _, release in run.helm_releases()}
    for rev in (current, OLD):
        selected = releases[f"chat-{rev}"]["values"]["inferencePool"]["modelServers"]["matchLabels"]
        pod_labels = deployments[f"chat-{rev}"]["spec"]["template"]["metadata"]["labels"]
        assert selected.items() <= pod_labels.items(), f"pool chat-{rev} selects its revision's pods"
        other = deployments[f"chat-{OLD if rev == current else current}"]["spec"]["template"]["metadata"]["labels"]
        assert not selected.items() <= other.items(), f"pool chat-{rev} selects no pod of the other revision"


def test_a_promoted_revision_is_routed_through_its_pool_alone(tmp_path: Path) -> None:
    current = target_revisions(*load_stack("dev"))[REGION].id
    record = RolloutRecord().with_revision(REGION, current, dev_models())
    run = run_with(tmp_path, record.with_weights(REGION, {current: 100}))
    route = next(iter(objects(run, "AIGatewayRoute").values()))
    assert [r["name"] for r in route["spec"]["rules"]] == ["chat"]
    pool = {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": f"chat-{current}"}
    assert route["spec"]["rules"][0]["backendRefs"] == [pool]


def test_without_a_record_the_names_stay_plain_and_a_third_revision_is_refused(tmp_path: Path) -> None:
    run = run_with(tmp_path, RolloutRecord())
    assert "chat" in objects(run, "Deployment")
    record = RolloutRecord()
    for revision in ("a1", "b2", "c3"):
        record = record.with_revision(REGION, revision, dev_models())
    with pytest.raises(ConfigError, match="a region serves at most two"):
        run_with(tmp_path, record.with_weights(REGION, {"a1": 100}))


def test_the_program_never_loads_the_rollout_tool() -> None:
    """Revisions are the program's side (infra/program/); the rollout tool (infra/rollout/) is the operator's.

    A fresh interpreter imports every llmfleet module infra/__main__.py and infra/program/ import, so an
    import of the tool anywhere below them (not only in those files) shows up in sys.modules."""
    program_files = [PROGRAM, *sorted((PROGRAM.parent / "program").glob("*.py"))]
    imported = sorted(
        {
            node.module
            for path in program_files
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llmfleet.")
        }
    )
    assert "llmfleet.infra.program.revisions" in imported, imported  # the walk sees the program's imports
    probe = f"import importlib, sys\nfor m in {imported!r}: importlib.import_module(m)\n"
    probe += "print(sorted(m for m in sys.modules if m.startswith('llmfleet.infra.rollout')))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True)
    assert result.stdout.strip() == "[]", f"the program loads the rollout tool: {result.stdout}"


def test_a_shadowed_revision_gets_copies_of_the_requests_through_the_gateway(tmp_path: Path) -> None:
    """The shadow stage's record: the old revision takes every request, the new one (the stack file's, at 0%)
    gets copies of 10% through the mirror objects (components/gateway/shadow.py), all valid."""
    from llmfleet.infra.render.validate import validate_manifest

    current = target_revisions(*load_stack("dev"))[REGION].id
    record = RolloutRecord().with_revision(REGION, OLD, dev_models(quantization="fp8"))
    record = record.with_revision(REGION, current, dev_models()).with_weights(REGION, {OLD: 100, current: 0})
    run = run_with(tmp_path, record.with_shadow(REGION, current, 10))
    [policy] = objects(run, "EnvoyPatchPolicy").values()
    [shadow_route] = [r for name, r in objects(run, "HTTPRoute").items() if name.endswith("-shadow")]
    for manifest in (policy, shadow_route, *objects(run, "HTTPRouteFilter").values()):
        assert validate_manifest(manifest) == []
    mirrors = [p["operation"]["value"][0] for p in policy["spec"]["jsonPatches"]]
    assert mirrors and all(m["runtime_fraction"]["default_value"]["numerator"] == 10 for m in mirrors)
    [backend_name] = {ref["name"] for rule in shadow_route["spec"]["rules"] for ref in rule["backendRefs"]}
    hostname = objects(run, "Backend")[backend_name]["spec"]["endpoints"][0]["fqdn"]["hostname"]
    assert hostname.startswith(f"chat-{current}."), "the copies go to the new revision's Service"
    # Without the shadow share, nothing is mirrored.
    assert objects(run_with(tmp_path, record), "EnvoyPatchPolicy") == {}
