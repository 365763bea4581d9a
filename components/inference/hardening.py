"""How an inference pod is locked down and sized, as plain values (no Pulumi import).

What each engine image allows (read from the image's Dockerfile, see docs/security.md):
- vLLM (`vllm/vllm-openai`, docker/Dockerfile): no USER, so it runs as root, and it keeps its caches under
  root's home (`HF_HOME` /root/.cache/huggingface; Triton, torch.compile and FlashInfer JIT caches under
  ~/.cache and ~/.triton; usage stats under ~/.config). Root stays, with every capability dropped, no
  privilege escalation and the runtime's seccomp profile; the root filesystem stays writable, since the
  set of cache paths the JIT compilers write is not fixed.
- llama.cpp (`ghcr.io/ggml-org/llama.cpp:server-*`, .devops/cpu.Dockerfile and cuda.Dockerfile): no USER
  either, but `llama-server` is one binary that writes only to `LLAMA_CACHE` (the model-cache volume), so
  it runs as an unprivileged uid with a read-only root filesystem and a small writable /tmp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llmfleet.components.sizing.catalog import load_catalog
from llmfleet.components.sizing.plan import DeploymentPlan
from llmfleet.components.sizing.types import Engine

API_KEY_SECRET_KEY = "apiKey"
"""Key of the engine-key Secret: the AI Gateway's BackendSecurityPolicy reads the same Secret by this key."""
API_KEY_ENV = {Engine.VLLM: "VLLM_API_KEY"}
"""vLLM reads the key its API then requires from the environment only (envs.VLLM_API_KEY; or a flag, which
the process list shows); it checks it on /v1 paths, so the probes (/health) and the scrape need none."""
API_KEY_FILE_FLAG = {Engine.LLAMA_CPP: "--api-key-file"}
"""llama-server reads its keys from a file (common/arg.cpp `--api-key-file`, one key per line). It checks them
on every path but /health and the model list, so its scrape sends the key (ObservabilityArgs.inference_scrape_key)."""
API_KEY_DIR = "/var/run/llmfleet/engine-key"
"""Where the engine-key Secret is mounted for servers that read the key from a file."""

NON_ROOT_UID = 65532
"""The uid (and fsGroup) images without a user of their own run as: no account in the image, no privileges."""


@dataclass(frozen=True)
class ImageProfile:
    run_as_user: int | None
    """A uid to run as, or None: the image's own user (root for these images)."""
    read_only_root: bool
    """The image writes nowhere but its mounted volumes, so the root filesystem can be read-only."""
    writable_paths: tuple[str, ...] = ()
    """emptyDir mounts a read-only image still needs (scratch space)."""


PROFILES = {
    Engine.VLLM: ImageProfile(run_as_user=None, read_only_root=False),
    Engine.LLAMA_CPP: ImageProfile(run_as_user=NON_ROOT_UID, read_only_root=True, writable_paths=("/tmp",)),
}

HOST_SHARE = 0.75
"""Of a replica's share of the node's vCPUs and RAM, what its pod requests: the rest is left to the kubelet's
reservations and the per-node agents (CNI, device plugin, dcgm-exporter, kube-proxy)."""
CPU_SERVING_CPU_SHARE = 0.5
"""A CPU-serving pod requests half its share of the vCPUs: llama-server uses every core it sees anyway, and
on a laptop cluster the gateway, KEDA and monitoring share the node."""
SHM_BASE_GIB = 2
"""/dev/shm for one GPU (vLLM's Kubernetes deployment example sizes it 2Gi); the tensor-parallel workers'
NCCL buffers and the multiprocessing queues add 1 GiB per further GPU."""


def shm_gib(plan: DeploymentPlan) -> int:
    return SHM_BASE_GIB + max(plan.gpus_per_replica - 1, 0)


def host_share(plan: DeploymentPlan) -> float:
    """The fraction of a node one replica occupies: its GPUs of the node's, or one of `replicas_per_node`."""
    if plan.gpus_per_node:
        return plan.gpus_per_replica / plan.gpus_per_node
    return 1 / max(plan.replicas_per_node, 1)


@dataclass(frozen=True)
class PodRequests:
    cpu_millis: int
    memory_gib: int


def pod_requests(plan: DeploymentPlan, model_memory_gib: int | None) -> PodRequests:
    """CPU and memory the scheduler must find for one replica, from the plan's instance type.

    GPU serving: three quarters of the replica's share of the node's vCPUs and RAM (the engine holds its
    weights in GPU memory, but loads them through host RAM and keeps /dev/shm there). CPU serving: the
    memory the model needs (`model_memory_gib`, the engine's own figure) and half its share of the vCPUs.
    Never BestEffort: a pod without requests is the first evicted under memory pressure.
    """
    instance = load_catalog().instances.get(plan.instance_type)
    vcpu, ram = (instance.vcpu, instance.ram_gib) if instance is not None else (1, 1.0)
    share = host_share(plan)
    if plan.gpu is None and model_memory_gib is not None:
        return PodRequests(max(1000, int(vcpu * share * CPU_SERVING_CPU_SHARE) * 1000), model_memory_gib)
    memory = max(math.floor(ram * share * HOST_SHARE), shm_gib(plan) + 1)
    return PodRequests(max(1000, math.floor(vcpu * share * HOST_SHARE) * 1000), memory)
