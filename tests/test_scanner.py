"""A real scanner over what `pulumi up` would apply: checkov (kubernetes framework) on every shipped stack's render.

Each stack in stacks/ is rendered once; checkov scans the whole output directory once, offline
(`--skip-download`: no Prisma Cloud guidelines, so no network). Every failed check must be explained in
tests/checkov_allowlist.yaml (check + subject + reason); a new finding fails, and so does an entry that
matches nothing any more. checkov lives in its own virtualenv (its pins, e.g. packaging<24, conflict with
the project's): `.ci/run` installs the listed version into .tools/checkov; without it these tests skip,
except in CI (env CI set), where a missing checkov is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.stacks import ShippedRun

from llmfleet.infra.config import PROJECT_ROOT, STACKS_DIR
from llmfleet.infra.render.writer import write_render

SHIPPED_STACKS = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in STACKS_DIR.glob("Pulumi.*.yaml"))
ALLOWLIST = Path(__file__).with_name("checkov_allowlist.yaml")
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"}


def checkov() -> str:
    found = os.environ.get("LLMFLEET_CHECKOV") or (
        str(PROJECT_ROOT / ".tools/checkov/bin/checkov")
        if (PROJECT_ROOT / ".tools/checkov/bin/checkov").exists()
        else shutil.which("checkov")
    )
    if found is None:
        message = "checkov is not installed: .ci/run installs it into .tools/checkov (its own virtualenv)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def allowlist() -> dict[str, Any]:
    return yaml.safe_load(ALLOWLIST.read_text())


@dataclass(frozen=True)
class Finding:
    check: str
    name: str
    subject: str
    where: str
    """The stack and file, for the failure message."""


def image_repository(image: str) -> str:
    """`vllm/vllm-openai:v0.27.1` -> `vllm/vllm-openai`; a registry port (`host:5000/x:y`) is kept."""
    image = image.split("@", 1)[0]
    head, _, tail = image.rpartition(":")
    return head if head and "/" not in tail else image


def subject_of(manifest: dict[str, Any]) -> str:
    """`<Kind> <image repositories>` for a workload, `<Kind> <namespace>/<name>` for anything else."""
    kind = manifest["kind"]
    if kind in WORKLOAD_KINDS:
        spec = manifest["spec"]
        pod = spec.get("jobTemplate", {}).get("spec", spec).get("template", {}).get("spec", spec)
        images = sorted({image_repository(c["image"]) for c in pod.get("containers", [])})
        return f"{kind} {' '.join(images)}"
    metadata = manifest["metadata"]
    return f"{kind} {metadata.get('namespace', '')}/{metadata['name']}"


@dataclass(frozen=True)
class Scan:
    summary: dict[str, Any]
    findings: list[Finding]
    root: Path


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory, shipped_run: ShippedRun) -> Iterator[Scan]:
    binary = checkov()
    wanted = str(allowlist()["checkov_version"])
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=120).stdout.strip()
    assert version == wanted, f"checkov {version} is installed, the allow-list is for {wanted}: install {wanted}"
    root = tmp_path_factory.mktemp("scan")
    for stack in SHIPPED_STACKS:
        write_render(shipped_run(stack), root / stack)
    result = subprocess.run(
        [binary, "-d", str(root), "--framework", "kubernetes", "-o", "json", "--quiet", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    assert result.stdout.strip(), f"checkov wrote no report (exit {result.returncode}): {result.stderr[-2000:]}"
    reports = json.loads(result.stdout)
    (report,) = [r for r in (reports if isinstance(reports, list) else [reports]) if r["check_type"] == "kubernetes"]
    findings: list[Finding] = []
    for failed in report["results"]["failed_checks"]:
        path = root / failed["file_path"].lstrip("/")
        manifest = yaml.safe_load(path.read_text())
        findings.append(Finding(failed["check_id"], failed["check_name"], subject_of(manifest), failed["file_path"]))
    yield Scan(report["summary"], findings, root)


def test_checkov_scanned_every_rendered_object(scan: Scan) -> None:
    objects = [p for p in scan.root.rglob("*.yaml") if not p.name.startswith("helmrelease-")]
    assert scan.summary["parsing_errors"] == 0
    assert scan.summary["resource_count"] >= len(objects) > 0, (scan.summary, len(objects))
    assert scan.summary["passed"] > 0


def test_every_finding_is_in_the_allowlist_with_a_reason(scan: Scan) -> None:
    entries = allowlist()["findings"]
    assert all(str(e.get("reason", "")).strip() for e in entries), "every allow-list entry needs a reason"
    allowed = {(e["check"], e["subject"]) for e in entries}
    new = sorted(
        {
            f"{f.check} ({f.name}) on {f.subject}: {f.where}"
            for f in scan.findings
            if (f.check, f.subject) not in allowed
        }
    )
    assert new == [], (
        "checkov findings not in tests/checkov_allowlist.yaml (fix them, or list them with a reason):\n  "
        + "\n  ".join(new)
    )


def test_no_allowlist_entry_is_stale(scan: Scan) -> None:
    seen = {(f.check, f.subject) for f in scan.findings}
    stale = [
        f"{e['check']} on {e['subject']}" for e in allowlist()["findings"] if (e["check"], e["subject"]) not in seen
    ]
    assert stale == [], f"allow-list entries no shipped stack needs any more: remove them: {stale}"


def test_the_subject_of_a_finding_is_its_image_or_its_name() -> None:
    deployment = {
        "kind": "Deployment",
        "metadata": {"name": "chat"},
        "spec": {"template": {"spec": {"containers": [{"image": "vllm/vllm-openai:v0.27.1"}]}}},
    }
    assert subject_of(deployment) == "Deployment vllm/vllm-openai"
    assert (
        image_repository("registry.example.com:5000/team/redis:8.2@sha256:abc")
        == "registry.example.com:5000/team/redis"
    )
    assert image_repository("redis") == "redis"
    policy = {"kind": "NetworkPolicy", "metadata": {"name": "x", "namespace": "llmfleet"}}
    assert subject_of(policy) == "NetworkPolicy llmfleet/x"
