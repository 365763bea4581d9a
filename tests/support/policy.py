"""A render's resources as the policy pack's rules see them, and the rules the shipped stacks are held to."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmfleet.infra.policy import rules
from llmfleet.infra.policy.rules import Resource, Secret
from llmfleet.infra.render.offline import OfflineRun, RecordedResource


def as_rule_resources(run: OfflineRun) -> list[Resource]:
    """The run's resources as the pack's stack rules see them (secret inputs wrapped in rules.Secret)."""
    by_urn = {r.urn: r for r in run.resources}

    def top(resource: RecordedResource) -> str:
        while resource.parent in by_urn:
            resource = by_urn[resource.parent]
        return resource.urn

    found: list[Resource] = []
    for r in run.resources:
        props = wrap_secrets(r.inputs, r.secret_paths)
        provider = by_urn[r.provider].inputs if r.provider in by_urn else {}
        found.append(Resource(r.type, r.name, r.urn, props, top(r), rules.region_key(r.type, r.inputs, provider)))
    return found


def wrap_secrets(value: Any, paths: frozenset[tuple[str | int, ...]], here: tuple[str | int, ...] = ()) -> Any:
    if here in paths:
        return Secret(value)
    if isinstance(value, dict):
        return {k: wrap_secrets(v, paths, (*here, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [wrap_secrets(v, paths, (*here, i)) for i, v in enumerate(value)]
    return value


RESOURCE_RULES: list[Callable[[str, rules.Props], list[Any]]] = [
    rules.gpu_pool_taint,
    rules.inference_pod_tolerations,
    rules.inference_service_type,
    rules.credentials_in_plain_text,
    rules.unmarked_credentials,
    rules.pinned_images,
]


STACK_RULES = [rules.inference_pods_fit_pools, rules.inference_only_through_gateway, rules.single_machine_type]
