"""The Pulumi program (infra/__main__.py) under the offline engine, for every shipped stack.

Each stack's program runs once per module (module-scoped fixture); the tests then read the recorded
graph: counts per region, pool and service inputs against the plan, scheduling (taints, tolerations,
labels), providers, parents, secrets and outputs. Expected values come from the stack and the plan
(`infra.planning.build_plan`), not from the program, so a component that drifts from the plan fails.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.stacks import ShippedRun

import llmfleet.infra.render.offline as offline
from llmfleet.components.inference import waiting_requests_threshold
from llmfleet.components.keda import CHART_VERSION as KEDA_CHART_VERSION
from llmfleet.components.node_labels import ACCELERATOR_LABEL, GPU_TAINT_KEY, MODEL_LABEL
from llmfleet.components.sizing.catalog import load_catalog
from llmfleet.components.sizing.plan import DeploymentPlan, Plan
from llmfleet.components.sizing.types import Engine
from llmfleet.infra.config import STACKS_DIR, ConfigError, DeploymentSpec, load_stack
from llmfleet.infra.planning import build_plan
from llmfleet.infra.render.offline import SECRET_PLACEHOLDER, OfflineRun, RecordedResource, RecordingMocks, run_program
from llmfleet.infra.schema.regions import RegionSpec

SHIPPED = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in STACKS_DIR.glob("Pulumi.*.yaml"))

CLUSTER = "llmfleet:cluster:Cluster"
FLEET = "llmfleet:fleet:RegionalFleet"
POOL = "llmfleet:nodepool:GpuNodePool"
SERVICE = "llmfleet:inference:InferenceService"
KEDA = "llmfleet:keda:Keda"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
EKS_CLUSTER = "aws:eks/cluster:Cluster"
GKE_CLUSTER = "gcp:container/cluster:Cluster"
EKS_NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
GKE_NODE_POOL = "gcp:container/nodePool:NodePool"
EKS_ADDON = "aws:eks/addon:Addon"
STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"
K8S_PROVIDER = "pulumi:providers:kubernetes"
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
EFFECTS = {"NO_SCHEDULE": "NoSchedule", "PREFER_NO_SCHEDULE": "PreferNoSchedule", "NO_EXECUTE": "NoExecute"}
"""Cloud APIs spell taint effects in capitals; Kubernetes tolerations in camel case."""


@dataclass
class Stack:
    """One stack's program run, with what the test expects it from: the stack and its plan."""

    name: str
    spec: DeploymentSpec
    plan: Plan
    run: OfflineRun

    def deployments(self, region: RegionSpec) -> list[DeploymentPlan]:
        return [d for d in self.plan.deployments if (d.cloud, d.region) == (region.cloud, region.region)]

    def in_region(self, key: str) -> list[RecordedResource]:
        return [r for r in self.run.resources if self.run.region_of(r) == key]

    def children(self, parent: RecordedResource) -> list[RecordedResource]:
        return [r for r in self.run.resources if r.parent == parent.urn]

    def named(self, name: str, type_: str) -> RecordedResource:
        found = [r for r in self.run.resources if r.name == name and r.type == type_]
        assert len(found) == 1, f"{self.name}: expected one {type_} named {name}, got {[r.urn for r in found]}"
        return found[0]


def _run(name: str, stack_file: Path | None = None) -> Stack:
    stack_name, spec = load_stack(None if stack_file else name, stack_file)
    run = run_program(None if stack_file else name, stack_file)
    return Stack(stack_name, spec, build_plan(stack_name, spec), run)


@pytest.fixture(scope="module", params=SHIPPED)
def stack(request: pytest.FixtureRequest, shipped_run: ShippedRun) -> Stack:
    stack_name, spec = load_stack(request.param)
    return Stack(stack_name, spec, build_plan(stack_name, spec), shipped_run(request.param))


def test_every_environment_has_a_shipped_stack() -> None:
    assert {"dev", "prod", "local"} <= set(SHIPPED), SHIPPED


# --- counts ------------------------------------------------------------------------------------


def test_counts_per_region(stack: Stack) -> None:
    for region in stack.spec.regions:
        key = region.key
        deployments = stack.deployments(region)
        assert sorted(d.model for d in deployments) == sorted(m.name for m in stack.spec.models_in(region))
        resources = stack.in_region(key)

        def count(type_: str, within: list[RecordedResource] = resources) -> int:
            return sum(r.type == type_ for r in within)

        fleet = stack.named(key, FLEET)
        assert count(FLEET) == count(CLUSTER) == count(KEDA) == 1, f"{key}: one fleet, cluster and KEDA"
        assert count(POOL) == count(SERVICE) == len(deployments), f"{key}: a pool and a service per model"
        services = [r for r in resources if r.type == SERVICE]
        assert all(s.parent == fleet.urn for s in services)
        served = [r for s in services for r in stack.children(s)]
        assert count(DEPLOYMENT, served) == count(SCALED_OBJECT, served) == len(deployments), key
        assert count(SCALED_OBJECT) == len(deployments), f"{key}: scaled objects outside the services"

        created = region.cluster.mode == "create"
        assert count(EKS_CLUSTER) == int(created and region.cloud == "aws"), key
        assert count(GKE_CLUSTER) == int(created and region.cloud == "gcp"), key
        system_pools = 1 if created else 0
        if region.cloud == "aws" and created:
            assert count(EKS_NODE_GROUP) == system_pools + len(deployments), key
        if region.cloud == "gcp" and created:
            per_type = sum(1 + len(d.fallback_instance_types) for d in deployments)
            assert count(GKE_NODE_POOL) == system_pools + per_type, key
        if not created:
            cloud = [r.urn for r in resources if r.type.startswith(("aws:", "gcp:", "pulumi:providers:aws"))]
            assert not cloud, f"{key}: an existing cluster needs no cloud resources, got {cloud}"

        charts = [r.inputs for r in resources if r.type == HELM_RELEASE]
        keda = [c for c in charts if c["chart"] == "keda"]
        assert [c["version"] for c in keda] == [KEDA_CHART_VERSION], f"{key}: one pinned KEDA release"
        plugins = [c for c in charts if c["chart"] == "nvidia-device-plugin"]
        needs_plugin = [
            d
            for d in deployments
            if region.cloud == "aws" and created and d.gpu and not (d.ami_type or "").startswith("BOTTLEROCKET")
        ]
        assert len(plugins) == len(needs_plugin), f"{key}: device plugins {len(plugins)}, want {len(needs_plugin)}"
        assert all(c["version"] and c["version"] != "latest" for c in charts), f"{key}: unpinned chart in {charts}"


# --- pools and services equal the plan ---------------------------------------------------------


def _cloud_pools(stack: Stack, region: RegionSpec, plan: DeploymentPlan) -> list[RecordedResource]:
    pool = stack.named(f"{region.key}-{plan.model}-pool", POOL)
    pools = [r for r in stack.children(pool) if r.type in (EKS_NODE_GROUP, GKE_NODE_POOL)]

    def rank(r: RecordedResource) -> int:  # the primary `<name>-pool` first, then `<name>-fallback-<i>` in order
        _, fallback, index = r.name.rpartition("-fallback-")
        return int(index) + 1 if fallback else 0

    # Ordered by name, not by recording: the mocks record pools in whichever order they resolve.
    return sorted(pools, key=rank)


def _plan_entries(stack: Stack) -> Iterator[tuple[RegionSpec, DeploymentPlan]]:
    for region in stack.spec.regions:
        for plan in stack.deployments(region):
            yield region, plan


def test_node_pools_equal_the_plan(stack: Stack) -> None:
    for region, plan in _plan_entries(stack):
        pools = _cloud_pools(stack, region, plan)
        where = f"{stack.name} {region.key} {plan.model}"
        floor = math.ceil(plan.min_replicas / plan.replicas_per_node)
        types = [plan.instance_type, *plan.fallback_instance_types]
        if region.cluster.mode == "existing":
            assert pools == [], f"{where}: nothing is created on an existing cluster"
            continue
        labels = {MODEL_LABEL: plan.model, ACCELERATOR_LABEL: (plan.gpu or "cpu").lower()}
        if region.cloud == "aws":
            (group,) = pools
            inputs = group.inputs
            assert inputs["instanceTypes"] == types, where
            assert inputs["scalingConfig"] == {"minSize": floor, "desiredSize": plan.nodes, "maxSize": plan.max_nodes}
            assert inputs["capacityType"] == ("SPOT" if plan.capacity_type == "spot" else "ON_DEMAND"), where
            assert inputs["amiType"] == plan.ami_type, where
            assert labels.items() <= inputs["labels"].items(), where
        else:
            assert [p.inputs["nodeConfig"]["machineType"] for p in pools] == types, where
            primary = pools[0].inputs
            assert primary["nodeConfig"]["guestAccelerators"][0]["type"] == plan.accelerator, where
            assert primary["nodeConfig"]["guestAccelerators"][0]["count"] == plan.gpus_per_node, where
            assert primary["autoscaling"]["totalMinNodeCount"] == floor, where
            for pool in pools:
                config, scaling = pool.inputs["nodeConfig"], pool.inputs["autoscaling"]
                assert scaling["totalMaxNodeCount"] == plan.max_nodes, pool.urn
                assert pool is pools[0] or scaling["totalMinNodeCount"] == 0, f"{pool.urn}: fallbacks start empty"
                assert config.get("spot", False) == (plan.capacity_type == "spot"), pool.urn
                # Each pool is labelled with its own GPU (a fallback may bring another one).
                entry = load_catalog().instances[config["machineType"]]
                assert config["labels"][MODEL_LABEL] == plan.model, pool.urn
                assert config["labels"][ACCELERATOR_LABEL] == (entry.gpu or "cpu").lower(), pool.urn
                if plan.gpu:
                    assert config["guestAccelerators"][0]["type"] == entry.gke_accelerator, pool.urn
                    assert config["guestAccelerators"][0]["count"] == entry.gpu_count >= plan.gpus_per_replica


def _flags(args: list[str]) -> dict[str, str]:
    """`--name=value` engine flags as a dict (bare flags map to "")."""
    pairs = (a.removeprefix("--").partition("=") for a in args if a.startswith("--"))
    return {name: value for name, _, value in pairs}


def test_services_equal_the_plan(stack: Stack) -> None:
    output_tokens = {m.name: m.load.output_tokens for m in stack.spec.models}
    for region, plan in _plan_entries(stack):
        where = f"{stack.name} {region.key} {plan.model}"
        deployment = stack.named(f"{region.key}-{plan.model}-deployment", DEPLOYMENT).inputs
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        flags = _flags(container["args"])
        assert deployment["spec"]["replicas"] == plan.replicas, where
        assert container["image"].endswith(plan.engine_version), where
        limits = container["resources"].get("limits", {})
        if plan.engine is Engine.VLLM:
            assert flags["served-model-name"] == plan.model, where
            assert flags["model"] == plan.hf_repo, where
            assert int(flags["tensor-parallel-size"]) == plan.tensor_parallel, where
            assert int(flags["pipeline-parallel-size"]) == plan.pipeline_parallel, where
            assert int(flags["max-model-len"]) == plan.max_model_len, where
            assert float(flags["gpu-memory-utilization"]) == plan.gpu_memory_utilization, where
            assert flags["kv-cache-dtype"] == plan.kv_cache_dtype.value, where
            gpus = plan.tensor_parallel * plan.pipeline_parallel
            assert int(limits["nvidia.com/gpu"]) == plan.gpus_per_replica == gpus, where
        else:
            assert flags["alias"] == plan.model, where
            assert flags["hf-repo"] == f"{plan.hf_repo}:{plan.quantization.value.upper()}", where
            assert int(flags["ctx-size"]) == plan.max_model_len * plan.max_num_seqs, where
            assert int(flags["parallel"]) == plan.max_num_seqs, where
            assert ("nvidia.com/gpu" in limits) == (plan.gpu is not None), where

        scaled = stack.named(f"{region.key}-{plan.model}-scaledobject", SCALED_OBJECT).inputs["spec"]
        assert scaled["scaleTargetRef"]["name"] == deployment["metadata"]["name"], where
        assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (plan.min_replicas, plan.max_replicas)
        (trigger,) = scaled["triggers"]
        threshold = waiting_requests_threshold(plan, output_tokens[plan.model], stack.spec.slo.ttft_p95_ms)
        assert trigger["metadata"]["threshold"] == str(threshold), where


# --- scheduling --------------------------------------------------------------------------------


def _taints(pool: RecordedResource) -> list[dict[str, str]]:
    raw = pool.inputs.get("taints") or pool.inputs.get("nodeConfig", {}).get("taints") or []
    return [{**t, "effect": EFFECTS[t["effect"]]} for t in raw]


def _node_labels(pool: RecordedResource) -> dict[str, str]:
    return pool.inputs.get("labels") or pool.inputs["nodeConfig"]["labels"]


def _tolerates(tolerations: list[dict[str, str]], taint: dict[str, str]) -> bool:
    def matches(t: dict[str, str]) -> bool:
        key_ok = t.get("key") in (None, taint["key"])
        value_ok = t.get("operator") == "Exists" or t.get("value") == taint.get("value")
        return key_ok and value_ok and t.get("effect") in (None, taint["effect"])

    return any(matches(t) for t in tolerations)


def test_pods_land_on_their_own_pool_and_nowhere_else(stack: Stack) -> None:
    for region in stack.spec.regions:
        pools = {plan.model: _cloud_pools(stack, region, plan) for plan in stack.deployments(region)}
        for plan in stack.deployments(region):
            pod = stack.named(f"{region.key}-{plan.model}-deployment", DEPLOYMENT).inputs["spec"]["template"]["spec"]
            selector: dict[str, str] = pod.get("nodeSelector") or {}
            tolerations: list[dict[str, str]] = pod.get("tolerations") or []
            for pool in pools[plan.model]:
                taints = _taints(pool)
                assert all(_tolerates(tolerations, t) for t in taints), f"{pool.urn}: taints {taints} not tolerated"
                assert selector.items() <= _node_labels(pool).items(), f"{pool.urn}: selector {selector} misses"
                if plan.gpu:
                    assert any(t["key"] == GPU_TAINT_KEY for t in taints), f"{pool.urn}: GPU pool without its taint"
            for other, other_pools in pools.items():
                for pool in other_pools if other != plan.model else []:
                    assert not selector.items() <= _node_labels(pool).items(), f"{plan.model} could land on {pool.urn}"
            if region.cluster.mode == "existing":
                assert selector == {}, "an existing cluster's nodes carry none of our labels"


# --- providers and parents ---------------------------------------------------------------------


def test_every_resource_has_its_regions_provider(stack: Stack) -> None:
    run = stack.run
    providers = {r.name: r for r in run.resources if r.type.startswith("pulumi:providers:")}
    for region in stack.spec.regions:
        key = region.key
        k8s_provider = providers[f"{key}-cluster-k8s"]
        assert k8s_provider.type == K8S_PROVIDER
        cloud_provider = providers.get(f"{key}-{region.cloud}")
        if region.cluster.mode == "create":
            assert cloud_provider is not None, f"{key}: no explicit {region.cloud} provider"
            assert cloud_provider.inputs["region"] == region.region, cloud_provider.inputs
            if region.cloud == "gcp":
                assert cloud_provider.inputs["project"] == stack.spec.gcp_project
        for resource in stack.in_region(key):
            if not resource.custom or resource.type.startswith("pulumi:providers:"):
                continue
            cloud = resource.type.split(":", 1)[0]
            wanted = k8s_provider if cloud == "kubernetes" else providers.get(f"{key}-{cloud}")
            assert wanted is not None and resource.provider == wanted.urn, (
                f"{resource.urn}: provider {resource.provider}, want the region's {cloud} provider"
            )
    defaults = [r.urn for r in run.resources if r.custom and not r.type.startswith("pulumi:") and r.provider is None]
    assert not defaults, f"resources on a default (ambient) provider: {defaults}"


def test_every_region_resource_descends_from_its_fleet(stack: Stack) -> None:
    by_urn = {r.urn: r for r in stack.run.resources}
    for region in stack.spec.regions:
        fleet = stack.named(region.key, FLEET)
        for resource in stack.in_region(region.key):
            if resource is fleet or resource.name in (f"{region.key}-{region.cloud}", f"{region.key}-random"):
                continue  # the fleet itself and the region's providers (passed in from the stack)
            ancestor = resource.parent
            while ancestor is not None and ancestor != fleet.urn and ancestor in by_urn:
                ancestor = by_urn[ancestor].parent
            assert ancestor == fleet.urn, f"{resource.urn} is not under {fleet.urn}"


def test_nodes_and_scalers_wait_for_what_they_need(stack: Stack) -> None:
    """Orderings the mocks cannot break but a real `pulumi up` would: EKS nodes that start before their
    role's policies and NAT route exist never join (NodeCreationFailure), and before the VPC CNI add-on
    they run pods without the network policy agent; a ScaledObject sent before KEDA's chart has installed
    its CRD is rejected."""
    for region in stack.spec.regions:
        key = region.key
        if region.cloud == "aws" and region.cluster.mode == "create":
            prerequisites = {
                r.urn
                for r in stack.in_region(key)
                if r.name == f"{key}-cluster-private-rt"
                or (r.type == "aws:iam/rolePolicyAttachment:RolePolicyAttachment" and "-node-role-" in r.name)
                or (r.type == EKS_ADDON and r.inputs["addonName"] == "vpc-cni")
            }
            assert len(prerequisites) == 5, prerequisites
            for plan in stack.deployments(region):
                for group in _cloud_pools(stack, region, plan):
                    missing = prerequisites - group.dependencies
                    assert not missing, f"{group.urn} does not wait for {missing}"
        (keda,) = [r for r in stack.in_region(key) if r.type == HELM_RELEASE and r.inputs["chart"] == "keda"]
        for scaler in (r for r in stack.in_region(key) if r.type == SCALED_OBJECT):
            assert keda.urn in scaler.dependencies, f"{scaler.urn} does not wait for KEDA"


def test_created_clusters_enforce_network_policies_and_can_bind_the_model_cache(stack: Stack) -> None:
    """The gateway's NetworkPolicy holds only where the CNI enforces it; the cache claims the default class."""
    for region in stack.spec.regions:
        resources = stack.in_region(region.key)
        classes = [r for r in resources if r.type == STORAGE_CLASS]
        if region.cluster.mode != "create":
            assert not classes, f"{region.key}: llmfleet must not add a default class to a cluster it did not create"
        elif region.cloud == "aws":
            addons = {r.inputs["addonName"]: r for r in resources if r.type == EKS_ADDON}
            assert set(addons) == {"vpc-cni", "aws-ebs-csi-driver"}, region.key
            assert json.loads(addons["vpc-cni"].inputs["configurationValues"])["enableNetworkPolicy"] == "true"
            defaults = [c for c in classes if c.inputs["metadata"]["annotations"][DEFAULT_CLASS] == "true"]
            assert [c.inputs["provisioner"] for c in defaults] == ["ebs.csi.aws.com"], region.key
        else:
            (gke,) = [r for r in resources if r.type == GKE_CLUSTER]
            assert gke.inputs["datapathProvider"] == "ADVANCED_DATAPATH", gke.urn
            assert not classes, f"{region.key}: GKE's standard-rwo is the default already"


# --- outputs -----------------------------------------------------------------------------------


def test_outputs_are_the_endpoints_and_the_plan_summary(stack: Stack) -> None:
    outputs = stack.run.outputs
    assert set(outputs["endpoints"]) == {r.key for r in stack.spec.regions}
    for region in stack.spec.regions:
        expected = {
            m.name: f"http://{m.name}.{stack.spec.namespace}.svc.cluster.local:8000"
            for m in stack.spec.models_in(region)
        }
        assert outputs["endpoints"][region.key] == expected
    summary = outputs["plan"]
    assert summary["totals"] == json.loads(stack.plan.totals.model_dump_json())
    for plan in stack.plan.deployments:
        entry = summary["regions"][f"{plan.cloud}-{plan.region}"][plan.model]
        assert (entry["instance_type"], entry["tensor_parallel"]) == (plan.instance_type, plan.tensor_parallel)
        assert (entry["min_replicas"], entry["max_replicas"]) == (plan.min_replicas, plan.max_replicas)
    assert not {"endpoints", "plan"} & stack.run.secret_outputs


def test_created_clusters_hand_their_kubeconfig_over_as_a_secret(stack: Stack) -> None:
    for region in stack.spec.regions:
        provider = stack.named(f"{region.key}-cluster-k8s", K8S_PROVIDER)
        if region.cluster.mode == "create":
            assert provider.inputs["kubeconfig"], f"{provider.urn}: no kubeconfig"
            assert _is_secret(provider, ("kubeconfig",)), f"{provider.urn}: kubeconfig is not secret"
        elif region.cluster.kubeconfig_secret == "local":
            assert "kubeconfig" not in provider.inputs, "the current kubeconfig is used as it is, never copied"


def test_the_hf_token_reaches_every_server_through_a_secret(stack: Stack) -> None:
    if stack.spec.huggingface_token_secret is None:
        pytest.skip(f"stack {stack.name} downloads weights anonymously")
    for region, plan in _plan_entries(stack):
        pod = stack.named(f"{region.key}-{plan.model}-deployment", DEPLOYMENT).inputs["spec"]["template"]["spec"]
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        reference = env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]
        (secret,) = [
            r
            for r in stack.in_region(region.key)
            if r.type == "kubernetes:core/v1:Secret" and r.inputs["metadata"]["name"] == reference["name"]
        ]
        assert secret.inputs["stringData"][reference["key"]] == SECRET_PLACEHOLDER, secret.urn
        assert _is_secret(secret, ("stringData", reference["key"])), f"{secret.urn}: the token is not secret"


# --- secrets named in the stack ----------------------------------------------------------------


def _is_secret(resource: RecordedResource, path: tuple[str, ...]) -> bool:
    """The input at `path` is secret (itself, or a field that contains it)."""
    return any(path[: len(secret)] == secret for secret in resource.secret_paths)


def _local_stack(**changes: Any) -> dict[str, Any]:
    """The shipped local stack's deployment, with changes applied to its first region's cluster or the top."""
    document = yaml.safe_load((STACKS_DIR / "Pulumi.local.yaml").read_text())
    deployment: dict[str, Any] = document["config"]["llmfleet:deployment"]
    cluster = changes.pop("cluster", None)
    if cluster is not None:
        deployment["regions"][0]["cluster"] = cluster
    return deployment | changes


def _write(directory: Path, name: str, deployment: dict[str, Any], **secrets: str) -> Path:
    config: dict[str, Any] = {"llmfleet:deployment": deployment}
    config |= {f"llmfleet:{key}": {"secure": value} for key, value in secrets.items()}
    path = directory / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump({"config": config}))
    return path


@pytest.fixture(scope="module")
def with_secrets(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """The local stack with a HuggingFace token and a kubeconfig, both from secret config keys."""
    deployment = _local_stack(
        huggingface_token_secret="hfToken", cluster={"mode": "existing", "kubeconfig_secret": "kindKubeconfig"}
    )
    path = _write(tmp_path_factory.mktemp("stacks"), "secrets", deployment, hfToken="v1:x", kindKubeconfig="v1:y")
    return _run("secrets", path)


def test_hf_token_and_kubeconfig_stay_secret(with_secrets: Stack) -> None:
    run = with_secrets.run
    (token,) = [r for r in run.resources if r.type == "kubernetes:core/v1:Secret" and r.name.endswith("-hf-token")]
    assert token.inputs["stringData"]["token"] == SECRET_PLACEHOLDER, "the token did not reach its Secret"
    assert _is_secret(token, ("stringData", "token")), f"{token.urn}: secret fields {token.secret_fields}"
    pod = with_secrets.named("local-local-tiny-deployment", DEPLOYMENT).inputs["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == token.inputs["metadata"]["name"]
    assert "value" not in env["HF_TOKEN"], "the token must come from the Secret, not the pod spec"
    provider = with_secrets.named("local-local-cluster-k8s", K8S_PROVIDER)
    assert provider.inputs["kubeconfig"] == SECRET_PLACEHOLDER and _is_secret(provider, ("kubeconfig",))
    for resource in run.resources:
        assert SECRET_PLACEHOLDER not in json.dumps(resource.redacted_inputs()), f"{resource.urn} leaks a secret"
        for path in resource.secret_paths:
            assert path[0] in resource.inputs, f"{resource.urn}: secret path {path} points at nothing"
    plain_outputs = {k: v for k, v in run.outputs.items() if k not in run.secret_outputs}
    assert SECRET_PLACEHOLDER not in json.dumps(plain_outputs), "a secret reached a plain stack output"


# --- failures before any resource --------------------------------------------------------------


@pytest.fixture
def registrations(monkeypatch: pytest.MonkeyPatch) -> list[RecordedResource]:
    """Every resource any program run in this test registers (the engine's mocks, spied on)."""
    seen: list[RecordedResource] = []

    class Spy(RecordingMocks):
        def __init__(self, on_resource: Callable[[str], None] | None = None) -> None:
            super().__init__(on_resource)
            self.resources = seen

    monkeypatch.setattr(offline, "RecordingMocks", Spy)
    return seen


@pytest.mark.parametrize(
    ("deployment", "secrets", "field"),
    [
        pytest.param(_local_stack(huggingface_token_secret="hfToken"), {}, "huggingface_token_secret", id="hf-token"),
        pytest.param(
            _local_stack(cluster={"mode": "existing", "kubeconfig_secret": "kindKubeconfig"}),
            {"hfToken": "v1:x"},
            r"regions\[0\]\.cluster\.kubeconfig_secret",
            id="kubeconfig",
        ),
        pytest.param(
            _local_stack(cluster={"mode": "existing"}), {}, r"regions\[0\]\.cluster\.kubeconfig_secret", id="no-key"
        ),
    ],
)
def test_a_missing_secret_stops_the_program_before_any_resource(
    deployment: dict[str, Any],
    secrets: dict[str, str],
    field: str,
    tmp_path: Path,
    registrations: list[RecordedResource],
) -> None:
    path = _write(tmp_path, "missing", deployment, **secrets)
    with pytest.raises(ConfigError, match=rf"llmfleet:deployment\.{field}") as error:
        run_program(stack_file=path)
    assert "pulumi config set --secret" in str(error.value) or "required" in str(error.value)
    assert registrations == [], f"registered before the error: {[r.urn for r in registrations]}"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"model": "no-such-model"}, r"models\[0\]\.model", id="catalog"),
        pytest.param({"max_model_len": 10**7}, r"models\[0\]\.max_model_len", id="context"),
        pytest.param({"quantisation": "q4_k_m"}, r"models\[0\]\.quantisation: unknown field", id="schema"),
    ],
)
def test_a_bad_stack_stops_the_program_before_any_resource(
    change: dict[str, Any], field: str, tmp_path: Path, registrations: list[RecordedResource]
) -> None:
    deployment = _local_stack()
    deployment["models"][0] |= change
    with pytest.raises(ConfigError, match=rf"llmfleet:deployment\.{field}"):
        run_program(stack_file=_write(tmp_path, "bad", deployment))
    assert registrations == [], f"registered before the error: {[r.urn for r in registrations]}"


def test_the_token_key_is_a_bare_config_key(tmp_path: Path, registrations: list[RecordedResource]) -> None:
    deployment = _local_stack(huggingface_token_secret="llmfleet:hfToken")
    with pytest.raises(ConfigError, match=r"token_secret: give the key without its namespace, e\.g\. `hfToken`"):
        run_program(stack_file=_write(tmp_path, "prefixed", deployment, hfToken="v1:x"))
    assert registrations == []


def test_the_spy_sees_registrations(tmp_path: Path, registrations: list[RecordedResource]) -> None:
    """The two tests above would pass vacuously if the spy saw nothing: it does see a good run."""
    run_program(stack_file=_write(tmp_path, "good", _local_stack()))
    assert any(r.type == FLEET for r in registrations)
