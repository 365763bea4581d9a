"""The policy pack's rules: plain functions over resources as the engine sees them (type token, inputs).

Each rule returns the violations it finds as messages (resource rules) or (message, URN) pairs (stack
rules), [] when the resources comply. infra/policy/policies.py wraps them as pulumi_policy policies;
tests call them directly. Inputs are the provider's camelCase properties (`instanceTypes`, `nodeSelector`).

Rules see plain dicts and lists (policies.py unwraps pulumi_policy's proxies first) and secrets as
`Secret` wrappers where the caller knows them.

Stack rules group resources by cluster: the top-level component a resource sits under (in this
project's program, one RegionalFleet per region), since node pools, Services and routes of different
clusters must not be matched with each other.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

from llmfleet.components.inference.engine import SERVER_LABELS
from llmfleet.components.node_labels import GPU_TAINT_KEY, MODEL_LABEL

GPU_RESOURCE = "nvidia.com/gpu"
INFERENCE_COMPONENT = SERVER_LABELS["app.kubernetes.io/component"]
"""`app.kubernetes.io/component` of the inference servers' Deployments and Services."""
GATEWAY_COMPONENT_TYPE = "llmfleet:gateway:Gateway"
"""Routes created under this component are the sanctioned way in."""

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
NODE_POOL = "gcp:container/nodePool:NodePool"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
SECRET = "kubernetes:core/v1:Secret"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
ENVOY_BACKEND = "kubernetes:gateway.envoyproxy.io/v1alpha1:Backend"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
HELM_CHART = "kubernetes:helm.sh/v4:Chart"
POD_TEMPLATE_KINDS = {
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "kubernetes:core/v1:Pod": ("spec",),
}
"""Where each workload kind keeps its pod spec."""
ROUTE_TYPE = re.compile(r"^kubernetes:gateway\.networking\.k8s\.io/v1(alpha2|beta1)?:(HTTP|GRPC|TLS|TCP|UDP)Route$")
SERVICE_HOST = re.compile(r"^(?P<name>[a-z0-9-]+)\.(?P<namespace>[a-z0-9-]+)\.svc(\.cluster\.local)?\.?$")
NVIDIA_AMI = re.compile(r"NVIDIA|_GPU$")
"""EKS AMI types with the NVIDIA driver: AL2023_*_NVIDIA, BOTTLEROCKET_*_NVIDIA, AL2_x86_64_GPU."""
CREDENTIAL_NAME = re.compile(
    r"(api_?key|apikeys?|token|password|passwd|secret_?key|access_?key|private_?key|kubeconfig)$"
)
"""A key or variable name that holds a credential (compared lower-cased with `-` as `_`): HF_TOKEN,
apiKey, adminPassword, kubeconfig. Names that merely mention one (`secretName`, `tokensPerMinute`) do not
end with one."""

Props = Mapping[str, Any]


class Secret:
    """A value the engine holds as a Pulumi secret (pulumi_policy.Secret is adapted to this in policies.py)."""

    def __init__(self, value: Any) -> None:
        self.value = value


@dataclass(frozen=True)
class Resource:
    """One resource as a stack rule sees it."""

    type: str
    name: str
    urn: str
    props: Props
    cluster: str = ""
    """Which cluster (top-level component) it belongs to: resources are compared only within one."""
    region: str = ""
    """`<cloud>-<region>` where known (region_key), else ""."""

    @property
    def ancestors(self) -> tuple[str, ...]:
        """Type tokens of the components it sits under, outermost first."""
        return ancestor_types(self.urn)


Violation = tuple[str, str]
"""(message, URN of the resource at fault)."""


# --- small readers ------------------------------------------------------------------------------


def _get(props: Any, *path: str | int) -> Any:
    value = props
    for part in path:
        if isinstance(part, int):
            items = cast(list[Any], value) if isinstance(value, list) else []
            value = items[part] if part < len(items) else None
        else:
            value = cast(Mapping[str, Any], value).get(part) if isinstance(value, Mapping) else None
        if isinstance(value, Secret):
            value = value.value
    return value


def _list(value: Any) -> list[Any]:
    return cast(list[Any], value) if isinstance(value, list) else []


def _map(value: Any) -> dict[str, Any]:
    return dict(cast(Mapping[str, Any], value)) if isinstance(value, Mapping) else {}


def labels_of(props: Props) -> dict[str, Any]:
    return _map(_get(props, "metadata", "labels"))


def is_inference(props: Props) -> bool:
    return labels_of(props).get("app.kubernetes.io/component") == INFERENCE_COMPONENT


def pod_spec(resource_type: str, props: Props) -> dict[str, Any] | None:
    path = POD_TEMPLATE_KINDS.get(resource_type)
    return _map(_get(props, *path)) if path else None


def containers(spec: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("initContainers", "containers"):
        yield from (_map(c) for c in _list(spec.get(key)))


def gpu_request(spec: Mapping[str, Any]) -> int:
    """GPUs one pod takes: the sum of its containers' nvidia.com/gpu limits (requests where no limit)."""
    total = 0
    for container in _list(spec.get("containers")):
        resources = _map(_get(container, "resources"))
        amount = _get(resources, "limits", GPU_RESOURCE) or _get(resources, "requests", GPU_RESOURCE) or 0
        total += int(str(amount))
    return total


def tolerates_gpu_taint(spec: Mapping[str, Any], value: str | None = None) -> bool:
    """A toleration that lets the pod onto nodes tainted nvidia.com/gpu[=value]:NoSchedule."""
    for toleration in (_map(t) for t in _list(spec.get("tolerations"))):
        key, operator = toleration.get("key"), toleration.get("operator") or "Equal"
        if toleration.get("effect") not in (None, "", "NoSchedule"):
            continue
        if operator == "Exists" and key in (None, "", GPU_TAINT_KEY):
            return True
        if operator == "Equal" and key == GPU_TAINT_KEY and (value is None or toleration.get("value") == value):
            return True
    return False


# --- GPU node pools -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuPool:
    """A node pool with GPUs, in the terms the rules need."""

    machine_types: tuple[str, ...]
    gpus_per_node: dict[str, int | None]
    """Machine type -> GPUs per node (None: unknown to the catalog)."""
    labels: dict[str, Any]
    taints: list[dict[str, Any]]
    spot: bool


def gpu_pool(resource_type: str, props: Props) -> GpuPool | None:
    """The pool's GPU facts, or None when it is not a GPU pool (no NVIDIA AMI / no guest accelerators)."""
    if resource_type == NODE_GROUP and NVIDIA_AMI.search(str(_get(props, "amiType") or "")):
        types = tuple(str(t) for t in _list(_get(props, "instanceTypes")))
        taints = [_map(t) for t in _list(_get(props, "taints"))]
        spot = _get(props, "capacityType") == "SPOT"
        return GpuPool(types, {t: aws_gpus(t) for t in types}, _map(_get(props, "labels")), taints, spot)
    if resource_type == NODE_POOL:
        accelerators = [_map(a) for a in _list(_get(props, "nodeConfig", "guestAccelerators"))]
        count = sum(int(a.get("count") or 0) for a in accelerators)
        if count == 0:
            return None
        machine = str(_get(props, "nodeConfig", "machineType") or "")
        taints = [_map(t) for t in _list(_get(props, "nodeConfig", "taints"))]
        spot = bool(_get(props, "nodeConfig", "spot") or _get(props, "nodeConfig", "preemptible"))
        return GpuPool((machine,), {machine: count}, _map(_get(props, "nodeConfig", "labels")), taints, spot)
    return None


@cache
def _aws_gpu_counts() -> dict[str, int]:
    from llmfleet.components.sizing.catalog import load_catalog

    return {i.type: i.gpu_count for i in load_catalog().instances.values() if i.cloud == "aws"}


def aws_gpus(instance_type: str) -> int | None:
    """GPUs of an EC2 instance type, from the instance catalog (None when the catalog does not list it)."""
    return _aws_gpu_counts().get(instance_type)


def _is_gpu_taint(taint: Mapping[str, Any]) -> bool:
    return taint.get("key") == GPU_TAINT_KEY and taint.get("effect") in ("NO_SCHEDULE", "NoSchedule")


def gpu_pool_taint(resource_type: str, props: Props) -> list[str]:
    """GPU node pools carry the nvidia.com/gpu NoSchedule taint, so only pods that ask for GPUs land there."""
    pool = gpu_pool(resource_type, props)
    if pool is None or any(_is_gpu_taint(t) for t in pool.taints):
        return []
    where = "taints" if resource_type == NODE_GROUP else "nodeConfig.taints"
    return [
        f"GPU node pool ({', '.join(pool.machine_types)}) has no {GPU_TAINT_KEY} NoSchedule taint in {where}: "
        "any pod could take its nodes; add the taint (and a matching toleration to the GPU workloads)"
    ]


# --- inference pods -----------------------------------------------------------------------------


def inference_pod_tolerations(resource_type: str, props: Props) -> list[str]:
    """Inference pods that request GPUs tolerate the GPU taint (else they never schedule on GPU nodes)."""
    spec = pod_spec(resource_type, props)
    if spec is None or not is_inference(props) or gpu_request(spec) == 0 or tolerates_gpu_taint(spec):
        return []
    return [
        f"inference pods request {gpu_request(spec)} GPU(s) but do not tolerate the {GPU_TAINT_KEY} NoSchedule "
        "taint GPU pools carry: add a toleration (key nvidia.com/gpu, operator Exists, effect NoSchedule)"
    ]


def _selected(selector: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def _tolerates_pool(spec: Mapping[str, Any], pool: GpuPool) -> bool:
    gpu_taints = [t for t in pool.taints if _is_gpu_taint(t)]
    return all(tolerates_gpu_taint(spec, str(t["value"]) if t.get("value") else None) for t in gpu_taints)


def inference_pods_fit_pools(resources: Sequence[Resource]) -> list[Violation]:
    """Inference pods fit the pools they can land on, within one cluster:
    - pods that request GPUs reach at least one GPU pool by their node selector, tolerate the taint of
      each GPU pool they reach, and request no more GPUs than any of its machine types has;
    - pods that request none cannot land on a GPU pool (they would hold its GPUs idle).

    Only clusters whose node pools the stack creates are checked (an existing cluster's nodes are
    unknown here)."""
    pools: dict[str, list[tuple[Resource, GpuPool | None, dict[str, Any]]]] = defaultdict(list)
    for r in resources:
        if r.type in (NODE_GROUP, NODE_POOL):
            pool = gpu_pool(r.type, r.props)
            labels = pool.labels if pool else _map(_get(r.props, "labels") or _get(r.props, "nodeConfig", "labels"))
            pools[r.cluster].append((r, pool, labels))
    found: list[Violation] = []
    for r in resources:
        spec = pod_spec(r.type, r.props)
        if spec is None or not is_inference(r.props) or not pools.get(r.cluster):
            continue
        selector = _map(spec.get("nodeSelector"))
        reached = [(p, pool) for p, pool, labels in pools[r.cluster] if _selected(selector, labels)]
        gpu_pools = [(p, pool) for p, pool in reached if pool is not None]
        wanted = gpu_request(spec)
        if not reached:
            found.append((f"inference pods select nodes {selector} that no node pool of the cluster has", r.urn))
        elif wanted and not gpu_pools:
            found.append((f"inference pods request {wanted} GPU(s) but select no GPU pool ({selector})", r.urn))
        for p, pool in gpu_pools:
            if wanted == 0:
                if _tolerates_pool(spec, pool):
                    found.append((f"inference pods request no GPU but can be placed on GPU pool {p.name}", r.urn))
                continue
            for machine, gpus in pool.gpus_per_node.items():
                if gpus is not None and wanted > gpus:
                    found.append(
                        (f"inference pods request {wanted} GPUs; pool {p.name}'s {machine} nodes have {gpus}", r.urn)
                    )
            if not _tolerates_pool(spec, pool):
                taints = [dict(t) for t in pool.taints if _is_gpu_taint(t)]
                found.append((f"inference pods do not tolerate pool {p.name}'s taint {taints}", r.urn))
    return found


# --- exposure -----------------------------------------------------------------------------------


def inference_service_type(resource_type: str, props: Props) -> list[str]:
    """An inference Service stays inside the cluster (ClusterIP): clients come in through the gateway."""
    if resource_type != SERVICE or not is_inference(props):
        return []
    kind = _get(props, "spec", "type") or "ClusterIP"
    if kind in ("LoadBalancer", "NodePort"):
        return [
            f"inference Service has type {kind}: it bypasses the gateway's auth and rate limits; "
            "make it ClusterIP and route clients through the gateway"
        ]
    if _list(_get(props, "spec", "externalIPs")):
        return ["inference Service has externalIPs: it bypasses the gateway; remove them"]
    return []


def _service_refs(r: Resource) -> Iterator[tuple[str, str]]:
    """(namespace, name) of every Service a route, Ingress or Envoy Backend sends traffic to."""
    namespace = str(_get(r.props, "metadata", "namespace") or "default")
    if ROUTE_TYPE.match(r.type):
        for rule in _list(_get(r.props, "spec", "rules")):
            for ref in (_map(x) for x in _list(_get(rule, "backendRefs"))):
                if ref.get("group", "") in ("", "core") and ref.get("kind", "Service") == "Service":
                    yield str(ref.get("namespace") or namespace), str(ref.get("name"))
    elif r.type == INGRESS:
        backends = [_get(r.props, "spec", "defaultBackend")]
        for rule in _list(_get(r.props, "spec", "rules")):
            backends += [_get(path, "backend") for path in _list(_get(rule, "http", "paths"))]
        for backend in backends:
            name = _get(backend, "service", "name")
            if name:
                yield namespace, str(name)
    elif r.type == ENVOY_BACKEND:
        for endpoint in _list(_get(r.props, "spec", "endpoints")):
            host = SERVICE_HOST.match(str(_get(endpoint, "fqdn", "hostname") or ""))
            if host:
                yield host["namespace"], host["name"]


def inference_only_through_gateway(resources: Sequence[Resource]) -> list[Violation]:
    """No route, Ingress or Envoy Backend reaches an inference Service unless the gateway component made it."""
    inference: set[tuple[str, str, str]] = set()
    for r in resources:
        if r.type == SERVICE and is_inference(r.props):
            namespace = str(_get(r.props, "metadata", "namespace") or "default")
            inference.add((r.cluster, namespace, str(_get(r.props, "metadata", "name") or r.name)))
    found: list[Violation] = []
    for r in resources:
        if GATEWAY_COMPONENT_TYPE in r.ancestors:
            continue
        for namespace, name in _service_refs(r):
            if (r.cluster, namespace, name) in inference:
                kind = r.type.rsplit(":", 1)[-1]
                found.append(
                    (
                        f"{kind} sends traffic to inference Service {namespace}/{name} outside the gateway "
                        f"(no auth, no rate limits): route it through the gateway component ({GATEWAY_COMPONENT_TYPE})",
                        r.urn,
                    )
                )
    return found


# --- credentials --------------------------------------------------------------------------------


def is_credential_name(name: str) -> bool:
    return bool(CREDENTIAL_NAME.search(name.lower().replace("-", "_")))


def credentials_in_plain_text(resource_type: str, props: Props) -> list[str]:
    """API keys and tokens never sit where the cluster shows them to anyone who can read the object:
    a container's literal env value or `--api-key=...` argument, or a ConfigMap."""
    found: list[str] = []
    spec = pod_spec(resource_type, props)
    for container in containers(spec or {}):
        for env in (_map(e) for e in _list(container.get("env"))):
            if is_credential_name(str(env.get("name", ""))) and env.get("value") not in (None, ""):
                found.append(
                    f"container {container.get('name')}: env {env['name']} is a literal value; "
                    "take it from a Secret (valueFrom.secretKeyRef)"
                )
        for arg in (str(a) for a in _list(container.get("args")) + _list(container.get("command"))):
            flag, sep, value = arg.partition("=")
            if sep and value and flag.startswith("--") and is_credential_name(flag.lstrip("-")):
                found.append(
                    f"container {container.get('name')}: argument {flag}=... is a literal credential; "
                    "pass it through an env var from a Secret"
                )
    if resource_type == CONFIG_MAP:
        for key in sorted(_map(_get(props, "data")) | _map(_get(props, "binaryData"))):
            if is_credential_name(key):
                found.append(f"ConfigMap key {key} holds a credential: put it in a Secret")
    return found


def unmarked_credentials(resource_type: str, props: Props) -> list[tuple[str | int, ...]]:
    """Paths of credential values that are not Pulumi secrets (they would sit in the state in plain text).

    `props` carries secrets as `Secret` wrappers (what pulumi_policy gives a remediation). Credentials:
    a string directly under a credential-named key, the value of a credential-named env variable, and
    every value of a Kubernetes Secret's data. A secret anywhere above a value covers it."""
    found: list[tuple[str | int, ...]] = []

    def walk(value: Any, path: tuple[str | int, ...], credential: bool) -> None:
        if isinstance(value, Secret):
            return
        if isinstance(value, Mapping):
            items = cast(Mapping[str, Any], value)
            env_credential = is_credential_name(str(items.get("name", ""))) and "value" in items
            for key, child in items.items():
                named = is_credential_name(str(key)) or (env_credential and key == "value")
                walk(child, (*path, key), named)
        elif isinstance(value, list):
            for index, child in enumerate(cast(list[Any], value)):
                walk(child, (*path, index), False)
        elif credential and isinstance(value, str) and value:
            found.append(path)

    for key, value in props.items():
        if resource_type == SECRET and key in ("data", "stringData") and isinstance(value, Mapping):
            items = cast(Mapping[str, Any], value).items()
            found += [(key, k) for k, v in items if not isinstance(v, Secret) and isinstance(v, str) and v]
        else:
            walk(value, (key,), is_credential_name(key))
    return found


# --- images -------------------------------------------------------------------------------------


def image_tag_problem(image: str) -> str | None:
    """Why an image reference is not pinned (no tag, or `latest`), or None when it has a tag or digest."""
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "has no tag (it means latest)"
    if last.rsplit(":", 1)[1] == "latest":
        return "uses the latest tag"
    return None


def _helm_image_tags(values: Any, path: str = "values") -> Iterator[tuple[str, str]]:
    """(path, problem) for Helm values that pick an image by `latest` (tag: latest, image: x:latest)."""
    if isinstance(values, Mapping):
        for key, child in cast(Mapping[str, Any], values).items():
            here = f"{path}.{key}"
            if key == "tag" and child == "latest":
                yield here, "is latest"
            elif key == "image" and isinstance(child, str) and (problem := image_tag_problem(child)):
                yield here, problem
            else:
                yield from _helm_image_tags(child, here)
    elif isinstance(values, list):
        for index, child in enumerate(cast(list[Any], values)):
            yield from _helm_image_tags(child, f"{path}[{index}]")


def pinned_images(resource_type: str, props: Props) -> list[str]:
    """Every container image has a tag other than `latest` (or a digest); Helm releases pin the chart."""
    found: list[str] = []
    for container in containers(pod_spec(resource_type, props) or {}):
        image = str(container.get("image") or "")
        problem = image_tag_problem(image) if image else "has no image"
        if problem:
            found.append(f"container {container.get('name')}: image {image!r} {problem}; pin a version tag")
    if resource_type in (HELM_RELEASE, HELM_CHART):
        if not _get(props, "version"):
            found.append(f"Helm chart {_get(props, 'chart')} has no version: pin one (the newest changes under you)")
        for path, problem in _helm_image_tags(_get(props, "values")):
            found.append(f"Helm {path} {problem}: pin a version tag")
    return found


# --- capacity -----------------------------------------------------------------------------------


def region_key(resource_type: str, props: Props, provider_props: Props) -> str:
    """`<cloud>-<region>` of a cloud resource, as the stack names regions (`aws-us-east-1`); "" if unknown."""
    cloud = resource_type.split(":", 1)[0]
    if cloud == "aws":
        region = _get(props, "region") or _get(provider_props, "region")
    elif cloud == "gcp":
        location = str(_get(props, "location") or _get(provider_props, "region") or "")
        region = re.sub(r"-[a-z]$", "", location)  # a zonal pool's zone -> its region
    else:
        return ""
    return f"{cloud}-{region}" if region else ""


def ancestor_types(urn: str) -> tuple[str, ...]:
    """Type tokens of a resource's ancestors, outermost first, read from its URN (`...::A$B$Type::name`)."""
    parts = urn.split("::")
    return tuple(parts[2].split("$")[:-1]) if len(parts) >= 4 else ()


def _pool_groups(resources: Sequence[Resource]) -> dict[tuple[str, str], list[tuple[Resource, GpuPool]]]:
    """GPU pools by (cluster, model label): a model's primary pool and its fallback pools."""
    groups: dict[tuple[str, str], list[tuple[Resource, GpuPool]]] = defaultdict(list)
    for r in resources:
        pool = gpu_pool(r.type, r.props)
        if pool is not None:
            groups[(r.cluster, str(pool.labels.get(MODEL_LABEL) or r.urn))].append((r, pool))
    return groups


def single_machine_type(resources: Sequence[Resource]) -> list[Violation]:
    """Advisory: a model's GPU pools in a cluster offer one machine type in all, so a capacity shortage of
    that type stops scaling (an EKS node group lists fallback types; a GKE pool has one machine type,
    so its fallbacks are more pools)."""
    found: list[Violation] = []
    for (_, model), members in sorted(_pool_groups(resources).items()):
        types = {t for _, pool in members for t in pool.machine_types}
        if len(types) == 1:
            (only,) = types
            found.append(
                (
                    f"GPU capacity for {model} is one machine type ({only}): when the region runs out of it, "
                    "the pool cannot scale; add fallback types (the plan's fallback_instance_types)",
                    members[0][0].urn,
                )
            )
    return found


def spot_only_in_primary(resources: Sequence[Resource], primary_regions: Sequence[str]) -> list[Violation]:
    """Advisory: in a primary region, a model whose every GPU pool is spot can lose all its capacity at once."""
    found: list[Violation] = []
    for (_, model), members in sorted(_pool_groups(resources).items()):
        region = members[0][0].region
        if region in primary_regions and all(pool.spot for _, pool in members):
            found.append(
                (
                    f"primary region {region}: every GPU pool for {model} is spot; a reclaim takes the model "
                    "down in the region clients go to first; make one pool on-demand",
                    members[0][0].urn,
                )
            )
    return found
