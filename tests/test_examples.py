"""examples/: a user's own Pulumi program importing llmfleet's components, rendered offline.

The example has its own package named `components` beside llmfleet's (installed as
`llmfleet.components`); the program is run as Pulumi runs it (its folder first on sys.path), under the
offline engine's mocks, and every object it would create is validated against its schema.
"""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmfleet.components import pins
from llmfleet.infra.config import PROJECT_ROOT
from llmfleet.infra.render.offline import OfflineRun, run_project
from llmfleet.infra.render.validate import validate_manifest

EXAMPLE = PROJECT_ROOT / "examples" / "existing-cluster"


@pytest.fixture(scope="module")
def example() -> Iterator[tuple[OfflineRun, str | None]]:
    before = set(sys.modules)
    try:
        run = run_project(EXAMPLE, project="llmfleet-example")
        consumer = sys.modules.get("components")
        yield run, getattr(consumer, "__file__", None)
    finally:
        for name in set(sys.modules) - before:  # the example's `components` must not leak into other tests
            if name == "components" or name.startswith("components."):
                del sys.modules[name]


def test_the_example_is_a_pulumi_project_of_its_own() -> None:
    project = (EXAMPLE / "Pulumi.yaml").read_text()
    assert "name: llmfleet-example" in project
    assert (EXAMPLE / "__main__.py").is_file()
    assert "-e ../.." in (EXAMPLE / "requirements.txt").read_text()


def test_its_own_components_package_and_ours_both_load(example: tuple[OfflineRun, str | None]) -> None:
    run, consumer_file = example
    assert consumer_file is not None and Path(consumer_file).is_relative_to(EXAMPLE / "components")
    types = {r.type for r in run.resources}
    assert "example:team:TeamNamespace" in types  # the user's component, from its `components`
    assert {"llmfleet:inference:InferenceService", "llmfleet:keda:Keda"} <= types  # ours, from llmfleet.components
    assert run.outputs["plan"]["engine"] == "llama.cpp"


def test_every_object_validates_and_uses_the_users_provider(example: tuple[OfflineRun, str | None]) -> None:
    run, _ = example
    objects = run.kubernetes_objects()
    kinds = {manifest["kind"] for _, manifest in objects}
    assert {"Namespace", "Deployment", "Service", "ScaledObject"} <= kinds
    problems = [p for _, manifest in objects for p in validate_manifest(manifest)]
    assert problems == []
    provider = next(r for r in run.resources if r.type == "pulumi:providers:kubernetes")
    assert provider.inputs.get("context") == "kind-llmfleet"
    assert all(r.provider == provider.urn for r in run.resources if r.custom and r.type.startswith("kubernetes:"))


def test_the_service_lands_in_the_users_namespace(example: tuple[OfflineRun, str | None]) -> None:
    run, _ = example
    deployment = next(m for _, m in run.kubernetes_objects() if m["kind"] == "Deployment")
    assert deployment["metadata"]["namespace"] == "assistants"
    release = next(r for _, r in run.helm_releases())
    assert release["version"] == pins.chart("keda").version
