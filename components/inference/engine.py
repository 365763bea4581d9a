"""What an inference engine needs from Kubernetes: image, arguments, cache path, health and queue metric.

Each engine module (`vllm.py`, `llamacpp.py`) turns a DeploymentPlan into an `EngineSpec`; the
`InferenceService` component turns an `EngineSpec` into a Deployment the same way for every engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache

from llmfleet.components.sizing.catalog import load_catalog
from llmfleet.components.sizing.memory import LINEAR_BITS
from llmfleet.components.sizing.plan import DeploymentPlan
from llmfleet.components.sizing.types import Quantization

HEALTH_PATH = "/health"
"""Both servers answer 200 on /health once the model is loaded (503 or no answer before)."""
PORT = 8000
"""The servers' API port, which also serves /health and /metrics."""
SERVER_LABELS = {"app.kubernetes.io/component": "inference", "app.kubernetes.io/part-of": "llmfleet"}
"""Labels every model server's pods and Service carry, whatever the model or revision: what the gateway's
NetworkPolicies, the ServiceMonitor and the policy pack select model servers by (InferenceService.server_selector)."""


@dataclass(frozen=True)
class EngineSpec:
    """One engine's container, as plain values (no Pulumi types: easy to test and to reuse)."""

    image: str
    """Pinned image reference (never `latest`)."""
    args: list[str]
    """Server arguments, all taken from the plan."""
    cache_path: str
    """Where downloaded weights go; the model-cache volume mounts here."""
    queue_metric: str
    """Prometheus gauge of requests waiting for a free slot (what KEDA scales on)."""
    queue_selector: dict[str, str]
    """Labels, besides namespace, that pick this model's series of `queue_metric`."""
    gpus: int
    """nvidia.com/gpu per pod (0: CPU serving)."""
    env: dict[str, str] = field(default_factory=dict[str, str])
    """Extra environment variables (the HF token is added by the component, from its Secret)."""
    memory_request_gib: int | None = None
    """Memory the scheduler must find on a node (CPU serving holds weights and KV cache in RAM)."""
    shared_memory: bool = False
    """Mount a memory-backed /dev/shm (vLLM's workers exchange tensors through it)."""


def object_name(plan: DeploymentPlan) -> str:
    """Name of the model's Deployment, Service and ScaledObject: its served name (a DNS label).

    Fixed rather than auto-named so the in-cluster URL, the gateway's backends and the metrics
    selectors can be written down (`http://<model>.<namespace>.svc.cluster.local:8000`). A part of a
    deployed GPU mix is `<model>-<part>` (its GPU), beside the other part.
    """
    return plan.model + (f"-{plan.part}" if plan.part else "")


def group_name(plan: DeploymentPlan) -> str:
    """Name of what serves the model as a whole: the object name, or a mix's name shared by both parts."""
    return plan.model


def weights_gib(plan: DeploymentPlan) -> float:
    """Weights of one replica, GiB: the plan's per-GPU share times the GPUs (the whole model on CPU)."""
    return plan.memory.weights_gib_per_gpu * max(1, plan.gpus_per_replica)


@cache
def catalog_repos() -> frozenset[str]:
    """The model catalog's repositories: each publishes its model as trained, in bf16 (models.yaml)."""
    return frozenset(entry.hf_repo for entry in load_catalog().models.values())


def checkpoint_format(plan: DeploymentPlan) -> Quantization:
    """The format of the weights the engine downloads from `plan.hf_repo`.

    A catalog repository holds bf16 weights whatever the plan serves (vLLM quantizes fp8 on load);
    any other repository is trusted to hold the plan's format (a pre-quantized AWQ/GPTQ/INT8/FP8
    checkpoint, or a GGUF repository whose file of that quantization llama.cpp picks).
    """
    if plan.hf_repo in catalog_repos() and not plan.quantization.is_gguf:
        return Quantization.BF16
    return plan.quantization


def checkpoint_gib(plan: DeploymentPlan) -> float:
    """GiB the engine downloads and reads: one replica's weights rescaled from the served format to the
    checkpoint's (e.g. 70B served fp8 from its bf16 repository: 66 GiB in memory, 131 GiB on disk).

    Rescaling the whole figure also doubles the embeddings, which stay 16-bit in fp8: a few GiB of
    headroom, never too little."""
    return weights_gib(plan) * LINEAR_BITS[checkpoint_format(plan)] / LINEAR_BITS[plan.quantization]


STARTUP_FIXED_S = 180
"""Engine start before and after the weights move: CUDA context, profiling run, CUDA graph capture."""
STARTUP_S_PER_GIB = 12
"""Download at about 100 MiB/s from the HuggingFace Hub (10 s/GiB) plus reading into memory (~2 s/GiB)."""


def startup_budget_s(plan: DeploymentPlan) -> int:
    """Seconds a new pod may take to answer /health before Kubernetes restarts it.

    A cold pod downloads the checkpoint (the model cache is empty on a fresh volume), loads it and
    warms up. Budget = 180 s + 12 s per GiB of checkpoint, e.g. about 6 min for an 8B model in bf16
    (15 GiB) and 29 min for a 70B model served fp8 from its bf16 repository (131 GiB downloaded).
    These are conservative assumptions, not measurements: a pod that needs longer is restarted and
    starts over, so too short is worse than too long; the liveness probe takes over once the pod is up.
    """
    return STARTUP_FIXED_S + math.ceil(STARTUP_S_PER_GIB * checkpoint_gib(plan))
