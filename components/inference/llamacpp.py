"""llama.cpp's server (`llama-server`) for GGUF models on CPU nodes, configured from a DeploymentPlan."""

from __future__ import annotations

import math
from collections.abc import Sequence

from llmfleet.components import pins
from llmfleet.components.inference.engine import EngineSpec, object_name
from llmfleet.components.sizing.errors import PlanningError
from llmfleet.components.sizing.plan import DeploymentPlan

IMAGE = pins.table().get(pins.Kind.IMAGE, "llama.cpp-server").name
"""Server images: tags `server-b<build>` (CPU) and `server-cuda-b<build>` (CUDA), entrypoint llama-server."""
CACHE_PATH = "/models"
GIB = 1024**3


def image(plan: DeploymentPlan) -> str:
    """The plan's engine version is a llama.cpp build (`b11063`): image `server-b11063`, `server-cuda-b11063` on GPU."""
    version = plan.engine_version.strip()
    if version in ("", "latest", "server"):
        raise PlanningError(
            f"model {plan.model}: engine version {plan.engine_version!r} is not a pinned llama.cpp release; "
            "set overrides.engine_version to a build tag such as b6500"
        )
    flavour = "server-cuda" if plan.gpu else "server"
    return f"{IMAGE}:{flavour}-{version.removeprefix('server-').removeprefix('cuda-')}"


def args(plan: DeploymentPlan, port: int) -> list[str]:
    """llama-server arguments, each from the plan.

    `--hf-repo <repo>:<QUANT>` downloads the GGUF file of that quantization from the repository;
    `--parallel` slots each hold one sequence and `--ctx-size` is the KV cache of all slots together,
    so it is `max_model_len` per slot; `--metrics` exposes the Prometheus gauges the autoscaler reads.
    """
    if not plan.hf_repo:
        raise PlanningError(
            f"model {plan.model}: no GGUF repository to serve; set models[].hf_repo in the stack file "
            "(e.g. bartowski/Llama-3.2-1B-Instruct-GGUF)"
        )
    flags = [
        f"--hf-repo={plan.hf_repo}:{plan.quantization.value.upper()}",
        f"--alias={plan.model}",
        "--host=0.0.0.0",
        f"--port={port}",
        f"--ctx-size={plan.max_model_len * plan.max_num_seqs}",
        f"--parallel={plan.max_num_seqs}",
        f"--batch-size={plan.max_num_batched_tokens}",
        "--metrics",
    ]
    if plan.gpu:
        flags.append("--n-gpu-layers=999")  # every layer on the GPU the plan pinned
    return flags


def memory_gib(plan: DeploymentPlan) -> float:
    """What llama-server allocates, from the plan's split: the weights, the KV cache of its slots
    (`--ctx-size` tokens; the plan's KV budget is the whole node's spare RAM, more than the slots
    use) and its compute buffer (the plan's activation figure, which includes the runtime)."""
    slots_kv = plan.max_model_len * plan.max_num_seqs * plan.memory.kv_bytes_per_token / GIB
    return plan.memory.weights_gib_per_gpu + slots_kv + plan.memory.activation_gib_per_gpu


def engine_spec(plan: DeploymentPlan, port: int, extra_args: Sequence[str] = ()) -> EngineSpec:
    """A CPU pod asks the scheduler for the RAM it will hold; a pinned GPU is requested instead."""
    return EngineSpec(
        image=image(plan),
        args=[*args(plan, port), *extra_args],
        cache_path=CACHE_PATH,
        env={"LLAMA_CACHE": CACHE_PATH},
        queue_metric="llamacpp:requests_deferred",
        # llama-server labels no series with the model: the scrape adds `service` (its Service's name).
        queue_selector={"service": object_name(plan)},
        gpus=plan.gpus_per_replica if plan.gpu else 0,
        memory_request_gib=None if plan.gpu else math.ceil(memory_gib(plan)),
    )
