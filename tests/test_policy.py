"""The policy pack: each rule on passing and failing resources, the pulumi_policy wiring, and the
shipped stacks' resources (run under the offline engine) through every rule."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy import PolicyResource, PolicyResourceOptions, ResourceValidationArgs, StackValidationArgs
from pulumi_policy import Secret as PolicySecret
from pulumi_policy.deserialize import deserialize_properties, serialize_properties
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy
from support.policy import RESOURCE_RULES, STACK_RULES, as_rule_resources, wrap_secrets
from support.stacks import ShippedRun

from llmfleet.infra.config import load_stack
from llmfleet.infra.policy import policies, rules
from llmfleet.infra.policy.rules import Resource, Secret

PACK_DIR = Path(policies.__file__).resolve().parent


def urn(name: str, type_: str, *ancestors: str) -> str:
    return f"urn:pulumi:t::llmfleet::{'$'.join([*ancestors, type_])}::{name}"


def node_group(*types: str, taints: Any = None, spot: bool = False, model: str = "m") -> dict[str, Any]:
    props: dict[str, Any] = {
        "amiType": "AL2023_x86_64_NVIDIA",
        "instanceTypes": list(types),
        "labels": {"llmfleet.dev/model": model},
        "capacityType": "SPOT" if spot else "ON_DEMAND",
    }
    if taints is not False:
        props["taints"] = taints or [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}]
    return props


def gke_pool(machine: str, gpus: int, taints: bool = True, spot: bool = False, model: str = "m") -> dict[str, Any]:
    config: dict[str, Any] = {
        "machineType": machine,
        "guestAccelerators": [{"type": "nvidia-l4", "count": gpus}] if gpus else [],
        "labels": {"llmfleet.dev/model": model},
        "spot": spot,
    }
    if taints:
        config["taints"] = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}]
    return {"nodeConfig": config, "location": "us-central1"}


def deployment(
    gpus: int = 1, tolerations: Any = None, inference: bool = True, selector: Any = None, **container: Any
) -> dict[str, Any]:
    labels = {"app.kubernetes.io/component": "inference" if inference else "web"}
    resources = {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {}
    spec: dict[str, Any] = {
        "nodeSelector": {"llmfleet.dev/model": "m"} if selector is None else selector,
        "containers": [{"name": "server", "image": "vllm/vllm-openai:v0.27.1", "resources": resources, **container}],
    }
    if tolerations is not False:
        spec["tolerations"] = tolerations or [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {"metadata": {"name": "m", "namespace": "llmfleet", "labels": labels}, "spec": {"template": {"spec": spec}}}


def service(kind: str = "ClusterIP", inference: bool = True, name: str = "m") -> dict[str, Any]:
    labels = {"app.kubernetes.io/component": "inference" if inference else "web"}
    return {"metadata": {"name": name, "namespace": "llmfleet", "labels": labels}, "spec": {"type": kind}}


# --- GPU pools ------------------------------------------------------------------------------------


def test_gpu_pools_carry_the_gpu_taint() -> None:
    assert rules.gpu_pool_taint(rules.NODE_GROUP, node_group("g6.xlarge", "g6.2xlarge")) == []
    assert rules.gpu_pool_taint(rules.NODE_POOL, gke_pool("g2-standard-8", 1)) == []
    (untainted,) = rules.gpu_pool_taint(rules.NODE_GROUP, node_group("g6.xlarge", taints=False))
    assert "no nvidia.com/gpu NoSchedule taint in taints" in untainted
    soft = [{"key": "nvidia.com/gpu", "effect": "PREFER_NO_SCHEDULE"}]
    assert rules.gpu_pool_taint(rules.NODE_GROUP, node_group("g6.xlarge", taints=soft)), "must be NoSchedule"
    assert rules.gpu_pool_taint(rules.NODE_POOL, gke_pool("g2-standard-8", 1, taints=False))


def test_pools_without_gpus_need_no_taint() -> None:
    cpu_group = {**node_group("m6i.xlarge", taints=False), "amiType": "AL2023_x86_64_STANDARD"}
    assert rules.gpu_pool_taint(rules.NODE_GROUP, cpu_group) == []
    assert rules.gpu_pool_taint(rules.NODE_POOL, gke_pool("e2-standard-4", 0, taints=False)) == []
    legacy_gpu_ami = {**node_group("g5.xlarge", taints=False), "amiType": "AL2_x86_64_GPU"}
    assert rules.gpu_pool_taint(rules.NODE_GROUP, legacy_gpu_ami), "AL2's GPU AMI is an NVIDIA AMI too"


# --- inference pods -------------------------------------------------------------------------------


def test_inference_pods_with_gpus_tolerate_the_taint() -> None:
    assert rules.inference_pod_tolerations(rules.DEPLOYMENT, deployment()) == []
    equal = [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}]
    assert rules.inference_pod_tolerations(rules.DEPLOYMENT, deployment(tolerations=equal)) == []
    (missing,) = rules.inference_pod_tolerations(rules.DEPLOYMENT, deployment(gpus=2, tolerations=False))
    assert "request 2 GPU(s) but do not tolerate" in missing
    other = [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]
    assert rules.inference_pod_tolerations(rules.DEPLOYMENT, deployment(tolerations=other))
    assert rules.inference_pod_tolerations(rules.DEPLOYMENT, deployment(gpus=0, tolerations=False)) == []
    web = deployment(tolerations=False, inference=False)
    assert rules.inference_pod_tolerations(rules.DEPLOYMENT, web) == [], "only inference pods are checked"


def cluster(*members: tuple[str, str, dict[str, Any]], key: str = "fleet-a", region: str = "") -> list[Resource]:
    return [Resource(type_, name, urn(name, type_), props, key, region) for name, type_, props in members]


def test_inference_pods_fit_their_pools() -> None:
    pools = [("pool", rules.NODE_GROUP, node_group("g6.xlarge", "g6.12xlarge"))]
    assert rules.inference_pods_fit_pools(cluster(*pools, ("m", rules.DEPLOYMENT, deployment(gpus=1)))) == []
    (too_many,) = rules.inference_pods_fit_pools(cluster(*pools, ("m", rules.DEPLOYMENT, deployment(gpus=4))))
    assert "request 4 GPUs; pool pool's g6.xlarge nodes have 1" in too_many[0]
    assert too_many[1] == urn("m", rules.DEPLOYMENT)
    (none,) = rules.inference_pods_fit_pools(cluster(*pools, ("m", rules.DEPLOYMENT, deployment(gpus=0))))
    assert "request no GPU but can be placed on GPU pool pool" in none[0]
    cpu_pod = deployment(gpus=0, tolerations=False, selector={})
    system = ("system", rules.NODE_GROUP, {"amiType": "AL2023_x86_64_STANDARD", "instanceTypes": ["m6i.xlarge"]})
    assert rules.inference_pods_fit_pools(cluster(*pools, system, ("m", rules.DEPLOYMENT, cpu_pod))) == [], (
        "the GPU taint keeps a CPU pod off the GPU pool"
    )
    gpu_pod_on_cpu = deployment(gpus=1, selector={})
    ((message, _),) = rules.inference_pods_fit_pools(cluster(system, ("m", rules.DEPLOYMENT, gpu_pod_on_cpu)))
    assert "request 1 GPU(s) but select no GPU pool" in message
    lost = deployment(selector={"llmfleet.dev/model": "other"})
    (unplaced,) = rules.inference_pods_fit_pools(cluster(*pools, ("m", rules.DEPLOYMENT, lost)))
    assert "no node pool of the cluster has" in unplaced[0]


def test_pod_must_tolerate_the_pools_taint_value() -> None:
    pools = [("pool", rules.NODE_POOL, gke_pool("g2-standard-8", 1))]
    wrong = [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "yes", "effect": "NoSchedule"}]
    (violation,) = rules.inference_pods_fit_pools(
        cluster(*pools, ("m", rules.DEPLOYMENT, deployment(tolerations=wrong)))
    )
    assert "do not tolerate pool pool's taint" in violation[0]


def test_pools_of_other_clusters_and_existing_clusters_are_not_matched() -> None:
    eight_gpus = deployment(gpus=8)
    resources = cluster(("pool", rules.NODE_POOL, gke_pool("g2-standard-8", 1)), key="gcp")
    resources += cluster(("pool8", rules.NODE_GROUP, node_group("p5.48xlarge")), ("m", rules.DEPLOYMENT, eight_gpus))
    assert rules.inference_pods_fit_pools(resources) == []
    assert rules.inference_pods_fit_pools(cluster(("m", rules.DEPLOYMENT, eight_gpus), key="byo")) == []


# --- exposure -------------------------------------------------------------------------------------


def test_inference_services_stay_inside_the_cluster() -> None:
    assert rules.inference_service_type(rules.SERVICE, service()) == []
    assert rules.inference_service_type(rules.SERVICE, {"metadata": service()["metadata"]}) == [], "default type"
    (lb,) = rules.inference_service_type(rules.SERVICE, service("LoadBalancer"))
    assert "type LoadBalancer" in lb and "gateway" in lb
    assert rules.inference_service_type(rules.SERVICE, service("NodePort"))
    assert rules.inference_service_type(rules.SERVICE, service("LoadBalancer", inference=False)) == []


HTTP_ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"


def route_to(name: str, namespace: str = "llmfleet") -> dict[str, Any]:
    return {"metadata": {"namespace": namespace}, "spec": {"rules": [{"backendRefs": [{"name": name, "port": 8000}]}]}}


def test_only_the_gateway_routes_to_inference_services() -> None:
    svc = Resource(rules.SERVICE, "m", urn("m", rules.SERVICE), service(), "fleet-a")
    gateway_route_urn = urn("r", HTTP_ROUTE, "llmfleet:fleet:RegionalFleet", rules.GATEWAY_COMPONENT_TYPE)
    gateway_route = Resource(HTTP_ROUTE, "r", gateway_route_urn, route_to("m"), "fleet-a")
    assert rules.inference_only_through_gateway([svc, gateway_route]) == []
    rogue = Resource(HTTP_ROUTE, "rogue", urn("rogue", HTTP_ROUTE), route_to("m"), "fleet-a")
    ((message, at),) = rules.inference_only_through_gateway([svc, rogue])
    assert "HTTPRoute sends traffic to inference Service llmfleet/m outside the gateway" in message
    assert at == rogue.urn
    assert rules.inference_only_through_gateway([svc, rogue.__class__(**{**rogue.__dict__, "cluster": "b"})]) == []
    elsewhere = Resource(HTTP_ROUTE, "x", urn("x", HTTP_ROUTE), route_to("m", namespace="other"), "fleet-a")
    assert rules.inference_only_through_gateway([svc, elsewhere]) == [], "a Service m in another namespace"


def test_ingresses_and_envoy_backends_count_as_routes() -> None:
    svc = Resource(rules.SERVICE, "m", urn("m", rules.SERVICE), service(), "fleet-a")
    ingress_props = {
        "metadata": {"namespace": "llmfleet"},
        "spec": {"rules": [{"http": {"paths": [{"backend": {"service": {"name": "m", "port": {"number": 80}}}}]}}]},
    }
    ingress = Resource(rules.INGRESS, "i", urn("i", rules.INGRESS), ingress_props, "fleet-a")
    backend_props = {"spec": {"endpoints": [{"fqdn": {"hostname": "m.llmfleet.svc.cluster.local", "port": 8000}}]}}
    backend = Resource(rules.ENVOY_BACKEND, "b", urn("b", rules.ENVOY_BACKEND), backend_props, "fleet-a")
    violations = rules.inference_only_through_gateway([svc, ingress, backend])
    assert [at for _, at in violations] == [ingress.urn, backend.urn]


# --- credentials ----------------------------------------------------------------------------------


def test_credentials_are_not_in_plain_sight_in_the_cluster() -> None:
    from_secret = {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}
    assert rules.credentials_in_plain_text(rules.DEPLOYMENT, deployment(env=[from_secret])) == []
    literal = deployment(env=[{"name": "HF_TOKEN", "value": "hf_abc"}, {"name": "PORT", "value": "8000"}])
    (env,) = rules.credentials_in_plain_text(rules.DEPLOYMENT, literal)
    assert "env HF_TOKEN is a literal value" in env
    (arg,) = rules.credentials_in_plain_text(rules.DEPLOYMENT, deployment(args=["--api-key=s3cr3t", "--port=8000"]))
    assert "--api-key=..." in arg
    config_map = {"data": {"OPENAI_API_KEY": "sk", "tokens_per_minute": "1000", "secretName": "x"}}
    assert rules.credentials_in_plain_text(rules.CONFIG_MAP, config_map) == [
        "ConfigMap key OPENAI_API_KEY holds a credential: put it in a Secret"
    ]


def test_credentials_are_pulumi_secrets() -> None:
    secret = {"stringData": {"token": Secret("hf_abc")}, "metadata": {"name": "hf"}}
    assert rules.unmarked_credentials(rules.SECRET, secret) == []
    assert rules.unmarked_credentials(rules.SECRET, {"stringData": Secret({"token": "hf_abc"})}) == []
    assert rules.unmarked_credentials(rules.SECRET, {"stringData": {"token": "hf_abc"}}) == [("stringData", "token")]
    provider = {"kubeconfig": "apiVersion: v1\n...", "namespace": "x"}
    assert rules.unmarked_credentials("pulumi:providers:kubernetes", provider) == [("kubeconfig",)]
    values = {"values": {"grafana": {"adminPassword": "pw", "admin": {"existingSecret": "g"}}, "tokenLimit": 5}}
    assert rules.unmarked_credentials(rules.HELM_RELEASE, values) == [("values", "grafana", "adminPassword")]
    env = deployment(env=[{"name": "HF_TOKEN", "value": "hf_abc"}])
    assert rules.unmarked_credentials(rules.DEPLOYMENT, env) == [
        ("spec", "template", "spec", "containers", 0, "env", 0, "value")
    ]
    refs = {"spec": {"apiKey": {"secretRef": {"name": "openai"}}}}
    assert rules.unmarked_credentials("kubernetes:aigateway.envoyproxy.io/v1alpha1:BackendSecurityPolicy", refs) == []


# --- images ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("vllm/vllm-openai:v0.27.1", None),
        ("ghcr.io/ggml-org/llama.cpp:server-b4500", None),
        ("redis@sha256:" + "a" * 64, None),
        ("localhost:5000/vllm", "has no tag (it means latest)"),
        ("vllm/vllm-openai", "has no tag (it means latest)"),
        ("vllm/vllm-openai:latest", "uses the latest tag"),
    ],
)
def test_image_tags(image: str, problem: str | None) -> None:
    assert rules.image_tag_problem(image) == problem
    found = rules.pinned_images(rules.DEPLOYMENT, deployment(image=image))
    assert bool(found) == bool(problem), found


def test_helm_releases_pin_chart_and_image_versions() -> None:
    pinned = {"chart": "keda", "version": "2.17.2", "values": {"image": {"tag": "2.17.2"}}}
    assert rules.pinned_images(rules.HELM_RELEASE, pinned) == []
    floating = {"chart": "keda", "values": {"operator": {"image": {"tag": "latest"}}, "sidecar": {"image": "busybox"}}}
    assert rules.pinned_images(rules.HELM_RELEASE, floating) == [
        "Helm chart keda has no version: pin one (the newest changes under you)",
        "Helm values.operator.image.tag is latest: pin a version tag",
        "Helm values.sidecar.image has no tag (it means latest): pin a version tag",
    ]


# --- capacity (advisory) --------------------------------------------------------------------------


def test_a_single_machine_type_is_a_warning() -> None:
    assert rules.single_machine_type(cluster(("g", rules.NODE_GROUP, node_group("g6.xlarge", "g5.xlarge")))) == []
    ((message, _),) = rules.single_machine_type(cluster(("g", rules.NODE_GROUP, node_group("g6.xlarge"))))
    assert "GPU capacity for m is one machine type (g6.xlarge)" in message
    one_gke = cluster(("p", rules.NODE_POOL, gke_pool("g2-standard-8", 1)))
    assert rules.single_machine_type(one_gke)
    with_fallback = cluster(
        ("p", rules.NODE_POOL, gke_pool("g2-standard-8", 1)), ("f", rules.NODE_POOL, gke_pool("g2-standard-24", 2))
    )
    assert rules.single_machine_type(with_fallback) == [], "a GKE fallback pool with another machine type"


def test_spot_only_capacity_in_a_primary_region_is_a_warning() -> None:
    spot = cluster(("g", rules.NODE_GROUP, node_group("g6.xlarge", "g5.xlarge", spot=True)), region="aws-us-east-1")
    ((message, _),) = rules.spot_only_in_primary(spot, ["aws-us-east-1"])
    assert "primary region aws-us-east-1: every GPU pool for m is spot" in message
    assert rules.spot_only_in_primary(spot, ["gcp-us-central1"]) == [], "spot in a secondary region is fine"
    mixed = cluster(
        ("p", rules.NODE_POOL, gke_pool("g2-standard-8", 1, spot=True)),
        ("f", rules.NODE_POOL, gke_pool("g2-standard-24", 2)),
        region="gcp-us-central1",
    )
    assert rules.spot_only_in_primary(mixed, ["gcp-us-central1"]) == [], "one on-demand pool is the fallback"


def test_region_keys() -> None:
    assert rules.region_key(rules.NODE_GROUP, {}, {"region": "eu-west-1"}) == "aws-eu-west-1"
    assert rules.region_key(rules.NODE_POOL, {"location": "us-central1-a"}, {}) == "gcp-us-central1"
    assert rules.region_key(rules.DEPLOYMENT, {}, {}) == ""


# --- the pulumi_policy wiring ---------------------------------------------------------------------


def policy(name: str) -> Any:
    (found,) = [p for p in policies.POLICIES if p.name == name]
    return found


def options() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], None, [], None)  # type: ignore[arg-type]


def validate(name: str, type_: str, props: dict[str, Any]) -> list[tuple[str, str | None]]:
    reported: list[tuple[str, str | None]] = []
    args = ResourceValidationArgs(type_, unknown_checking_proxy(props), urn("r", type_), "r", options(), None)
    policy(name).validate(args, lambda message, at=None: reported.append((message, at)))
    return reported


def test_resource_policies_report_through_pulumi_policy() -> None:
    ((message, at),) = validate("gpu-pool-taint", rules.NODE_GROUP, node_group("g6.xlarge", taints=False))
    assert "no nvidia.com/gpu NoSchedule taint" in message and at == urn("r", rules.NODE_GROUP)
    assert validate("gpu-pool-taint", rules.NODE_GROUP, node_group("g6.xlarge")) == []
    assert validate("pinned-image-tags", rules.DEPLOYMENT, deployment(image="vllm/vllm-openai:latest"))


def test_unknown_inputs_in_a_preview_make_a_rule_not_applicable() -> None:
    props = node_group("g6.xlarge", taints=False) | {"clusterName": UNKNOWN_STRING_VALUE}
    with pytest.raises(Exception) as raised:  # pulumi_policy's private _NotApplicableError
        validate("gpu-pool-taint", rules.NODE_GROUP, props)
    assert type(raised.value).__name__ == "_NotApplicableError"
    assert "unknown until the update" in raised.value.reason  # type: ignore[attr-defined]


def test_remediation_makes_credentials_secrets() -> None:
    wire = serialize_properties({"stringData": {"token": "hf_abc"}, "metadata": {"name": "hf"}})
    props = unknown_checking_proxy(deserialize_properties(dict(wire), True))
    args = ResourceValidationArgs(rules.SECRET, props, urn("s", rules.SECRET), "s", options(), None)
    remediated = policy("api-keys-are-secrets").remediate(args)
    assert isinstance(remediated["stringData"]["token"], PolicySecret)
    assert remediated["stringData"]["token"].value == "hf_abc"
    assert remediated["metadata"] == {"name": "hf"}
    already = serialize_properties({"stringData": PolicySecret({"token": "hf_abc"})})
    args = ResourceValidationArgs(
        rules.SECRET,
        unknown_checking_proxy(deserialize_properties(dict(already), True)),
        urn("s", rules.SECRET),
        "s",
        options(),
        None,
    )
    assert policy("api-keys-are-secrets").remediate(args) is None, "nothing to do"


def policy_resource(type_: str, name: str, props: dict[str, Any], parent: PolicyResource | None) -> PolicyResource:
    return PolicyResource(type_, unknown_checking_proxy(props), urn(name, type_), name, options(), None, parent, [], {})


def test_stack_policies_group_by_top_level_component() -> None:
    stack = policy_resource("pulumi:pulumi:Stack", "llmfleet-t", {}, None)
    reports: list[tuple[str, str | None]] = []
    for fleet_name in ("aws-a", "gcp-b"):
        fleet = policy_resource("llmfleet:fleet:RegionalFleet", fleet_name, {}, stack)
        pool = policy_resource(rules.NODE_GROUP, f"{fleet_name}-pool", node_group("g6.xlarge", "g5.xlarge"), fleet)
        gpus = 1 if fleet_name == "aws-a" else 4
        pod = policy_resource(rules.DEPLOYMENT, f"{fleet_name}-m", deployment(gpus=gpus), pool.parent)
        args = StackValidationArgs([stack, fleet, pool, pod])
        policy("inference-pods-fit-their-pool").validate(args, lambda m, at=None: reports.append((m, at)))
    assert [at for _, at in reports] == [urn("gcp-b-m", rules.DEPLOYMENT)] * 2, reports


# --- the shipped stacks ---------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["dev", "prod", "local"])
def shipped(request: pytest.FixtureRequest, shipped_run: ShippedRun) -> tuple[str, list[Resource]]:
    return request.param, as_rule_resources(shipped_run(request.param))


def test_shipped_stacks_pass_every_rule(shipped: tuple[str, list[Resource]]) -> None:
    stack, resources = shipped
    _, spec = load_stack(stack)
    primary = [region.key for region in spec.regions if region.role == "primary"]
    found = [(rule.__name__, r.urn, v) for rule in RESOURCE_RULES for r in resources for v in rule(r.type, r.props)]
    for stack_rule in STACK_RULES:
        found += [(stack_rule.__name__, at, message) for message, at in stack_rule(resources)]
    found += [("spot_only_in_primary", at, m) for m, at in rules.spot_only_in_primary(resources, primary)]
    assert found == []


def test_shipped_stacks_give_the_rules_something_to_check(shipped: tuple[str, list[Resource]]) -> None:
    """Guard against a vacuous pass: the rules must have met inference pods, Services and (in the
    cloud stacks) GPU pools, and images."""
    stack, resources = shipped
    inference_pods = [r for r in resources if r.type == rules.DEPLOYMENT and rules.is_inference(r.props)]
    assert inference_pods and any(r.type == rules.SERVICE and rules.is_inference(r.props) for r in resources)
    pools = [r for r in resources if rules.gpu_pool(r.type, r.props)]
    assert bool(pools) == (stack != "local"), "local runs on CPU with the cluster it is given"
    assert any(isinstance(v, Secret) for r in resources for v in r.props.values()) or stack == "local"


# --- the pack as the Pulumi CLI runs it: its own process, spoken to over gRPC on loopback -------------


@pytest.fixture(scope="module")
def served_pack() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    """infra/policy/__main__.py in a subprocess (it prints its port, as the CLI expects), and a client."""
    pack = subprocess.Popen([sys.executable, str(PACK_DIR / "__main__.py")], cwd=PACK_DIR, stdout=subprocess.PIPE)
    try:
        assert pack.stdout is not None
        port = int(pack.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        pack.kill()
        pack.wait(timeout=10)


def struct(props: dict[str, Any]) -> struct_pb2.Struct:
    """Props on the wire, secrets signed as the engine signs them."""
    message = struct_pb2.Struct()
    message.update(serialize_properties(to_policy_secrets(props)))  # type: ignore[arg-type]
    return message


def to_policy_secrets(value: Any) -> Any:
    if isinstance(value, Secret):
        return PolicySecret(to_policy_secrets(value.value))
    if isinstance(value, dict):
        return {k: to_policy_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_policy_secrets(v) for v in value]
    return value


def test_served_pack_lists_its_policies_and_reports_a_violation(served_pack: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = served_pack.GetAnalyzerInfo(empty_pb2.Empty(), timeout=20)
    assert info.name == "llmfleet"
    assert [p.name for p in info.policies] == [p.name for p in policies.POLICIES]
    request = analyzer_pb2.AnalyzeRequest(
        type=rules.NODE_GROUP,
        properties=struct(node_group("g6.xlarge", taints=False)),
        urn=urn("pool", rules.NODE_GROUP),
        name="pool",
        options=analyzer_pb2.AnalyzerResourceOptions(),
    )
    diagnostics = served_pack.Analyze(request, timeout=20).diagnostics
    assert [d.policyName for d in diagnostics] == ["gpu-pool-taint"]
    assert diagnostics[0].enforcementLevel == analyzer_pb2.MANDATORY
    assert diagnostics[0].urn == urn("pool", rules.NODE_GROUP)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_served_pack_passes_the_shipped_stacks(
    served_pack: analyzer_pb2_grpc.AnalyzerStub, stack: str, shipped_run: ShippedRun
) -> None:
    """Every resource of the stack through Analyze, then the whole stack through AnalyzeStack."""
    run = shipped_run(stack)
    _, spec = load_stack(stack)
    primary = struct_pb2.Struct()
    primary.update({"primaryRegions": [r.key for r in spec.regions if r.role == "primary"]})
    served_pack.Configure(
        analyzer_pb2.ConfigureAnalyzerRequest(
            policyConfig={"no-spot-only-primary": analyzer_pb2.PolicyConfig(properties=primary)}
        ),
        timeout=20,
    )
    by_urn = {r.urn: r for r in run.resources}
    resources: list[analyzer_pb2.AnalyzerResource] = []
    diagnostics: list[Any] = []
    for r in run.resources:
        props = struct(wrap_secrets(r.inputs, r.secret_paths))
        provider = by_urn.get(r.provider or "")
        provider_message = (
            analyzer_pb2.AnalyzerProviderResource(
                type=provider.type, properties=struct(provider.inputs), urn=provider.urn, name=provider.name
            )
            if provider
            else None
        )
        common: dict[str, Any] = {"type": r.type, "properties": props, "urn": r.urn, "name": r.name}
        common |= {"options": analyzer_pb2.AnalyzerResourceOptions(), "provider": provider_message}
        diagnostics += served_pack.Analyze(analyzer_pb2.AnalyzeRequest(**common), timeout=20).diagnostics
        resources.append(analyzer_pb2.AnalyzerResource(**common, parent=r.parent or ""))
    request = analyzer_pb2.AnalyzeStackRequest(resources=resources)
    diagnostics += served_pack.AnalyzeStack(request, timeout=60).diagnostics
    assert [(d.policyName, d.urn, d.message) for d in diagnostics] == []
    assert len(resources) == len(run.resources) > 40
