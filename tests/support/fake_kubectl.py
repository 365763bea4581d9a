"""A stand-in for kubectl on PATH, for tests/test_incluster.py: it answers the few commands
loadtests/incluster.py runs from a folder of Job JSON files (FAKE_KUBE_DIR), as an API server would
(server-set fields added on create), and records every call in calls.jsonl.

FAKE_KUBE_STATE: the state a created master Job reaches when read (Complete, Failed or Running).
FAKE_KUBE_DIR/log.txt: what `kubectl logs` prints.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path

STATE = Path(os.environ["FAKE_KUBE_DIR"])
NAMESPACE = "llmfleet-loadtest"
"""The only namespace holding anything."""


def server_side(job: dict, active: bool) -> dict:
    uid = str(uuid.uuid4())
    job["metadata"] |= {"uid": uid, "resourceVersion": "1", "creationTimestamp": "2026-12-02T04:00:00Z"}
    job["spec"]["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    labels = job["spec"]["template"].setdefault("metadata", {}).setdefault("labels", {})
    labels |= {"batch.kubernetes.io/controller-uid": uid, "job-name": job["metadata"]["name"]}
    job["status"] = {"active": 1} if active else {"succeeded": 1}
    return job


def main(argv: list[str]) -> int:
    with (STATE / "calls.jsonl").open("a") as calls:
        calls.write(json.dumps(argv) + "\n")
    args = list(argv)
    if "--context" in args:
        del args[args.index("--context") : args.index("--context") + 2]
    namespace = "default"
    if "-n" in args:
        namespace = args[args.index("-n") + 1]
        del args[args.index("-n") : args.index("-n") + 2]
    jobs = STATE / "jobs" if namespace == NAMESPACE else STATE / "no-such-namespace"
    if args[:2] == ["get", "job"]:
        path = jobs / f"{args[2]}.json"
        if not path.exists():
            return 0  # --ignore-not-found
        job = json.loads(path.read_text())
        rerun = "llmfleet.dev/run" in job["metadata"].get("labels", {})
        if rerun and "-master-" in job["metadata"]["name"]:
            state = os.environ.get("FAKE_KUBE_STATE", "Complete")
            if state != "Running":
                job["status"] = {"conditions": [{"type": state, "status": "True"}]}
        print(json.dumps(job))
        return 0
    if args[:2] == ["get", "jobs"]:
        print(json.dumps({"items": [json.loads(p.read_text()) for p in sorted(jobs.glob("*.json"))]}))
        return 0
    if args[:3] == ["create", "-f", "-"]:
        created = json.loads(sys.stdin.read())
        for item in created["items"]:
            (STATE / "created").mkdir(exist_ok=True)
            (STATE / "created" / f"{item['metadata']['name']}.json").write_text(json.dumps(item))
            job = server_side(json.loads(json.dumps(item)), active=False)
            (jobs / f"{item['metadata']['name']}.json").write_text(json.dumps(job))
            print(f"job.batch/{item['metadata']['name']}")
        return 0
    if args[:1] == ["logs"]:
        log = STATE / "log.txt"
        print(log.read_text() if log.exists() else "")
        return 0
    print(f"fake kubectl: unexpected {argv}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
