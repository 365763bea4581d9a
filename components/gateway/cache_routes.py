"""The response cache's two passes through the model route (docs/patterns.md, "Response cache").

A cached model's requests take the gateway twice:
1. a client's request (authenticated, TENANT_HEADER set from its key, budgets charged) matches the model's rule,
   which now sends it to the cache: LiteLLM's proxy (cache_deploy.py), which answers a hit from its Redis;
2. on a miss LiteLLM sends the request back through the same gateway with the cache's own API key. The gateway's
   auth sets TENANT_HEADER to that key's client id, CACHE_CLIENT, and the rule `<model>-uncached`, which matches
   the model header *and* that tenant header, holds the model rule's original backends: canary weights, the
   InferencePool, the hosted fallback and its retries apply to the miss as they would to a direct request.

Why the tenant header and not a header of LiteLLM's: LiteLLM's request enters by the same listener as a client's,
so the ClientTrafficPolicy would strip any header a client cannot send from LiteLLM's request too. TENANT_HEADER
is stripped from every request and then set by the API-key policy from the key presented, so only a request
carrying the cache's key (a random secret only LiteLLM and the gateway hold) ever has CACHE_CLIENT in it; the AI
Gateway's filter re-selects the route after auth has run (it sets the model header and clears the route cache).
The health prober's client (HEALTH_CLIENT) matches the uncached rule too: its probes prove the models, and a cached
answer must never keep a region healthy whose engines are down.

Two header matches outrank one (Gateway API HTTPRoute match precedence), so the uncached rule wins for those two
clients whatever its position. Client requests that name a revision (the rollout gate) or a priority also carry
two matching headers and take those rules: they are never cached.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

from llmfleet.components.gateway.health import HEALTH_CLIENT
from llmfleet.components.gateway.routes import MAX_RULES_PER_ROUTE, Names
from llmfleet.components.gateway.types import CACHE_CLIENT, MODEL_HEADER, TENANT_HEADER

UNCACHED_SUFFIX = "uncached"
BYPASS_CLIENTS = (CACHE_CLIENT, HEALTH_CLIENT)
"""Clients whose requests skip the cache: LiteLLM's own misses, and the health prober."""


def backend_name(names: Names) -> str:
    """The cache's Backend and AIServiceBackend (LiteLLM's Service), and the prefix of its other objects."""
    return f"{names.base}-response-cache"


def uncached_rule_name(model: str) -> str:
    return f"{model}-{UNCACHED_SUFFIX}"


def bypass_pattern() -> str:
    return "^(" + "|".join(re.escape(client) for client in BYPASS_CLIENTS) + ")$"


def split_rules(names: Names, rules: Sequence[Mapping[str, Any]], models: Sequence[str]) -> list[dict[str, Any]]:
    """The model route's rules with each cached model's default rule (named after the model) split in two: the
    cache's rule in its place, the uncached rule right after it. Other rules (revision pins, priorities, the
    cascade's) are unchanged. Raises ValueError naming a cached model the route does not serve."""
    wanted = set(models)
    found: set[str] = set()
    split: list[dict[str, Any]] = []
    for rule in rules:
        model = rule.get("name")
        if model not in wanted:
            split.append(dict(rule))
            continue
        found.add(model)
        split.append(
            {
                "name": model,
                "matches": [{"headers": [{"type": "Exact", "name": MODEL_HEADER, "value": model}]}],
                "backendRefs": [{"name": backend_name(names), "priority": 0}],
                "timeouts": copy.deepcopy(rule["timeouts"]),
            }
        )
        uncached = copy.deepcopy(dict(rule))
        uncached["name"] = uncached_rule_name(model)
        uncached["matches"] = [
            {
                "headers": [
                    {"type": "Exact", "name": MODEL_HEADER, "value": model},
                    {"type": "RegularExpression", "name": TENANT_HEADER, "value": bypass_pattern()},
                ]
            }
        ]
        split.append(uncached)
    missing = sorted(wanted - found)
    if missing:
        raise ValueError(f"response_cache.models: {missing} are not served in this region's gateway")
    if len(split) > MAX_RULES_PER_ROUTE:
        raise ValueError(
            f"the model route would have {len(split)} rules with the response cache (the AIGatewayRoute CRD allows "
            f"{MAX_RULES_PER_ROUTE}): each cached model takes one more; cache fewer models (response_cache.models)"
        )
    return split


def is_cache_rule(names: Names, rule: Mapping[str, Any]) -> bool:
    """A rule whose only backend is the cache (its requests reach a model, if at all, through an uncached rule)."""
    return [ref.get("name") for ref in rule.get("backendRefs", [])] == [backend_name(names)]
