"""Regenerate infra/render/chart_values/<chart>.json: what each pinned Helm chart accepts as values.

    python -m llmfleet.infra.vendor.chart_values --mirrors DIR

DIR holds bare git repositories named `<owner>+<name>/repo` (what `git clone --bare` gives, renamed) of
each chart's upstream; the tag and path come from components/pins.yaml. For a chart with a
`values.schema.json` that file is vendored as-is. Otherwise the vendored tree is the union of the keys
of the chart's `values.yaml` and every `.Values.<path>` its templates read (a documented key is often
only a comment in values.yaml), with subtrees the chart passes on whole (`toYaml .Values.x`, an empty
map or list default) marked open. Subcharts are merged under their name from their own release.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml

from llmfleet.components import pins

OUT = Path(__file__).resolve().parent.parent / "render" / "chart_values"
OPEN, LEAF = "*", "."
Tree = dict[str, Any]


@dataclass(frozen=True)
class Subchart:
    name: str
    repo: str
    tag: str
    path: str
    library: bool = False
    """A library its parent includes: its templates read the parent's values (`.Values.<alias>.x`)."""


@dataclass(frozen=True)
class ChartSource:
    pin: str
    schema: bool = False
    values_file: str = "values.yaml"
    subcharts: tuple[Subchart, ...] = ()
    open: dict[str, str] = field(default_factory=dict[str, str])
    """Paths passed on whole by a template this script cannot follow (a variable), with the reason."""
    licence: str = "Apache-2.0"
    defaults: tuple[str, ...] = ()
    """Top-level values whose chart defaults are vendored as-is (`defaults`): Helm merges llmfleet's value into
    them, so a test checks the merged result (the semantic router's `config`)."""


CHARTS = [
    ChartSource(
        "envoy-gateway",
        values_file="values.tmpl.yaml",
        open={
            "config.envoyGateway": "templates/envoy-gateway-config.yaml merges it into the EnvoyGateway "
            "configuration and renders it whole (toYaml): its keys are the EnvoyGateway API's "
            "(api/v1alpha1), checked by infra/render/chart_values.py against the json names listed here"
        },
    ),
    ChartSource("ai-gateway-crds"),
    ChartSource("ai-gateway"),
    ChartSource("cert-manager", schema=True),
    ChartSource(
        "kube-prometheus-stack",
        subcharts=(Subchart("grafana", "grafana-community/helm-charts", "grafana-12.11.1", "charts/grafana"),),
        open={
            "kube-state-metrics": "subchart (kube-state-metrics 8.4.0) not vendored: llmfleet sets none of its values",
            "prometheus-node-exporter": "subchart (4.56.1) not vendored: llmfleet sets none of its values",
            "prometheus-windows-exporter": "subchart not vendored: llmfleet sets none of its values",
        },
    ),
    ChartSource(
        "inferencepool",
        subcharts=(
            Subchart(
                "inferenceExtension",
                "kubernetes-sigs/gateway-api-inference-extension",
                "v1.5.0",
                "config/charts/epplib",
                library=True,
            ),
        ),
    ),
    ChartSource("dcgm-exporter"),
    ChartSource("keda"),
    ChartSource("nvidia-device-plugin"),
    ChartSource(
        "semantic-router",
        open={
            "config": "the router's own configuration (templates/configmap.yaml renders it whole as config.yaml): "
            "llmfleet checks it with the config models of the vllm-sr wheel of the same release "
            "(tests/test_gateway_cascade.py), not as chart values"
        },
        defaults=("config",),
    ),
]


def git(mirrors: Path, repo: str, *args: str) -> str:
    git_dir = mirrors / repo.replace("/", "+") / "repo"
    return subprocess.run(["git", "--git-dir", str(git_dir), *args], check=True, capture_output=True, text=True).stdout


def tree_of(values: Any) -> Any:
    if isinstance(values, dict) and values:
        return {str(k): tree_of(v) for k, v in cast(dict[Any, Any], values).items()}
    if values is None or isinstance(values, dict | list):
        return OPEN  # an empty map, a list or an unset default: the user's content goes in whole
    return LEAF


def add_path(tree: Tree, path: list[str], mark: str) -> None:
    node = tree
    for i, key in enumerate(path):
        last = i == len(path) - 1
        child = node.get(key)
        if child == OPEN:
            return
        if last:
            if mark == OPEN or child is None:
                node[key] = mark
            return
        if not isinstance(child, dict):
            child = node[key] = {}
        node = cast(Tree, child)


VALUES_REF = re.compile(r"\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
TOYAML_REF = re.compile(r"toYaml\s+\(?\s*\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
WITH_TOYAML = re.compile(
    r"\{\{-?\s*with\s+\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)\s*-?\}\}((?:(?!\{\{-?\s*end).)*?)toYaml\s+\.", re.S
)


def first_document(text: str) -> Any:
    """A values file's first YAML document: what Helm reads (its YAML decoder takes the first document of a
    stream); the semantic router's values.yaml at v0.3.0 holds 41, the rest are its end-to-end profiles."""
    return next(iter(yaml.safe_load_all(text)), None)


def chart_tree(mirrors: Path, repo: str, tag: str, path: str, values_file: str = "values.yaml") -> Tree:
    values: Any = first_document(git(mirrors, repo, "show", f"{tag}:{path}/{values_file}")) or {}
    tree = cast(Tree, tree_of(values)) if values else {}
    add_template_refs(tree, mirrors, repo, tag, f"{path}/templates")
    return tree


def add_template_refs(tree: Tree, mirrors: Path, repo: str, tag: str, templates_dir: str) -> None:
    """Every `.Values.<path>` the templates read is a value; `toYaml .Values.<path>` takes it whole."""
    templates = [
        name for name in git(mirrors, repo, "ls-tree", "-r", "--name-only", tag, templates_dir).split() if name
    ]
    for name in templates:
        text = git(mirrors, repo, "show", f"{tag}:{name}")
        for match in VALUES_REF.finditer(text):
            add_path(tree, match.group(1).strip(".").split("."), LEAF)
        for pattern in (TOYAML_REF, WITH_TOYAML):
            for match in pattern.finditer(text):
                add_path(tree, match.group(1).strip(".").split("."), OPEN)


def json_names(mirrors: Path, repo: str, tag: str, files: list[str]) -> list[str]:
    names: set[str] = set()
    for name in files:
        names.update(re.findall(r'json:"([A-Za-z0-9_]+)', git(mirrors, repo, "show", f"{tag}:{name}")))
    return sorted(names)


def property_names(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        mapping = cast(dict[str, Any], node)
        if isinstance(mapping.get("properties"), dict):
            found.update(cast(dict[str, Any], mapping["properties"]))
        for child in mapping.values():
            found |= property_names(child)
    elif isinstance(node, list):
        for child in cast(list[Any], node):
            found |= property_names(child)
    return found


def build(mirrors: Path, source: ChartSource) -> dict[str, Any]:
    pin = pins.chart(source.pin)
    repo, tag, path = pin.source.repo, pin.source.tag, pin.source.path or ""
    commit = git(mirrors, repo, "rev-parse", f"{tag}^{{commit}}").strip()
    document: dict[str, Any] = {
        "chart": pin.name,
        "version": pin.version,
        "source": {"repo": repo, "tag": tag, "commit": commit, "path": path},
        "licence": source.licence,
    }
    if source.schema:
        document["file"] = f"{path}/values.schema.json"
        document["schema"] = json.loads(git(mirrors, repo, "show", f"{tag}:{path}/values.schema.json"))
        return document
    tree = chart_tree(mirrors, repo, tag, path, source.values_file)
    if source.defaults:
        values = first_document(git(mirrors, repo, "show", f"{tag}:{path}/{source.values_file}"))
        document["defaults"] = {key: values[key] for key in source.defaults}
    document["file"] = f"{path}/{source.values_file} and {path}/templates/ (.Values references)"
    subcharts: list[dict[str, str]] = []
    for sub in source.subcharts:
        sub_commit = git(mirrors, sub.repo, "rev-parse", f"{sub.tag}^{{commit}}").strip()
        if sub.library:
            values: Any = yaml.safe_load(git(mirrors, sub.repo, "show", f"{sub.tag}:{sub.path}/values.yaml")) or {}
            merged = cast(Tree, tree_of(values)) if values else {}
            add_template_refs(tree, mirrors, sub.repo, sub.tag, f"{sub.path}/templates")
        else:
            merged = chart_tree(mirrors, sub.repo, sub.tag, sub.path)
        parent = tree.get(sub.name)
        tree[sub.name] = merge(merged, cast(Tree, parent) if isinstance(parent, dict) else {})
        subcharts.append({"name": sub.name, "repo": sub.repo, "tag": sub.tag, "commit": sub_commit, "path": sub.path})
    for open_path in source.open:
        add_path(tree, open_path.split("."), OPEN)
    document["subcharts"] = subcharts
    document["open"] = source.open
    if source.pin == "envoy-gateway":
        api = [
            n for n in git(mirrors, repo, "ls-tree", "--name-only", tag, "api/v1alpha1/").split() if n.endswith(".go")
        ]
        # The Kubernetes types the API embeds (container env, resources, ...) as EG's own CRD spells them out.
        crd = f"{path}/charts/crds/crds/generated/gateway.envoyproxy.io_envoyproxies.yaml"
        names = set(json_names(mirrors, repo, tag, api)) | property_names(
            yaml.safe_load(git(mirrors, repo, "show", f"{tag}:{crd}"))
        )
        # logging.level is a map keyed by component: its keys are the EnvoyGatewayLogComponent constants.
        for name in api:
            names.update(
                re.findall(r'EnvoyGatewayLogComponent = "([A-Za-z0-9-]+)"', git(mirrors, repo, "show", f"{tag}:{name}"))
            )
        document["open_keys"] = {"config.envoyGateway": sorted(names)}
        document["open_keys_source"] = {"config.envoyGateway": ["json names of api/v1alpha1/*.go", crd]}
    document["tree"] = tree
    return document


def merge(a: Tree, b: Tree) -> Tree:
    out = dict(a)
    for key, value in b.items():
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = merge(cast(Tree, out[key]), cast(Tree, value))
        elif key not in out or value == OPEN:
            out[key] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m llmfleet.infra.vendor.chart_values",
        description="Regenerate infra/render/chart_values/ from the pinned charts.",
    )
    parser.add_argument("--mirrors", type=Path, required=True)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    for source in CHARTS:
        document = build(args.mirrors, source)
        (OUT / f"{source.pin}.json").write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
        print(f"{source.pin}: {document['source']['repo']}@{document['source']['tag']}")


if __name__ == "__main__":
    main()
