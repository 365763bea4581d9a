"""Cluster and GpuNodePool under the offline engine's mocks: network spread, IAM, IRSA, GKE settings, providers,
secrets; pools' device plugin, existing clusters, input checks."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pytest
from support.inference import args_for, gguf_plan, make_plan

from llmfleet.components.cluster import Cluster, ClusterArgs, ClusterKind, EksNodes, GkeNodes, ReleaseChannel
from llmfleet.components.cluster.component import NAME_LIMITS, default_cluster_name
from llmfleet.components.cluster.eks import NODE_POLICIES, subnet_cidrs
from llmfleet.components.cluster.eks_addons import (
    DEFAULT_CLASS_ANNOTATION,
    EBS_ACCESS_MODES,
    EBS_CSI_POLICY_ARN,
    EBS_CSI_PROVISIONER,
    EBS_CSI_SERVICE_ACCOUNT,
)
from llmfleet.components.cluster.eks_addons import DEFAULT_STORAGE_CLASS as EKS_DEFAULT_CLASS
from llmfleet.components.cluster.gke import DEFAULT_STORAGE_CLASS as GKE_DEFAULT_CLASS
from llmfleet.components.cluster.gke import PD_ACCESS_MODES, subnet_ranges
from llmfleet.components.cluster.kubeconfig import eks_kubeconfig, gke_kubeconfig
from llmfleet.components.inference import InferenceService, ModelCache
from llmfleet.components.node_labels import ACCELERATOR_LABEL, GPU_TAINT_KEY
from llmfleet.components.nodepool import (
    DEVICE_PLUGIN_VERSION,
    GkeAccelerator,
    GpuNodePool,
    GpuNodePoolArgs,
    gke_accelerator,
    node_counts,
)
from llmfleet.components.sizing.errors import PlanningError
from llmfleet.components.sizing.plan import DeploymentPlan
from llmfleet.infra.render.manifests import to_manifest
from llmfleet.infra.render.offline import RecordedResource, RecordingMocks
from llmfleet.infra.render.validate import validate_manifest

KUBECONFIG = "apiVersion: v1\nkind: Config\nusers: [{name: me, user: {token: hunter2}}]\n"


def _only(mocks: RecordingMocks, type_: str) -> RecordedResource:
    found = [r for r in mocks.resources if r.type == type_]
    assert len(found) == 1, f"expected one {type_}, got {[r.urn for r in found]}"
    return found[0]


def _of_type(mocks: RecordingMocks, type_: str) -> list[RecordedResource]:
    return [r for r in mocks.resources if r.type == type_]


def _assert_cloud_provider(mocks: RecordingMocks, prefix: str, provider: pulumi.ProviderResource) -> None:
    """Every resource of the cloud got the caller's provider, and nothing of the other cloud exists."""
    name = provider._name  # pyright: ignore[reportPrivateUsage]
    provider_urn = next(r.urn for r in mocks.resources if r.type.startswith("pulumi:providers:") and r.name == name)
    cloud = [r for r in mocks.resources if r.type.startswith(prefix)]
    assert cloud, f"no {prefix} resources were registered"
    for resource in cloud:
        assert resource.provider == provider_urn, f"{resource.urn} has provider {resource.provider}, not {provider_urn}"


def _assert_named_under(mocks: RecordingMocks, key: str) -> None:
    for resource in mocks.resources:
        assert resource.name.startswith(key), f"{resource.urn}: region resources must be named {key}-..."


# --- EKS ---------------------------------------------------------------------------------------

CIDRS = ["203.0.113.0/24"]


def _assert_imdsv2_only(mocks: RecordingMocks, group: Any, template_name: str) -> None:
    """The node group starts from a launch template that requires IMDSv2 tokens with one hop (pods cannot
    reach the node's credentials) and keeps the group's own AMI type and instance types."""
    template = next(t for t in _of_type(mocks, "aws:ec2/launchTemplate:LaunchTemplate") if t.name == template_name)
    assert str(group.inputs["launchTemplate"]["id"]).startswith("lt-"), group.urn
    metadata = template.inputs["metadataOptions"]
    assert (metadata["httpTokens"], metadata["httpPutResponseHopLimit"]) == ("required", 1), template.urn
    assert "imageId" not in template.inputs and "instanceType" not in template.inputs, template.urn
    assert template.inputs["blockDeviceMappings"][0]["ebs"]["encrypted"] == "true"
    assert "diskSize" not in group.inputs, "EKS rejects diskSize beside a launch template"
    assert group.inputs["launchTemplate"]["version"] == "1"


@pulumi.runtime.test
def test_eks_cluster_network_iam_irsa_and_providers(recording_mocks: RecordingMocks) -> Any:
    provider = aws.Provider("aws-us-east-1-aws", region="us-east-1")
    cluster = Cluster(
        "aws-us-east-1",
        ClusterArgs(kind=ClusterKind.eks, api_access_cidrs=CIDRS, region="us-east-1", kubernetes_version="1.33"),
        opts=pulumi.ResourceOptions(providers=[provider]),
    )
    assert isinstance(cluster.nodes, EksNodes) and cluster.oidc_provider_arn is not None
    assert cluster.network is None

    def check(values: list[Any]) -> None:
        mocks = recording_mocks
        _assert_named_under(mocks, "aws-us-east-1")
        subnets = _of_type(mocks, "aws:ec2/subnet:Subnet")
        private = [s for s in subnets if s.inputs["tags"].get("kubernetes.io/role/internal-elb") == "1"]
        public = [s for s in subnets if s.inputs["tags"].get("kubernetes.io/role/elb") == "1"]
        assert len(private) == 3 and len(public) == 3, [s.urn for s in subnets]
        zones = {s.inputs["availabilityZone"] for s in private}
        assert len(zones) >= 2, f"private subnets span {zones}"
        assert zones == {s.inputs["availabilityZone"] for s in public}
        assert len(values[2]) == len(private)

        eks = _only(mocks, "aws:eks/cluster:Cluster")
        assert eks.inputs["version"] == "1.33"
        assert eks.inputs["name"] == "llmfleet-test-aws-us-east-1"
        assert len(eks.inputs["vpcConfig"]["subnetIds"]) == 6
        assert eks.inputs["accessConfig"]["authenticationMode"] == "API"
        assert eks.inputs["vpcConfig"]["publicAccessCidrs"] == CIDRS, "the API answers the stack's CIDRs only"
        assert eks.inputs["vpcConfig"]["endpointPrivateAccess"] is True
        key = _only(mocks, "aws:kms/key:Key")
        assert key.inputs["enableKeyRotation"] is True
        encryption = eks.inputs["encryptionConfig"]
        assert encryption["resources"] == ["secrets"] and encryption["provider"]["keyArn"] == key.outputs["arn"]
        assert set(eks.inputs["enabledClusterLogTypes"]) >= {"api", "audit", "authenticator"}
        logs = _only(mocks, "aws:cloudwatch/logGroup:LogGroup")
        assert logs.inputs["name"] == "/aws/eks/llmfleet-test-aws-us-east-1/cluster", "the group EKS writes to"
        assert logs.inputs["retentionInDays"] == 90

        oidc = _only(mocks, "aws:iam/openIdConnectProvider:OpenIdConnectProvider")
        assert oidc.inputs["clientIdLists"] == ["sts.amazonaws.com"]
        assert oidc.inputs["url"] == eks.outputs["identities"][0]["oidcs"][0]["issuer"]
        assert values[1] == oidc.outputs["arn"]

        roles = {r.name: r for r in _of_type(mocks, "aws:iam/role:Role")}
        node_role = roles["aws-us-east-1-node-role"]
        assert "ec2.amazonaws.com" in node_role.inputs["assumeRolePolicy"]
        attached = {
            a.inputs["policyArn"].rsplit("/", 1)[1]
            for a in _of_type(mocks, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
            if a.name.startswith("aws-us-east-1-node-role")
        }
        assert attached == set(NODE_POLICIES)

        # Egress: the private route table sends 0.0.0.0/0 through the NAT gateway in a public subnet.
        nat = _only(mocks, "aws:ec2/natGateway:NatGateway")
        assert nat.inputs["subnetId"], "the NAT gateway needs a public subnet"
        private_rt = next(r for r in _of_type(mocks, "aws:ec2/routeTable:RouteTable") if "private" in r.name)
        assert private_rt.inputs["routes"][0]["natGatewayId"]

        system = _only(mocks, "aws:eks/nodeGroup:NodeGroup")
        assert system.inputs["amiType"] == "AL2023_x86_64_STANDARD" and "taints" not in system.inputs
        _assert_imdsv2_only(mocks, system, "aws-us-east-1-system-lt")

        _assert_cloud_provider(mocks, "aws:", provider)
        k8s_provider = _only(mocks, "pulumi:providers:kubernetes")
        assert ("kubeconfig",) in k8s_provider.secret_paths, "the kubeconfig reached the provider unmarked"
        kubeconfig = json.loads(k8s_provider.inputs["kubeconfig"])
        assert kubeconfig["users"][0]["user"]["exec"]["command"] == "aws"
        assert kubeconfig["clusters"][0]["cluster"]["server"] == eks.outputs["endpoint"]

    return pulumi.Output.all(
        cluster.kubeconfig, cluster.oidc_provider_arn, cluster.nodes.subnet_ids, cluster.provider.urn
    ).apply(check)


@pulumi.runtime.test
def test_eks_explicit_zones_are_used_as_given(recording_mocks: RecordingMocks) -> Any:
    provider = aws.Provider("aws-eu-west-1-aws", region="eu-west-1")
    zones = ["eu-west-1b", "eu-west-1c"]
    cluster = Cluster(
        "aws-eu-west-1",
        ClusterArgs(
            kind=ClusterKind.eks,
            api_access_cidrs=CIDRS,
            region="eu-west-1",
            availability_zones=zones,
            network_cidr="10.8.0.0/16",
        ),
        opts=pulumi.ResourceOptions(providers=[provider]),
    )

    def check(_: Any) -> None:
        subnets = _of_type(recording_mocks, "aws:ec2/subnet:Subnet")
        assert sorted(s.inputs["availabilityZone"] for s in subnets) == sorted(zones * 2)
        vpc = ipaddress.ip_network("10.8.0.0/16")
        assert all(ipaddress.ip_network(s.inputs["cidrBlock"]).subnet_of(vpc) for s in subnets)  # type: ignore[arg-type]

    return pulumi.Output.all(cluster.kubeconfig, cluster.provider.urn).apply(check)


def test_eks_needs_two_zones(recording_mocks: RecordingMocks) -> None:
    with pytest.raises(ValueError, match="2 to 4 zones"):
        Cluster(
            "aws-x",
            ClusterArgs(
                kind=ClusterKind.eks, api_access_cidrs=CIDRS, region="us-east-1", availability_zones=["us-east-1a"]
            ),
        )


def test_subnet_cidrs_do_not_overlap_and_stay_in_the_vpc() -> None:
    vpc = ipaddress.ip_network("10.0.0.0/16")
    for zones in (2, 3, 4):
        private, public = subnet_cidrs(str(vpc), zones)
        networks = [ipaddress.ip_network(c) for c in private + public]
        assert len(private) == len(public) == zones
        assert all(n.subnet_of(vpc) for n in networks)  # type: ignore[arg-type]
        assert not any(a.overlaps(b) for i, a in enumerate(networks) for b in networks[i + 1 :])
    with pytest.raises(ValueError, match="too small"):
        subnet_cidrs("10.0.0.0/24", 2)
    with pytest.raises(ValueError, match="zones"):
        subnet_cidrs("10.0.0.0/16", 5)


# --- GKE ---------------------------------------------------------------------------------------


@pulumi.runtime.test
def test_gke_cluster_is_vpc_native_with_workload_identity(recording_mocks: RecordingMocks) -> Any:
    provider = gcp.Provider("gcp-us-central1-gcp", project="acme-llm", region="us-central1")
    cluster = Cluster(
        "gcp-us-central1",
        ClusterArgs(
            kind=ClusterKind.gke,
            region="us-central1",
            gcp_project="acme-llm",
            release_channel=ReleaseChannel.STABLE,
            api_access_cidrs=CIDRS,
        ),
        opts=pulumi.ResourceOptions(providers=[provider]),
    )
    assert isinstance(cluster.nodes, GkeNodes) and cluster.location is not None
    assert cluster.nodes.project == "acme-llm", "GKE pools are created in the cluster's project"

    def check(values: list[Any]) -> None:
        mocks = recording_mocks
        _assert_named_under(mocks, "gcp-us-central1")
        gke = _only(mocks, "gcp:container/cluster:Cluster")
        subnet = _only(mocks, "gcp:compute/subnetwork:Subnetwork")
        ranges = {r["rangeName"] for r in subnet.inputs["secondaryIpRanges"]}
        policy = gke.inputs["ipAllocationPolicy"]
        assert {policy["clusterSecondaryRangeName"], policy["servicesSecondaryRangeName"]} == ranges
        assert gke.inputs["networkingMode"] == "VPC_NATIVE"
        assert gke.inputs["workloadIdentityConfig"]["workloadPool"] == "acme-llm.svc.id.goog"
        assert gke.inputs["releaseChannel"]["channel"] == "STABLE"
        assert gke.inputs["removeDefaultNodePool"] is True
        assert gke.inputs["privateClusterConfig"]["enablePrivateNodes"] is True
        authorized = gke.inputs["masterAuthorizedNetworksConfig"]
        assert [b["cidrBlock"] for b in authorized["cidrBlocks"]] == CIDRS
        assert authorized["gcpPublicCidrsAccessEnabled"] is False
        key = _only(mocks, "gcp:kms/cryptoKey:CryptoKey")
        assert key.inputs["rotationPeriod"] == "7776000s"
        encryption = gke.inputs["databaseEncryption"]
        assert encryption["state"] == "ENCRYPTED" and encryption["keyName"].endswith("/cryptoKeys/kubernetes-secrets")
        grant = _only(mocks, "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember")
        assert grant.inputs["member"].endswith("@container-engine-robot.iam.gserviceaccount.com")
        assert grant.inputs["cryptoKeyId"] == encryption["keyName"], "the GKE service agent may use that key"
        assert "APISERVER" in gke.inputs["loggingConfig"]["enableComponents"]
        account = _only(mocks, "gcp:serviceaccount/account:Account")
        role = _only(mocks, "gcp:projects/iAMMember:IAMMember")
        assert role.inputs["role"] == "roles/container.defaultNodeServiceAccount"
        assert role.inputs["member"] == f"serviceAccount:{account.outputs['email']}"
        assert gke.inputs["nodeConfig"]["serviceAccount"] == account.outputs["email"], "not the default account"
        _only(mocks, "gcp:compute/routerNat:RouterNat")  # private nodes still reach HuggingFace
        system = _only(mocks, "gcp:container/nodePool:NodePool")
        assert "guestAccelerators" not in system.inputs["nodeConfig"] and "taints" not in system.inputs["nodeConfig"]
        assert system.inputs["nodeConfig"]["workloadMetadataConfig"]["mode"] == "GKE_METADATA"
        assert system.inputs["nodeConfig"]["serviceAccount"] == account.outputs["email"]
        _assert_cloud_provider(mocks, "gcp:", provider)
        k8s_provider = _only(mocks, "pulumi:providers:kubernetes")
        assert ("kubeconfig",) in k8s_provider.secret_paths
        user = json.loads(k8s_provider.inputs["kubeconfig"])["users"][0]["user"]
        assert user["exec"]["command"] == "gke-gcloud-auth-plugin"
        assert values[1] == "us-central1"

    return pulumi.Output.all(cluster.kubeconfig, cluster.location, cluster.provider.urn).apply(check)


def test_gke_needs_a_project_and_a_short_name(recording_mocks: RecordingMocks) -> None:
    with pytest.raises(ValueError, match="gcp_project"):
        Cluster("gcp-a", ClusterArgs(kind=ClusterKind.gke, api_access_cidrs=CIDRS, region="us-central1"))
    with pytest.raises(ValueError, match="40 characters"):
        Cluster(
            "gcp-b",
            ClusterArgs(
                kind=ClusterKind.gke,
                api_access_cidrs=CIDRS,
                region="us-central1",
                gcp_project="p",
                cluster_name="x" * 41,
            ),
        )


def test_default_cluster_names_fit_the_cloud_and_stay_distinct() -> None:
    regions = ["gcp-asia-northeast1-cluster", "gcp-asia-northeast2-cluster", "gcp-us-central1-cluster"]
    names = [default_cluster_name("production", region, ClusterKind.gke) for region in regions]
    assert all(len(n) <= NAME_LIMITS[ClusterKind.gke] for n in names), names
    assert len(set(names)) == len(names), "cutting to the limit must not make two regions collide"
    assert all(n[0].isalpha() and not n.endswith("-") for n in names), names
    assert names[2].startswith("llmfleet-production-gcp-us-cen"), "the readable part is kept, the hash appended"
    assert names == [default_cluster_name("production", region, ClusterKind.gke) for region in regions], "stable"
    short = default_cluster_name("dev", "gcp-us-central1-cluster", ClusterKind.gke)
    assert short == "llmfleet-dev-gcp-us-central1-cluster", "a name within the limit is kept whole"
    assert default_cluster_name("production", regions[0], ClusterKind.eks).endswith(regions[0]), "EKS allows 100"


def test_gke_ranges_are_disjoint() -> None:
    nodes, services, pods = (ipaddress.ip_network(c) for c in subnet_ranges("10.0.0.0/16"))
    assert not nodes.overlaps(services) and not nodes.overlaps(pods) and not services.overlaps(pods)
    assert pods.num_addresses >= 128 * 256, "pods need a /24 per node for at least 128 nodes"


# --- NetworkPolicy enforcement and the model cache's storage -------------------------------------


def _cache_claim(mocks: RecordingMocks, model: str) -> dict[str, Any]:
    """The model cache claim of `model`'s pods: the Deployment's claim template, or its shared claim."""
    (deployment,) = [r for r in _of_type(mocks, "kubernetes:apps/v1:Deployment") if r.name == f"{model}-deployment"]
    (volume,) = [v for v in deployment.inputs["spec"]["template"]["spec"]["volumes"] if v["name"] == "model-cache"]
    if "ephemeral" in volume:
        return volume["ephemeral"]["volumeClaimTemplate"]["spec"]
    claims = [
        r for r in _of_type(mocks, "kubernetes:core/v1:PersistentVolumeClaim") if r.name == f"{model}-model-cache"
    ]
    assert len(claims) == 1, [c.urn for c in claims]
    return claims[0].inputs["spec"]


def _serve_on(cluster: Cluster, model: str, cache: ModelCache) -> InferenceService:
    return InferenceService(
        model,
        args_for(make_plan(model=model), model_cache=cache),
        opts=pulumi.ResourceOptions(provider=cluster.provider),
    )


def _assert_claim_fits(claim: dict[str, Any], default_class: str, access_modes: frozenset[str], where: str) -> None:
    assert claim.get("storageClassName", default_class) == default_class, f"{where}: {claim}"
    assert set(claim["accessModes"]) <= access_modes, f"{where}: {default_class} cannot serve {claim}"
    assert claim.get("volumeMode", "Filesystem") == "Filesystem", f"{where}: {claim}"


@pulumi.runtime.test
def test_eks_enforces_network_policies_before_any_node_or_workload(recording_mocks: RecordingMocks) -> Any:
    provider = aws.Provider("aws-us-east-1-aws", region="us-east-1")
    cluster = Cluster(
        "aws-us-east-1",
        ClusterArgs(kind=ClusterKind.eks, api_access_cidrs=CIDRS, region="us-east-1"),
        opts=pulumi.ResourceOptions(providers=[provider]),
    )

    def check(values: list[Any]) -> None:
        mocks = recording_mocks
        addons = {a.inputs["addonName"]: a for a in _of_type(mocks, "aws:eks/addon:Addon")}
        assert set(addons) == {"vpc-cni", "aws-ebs-csi-driver"}, [a.urn for a in addons.values()]
        vpc_cni = addons["vpc-cni"]
        assert json.loads(vpc_cni.inputs["configurationValues"]) == {"enableNetworkPolicy": "true"}, vpc_cni.urn
        assert vpc_cni.inputs["resolveConflictsOnCreate"] == "OVERWRITE", "a new cluster runs aws-node self-managed"
        eks = _only(mocks, "aws:eks/cluster:Cluster")
        assert all(a.inputs["clusterName"] == eks.inputs["name"] for a in addons.values())
        # Nodes start with the network policy agent; the GPU pools wait for it too (node_prerequisites).
        system = _only(mocks, "aws:eks/nodeGroup:NodeGroup")
        assert vpc_cni.urn in system.dependencies, f"{system.urn} does not wait for {vpc_cni.urn}"
        assert vpc_cni.urn in values[1:], "GPU pools must wait for the VPC CNI add-on"
        k8s_provider = _only(mocks, "pulumi:providers:kubernetes")
        waits_for = k8s_provider.dependencies
        assert {system.urn, *(a.urn for a in addons.values())} <= waits_for, f"{k8s_provider.urn} waits for {waits_for}"

    assert isinstance(cluster.nodes, EksNodes)
    return pulumi.Output.all(cluster.provider.urn, *[r.urn for r in cluster.nodes.prerequisites]).apply(check)


def _settle(build: Callable[[], object]) -> None:
    """Run `build` under the installed mocks until every registration is done (a component's URN resolves
    before its children register, so a check chained on it could miss them)."""
    pulumi.runtime.test(lambda: build() and None)()


def test_eks_model_cache_binds_to_a_default_gp3_class_with_the_ebs_driver(recording_mocks: RecordingMocks) -> None:
    def build() -> None:
        provider = aws.Provider("aws-us-east-1-aws", region="us-east-1")
        cluster = Cluster(
            "aws-us-east-1",
            ClusterArgs(kind=ClusterKind.eks, api_access_cidrs=CIDRS, region="us-east-1"),
            opts=pulumi.ResourceOptions(providers=[provider]),
        )
        assert cluster.storage_class is not None
        # The program's cache on cloud clusters (per replica), and the single-claim mode.
        _serve_on(cluster, "chat", ModelCache.PER_REPLICA)
        _serve_on(cluster, "code", ModelCache.SINGLE_NODE)

    _settle(build)
    mocks = recording_mocks
    (driver,) = [a for a in _of_type(mocks, "aws:eks/addon:Addon") if a.inputs["addonName"] == "aws-ebs-csi-driver"]
    roles = {r.outputs["arn"]: r for r in _of_type(mocks, "aws:iam/role:Role")}
    role = roles[driver.inputs["serviceAccountRoleArn"]]
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    oidc = _only(mocks, "aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    issuer = oidc.inputs["url"].removeprefix("https://")
    assert trust["Principal"] == {"Federated": oidc.outputs["arn"]}, role.urn
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity", role.urn
    assert trust["Condition"]["StringEquals"] == {
        f"{issuer}:sub": EBS_CSI_SERVICE_ACCOUNT,
        f"{issuer}:aud": "sts.amazonaws.com",
    }, role.urn
    attached = [
        a.inputs["policyArn"]
        for a in _of_type(mocks, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.inputs["role"] == role.outputs["name"]
    ]
    assert attached == [EBS_CSI_POLICY_ARN], role.urn
    system = _only(mocks, "aws:eks/nodeGroup:NodeGroup")
    assert system.urn in driver.dependencies, "the driver's controller needs nodes to become ACTIVE"

    classes = _of_type(mocks, "kubernetes:storage.k8s.io/v1:StorageClass")
    defaults = [c for c in classes if c.inputs["metadata"]["annotations"].get(DEFAULT_CLASS_ANNOTATION) == "true"]
    assert len(defaults) == 1, [c.urn for c in classes]
    (gp3,) = defaults
    manifest = to_manifest(gp3)
    assert manifest is not None and validate_manifest(manifest) == []
    assert gp3.inputs["metadata"]["name"] == EKS_DEFAULT_CLASS and gp3.inputs["parameters"]["type"] == "gp3"
    assert gp3.inputs["provisioner"] == EBS_CSI_PROVISIONER
    assert gp3.inputs["volumeBindingMode"] == "WaitForFirstConsumer", "an EBS volume must be in the pod's zone"
    k8s_provider = _only(mocks, "pulumi:providers:kubernetes")
    assert gp3.provider == k8s_provider.urn and gp3.parent == _only(mocks, "llmfleet:cluster:Cluster").urn
    for model in ("chat", "code"):
        _assert_claim_fits(_cache_claim(mocks, model), EKS_DEFAULT_CLASS, EBS_ACCESS_MODES, model)


def test_gke_enforces_network_policies_and_its_default_class_serves_the_cache(recording_mocks: RecordingMocks) -> None:
    def build() -> None:
        provider = gcp.Provider("gcp-us-central1-gcp", project="acme-llm", region="us-central1")
        cluster = Cluster(
            "gcp-us-central1",
            ClusterArgs(kind=ClusterKind.gke, api_access_cidrs=CIDRS, region="us-central1", gcp_project="acme-llm"),
            opts=pulumi.ResourceOptions(providers=[provider]),
        )
        assert cluster.storage_class is None, "GKE brings its own default class"
        _serve_on(cluster, "chat", ModelCache.PER_REPLICA)

    _settle(build)
    mocks = recording_mocks
    gke = _only(mocks, "gcp:container/cluster:Cluster")
    assert gke.inputs["datapathProvider"] == "ADVANCED_DATAPATH", f"{gke.urn}: NetworkPolicies are not enforced"
    assert "networkPolicy" not in gke.inputs, "Dataplane V2 enforces policies itself; the Calico block conflicts"
    assert gke.inputs["addonsConfig"]["gcePersistentDiskCsiDriverConfig"] == {"enabled": True}, gke.urn
    assert not _of_type(mocks, "kubernetes:storage.k8s.io/v1:StorageClass"), "a second default class on GKE"
    _assert_claim_fits(_cache_claim(mocks, "chat"), GKE_DEFAULT_CLASS, PD_ACCESS_MODES, "chat")


# --- existing ----------------------------------------------------------------------------------


@pulumi.runtime.test
def test_existing_kubeconfig_stays_secret(recording_mocks: RecordingMocks) -> Any:
    cluster = Cluster(
        "local-local",
        ClusterArgs(kind=ClusterKind.existing, region="local", kubeconfig=pulumi.Output.secret(KUBECONFIG)),
    )

    def check(values: list[Any]) -> None:
        assert values[0] == KUBECONFIG
        assert [r.type for r in recording_mocks.resources if r.custom] == ["pulumi:providers:kubernetes"]
        provider = _only(recording_mocks, "pulumi:providers:kubernetes")
        assert provider.inputs["kubeconfig"] == KUBECONFIG
        assert ("kubeconfig",) in provider.secret_paths, "an existing cluster's kubeconfig must stay secret"

    return pulumi.Output.all(cluster.kubeconfig, cluster.provider.urn).apply(check)


@pulumi.runtime.test
def test_existing_kubeconfig_output_is_secret(recording_mocks: RecordingMocks) -> Any:
    # Even a kubeconfig passed as a plain string comes out secret.
    cluster = Cluster("local-local", ClusterArgs(kind=ClusterKind.existing, region="local", kubeconfig=KUBECONFIG))

    async def check() -> None:
        assert await cluster.kubeconfig.is_secret()

    return pulumi.Output.from_input(check())


@pulumi.runtime.test
def test_existing_without_kubeconfig_uses_the_ambient_one(recording_mocks: RecordingMocks) -> Any:
    cluster = Cluster("local-local", ClusterArgs(kind=ClusterKind.existing, region="local", context="kind-llmfleet"))

    def check(_: Any) -> None:
        provider = _only(recording_mocks, "pulumi:providers:kubernetes")
        assert "kubeconfig" not in provider.inputs
        assert provider.inputs["context"] == "kind-llmfleet"

    return cluster.provider.urn.apply(check)


# --- kubeconfigs -------------------------------------------------------------------------------


def test_kubeconfigs_carry_no_credentials() -> None:
    eks = json.loads(eks_kubeconfig("c1", "us-west-2", "https://abc.eks.amazonaws.com", "Q0E="))
    exec_config = eks["users"][0]["user"]["exec"]
    assert exec_config["args"][:2] == ["eks", "get-token"]
    assert exec_config["args"][exec_config["args"].index("--region") + 1] == "us-west-2"
    assert exec_config["args"][exec_config["args"].index("--cluster-name") + 1] == "c1"
    gke = json.loads(gke_kubeconfig("c2", "34.1.2.3", "Q0E="))
    assert gke["clusters"][0]["cluster"]["server"] == "https://34.1.2.3"
    for config in (eks, gke):
        user = config["users"][0]["user"]
        assert set(user) == {"exec"}, "no token or client key may be written into a kubeconfig"
        assert config["current-context"] == config["contexts"][0]["name"]


# --- GPU node pools ----------------------------------------------------------------------------


EKS_NODES = EksNodes(
    cluster_name="c1", node_role_arn="arn:aws:iam::123456789012:role/nodes", subnet_ids=["subnet-a", "subnet-b"]
)
GKE_NODES = GkeNodes(cluster_name="c1", location="us-central1", node_service_account="nodes@p.iam.gserviceaccount.com")


def _pool_on_eks(plan: DeploymentPlan) -> GpuNodePool:
    return GpuNodePool(f"aws-us-east-1-{plan.model}-pool", GpuNodePoolArgs(deployment=plan, cluster=EKS_NODES))


@pulumi.runtime.test
def test_eks_pool_device_plugin_follows_the_ami(recording_mocks: RecordingMocks) -> Any:
    al2023 = _pool_on_eks(make_plan(capacity_type="spot"))
    bottlerocket = _pool_on_eks(make_plan(model="code", ami_type="BOTTLEROCKET_x86_64_NVIDIA"))
    assert al2023.device_plugin is not None and bottlerocket.device_plugin is None

    def check(_: Any) -> None:
        groups = {r.name: r.inputs for r in _of_type(recording_mocks, "aws:eks/nodeGroup:NodeGroup")}
        chat = groups["aws-us-east-1-chat-pool-nodegroup"]
        assert chat["capacityType"] == "SPOT" and chat["instanceTypes"] == ["g6e.xlarge", "g6e.2xlarge", "g6e.4xlarge"]
        assert chat["amiType"] == "AL2023_x86_64_NVIDIA", "the plan's GPU AMI, not one from the launch template"
        group = next(
            g
            for g in _of_type(recording_mocks, "aws:eks/nodeGroup:NodeGroup")
            if g.name.endswith("chat-pool-nodegroup")
        )
        _assert_imdsv2_only(recording_mocks, group, "aws-us-east-1-chat-pool-lt")
        (plugin,) = [r.inputs for r in _of_type(recording_mocks, "kubernetes:helm.sh/v3:Release")]
        assert plugin["version"] == DEVICE_PLUGIN_VERSION
        # The plugin runs on this pool's nodes only, and tolerates their taint.
        assert plugin["values"]["nodeSelector"].items() <= chat["labels"].items()
        assert {t["key"] for t in plugin["values"]["tolerations"]} == {t["key"] for t in chat["taints"]}

    pools = [p.urn for p in [*al2023.pools, *bottlerocket.pools]]  # registered once their launch templates are
    return pulumi.Output.all(al2023.device_plugin.urn, *pools).apply(check)


@pulumi.runtime.test
def test_existing_cluster_pool_creates_nothing(recording_mocks: RecordingMocks) -> Any:
    # An existing Cluster, or none at all: llmfleet adds no nodes to a cluster it did not make.
    kind = Cluster("local-local", ClusterArgs(kind=ClusterKind.existing, region="local"))
    assert kind.nodes is None
    cpu = GpuNodePool("local-local-tiny-pool", GpuNodePoolArgs(deployment=gguf_plan(), cluster=kind))
    gpu = GpuNodePool("local-local-chat-pool", GpuNodePoolArgs(deployment=make_plan(), cluster=None))
    assert cpu.kind is gpu.kind is ClusterKind.existing
    assert cpu.node_selector == {} and cpu.tolerations == [] and cpu.pools == []
    # GPU pods still tolerate the usual GPU taint, in case the cluster's GPU nodes carry it.
    assert gpu.node_selector == {} and [t.key for t in gpu.tolerations] == [GPU_TAINT_KEY] and gpu.pools == []

    def check(_: Any) -> None:
        created = [r.urn for r in recording_mocks.resources if r.custom and not r.type.startswith("pulumi:providers:")]
        assert created == [], f"an existing cluster gets no nodes from llmfleet: {created}"

    return pulumi.Output.all(gpu.urn, cpu.urn).apply(check)


def test_pool_inputs_are_checked(recording_mocks: RecordingMocks) -> None:
    gke_plan = make_plan(cloud="gcp", region="us-central1", gpu="L4", accelerator="nvidia-l4", ami_type=None)
    with pytest.raises(ValueError, match="planned for gcp, the cluster is on aws"):
        GpuNodePool("gcp-x", GpuNodePoolArgs(deployment=gke_plan, cluster=EKS_NODES))
    with pytest.raises(ValueError, match="planned for aws, the cluster is on gcp"):
        GpuNodePool("aws-x", GpuNodePoolArgs(deployment=make_plan(), cluster=GKE_NODES))
    with pytest.raises(ValueError, match="api_access_cidrs: required"):
        Cluster("aws-y", ClusterArgs(kind=ClusterKind.eks, region="us-east-1"))
    with pytest.raises(PlanningError, match=r"0 <= min \(3\) <= nodes \(2\)"):
        node_counts(make_plan(min_replicas=3))
    plan = make_plan(cloud="gcp", region="us-central1", gpu="H100", accelerator="nvidia-h100-80gb")
    with pytest.raises(PlanningError, match=r"instances\.yaml"):
        gke_accelerator(plan, "n1-standard-4")
    assert gke_accelerator(plan, "a3-highgpu-1g") == GkeAccelerator("nvidia-h100-80gb", 1, "H100")
    with pytest.raises(PlanningError, match="a replica needs 2"):
        gke_accelerator(make_plan(cloud="gcp", gpu="H100", gpus_per_replica=2, tensor_parallel=2), "a3-highgpu-1g")


@pulumi.runtime.test
def test_gke_fallback_with_another_gpu_gets_its_own_pool_and_label(recording_mocks: RecordingMocks) -> Any:
    # The planner's shape for Llama-3.1-8B on GCP: 2 x L4, with an H100 type among the fallbacks.
    plan = make_plan(
        cloud="gcp",
        region="us-central1",
        gpu="L4",
        accelerator="nvidia-l4",
        ami_type=None,
        instance_type="g2-standard-24",
        gpus_per_node=2,
        gpus_per_replica=2,
        tensor_parallel=2,
        fallback_instance_types=("a3-highgpu-2g",),
    )
    pool = GpuNodePool(
        "gcp-us-central1-chat-pool",
        GpuNodePoolArgs(deployment=plan, cluster=GKE_NODES),
    )
    assert pool.node_selector == {"llmfleet.dev/model": "chat"}, "the selector must match every fallback pool"

    def check(_: Any) -> None:
        configs = [r.inputs["nodeConfig"] for r in _of_type(recording_mocks, "gcp:container/nodePool:NodePool")]
        # Sorted: the mocks record the two pools in whichever order their registrations resolve.
        assert sorted(
            (c["machineType"], c["guestAccelerators"][0]["type"], c["labels"][ACCELERATOR_LABEL]) for c in configs
        ) == [
            ("a3-highgpu-2g", "nvidia-h100-80gb", "h100"),
            ("g2-standard-24", "nvidia-l4", "l4"),
        ]
        assert all(pool.node_selector.items() <= c["labels"].items() for c in configs)
        assert {c["serviceAccount"] for c in configs} == {"nodes@p.iam.gserviceaccount.com"}, "never the default"

    return pulumi.Output.all(*[p.urn for p in pool.pools]).apply(check)
