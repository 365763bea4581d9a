"""Benchmark: plan time and peak memory of `llmfleet plan` for a 16-region x 6-model stack.

Run it as a script, not under pytest (the file name does not match pytest's test_*.py pattern):

    .venv/bin/python tests/benchmarks/bench_plan.py [--repeat N]

The stack serves six models (dense 8B to 70B, MoE, int4, fp8) in every region the catalog knows on both
clouds (8 AWS + 8 GCP = 16), so the planner searches every instance type x TP x PP option 96 times, and with
`mixed_gpus` on every model also every split of each load over two GPU types (components/sizing/mix.py). The
first run includes loading and validating the catalog; later runs reuse it (load_catalog is cached), as a
long-lived process such as the Pulumi program would.
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, when run as a script

from llmfleet.components.sizing.catalog import load_catalog
from llmfleet.infra.config import parse_deployment
from llmfleet.infra.planning import build_plan

MODELS: list[dict[str, Any]] = [
    {"name": "chat-8b", "model": "llama-3.1-8b", "quantization": "bf16", "max_model_len": 8192},
    {"name": "chat-70b", "model": "llama-3.3-70b", "quantization": "fp8", "max_model_len": 16384},
    {"name": "code-7b", "model": "qwen2.5-7b", "quantization": "bf16", "max_model_len": 32768},
    {"name": "moe-30b", "model": "qwen3-30b-a3b", "quantization": "bf16", "max_model_len": 32768},
    {
        "name": "mixtral",
        "model": "mixtral-8x7b",
        "quantization": "awq",
        "max_model_len": 16384,
        "hf_repo": "TheBloke/Mixtral-8x7B-Instruct-v0.1-AWQ",  # AWQ is served from weights saved in AWQ
    },
    {"name": "phi", "model": "phi-4", "quantization": "fp8", "max_model_len": 16384},
]
LOAD = {"concurrent_sequences": 32, "prompt_tokens": 1024, "output_tokens": 256}


def stack() -> dict[str, Any]:
    """A stack with every catalog region of both clouds (the first is the primary)."""
    catalog = load_catalog()
    regions = [{"cloud": cloud, "region": r} for cloud in ("aws", "gcp") for r in catalog.regions_of(cloud)]
    regions[0]["role"] = "primary"
    return {
        "gcp_project": "bench",
        "api_access_cidrs": ["203.0.113.0/24"],  # required for created clusters (documentation range)
        "huggingface_token_secret": "hfToken",  # gated catalog weights (meta-llama) need one named
        "models": [{**m, "load": LOAD, "mixed_gpus": True} for m in MODELS],
        "regions": regions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="warm runs after the first (default 5)")
    args = parser.parse_args()

    started = time.perf_counter()
    spec = parse_deployment(stack(), "bench")
    plan = build_plan("bench", spec)
    first_s = time.perf_counter() - started

    warm: list[float] = []
    for _ in range(args.repeat):
        gc.collect()
        started = time.perf_counter()
        build_plan("bench", spec)
        warm.append(time.perf_counter() - started)

    # Memory in a separate, traced run (tracing slows Python down): catalog load included again.
    load_catalog.cache_clear()
    gc.collect()
    tracemalloc.start()
    build_plan("bench", parse_deployment(stack(), "bench"))
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    t = plan.totals
    rejected = sum(len(d.rejected) for d in plan.deployments)
    print(f"stack: {len(spec.regions)} regions x {len(spec.models)} models = {t.deployments} deployments")
    print(f"options evaluated: {rejected + t.deployments} ({rejected} not chosen, each with its reason)")
    print(f"plan time, first run (catalog load included): {first_s * 1000:.0f} ms")
    if warm:
        print(
            f"plan time, warm ({len(warm)} runs): median {statistics.median(warm) * 1000:.0f} ms, "
            f"min {min(warm) * 1000:.0f} ms, max {max(warm) * 1000:.0f} ms"
        )
    print(f"peak Python heap of one plan, catalog load included (tracemalloc): {traced_peak / 2**20:.1f} MiB")
    max_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"peak resident set of the process (interpreter and imports included): {max_rss_kib / 1024:.0f} MiB")
    print(f"plan: {t.replicas} replicas on {t.nodes} nodes ({t.gpus} GPUs), ${t.usd_per_hour:,.2f}/h")
    mixes = [d.mix for d in plan.deployments if d.mix is not None and d.mix.saves_usd_per_hour > 0]
    saved = sum(m.saves_usd_per_hour for m in mixes)
    print(
        f"mixed GPUs: {len(mixes)} of {t.deployments} deployments have a cheaper two-type split, ${saved:,.2f}/h in all"
    )


if __name__ == "__main__":
    import benchdoc  # tests/benchmarks/, beside this script: --write-docs records the output

    benchdoc.run("plan", main)
