"""Regenerate components/inference/data/<engine>-<version>.json: the flags and metric names the pinned
engine release accepts and exports, read from that release's source.

    python -m llmfleet.infra.vendor.engine_flags vllm WHEEL_OR_SDIST     # pip download vllm==<pin> --no-deps
    python -m llmfleet.infra.vendor.engine_flags llama.cpp BUILD ARG_CPP SERVER_CPP [...]  # at the pinned tag BUILD

vLLM: `vllm serve`'s parser is make_arg_parser (vllm/entrypoints/openai/cli_args.py): the frontend
dataclasses' fields (`--<field-with-dashes>`, booleans also `--no-...`) plus every literal flag of an
`add_argument` call there and in vllm/engine/arg_utils.py (EngineArgs.add_cli_args), and `--no-<flag>` for
the flags whose config field (vllm/config/) is a bool (get_kwargs makes those BooleanOptionalAction). Metrics: every
`name="vllm:..."` a Prometheus collector is built with under vllm/v1/metrics/, with its type (a counter
is exported with `_total`, a histogram as `_bucket`, `_sum`, `_count`).
llama.cpp: every literal flag of a `common_arg({...})` (common/arg.cpp) and every `llamacpp:` metric name
in the server's source.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import tarfile
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent.parent / "components" / "inference" / "data"
VLLM_FILES = ("vllm/engine/arg_utils.py", "vllm/entrypoints/openai/cli_args.py")
FRONTEND_CLASSES = ("BaseFrontendArgs", "FrontendArgs")
METRIC_KINDS = {"gauge": "gauge", "counter": "counter", "histogram": "histogram"}


def read_archive(path: Path) -> dict[str, str]:
    """Text of every .py file under vllm/ in a wheel or sdist, by its path from the package root."""
    files: dict[str, str] = {}
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.startswith("vllm/") and name.endswith(".py"):
                    files[name] = archive.read(name).decode()
    else:
        with tarfile.open(path) as archive:
            for member in archive.getmembers():
                parts = member.name.split("/", 1)
                if len(parts) == 2 and parts[1].startswith("vllm/") and parts[1].endswith(".py"):
                    handle = archive.extractfile(member)
                    if handle is not None:
                        files[parts[1]] = handle.read().decode()
    return files


def literal_flags(source: str) -> set[str]:
    flags: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument":
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.startswith("-"):
                    flags.add(arg.value)
            boolean = any(
                kw.arg == "action" and isinstance(kw.value, ast.Attribute) and kw.value.attr == "BooleanOptionalAction"
                for kw in node.keywords
            )
            if boolean:
                flags.update(
                    f"--no-{a.value.removeprefix('--')}"
                    for a in node.args
                    if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value.startswith("--")
                )
    return flags


def bool_fields(files: dict[str, str]) -> dict[str, set[str]]:
    """Class name -> its fields annotated `bool`, for every class under vllm/config/."""
    found: dict[str, set[str]] = {}
    for name, source in files.items():
        if not name.startswith("vllm/config/"):
            continue
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef):
                found.setdefault(node.name, set()).update(
                    item.target.id
                    for item in node.body
                    if isinstance(item, ast.AnnAssign)
                    and isinstance(item.target, ast.Name)
                    and ast.unparse(item.annotation) == "bool"
                )
    return found


def config_bool_flags(source: str, booleans: dict[str, set[str]]) -> set[str]:
    """`--no-<flag>` of `add_argument("--flag", **x_kwargs["field"])` where `x_kwargs = get_kwargs(Cls)` and
    Cls.field is a bool: get_kwargs gives booleans argparse.BooleanOptionalAction."""
    tree = ast.parse(source)
    classes: dict[str, str] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and ast.unparse(node.value.func) == "get_kwargs"
            and node.value.args
            and isinstance(node.targets[0], ast.Name)
        ):
            classes[node.targets[0].id] = ast.unparse(node.value.args[0])
    flags: set[str] = set()
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"
        ):
            continue
        splats = [kw.value for kw in node.keywords if kw.arg is None]
        # `**{**x_kwargs["field"], "default": None}` spreads the same kwargs with an override
        splats += [
            v for d in splats if isinstance(d, ast.Dict) for k, v in zip(d.keys, d.values, strict=True) if k is None
        ]
        for value in splats:
            if isinstance(value, ast.Subscript) and isinstance(value.value, ast.Name):
                field = value.slice.value if isinstance(value.slice, ast.Constant) else None
                if field in booleans.get(classes.get(value.value.id, ""), set()):
                    flags.update(
                        f"--no-{a.value.removeprefix('--')}"
                        for a in node.args
                        if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value.startswith("--")
                    )
    return flags


def dataclass_flags(source: str, classes: tuple[str, ...]) -> set[str]:
    flags: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name in classes:
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    flag = "--" + item.target.id.replace("_", "-")
                    flags.add(flag)
                    if ast.unparse(item.annotation) == "bool":
                        flags.add("--no-" + flag.removeprefix("--"))
    return flags


def vllm_metrics(files: dict[str, str]) -> dict[str, str]:
    metrics: dict[str, str] = {}
    for name, source in files.items():
        if not name.startswith("vllm/v1/metrics/"):
            continue
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.Call):
                continue
            called = ast.unparse(node.func).lower()
            kind = next((k for k in METRIC_KINDS if k in called), None)
            for kw in node.keywords:
                name_value = kw.value.value if isinstance(kw.value, ast.Constant) else None
                if kind and kw.arg == "name" and isinstance(name_value, str) and name_value.startswith("vllm:"):
                    metrics[name_value] = METRIC_KINDS[kind]
    return dict(sorted(metrics.items()))


def vllm(archive: Path) -> dict[str, object]:
    files = read_archive(archive)
    version = re.search(r"vllm-([0-9][^-]*?)(?:-|\.tar)", archive.name)
    flags: set[str] = set()
    for name in VLLM_FILES:
        flags |= literal_flags(files[name])
    flags |= dataclass_flags(files["vllm/entrypoints/openai/cli_args.py"], FRONTEND_CLASSES)
    flags |= config_bool_flags(files["vllm/engine/arg_utils.py"], bool_fields(files))
    return {
        "engine": "vllm",
        "version": f"v{version.group(1)}" if version else archive.name,
        "source": {"archive": archive.name, "files": [*VLLM_FILES, "vllm/v1/metrics/*.py"]},
        "licence": "Apache-2.0",
        "flags": sorted(flags),
        "metrics": vllm_metrics(files),
    }


COMMON_ARG = re.compile(r"common_arg\(\s*(?:\{[^}]*\},\s*)?\{([^}]*)\}")


def llama_cpp(version: str, arg_cpp: Path, servers: list[Path]) -> dict[str, object]:
    flags: set[str] = set()
    for match in COMMON_ARG.finditer(arg_cpp.read_text()):
        flags.update(re.findall(r'"(-[-A-Za-z0-9]+)"', match.group(1)))
    metrics: set[str] = set()
    for path in servers:
        metrics.update(re.findall(r'"(llamacpp:[a-z_]+)[" ]', path.read_text()))
        # to_metrics(): `{"<name>", "<Description>", value}` items, exported as llamacpp:<name>
        text = path.read_text()
        body = text[text.index("::to_metrics()") :] if "::to_metrics()" in text else ""
        for name in re.findall(r'\{\s*"([a-z_]+)",\s*"[A-Z]', body.split("\n}\n", 1)[0]):
            metrics.add(f"llamacpp:{name}")
    return {
        "engine": "llama.cpp",
        "version": version,
        "source": {"files": [arg_cpp.name, *(p.name for p in servers)]},
        "licence": "MIT",
        "flags": sorted(flags),
        "metrics": sorted(metrics),
    }


def main() -> None:
    # argparse: a wrong or missing argument (or --help) prints the usage and exits 2, not a traceback
    parser = argparse.ArgumentParser(
        prog="python -m llmfleet.infra.vendor.engine_flags",
        description="Regenerate components/inference/data/<engine>-<version>.json from the pinned release's source.",
    )
    engines = parser.add_subparsers(dest="engine", required=True)
    vllm_args = engines.add_parser("vllm", help="from the pinned wheel or sdist (pip download vllm==<pin> --no-deps)")
    vllm_args.add_argument("archive", type=Path, help="the vllm wheel (.whl) or sdist (.tar.gz)")
    llama_args = engines.add_parser("llama.cpp", help="from the source files at the pinned build tag")
    llama_args.add_argument("build", help="the pinned build tag, e.g. b11063")
    llama_args.add_argument("arg_cpp", type=Path, help="common/arg.cpp")
    llama_args.add_argument("servers", type=Path, nargs="+", help="the server's sources (tools/server/*.cpp)")
    args = parser.parse_args()
    document = vllm(args.archive) if args.engine == "vllm" else llama_cpp(args.build, args.arg_cpp, args.servers)
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"{document['engine']}-{document['version']}.json"
    out.write_text(json.dumps(document, indent=1) + "\n")
    print(f"{out}: {len(document['flags'])} flags, {len(document['metrics'])} metrics")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
