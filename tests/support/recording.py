"""Components built under the offline engine's recorder (RecordingMocks), as `llmfleet render` records them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi

from llmfleet.infra.render.manifests import to_manifest
from llmfleet.infra.render.offline import RecordedResource, RecordingMocks


def record(build: Callable[[], object]) -> list[RecordedResource]:
    """Run `build` under fresh RecordingMocks until every registration is done; the resources."""
    mocks = RecordingMocks().install()
    pulumi.runtime.test(lambda: build() and None)()
    return mocks.resources


def manifests(resources: list[RecordedResource], redacted: bool = True) -> dict[str, dict[str, Any]]:
    """`Kind/name` -> manifest of every Kubernetes object."""
    found: dict[str, dict[str, Any]] = {}
    for resource in resources:
        manifest = to_manifest(resource, redacted)
        if manifest is not None:
            found[f"{manifest['kind']}/{manifest['metadata']['name']}"] = manifest
    return found
