"""Hybrid routing by priority: `x-llmfleet-priority: cost | quality | balanced` picks self-hosted or hosted.

For each model with a hosted counterpart, two rules join the model route beside its default rule:
- `cost`: the region's own servers only (the default rule without its hosted fallback);
- `quality`: the hosted frontier model named for it first, the region's own servers as the fallback (the
  same health-aware priority fallback as the default rule, the other way round);
- `balanced`, no header or any other value: the default rule (own servers while healthy, then the cheap
  hosted model of `fallback.models`, if the model has one).
Each rule matches the model header and the priority header: two header matches outrank the default rule's
one whatever their order (Gateway API HTTPRoute match precedence), and they come after the rollout's
revision-pinning rules, which therefore win a tie (the first matching rule in list order).
The rules share the route's BackendTrafficPolicy: the same budgets and retries apply whatever the priority.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from llmfleet.components.gateway.routes import MAX_RULES_PER_ROUTE, Names
from llmfleet.components.gateway.types import MODEL_HEADER, PRIORITY_HEADER, Priority


def priority_rules(
    names: Names, rules: Sequence[Mapping[str, Any]], quality_models: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The priority rules for the models of `rules` (the model route's rules, as routes.route_spec built them)."""
    added: list[dict[str, Any]] = []
    for rule in rules:
        model = _model_of(rule)
        if model is None or rule.get("name") != model:
            continue  # a revision-pinning rule
        own = [ref for ref in rule["backendRefs"] if ref["name"] != names.fallback]
        hosted = [ref for ref in rule["backendRefs"] if ref["name"] == names.fallback]
        if hosted:
            added.append(_rule(rule, model, Priority.COST, copy.deepcopy(own)))
        if model in quality_models:
            frontier = {"name": names.fallback, "priority": 0, "modelNameOverride": quality_models[model]}
            fallback = [{**ref, "priority": 1} for ref in own]
            added.append(_rule(rule, model, Priority.QUALITY, [frontier, *fallback]))
    return added


def check_rule_count(total: int) -> None:
    if total > MAX_RULES_PER_ROUTE:
        raise ValueError(
            f"the model route would have {total} rules with priority routing (the AIGatewayRoute CRD allows "
            f"{MAX_RULES_PER_ROUTE}): each model with a hosted counterpart takes up to 2 more; list fewer models "
            "under gateway.fallback.models / gateway.priority.quality_models"
        )


def _model_of(rule: Mapping[str, Any]) -> str | None:
    [match] = rule["matches"]
    values = [h["value"] for h in match["headers"] if h["name"] == MODEL_HEADER]
    return values[0] if len(match["headers"]) == 1 and values else None


def _rule(default: Mapping[str, Any], model: str, priority: Priority, refs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": f"{model}-{priority.value}",
        "matches": [
            {
                "headers": [
                    {"type": "Exact", "name": MODEL_HEADER, "value": model},
                    {"type": "Exact", "name": PRIORITY_HEADER, "value": priority.value},
                ]
            }
        ],
        "backendRefs": refs,
        "timeouts": copy.deepcopy(default["timeouts"]),
    }
