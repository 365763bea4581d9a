"""What a node pool needs from the cluster it joins, one type per cloud.

`Cluster.nodes` is an `EksNodes`, a `GkeNodes`, or None (an existing cluster, where llmfleet adds no
nodes). A pool matches on the type, so an EKS pool without a node role or a GKE pool without a location
cannot be written: the fields of the other cloud are simply not there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi


@dataclass(frozen=True)
class EksNodes:
    """An EKS cluster's attachment point for managed node groups (build one by hand for a cluster made elsewhere)."""

    cluster_name: pulumi.Input[str]
    node_role_arn: pulumi.Input[str]
    """IAM role of the nodes."""
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    """Subnets the nodes go in (the cluster's private subnets, one per zone)."""
    prerequisites: Sequence[pulumi.Resource] = ()
    """What must exist before a node can join (the role's policies, the NAT route, the VPC CNI add-on):
    a node group created earlier fails with NodeCreationFailure."""


@dataclass(frozen=True)
class GkeNodes:
    """A GKE cluster's attachment point for node pools (build one by hand for a cluster made elsewhere)."""

    cluster_name: pulumi.Input[str]
    location: pulumi.Input[str]
    """The cluster's location (its region)."""
    node_service_account: pulumi.Input[str]
    """Email of the nodes' service account: required, so no pool runs as the Compute Engine default account."""
    project: str | None = None
    """The cluster's project; None takes the gcp provider's."""
    prerequisites: Sequence[pulumi.Resource] = ()
    """What must exist before a node can join (the node service account's role binding)."""


ClusterNodes = EksNodes | GkeNodes
