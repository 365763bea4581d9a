"""What in a render is not a row of components/pins.yaml: Helm releases, container images, EKS add-ons.

Shared by tests/test_render.py (over every shipped stack's render) and tests/test_pins.py (which shows
each check failing on a hand-made object).
"""

from collections.abc import Iterable, Iterator
from typing import Any

from components import pins


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
        )
    return problems


def unpinned_eks_addons(index: Iterable[dict[str, Any]]) -> list[str]:
    """resources.json entries of EKS add-ons whose version is not the add-on's pin (or missing)."""
    problems: list[str] = []
    for entry in index:
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
