"""What in a render is not a row of components/pins.yaml: Helm releases, container images, EKS add-ons.

Shared by tests/test_render.py (over every shipped stack's render) and tests/test_pins.py (which shows
each check failing on a hand-made object).
"""

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from llmfleet.components import pins


def _containers(node: Any) -> Iterator[dict[str, Any]]:
    """Every container spec in an object, wherever its pod template sits (Deployment, Job, CronJob, ...)."""
    if isinstance(node, dict):
        for key, child in node.items():
            if key in ("containers", "initContainers", "ephemeralContainers") and isinstance(child, list):
                yield from (c for c in child if isinstance(c, dict))
            else:
                yield from _containers(child)
    elif isinstance(node, list):
        for child in node:
            yield from _containers(child)


def unpinned_images(objects: Iterable[dict[str, Any]]) -> list[str]:
    pinned = {pin.ref for pin in pins.table().images}
    return sorted(
        f"{obj['kind']}/{obj['metadata']['name']}: image {container.get('image')!r} is not a row of pins.yaml images"
        for obj in objects
        for container in _containers(obj)
        if container.get("image") not in pinned
    )


def _image_values(values: Any, path: str = "values") -> Iterator[tuple[str, Any]]:
    """Helm values that choose an image (`image:` keys): a chart's own default is pinned by its chart version."""
    if isinstance(values, dict):
        for key, child in values.items():
            if key == "image":
                yield f"{path}.{key}", child
            else:
                yield from _image_values(child, f"{path}.{key}")


def _pinned_image(value: Any) -> bool:
    """An image override naming a row of pins.yaml images (`repository` + `tag`), as the semantic router's does:
    its chart's appVersion at the tag is `latest`, set to the release only when the release job packages it."""
    if not isinstance(value, dict) or set(value) != {"repository", "tag"}:
        return False
    return f"{value['repository']}:{value['tag']}" in {pin.ref for pin in pins.table().images}


def unpinned_releases(releases: Iterable[dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    rows = {(pin.name, pin.repository or None, pin.version) for pin in pins.table().charts}
    for release in releases:
        chart, repository = release["chart"], release.get("repository") or None
        if repository and repository.startswith("oci://"):  # the render splits an OCI chart's URL
            chart, repository = f"{repository}/{chart}", None
        key = (chart, repository, str(release["version"]))
        if key not in rows:
            problems.append(f"release {release['name']}: chart {key} is not a row of pins.yaml charts")
        problems.extend(
            f"release {release['name']}: {path} overrides the chart's pinned image ({value!r})"
            for path, value in _image_values(release.get("values") or {})
            if not _pinned_image(value)
        )
    return problems


def unpinned_eks_addons(index: Iterable[dict[str, Any]]) -> list[str]:
    """resources.json entries of EKS add-ons (and clusters) whose version is not the pin (or missing): the
    add-on builds are pinned for the pinned cluster version (a stack setting kubernetes_version shows here)."""
    problems: list[str] = []
    for entry in index:
        if entry["type"] == "aws:eks/cluster:Cluster" and entry["inputs"].get("version") != pins.kubernetes("eks"):
            problems.append(
                f"{entry['urn']}: version {entry['inputs'].get('version')!r}, pinned {pins.kubernetes('eks')!r}"
            )
        if entry["type"] != "aws:eks/addon:Addon":
            continue
        inputs = entry["inputs"]
        name = inputs.get("addonName")
        try:
            expected = pins.eks_addon(name)
        except KeyError:
            problems.append(f"{entry['urn']}: add-on {name!r} is not a row of pins.yaml eks_addons")
            continue
        if inputs.get("addonVersion") != expected:
            problems.append(f"{entry['urn']}: addonVersion {inputs.get('addonVersion')!r}, pinned {expected!r}")
    return problems


# --- engines: flags and metric names of the pinned release (components/inference/data/) -----------

ENGINE_DATA = Path(__file__).resolve().parents[2] / "components" / "inference" / "data"
ENGINE_IMAGES = {"vllm/vllm-openai": "vllm", "ghcr.io/ggml-org/llama.cpp": "llama.cpp"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def engine_release(engine: str, version: str) -> dict[str, Any] | None:
    path = ENGINE_DATA / f"{engine}-{version}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _release_of(image: str) -> tuple[str, str] | None:
    repository, _, tag = image.rpartition(":")
    engine = ENGINE_IMAGES.get(repository)
    if engine is None:
        return None
    return engine, re.sub(r"^server(-cuda)?-", "", tag)


def unknown_engine_flags(objects: Iterable[dict[str, Any]]) -> list[str]:
    """Flags of engine containers their pinned release's parser does not accept."""
    problems: list[str] = []
    for obj in objects:
        for container in _containers(obj):
            release = _release_of(str(container.get("image", "")))
            if release is None:
                continue
            data = engine_release(*release)
            if data is None:
                problems.append(f"{obj['kind']}/{obj['metadata']['name']}: no vendored flags for {release}")
                continue
            words = [*container.get("command", []), *container.get("args", [])]
            for word in words:
                flag = str(word).split("=", 1)[0]
                if flag.startswith("--") and flag not in data["flags"]:
                    problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {release[0]} {release[1]} has no {flag}")
    return problems


def metric_names(text: str, prefix: str) -> set[str]:
    return set(re.findall(rf"\b{re.escape(prefix)}[a-z0-9_]*[a-z0-9]", text))


def unknown_vllm_metrics(names: Iterable[str], version: str) -> list[str]:
    """Names (as queried: counters with _total, histograms with _bucket/_sum/_count) vLLM `version` does not export."""
    data = engine_release("vllm", version)
    assert data is not None, f"no vendored vLLM {version}"
    exported = {base + suffix for base, kind in data["metrics"].items() for suffix in SUFFIXES[kind]}
    histograms = {base for base, kind in data["metrics"].items() if kind == "histogram"}
    return sorted(n for n in names if n not in exported and n not in histograms)


def unknown_llamacpp_metrics(names: Iterable[str], build: str) -> list[str]:
    data = engine_release("llama.cpp", build)
    assert data is not None, f"no vendored llama.cpp {build}"
    return sorted(set(names) - set(data["metrics"]))
