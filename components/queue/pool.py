"""`WorkerPool`: the queue workers' own spot CPU node pool, sized by the plan (components/queue/sizing.py).

Tainted so nothing else lands on it and labelled so the workers find it; from zero nodes up to the plan's
`max_nodes`, on the planned instance type and its fallbacks. Hardened like the GPU pools: on EKS a launch
template with IMDSv2 only (hop limit 1) and an encrypted root volume, on GKE the cluster's least-privilege node
service account and the GKE metadata server (Workload Identity, which the workers' credentials come from).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from llmfleet.components.cluster import Cluster, EksNodes, GkeNodes, nodes_of
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
    cluster: Cluster | EksNodes | GkeNodes
    """The cluster the pool joins (an eks or gke `Cluster`, or its `EksNodes` / `GkeNodes`)."""


class WorkerPool(pulumi.ComponentResource):
    node_selector: dict[str, str]
    tolerations: list[k8s.core.v1.TolerationArgs]

    def __init__(self, name: str, args: WorkerPoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmfleet:queue:WorkerPool", name, None, opts)
        labels = {POOL_LABEL: POOL_VALUE}
        self.node_selector = labels
        self.tolerations = [k8s.core.v1.TolerationArgs(key=TAINT_KEY, operator="Exists", effect="NoSchedule")]
        nodes = nodes_of(args.cluster)
        if nodes is None:
            raise ValueError(f"{name}: the queue's worker pool needs a cluster llmfleet creates (eks or gke)")
        after = pulumi.ResourceOptions(parent=self, depends_on=list(nodes.prerequisites))
        types = [args.pool.instance_type, *args.pool.fallback_instance_types]
        if isinstance(nodes, EksNodes):
            template = node_launch_template(f"{name}-lt", DISK_GIB, {}, pulumi.ResourceOptions(parent=self))
            aws.eks.NodeGroup(
                f"{name}-nodegroup",
                cluster_name=nodes.cluster_name,
                node_role_arn=nodes.node_role_arn,
                subnet_ids=nodes.subnet_ids,
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
        else:
            gcp.container.NodePool(
                f"{name}-pool",
                cluster=nodes.cluster_name,
                location=nodes.location,
                project=nodes.project,
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
                    service_account=nodes.node_service_account,
                    oauth_scopes=NODE_SCOPES,
                    workload_metadata_config=gcp.container.NodePoolNodeConfigWorkloadMetadataConfigArgs(
                        mode="GKE_METADATA"
                    ),
                ),
                opts=after,
            )
        self.register_outputs({"max_nodes": args.pool.max_nodes, "instance_type": args.pool.instance_type})
