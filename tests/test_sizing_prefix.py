"""Prefix reuse in the planner: a stated cached share of the prompt means less prefill per request.

The stack states it (`load.cached_prompt_share`); the planner prefills only the rest, so the decode
steps that carry prefills are shorter, each replica delivers more, fewer replicas carry the load,
and the plan says why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from llmfleet.components.sizing.calibration import catalog_eta
from llmfleet.components.sizing.catalog import load_catalog
from llmfleet.components.sizing.planner import plan_deployment
from llmfleet.components.sizing.throughput import Device, Workload, time_per_output_token_s
from llmfleet.components.sizing.types import ConcurrencyLoad, ModelRequest, Overrides, Quantization, RegionRequest
from llmfleet.infra.cli import app

CATALOG = load_catalog()
ETA = catalog_eta(CATALOG)


def workload(share: float) -> Workload:
    return Workload(
        weight_bytes=16e9,
        active_fraction=1.0,
        active_params=8.0,
        kv_bytes_per_token=131072,
        prompt_tokens=4096,
        output_tokens=128,
        cached_prompt_share=share,
    )


def test_cached_prompt_tokens_are_not_prefilled() -> None:
    device = Device(bandwidth_gb_s=864, tflops=181, count=1)
    assert workload(0.75).prefill_tokens == 1024
    cold, warm = (time_per_output_token_s(workload(s), device, 32, 0.6) for s in (0.0, 0.75))
    assert warm < cold
    # Decode still attends to the whole prompt: with no prefill at all, only the decode step remains.
    assert time_per_output_token_s(workload(0.0), device, 1, 0.6) > time_per_output_token_s(
        workload(0.999), device, 1, 0.6
    )


def request(share: float) -> ModelRequest:
    entry = CATALOG.models["llama-3.1-8b"]
    load = ConcurrencyLoad(concurrent_sequences=256, prompt_tokens=6000, output_tokens=128, cached_prompt_share=share)
    return ModelRequest(
        name="chat",
        model_id="llama-3.1-8b",
        hf_repo=entry.hf_repo,
        architecture=entry.architecture,
        quantization=Quantization.BF16,
        max_model_len=8192,
        load=load,
        overrides=Overrides(gpu="L4"),
    )


def test_the_plan_needs_fewer_replicas_when_most_of_the_prompt_is_cached() -> None:
    region = RegionRequest(cloud="aws", region="us-east-1")
    cold = plan_deployment(CATALOG, request(0.0), region, eta=ETA, tpot_slo_ms=60)
    warm = plan_deployment(CATALOG, request(0.9), region, eta=ETA, tpot_slo_ms=60)
    assert (cold.cached_prompt_share, warm.cached_prompt_share) == (0.0, 0.9)
    assert warm.output_tokens_per_s_per_replica > cold.output_tokens_per_s_per_replica
    assert warm.replicas < cold.replicas, (warm.replicas, cold.replicas)


def _plan(tmp_path: Path, load: dict[str, Any], *args: str) -> tuple[int, str]:
    stack = {
        "models": [{"name": "chat", "model": "llama-3.1-8b", "load": load}],
        "regions": [{"cloud": "aws", "region": "us-east-1", "role": "primary"}],
        "api_access_cidrs": ["203.0.113.0/24"],
        "huggingface_token_secret": "hfToken",  # meta-llama weights are gated
    }
    path = tmp_path / "Pulumi.test.yaml"
    path.write_text(yaml.safe_dump({"config": {"llmfleet:deployment": stack, "llmfleet:hfToken": {"secure": "v1:x"}}}))
    result = CliRunner().invoke(app, ["plan", "--stack-file", str(path), *args])
    return result.exit_code, result.stdout + result.stderr


def test_llmfleet_plan_explains_the_prefix_reuse_it_assumed(tmp_path: Path) -> None:
    code, out = _plan(tmp_path, {"concurrent_sequences": 8, "cached_prompt_share": 0.6})
    assert code == 0, out
    assert "prefix reuse: 60% of prompt tokens expected cached" in " ".join(out.split())
    code, out = _plan(tmp_path, {"concurrent_sequences": 8, "cached_prompt_share": 0.6}, "--format", "json")
    assert json.loads(out)["deployments"][0]["cached_prompt_share"] == 0.6
    code, out = _plan(tmp_path, {"concurrent_sequences": 8})
    assert code == 0 and "prefix reuse" not in out


def test_a_share_of_one_or_more_is_refused_naming_the_field(tmp_path: Path) -> None:
    code, out = _plan(tmp_path, {"concurrent_sequences": 8, "cached_prompt_share": 1.0})
    assert code == 2
    assert "cached_prompt_share" in out and "Traceback" not in out
