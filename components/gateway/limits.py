"""How much: global (Redis-backed) request and token budgets per tenant, per minute.

Each budget is one rule of a BackendTrafficPolicy on the model route. A request budget costs 1 per
request. A token budget costs nothing on the way in (`cost.request.number: 0` only checks the
budget) and the request's total tokens on the way out, read from the metadata the AI Gateway writes
(namespace io.envoy.ai_gateway): a request that starts within budget completes, the next is refused.

Tenants with their own limits are matched exactly; the default rule counts every other tenant
separately (`Distinct`) and excludes those tenants (`invert`), so nobody is held to both. Anonymous
gateways count per client IP instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from llmfleet.components.gateway.auth import AuthMode
from llmfleet.components.gateway.types import (
    AI_GATEWAY_METADATA_NAMESPACE,
    TENANT_HEADER,
    TOTAL_TOKENS_KEY,
    RateLimit,
    Tenant,
)

Selector = dict[str, Any]


def rate_limit_rules(
    mode: AuthMode, tenants: Sequence[Tenant], default: RateLimit, exempt: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """The global rate-limit rules of one gateway (empty when nothing is limited); `exempt` clients (the health
    prober) are held to no budget: left out of the default rule like tenants with their own limits."""
    if mode is AuthMode.CLOSED:
        return []
    if mode is AuthMode.ANONYMOUS:
        return _budget_rules({"sourceCIDR": {"type": "Distinct", "value": "0.0.0.0/0"}}, default)
    rules: list[dict[str, Any]] = []
    own = [t for t in tenants if t.limits is not None]
    for tenant in own:
        assert tenant.limits is not None
        selector = {"headers": [{"name": TENANT_HEADER, "type": "Exact", "value": tenant.name}]}
        rules += _budget_rules(selector, tenant.limits)
    everyone_else: list[dict[str, Any]] = [{"name": TENANT_HEADER, "type": "Distinct"}]
    excluded = [t.name for t in own] + list(exempt)
    if excluded:
        pattern = "^(" + "|".join(re.escape(name) for name in excluded) + ")$"
        everyone_else.append({"name": TENANT_HEADER, "type": "RegularExpression", "value": pattern, "invert": True})
    rules += _budget_rules({"headers": everyone_else}, default)
    return rules


def _budget_rules(selector: Selector, limit: RateLimit) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    if limit.requests_per_minute is not None:
        rules.append(
            {"clientSelectors": [selector], "limit": {"requests": limit.requests_per_minute, "unit": "Minute"}}
        )
    if limit.tokens_per_minute is not None:
        rules.append(
            {
                "clientSelectors": [selector],
                "limit": {"requests": limit.tokens_per_minute, "unit": "Minute"},
                "cost": {
                    "request": {"from": "Number", "number": 0},
                    "response": {
                        "from": "Metadata",
                        "metadata": {"namespace": AI_GATEWAY_METADATA_NAMESPACE, "key": TOTAL_TOKENS_KEY},
                    },
                },
            }
        )
    return rules
