"""A fake cluster for the in-cluster load generator's tests: the LoadGenerator's deployed Jobs as the API
server returns them, a master log with a verdict, and tests/support/fake_kubectl.py on PATH as `kubectl`."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from typing import Any

from support.loadgen import render

FAKE = Path(__file__).resolve().parent / "fake_kubectl.py"
NAME = "gate-us"
"""The LoadGenerator support.loadgen renders."""


def verdict(exit_code: int) -> dict[str, Any]:
    breach = exit_code == 3
    check = {"metric": "ttft_ms", "stat": "p95", "op": "<=", "threshold": 800.0, "observed": 900.0 if breach else 300.0}
    return {
        "exit_code": exit_code,
        "valid": exit_code != 4,
        "reasons": ["the load generator was starved"] if exit_code == 4 else [],
        "checks": [check | {"pass": not breach, "n": 100, "applicable": True}],
        "metrics": {"n": 100},
    }


def master_log(body: dict[str, Any]) -> str:
    table = "Type     Name   # reqs\n--------|------|------\nPOST     chat   100 {not json}\n"
    return f"[2026-12-02 04:00:00] master/INFO/locust.main: Starting Locust\n{json.dumps(body, indent=2)}\n{table}"


def deployed_cluster(tmp_path: Path) -> Path:
    """The fake cluster's state folder (FAKE_KUBE_DIR); `kubectl` is in its sibling `bin`."""
    state = tmp_path / "cluster"
    (state / "jobs").mkdir(parents=True)
    _, objects = render()
    for job in (f"{NAME}-master", f"{NAME}-workers"):
        manifest = objects[f"Job/{job}"]
        manifest["metadata"]["uid"] = "0000"
        manifest["spec"]["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": "0000"}}
        labels = manifest["spec"]["template"]["metadata"]["labels"]
        labels |= {"batch.kubernetes.io/controller-uid": "0000", "job-name": job}
        manifest["status"] = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
        (state / "jobs" / f"{job}.json").write_text(json.dumps(manifest))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(f"#!{sys.executable}\nimport runpy, sys\nrunpy.run_path({str(FAKE)!r}, run_name='__main__')\n")
    kubectl.chmod(kubectl.stat().st_mode | stat.S_IEXEC)
    return state
