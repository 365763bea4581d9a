"""The CRDs' CEL rules (`x-kubernetes-validations`) on every custom resource the gateway emits.

infra/render/validate.py checks the schema's shape only; the API server also evaluates these rules and
rejects an object that breaks one (e.g. a Backend mixing fqdn and ip endpoints). Here each rule is
evaluated with a CEL implementation (common-expression-language) at the schema node it sits on,
after filling the schema's defaults as the API server does first. Transition rules (`oldSelf`) need
a previous object and are left out; a rule the evaluator cannot run fails the test, so nothing is
skipped silently.
"""

from __future__ import annotations

from typing import Any

import pytest
from support.cel import RuleCheck, check_rules, crd_schemas
from support.gateway import NAME, TENANTS, full_args, render

from llmfleet.components.gateway import JwtAuth, RateLimit, Tenant, Tls

JWT = JwtAuth("https://id.example.com/", "https://id.example.com/jwks", ("llm-api",))
VARIANTS: dict[str, dict[str, Any]] = {
    "keys, own limits, fallback, health": {},
    "jwt": {"tenants": [Tenant("acme", limits=RateLimit(10, 100))], "jwt": JWT, "fallback": None},
    "closed": {"tenants": [], "fallback": None},
    "anonymous, plain http": {
        "tenants": [],
        "fallback": None,
        "allow_anonymous": True,
        "tls": Tls(secret_name=None),
        "hostname": None,
        "region_hostname": None,
    },
    "renamed health path": {"health_path": "/healthz", "tenants": TENANTS[:1]},
}


@pytest.mark.parametrize("changes", VARIANTS.values(), ids=list(VARIANTS))
def test_every_custom_resource_keeps_the_crds_cel_rules(changes: dict[str, Any]) -> None:
    recorder, _ = render(full_args(**changes))
    check = check_rules(recorder)
    assert check.broken == []
    assert check.evaluated >= 10, "the rules were not reached: is the schema walk broken?"


def test_a_broken_object_is_caught() -> None:
    """The check itself can fail: a Backend mixing fqdn and ip endpoints breaks a rule of its CRD."""
    schema = crd_schemas()[("gateway.envoyproxy.io/v1alpha1", "Backend")]
    backend = {
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "Backend",
        "metadata": {"name": f"{NAME}-mixed"},
        "spec": {"endpoints": [{"fqdn": {"hostname": "a.example.com", "port": 80}}, {"ip": {"address": "10.0.0.1"}}]},
    }
    check = RuleCheck()
    check.walk(schema, backend, "Backend/mixed")
    assert check.broken == ["Backend/mixed.spec.endpoints: fqdn addresses cannot be mixed with other address types"]
