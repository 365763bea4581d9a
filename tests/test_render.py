"""`llmfleet render`, the issue's offline proof: each shipped stack renders, and every object it would
apply validates against its schema (core kinds: kubernetes-validate; custom resources: infra/render/crds/).

One render per stack (module-scoped); the tests read the files it wrote, as a user would.
"""

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.pin_checks import (
    metric_names,
    unknown_engine_flags,
    unknown_llamacpp_metrics,
    unknown_vllm_metrics,
    unpinned_eks_addons,
    unpinned_images,
    unpinned_releases,
)
from support.stacks import ShippedRun, StackWriter
from typer.testing import CliRunner

from llmfleet.components import pins
from llmfleet.infra.cli import app
from llmfleet.infra.config import STACKS_DIR
from llmfleet.infra.render.offline import REDACTED, SECRET_PLACEHOLDER, OfflineRun, run_program
from llmfleet.infra.render.validate import is_custom_kind, validate_manifest
from llmfleet.infra.render.writer import GLOBAL_DIR, INDEX_FILE, OUTPUTS_FILE, RenderSummary, write_render

SHIPPED_STACKS = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in STACKS_DIR.glob("Pulumi.*.yaml"))


class Rendered:
    """One stack's run, the render of it, and the files it wrote, parsed."""

    def __init__(self, run: OfflineRun, out: Path, summary: RenderSummary) -> None:
        self.run, self.out, self.summary = run, out, summary
        self.files = sorted(out.rglob("*.yaml"))
        parsed = {p: yaml.load(p.read_text(), Loader=yaml.CSafeLoader) for p in self.files}
        self.objects = {p: doc for p, doc in parsed.items() if not p.name.startswith("helmrelease-")}
        self.releases = {p: doc for p, doc in parsed.items() if p.name.startswith("helmrelease-")}
        self.index: list[dict[str, Any]] = json.loads((out / INDEX_FILE).read_text())


def render(run: OfflineRun, out: Path) -> Rendered:
    return Rendered(run, out, write_render(run, out))


@pytest.fixture(scope="module", params=SHIPPED_STACKS)
def rendered(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, shipped_run: ShippedRun
) -> Rendered:
    stack: str = request.param
    return render(shipped_run(stack), tmp_path_factory.mktemp(f"render-{stack}"))


def test_the_shipped_stacks_are_the_ones_documented() -> None:
    assert {"dev", "prod", "local"} <= set(SHIPPED_STACKS)


def test_every_rendered_object_validates_against_its_schema(rendered: Rendered) -> None:
    assert rendered.objects, f"stack {rendered.run.stack} rendered no Kubernetes object"
    problems = [problem for obj in rendered.objects.values() for problem in validate_manifest(obj)]
    assert problems == []
    assert rendered.summary.problems == [], "the render's own check (on the unredacted objects) agrees"


def placed(region: str | None, obj: dict[str, Any]) -> tuple[str, str, str, str, str]:
    """An object's identity in a fleet: its region's cluster, then apiVersion, kind, namespace, name."""
    metadata = obj["metadata"]
    return (region or GLOBAL_DIR, obj["apiVersion"], obj["kind"], metadata.get("namespace", ""), metadata["name"])


def test_every_kubernetes_resource_is_rendered_once_under_its_region(rendered: Rendered) -> None:
    run = rendered.run
    recorded = sorted(placed(run.region_of(resource), m) for resource, m in run.kubernetes_objects())
    written = sorted(placed(path.parent.name, obj) for path, obj in rendered.objects.items())
    assert written == recorded
    assert len(rendered.releases) == len(run.helm_releases())
    deployments = {region for region, _, kind, _, _ in written if kind == "Deployment"}
    assert deployments == set(run.region_keys), "a model server in each region"


def test_custom_resources_are_rendered_and_checked_against_the_vendored_crds(rendered: Rendered) -> None:
    custom = [obj for obj in rendered.objects.values() if is_custom_kind(obj["apiVersion"], obj["kind"])]
    assert {obj["kind"] for obj in custom} >= {"ScaledObject"}, "every stack autoscales with KEDA"
    assert rendered.summary.custom_resources == len(custom)


def test_helm_releases_name_a_pinned_chart(rendered: Rendered) -> None:
    assert rendered.releases, "KEDA is a Helm release in every stack"
    for path, release in rendered.releases.items():
        assert release["chart"] and release["repository"], path
        assert release["repository"].startswith(("https://", "oci://")), path
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", str(release["version"])), f"{path}: pin an exact chart version"
        assert isinstance(release["values"], dict), path


def test_every_release_image_and_eks_addon_is_a_row_of_the_pin_table(rendered: Rendered) -> None:
    """components/pins.yaml is the one place a version is chosen: nothing rendered escapes it."""
    assert unpinned_releases(rendered.releases.values()) == []
    assert unpinned_images(rendered.objects.values()) == []
    assert unpinned_eks_addons(rendered.index) == []
    images = [
        c["image"]
        for obj in rendered.objects.values()
        if obj["kind"] == "Deployment"
        for c in obj["spec"]["template"]["spec"]["containers"]
    ]
    assert images, "every stack runs a model server: the image check saw containers"


def test_engine_flags_and_vllm_metric_names_are_the_pinned_releases(rendered: Rendered) -> None:
    """Every engine flag a model server starts with, and every vLLM metric a query, rule or dashboard
    reads, exists in the pinned engine release (components/inference/data/, read from its source)."""
    assert unknown_engine_flags(rendered.objects.values()) == []
    text = _all_text(rendered.out)
    assert unknown_vllm_metrics(metric_names(text, "vllm:"), pins.engine("vllm")) == []
    assert unknown_llamacpp_metrics(metric_names(text, "llamacpp:"), pins.engine("llama.cpp")) == []


def test_helm_releases_roll_back_on_failure_and_time_out(rendered: Rendered) -> None:
    """A failed install must not leave a half-installed controller behind, nor wait forever for one."""
    releases = [resource for resource, _ in rendered.run.helm_releases()]
    assert releases
    for resource in releases:
        assert resource.inputs.get("atomic") is True, resource.name
        assert int(resource.inputs.get("timeout", 0)) >= 600, resource.name


def test_resources_json_lists_every_resource_with_its_parent_and_provider(rendered: Rendered) -> None:
    index = rendered.index
    assert [entry["urn"] for entry in index] == sorted(r.urn for r in rendered.run.resources)
    assert all({"type", "name", "parent", "provider", "inputs"} <= set(entry) for entry in index)
    stack = rendered.run.stack
    urns = {entry["urn"] for entry in index} | {f"urn:pulumi:{stack}::llmfleet::pulumi:pulumi:Stack::llmfleet-{stack}"}
    for entry in index:
        assert entry["parent"] in urns, f"{entry['urn']}: parent {entry['parent']} is not a resource of the stack"
        in_region = entry["region"] is not None and entry["custom"]
        if in_region and not entry["type"].startswith("pulumi:providers:"):
            assert entry["provider"] in urns, f"{entry['urn']}: a regional resource takes its region's provider"


def test_stack_outputs_are_written(rendered: Rendered) -> None:
    outputs = json.loads((rendered.out / OUTPUTS_FILE).read_text())
    assert set(outputs) == set(rendered.run.outputs)


def _secret_values(run: OfflineRun) -> set[str]:
    """Every string the program marked secret, read at its recorded path in the unredacted inputs."""
    found: set[str] = set()

    def leaves(value: Any) -> Iterator[str]:
        if isinstance(value, dict):
            for child in value.values():
                yield from leaves(child)
        elif isinstance(value, list):
            for child in value:
                yield from leaves(child)
        elif isinstance(value, str) and len(value) >= 8:
            yield value

    for resource in run.resources:
        for path in resource.secret_paths:
            value: Any = resource.inputs
            for part in path:
                value = value[part]
            found.update(leaves(value))
    return found


def _all_text(out: Path) -> str:
    return "\n".join(path.read_text() for path in sorted(out.rglob("*")) if path.is_file())


def test_secrets_never_appear_in_plain_text(rendered: Rendered) -> None:
    text = _all_text(rendered.out)
    secrets = _secret_values(rendered.run)
    leaked = sorted(secret[:40] for secret in secrets if secret in text)
    assert leaked == []
    assert SECRET_PLACEHOLDER not in text


def test_stack_secrets_are_redacted_end_to_end(write_stack: StackWriter, tmp_path: Path) -> None:
    """A HuggingFace token and a kubeconfig given as `secure:` stack values reach the cluster redacted."""
    deployment = yaml.safe_load((STACKS_DIR / "Pulumi.local.yaml").read_text())["config"]["llmfleet:deployment"]
    deployment["huggingface_token_secret"] = "hfToken"
    deployment["regions"][0]["cluster"]["kubeconfig_secret"] = "localKubeconfig"
    stack = write_stack(deployment, name="secrets", hfToken="v1:enc", localKubeconfig="v1:enc")
    result = render(run_program(stack_file=stack), tmp_path / "out")
    assert SECRET_PLACEHOLDER in _secret_values(result.run), "the program must carry the stack's secrets"
    assert SECRET_PLACEHOLDER not in _all_text(result.out)
    secrets = [obj for obj in result.objects.values() if obj["kind"] == "Secret"]
    assert secrets and all(set(obj["stringData"].values()) == {REDACTED} for obj in secrets)
    provider = next(e for e in result.index if e["type"] == "pulumi:providers:kubernetes")
    assert provider["inputs"]["kubeconfig"] == REDACTED
    assert "kubeconfig" in provider["secretInputs"]


# --- the command ----------------------------------------------------------------------------------


def test_cli_renders_a_stack_and_replaces_an_earlier_render(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "local-local").mkdir(parents=True)
    (out / INDEX_FILE).write_text("[]")
    (out / "local-local" / "stale.yaml").write_text("kind: Stale\n")
    result = CliRunner().invoke(app, ["render", "--stack", "local", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "rendered stack local" in result.output and "objects valid" in result.output
    assert not (out / "local-local" / "stale.yaml").exists()
    assert any((out / "local-local").glob("deployment-*.yaml"))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--stack", "nope"], "no such stack file"),
        (["--stack", "local", "--stack-file", "stacks/Pulumi.dev.yaml"], "give --stack or --stack-file, not both"),
    ],
)
def test_cli_bad_options_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    result = CliRunner().invoke(app, ["render", *args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output


def test_cli_bad_stack_exits_2_naming_the_field(write_stack: StackWriter, tmp_path: Path) -> None:
    deployment = yaml.safe_load((STACKS_DIR / "Pulumi.dev.yaml").read_text())["config"]["llmfleet:deployment"]
    deployment["models"][0]["quantisation"] = "awq"
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["render", "--stack-file", str(write_stack(deployment)), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "llmfleet:deployment.models[0].quantisation: unknown field" in result.output
    assert "Traceback" not in result.output
    assert not out.exists(), "nothing is written for an invalid stack"


def test_cli_refuses_to_overwrite_a_directory_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(app, ["render", "--stack", "local", "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "not an earlier render" in result.output
    assert (tmp_path / "notes.txt").read_text() == "keep me"
