"""`Cluster`: one region's Kubernetes cluster, and the Kubernetes provider everything else deploys with."""

import hashlib

import pulumi
import pulumi_kubernetes as k8s

from llmfleet.components.cluster.args import ClusterArgs, ClusterKind
from llmfleet.components.cluster.eks import create_eks
from llmfleet.components.cluster.eks_addons import gp3_storage_class
from llmfleet.components.cluster.gke import create_gke
from llmfleet.components.cluster.nodes import EksNodes, GkeNodes

NAME_LIMITS = {ClusterKind.eks: 100, ClusterKind.gke: 40}
"""Longest cluster name each cloud accepts (EKS CreateCluster: 100; GKE: 40)."""


def default_cluster_name(stack: str, name: str, kind: ClusterKind) -> str:
    """`llmfleet-<stack>-<name>`, cut to the cloud's limit with a stable hash of the whole so names stay
    unique: `llmfleet-prod-gcp-asia-northeast1-cluster` (41 characters) would otherwise fail on GKE."""
    full = f"llmfleet-{stack}-{name}"
    limit = NAME_LIMITS.get(kind, len(full))
    if len(full) <= limit:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{full[: limit - len(digest) - 1].rstrip('-')}-{digest}"


class Cluster(pulumi.ComponentResource):
    """An EKS or GKE cluster with its network (or an existing cluster), exposed as a Kubernetes provider.

    Pass the cloud provider for the region in `opts.providers` (aws.Provider for eks, gcp.Provider for
    gke); nothing is needed for existing. Children are named `f"{name}-<role>"`.
    """

    kind: ClusterKind
    provider: k8s.Provider
    """Kubernetes provider for the cluster: pass it to every Kubernetes resource of the region."""
    kubeconfig: pulumi.Output[str]
    """Kubeconfig (secret). Created clusters authenticate through an exec plugin (docs/design.md);
    existing clusters return what was given, or "" when the ambient kubeconfig is used."""
    cluster_name: pulumi.Output[str]
    nodes: EksNodes | GkeNodes | None
    """What a node pool joining this cluster needs (GpuNodePoolArgs.cluster reads it): the node role, subnets
    and prerequisites on eks; location, node service account and project on gke; None on an existing cluster."""
    oidc_provider_arn: pulumi.Output[str] | None
    """eks: IAM OIDC provider for IRSA (service accounts assuming IAM roles)."""
    oidc_issuer: pulumi.Output[str] | None
    """eks: the cluster's OIDC issuer URL (the `sub` condition of an IRSA trust policy starts with it)."""
    network: pulumi.Output[str] | None
    """gke: the VPC network id."""
    location: pulumi.Output[str] | None
    """gke: the cluster's location (its region)."""
    storage_class: k8s.storage.v1.StorageClass | None
    """eks: the default StorageClass (gp3, ReadWriteOnce) llmfleet creates; None where the cluster has its
    own default (GKE: standard-rwo) or is not llmfleet's."""

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmfleet:cluster:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.kind = args.kind
        self.nodes = self.oidc_provider_arn = self.oidc_issuer = None
        self.network = self.location = None
        self.storage_class = None
        # What every Kubernetes workload waits for, through the provider (see below).
        workload_prerequisites: list[pulumi.Resource] = []
        physical_name = args.cluster_name or default_cluster_name(pulumi.get_stack(), name, args.kind)

        if args.kind is ClusterKind.eks:
            eks = create_eks(name, args, physical_name, child)
            self.cluster_name = eks.cluster.name
            self.kubeconfig = eks.kubeconfig
            self.nodes = EksNodes(
                cluster_name=self.cluster_name,
                node_role_arn=eks.node_role_arn,
                subnet_ids=eks.private_subnet_ids,
                prerequisites=eks.node_prerequisites,
            )
            self.oidc_provider_arn = eks.oidc_provider_arn
            self.oidc_issuer = eks.oidc_issuer
            workload_prerequisites = [eks.system_pool, *eks.addons]
        elif args.kind is ClusterKind.gke:
            gke = create_gke(name, args, physical_name, child)
            self.cluster_name = gke.cluster.name
            self.kubeconfig = gke.kubeconfig
            self.network = gke.network
            self.location = gke.location
            self.nodes = GkeNodes(
                cluster_name=self.cluster_name,
                location=gke.location,
                node_service_account=gke.node_service_account,
                project=args.gcp_project,
                prerequisites=gke.node_prerequisites,
            )
            workload_prerequisites = [gke.system_pool]
        else:
            self.cluster_name = pulumi.Output.from_input(args.cluster_name or name)
            self.kubeconfig = pulumi.Output.secret(args.kubeconfig if args.kubeconfig is not None else "")

        # Workloads deployed through this provider wait for the system pool, so Helm releases that
        # wait for readiness (KEDA, gateways) have somewhere to run, and (eks) for the add-ons, so no
        # pod starts before NetworkPolicies are enforced or without a driver for its volumes.
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig if args.kind is not ClusterKind.existing or args.kubeconfig else None,
            context=args.context,
            opts=pulumi.ResourceOptions(parent=self, depends_on=workload_prerequisites or None),
        )
        if args.kind is ClusterKind.eks:
            self.storage_class = gp3_storage_class(name, pulumi.ResourceOptions(parent=self, provider=self.provider))
        self.register_outputs(
            {"cluster_name": self.cluster_name, "kubeconfig": self.kubeconfig, "kind": self.kind.value}
        )


def nodes_of(cluster: Cluster | EksNodes | GkeNodes | None) -> EksNodes | GkeNodes | None:
    """Where a pool's nodes join: a Cluster's `nodes`, or an attachment point given for a cluster made elsewhere."""
    return cluster.nodes if isinstance(cluster, Cluster) else cluster
