"""Which rule and backends of a rendered AIGatewayRoute a request takes (Gateway API match precedence)."""

from __future__ import annotations

import re
from typing import Any

from llmfleet.components.gateway.types import MODEL_HEADER, PRIORITY_HEADER


def select(manifest: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """The rule a request with `headers` takes (Gateway API precedence among header-only matches)."""
    best: tuple[int, int] | None = None
    chosen: dict[str, Any] | None = None
    for index, rule in enumerate(manifest["spec"]["rules"]):
        for match in rule["matches"]:
            wanted = match["headers"]
            if all(_matches(h, headers.get(h["name"])) for h in wanted):
                key = (-len(wanted), index)
                if best is None or key < best:
                    best, chosen = key, rule
    assert chosen is not None, f"no rule matches {headers}"
    return chosen


def _matches(match: dict[str, str], value: str | None) -> bool:
    """A header match: Exact, or RegularExpression as Envoy's safe_regex reads it (the whole value must match)."""
    if value is None:
        return False
    if match.get("type", "Exact") == "RegularExpression":
        return re.fullmatch(match["value"], value) is not None
    return value == match["value"]


def backends(rule: dict[str, Any]) -> list[tuple[int, str, str | None]]:
    """(priority, backend, model sent) in the order Envoy tries priorities."""
    refs = [(r["priority"], r["name"], r.get("modelNameOverride")) for r in rule["backendRefs"]]
    return sorted(refs, key=lambda ref: ref[0])


def ask(manifest: dict[str, Any], model: str, priority: str | None = None, **extra: str) -> list[Any]:
    headers = {MODEL_HEADER: model, **extra}
    if priority is not None:
        headers[PRIORITY_HEADER] = priority
    return backends(select(manifest, headers))
