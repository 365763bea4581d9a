"""One region's Kubernetes cluster: EKS or GKE created with its network, or an existing one."""

from llmfleet.components.cluster.args import ClusterArgs, ClusterKind, ReleaseChannel
from llmfleet.components.cluster.component import Cluster, nodes_of
from llmfleet.components.cluster.nodes import ClusterNodes, EksNodes, GkeNodes

__all__ = [
    "Cluster",
    "ClusterArgs",
    "ClusterKind",
    "ClusterNodes",
    "EksNodes",
    "GkeNodes",
    "ReleaseChannel",
    "nodes_of",
]
