"""The stack schema: valid stacks parse, every invalid input names its field path and what is allowed."""

import re
from pathlib import Path
from typing import Any

import pytest

from llmfleet.components.sizing.types import ConcurrencyLoad, ThroughputLoad
from llmfleet.infra.config import ConfigError, load_stack, load_stack_file, parse_deployment


def minimal(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "models": [{"name": "chat", "model": "llama-3.1-8b", "load": {"concurrent_sequences": 8}}],
        "regions": [{"cloud": "aws", "region": "us-east-1", "role": "primary"}],
        "api_access_cidrs": ["203.0.113.0/24"],
    }
    spec.update(changes)
    return spec


def error_of(data: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_deployment(data, "test")
    return str(caught.value)


def test_minimal_stack_parses_with_defaults() -> None:
    spec = parse_deployment(minimal(), "test")
    assert spec.models[0].quantization == "bf16"
    assert isinstance(spec.models[0].load, ConcurrencyLoad)
    assert spec.slo.ttft_p95_ms > 0
    assert spec.regions[0].key == "aws-us-east-1"


def test_load_is_concurrency_or_throughput() -> None:
    spec = parse_deployment(
        minimal(models=[{"name": "chat", "model": "m", "load": {"output_tokens_per_s": 500}}]), "test"
    )
    assert isinstance(spec.models[0].load, ThroughputLoad)
    message = error_of(minimal(models=[{"name": "chat", "model": "m", "load": {"sequences": 5}}]))
    assert "llmfleet:deployment.models[0].load" in message


def test_unknown_quantization_names_field_and_choices() -> None:
    message = error_of(minimal(models=[{"name": "c", "model": "m", "quantization": "fp4", "load": {}}]))
    assert "models[0].quantization" in message
    assert "awq" in message and "q4_k_m" in message
    assert "'fp4'" in message


def test_misspelt_field_is_unknown_field() -> None:
    message = error_of(minimal(regoins=[]))
    assert "llmfleet:deployment.regoins: unknown field" in message


def test_model_source_must_be_exactly_one() -> None:
    message = error_of(minimal(models=[{"name": "c", "load": {"concurrent_sequences": 1}}]))
    assert "models[0]" in message and "exactly one of `model`" in message


def test_exactly_one_primary_region() -> None:
    regions = [
        {"cloud": "aws", "region": "us-east-1", "role": "primary"},
        {"cloud": "gcp", "region": "us-central1", "role": "primary"},
    ]
    assert "exactly one region needs role: primary" in error_of(minimal(regions=regions, gcp_project="p"))


def test_region_model_subset_must_exist() -> None:
    regions = [{"cloud": "aws", "region": "us-east-1", "role": "primary", "models": ["nope"]}]
    assert "regions[0].models: unknown served names ['nope']" in error_of(minimal(regions=regions))


def test_gcp_cluster_needs_project() -> None:
    regions = [{"cloud": "gcp", "region": "us-central1", "role": "primary"}]
    assert "gcp_project" in error_of(minimal(regions=regions))


def test_created_clusters_need_api_access_cidrs_and_0_0_0_0_only_when_written_with_a_warning() -> None:
    spec = minimal()
    del spec["api_access_cidrs"]
    message = error_of(spec)
    assert "llmfleet:deployment: api_access_cidrs: required because aws-us-east-1 create" in message
    assert "0.0.0.0/0" in message, "says how to open it on purpose"
    assert "api_access_cidrs[0]" not in message
    assert "is not an IPv4 CIDR" in error_of(minimal(api_access_cidrs=["10.0.0.1/8"]))
    assert "is not an IPv4 CIDR" in error_of(minimal(api_access_cidrs=["2001:db8::/32"]))
    assert "at least 1 item" in error_of(minimal(api_access_cidrs=[]))
    assert parse_deployment(minimal(), "t").warnings() == []
    warnings = parse_deployment(minimal(api_access_cidrs=["0.0.0.0/0"]), "t").warnings()
    assert len(warnings) == 1 and "api_access_cidrs: 0.0.0.0/0 lets any address" in warnings[0]
    existing = [{"cloud": "local", "region": "local", "role": "primary", "cluster": {"mode": "existing"}}]
    spec = minimal(regions=existing)
    del spec["api_access_cidrs"]
    assert parse_deployment(spec, "t").api_access_cidrs is None, "an existing cluster's API is not ours to open"


def test_local_cloud_needs_existing_cluster() -> None:
    regions = [{"cloud": "local", "region": "local", "role": "primary"}]
    assert "cluster.mode: existing" in error_of(minimal(regions=regions))


def test_scale_to_zero_is_explicit() -> None:
    model = {"name": "c", "model": "m", "load": {"concurrent_sequences": 1}, "autoscaling": {"min_replicas": 0}}
    assert "models[0].autoscaling" in error_of(minimal(models=[model]))


def test_slo_bounds() -> None:
    message = error_of(minimal(slo={"error_rate": 1.5, "ttft_p95_ms": -1}))
    assert "slo.error_rate" in message and "slo.ttft_p95_ms" in message


def test_stack_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such stack file"):
        load_stack("does-not-exist")
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text("config: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_stack_file(bad)
    bad.write_text("config: {}\n")
    with pytest.raises(ConfigError, match=re.escape("missing `config: {llmfleet:deployment")):
        load_stack_file(bad)
    with pytest.raises(ConfigError, match="cannot read the stack file"):
        load_stack_file(tmp_path)
    bad.write_bytes(b"config:\n  name: caf\xe9\n")  # Latin-1, not UTF-8: the error names the file, no traceback
    with pytest.raises(ConfigError, match=r"Pulumi.bad.yaml: not UTF-8 text \(byte 19\)"):
        load_stack_file(bad)
    with pytest.raises(ConfigError, match="--stack or --stack-file"):
        load_stack("dev", bad)
