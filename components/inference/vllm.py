"""vLLM's OpenAI-compatible server (`vllm/vllm-openai`), configured entirely from a DeploymentPlan."""

from __future__ import annotations

from collections.abc import Sequence

from llmfleet.components import pins
from llmfleet.components.inference.engine import EngineSpec, checkpoint_format
from llmfleet.components.sizing.errors import PlanningError
from llmfleet.components.sizing.plan import DeploymentPlan
from llmfleet.components.sizing.types import Quantization

IMAGE = pins.table().get(pins.Kind.IMAGE, "vllm").name
CACHE_PATH = "/root/.cache/huggingface"
"""HF_HOME of the image (it runs as root): weights downloaded here survive container restarts."""

DTYPE_FLAG = {Quantization.BF16: "bfloat16", Quantization.FP16: "float16"}
"""Unquantized formats set the weights' dtype."""

QUANTIZATION_FLAG = {Quantization.FP8: "fp8"}
"""`--quantization fp8` quantizes a bf16 checkpoint on load (weight-only on Ampere) and also reads a
checkpoint saved in vLLM's `fp8` format. AWQ, GPTQ and INT8 (W8A8) need a pre-quantized checkpoint
(`Quantization.needs_prequantized_weights`) whose `quantization_config` vLLM reads itself, choosing the fast
Marlin kernels; naming the method explicitly (`--quantization awq`) would force the slower generic kernel
(vllm model_executor/layers/quantization/awq_marlin.py, `override_quantization_method`). Use
`extra_args` to force a method."""


def image(plan: DeploymentPlan) -> str:
    if plan.engine_version.strip() in ("", "latest"):
        raise PlanningError(
            f"model {plan.model}: engine version {plan.engine_version!r} is not a pinned image tag; "
            "set overrides.engine_version to a release tag such as v0.11.0"
        )
    return f"{IMAGE}:{plan.engine_version}"


def args(plan: DeploymentPlan, port: int) -> list[str]:
    """`vllm serve` arguments, each from the plan. `--model` is accepted by both the old
    (`python -m vllm.entrypoints.openai.api_server`) and new (`vllm serve`) image entrypoints."""
    if not plan.hf_repo:
        raise PlanningError(
            f"model {plan.model}: no weights repository to serve; set models[].hf_repo in the stack file"
        )
    if plan.quantization.needs_prequantized_weights and checkpoint_format(plan) is not plan.quantization:
        raise PlanningError(
            f"model {plan.model}: {plan.hf_repo} holds bf16 weights and vLLM cannot quantize them to "
            f"{plan.quantization.value} on load; set models[].hf_repo to a repository of "
            f"{plan.quantization.value.upper()} weights for this model, or serve it as fp8 or bf16"
        )
    flags = [
        f"--model={plan.hf_repo}",
        f"--served-model-name={plan.model}",
        f"--port={port}",
        f"--tensor-parallel-size={plan.tensor_parallel}",
        f"--pipeline-parallel-size={plan.pipeline_parallel}",
        f"--max-model-len={plan.max_model_len}",
        f"--gpu-memory-utilization={plan.gpu_memory_utilization}",
        f"--kv-cache-dtype={plan.kv_cache_dtype.value}",
        f"--max-num-batched-tokens={plan.max_num_batched_tokens}",
        f"--max-num-seqs={plan.max_num_seqs}",
        # Reuse the KV cache of shared prefixes (the default since V1; explicit because prefix-aware
        # routing depends on it), and report cached prompt tokens in `usage` so a load test can
        # measure the hit share the routing achieves.
        "--enable-prefix-caching",
        "--enable-prompt-tokens-details",
    ]
    if plan.quantization in DTYPE_FLAG:
        flags.append(f"--dtype={DTYPE_FLAG[plan.quantization]}")
    if plan.quantization in QUANTIZATION_FLAG:
        flags.append(f"--quantization={QUANTIZATION_FLAG[plan.quantization]}")
    return flags + lora_args(plan)


def lora_args(plan: DeploymentPlan) -> list[str]:
    """LoRA adapters, each served under its own name (`name=repo`: vLLM downloads a HuggingFace repository like the
    base weights). --max-loras GPU slots of --max-lora-rank are what the plan sized; every adapter stays in CPU
    memory (--max-cpu-loras) and is swapped into a slot when a batch needs it. Flags: vllm/config/lora.py and the
    OpenAI server's --lora-modules ('name=path' format)."""
    if not plan.adapters:
        return []
    return [
        "--enable-lora",
        f"--max-loras={plan.max_loras}",
        f"--max-lora-rank={plan.max_lora_rank}",
        f"--max-cpu-loras={len(plan.adapters)}",
        "--lora-modules",
        *(f"{a.name}={a.hf_repo}" for a in plan.adapters),
    ]


def engine_spec(plan: DeploymentPlan, port: int, extra_args: Sequence[str] = ()) -> EngineSpec:
    """A vLLM pod serving one replica: all of its GPUs on one node (tensor x pipeline parallel)."""
    if plan.gpus_per_replica > plan.gpus_per_node:
        raise PlanningError(
            f"model {plan.model}: a replica needs {plan.gpus_per_replica} GPUs but a {plan.instance_type} "
            f"node has {plan.gpus_per_node}; multi-node replicas are not supported yet: pin overrides.gpu "
            "or overrides.instance_type to a larger node"
        )
    return EngineSpec(
        image=image(plan),
        args=[*args(plan, port), *extra_args],
        cache_path=CACHE_PATH,
        queue_metric="vllm:num_requests_waiting",
        queue_selector={"model_name": plan.model},
        gpus=plan.gpus_per_replica,
        shared_memory=True,
    )
