"""The CRDs' CEL rules (`x-kubernetes-validations`) evaluated on rendered custom resources.

infra/render/validate.py checks the schema's shape only; the API server also evaluates these rules. Each rule
is evaluated with a CEL implementation (common-expression-language) at the schema node it sits on, after
filling the schema's defaults as the API server does first. Transition rules (`oldSelf`) are left out;
a rule the evaluator cannot run is reported as broken, so nothing is skipped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any, cast

import cel  # pyright: ignore[reportMissingImports, reportMissingTypeStubs]
import yaml

from llmfleet.infra.render.manifests import to_manifest
from llmfleet.infra.render.validate import CRD_DIR
from support.gateway import GatewayRender

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


def check_rules(recorder: GatewayRender) -> RuleCheck:
    """Every CEL rule of the vendored CRDs on every custom resource the render holds."""
    check = RuleCheck()
    for resource in recorder.resources:
        obj = to_manifest(resource, redacted=False)
        if obj is None:  # not one Kubernetes object (a Helm release, a YAML file, a cloud resource)
            continue
        schema = crd_schemas().get((obj["apiVersion"], obj["kind"]))
        if schema is not None:
            check.walk(schema, obj, f"{obj['kind']}/{resource.name}")
    return check
