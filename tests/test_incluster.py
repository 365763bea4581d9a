"""`llmfleet loadtest --in-cluster NAME` (loadtests/incluster.py): a deployed LoadGenerator runs again
through kubectl, and its verdict and exit code are the ones a local run gives. kubectl is
tests/support/fake_kubectl.py on PATH, serving the Jobs the LoadGenerator component renders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.kube import NAME, deployed_cluster, master_log, verdict

from llmfleet.infra.render.validate import validate_manifest
from llmfleet.loadtests import incluster
from llmfleet.loadtests.incluster import RUN_LABEL, Kubectl, finished, rerun_job, run_in_cluster, verdict_from_log

LLMFLEET = Path(sys.executable).parent / "llmfleet"


@pytest.fixture
def cluster(tmp_path: Path) -> Path:
    """A fake cluster holding the LoadGenerator's two Jobs as the API server returns them, and kubectl on PATH."""
    return deployed_cluster(tmp_path)


def run_cli(cluster: Path, *args: str, state: str = "Complete") -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "PATH": f"{cluster.parent / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "FAKE_KUBE_DIR": str(cluster),
        "FAKE_KUBE_STATE": state,
    }
    return subprocess.run(
        [str(LLMFLEET), "loadtest", "--in-cluster", NAME, *args], capture_output=True, text=True, env=env, timeout=120
    )


def calls(cluster: Path) -> list[list[str]]:
    path = cluster / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("code", [0, 3, 4])
def test_the_exit_code_and_verdict_are_the_masters(cluster: Path, tmp_path: Path, code: int) -> None:
    (cluster / "log.txt").write_text(master_log(verdict(code)))
    report = tmp_path / "out" / "verdict.json"
    done = run_cli(cluster, "--report", str(report), state="Complete" if code == 0 else "Failed")
    assert done.returncode == code, done.stderr
    assert json.loads(report.read_text())["exit_code"] == code
    assert "Starting Locust" in report.with_suffix(".log").read_text()  # the master's log kept beside it
    if code == 3:
        assert "SLO breached: ttft_ms p95 900.0" in done.stderr
    if code == 4:
        assert "invalid run: the load generator was starved" in done.stderr


def test_the_rerun_is_the_deployed_run_under_new_names(cluster: Path, tmp_path: Path) -> None:
    (cluster / "log.txt").write_text(master_log(verdict(0)))
    assert run_cli(cluster, "--report", str(tmp_path / "v.json")).returncode == 0
    created = {p.stem: json.loads(p.read_text()) for p in (cluster / "created").glob("*.json")}
    assert len(created) == 2
    for name, job in created.items():
        role = "master" if "-master-" in name else "workers"
        deployed = json.loads((cluster / "jobs" / f"{NAME}-{role}.json").read_text())
        run_id = job["metadata"]["labels"][RUN_LABEL]
        assert name == f"{NAME}-{role}-{run_id}"
        assert job["spec"]["template"]["metadata"]["labels"][RUN_LABEL] == run_id
        assert "selector" not in job["spec"] and "status" not in job and "uid" not in job["metadata"]
        assert "job-name" not in job["spec"]["template"]["metadata"]["labels"]
        assert job["spec"]["template"]["spec"] == deployed["spec"]["template"]["spec"]  # same image, args, SLO
        validate_manifest(job)
    namespaces = {call[call.index("-n") + 1] for call in calls(cluster)}
    assert namespaces == {"llmfleet-loadtest"}


def test_no_verdict_in_the_log_is_an_invalid_run(cluster: Path, tmp_path: Path) -> None:
    (cluster / "log.txt").write_text("Traceback (most recent call last):\n  ...\nImportError: no locust\n")
    report = tmp_path / "v.json"
    done = run_cli(cluster, "--report", str(report), state="Failed")
    assert done.returncode == 4, done.stderr
    assert "without a verdict in its log" in json.loads(report.read_text())["reasons"][0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--users", "64"), "--users come from the deployed LoadGenerator"),
        (("--suite", "steady", "--host", "http://x"), "--suite, --host come from the deployed LoadGenerator"),
        (("--namespace", "elsewhere"), "no LoadGenerator Jobs gate-us-master / gate-us-workers in namespace elsewhere"),
    ],
)
def test_bad_input_is_exit_2_before_any_run(cluster: Path, tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    done = run_cli(cluster, *args, "--report", str(tmp_path / "v.json"))
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (cluster / "created").exists()


def test_an_active_run_is_not_started_twice(cluster: Path, tmp_path: Path) -> None:
    path = cluster / "jobs" / f"{NAME}-master.json"
    job = json.loads(path.read_text())
    job["status"] = {"active": 1}
    path.write_text(json.dumps(job))
    done = run_cli(cluster, "--report", str(tmp_path / "v.json"))
    assert done.returncode == 2 and "a run is still active (gate-us-master)" in done.stderr
    assert not (cluster / "created").exists()


def test_without_kubectl_it_says_so(tmp_path: Path) -> None:
    env = os.environ | {"PATH": str(tmp_path)}
    done = subprocess.run(
        [str(LLMFLEET), "loadtest", "--in-cluster", NAME, "--report", str(tmp_path / "v.json")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2 and "needs kubectl on PATH" in done.stderr


def test_the_wait_is_bounded_by_the_jobs_deadline(cluster: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{cluster.parent / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KUBE_DIR", str(cluster))
    monkeypatch.setenv("FAKE_KUBE_STATE", "Running")
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    done = run_in_cluster(NAME, Kubectl("llmfleet-loadtest"), sleep=sleep, clock=lambda: now[0], run_id="r1")
    deadline = json.loads((cluster / "jobs" / f"{NAME}-master.json").read_text())["spec"]["activeDeadlineSeconds"]
    assert done.problem is not None and "did not finish" in done.problem
    assert deadline + incluster.WAIT_MARGIN_S <= now[0] <= deadline + incluster.WAIT_MARGIN_S + incluster.POLL_S


def test_helpers() -> None:
    assert finished({"status": {"conditions": [{"type": "Failed", "status": "True"}]}}) == "Failed"
    assert finished({"status": {"active": 1}}) is None
    assert verdict_from_log("no json here {") is None
    assert verdict_from_log(master_log(verdict(3)) + master_log(verdict(0)))["exit_code"] == 0  # the last one
    job = rerun_job({"metadata": {"name": "a", "annotations": {"pulumi.com/x": "1"}}, "spec": {"template": {}}}, "r")
    assert job["metadata"] == {"name": "a-r", "annotations": {}, "labels": {RUN_LABEL: "r"}}
