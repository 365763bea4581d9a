"""LoadGenerator: the in-cluster Locust master and workers, rendered under the offline engine's
RecordingMocks; every object must pass the schema validation the API server applies (infra.render.validate)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import pytest
from support.loadgen import IMAGE, render

from llmfleet.components import pins
from llmfleet.components.loadgen import SLO_PATH, SUITES
from llmfleet.infra.commands.loadtest import SINGLE_PROCESS_SUITES
from llmfleet.infra.render.validate import validate_manifest
from llmfleet.loadtests.run import suites

ROOT = Path(__file__).resolve().parent.parent


def pod(objects: dict[str, dict[str, Any]], job: str) -> dict[str, Any]:
    return objects[f"Job/{job}"]["spec"]["template"]["spec"]


def test_every_object_validates_and_is_parented_by_the_component() -> None:
    resources, objects = render(api_key="sk-tenant", headers=["x-llmfleet-revision: 5ca1ab1e"])
    assert set(objects) == {
        "ConfigMap/gate-us-slo",
        "Secret/gate-us-api-key",
        "Service/gate-us-master",
        "Job/gate-us-master",
        "Job/gate-us-workers",
    }
    problems = [p for manifest in objects.values() for p in validate_manifest(manifest)]
    assert problems == []
    component = next(r for r in resources if r.type == "llmfleet:loadgen:LoadGenerator")
    children = [r for r in resources if r is not component]
    assert all(r.parent == component.urn for r in children), [r.urn for r in children if r.parent != component.urn]
    assert all(r.name.startswith("gate-us-") for r in children)


def test_master_and_workers_run_the_suite_distributed_with_the_gate_on_the_master() -> None:
    _, objects = render(headers=["x-llmfleet-revision: 5ca1ab1e"])
    master = pod(objects, "gate-us-master")["containers"][0]
    worker = pod(objects, "gate-us-workers")["containers"][0]
    assert master["image"] == worker["image"] == IMAGE
    m = master["args"]
    assert m[:2] == ["-f", "/src/loadtests/suites/steady.py"]
    assert m[m.index("--expect-workers") + 1] == "8" and "--master" in m and "--headless" in m
    assert m[m.index("-u") + 1] == "512" and m[m.index("-t") + 1] == "300s"
    assert m[m.index("--llm-slo") + 1] == SLO_PATH and m[m.index("--llm-report") + 1] == "/dev/stdout"
    assert m[m.index("--llm-header") + 1] == "x-llmfleet-revision: 5ca1ab1e"
    assert m[m.index("--host") + 1] == "http://envoy-llmfleet.envoy-gateway-system:80"
    w = worker["args"]
    assert "--worker" in w and w[w.index("--master-host") + 1] == "gate-us-master"
    assert objects["Service/gate-us-master"]["spec"]["ports"][0]["port"] == 5557
    assert objects["Service/gate-us-master"]["spec"]["selector"] == {
        "app.kubernetes.io/instance": "gate-us",
        "app.kubernetes.io/component": "master",
    }
    workers = objects["Job/gate-us-workers"]["spec"]
    assert (workers["parallelism"], workers["completions"]) == (8, 8)
    assert worker["resources"]["requests"] == worker["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    # one verdict per run: no retry of the master; the deadline covers start, run and bounded drain
    master_job = objects["Job/gate-us-master"]["spec"]
    assert master_job["backoffLimit"] == 0
    assert master_job["activeDeadlineSeconds"] >= 300 + 60  # the run and the 2 x 30 s request timeout
    slo_volume = next(v for v in pod(objects, "gate-us-master")["volumes"] if v["name"] == "slo")
    assert slo_volume["configMap"]["name"] == "gate-us-slo"
    assert '"ttft_p95_ms": 800' in objects["ConfigMap/gate-us-slo"]["data"]["slo.json"]


def test_generators_run_unprivileged() -> None:
    _, objects = render()
    for job in ("gate-us-master", "gate-us-workers"):
        spec = pod(objects, job)
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["automountServiceAccountToken"] is False
        assert spec["containers"][0]["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        }


def test_the_api_key_stays_secret() -> None:
    resources, objects = render(api_key="sk-tenant")
    secret = next(r for r in resources if r.name == "gate-us-api-key")
    assert any(path[0] == "stringData" for path in secret.secret_paths), secret.secret_paths
    assert "sk-tenant" not in str(objects)  # redacted in every rendered object
    env = pod(objects, "gate-us-master")["containers"][0]["env"]
    assert {
        "name": "LLM_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "gate-us-api-key", "key": "LLM_API_KEY"}},
    } in env


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"suite": "gateway"}, "suite"),
        ({"workers": 0}, "workers"),
        ({"suite": "rate"}, "rate"),
        ({"rate": 5.0}, "rate"),
        ({"slo": {}}, "slo"),
    ],
)
def test_bad_arguments_name_the_field_before_any_resource(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"LoadGeneratorArgs.{field}"):
        render(**change)


def test_the_distributed_suites_are_the_projects_and_the_image_ships_them_on_the_pinned_locust() -> None:
    assert set(SUITES) == set(suites()) - SINGLE_PROCESS_SUITES - {"failover"}
    dockerfile = (ROOT / "loadtests" / "Dockerfile").read_text()
    assert "ARG LOCUST_IMAGE\nFROM ${LOCUST_IMAGE}" in dockerfile  # the version lives in components/pins.yaml only
    assert "COPY loadtests /src/loadtests" in dockerfile and "USER 1000" in dockerfile
    assert pins.image("locust") == "docker.io/locustio/locust:2.47.0"
    # the installed version from its metadata: importing locust here would run its gevent monkey-patching
    # inside pytest, whose other threads then deadlock on the import lock (it hung the suite)
    installed = importlib.metadata.version("locust")
    assert pins.table().get(pins.Kind.IMAGE, "locust").version == installed, "the image runs what we test"
