"""A GKE cluster on its own VPC-native network: private nodes with Cloud NAT egress, workload identity,
Dataplane V2 (NetworkPolicy enforcement), a release channel, and a system pool in place of the default pool.
Its default StorageClass (standard-rwo: balanced PD, ReadWriteOnce) serves the model cache as it is.

Every resource is a child of the `Cluster` component, so the caller's gcp.Provider (project, region)
reaches all of them; nothing here builds a provider.
"""

import hashlib
import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from llmfleet.components.cluster.args import ClusterArgs
from llmfleet.components.cluster.kubeconfig import gke_kubeconfig

DEFAULT_SYSTEM_MACHINE_TYPE = "e2-standard-4"  # 4 vCPU / 16 GB: room for KEDA, Envoy and Prometheus
PODS_RANGE = "pods"
SERVICES_RANGE = "services"
MAX_NAME_LENGTH = 40  # GKE cluster names: 1-40 characters, lowercase letters, digits and hyphens
DEFAULT_STORAGE_CLASS = "standard-rwo"
"""GKE's default class: balanced persistent disk through the Compute Engine PD CSI driver."""
PD_ACCESS_MODES = frozenset({"ReadWriteOnce", "ReadWriteOncePod"})
"""A persistent disk is writable from one node: claims asking ReadWriteMany need Filestore instead."""


NODE_ROLE = "roles/container.defaultNodeServiceAccount"
"""The least-privilege role Google defines for GKE nodes (logs, metrics, image pulls); workloads get their
own identities through workload identity, never the node's."""
NODE_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
"""Access scopes are a legacy second gate; Google's advice is the full scope with a narrow IAM role (above)."""
CONTROL_PLANE_LOGS = ["SYSTEM_COMPONENTS", "APISERVER", "CONTROLLER_MANAGER", "SCHEDULER", "WORKLOADS"]
"""Control-plane and workload logs to Cloud Logging (audit logs of the API are Cloud Audit Logs, always on)."""
SECRETS_KEY_ROLE = "roles/cloudkms.cryptoKeyEncrypterDecrypter"


@dataclass(frozen=True)
class GkeParts:
    cluster: gcp.container.Cluster
    kubeconfig: pulumi.Output[str]
    network: pulumi.Output[str]
    location: pulumi.Output[str]
    system_pool: gcp.container.NodePool
    node_service_account: pulumi.Output[str]
    """Email of the nodes' dedicated service account (GPU pools run as it too)."""
    node_prerequisites: list[pulumi.Resource]
    """The node service account's role binding: nodes started before it cannot log or pull images."""


def node_account_id(cluster_name: str) -> str:
    """A service account id (6-30 characters) unique per cluster name: GKE names are up to 40."""
    return f"gke-nodes-{hashlib.sha256(cluster_name.encode()).hexdigest()[:12]}"


def _node_identity(
    name: str, args: ClusterArgs, cluster_name: str, child: pulumi.ResourceOptions
) -> tuple[gcp.serviceaccount.Account, gcp.projects.IAMMember]:
    account = gcp.serviceaccount.Account(
        f"{name}-node-sa",
        account_id=node_account_id(cluster_name),
        display_name=f"GKE nodes of {cluster_name}"[:100],
        project=args.gcp_project,
        opts=child,
    )
    binding = gcp.projects.IAMMember(
        f"{name}-node-sa-role",
        project=str(args.gcp_project),
        role=NODE_ROLE,
        member=account.email.apply(lambda email: f"serviceAccount:{email}"),
        opts=child,
    )
    return account, binding


def _secrets_key(
    name: str, args: ClusterArgs, cluster_name: str, child: pulumi.ResourceOptions
) -> tuple[gcp.kms.CryptoKey, gcp.kms.CryptoKeyIAMMember]:
    """Application-layer encryption of Secrets with a key in the cluster's region, rotated every 90 days,
    usable by the project's GKE service agent. Key rings cannot be deleted in Cloud KMS: a destroyed stack
    leaves the ring (and the key, destroyed after its grace period)."""
    ring = gcp.kms.KeyRing(
        f"{name}-keyring", name=cluster_name, location=args.region, project=args.gcp_project, opts=child
    )
    key = gcp.kms.CryptoKey(
        f"{name}-secrets-key", name="kubernetes-secrets", key_ring=ring.id, rotation_period="7776000s", opts=child
    )
    project = gcp.organizations.get_project_output(
        project_id=args.gcp_project, opts=pulumi.InvokeOutputOptions(parent=child.parent)
    )
    agent = project.number.apply(
        lambda number: f"serviceAccount:service-{number}@container-engine-robot.iam.gserviceaccount.com"
    )
    grant = gcp.kms.CryptoKeyIAMMember(
        f"{name}-secrets-key-gke", crypto_key_id=key.id, role=SECRETS_KEY_ROLE, member=agent, opts=child
    )
    return key, grant


def subnet_ranges(network_cidr: str) -> tuple[str, str, str]:
    """(nodes, services, pods) from one range: nodes and services a sixteenth each, pods the upper half
    (GKE gives each node a /24 of pod addresses, so a /17 of pods serves 128 nodes)."""
    network = ipaddress.ip_network(network_cidr)
    if network.prefixlen > 16:
        raise ValueError(f"ClusterArgs.network_cidr: {network_cidr} is too small for GKE; use a /16 or larger")
    sixteenths = list(network.subnets(prefixlen_diff=4))
    halves = list(network.subnets(prefixlen_diff=1))
    return str(sixteenths[0]), str(sixteenths[1]), str(halves[1])


def create_gke(name: str, args: ClusterArgs, cluster_name: str, child: pulumi.ResourceOptions) -> GkeParts:
    """Everything a GKE region needs before GPU pools can join it. `child` carries parent=the Cluster."""
    if not args.gcp_project:
        raise ValueError("ClusterArgs.gcp_project: required for a GKE cluster (the workload identity pool is in it)")
    if len(cluster_name) > MAX_NAME_LENGTH:
        raise ValueError(
            f"ClusterArgs.cluster_name: GKE allows {MAX_NAME_LENGTH} characters, `{cluster_name}` has "
            f"{len(cluster_name)}; pass a shorter cluster_name"
        )
    if not args.api_access_cidrs:
        raise ValueError(
            "ClusterArgs.api_access_cidrs: required for a GKE cluster: the CIDRs allowed to reach its API "
            "(['0.0.0.0/0'] opens it to the internet)"
        )
    nodes_cidr, services_cidr, pods_cidr = subnet_ranges(args.network_cidr)
    labels = dict(args.tags)
    node_account, node_role = _node_identity(name, args, cluster_name, child)
    secrets_key, secrets_grant = _secrets_key(name, args, cluster_name, child)

    network = gcp.compute.Network(f"{name}-network", auto_create_subnetworks=False, opts=child)
    subnet = gcp.compute.Subnetwork(
        f"{name}-subnet",
        network=network.id,
        region=args.region,
        ip_cidr_range=nodes_cidr,
        secondary_ip_ranges=[
            gcp.compute.SubnetworkSecondaryIpRangeArgs(range_name=PODS_RANGE, ip_cidr_range=pods_cidr),
            gcp.compute.SubnetworkSecondaryIpRangeArgs(range_name=SERVICES_RANGE, ip_cidr_range=services_cidr),
        ],
        private_ip_google_access=True,
        opts=child,
    )
    # Private nodes have no public IP: Cloud NAT lets them pull images and HuggingFace weights.
    router = gcp.compute.Router(f"{name}-router", network=network.id, region=args.region, opts=child)
    gcp.compute.RouterNat(
        f"{name}-nat",
        router=router.name,
        region=args.region,
        nat_ip_allocate_option="AUTO_ONLY",
        source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
        opts=child,
    )

    pd_csi_driver = gcp.container.ClusterAddonsConfigGcePersistentDiskCsiDriverConfigArgs(enabled=True)
    cluster = gcp.container.Cluster(
        f"{name}-gke",
        name=cluster_name,
        project=args.gcp_project,
        location=args.region,
        network=network.id,
        subnetwork=subnet.id,
        networking_mode="VPC_NATIVE",
        ip_allocation_policy=gcp.container.ClusterIpAllocationPolicyArgs(
            cluster_secondary_range_name=PODS_RANGE, services_secondary_range_name=SERVICES_RANGE
        ),
        private_cluster_config=gcp.container.ClusterPrivateClusterConfigArgs(
            enable_private_nodes=True, enable_private_endpoint=False
        ),
        # The public endpoint answers the stack's CIDRs only (and not every Google Cloud address).
        master_authorized_networks_config=gcp.container.ClusterMasterAuthorizedNetworksConfigArgs(
            cidr_blocks=[
                gcp.container.ClusterMasterAuthorizedNetworksConfigCidrBlockArgs(cidr_block=cidr, display_name=cidr)
                for cidr in args.api_access_cidrs
            ],
            gcp_public_cidrs_access_enabled=False,
        ),
        database_encryption=gcp.container.ClusterDatabaseEncryptionArgs(state="ENCRYPTED", key_name=secrets_key.id),
        logging_config=gcp.container.ClusterLoggingConfigArgs(enable_components=CONTROL_PLANE_LOGS),
        workload_identity_config=gcp.container.ClusterWorkloadIdentityConfigArgs(
            workload_pool=f"{args.gcp_project}.svc.id.goog"
        ),
        release_channel=gcp.container.ClusterReleaseChannelArgs(channel=args.release_channel.value),
        # Dataplane V2 enforces NetworkPolicies (the gateway's isolation of the inference pods relies on
        # them); the legacy datapath ignores them unless Calico is added. GKE sets it at creation only.
        datapath_provider="ADVANCED_DATAPATH",
        # The driver behind standard-rwo, on by default for new clusters; stated so the cache never lacks it.
        addons_config=gcp.container.ClusterAddonsConfigArgs(gce_persistent_disk_csi_driver_config=pd_csi_driver),
        min_master_version=args.kubernetes_version,
        # GKE cannot create a cluster without a node pool: it makes a default one, removed at once so
        # that every pool is managed as its own resource. It still runs as the nodes' own account.
        remove_default_node_pool=True,
        initial_node_count=1,
        node_config=gcp.container.ClusterNodeConfigArgs(service_account=node_account.email, oauth_scopes=NODE_SCOPES),
        deletion_protection=args.deletion_protection,
        resource_labels=labels,
        opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[secrets_grant, node_role])),
    )

    # Untainted nodes for KEDA, the gateway and monitoring. GPU pools declare the nvidia.com/gpu taint
    # themselves (GKE adds it only when the cluster also has a non-GPU pool), so pool order is free.
    system_pool = gcp.container.NodePool(
        f"{name}-system",
        cluster=cluster.name,
        project=args.gcp_project,
        location=args.region,
        initial_node_count=1,
        autoscaling=gcp.container.NodePoolAutoscalingArgs(
            total_min_node_count=args.system_min_nodes, total_max_node_count=args.system_max_nodes
        ),
        management=gcp.container.NodePoolManagementArgs(auto_repair=True, auto_upgrade=True),
        node_config=gcp.container.NodePoolNodeConfigArgs(
            machine_type=args.system_machine_type or DEFAULT_SYSTEM_MACHINE_TYPE,
            service_account=node_account.email,
            oauth_scopes=NODE_SCOPES,
            workload_metadata_config=gcp.container.NodePoolNodeConfigWorkloadMetadataConfigArgs(mode="GKE_METADATA"),
            labels={"llmfleet.dev/pool": "system"},
            resource_labels=labels,
        ),
        opts=child,
    )

    ca_data = cluster.master_auth.apply(lambda auth: auth.cluster_ca_certificate or "")
    kubeconfig = pulumi.Output.all(cluster.name, cluster.endpoint, ca_data).apply(
        lambda parts: gke_kubeconfig(parts[0], parts[1], parts[2])
    )
    return GkeParts(
        cluster=cluster,
        kubeconfig=pulumi.Output.secret(kubeconfig),
        network=network.id,
        location=cluster.location,
        system_pool=system_pool,
        node_service_account=node_account.email,
        node_prerequisites=[node_role],
    )
