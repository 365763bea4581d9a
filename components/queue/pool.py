"""`WorkerPool`: the queue workers' own spot CPU node pool, sized by the plan (components/queue/sizing.py).

Tainted so nothing else lands on it and labelled so the workers find it; from zero nodes up to the plan's
`max_nodes`, on the planned instance type and its fallbacks. Hardened like the GPU pools: on EKS a launch
template with IMDSv2 only (hop limit 1) and an encrypted root volume, on GKE the cluster's least-privilege node
service account and the GKE metadata server (Workload Identity, which the workers' credentials come from).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from llmfleet.components.cluster import ClusterKind
from llmfleet.components.cluster.eks import launch_template_ref, node_launch_template
from llmfleet.components.cluster.gke import NODE_SCOPES
from llmfleet.components.queue.costs import WorkerPoolPlan

POOL_LABEL = "llmfleet.dev/pool"
POOL_VALUE = "queue-workers"
TAINT_KEY = "llmfleet.dev/queue-workers"
AMI_TYPE = "AL2023_x86_64_STANDARD"
DISK_GIB = 30
"""The workers' image is small and they write nothing to disk."""


@dataclass
class WorkerPoolArgs:
    pool: WorkerPoolPlan
    kind: ClusterKind
    cluster_name: pulumi.Input[str]
    node_role_arn: pulumi.Input[str] | None = None
    """eks: the nodes' IAM role (Cluster.node_role_arn)."""
    subnet_ids: pulumi.Input[Sequence[str]] | None = None
    """eks: the cluster's private subnets."""
    location: pulumi.Input[str] | None = None
    """gke: the cluster's location."""
    gcp_project: str | None = None
    node_service_account: pulumi.Input[str] | None = None
    """gke: the cluster's node service account (Cluster.node_service_account)."""
    node_prerequisites: Sequence[pulumi.Resource] = ()


class WorkerPool(pulumi.ComponentResource):
    node_selector: dict[str, str]
    tolerations: list[k8s.core.v1.TolerationArgs]

    def __init__(self, name: str, args: WorkerPoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmfleet:queue:WorkerPool", name, None, opts)
        labels = {POOL_LABEL: POOL_VALUE}
        self.node_selector = labels
        self.tolerations = [k8s.core.v1.TolerationArgs(key=TAINT_KEY, operator="Exists", effect="NoSchedule")]
        after = pulumi.ResourceOptions(parent=self, depends_on=list(args.node_prerequisites))
        types = [args.pool.instance_type, *args.pool.fallback_instance_types]
        if args.kind == ClusterKind.eks:
            if args.node_role_arn is None or args.subnet_ids is None:
                raise ValueError(f"{name}: an EKS worker pool needs node_role_arn and subnet_ids (from Cluster)")
            template = node_launch_template(f"{name}-lt", DISK_GIB, {}, pulumi.ResourceOptions(parent=self))
            aws.eks.NodeGroup(
                f"{name}-nodegroup",
                cluster_name=args.cluster_name,
                node_role_arn=args.node_role_arn,
                subnet_ids=args.subnet_ids,
                ami_type=AMI_TYPE,
                instance_types=types,
                capacity_type="SPOT",
                launch_template=launch_template_ref(template),
                scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                    min_size=0, desired_size=0, max_size=args.pool.max_nodes
                ),
                update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
                labels=labels,
                taints=[aws.eks.NodeGroupTaintArgs(key=TAINT_KEY, value="true", effect="NO_SCHEDULE")],
                # The cluster autoscaler owns the live size; don't reset it on every update.
                opts=pulumi.ResourceOptions.merge(
                    after, pulumi.ResourceOptions(ignore_changes=["scalingConfig.desiredSize"])
                ),
            )
        elif args.kind == ClusterKind.gke:
            if args.location is None or args.node_service_account is None:
                raise ValueError(f"{name}: a GKE worker pool needs location and node_service_account (from Cluster)")
            gcp.container.NodePool(
                f"{name}-pool",
                cluster=args.cluster_name,
                location=args.location,
                project=args.gcp_project,
                autoscaling=gcp.container.NodePoolAutoscalingArgs(
                    total_min_node_count=0, total_max_node_count=args.pool.max_nodes, location_policy="ANY"
                ),
                management=gcp.container.NodePoolManagementArgs(auto_repair=True, auto_upgrade=True),
                node_config=gcp.container.NodePoolNodeConfigArgs(
                    machine_type=args.pool.instance_type,
                    spot=True,
                    labels=labels,
                    taints=[
                        gcp.container.NodePoolNodeConfigTaintArgs(key=TAINT_KEY, value="true", effect="NO_SCHEDULE")
                    ],
                    disk_size_gb=DISK_GIB,
                    service_account=args.node_service_account,
                    oauth_scopes=NODE_SCOPES,
                    workload_metadata_config=gcp.container.NodePoolNodeConfigWorkloadMetadataConfigArgs(
                        mode="GKE_METADATA"
                    ),
                ),
                opts=after,
            )
        else:
            raise ValueError(f"{name}: the queue's worker pool needs a cluster llmfleet creates (eks or gke)")
        self.register_outputs({"max_nodes": args.pool.max_nodes, "instance_type": args.pool.instance_type})
