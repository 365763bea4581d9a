"""What a region's Kubernetes cluster is: created on EKS or GKE, or an existing one brought along."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import pulumi


class ClusterKind(StrEnum):
    # Lower-case members, as the shared compute API spells them (ClusterKind.existing).
    eks = "eks"
    gke = "gke"
    existing = "existing"


class ReleaseChannel(StrEnum):
    """GKE release channel: how fast the control plane and nodes follow new Kubernetes versions."""

    RAPID = "RAPID"
    REGULAR = "REGULAR"
    STABLE = "STABLE"


@dataclass
class ClusterArgs:
    kind: ClusterKind
    """eks or gke create a cluster (and its network) in `region`; existing connects to `kubeconfig`."""

    region: str
    """Cloud region, e.g. us-east-1 or us-central1 (the cloud provider passed in must be for it too)."""

    kubernetes_version: str | None = None
    """Control-plane version such as "1.33"; None takes the cloud's default (GKE: the channel's)."""

    kubeconfig: pulumi.Input[str] | None = None
    """existing: the cluster's kubeconfig, as a secret; None uses the ambient kubeconfig ($KUBECONFIG)."""

    context: str | None = None
    """existing: kubeconfig context to use; None takes its current-context."""

    cluster_name: str | None = None
    """Physical cluster name; default `llmfleet-<stack>-<name>` (must be unique per account and region)."""

    gcp_project: str | None = None
    """gke: the project that owns the cluster (used for the workload identity pool)."""

    network_cidr: str = "10.0.0.0/16"
    """The region's private address range. eks: the VPC, split into a private and a public subnet per
    zone; gke: nodes, services and pods are carved from it (see `gke.subnet_ranges`)."""

    availability_zones: Sequence[str] | None = None
    """eks: zones for the subnets; None takes the first `zone_count` available zones of the region."""

    zone_count: int = 3
    """eks: how many zones when `availability_zones` is None (EKS needs at least two)."""

    release_channel: ReleaseChannel = ReleaseChannel.REGULAR
    """gke: release channel of the control plane and nodes."""

    system_machine_type: str | None = None
    """Instance/machine type of the untainted system pool that runs KEDA, gateways and monitoring
    (default m6i.xlarge on EKS, e2-standard-4 on GKE). GPU pools are tainted, so this pool is needed."""

    system_min_nodes: int = 2
    """System pool floor (total over zones)."""

    system_max_nodes: int = 4
    """System pool ceiling (total over zones)."""

    api_access_cidrs: Sequence[str] | None = None
    """eks/gke (required): IPv4 CIDRs allowed to reach the Kubernetes API's public endpoint (EKS
    `publicAccessCidrs`, GKE master authorized networks). Nodes reach it privately either way. List your
    networks and wherever `pulumi up` runs; `["0.0.0.0/0"]` opens it to the internet."""

    log_retention_days: int = 90
    """eks: days CloudWatch keeps the control plane's logs (api, audit, authenticator, controller manager,
    scheduler)."""

    deletion_protection: bool = True
    """Refuse to delete the cluster (EKS and GKE); set False for throwaway stacks."""

    tags: Mapping[str, str] = field(default_factory=dict[str, str])
    """Extra tags (AWS) or resource labels (GCP) on everything the cluster creates."""
