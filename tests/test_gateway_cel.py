"""The CRDs' CEL rules (`x-kubernetes-validations`) on every custom resource the gateway emits.

infra/render/validate.py checks the schema's shape only; the API server also evaluates these rules and
rejects an object that breaks one (e.g. a Backend mixing fqdn and ip endpoints). Here each rule is
evaluated with a CEL implementation (common-expression-language) at the schema node it sits on,
after filling the schema's defaults as the API server does first. Transition rules (`oldSelf`) need
a previous object and are left out; a rule the evaluator cannot run fails the test, so nothing is
skipped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any, cast

import cel  # pyright: ignore[reportMissingImports, reportMissingTypeStubs]
import pytest
import yaml
from test_gateway import NAME, TENANTS, Recorder, full_args, render

from llmfleet.components.gateway import JwtAuth, RateLimit, Tenant, Tls
from llmfleet.infra.render.validate import CRD_DIR

Schema = dict[str, Any]


@cache
def crd_schemas() -> dict[tuple[str, str], Schema]:
    """(apiVersion, kind) -> openAPIV3Schema of every vendored CRD version."""
    found: dict[tuple[str, str], Schema] = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
        for version in crd["spec"]["versions"]:
            api_version = f"{crd['spec']['group']}/{version['name']}"
            found[(api_version, crd["spec"]["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
    return found


@dataclass
class RuleCheck:
    evaluated: int = 0
    broken: list[str] = field(default_factory=list[str])
    """`<path>: <message>` of every rule that evaluated to false or could not be evaluated."""

    def walk(self, schema: Schema, value: Any, path: str) -> None:
        value = _with_defaults(schema, value)
        for rule in schema.get("x-kubernetes-validations", []):
            expression: str = rule["rule"]
            if "oldSelf" in expression:
                continue
            try:
                result = cast(object, cel.evaluate(expression, {"self": value}))  # pyright: ignore[reportUnknownMemberType]
            except Exception as exc:  # the evaluator's own error types vary by version
                self.broken.append(f"{path}: cannot evaluate {expression!r}: {exc}")
                continue
            self.evaluated += 1
            if result is not True:
                self.broken.append(f"{path}: {rule.get('message', expression)}")
        if isinstance(value, dict):
            properties = cast(dict[str, Schema], schema.get("properties", {}))
            extra: Schema | None = schema.get("additionalProperties") or None
            for key, child in cast(dict[str, Any], value).items():
                child_schema = properties.get(key, extra if isinstance(extra, dict) else None)
                if child_schema is not None:
                    self.walk(child_schema, child, f"{path}.{key}")
        elif isinstance(value, list) and "items" in schema:
            for index, child in enumerate(cast(list[Any], value)):
                self.walk(schema["items"], child, f"{path}[{index}]")


def _with_defaults(schema: Schema, value: Any) -> Any:
    """`value` with the schema's `default`s filled in for absent properties (the API server defaults first)."""
    if not isinstance(value, dict):
        return value
    filled = dict(cast(dict[str, Any], value))
    for key, child in cast(dict[str, Schema], schema.get("properties", {})).items():
        if key not in filled and "default" in child:
            filled[key] = child["default"]
    return filled


def check_rules(recorder: Recorder) -> RuleCheck:
    check = RuleCheck()
    for resource in recorder.resources:
        if not resource.type.startswith("kubernetes:") or "helm.sh" in resource.type:
            continue
        manifest = resource.manifest()
        schema = crd_schemas().get((manifest["apiVersion"], manifest["kind"]))
        if schema is not None:
            check.walk(schema, manifest, f"{manifest['kind']}/{resource.name}")
    return check


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
