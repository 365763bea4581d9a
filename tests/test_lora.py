"""LoRA adapters: sized into the plan, registered with vLLM, routable by name at the gateway, part of the revision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from llmfleet.components.inference.vllm import args as vllm_args
from llmfleet.components.sizing import memory as mem
from llmfleet.components.sizing.catalog import load_catalog
from llmfleet.components.sizing.types import LoraAdapter
from llmfleet.infra.config import STACKS_DIR, ConfigError, load_stack, parse_deployment
from llmfleet.infra.planning import build_plan
from llmfleet.infra.program.revisions import region_revision
from llmfleet.infra.render.offline import run_program

ADAPTERS = [
    {"name": "support-bot", "hf_repo": "acme/llama-3.1-8b-support-lora", "rank": 16},
    {"name": "legal-bot", "hf_repo": "acme/llama-3.1-8b-legal-lora", "rank": 64},
]


def dev_with(adapters: list[dict[str, Any]], tmp_path: Path) -> Path:
    """The shipped dev stack with adapters on its model, written to a file of its own."""
    data = yaml.safe_load((STACKS_DIR / "Pulumi.dev.yaml").read_text())
    data["config"]["llmfleet:deployment"]["models"][0]["adapters"] = adapters
    path = tmp_path / "Pulumi.lora.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def plan_of(adapters: list[dict[str, Any]], tmp_path: Path) -> Any:
    name, spec = load_stack(None, dev_with(adapters, tmp_path))
    return build_plan(name, spec).deployments[0]


def test_adapters_take_gpu_memory_from_the_kv_cache(tmp_path: Path) -> None:
    """Two adapters, ranks 16 and 64: vLLM reserves 2 slots of rank 64 on every linear layer; the KV cache gives
    that memory up, and the plan says how much."""
    plain, tuned = plan_of([], tmp_path), plan_of(ADAPTERS, tmp_path)
    assert (tuned.max_loras, tuned.max_lora_rank) == (2, 64)
    arch = load_catalog().models["llama-3.1-8b"].architecture
    expected = mem.lora_bytes_per_gpu(arch, 2, 64, tuned.tensor_parallel) / mem.GIB
    assert tuned.memory.lora_gib_per_gpu == pytest.approx(expected, abs=0.01) and expected > 0.3
    if tuned.instance_type == plain.instance_type:
        assert tuned.kv_cache_tokens_per_replica < plain.kv_cache_tokens_per_replica
    assert plain.memory.lora_gib_per_gpu == 0 and plain.max_loras == 0


def test_lora_rank_slots_are_what_vllm_accepts() -> None:
    assert [mem.lora_rank_slot(r) for r in (1, 2, 8, 16, 17, 300, 512)] == [1, 8, 8, 16, 32, 320, 512]
    arch = load_catalog().models["llama-3.1-8b"].architecture
    one = mem.lora_bytes_per_gpu(arch, 1, 16, 1)
    assert mem.lora_bytes_per_gpu(arch, 4, 16, 1) == pytest.approx(4 * one)
    assert mem.lora_bytes_per_gpu(arch, 1, 64, 1) == pytest.approx(4 * one)
    assert mem.lora_bytes_per_gpu(arch, 1, 16, 2) < one  # half of each layer's pair is sharded


def test_vllm_serves_every_adapter_by_name(tmp_path: Path) -> None:
    plan = plan_of(ADAPTERS, tmp_path)
    flags = vllm_args(plan, 8000)
    for flag in ("--enable-lora", "--max-loras=2", "--max-lora-rank=64", "--max-cpu-loras=2"):
        assert flag in flags, flags
    modules = flags[flags.index("--lora-modules") + 1 :]
    assert modules == ["support-bot=acme/llama-3.1-8b-support-lora", "legal-bot=acme/llama-3.1-8b-legal-lora"]
    assert "--enable-lora" not in vllm_args(plan_of([], tmp_path), 8000)


def test_each_adapter_is_routable_by_its_name_to_its_base_replicas(tmp_path: Path) -> None:
    run = run_program(stack_file=dev_with(ADAPTERS, tmp_path))
    objects = [m for _, m in run.kubernetes_objects(redacted=True)]
    (route,) = [m for m in objects if m["kind"] == "AIGatewayRoute"]
    rules = {r["name"]: r for r in route["spec"]["rules"]}
    assert {"chat", "support-bot", "legal-bot"} <= set(rules)
    backends = {m["metadata"]["name"]: m for m in objects if m["kind"] == "Backend"}
    # the base model is pooled (vLLM): its rule points at its InferencePool, whose picker chooses a replica
    assert rules["chat"]["backendRefs"] == [
        {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "chat"}
    ], rules["chat"]
    (service,) = [m for m in objects if m["kind"] == "Service" and m["metadata"]["name"] == "chat"]
    base_address = f"chat.{service['metadata']['namespace']}.svc.cluster.local"
    for adapter in ("support-bot", "legal-bot"):
        rule = rules[adapter]
        assert rule["matches"][0]["headers"][0]["value"] == adapter
        (ref,) = [r for r in rule["backendRefs"] if r["priority"] == 0]
        # the adapter's requests reach the base model's replicas (through its Service)
        (endpoint,) = backends[ref["name"]]["spec"]["endpoints"]
        assert endpoint["fqdn"]["hostname"] == base_address, adapter
    (server,) = [m for m in objects if m["kind"] == "Deployment" and m["metadata"]["name"] == "chat"]
    container_args = server["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--enable-lora" in container_args and "support-bot=acme/llama-3.1-8b-support-lora" in container_args


def test_the_revision_changes_when_an_adapter_does(tmp_path: Path) -> None:
    before = region_revision([plan_of(ADAPTERS, tmp_path)])[0]
    moved = [ADAPTERS[0], {**ADAPTERS[1], "hf_repo": "acme/llama-3.1-8b-legal-lora-v2"}]
    after = region_revision([plan_of(moved, tmp_path)])[0]
    assert before != after
    assert region_revision([plan_of(ADAPTERS, tmp_path)])[0] == before


def test_bad_adapters_are_refused_naming_the_field(tmp_path: Path) -> None:
    data = yaml.safe_load((STACKS_DIR / "Pulumi.dev.yaml").read_text())["config"]["llmfleet:deployment"]
    clash = {**data, "models": [{**data["models"][0], "adapters": [{**ADAPTERS[0], "name": "chat"}]}]}
    with pytest.raises(ConfigError, match=r"served names \(models and their adapters\) must be unique.*chat"):
        parse_deployment(clash, "lora")
    gguf = {
        **data,
        "models": [{**data["models"][0], "quantization": "q4_k_m", "hf_repo": "x/y-GGUF", "adapters": [ADAPTERS[0]]}],
    }
    with pytest.raises(ConfigError, match=r"models\[0\]\.adapters: LoRA adapters are served by vLLM"):
        build_plan("lora", parse_deployment(gguf, "lora"))
    with pytest.raises(ValueError, match="rank"):
        LoraAdapter(name="x", hf_repo="a/b", rank=1024)
