"""`GpuNodePool`: the nodes one deployment runs on, sized by its DeploymentPlan.

EKS: one managed node group taking the plan's instance type and its fallbacks (EC2 picks whichever has
capacity), plus the NVIDIA device plugin where the AMI lacks it. GKE: a node pool takes one machine
type, so the plan's type gets a pool sized by the plan and each fallback type a pool that starts
empty and that the cluster autoscaler grows only when the first cannot. Pods find the pool through
`node_selector` and `tolerations`, which match the labels and taint set here by construction.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from math import ceil

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from llmfleet.components import pins
from llmfleet.components.cluster import Cluster, ClusterKind, EksNodes, GkeNodes, nodes_of
from llmfleet.components.cluster.eks import launch_template_ref, node_launch_template
from llmfleet.components.cluster.gke import NODE_SCOPES
from llmfleet.components.helm import pinned_release
from llmfleet.components.inference.engine import object_name
from llmfleet.components.node_labels import (
    ACCELERATOR_LABEL,
    CPU_ACCELERATOR,
    GPU_TAINT_KEY,
    GPU_TAINT_VALUE,
    MODEL_LABEL,
)
from llmfleet.components.sizing.catalog import load_catalog
from llmfleet.components.sizing.errors import PlanningError
from llmfleet.components.sizing.plan import DeploymentPlan

CPU_AMI_TYPE = "AL2023_x86_64_STANDARD"
DEFAULT_DISK_GIB = 200  # vLLM images are ~10 GB compressed and unpack to over 20; room for two versions

# NVIDIA device plugin chart, pinned in components/pins.yaml.
DEVICE_PLUGIN_CHART = pins.chart("nvidia-device-plugin").name
DEVICE_PLUGIN_REPO = pins.chart("nvidia-device-plugin").repository
DEVICE_PLUGIN_VERSION = pins.chart("nvidia-device-plugin").version
DEVICE_PLUGIN_NAMESPACE = "kube-system"
HELM_RELEASE_NAME_MAX = 53

_FIRST_TYPE = "llmfleet:compute:GpuNodePool"


@dataclass
class GpuNodePoolArgs:
    deployment: DeploymentPlan
    """The plan entry: instance types, GPU, counts, capacity type. The only source of sizes."""

    cluster: Cluster | EksNodes | GkeNodes | None
    """The cluster the pool joins: the `Cluster` component (its `nodes`), or for a cluster made elsewhere its
    `EksNodes` / `GkeNodes`; None (or an existing `Cluster`) adds no nodes to a cluster llmfleet did not make."""

    node_locations: Sequence[str] | None = None
    """gke: zones for the pool; None takes the cluster's. GKE rejects a pool whose accelerator is missing
    from one of its zones, so list the zones that have the GPU when the cluster spans others."""

    disk_size_gib: int = DEFAULT_DISK_GIB
    """Boot disk per node (container images live there; model weights go to the service's volume)."""

    device_plugin: bool | None = None
    """eks: install the NVIDIA device plugin; None installs it where the AMI lacks it (AL2023, not
    Bottlerocket). GKE installs driver and plugin itself."""

    extra_labels: Mapping[str, str] = field(default_factory=dict[str, str])
    """More node labels (the model and accelerator labels are always set)."""


@dataclass(frozen=True)
class NodeCounts:
    """Node counts of the plan: floor for min_replicas, desired for replicas, ceiling for max_replicas."""

    min: int
    desired: int
    max: int


def node_counts(plan: DeploymentPlan) -> NodeCounts:
    """The plan's node counts; the floor is the nodes `min_replicas` replicas fill."""
    counts = NodeCounts(ceil(plan.min_replicas / plan.replicas_per_node), plan.nodes, plan.max_nodes)
    if not 0 <= counts.min <= counts.desired <= counts.max or counts.max < 1:
        raise PlanningError(
            f"deployment {plan.model} in {plan.cloud}/{plan.region}: node counts must satisfy "
            f"0 <= min ({counts.min}) <= nodes ({counts.desired}) <= max_nodes ({counts.max}) and max_nodes >= 1; "
            "check the model's replicas and max_replicas"
        )
    return counts


def accelerator_label(plan: DeploymentPlan) -> str:
    return plan.gpu.lower() if plan.gpu else CPU_ACCELERATOR


@dataclass(frozen=True)
class GkeAccelerator:
    type: str
    """GKE accelerator type, e.g. nvidia-l4."""
    count: int
    """GPUs per node."""
    gpu: str
    """GPU catalog id (the node's ACCELERATOR_LABEL, lower-cased)."""


def gke_accelerator(plan: DeploymentPlan, machine_type: str) -> GkeAccelerator:
    """The GPUs of one machine type: the plan's for its own type, the catalog's for a fallback. The
    planner may list a fallback with another GPU (e.g. H100 behind L4) when it hosts the same replica."""
    if machine_type == plan.instance_type and plan.accelerator and plan.gpu:
        return GkeAccelerator(plan.accelerator, plan.gpus_per_node, plan.gpu)
    entry = load_catalog().instances.get(machine_type)
    if entry is None or entry.gke_accelerator is None or entry.gpu is None:
        raise PlanningError(
            f"deployment {plan.model} in gcp/{plan.region}: machine type {machine_type} is not a catalog "
            "GPU type with a GKE accelerator; fix components/sizing/data/instances.yaml"
        )
    if entry.gpu_count < plan.gpus_per_replica:
        raise PlanningError(
            f"deployment {plan.model} in gcp/{plan.region}: fallback {machine_type} has {entry.gpu_count} GPUs, "
            f"a replica needs {plan.gpus_per_replica}; fix the planner's fallbacks"
        )
    return GkeAccelerator(entry.gke_accelerator, entry.gpu_count, entry.gpu)


def _release_name(model: str) -> str:
    return f"nvdp-{model}"[:HELM_RELEASE_NAME_MAX].rstrip("-")


class GpuNodePool(pulumi.ComponentResource):
    """Nodes for one deployment, labelled for it and (with GPUs) tainted so nothing else lands there.

    Pass the cloud provider (aws.Provider / gcp.Provider) and the cluster's Kubernetes provider in
    `opts.providers`. On an existing cluster nothing is created: `node_selector` is empty and GPU
    deployments get a toleration for the usual GPU taint (harmless where nodes have none).
    """

    kind: ClusterKind
    node_selector: dict[str, str]
    """Labels of this pool's nodes: put them in the pod's nodeSelector."""
    tolerations: list[k8s.core.v1.TolerationArgs]
    """Tolerations for this pool's taint: put them in the pod spec."""
    pools: list[aws.eks.NodeGroup | gcp.container.NodePool]
    """The node groups / node pools created (the plan's type first, then GKE fallbacks)."""
    device_plugin: k8s.helm.v3.Release | None
    """The NVIDIA device plugin release, when this pool needed one."""

    def __init__(self, name: str, args: GpuNodePoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # The type token follows `llmfleet:<module>:<Type>`; the alias keeps stacks made under the first token.
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=_FIRST_TYPE)]))
        super().__init__("llmfleet:nodepool:GpuNodePool", name, None, opts)
        plan = args.deployment
        nodes = nodes_of(args.cluster)
        cloud = "aws" if isinstance(nodes, EksNodes) else "gcp" if isinstance(nodes, GkeNodes) else None
        if cloud is not None and plan.cloud != cloud:
            raise ValueError(f"{name}: deployment {plan.model} is planned for {plan.cloud}, the cluster is on {cloud}")
        has_gpu = plan.gpu is not None
        self.pools = []
        self.device_plugin = None
        self.tolerations = (
            [k8s.core.v1.TolerationArgs(key=GPU_TAINT_KEY, operator="Exists", effect="NoSchedule")] if has_gpu else []
        )

        if nodes is None:
            self.kind = ClusterKind.existing
            self.node_selector = {}
        else:
            # The model's name; each part of a GPU mix has a pool of its own (`<model>-<part>`), so its pods
            # never land on the other part's GPUs.
            self.node_selector = {MODEL_LABEL: object_name(plan)}
            counts = node_counts(plan)
            labels = {**args.extra_labels, **self.node_selector, ACCELERATOR_LABEL: accelerator_label(plan)}
            if isinstance(nodes, EksNodes):
                self.kind = ClusterKind.eks
                self._eks(name, args, nodes, counts, labels)
            else:
                self.kind = ClusterKind.gke
                self._gke(name, args, nodes, counts, labels)
        self.register_outputs({"node_selector": self.node_selector, "pools": len(self.pools)})

    def _eks(
        self, name: str, args: GpuNodePoolArgs, nodes: EksNodes, counts: NodeCounts, labels: dict[str, str]
    ) -> None:
        plan = args.deployment
        ami_type = plan.ami_type or CPU_AMI_TYPE
        template = node_launch_template(f"{name}-lt", args.disk_size_gib, {}, pulumi.ResourceOptions(parent=self))
        group = aws.eks.NodeGroup(
            f"{name}-nodegroup",
            cluster_name=nodes.cluster_name,
            node_role_arn=nodes.node_role_arn,
            subnet_ids=nodes.subnet_ids,
            ami_type=ami_type,
            # Several types: when one has no capacity (common for GPUs, worse for spot) EC2 takes the next.
            instance_types=[plan.instance_type, *plan.fallback_instance_types],
            capacity_type="SPOT" if plan.capacity_type == "spot" else "ON_DEMAND",
            launch_template=launch_template_ref(template),  # IMDSv2 only, hop limit 1, the disk size
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=counts.min, desired_size=counts.desired, max_size=counts.max
            ),
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            labels=labels,
            taints=[aws.eks.NodeGroupTaintArgs(key=GPU_TAINT_KEY, value=GPU_TAINT_VALUE, effect="NO_SCHEDULE")]
            if plan.gpu
            else None,
            # The cluster autoscaler owns the live size after creation; don't reset it on every update.
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(nodes.prerequisites),
                ignore_changes=["scalingConfig.desiredSize"],
            ),
        )
        self.pools.append(group)
        bundled = ami_type.startswith("BOTTLEROCKET")  # Bottlerocket's NVIDIA variants ship the plugin
        wanted = args.device_plugin if args.device_plugin is not None else (plan.gpu is not None and not bundled)
        if wanted:
            self.device_plugin = self._device_plugin(name, plan)

    def _device_plugin(self, name: str, plan: DeploymentPlan) -> k8s.helm.v3.Release:
        """One plugin release per pool, pinned to this pool's nodes, so pools never share a DaemonSet."""
        affinity = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    # Replaces the chart's default terms, which need node-feature-discovery labels.
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": MODEL_LABEL, "operator": "In", "values": [object_name(plan)]}]}
                    ]
                }
            }
        }
        return pinned_release(
            f"{name}-device-plugin",
            release_name=_release_name(object_name(plan)),
            chart=DEVICE_PLUGIN_CHART,
            version=DEVICE_PLUGIN_VERSION,
            repository=DEVICE_PLUGIN_REPO,
            namespace=DEVICE_PLUGIN_NAMESPACE,
            values={
                "nodeSelector": dict(self.node_selector),
                "affinity": affinity,
                "tolerations": [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
            },
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _gke(
        self, name: str, args: GpuNodePoolArgs, nodes: GkeNodes, counts: NodeCounts, labels: dict[str, str]
    ) -> None:
        plan = args.deployment
        types = [plan.instance_type, *plan.fallback_instance_types]
        for index, machine_type in enumerate(types):
            primary = index == 0
            # Total (all zones) limits, so the plan's counts mean the same as on EKS. Fallback pools
            # start empty; pending replicas make the autoscaler grow whichever pool can get capacity.
            autoscaling = gcp.container.NodePoolAutoscalingArgs(
                total_min_node_count=counts.min if primary else 0,
                total_max_node_count=counts.max,
                location_policy="ANY",  # any zone with capacity (and fewer spot preemptions)
            )
            self.pools.append(
                gcp.container.NodePool(
                    f"{name}-pool" if primary else f"{name}-fallback-{index}",
                    cluster=nodes.cluster_name,
                    location=nodes.location,
                    project=nodes.project,
                    node_locations=list(args.node_locations) if args.node_locations else None,
                    autoscaling=autoscaling,
                    management=gcp.container.NodePoolManagementArgs(auto_repair=True, auto_upgrade=True),
                    node_config=self._gke_node_config(args, nodes, machine_type, labels),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=list(nodes.prerequisites)),
                )
            )

    def _gke_node_config(
        self, args: GpuNodePoolArgs, nodes: GkeNodes, machine_type: str, labels: dict[str, str]
    ) -> gcp.container.NodePoolNodeConfigArgs:
        plan = args.deployment
        accelerators: list[gcp.container.NodePoolNodeConfigGuestAcceleratorArgs] | None = None
        taints: list[gcp.container.NodePoolNodeConfigTaintArgs] | None = None
        if plan.gpu is not None:
            accelerator = gke_accelerator(plan, machine_type)
            labels = {**labels, ACCELERATOR_LABEL: accelerator.gpu.lower()}
            accelerators = [
                gcp.container.NodePoolNodeConfigGuestAcceleratorArgs(
                    type=accelerator.type,
                    count=accelerator.count,
                    # GKE installs the driver and device plugin; LATEST for CUDA 12.x vLLM images.
                    gpu_driver_installation_config=gcp.container.NodePoolNodeConfigGuestAcceleratorGpuDriverInstallationConfigArgs(
                        gpu_driver_version="LATEST"
                    ),
                )
            ]
            # GKE adds this very taint to GPU pools itself when the cluster has a non-GPU pool; declaring
            # it keeps it there in every case and makes it visible to the tolerations check.
            taints = [
                gcp.container.NodePoolNodeConfigTaintArgs(
                    key=GPU_TAINT_KEY, value=GPU_TAINT_VALUE, effect="NO_SCHEDULE"
                )
            ]
        return gcp.container.NodePoolNodeConfigArgs(
            machine_type=machine_type,
            guest_accelerators=accelerators,
            taints=taints,
            labels=labels,
            spot=plan.capacity_type == "spot",
            disk_size_gb=args.disk_size_gib,
            service_account=nodes.node_service_account,
            oauth_scopes=NODE_SCOPES,
            workload_metadata_config=gcp.container.NodePoolNodeConfigWorkloadMetadataConfigArgs(mode="GKE_METADATA"),
        )
