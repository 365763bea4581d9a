"""One InferenceService (or a plan for one) under the offline engine's recorder, for component tests."""

from __future__ import annotations

from typing import Any

import pulumi_kubernetes as k8s

from llmfleet.components.inference import InferenceService, InferenceServiceArgs
from llmfleet.components.sizing.plan import DeploymentPlan, MemorySplit
from llmfleet.components.sizing.types import Engine, KvCacheDtype, Quantization
from support.recording import manifests, record

PROMETHEUS = "http://prometheus.monitoring.svc:9090"


def make_plan(**changes: Any) -> DeploymentPlan:
    """A vLLM plan for Llama-3.1-8B on one L40S (figures shaped like the planner's, not its output)."""
    fields: dict[str, Any] = {
        "cloud": "aws",
        "region": "us-east-1",
        "capacity_type": "on-demand",
        "model": "chat",
        "model_id": "llama-3.1-8b",
        "hf_repo": "meta-llama/Llama-3.1-8B-Instruct",
        "quantization": Quantization.BF16,
        "kv_cache_dtype": KvCacheDtype.AUTO,
        "engine": Engine.VLLM,
        "engine_version": "v0.11.0",
        "max_model_len": 8192,
        "gpu": "L40S",
        "accelerator": None,
        "ami_type": "AL2023_x86_64_NVIDIA",
        "instance_type": "g6e.xlarge",
        "gpus_per_node": 1,
        "gpus_per_replica": 1,
        "tensor_parallel": 1,
        "pipeline_parallel": 1,
        "replicas": 2,
        "min_replicas": 2,
        "max_replicas": 4,
        "replicas_per_node": 1,
        "nodes": 2,
        "max_nodes": 4,
        "gpu_memory_utilization": 0.92,
        "max_num_batched_tokens": 8192,
        "memory": MemorySplit(
            gpu_total_gib=44.4,
            budget_gib_per_gpu=40.9,
            weights_gib_per_gpu=15.0,
            activation_gib_per_gpu=1.5,
            non_torch_gib_per_gpu=0.3,
            cuda_graph_gib_per_gpu=0.8,
            kv_cache_gib_per_gpu=23.3,
            kv_bytes_per_token=131072,
        ),
        "kv_cache_tokens_per_replica": 190_000,
        "max_concurrency_at_context": 23.3,
        "max_num_seqs": 64,
        "output_tokens_per_s_per_replica": 2000.0,
        "usd_per_hour": 3.72,
        "usd_per_million_output_tokens": 0.52,
        "fallback_instance_types": ("g6e.2xlarge", "g6e.4xlarge"),
        "price_verified": True,
        "rejected": (),
    }
    fields.update(changes)
    return DeploymentPlan(**fields)


def gguf_plan(**changes: Any) -> DeploymentPlan:
    cpu = {
        "cloud": "local",
        "region": "local",
        "model": "tiny",
        "model_id": "llama-3.2-1b",
        "hf_repo": "bartowski/Llama-3.2-1B-Instruct-GGUF",
        "quantization": Quantization.Q4_K_M,
        "engine": Engine.LLAMA_CPP,
        "engine_version": "b6500",
        "max_model_len": 4096,
        "gpu": None,
        "ami_type": None,
        "instance_type": "local-cpu",
        "gpus_per_node": 0,
        "gpus_per_replica": 0,
        "max_num_seqs": 4,
        "max_num_batched_tokens": 2048,
        "min_replicas": 1,
        "replicas": 1,
        "max_replicas": 1,
    }
    return make_plan(**{**cpu, **changes})


def args_for(plan: DeploymentPlan, **changes: Any) -> InferenceServiceArgs:
    fields: dict[str, Any] = {
        "deployment": plan,
        "namespace": "llmfleet",
        "queue_threshold": 3,
        "prometheus_url": PROMETHEUS,
        "node_selector": {"llmfleet.dev/model": plan.model},
        "tolerations": [k8s.core.v1.TolerationArgs(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
    }
    fields.update(changes)
    return InferenceServiceArgs(**fields)


def serve(plan: DeploymentPlan, redacted: bool = True, **changes: Any) -> dict[str, dict[str, Any]]:
    resources = record(lambda: InferenceService(f"aws-us-east-1-{plan.model}", args_for(plan, **changes)))
    return manifests(resources, redacted)
