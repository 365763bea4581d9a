"""The vendored CRDs (infra/render/crds/) are the pinned releases' (components/pins.yaml crd_sets), file by file."""

import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.gateway import full_args, manifest, render

from llmfleet.components import pins
from llmfleet.infra.render.validate import CRD_DIR, validate_against_crd, validate_manifest

README = CRD_DIR / "README.md"
COLUMNS = ["file", "set", "served", "repo", "tag", "commit", "path", "licence"]


def readme_rows() -> dict[str, dict[str, str]]:
    rows: dict[str, dict[str, str]] = {}
    for line in README.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == len(COLUMNS) and cells[0].endswith(".yaml"):
            assert cells[0] not in rows, f"{cells[0]}: two rows"
            rows[cells[0]] = dict(zip(COLUMNS, cells, strict=True))
    return rows


def vendored() -> list[Path]:
    return sorted(CRD_DIR.rglob("*.yaml"))


@cache
def crd(path: Path) -> dict[str, Any]:
    document = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
    assert document["kind"] == "CustomResourceDefinition", path
    return document


def test_every_vendored_file_has_one_readme_row_and_every_row_a_file() -> None:
    files = {str(path.relative_to(CRD_DIR)) for path in vendored()}
    assert set(readme_rows()) == files


def test_each_file_comes_from_its_sets_pinned_tag_and_commit() -> None:
    for name, row in readme_rows().items():
        assert row["licence"] == "Apache-2.0", name
        if "/" in name:
            assert row["set"] == "-", f"{name}: subfolders hold comparisons, not pins"
            continue
        source = pins.crd_set(row["set"]).source
        assert (row["repo"], row["tag"], row["commit"]) == (source.repo, source.tag, source.commit), name
        assert row["path"].startswith(source.path or ""), name
        served = ", ".join(sorted(v["name"] for v in crd(CRD_DIR / name)["spec"]["versions"] if v["served"]))
        assert row["served"] == served, f"{name}: the README's served versions are the file's"


VERSION_ANNOTATIONS = {
    "gateway-api": "gateway.networking.k8s.io/bundle-version",
    "inference-pool": "inference.networking.k8s.io/bundle-version",
    "inference-objective": "inference.networking.k8s.io/bundle-version",
    "prometheus-operator": "operator.prometheus.io/version",
}


def test_files_that_state_their_release_state_the_pinned_one() -> None:
    checked = 0
    for name, row in readme_rows().items():
        annotation = VERSION_ANNOTATIONS.get(row["set"])
        if annotation is None:
            continue
        stated = crd(CRD_DIR / name)["metadata"]["annotations"][annotation]
        assert f"v{stated.removeprefix('v')}" == pins.crd_set(row["set"]).version, name
        checked += 1
    assert checked >= 15, "the Gateway API, Inference Extension and Prometheus Operator files all state a version"


def test_each_set_installed_by_a_chart_comes_from_that_charts_release() -> None:
    for crd_set in pins.table().crd_sets:
        if crd_set.chart is None:
            continue
        chart = pins.chart(crd_set.chart)
        assert crd_set.source.tag == chart.source.tag, f"{crd_set.id}: CRDs of another release than chart {chart.id}"


def test_every_pinned_set_has_files() -> None:
    sets = {row["set"] for row in readme_rows().values()}
    assert {crd_set.id for crd_set in pins.table().crd_sets} == sets - {"-"}


@pytest.fixture(scope="module")
def model_route() -> dict[str, Any]:
    recorder, _ = render(full_args())
    return manifest(recorder.one("AIGatewayRoute"))


def test_why_ai_gateway_v1_1_0_the_model_route_names_its_rules(model_route: dict[str, Any]) -> None:
    """The pinned v1.1.0 schema accepts the rendered route; v1.0.0's rejects exactly its rule names."""
    assert all(rule.get("name") for rule in model_route["spec"]["rules"])
    assert validate_manifest(model_route) == []
    old = validate_against_crd(
        model_route, CRD_DIR / "ai-gateway-v1.0.0" / "aigateway.envoyproxy.io_aigatewayroutes.yaml"
    )
    assert old, "v1.0.0 would reject the route"
    assert all(re.search(r"spec\.rules\[\d+\]\.name: unknown field", problem) for problem in old), old
