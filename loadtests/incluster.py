"""A gate run on a deployed `LoadGenerator` (components/loadgen.py): `llmfleet loadtest --in-cluster NAME`.

`pulumi up` creates the LoadGenerator's two Jobs (master and workers) and so runs its suite once. A
later gate (a rollout step, an operator) runs it again without Pulumi: this module reads the deployed
Jobs with `kubectl`, creates copies named `<job>-<run id>` (same image, suite, users, SLO ConfigMap,
API-key Secret, master Service: the deployed component stays the one definition of the run), waits
for the master Job to finish, bounded by its own `activeDeadlineSeconds`, and reads the verdict JSON
the master wrote to its log (`--llm-report /dev/stdout`). The verdict and exit codes are the ones a
local run gives: 0 pass, 3 breached, 4 invalid (also when the run did not finish or wrote no verdict).

kubectl, not the Kubernetes Python client: it is what an operator already has configured (contexts,
exec credential plugins for EKS/GKE), and no new dependency comes with it.
"""

from __future__ import annotations

import copy
import json
import math
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

RUN_LABEL = "llmfleet.dev/run"
"""On every Job and pod a rerun creates: which run it belongs to."""
POLL_S = 3.0
WAIT_MARGIN_S = 120.0
"""Beyond the master Job's activeDeadlineSeconds: time to schedule pods and pull the image is not in it."""
KUBECTL_TIMEOUT_S = 60.0
TTL_AFTER_FINISHED_S = 86_400
"""A rerun's Jobs (and their pods, with the master's log) are kept a day, then Kubernetes deletes them."""
_SERVER_SET_LABELS = (
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
    "job-name",
    "batch.kubernetes.io/job-name",
)
_SERVER_SET_METADATA = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "ownerReferences")


class InClusterError(ValueError):
    """The in-cluster run cannot start (no kubectl, no such LoadGenerator, a run already active): exit 2."""


@dataclass(frozen=True)
class Kubectl:
    """`kubectl` with the namespace and, if given, the context of every call."""

    namespace: str
    context: str | None = None
    executable: str = "kubectl"

    def command(self, *args: str) -> list[str]:
        context = ["--context", self.context] if self.context else []
        return [self.executable, *context, "-n", self.namespace, *args]

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        try:
            done = subprocess.run(
                self.command(*args),
                input=stdin,
                capture_output=True,
                text=True,
                timeout=KUBECTL_TIMEOUT_S,
                check=False,
            )
        except FileNotFoundError:
            raise InClusterError(f"{self.executable} not found: install kubectl and configure the cluster") from None
        except subprocess.TimeoutExpired:
            raise InClusterError(f"kubectl {' '.join(args)} did not answer within {KUBECTL_TIMEOUT_S:g}s") from None
        if check and done.returncode != 0:
            raise InClusterError(f"kubectl {' '.join(args[:3])} failed: {done.stderr.strip()[-400:]}")
        return done.stdout

    def job(self, name: str) -> dict[str, Any] | None:
        out = self.run("get", "job", name, "-o", "json", "--ignore-not-found")
        return cast(dict[str, Any], json.loads(out)) if out.strip() else None


def find_kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        raise InClusterError("--in-cluster needs kubectl on PATH, configured for the cluster (or give --host)")
    return path


def new_run_id() -> str:
    """UTC time and a random suffix: lower case, short enough for a Job name (and its pods' label)."""
    return f"{time.strftime('%m%d%H%M%S', time.gmtime())}{secrets.token_hex(2)}"


def rerun_job(deployed: dict[str, Any], run_id: str) -> dict[str, Any]:
    """A copy of a deployed Job to create again: new name, the run's label, what the server set removed."""
    job = copy.deepcopy(deployed)
    job.pop("status", None)
    metadata = job["metadata"]
    for key in _SERVER_SET_METADATA:
        metadata.pop(key, None)
    metadata["name"] = f"{metadata['name']}-{run_id}"
    annotations = _dict(metadata.get("annotations"))
    metadata["annotations"] = {k: v for k, v in annotations.items() if not k.startswith(("kubectl.", "pulumi."))}
    metadata["labels"] = {**_dict(metadata.get("labels")), RUN_LABEL: run_id}
    spec = job["spec"]
    spec.pop("selector", None)  # the server generates a new one (and the pod labels it matches)
    spec.pop("manualSelector", None)
    spec["ttlSecondsAfterFinished"] = TTL_AFTER_FINISHED_S
    template_meta = spec["template"].setdefault("metadata", {})
    labels = {k: v for k, v in _dict(template_meta.get("labels")).items() if k not in _SERVER_SET_LABELS}
    template_meta["labels"] = {**labels, RUN_LABEL: run_id}
    return job


@dataclass(frozen=True)
class Overrides:
    """What a run changes from the deployed Jobs (a rollout step: the model, the revision header, the load).

    The deployed LoadGenerator stays the one definition of how the suite runs (image, workers, SLO,
    API key, host); a gate that needs another model or revision header per run passes it here, and the
    copies carry it in their args. None keeps the deployed value."""

    model: str | None = None
    headers: Sequence[str] | None = None
    """Replace every `--llm-header` of the master (e.g. `x-llmfleet-revision: <id>`); () removes them."""
    users: int | None = None
    """Also the spawn rate (all users start at once, as the LoadGenerator renders it)."""
    duration_s: float | None = None
    warmup_s: float | None = None
    suite_file: str | None = None
    """`-f` of master and workers, a suite inside the image (components/loadgen.py SUITES_DIR)."""


def _set_flag(args: list[str], flag: str, value: str) -> None:
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]


def _container_args(job: dict[str, Any]) -> list[str]:
    return job["spec"]["template"]["spec"]["containers"][0]["args"]


def apply_overrides(master: dict[str, Any], workers: dict[str, Any], overrides: Overrides) -> None:
    """Change the copied Jobs' container args as `overrides` says (in place)."""
    args = _container_args(master)
    if overrides.model is not None:
        _set_flag(args, "--llm-model", overrides.model)
    if overrides.users is not None:
        _set_flag(args, "-u", str(overrides.users))
        _set_flag(args, "-r", str(overrides.users))
    if overrides.duration_s is not None:
        old = _duration_s(args)
        _set_flag(args, "-t", f"{overrides.duration_s:g}s")
        # A longer run needs a longer deadline: the deployed one was sized for the deployed duration.
        longer = math.ceil(max(0.0, overrides.duration_s - old))
        for job in (master, workers):
            if job["spec"].get("activeDeadlineSeconds"):
                job["spec"]["activeDeadlineSeconds"] += longer
    if overrides.warmup_s is not None:
        _set_flag(args, "--llm-warmup", f"{overrides.warmup_s:g}")
    if overrides.headers is not None:
        kept: list[str] = []
        pairs = iter(args)
        for arg in pairs:
            if arg == "--llm-header":
                next(pairs, None)
            else:
                kept.append(arg)
        for header in overrides.headers:
            kept += ["--llm-header", header]
        args[:] = kept
    if overrides.suite_file is not None:
        for job in (master, workers):
            _set_flag(_container_args(job), "-f", overrides.suite_file)


def _duration_s(args: list[str]) -> float:
    if "-t" not in args:
        return 0.0
    text = args[args.index("-t") + 1]
    return float(text[:-1]) if text.endswith("s") else float(text)


def finished(job: dict[str, Any]) -> str | None:
    """'Complete' or 'Failed' once the Job has ended (a gate exit code 3 or 4 fails the master's pod)."""
    for condition in _list(_dict(job.get("status")).get("conditions")):
        state = _dict(condition)
        if state.get("type") in ("Complete", "Failed") and state.get("status") == "True":
            return str(state["type"])
    return None


def _dict(value: object) -> dict[str, Any]:
    return cast(dict[str, Any], value) if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return cast(list[Any], value) if isinstance(value, list) else []


def verdict_from_log(log: str) -> dict[str, Any] | None:
    """The last verdict JSON object in the master's log (Locust's summary tables are around it)."""
    decoder = json.JSONDecoder()
    found: dict[str, Any] | None = None
    index = log.find("{")
    while index >= 0:
        try:
            value, end = decoder.raw_decode(log, index)
        except ValueError:
            index = log.find("{", index + 1)
            continue
        if isinstance(value, dict) and {"exit_code", "valid", "checks"} <= value.keys():
            found = cast(dict[str, Any], value)
        index = log.find("{", end)
    return found


@dataclass
class InClusterRun:
    """What a rerun produced: the verdict JSON (None: none written) and why it has none."""

    run_id: str
    master_job: str
    verdict: dict[str, Any] | None
    log: str
    problem: str | None = None


def run_in_cluster(
    name: str,
    kubectl: Kubectl,
    *,
    run_id: str | None = None,
    overrides: Overrides | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    say: Callable[[str], None] = lambda _: None,
) -> InClusterRun:
    """Run the deployed LoadGenerator `name` again and return its verdict (see the module docstring)."""
    master = kubectl.job(f"{name}-master")
    workers = kubectl.job(f"{name}-workers")
    if master is None or workers is None:
        raise InClusterError(
            f"--in-cluster {name}: no LoadGenerator Jobs {name}-master / {name}-workers in namespace "
            f"{kubectl.namespace} (deploy a LoadGenerator named {name}, or give --namespace)"
        )
    busy = [job["metadata"]["name"] for job in _jobs_of(kubectl, name) if job.get("status", {}).get("active")]
    if busy:
        raise InClusterError(f"--in-cluster {name}: a run is still active ({', '.join(busy)}); wait for it to end")
    run_id = run_id or new_run_id()
    manifests = [rerun_job(master, run_id), rerun_job(workers, run_id)]
    if overrides is not None:
        apply_overrides(manifests[0], manifests[1], overrides)
    master_job = manifests[0]["metadata"]["name"]
    kubectl.run(
        "create", "-f", "-", "-o", "name", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests})
    )
    say(f"in-cluster run {run_id}: created job/{master_job} and job/{manifests[1]['metadata']['name']}")
    deadline = clock() + float(manifests[0]["spec"].get("activeDeadlineSeconds") or 3600) + WAIT_MARGIN_S
    state: str | None = None
    while state is None and clock() < deadline:
        sleep(POLL_S)
        job = kubectl.job(master_job)
        state = finished(job) if job is not None else "Failed"
    log = kubectl.run("logs", f"job/{master_job}", "--tail=-1", check=False)
    verdict = verdict_from_log(log)
    problem = None
    if state is None:
        problem = f"job/{master_job} did not finish within its deadline and {WAIT_MARGIN_S:g}s"
    elif verdict is None:
        problem = f"job/{master_job} ended ({state}) without a verdict in its log (kubectl logs job/{master_job})"
    return InClusterRun(run_id=run_id, master_job=master_job, verdict=verdict, log=log, problem=problem)


def _jobs_of(kubectl: Kubectl, name: str) -> Sequence[dict[str, Any]]:
    out = kubectl.run("get", "jobs", "-l", f"app.kubernetes.io/instance={name}", "-o", "json")
    return cast(list[dict[str, Any]], json.loads(out).get("items", []))
