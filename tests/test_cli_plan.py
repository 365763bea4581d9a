"""`llmfleet plan` end to end: the shipped stacks plan, bad input exits 2 naming the field, never a traceback."""

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from llmfleet.infra.cli import app

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["plan", *args])
    assert "Traceback" not in result.stdout + result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def stack_file(tmp_path: Path, deployment: Any) -> Path:
    path = tmp_path / "Pulumi.test.yaml"
    path.write_text(yaml.safe_dump({"config": {"llmfleet:deployment": deployment}}))
    return path


def deployment(model: dict[str, Any] | None = None, region: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "models": [{"name": "chat", "model": "llama-3.1-8b", "load": {"concurrent_sequences": 4}, **(model or {})}],
        "regions": [{"cloud": "aws", "region": "us-east-1", "role": "primary", **(region or {})}],
        "api_access_cidrs": ["203.0.113.0/24"],
        "huggingface_token_secret": "hfToken",  # meta-llama weights are gated
    }


def fails_naming(tmp_path: Path, data: Any, *fragments: str) -> str:
    code, _, err = run("--stack-file", str(stack_file(tmp_path, data)))
    assert code == 2, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_default_dev_stack_prints_a_table() -> None:
    code, out, err = run()
    assert code == 0, err
    assert "stack dev" in out and "us-east-1" in out and "Totals" in out and "fallbacks" in out
    assert "Totals: 1 deployment in 1 region, 1 replica on 1 node (1 GPU)," in " ".join(out.split()), out


def test_an_api_open_to_the_internet_plans_with_a_warning_and_a_missing_one_exits_2(tmp_path: Path) -> None:
    assert "warning" not in run()[2], "the shipped dev stack opens nothing"
    data = deployment()
    data["api_access_cidrs"] = ["0.0.0.0/0"]
    code, _, err = run("--stack-file", str(stack_file(tmp_path, data)))
    assert code == 0 and "warning: llmfleet:deployment.api_access_cidrs: 0.0.0.0/0 lets any address" in err, err
    del data["api_access_cidrs"]
    fails_naming(tmp_path, data, "api_access_cidrs: required because aws-us-east-1 create")


def test_a_load_a_thousand_times_too_high_plans_with_a_warning_naming_the_field(tmp_path: Path) -> None:
    sane = run("--stack-file", str(stack_file(tmp_path, deployment())))
    assert sane[0] == 0 and ".load:" not in sane[2], sane[2]
    code, _, err = run("--stack-file", str(stack_file(tmp_path, deployment({"load": {"concurrent_sequences": 10**8}}))))
    assert code == 0, err
    assert "warning: llmfleet:deployment.models[0].load: chat in aws/us-east-1 needs " in err, err
    assert "GPUs" in err and "a month" in err and "concurrent_sequences" in err, err


def test_prod_stack_json_is_the_documented_contract() -> None:
    code, out, err = run("--stack", "prod", "--format", "json")
    assert code == 0, err
    plan = json.loads(out)
    regions = {(d["cloud"], d["region"]) for d in plan["deployments"]}
    assert len(regions) >= 3 and {c for c, _ in regions} == {"aws", "gcp"}
    assert any(d["quantization"] == "fp8" and "70b" in d["model_id"] for d in plan["deployments"])
    required = {
        "cloud", "region", "model", "quantization", "gpu", "instance_type", "gpus_per_node", "tensor_parallel",
        "pipeline_parallel", "replicas", "nodes", "memory", "kv_cache_tokens_per_replica",
        "max_concurrency_at_context", "output_tokens_per_s_per_replica", "usd_per_hour",
        "usd_per_million_output_tokens", "fallback_instance_types", "rejected",
    }  # fmt: skip
    for d in plan["deployments"]:
        assert required <= d.keys()
        assert {"gpu_total_gib", "weights_gib_per_gpu", "kv_cache_gib_per_gpu", "kv_bytes_per_token"} <= d[
            "memory"
        ].keys()
        assert all({"option", "reason"} == r.keys() for r in d["rejected"])
    assert plan["totals"]["usd_per_hour"] == pytest.approx(
        sum(d["usd_per_hour"] for d in plan["deployments"]), abs=0.01
    )


def test_unknown_model_names_the_field_and_known_ids(tmp_path: Path) -> None:
    err = fails_naming(tmp_path, deployment({"model": "llama-9"}), "llmfleet:deployment.models[0].model", "'llama-9'")
    assert "llama-3.1-8b" in err  # the known ids


def test_unknown_allowed_gpu_and_region(tmp_path: Path) -> None:
    fails_naming(tmp_path, deployment(region={"allowed_gpus": ["RTX9090"]}), "regions[0].allowed_gpus", "RTX9090")
    fails_naming(tmp_path, deployment(region={"region": "mars-1"}), "regions[0].region", "'mars-1'", "us-east-1")


def test_unknown_pinned_gpu_or_instance_type(tmp_path: Path) -> None:
    fails_naming(tmp_path, deployment({"overrides": {"gpu": "V100"}}), "models[0].overrides.gpu", "'V100'")
    fails_naming(tmp_path, deployment({"overrides": {"instance_type": "p9.huge"}}), "models[0].overrides.instance_type")


def test_quantization_the_hardware_cannot_run(tmp_path: Path) -> None:
    # bf16 is a vLLM format: it needs a GPU, and the pinned type is CPU-only.
    err = fails_naming(
        tmp_path, deployment({"overrides": {"instance_type": "m7i.8xlarge"}}), "models[0]", "needs a GPU"
    )
    assert "m7i.8xlarge" in err
    assert "to fix, any of: a GGUF quantization (q4_k_m" in err


def test_quantization_outside_the_enum_lists_the_allowed_ones(tmp_path: Path) -> None:
    fails_naming(tmp_path, deployment({"quantization": "int3"}), "models[0].quantization", "'fp8'", "'q4_k_m'", "int3")


def test_pinned_tensor_parallel_the_heads_forbid_names_the_valid_degrees(tmp_path: Path) -> None:
    data = deployment({"model": "phi-4", "overrides": {"tensor_parallel": 4}})
    fails_naming(tmp_path, data, "models[0]", "10 KV heads and TP 4", "overrides.tensor_parallel one of [1, 2]")


def test_pins_that_contradict_each_other(tmp_path: Path) -> None:
    data = deployment({"overrides": {"gpu": "H100", "instance_type": "g5.xlarge"}})
    fails_naming(tmp_path, data, "models[0]", "pinned gpu H100, this type has A10G", "overrides.instance_type")


def test_model_that_fits_nowhere_says_how_far_short(tmp_path: Path) -> None:
    data = deployment({"model": "llama-3.1-405b"}, {"cloud": "gcp", "region": "us-central1", "allowed_gpus": ["L4"]})
    data["gcp_project"] = "p"
    err = fails_naming(tmp_path, data, "models[0] in regions[0]", "gcp/us-central1", "GiB short")
    assert "to fix, any of: more memory per replica" in err and "quantization fp8" in err


def test_region_without_that_gpu(tmp_path: Path) -> None:
    data = deployment(region={"region": "eu-west-1", "allowed_gpus": ["H200"]})
    err = fails_naming(tmp_path, data, "regions[0]", "offers no", "H200")
    assert "it has: ['A100-40GB', 'A10G', 'CPU']" in err  # the GPUs this region does offer (prices.yaml)
    assert "use another aws region with H200" in err and "us-east-1" in err


def test_prompt_longer_than_context(tmp_path: Path) -> None:
    data = deployment({"max_model_len": 1024, "load": {"concurrent_sequences": 1, "prompt_tokens": 2000}})
    fails_naming(tmp_path, data, "models[0].load", "max_model_len 1024")


def test_unknown_field_and_malformed_yaml(tmp_path: Path) -> None:
    fails_naming(tmp_path, deployment({"quantisation": "fp8"}), "models[0].quantisation", "unknown field")
    broken = tmp_path / "broken.yaml"
    broken.write_text("config:\n  llmfleet:deployment: [unclosed\n")
    code, _, err = run("--stack-file", str(broken))
    assert code == 2 and "not valid YAML" in err


@pytest.mark.parametrize("content", ["", "just a string\n", "config: {}\n"])
def test_empty_or_shapeless_files(tmp_path: Path, content: str) -> None:
    path = tmp_path / "Pulumi.x.yaml"
    path.write_text(content)
    code, _, err = run("--stack-file", str(path))
    assert code == 2 and "llmfleet:deployment" in err


def test_directory_missing_stack_and_both_flags(tmp_path: Path) -> None:
    assert run("--stack-file", str(tmp_path))[0] == 2
    code, _, err = run("--stack", "nope")
    assert code == 2 and "no such stack file" in err
    assert run("--stack", "dev", "--stack-file", str(tmp_path))[0] == 2


def test_hf_config_model(tmp_path: Path) -> None:
    config = {
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 14336,
        "vocab_size": 128256,
        "max_position_embeddings": 131072,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    data = deployment({"model": None, "hf_config": "config.json"})
    code, out, err = run("--stack-file", str(stack_file(tmp_path, data)), "--format", "json")
    assert code == 0, err
    planned = json.loads(out)["deployments"][0]
    assert planned["memory"]["kv_bytes_per_token"] == 128 * 1024 and planned["max_model_len"] == 8192
    fails_naming(tmp_path, {**data, "models": [{**data["models"][0], "hf_config": "nope.json"}]}, "models[0].hf_config")
