"""Benchmark `llmfleet render`: time and peak memory for generated 4- and 16-region stacks.

    .venv/bin/python tests/benchmarks/bench_render.py [--regions 4 16] [--repeat 3]

A script, not a test (pytest collects test_*.py only). Each size runs in a fresh interpreter, so its
memory figures are its own. The stack is the dev stack (one model, the gateway, its secret) spread over
N regions taken alternately from the AWS and GCP regions the catalog prices, the first primary; each
region allows the dev stack's GPUs (L4, A10G) where it has them.

In the child, a 2-region render (AWS and GCP) first pays for the imports (the SDKs load lazily); then the N-region
render is timed, split into the program under the offline engine (`run_program`) and writing and
validating the files (`write_render`). Memory: the process's peak RSS and how much the N-region render
raised it, and the Python heap's peak during a second, traced render (tracemalloc slows Python several
fold, so the timed render runs untraced). Cost should grow linearly: the per-region columns should stay
about equal as N grows.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any, cast

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "stacks" / "Pulumi.dev.yaml"
SMALL_GPUS = ["L4", "A10G"]


def generated_stack(regions: int, directory: Path) -> Path:
    """The dev stack spread over `regions` catalog regions (AWS and GCP alternately); its path."""
    from llmfleet.components.sizing.catalog import load_catalog

    catalog = load_catalog()
    pairs = itertools.zip_longest(
        (("aws", r) for r in catalog.regions_of("aws")), (("gcp", r) for r in catalog.regions_of("gcp"))
    )
    available = [place for pair in pairs for place in pair if place is not None]
    if regions > len(available):
        raise SystemExit(f"--regions {regions}: the catalog prices only {len(available)} regions")
    document = cast(dict[str, Any], yaml.safe_load(TEMPLATE.read_text()))
    deployment = cast(dict[str, Any], document["config"]["llmfleet:deployment"])
    deployment["regions"] = []
    for i, (cloud, region) in enumerate(available[:regions]):
        entry: dict[str, Any] = {"cloud": cloud, "region": region, "role": "primary" if i == 0 else "secondary"}
        offered = {instance.gpu for instance in catalog.instances_in(cloud, region)}
        if offered & set(SMALL_GPUS):  # the dev stack's GPUs where the region has them, else the planner's pick
            entry["allowed_gpus"] = SMALL_GPUS
        deployment["regions"].append(entry)
    if any(cloud == "gcp" for cloud, _ in available[:regions]):
        deployment.setdefault("gcp_project", "llmfleet-bench")
    # stack "b": GKE cluster names (40 characters at most) carry the stack name and the longest region key
    path = directory / f"regions-{regions}" / "Pulumi.b.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def measure(stack_file: Path, warmup_file: Path, out: Path) -> dict[str, Any]:
    """Child side: warm up on two regions, time one N-region render, then trace the heap of another.

    The timed render runs untraced (tracemalloc slows Python several-fold); the heap peak comes from a
    second, traced render of the same stack.
    """
    from llmfleet.infra.render.offline import run_program
    from llmfleet.infra.render.writer import write_render

    write_render(run_program(stack_file=warmup_file), out / "warmup")
    rss_before = _rss_peak_mib()
    started = time.perf_counter()
    run = run_program(stack_file=stack_file)
    ran = time.perf_counter()
    summary = write_render(run, out / "render")
    written = time.perf_counter()
    rss_after = _rss_peak_mib()
    if summary.problems:
        raise SystemExit("schema problems:\n" + "\n".join(summary.problems))
    regions = len(run.region_keys)
    del run
    tracemalloc.start()
    write_render(run_program(stack_file=stack_file), out / "traced")
    _, heap_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "regions": regions,
        "resources": summary.resources,
        "objects": summary.objects + summary.helm_releases,
        "program_s": ran - started,
        "write_s": written - ran,
        "total_s": written - started,
        "heap_peak_mib": heap_peak / 2**20,
        "rss_peak_mib": rss_after,
        "rss_growth_mib": rss_after - rss_before,
    }


def _rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_child(regions: int, directory: Path) -> dict[str, Any]:
    stack = generated_stack(regions, directory)
    warmup = generated_stack(2, directory)  # one AWS and one GCP region: both SDKs' modules get loaded
    out = Path(tempfile.mkdtemp(prefix=f"bench{regions}-", dir=directory))
    command = [sys.executable, __file__, "--child", str(stack), str(warmup), str(out)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{regions} regions failed:\n{result.stdout}{result.stderr}")
    return cast(dict[str, Any], json.loads(result.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regions", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--repeat", type=int, default=3, help="Runs per size; the fastest is reported.")
    parser.add_argument("--child", nargs=3, metavar=("STACK", "WARMUP", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*(Path(p) for p in args.child))))
        return
    sys.path.insert(0, str(ROOT))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        for regions in args.regions:
            runs = [run_child(regions, Path(tmp)) for _ in range(args.repeat)]
            best = min(runs, key=lambda r: r["total_s"])
            best["heap_peak_mib"] = max(r["heap_peak_mib"] for r in runs)
            best["rss_peak_mib"] = max(r["rss_peak_mib"] for r in runs)
            best["rss_growth_mib"] = max(r["rss_growth_mib"] for r in runs)
            rows.append(best)
    columns = ["regions", "resources", "objects", "program s", "write s", "total s", "s/region"]
    columns += ["heap MiB", "heap/region", "RSS MiB", "RSS growth"]
    print("  ".join(f"{c:>11}" for c in columns))
    for row in rows:
        n = row["regions"]
        cells = [n, row["resources"], row["objects"], f"{row['program_s']:.2f}", f"{row['write_s']:.2f}"]
        cells += [f"{row['total_s']:.2f}", f"{row['total_s'] / n:.3f}", f"{row['heap_peak_mib']:.1f}"]
        cells += [f"{row['heap_peak_mib'] / n:.2f}", f"{row['rss_peak_mib']:.0f}", f"{row['rss_growth_mib']:.0f}"]
        print("  ".join(f"{c:>11}" for c in cells))
    if len(rows) >= 2:
        small, large = rows[0], rows[-1]

        def ratio(key: str) -> str:
            return f"x{large[key] / small[key]:.2f}"

        print(
            f"{small['regions']} -> {large['regions']} regions (x{large['regions'] / small['regions']:g}): "
            f"resources {ratio('resources')}, time {ratio('total_s')}, heap {ratio('heap_peak_mib')}"
        )


if __name__ == "__main__":
    import benchdoc  # tests/benchmarks/, beside this script: --write-docs records the output

    benchdoc.run("render", main)
