"""An EKS cluster with its own VPC: subnets in several zones, NAT egress, IAM roles, IRSA, a system pool,
and the add-ons that enforce NetworkPolicies and provision volumes (eks_addons.py).

Every resource is a child of the `Cluster` component, so the caller's aws.Provider (region, account)
reaches all of them; nothing here builds a provider.
"""

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from llmfleet.components import pins
from llmfleet.components.cluster.args import ClusterArgs
from llmfleet.components.cluster.eks_addons import ebs_csi_addon, network_policy_addon
from llmfleet.components.cluster.kubeconfig import eks_kubeconfig

MIN_ZONES = 2  # EKS rejects a cluster whose subnets span fewer than two zones.
MAX_ZONES = 4  # private subnets take one eighth of the VPC each; the last eighth holds the public ones
DEFAULT_SYSTEM_INSTANCE_TYPE = "m6i.xlarge"  # 4 vCPU / 16 GiB: room for KEDA, Envoy and Prometheus
SYSTEM_DISK_GIB = 50
SYSTEM_AMI_TYPE = "AL2023_x86_64_STANDARD"

CONTROL_PLANE_LOGS = ("api", "audit", "authenticator", "controllerManager", "scheduler")
"""Every control-plane log type EKS offers, sent to CloudWatch (`audit`: who did what through the API)."""

# AWS managed policies (commercial partition): what the control plane and the nodes need.
CLUSTER_POLICIES = ("AmazonEKSClusterPolicy",)
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly")


ROOT_DEVICE = "/dev/xvda"
"""Root volume of the AL2023 EKS AMIs (standard and NVIDIA): where images and container layers live."""
IMDS_HOP_LIMIT = 1
"""IMDSv2 answers only the node itself: a pod's packets take one more hop and never get the node role's
credentials (pods that need AWS APIs use IRSA)."""


def node_launch_template(
    name: str, disk_gib: int, tags: Mapping[str, str], opts: pulumi.ResourceOptions
) -> aws.ec2.LaunchTemplate:
    """What a managed node group cannot set itself: IMDSv2 only, hop limit 1, and an encrypted gp3 root
    volume. No AMI and no instance type here, so the node group keeps its `ami_type` (the plan's GPU AMI)
    and its `instance_types` (the plan's type and fallbacks); with a launch template the group must not
    set `disk_size` either (EKS CreateNodegroup)."""
    return aws.ec2.LaunchTemplate(
        name,
        metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
            http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=IMDS_HOP_LIMIT
        ),
        block_device_mappings=[
            aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name=ROOT_DEVICE,
                ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_size=disk_gib, volume_type="gp3", encrypted="true", delete_on_termination="true"
                ),
            )
        ],
        update_default_version=True,
        tags=dict(tags),
        opts=opts,
    )


def launch_template_ref(template: aws.ec2.LaunchTemplate) -> aws.eks.NodeGroupLaunchTemplateArgs:
    return aws.eks.NodeGroupLaunchTemplateArgs(id=template.id, version=template.latest_version.apply(str))


@dataclass(frozen=True)
class EksParts:
    cluster: aws.eks.Cluster
    kubeconfig: pulumi.Output[str]
    node_role_arn: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer: pulumi.Output[str]
    system_pool: aws.eks.NodeGroup
    node_prerequisites: list[pulumi.Resource]
    """What a node needs before it can join: its role's policies, the NAT route out of its subnet, and the
    VPC CNI add-on (so the network policy agent runs before the node's first pod)."""
    addons: list[aws.eks.Addon]
    """Managed add-ons Kubernetes workloads need (NetworkPolicy enforcement, EBS volumes)."""


def subnet_cidrs(vpc_cidr: str, zones: int) -> tuple[list[str], list[str]]:
    """(private, public) CIDRs, one each per zone: private = an eighth of the VPC (pods take VPC IPs
    under the VPC CNI, so they need room); public = a 64th, only for NAT and load balancers."""
    if not MIN_ZONES <= zones <= MAX_ZONES:
        raise ValueError(f"ClusterArgs.zone_count: EKS subnets need {MIN_ZONES} to {MAX_ZONES} zones, got {zones}")
    network = ipaddress.ip_network(vpc_cidr)
    if network.prefixlen > 20:
        raise ValueError(f"ClusterArgs.network_cidr: {vpc_cidr} is too small for EKS subnets; use a /20 or larger")
    eighths = list(network.subnets(prefixlen_diff=3))
    public = list(eighths[-1].subnets(prefixlen_diff=3))
    return [str(n) for n in eighths[:zones]], [str(n) for n in public[:zones]]


def _assume_role_policy(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
    )


def _role(
    name: str, service: str, policies: Sequence[str], tags: Mapping[str, str], opts: pulumi.ResourceOptions
) -> tuple[aws.iam.Role, list[aws.iam.RolePolicyAttachment]]:
    role = aws.iam.Role(name, assume_role_policy=_assume_role_policy(service), tags=dict(tags), opts=opts)
    attachments = [
        aws.iam.RolePolicyAttachment(
            f"{name}-{policy.lower().replace('_', '-')}",
            role=role.name,
            policy_arn=f"arn:aws:iam::aws:policy/{policy}",
            opts=opts,
        )
        for policy in policies
    ]
    return role, attachments


def _zone_names(name: str, args: ClusterArgs, child: pulumi.ResourceOptions) -> list[pulumi.Output[str]]:
    if args.availability_zones is not None:
        return [pulumi.Output.from_input(zone) for zone in args.availability_zones]
    # The invoke inherits the caller's aws provider from the parent, so it lists the right region.
    available = aws.get_availability_zones_output(
        state="available", opts=pulumi.InvokeOutputOptions(parent=child.parent)
    )
    return [available.names.apply(lambda names, i=i: names[i]) for i in range(args.zone_count)]


def _network(
    name: str, args: ClusterArgs, cluster_name: str, child: pulumi.ResourceOptions
) -> tuple[list[aws.ec2.Subnet], list[aws.ec2.Subnet], aws.ec2.RouteTable]:
    """VPC, one private and one public subnet per zone, an internet gateway and one NAT gateway.

    One NAT gateway (not one per zone) keeps the idle cost down; a zone outage then cuts egress until
    the region fails over, which the multi-region load balancer is there for.
    """
    zones = _zone_names(name, args, child)
    private_cidrs, public_cidrs = subnet_cidrs(args.network_cidr, len(zones))
    tags = dict(args.tags)
    vpc = aws.ec2.Vpc(
        f"{name}-vpc",
        cidr_block=args.network_cidr,
        enable_dns_hostnames=True,
        enable_dns_support=True,
        tags={**tags, "Name": f"{cluster_name}"},
        opts=child,
    )
    # Subnet tags tell the AWS Load Balancer Controller (and the in-tree controller) where to put
    # internet-facing (elb) and internal (internal-elb) load balancers.
    shared = {f"kubernetes.io/cluster/{cluster_name}": "shared"}
    public = [
        aws.ec2.Subnet(
            f"{name}-public-{i}",
            vpc_id=vpc.id,
            cidr_block=cidr,
            availability_zone=zone,
            map_public_ip_on_launch=True,
            tags={**tags, **shared, "kubernetes.io/role/elb": "1", "Name": f"{cluster_name}-public-{i}"},
            opts=child,
        )
        for i, (cidr, zone) in enumerate(zip(public_cidrs, zones, strict=True))
    ]
    private = [
        aws.ec2.Subnet(
            f"{name}-private-{i}",
            vpc_id=vpc.id,
            cidr_block=cidr,
            availability_zone=zone,
            tags={**tags, **shared, "kubernetes.io/role/internal-elb": "1", "Name": f"{cluster_name}-private-{i}"},
            opts=child,
        )
        for i, (cidr, zone) in enumerate(zip(private_cidrs, zones, strict=True))
    ]
    gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tags, opts=child)
    public_routes = aws.ec2.RouteTable(
        f"{name}-public-rt",
        vpc_id=vpc.id,
        routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=gateway.id)],
        tags=tags,
        opts=child,
    )
    nat_ip = aws.ec2.Eip(f"{name}-nat-ip", domain="vpc", tags=tags, opts=child)
    nat = aws.ec2.NatGateway(
        f"{name}-nat",
        allocation_id=nat_ip.id,
        subnet_id=public[0].id,
        tags=tags,
        opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[gateway])),
    )
    private_routes = aws.ec2.RouteTable(
        f"{name}-private-rt",
        vpc_id=vpc.id,
        routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat.id)],
        tags=tags,
        opts=child,
    )
    for i, subnet in enumerate(public):
        aws.ec2.RouteTableAssociation(
            f"{name}-public-rta-{i}", subnet_id=subnet.id, route_table_id=public_routes.id, opts=child
        )
    for i, subnet in enumerate(private):
        aws.ec2.RouteTableAssociation(
            f"{name}-private-rta-{i}", subnet_id=subnet.id, route_table_id=private_routes.id, opts=child
        )
    return private, public, private_routes


def _secrets_key(name: str, cluster_name: str, tags: Mapping[str, str], child: pulumi.ResourceOptions) -> aws.kms.Key:
    """A customer-managed key for envelope encryption of the cluster's Secrets: rotated yearly, and
    revocable by the account (EKS's default encryption uses a key AWS owns). The default key policy
    (the account administers it) lets the principal running `pulumi up` grant EKS its use."""
    return aws.kms.Key(
        f"{name}-secrets-key",
        description=f"Envelope encryption of Kubernetes Secrets in EKS cluster {cluster_name}",
        enable_key_rotation=True,
        deletion_window_in_days=30,
        tags=dict(tags),
        opts=child,
    )


def _control_plane_logs(
    name: str, args: ClusterArgs, cluster_name: str, child: pulumi.ResourceOptions
) -> aws.cloudwatch.LogGroup:
    """The log group EKS writes to (its fixed name), created first so it has a retention: EKS would
    create one that keeps logs forever."""
    return aws.cloudwatch.LogGroup(
        f"{name}-control-plane-logs",
        name=f"/aws/eks/{cluster_name}/cluster",
        retention_in_days=args.log_retention_days,
        tags=dict(args.tags),
        opts=child,
    )


def create_eks(name: str, args: ClusterArgs, cluster_name: str, child: pulumi.ResourceOptions) -> EksParts:
    """Everything an EKS region needs before GPU pools can join it. `child` carries parent=the Cluster."""
    if not args.api_access_cidrs:
        raise ValueError(
            "ClusterArgs.api_access_cidrs: required for an EKS cluster: the CIDRs allowed to reach its API "
            "(['0.0.0.0/0'] opens it to the internet)"
        )
    private, public, private_routes = _network(name, args, cluster_name, child)
    tags = dict(args.tags)
    secrets_key = _secrets_key(name, cluster_name, tags, child)
    logs = _control_plane_logs(name, args, cluster_name, child)
    cluster_role, cluster_policies = _role(f"{name}-cluster-role", "eks.amazonaws.com", CLUSTER_POLICIES, tags, child)
    node_role, node_policies = _role(f"{name}-node-role", "ec2.amazonaws.com", NODE_POLICIES, tags, child)

    cluster = aws.eks.Cluster(
        f"{name}-eks",
        name=cluster_name,
        role_arn=cluster_role.arn,
        # Pinned by default: the EKS add-on builds in components/pins.yaml are the ones for this version.
        version=args.kubernetes_version or pins.kubernetes("eks"),
        vpc_config=aws.eks.ClusterVpcConfigArgs(
            subnet_ids=[s.id for s in [*private, *public]],
            # Nodes reach the API inside the VPC; from outside, only the stack's CIDRs.
            endpoint_private_access=True,
            endpoint_public_access=True,
            public_access_cidrs=list(args.api_access_cidrs),
        ),
        encryption_config=aws.eks.ClusterEncryptionConfigArgs(
            resources=["secrets"], provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=secrets_key.arn)
        ),
        enabled_cluster_log_types=list(CONTROL_PLANE_LOGS),
        # Access entries (not the aws-auth ConfigMap): managed node groups register their role
        # themselves, and whoever runs `pulumi up` becomes cluster admin.
        access_config=aws.eks.ClusterAccessConfigArgs(
            authentication_mode="API", bootstrap_cluster_creator_admin_permissions=True
        ),
        deletion_protection=args.deletion_protection,
        tags=tags,
        opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[*cluster_policies, logs])),
    )

    # IRSA: pods' service accounts assume IAM roles through the cluster's OIDC issuer. IAM fetches
    # the issuer's certificate thumbprint itself when none is given.
    issuer = cluster.identities.apply(lambda ids: (ids[0].oidcs or [])[0].issuer or "")
    oidc = aws.iam.OpenIdConnectProvider(
        f"{name}-oidc", url=issuer, client_id_lists=["sts.amazonaws.com"], tags=tags, opts=child
    )

    vpc_cni = network_policy_addon(name, cluster.name, tags, child)
    node_prerequisites: list[pulumi.Resource] = [*node_policies, private_routes, vpc_cni]

    system_template = node_launch_template(f"{name}-system-lt", SYSTEM_DISK_GIB, tags, child)
    system_pool = aws.eks.NodeGroup(
        f"{name}-system",
        cluster_name=cluster.name,
        node_role_arn=node_role.arn,
        subnet_ids=[s.id for s in private],
        ami_type=SYSTEM_AMI_TYPE,
        instance_types=[args.system_machine_type or DEFAULT_SYSTEM_INSTANCE_TYPE],
        launch_template=launch_template_ref(system_template),
        scaling_config=aws.eks.NodeGroupScalingConfigArgs(
            min_size=args.system_min_nodes, desired_size=args.system_min_nodes, max_size=args.system_max_nodes
        ),
        labels={"llmfleet.dev/pool": "system"},
        tags=tags,
        opts=pulumi.ResourceOptions.merge(
            child,
            # NAT first: nodes in private subnets must reach ECR and the EKS API to join.
            pulumi.ResourceOptions(depends_on=node_prerequisites, ignore_changes=["scalingConfig.desiredSize"]),
        ),
    )
    ebs_csi = ebs_csi_addon(name, cluster.name, oidc.arn, issuer, tags, [system_pool], child)

    ca_data = cluster.certificate_authority.apply(lambda ca: ca.data or "")
    kubeconfig = pulumi.Output.all(cluster.name, cluster.endpoint, ca_data).apply(
        lambda parts: eks_kubeconfig(parts[0], args.region, parts[1], parts[2])
    )
    return EksParts(
        cluster=cluster,
        kubeconfig=pulumi.Output.secret(kubeconfig),
        node_role_arn=node_role.arn,
        private_subnet_ids=pulumi.Output.all(*[s.id for s in private]),
        oidc_provider_arn=oidc.arn,
        oidc_issuer=issuer,
        system_pool=system_pool,
        node_prerequisites=node_prerequisites,
        addons=[vpc_cni, ebs_csi],
    )
