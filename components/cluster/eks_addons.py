"""What a new EKS cluster lacks for llmfleet's workloads: NetworkPolicy enforcement and a volume provisioner.

- The VPC CNI accepts NetworkPolicies but enforces none until its managed add-on is configured with
  `enableNetworkPolicy` (EKS user guide, "Restrict Pod network traffic with Kubernetes network policies");
  the gateway's isolation of the inference pods (components/gateway/isolation.py) depends on it.
- EKS 1.30+ marks no StorageClass default and ships no EBS CSI driver, so a claim without a class (the
  model cache's) stays Pending: the `aws-ebs-csi-driver` add-on, its IRSA role and a default gp3 class fix that.
"""

import json
from collections.abc import Mapping, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from llmfleet.components import pins

VPC_CNI_ADDON = "vpc-cni"
VPC_CNI_CONFIGURATION = {"enableNetworkPolicy": "true"}
"""The add-on's configuration schema takes the flag as a string (aws eks describe-addon-configuration)."""

EBS_CSI_ADDON = "aws-ebs-csi-driver"
EBS_CSI_POLICY_ARN = "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
EBS_CSI_SERVICE_ACCOUNT = "system:serviceaccount:kube-system:ebs-csi-controller-sa"
"""The controller's service account, as the add-on installs it: the only subject the IRSA role trusts."""
EBS_CSI_PROVISIONER = "ebs.csi.aws.com"

DEFAULT_STORAGE_CLASS = "gp3"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
EBS_ACCESS_MODES = frozenset({"ReadWriteOnce", "ReadWriteOncePod"})
"""An EBS volume attaches to one node at a time: claims asking ReadWriteMany never bind to the gp3 class."""


def network_policy_addon(
    name: str, cluster_name: pulumi.Input[str], tags: Mapping[str, str], child: pulumi.ResourceOptions
) -> aws.eks.Addon:
    """The VPC CNI as a managed add-on with its network policy agent on. Nodes should start after it, so
    the agent runs from their first pod."""
    return aws.eks.Addon(
        f"{name}-vpc-cni",
        cluster_name=cluster_name,
        addon_name=VPC_CNI_ADDON,
        addon_version=pins.eks_addon(VPC_CNI_ADDON),
        configuration_values=json.dumps(VPC_CNI_CONFIGURATION),
        # A new cluster already runs the VPC CNI self-managed (aws-node); the add-on takes it over.
        resolve_conflicts_on_create="OVERWRITE",
        tags=dict(tags),
        opts=child,
    )


def irsa_trust_policy(oidc_provider_arn: str, issuer: str, subject: str) -> str:
    """Trust policy letting one Kubernetes service account assume a role through the cluster's OIDC issuer."""
    host = issuer.removeprefix("https://")
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": oidc_provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {"StringEquals": {f"{host}:sub": subject, f"{host}:aud": "sts.amazonaws.com"}},
                }
            ],
        }
    )


def ebs_csi_addon(
    name: str,
    cluster_name: pulumi.Input[str],
    oidc_provider_arn: pulumi.Output[str],
    oidc_issuer: pulumi.Output[str],
    tags: Mapping[str, str],
    depends_on: Sequence[pulumi.Resource],
    child: pulumi.ResourceOptions,
) -> aws.eks.Addon:
    """The EBS CSI driver with an IRSA role for its controller. `depends_on`: the nodes its controller
    runs on (the add-on reports ACTIVE only once the controller is up)."""
    trust = pulumi.Output.all(oidc_provider_arn, oidc_issuer).apply(
        lambda parts: irsa_trust_policy(parts[0], parts[1], EBS_CSI_SERVICE_ACCOUNT)
    )
    role = aws.iam.Role(f"{name}-ebs-csi-role", assume_role_policy=trust, tags=dict(tags), opts=child)
    policy = aws.iam.RolePolicyAttachment(
        f"{name}-ebs-csi-role-policy", role=role.name, policy_arn=EBS_CSI_POLICY_ARN, opts=child
    )
    return aws.eks.Addon(
        f"{name}-ebs-csi",
        cluster_name=cluster_name,
        addon_name=EBS_CSI_ADDON,
        addon_version=pins.eks_addon(EBS_CSI_ADDON),
        service_account_role_arn=role.arn,
        tags=dict(tags),
        opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[policy, *depends_on])),
    )


def gp3_storage_class(name: str, opts: pulumi.ResourceOptions) -> k8s.storage.v1.StorageClass:
    """The cluster's default class: encrypted gp3 through the EBS CSI driver, bound where the pod lands
    (an EBS volume lives in one zone). `opts` carries the cluster's Kubernetes provider."""
    return k8s.storage.v1.StorageClass(
        f"{name}-gp3",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=DEFAULT_STORAGE_CLASS, annotations={DEFAULT_CLASS_ANNOTATION: "true"}),
        provisioner=EBS_CSI_PROVISIONER,
        parameters={"type": "gp3", "encrypted": "true"},
        volume_binding_mode="WaitForFirstConsumer",
        reclaim_policy="Delete",
        allow_volume_expansion=True,
        opts=opts,
    )
