"""The pin table (components/pins.yaml): its shape, and the checks tests/test_render.py runs over every
render shown to fail on what they are meant to catch."""

from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from support.pin_checks import unpinned_eks_addons, unpinned_images, unpinned_releases

from llmfleet.components import pins
from llmfleet.components.gateway import install
from llmfleet.components.inference import llamacpp, vllm
from llmfleet.components.sizing import memory


def test_every_kind_has_rows_and_every_row_cites_its_upstream_release() -> None:
    table = pins.table()
    for kind in pins.Kind:
        assert table.rows(kind), f"{kind.value}: no rows"
        for pin in table.rows(kind):
            assert pin.source.repo and pin.source.tag, f"{kind.value}.{pin.id}"
            assert pin.source.commit or pin.source.url, f"{kind.value}.{pin.id}: cite the tag's commit or a URL"


def test_a_charts_release_tag_names_its_version() -> None:
    for pin in pins.table().charts:
        assert pin.source.tag.endswith(pin.version.removeprefix("v")), f"{pin.id}: {pin.source.tag} vs {pin.version}"


def test_images_of_an_engine_carry_its_release() -> None:
    for pin in pins.table().images:
        if pin.engine:
            release = pins.engine(pin.engine)
            assert pin.version == release or pin.version.endswith(f"-{release}"), pin.id


def test_code_reads_its_versions_from_the_table() -> None:
    assert pins.engine("vllm") == memory.DEFAULT_VLLM_VERSION
    assert pins.engine("llama.cpp") == memory.DEFAULT_LLAMA_CPP_VERSION
    assert f"{vllm.IMAGE}:{memory.DEFAULT_VLLM_VERSION}" == pins.image("vllm")
    assert f"{llamacpp.IMAGE}:server-{memory.DEFAULT_LLAMA_CPP_VERSION}" == pins.image("llama.cpp-server")
    assert pins.chart("ai-gateway-crds").version == install.AI_GATEWAY_VERSION, "CRDs and controller move together"


def _table_with(**change: Any) -> dict[str, Any]:
    raw = yaml.safe_load(pins.TABLE.read_text())
    raw["charts"][0] = raw["charts"][0] | change
    return raw


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"version": "latest"}, "not an exact version"),
        ({"repository": "https://example.invalid/charts"}, "an oci:// chart has no repository"),
        ({"id": "keda"}, "duplicate ids ['keda']"),
        ({"source": {"repo": "envoyproxy/gateway"}}, "tag"),
        ({"chart": None, "colour": "blue"}, "colour"),
    ],
)
def test_a_bad_row_is_refused_naming_what_is_wrong(change: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError, match=None) as error:
        pins.PinTable.model_validate(_table_with(**change))
    assert expected in str(error.value)


def test_an_unknown_id_names_the_table_and_its_rows() -> None:
    with pytest.raises(KeyError, match=r"no charts row 'nope' in pins.yaml \(rows: envoy-gateway"):
        pins.chart("nope")


def _deployment(image: str) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"name": "m"},
        "spec": {
            "template": {"spec": {"initContainers": [{"image": pins.image("redis")}], "containers": [{"image": image}]}}
        },
    }


def test_the_render_checks_catch_an_unpinned_image_release_or_addon() -> None:
    assert unpinned_images([_deployment(pins.image("vllm"))]) == []
    assert unpinned_images([_deployment("vllm/vllm-openai:v0.9.0")]) == [
        "Deployment/m: image 'vllm/vllm-openai:v0.9.0' is not a row of pins.yaml images"
    ]
    keda = pins.chart("keda")
    release = {"name": "keda", "chart": keda.name, "repository": keda.repository, "version": keda.version}
    assert unpinned_releases([release]) == []
    assert unpinned_releases([release | {"version": "2.19.0"}]) != []
    assert unpinned_releases([release | {"values": {"operator": {"image": {"tag": "latest"}}}}]) == [
        "release keda: values.operator.image overrides the chart's pinned image ({'tag': 'latest'})"
    ]
    addon = {"type": "aws:eks/addon:Addon", "urn": "u", "inputs": {"addonName": "vpc-cni"}}
    assert unpinned_eks_addons([addon]) == ["u: addonVersion None, pinned " + repr(pins.eks_addon("vpc-cni"))]
    addon["inputs"]["addonVersion"] = pins.eks_addon("vpc-cni")
    assert unpinned_eks_addons([addon]) == []
    cluster: dict[str, Any] = {"type": "aws:eks/cluster:Cluster", "urn": "c", "inputs": {}}
    assert unpinned_eks_addons([cluster]) == [f"c: version None, pinned {pins.kubernetes('eks')!r}"]
    cluster["inputs"]["version"] = pins.kubernetes("eks")
    assert unpinned_eks_addons([cluster]) == []
