"""The rollout gate on the in-cluster load generator (`rollout.in_cluster`).

The stack option deploys a LoadGenerator (components/loadgen.py) next to each region's gateway; the rollout's
InClusterGate reruns it per step through loadtests/incluster.py, with the step's model and revision header as
overrides of the copied Jobs' args. kubectl is tests/support/fake_kubectl.py (as in tests/test_incluster.py).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.kube import NAME, deployed_cluster, master_log, verdict
from support.rollout import NEW, OLD, MemoryDeployer

from llmfleet.components.gateway.types import REVISION_HEADER
from llmfleet.components.loadgen import SUITES_DIR
from llmfleet.infra.config import PROJECT_ROOT, ConfigError, load_stack_file, stack_path
from llmfleet.infra.render.offline import run_program
from llmfleet.infra.render.validate import validate_manifest
from llmfleet.infra.rollout.engine import Rollout
from llmfleet.infra.rollout.history import Outcome
from llmfleet.infra.rollout.loadgate import InClusterGate
from llmfleet.infra.rollout.log import RolloutLog
from llmfleet.loadtests import incluster
from llmfleet.loadtests.incluster import Kubectl, Overrides, apply_overrides, rerun_job
from llmfleet.values import ExitCode

IMAGE = "registry.example.com/llmfleet-loadtest:1.0"
PROD_REGIONS = ["aws-us-east-1", "aws-us-west-2", "gcp-us-central1"]
REGION = "aws-us-east-1"


def prod_with(
    tmp_path: Path, in_cluster: dict[str, Any], name: str = "prod", rollout: dict[str, Any] | None = None
) -> Path:
    document = yaml.safe_load(stack_path("prod").read_text())
    section = document["config"]["llmfleet:deployment"].setdefault("rollout", {})
    section |= {"in_cluster": in_cluster} | (rollout or {})
    path = tmp_path / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def good(**changes: Any) -> dict[str, Any]:
    return {
        "image": IMAGE,
        "workers": 4,
        "tenant": "search",
        "contexts": {r: f"ctx-{r}" for r in PROD_REGIONS},
    } | changes


def test_each_region_deploys_a_valid_load_generator_on_its_gateway(tmp_path: Path) -> None:
    run = run_program(stack_file=prod_with(tmp_path, good()))
    jobs = {m["metadata"]["name"]: (r, m) for r, m in run.kubernetes_objects() if m["kind"] == "Job"}
    for region in PROD_REGIONS:
        resource, master = jobs[f"{region}-loadgen-master"]
        _, workers = jobs[f"{region}-loadgen-workers"]
        generator = run.by_name(f"{region}-loadgen")
        assert generator.type == "llmfleet:loadgen:LoadGenerator"
        assert generator.parent == run.by_name(region).urn, "a child of the region's fleet"
        assert resource.parent == generator.urn
        args = master["spec"]["template"]["spec"]["containers"][0]["args"]
        # depends_on a component waits for its children: the gateway's objects.
        gateway_children = {r.urn for r in run.resources if r.parent == run.by_name(f"{region}-gateway").urn}
        assert gateway_children & generator.dependencies, "created after the gateway"
        assert args[args.index("--host") + 1] == run.outputs["gateway_endpoints"][region], "loads its own gateway"
        assert args[args.index("-f") + 1] == f"{SUITES_DIR}/steady.py"
        assert args[args.index("--expect-workers") + 1] == "4" and workers["spec"]["parallelism"] == 4
        assert master["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
        assert master["metadata"]["namespace"] == "llmfleet"
        for manifest in (master, workers):
            validate_manifest(manifest)
            # `pulumi up` does not wait for (or fail on) the deploy-time run; its reruns drop the annotation.
            assert manifest["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}
    secrets = [m for r, m in run.kubernetes_objects() if m["kind"] == "Secret" and "loadgen" in m["metadata"]["name"]]
    assert len(secrets) == len(PROD_REGIONS), "the tenant's key, in a Secret per region"


def test_without_the_option_no_generator_is_deployed(shipped_run: Any) -> None:
    run = shipped_run("prod")
    assert not run.by_type("llmfleet:loadgen:LoadGenerator")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"image": "registry.example.com/llmfleet-loadtest"}, "rollout.in_cluster.image"),
        ({"image": "registry.example.com/llmfleet-loadtest:latest"}, "rollout.in_cluster.image"),
        ({"workers": 0}, "rollout.in_cluster.workers"),
        ({"tenant": "nobody"}, "rollout.in_cluster.tenant"),
        ({"contexts": {REGION: "ctx"}}, "rollout.in_cluster.contexts"),
        ({"worker_cpu": "lots"}, "rollout.in_cluster.worker_cpu"),
    ],
)
def test_bad_options_name_the_field(tmp_path: Path, change: dict[str, Any], field: str) -> None:
    path = prod_with(tmp_path, good(**change))
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_stack_file(path)


@pytest.mark.parametrize(
    ("change", "field"),
    [({"in_cluster": good(workers=0)}, "rollout.in_cluster.workers"), ({"suite": "gateway"}, "rollout.suite")],
)
def test_the_cli_exits_2_on_a_bad_option_without_a_traceback(
    tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    path = prod_with(tmp_path, good(), name="badgen", rollout=change)
    llmfleet = str(Path(sys.executable).parent / "llmfleet")
    out = tmp_path / "out"
    command = [llmfleet, "render", "--stack-file", str(path), "--out", str(out)]
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert field in done.stdout + done.stderr
    assert "Traceback" not in done.stderr and not out.exists()


def test_overrides_change_only_what_a_step_changes() -> None:
    from support.loadgen import render

    _, objects = render(headers=["x-old: 1"])
    master, workers = (rerun_job(objects[f"Job/{NAME}-{role}"], "r1") for role in ("master", "workers"))
    before = master["spec"]["activeDeadlineSeconds"]
    overrides = Overrides(
        model="code", headers=(f"{REVISION_HEADER}: {NEW}",), users=64, duration_s=600, warmup_s=60, suite_file="/s.py"
    )
    apply_overrides(master, workers, overrides)
    args = master["spec"]["template"]["spec"]["containers"][0]["args"]
    flag = {f: args[args.index(f) + 1] for f in ("--llm-model", "-u", "-r", "-t", "--llm-warmup", "-f", "--llm-header")}
    assert flag == {
        "--llm-model": "code",
        "-u": "64",
        "-r": "64",
        "-t": "600s",
        "--llm-warmup": "60",
        "-f": "/s.py",
        "--llm-header": f"{REVISION_HEADER}: {NEW}",
    }
    assert args.count("--llm-header") == 1, "the deployed header is replaced"
    assert master["spec"]["activeDeadlineSeconds"] == before + 300, "the deadline grows with the run"
    worker_args = workers["spec"]["template"]["spec"]["containers"][0]["args"]
    assert worker_args[worker_args.index("-f") + 1] == "/s.py"
    for job in (master, workers):
        validate_manifest(job)


# -- the rollout engine with the in-cluster gate, against the fake kubectl ---------------------------------


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    state = deployed_cluster(tmp_path)
    monkeypatch.setenv("FAKE_KUBE_DIR", str(state))
    monkeypatch.setattr(incluster, "POLL_S", 0.01)
    return state


def engine(tmp_path: Path, cluster: Path, executable: str | None = None):
    deployer = MemoryDeployer([REGION])
    kubectl = Kubectl("llmfleet-loadtest", f"ctx-{REGION}", executable or str(cluster.parent / "bin" / "kubectl"))
    gate = InClusterGate(
        "steady", 30, 16, {REGION: ["chat"]}, {REGION: NAME}, {REGION: kubectl}, tmp_path / "gate-reports"
    )
    return Rollout(RolloutLog(tmp_path / "log", "prod"), deployer, gate), deployer


def gates(tmp_path: Path) -> list[dict[str, Any]]:
    log = RolloutLog(tmp_path / "log", "prod")
    return [r for r in log.current() if r["type"] == "gate"]


def created_masters(cluster: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((cluster / "created").glob(f"{NAME}-master-*.json"))]


def test_a_pass_verdict_promotes_with_each_step_pinned_to_the_new_revision(tmp_path: Path, cluster: Path) -> None:
    (cluster / "log.txt").write_text(master_log(verdict(0)))
    rollout, deployer = engine(tmp_path, cluster)
    result = rollout.start({REGION: NEW}, [REGION], [5, 25, 100])
    assert (result.outcome, result.exit_code) == (Outcome.PROMOTED, ExitCode.OK)
    assert deployer.weights(REGION) == {NEW: 100}
    assert [(g["percent"], g["exit_code"]) for g in gates(tmp_path)] == [(5, 0), (25, 0), (100, 0)]
    masters = created_masters(cluster)
    assert len(masters) == 3, "one run per step"
    for master in masters:
        args = master["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--llm-header") + 1] == f"{REVISION_HEADER}: {NEW}"
        assert (args[args.index("--llm-model") + 1], args[args.index("-u") + 1], args[args.index("-t") + 1]) == (
            "chat",
            "16",
            "30s",
        )
    contexts = {call[call.index("--context") + 1] for call in _calls(cluster)}
    assert contexts == {f"ctx-{REGION}"}
    reports = sorted((tmp_path / "gate-reports").glob("*.json"))
    assert len(reports) == 3 and all(json.loads(p.read_text())["exit_code"] == 0 for p in reports)
    assert all(p.with_suffix(".log").exists() for p in reports), "the master's log beside each verdict"


def test_a_breach_rolls_back(tmp_path: Path, cluster: Path) -> None:
    (cluster / "log.txt").write_text(master_log(verdict(3)))
    rollout, deployer = engine(tmp_path, cluster)
    result = rollout.start({REGION: NEW}, [REGION], [5, 25, 100])
    assert (result.outcome, result.exit_code) == (Outcome.ROLLED_BACK, ExitCode.BREACH)
    assert deployer.weights(REGION) == {OLD: 100}
    assert result.report["failed_checks"][0]["metric"] == "ttft_ms"
    assert [(g["percent"], g["exit_code"]) for g in gates(tmp_path)] == [(5, 3)]


def test_an_unreachable_cluster_is_invalid_never_a_breach(tmp_path: Path, cluster: Path) -> None:
    failing = tmp_path / "bin" / "kubectl-unreachable"
    failing.write_text("#!/bin/sh\necho 'Unable to connect to the server: dial tcp: i/o timeout' >&2\nexit 1\n")
    failing.chmod(failing.stat().st_mode | stat.S_IEXEC)
    rollout, deployer = engine(tmp_path, cluster, str(failing))
    result = rollout.start({REGION: NEW}, [REGION], [5, 25, 100])
    assert (result.outcome, result.exit_code) == (Outcome.STOPPED, ExitCode.INVALID)
    assert [(g["attempt"], g["exit_code"]) for g in gates(tmp_path)] == [(1, 4), (2, 4)]
    assert "Unable to connect to the server" in " ".join(result.report["reasons"])
    assert NEW in deployer.weights(REGION) and deployer.weights(REGION)[OLD] == 100, "settled at 0%, not rolled back"


def test_a_run_without_a_verdict_is_invalid(tmp_path: Path, cluster: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KUBE_STATE", "Failed")
    (cluster / "log.txt").write_text("Traceback (most recent call last):\nImportError: no locust\n")
    rollout, _ = engine(tmp_path, cluster)
    result = rollout.start({REGION: NEW}, [REGION], [5, 100])
    assert (result.outcome, result.exit_code) == (Outcome.STOPPED, ExitCode.INVALID)
    assert "without a verdict" in " ".join(result.report["reasons"])


def _calls(cluster: Path) -> list[list[str]]:
    return [json.loads(line) for line in (cluster / "calls.jsonl").read_text().splitlines()]


def test_the_rollout_command_gates_on_each_region_s_generator_in_its_context(
    tmp_path: Path, cluster: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmfleet.infra.commands import rollout as command
    from llmfleet.infra.errors import UsageError
    from llmfleet.infra.program.revisions import target_revisions

    name, spec = "prod", load_stack_file(prod_with(tmp_path, good()))
    target = target_revisions(name, spec)
    monkeypatch.setenv("PATH", f"{cluster.parent / 'bin'}{os.pathsep}{os.environ['PATH']}")
    gate = command.make_gate(spec, "steady", target, tmp_path / "reports")
    assert isinstance(gate, InClusterGate)
    assert gate.generators == {r: f"{r}-loadgen" for r in PROD_REGIONS}
    assert {r: (k.context, k.namespace) for r, k in gate.kubectl.items()} == {
        r: (f"ctx-{r}", spec.namespace) for r in PROD_REGIONS
    }
    with pytest.raises(UsageError, match="--suite 'gateway'"):
        command.make_gate(spec, "gateway", target, tmp_path / "reports")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(UsageError, match=r"rollout\.in_cluster: --in-cluster needs kubectl"):
        command.make_gate(spec, "steady", target, tmp_path / "reports")
