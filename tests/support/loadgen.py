"""A LoadGenerator component rendered under the offline engine's recorder."""

from __future__ import annotations

from typing import Any

from llmfleet.components.loadgen import LoadGenerator, LoadGeneratorArgs
from llmfleet.infra.render.manifests import to_manifest
from llmfleet.infra.render.offline import RecordedResource
from llmfleet.values import Slo
from support.recording import record

IMAGE = "registry.example.com/llmfleet-loadtest:1"


def args(**changes: Any) -> LoadGeneratorArgs:
    fields: dict[str, Any] = {
        "image": IMAGE,
        "host": "http://envoy-llmfleet.envoy-gateway-system:80",
        "model": "chat",
        "slo": Slo().model_dump(),
        "users": 512,
        "duration_s": 300,
        "workers": 8,
    }
    return LoadGeneratorArgs(**(fields | changes))


def render(**changes: Any) -> tuple[list[RecordedResource], dict[str, dict[str, Any]]]:
    resources = record(lambda: LoadGenerator("gate-us", args(**changes)))
    objects: dict[str, dict[str, Any]] = {}
    for resource in resources:
        manifest = to_manifest(resource)
        if manifest is not None:
            objects[f"{manifest['kind']}/{manifest['metadata']['name']}"] = manifest
    return resources, objects
