"""Validate one Kubernetes object the way the API server would check its shape.

Core kinds (Deployment, Service, ...) use the OpenAPI schemas the `kubernetes-validate` package ships
for KUBERNETES_VERSION, in its strict flavour so an unknown (misspelt) field is an error. Custom
resources use `spec.versions[name==<version>].schema.openAPIV3Schema` of the CRDs vendored in
infra/render/crds/ (see infra/render/crds/README.md), turned into JSON Schema:
- `x-kubernetes-int-or-string` accepts an integer or a string;
- `nullable: true` accepts null;
- `x-kubernetes-preserve-unknown-fields` keeps an object open; every other object with `properties`
  rejects unknown fields, as `kubectl apply` does with server-side field validation (Strict).
CEL rules (`x-kubernetes-validations`) and string formats are NOT evaluated.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path
from typing import Any, cast

import jsonschema
import referencing
import yaml
from jsonschema.protocols import Validator
from kubernetes_validate.utils import (  # pyright: ignore[reportUnknownVariableType]
    VersionNotSupportedError,
    schema_contents,
)

KUBERNETES_VERSION = "1.31"
"""The Kubernetes minor the core-kind schemas are taken from (oldest minor the clusters run)."""

CRD_DIR = Path(__file__).resolve().parent / "crds"

Schema = dict[str, Any]


def validate_manifest(obj: dict[str, Any]) -> list[str]:
    """Problems of one object, each `<Kind>/<name>: <field path>: <what is wrong>`; [] when valid."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    metadata = cast(dict[str, Any], obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {})
    name = metadata.get("name", "<unnamed>")
    label = f"{kind}/{name}"
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return [f"{label}: apiVersion and kind must both be set (got {api_version!r}, {kind!r})"]
    validator = _crd_validator(api_version, kind) or _core_validator(api_version, kind)
    if validator is None:
        return [
            f"{label}: unknown kind {kind} in apiVersion {api_version}: neither a Kubernetes {KUBERNETES_VERSION} "
            f"core kind nor a CRD vendored in {CRD_DIR} (vendor its CRD there, or fix the apiVersion/kind)"
        ]
    problems: list[str] = []
    for error in validator.iter_errors(obj):
        problems.extend(f"{label}: {line}" for line in _describe(error))
    return sorted(problems)


def validate_against_crd(obj: dict[str, Any], crd_file: Path) -> list[str]:
    """Problems of one custom resource against one CRD file (e.g. another release's), as validate_manifest."""
    crd = _load_crd(crd_file)
    label = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name', '<unnamed>')}"
    version = str(obj.get("apiVersion", "")).rpartition("/")[2]
    validator = _version_validator(crd, version) if crd["spec"]["names"]["kind"] == obj.get("kind") else None
    if validator is None:
        return [f"{label}: {crd_file.name} does not define {obj.get('apiVersion')} {obj.get('kind')}"]
    return sorted(f"{label}: {line}" for error in validator.iter_errors(obj) for line in _describe(error))


def is_custom_kind(api_version: str, kind: str) -> bool:
    """True when a vendored CRD defines this apiVersion/kind."""
    return _crd_validator(api_version, kind) is not None


def known_custom_kinds() -> list[str]:
    """`<group>/<version> <Kind>` for every vendored CRD version (for messages and docs)."""
    found: list[str] = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = _load_crd(path)
        for version in crd["spec"]["versions"]:
            found.append(f"{crd['spec']['group']}/{version['name']} {crd['spec']['names']['kind']}")
    return found


def _field_path(path: list[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "<root>"


def _describe(error: jsonschema.ValidationError) -> list[str]:
    """`<field path>: <problem>` lines; an unknown field is named itself, not its parent."""
    path = list(cast(Any, error.absolute_path))
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        declared = cast(dict[str, Any], schema.get("properties", {}))
        instance = cast(dict[str, Any], error.instance)  # pyright: ignore[reportUnknownMemberType]
        unknown = sorted(set(instance) - set(declared))
        if unknown:
            return [
                f"{_field_path([*path, field])}: unknown field (check its spelling; the schema allows "
                f"{sorted(declared)})"
                for field in unknown
            ]
    if error.validator in ("anyOf", "oneOf") and error.context:
        return [f"{_field_path(path)}: " + "; or ".join(sorted({sub.message for sub in error.context}))]
    return [f"{_field_path(path)}: {error.message}"]


# --- core kinds (kubernetes-validate's schemas) -------------------------------------------------


@cache
def _core_validator(api_version: str, kind: str) -> Validator | None:
    # kubernetes-validate names its files <kind>-<group without domain>-<version>.json
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    directory = f"kubernetes-json-schema/v{KUBERNETES_VERSION}.0-local-strict"
    try:
        schema = cast(Schema, schema_contents(f"{directory}/{kind.lower()}-{group_version}.json", KUBERNETES_VERSION))
    except (FileNotFoundError, VersionNotSupportedError):
        return None
    if not _names_kind(schema, api_version, kind):
        return None
    return jsonschema.Draft202012Validator(schema, registry=_core_registry(directory))


@cache
def _core_registry(directory: str) -> referencing.Registry[Any]:
    """The shared `_definitions.json`, crawled once: uncrawled, every `$ref` lookup re-walks all of it."""
    definitions = cast(Schema, schema_contents(f"{directory}/_definitions.json", KUBERNETES_VERSION))
    empty: referencing.Registry[Any] = referencing.Registry()
    return empty.with_resource("_definitions.json", referencing.Resource.from_contents(definitions)).crawl()


def _names_kind(schema: Schema, api_version: str, kind: str) -> bool:
    """The file name drops the group's domain; make sure the schema really is for this group."""
    gvks = cast(list[dict[str, str]], schema.get("x-kubernetes-group-version-kind", []))
    group, _, version = api_version.rpartition("/")
    return not gvks or any(g.get("group", "") == group and g["version"] == version and g["kind"] == kind for g in gvks)


# --- custom resources (vendored CRDs) -----------------------------------------------------------


@cache
def _crd_validator(api_version: str, kind: str) -> Validator | None:
    group, _, version = api_version.rpartition("/")
    if not group:
        return None
    for path in sorted(CRD_DIR.glob(f"{group}_*.yaml")):
        crd = _load_crd(path)
        if crd["spec"]["names"]["kind"] != kind:
            continue
        return _version_validator(crd, version)
    return None


def _version_validator(crd: Schema, version: str) -> Validator | None:
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            return jsonschema.Draft7Validator(_to_json_schema(copy.deepcopy(entry["schema"]["openAPIV3Schema"])))
    return None


@cache
def _load_crd(path: Path) -> Schema:
    return cast(Schema, yaml.load(path.read_text(), Loader=yaml.CSafeLoader))


_SUBSCHEMA_LISTS = ("anyOf", "allOf", "oneOf")


def _to_json_schema(node: Schema, close: bool = True) -> Schema:
    """Rewrite a structural OpenAPI v3 schema (in place) into the JSON Schema the API server enforces.

    `close` is False inside anyOf/allOf/oneOf/not: those branches only add constraints to the fields
    the structural part declares, so they must not reject the fields they leave out.
    """
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in node:
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    properties = cast(dict[str, Schema], node.get("properties", {}))
    for child in properties.values():
        _to_json_schema(child)
    if (
        close
        and properties
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
        and not node.get("x-kubernetes-embedded-resource")
    ):
        node["additionalProperties"] = False
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            _to_json_schema(cast(Schema, node[key]), close=close and key != "not")
    for key in _SUBSCHEMA_LISTS:
        for child in cast(list[Schema], node.get(key, [])):
            _to_json_schema(child, close=False)
    return node
