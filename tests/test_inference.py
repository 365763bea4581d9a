"""InferenceService: engine arguments from the plan, probes, rollout, cache, secrets, KEDA scaling.

Components run under the offline engine's RecordingMocks; every object they create must also pass the
schema validation the API server would apply (infra.render.validate).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pytest
from support.inference import PROMETHEUS, args_for, gguf_plan, make_plan, manifests, record, serve

from llmfleet.components.inference import InferenceService, ModelCache, waiting_requests_threshold
from llmfleet.components.inference.autoscaling import queue_query
from llmfleet.components.inference.engine import checkpoint_gib, startup_budget_s
from llmfleet.components.inference.service import cache_size_gi
from llmfleet.components.sizing.errors import PlanningError
from llmfleet.components.sizing.plan import DeploymentPlan
from llmfleet.components.sizing.types import KvCacheDtype, Quantization
from llmfleet.infra.config import ConfigError, parse_deployment
from llmfleet.infra.planning import build_plan
from llmfleet.infra.render.offline import RecordingMocks, RecordingMonitor
from llmfleet.infra.render.validate import validate_manifest


def container(objects: dict[str, dict[str, Any]], name: str = "chat") -> dict[str, Any]:
    return objects[f"Deployment/{name}"]["spec"]["template"]["spec"]["containers"][0]


def test_vllm_arguments_come_from_the_plan() -> None:
    plan = make_plan(tensor_parallel=2, gpus_per_replica=2, gpus_per_node=4, kv_cache_dtype=KvCacheDtype.FP8)
    server = container(serve(plan))
    assert server["image"] == "vllm/vllm-openai:v0.11.0"
    assert server["args"] == [
        "--model=meta-llama/Llama-3.1-8B-Instruct",
        "--served-model-name=chat",
        "--port=8000",
        "--tensor-parallel-size=2",
        "--pipeline-parallel-size=1",
        "--max-model-len=8192",
        "--gpu-memory-utilization=0.92",
        "--kv-cache-dtype=fp8",
        "--max-num-batched-tokens=8192",
        "--max-num-seqs=64",
        "--enable-prefix-caching",
        "--enable-prompt-tokens-details",
        "--dtype=bfloat16",
    ]
    assert server["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert server["resources"]["requests"]["nvidia.com/gpu"] == "2"


PREQUANTIZED_REPO = "example-org/Llama-3.1-8B-Instruct-quantized"
"""Not the catalog's repository: trusted to hold weights in the plan's format."""


@pytest.mark.parametrize(
    ("quantization", "present", "absent"),
    [
        (Quantization.FP8, "--quantization=fp8", "--dtype"),
        (Quantization.FP16, "--dtype=float16", "--quantization"),
        (Quantization.AWQ, None, "--quantization"),
        (Quantization.GPTQ, None, "--quantization"),
        (Quantization.INT8, None, "--quantization"),
    ],
)
def test_quantization_flags(quantization: Quantization, present: str | None, absent: str) -> None:
    server_args = container(serve(make_plan(quantization=quantization, hf_repo=PREQUANTIZED_REPO)))["args"]
    if present:
        assert present in server_args
    assert not any(a.startswith(absent) for a in server_args), server_args


def test_extra_args_come_last_so_they_win() -> None:
    server_args = container(serve(make_plan(), extra_args=["--enable-prefix-caching", "--max-num-seqs=32"]))["args"]
    assert server_args[-2:] == ["--enable-prefix-caching", "--max-num-seqs=32"]


def test_pod_schedules_onto_its_pool_and_rolls_out_without_losing_capacity() -> None:
    objects = serve(make_plan())
    deployment = objects["Deployment/chat"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"llmfleet.dev/model": "chat"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert deployment["spec"]["replicas"] == 2
    shm = next(v for v in pod["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}, "sized, not half the node's RAM"
    assert objects["PodDisruptionBudget/chat"]["spec"] == {
        "maxUnavailable": 1,
        "selector": deployment["spec"]["selector"],
    }, "two planned replicas: a drain takes one at a time"
    service = objects["Service/chat"]["spec"]
    assert service["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
    assert service["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_vllm_pods_are_locked_down_as_far_as_the_image_allows_and_sized_from_the_host() -> None:
    objects = serve(make_plan())  # one L40S on a g6e.xlarge: 4 vCPUs, 32 GiB
    pod = objects["Deployment/chat"]["spec"]["template"]["spec"]
    server = container(objects)
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}, "root: the image's user"
    assert server["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": False,
    }
    # three quarters of the node (one GPU of one): 3 of 4 vCPUs, 24 of 32 GiB
    assert server["resources"]["requests"] == {"nvidia.com/gpu": "1", "cpu": "3000m", "memory": "24Gi"}
    assert server["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    spread = pod["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in spread] == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    assert all(
        c["labelSelector"]["matchLabels"] == objects["Deployment/chat"]["spec"]["selector"]["matchLabels"]
        for c in spread
    )
    quarter = serve(make_plan(instance_type="g6e.12xlarge", gpus_per_node=4, gpus_per_replica=2, tensor_parallel=2))
    requests = container(quarter)["resources"]["requests"]
    assert (requests["cpu"], requests["memory"]) == ("18000m", "144Gi"), "half of 48 vCPUs / 384 GiB, x 0.75"
    shm = next(v for v in quarter["Deployment/chat"]["spec"]["template"]["spec"]["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"]["sizeLimit"] == "3Gi"


def test_a_one_replica_model_keeps_its_replica_through_a_drain() -> None:
    objects = serve(make_plan(replicas=1, min_replicas=1, nodes=1))
    budget = objects["PodDisruptionBudget/chat"]["spec"]
    assert budget["minAvailable"] == 1 and "maxUnavailable" not in budget


class OptionsMonitor(RecordingMonitor):
    """Also keeps each registration's ignoreChanges (resource options the mocks do not record)."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.ignore_changes: dict[str, list[str]] = {}

    def RegisterResource(self, request: Any) -> Any:
        self.ignore_changes[request.name] = list(request.ignoreChanges)
        return super().RegisterResource(request)


def test_replicas_are_left_to_keda() -> None:
    mocks = RecordingMocks()
    monitor = OptionsMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="llmfleet", stack="test", preview=False, monitor=monitor)
    pulumi.runtime.test(lambda: InferenceService("aws-us-east-1-chat", args_for(make_plan())) and None)()
    assert monitor.ignore_changes["aws-us-east-1-chat-deployment"] == ["spec.replicas"]
    assert monitor.ignore_changes["aws-us-east-1-chat-service"] == []


def test_probes_give_model_loading_a_budget_that_grows_with_the_weights() -> None:
    small, large = make_plan(), make_plan(memory=make_plan().memory.model_copy(update={"weights_gib_per_gpu": 66.0}))
    assert startup_budget_s(large) > startup_budget_s(small) + 500
    server = container(serve(large))
    startup = server["startupProbe"]
    assert startup["httpGet"] == {"path": "/health", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= startup_budget_s(large)
    assert server["readinessProbe"]["httpGet"]["path"] == "/health"
    assert server["livenessProbe"]["httpGet"]["path"] == "/health"


def test_hf_token_stays_secret_from_input_to_pod() -> None:
    token = pulumi.Output.secret("hf_live_token")
    resources = record(lambda: InferenceService("aws-us-east-1-chat", args_for(make_plan(), hf_token=token)))
    secret = next(r for r in resources if r.type == "kubernetes:core/v1:Secret")
    # pulumi-kubernetes marks a Secret's whole stringData secret; the token must be inside it.
    assert secret.secret_fields & {"stringData", "stringData.token"}, secret.secret_fields
    assert "hf_live_token" not in str(manifests(resources, redacted=True))
    env = container(manifests(resources))["env"]
    assert env == [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "chat-hf-token", "key": "token"}}},
    ]


def test_without_token_there_is_no_secret_and_no_env() -> None:
    objects = serve(make_plan())
    assert not [k for k in objects if k.startswith("Secret/")]
    assert "env" not in container(objects)


def test_scaled_object_scales_on_the_queue_between_plan_bounds() -> None:
    objects = serve(make_plan(min_replicas=1, max_replicas=6), queue_threshold=5)
    spec = objects["ScaledObject/chat"]["spec"]
    assert spec["scaleTargetRef"]["name"] == "chat"
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 6)
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"] == {
        "serverAddress": PROMETHEUS,
        "query": 'sum(vllm:num_requests_waiting{namespace="llmfleet",model_name="chat"})',
        "threshold": "5",
    }


def test_threshold_follows_the_ttft_slo() -> None:
    plan = make_plan(output_tokens_per_s_per_replica=2000.0)
    # 2000 tok/s / 256 tokens = 7.8 req/s; half of 800 ms queued -> 3.1 -> 3 waiting requests.
    assert waiting_requests_threshold(plan, 256, 800) == 3
    assert waiting_requests_threshold(plan, 256, 4000) == 15
    assert waiting_requests_threshold(plan, 4096, 200) == 1  # never 0: KEDA would scale on any queue


def test_every_object_validates_against_its_schema() -> None:
    for cache in ModelCache:
        for plan in (make_plan(), gguf_plan()):
            # Unredacted: a redacted secret is a placeholder string where the schema wants an object.
            objects = serve(plan, redacted=False, hf_token=pulumi.Output.secret("t"), model_cache=cache)
            problems = [p for manifest in objects.values() for p in validate_manifest(manifest)]
            assert problems == [], problems


def test_model_cache_modes() -> None:
    per_replica = serve(make_plan())
    volume = next(
        v for v in per_replica["Deployment/chat"]["spec"]["template"]["spec"]["volumes"] if v["name"] == "model-cache"
    )
    claim = volume["ephemeral"]["volumeClaimTemplate"]["spec"]
    assert claim["accessModes"] == ["ReadWriteOnce"]
    assert claim["resources"]["requests"]["storage"] == "24Gi"  # 15 GiB x 1.25 + 5, rounded up
    assert not [k for k in per_replica if k.startswith("PersistentVolumeClaim/")]
    shared = serve(make_plan(), model_cache=ModelCache.SHARED, model_cache_storage_class="efs")
    pvc = shared["PersistentVolumeClaim/chat-model-cache"]["spec"]
    assert pvc["accessModes"] == ["ReadWriteMany"] and pvc["storageClassName"] == "efs"
    single = serve(make_plan(), model_cache=ModelCache.SINGLE_NODE)
    assert single["PersistentVolumeClaim/chat-model-cache"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    mount = container(single)["volumeMounts"][0]
    assert mount == {"name": "model-cache", "mountPath": "/root/.cache/huggingface"}


def test_llama_cpp_serves_gguf_on_cpu() -> None:
    objects = serve(gguf_plan(), node_selector={}, tolerations=[])
    server = container(objects, "tiny")
    assert server["image"] == "ghcr.io/ggml-org/llama.cpp:server-b6500"
    assert server["args"] == [
        "--hf-repo=bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
        "--alias=tiny",
        "--host=0.0.0.0",
        "--port=8000",
        "--ctx-size=16384",
        "--parallel=4",
        "--batch-size=2048",
        "--metrics",
    ]
    assert "nvidia.com/gpu" not in str(server["resources"])
    # weights 15 GiB + 4 slots x 4096 tokens x 128 KiB (2 GiB) + compute buffer 1.5 GiB, rounded up
    assert server["resources"]["requests"]["memory"] == "19Gi"
    assert {"name": "LLAMA_CACHE", "value": "/models"} in server["env"]
    pod = objects["Deployment/tiny"]["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert not [v for v in pod["volumes"] if v["name"] == "shm"]
    # llama-server writes only to LLAMA_CACHE: an unprivileged uid, a read-only root and a scratch /tmp
    assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["fsGroup"] == 65532
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True, "checked for every container of the pod"
    assert {"name": "scratch-0", "mountPath": "/tmp"} in server["volumeMounts"]
    assert server["resources"]["requests"]["cpu"] == "2000m", "half of the 4 vCPUs its one replica per node has"
    spec = objects["ScaledObject/tiny"]["spec"]
    assert spec["minReplicaCount"] == 1
    assert spec["triggers"][0]["metadata"]["query"] == queue_query(
        "llamacpp:requests_deferred", "llmfleet", {"service": "tiny"}
    )


def test_llama_cpp_on_a_gpu_runs_the_pinned_cuda_image() -> None:
    """A GGUF plan on a GPU type (the planner chooses them now) runs the CUDA image row of the pins table."""
    from llmfleet.components import pins

    default = gguf_plan(gpu="H100", gpus_per_node=1, gpus_per_replica=1, engine_version=pins.engine("llama.cpp"))
    assert container(serve(default), "tiny")["image"] == pins.image("llama.cpp-server-cuda")


def test_llama_cpp_on_a_pinned_gpu_uses_the_cuda_image() -> None:
    server = container(serve(gguf_plan(gpu="L4", gpus_per_node=1, gpus_per_replica=1)), "tiny")
    assert server["image"] == "ghcr.io/ggml-org/llama.cpp:server-cuda-b6500"
    assert server["args"][-1] == "--n-gpu-layers=999"
    assert server["resources"]["limits"] == {"nvidia.com/gpu": "1"}


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (make_plan(engine_version="latest"), "overrides.engine_version"),
        (make_plan(hf_repo=None), "models[].hf_repo"),
        (make_plan(gpus_per_replica=16, tensor_parallel=8, pipeline_parallel=2, gpus_per_node=8), "multi-node"),
        (gguf_plan(engine_version="latest"), "overrides.engine_version"),
        (gguf_plan(hf_repo=None), "models[].hf_repo"),
        # The catalog's repository holds bf16 weights, which vLLM cannot turn into AWQ/GPTQ/INT8 on load.
        (make_plan(quantization=Quantization.AWQ), "models[].hf_repo"),
        (make_plan(quantization=Quantization.INT8), "models[].hf_repo"),
        # At zero replicas nothing exports the queue metric: KEDA could never wake the model.
        (make_plan(min_replicas=0), "scale to zero is not supported"),
        (gguf_plan(min_replicas=0), "scale to zero is not supported"),
    ],
)
def test_unservable_plans_fail_with_the_field_to_fix(plan: DeploymentPlan, message: str) -> None:
    with pytest.raises(PlanningError, match=message.replace("[", r"\[").replace("]", r"\]")):
        InferenceService("x", args_for(plan))


def seventy_b(**changes: Any) -> DeploymentPlan:
    """Llama-3.3-70B served fp8 on two H100s: 33 GiB of weights per GPU, 66 GiB in memory."""
    memory = make_plan().memory.model_copy(update={"weights_gib_per_gpu": 33.0})
    fields: dict[str, Any] = {
        "model": "llama-70b",
        "model_id": "llama-3.3-70b",
        "hf_repo": "meta-llama/Llama-3.3-70B-Instruct",
        "quantization": Quantization.FP8,
        "gpus_per_replica": 2,
        "gpus_per_node": 2,
        "tensor_parallel": 2,
        "memory": memory,
    }
    return make_plan(**{**fields, **changes})


BF16_70B_CHECKPOINT_GIB = 141.1e9 / 1024**3
"""The bf16 checkpoint of a 70.55B-parameter model: 2 bytes a parameter (131.4 GiB)."""


def cache_claim_gi(objects: dict[str, dict[str, Any]], name: str) -> int:
    volumes = objects[f"Deployment/{name}"]["spec"]["template"]["spec"]["volumes"]
    claim = next(v for v in volumes if v["name"] == "model-cache")["ephemeral"]["volumeClaimTemplate"]["spec"]
    return int(claim["resources"]["requests"]["storage"].removesuffix("Gi"))


def test_cache_and_startup_are_sized_from_the_download_not_the_served_weights() -> None:
    from_catalog = seventy_b()  # the catalog's bf16 repository, quantized to fp8 by vLLM on load
    objects = serve(from_catalog)
    assert checkpoint_gib(from_catalog) >= BF16_70B_CHECKPOINT_GIB
    assert cache_claim_gi(objects, "llama-70b") >= BF16_70B_CHECKPOINT_GIB * 1.2
    startup = container(objects, "llama-70b")["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 180 + 12 * BF16_70B_CHECKPOINT_GIB
    # A repository the stack names is trusted to hold fp8 weights: half the download.
    prequantized = seventy_b(hf_repo="example-org/Llama-3.3-70B-Instruct-FP8")
    assert checkpoint_gib(prequantized) == pytest.approx(66.0)
    assert cache_size_gi(prequantized) == 88  # 66 x 1.25 + 5
    assert startup_budget_s(prequantized) < startup_budget_s(from_catalog) - 700


@pytest.mark.parametrize(
    ("plan", "download_gib"),
    [
        (make_plan(), 15.0),  # bf16 served as published
        (make_plan(quantization=Quantization.FP16), 15.0),  # cast on load, same bytes
        (make_plan(quantization=Quantization.AWQ, hf_repo=PREQUANTIZED_REPO), 15.0),  # pre-quantized: as served
        (gguf_plan(), 15.0),  # the GGUF file is the quantized weights
    ],
)
def test_checkpoint_equals_the_served_weights_when_nothing_is_quantized_on_load(
    plan: DeploymentPlan, download_gib: float
) -> None:
    assert checkpoint_gib(plan) == pytest.approx(download_gib)


def stack(model: dict[str, Any]) -> dict[str, Any]:
    base = {"name": "chat", "model": "llama-3.1-8b", "load": {"concurrent_sequences": 8}}
    return {
        "models": [{**base, **model}],
        "regions": [{"cloud": "aws", "region": "us-east-1", "role": "primary"}],
        "api_access_cidrs": ["203.0.113.0/24"],
    }


@pytest.mark.parametrize("quantization", ["awq", "gptq", "int8"])
@pytest.mark.parametrize("hf_repo", [None, "meta-llama/Llama-3.1-8B-Instruct"])
def test_plan_refuses_prequantized_formats_from_the_bf16_catalog_repo(quantization: str, hf_repo: str | None) -> None:
    model: dict[str, Any] = {"quantization": quantization} | ({"hf_repo": hf_repo} if hf_repo else {})
    spec = parse_deployment(stack(model), "test")
    with pytest.raises(ConfigError) as caught:
        build_plan("test", spec)
    message = str(caught.value)
    assert message.startswith("llmfleet:deployment.models[0].hf_repo: "), message
    assert f"repository of {quantization.upper()} weights for llama-3.1-8b" in message


def test_plan_trusts_a_repository_the_stack_names_for_prequantized_weights() -> None:
    spec = parse_deployment(stack({"quantization": "awq", "hf_repo": PREQUANTIZED_REPO}), "test")
    (deployment,) = build_plan("test", spec).deployments
    assert (deployment.quantization, deployment.hf_repo) == (Quantization.AWQ, PREQUANTIZED_REPO)


@pytest.mark.parametrize(
    ("autoscaling", "field"),
    [({"scale_to_zero": True}, "scale_to_zero"), ({"min_replicas": 0}, "min_replicas")],
)
def test_stack_refuses_scale_to_zero_naming_the_field(autoscaling: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_deployment(stack({"autoscaling": autoscaling}), "test")
    message = str(caught.value)
    assert f"models[0].autoscaling.{field}" in message and "never wake up" in message, message


def test_the_service_publishes_the_labels_port_and_health_path_its_objects_carry() -> None:
    built: list[InferenceService] = []
    objects = manifests(record(lambda: built.append(InferenceService("aws-us-east-1-chat", args_for(make_plan())))))
    (service,) = built
    pod = objects["Deployment/chat"]["spec"]["template"]
    server = pod["spec"]["containers"][0]
    assert pod["metadata"]["labels"] == service.labels == objects["Service/chat"]["metadata"]["labels"]
    assert (
        service.server_selector.items() <= service.labels.items()
        and service.pod_selector.items() <= service.labels.items()
    )
    assert objects["Service/chat"]["spec"]["selector"] == service.pod_selector
    assert [p["containerPort"] for p in server["ports"]] == [service.port]
    assert [p["port"] for p in objects["Service/chat"]["spec"]["ports"]] == [service.port]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"]["path"] == service.health_path, probe
