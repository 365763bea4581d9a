"""Realistic outputs for the offline engine: what the clouds would answer where the program reads it.

Only the fields a program reads before its children can be built are invented here (IDs, ARNs,
endpoints, CA data, OIDC issuers, autonames, provider-function results); everything else echoes the
inputs, as Pulumi's mocks do. Values are deterministic (hashes of the URN) so renders are stable.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

ACCOUNT_ID = "123456789012"
"""AWS's documentation account ID."""
DEFAULT_AWS_REGION = "us-east-1"
GCP_PROJECT = "offline-project"
GCP_PROJECT_NUMBER = "123456789012"
FAKE_CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nOFFLINE\n-----END CERTIFICATE-----\n").decode()

_AWS_ID_PREFIX = {
    "aws:ec2/vpc:Vpc": "vpc",
    "aws:ec2/subnet:Subnet": "subnet",
    "aws:ec2/securityGroup:SecurityGroup": "sg",
    "aws:ec2/internetGateway:InternetGateway": "igw",
    "aws:ec2/natGateway:NatGateway": "nat",
    "aws:ec2/eip:Eip": "eipalloc",
    "aws:ec2/routeTable:RouteTable": "rtb",
    "aws:ec2/launchTemplate:LaunchTemplate": "lt",
    "aws:route53/zone:Zone": "Z",
    "aws:route53/healthCheck:HealthCheck": "hc",
}


def _digest(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def autoname(name: str, urn: str) -> str:
    """Pulumi appends a random suffix to a resource's name when the program gives none (7 hex here)."""
    return f"{name}-{_digest(urn, 7)}"


def mock_outputs(
    type_: str, name: str, urn: str, inputs: dict[str, Any], provider: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """(physical id, outputs to add to the echoed inputs) for one resource."""
    if type_.startswith("pulumi:providers:"):
        return f"{name}-provider-{_digest(urn)}", {}
    if type_.startswith("kubernetes:"):
        return _kubernetes(type_, name, urn, inputs)
    if type_.startswith("aws:"):
        return _aws(type_, name, urn, inputs, provider)
    if type_.startswith("random:"):
        # A placeholder of the requested length: what the provider would generate is unknown offline.
        length = int(inputs.get("length") or 16)
        return f"{name}-{_digest(urn)}", {"result": (_digest(urn, 64) * 4)[:length]}
    if type_.startswith("gcp:"):
        return _gcp(type_, name, urn, inputs, provider)
    return f"{name}-{_digest(urn)}", {}


def _kubernetes(type_: str, name: str, urn: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if type_.startswith("kubernetes:helm.sh/"):
        release = inputs.get("name") or autoname(name, urn)
        namespace = inputs.get("namespace") or "default"
        status = {"name": release, "namespace": namespace, "status": "deployed", "revision": 1}
        status |= {"chart": inputs.get("chart"), "version": inputs.get("version")}
        return f"{namespace}/{release}", {"name": release, "status": status}
    metadata = dict(inputs.get("metadata") or {})
    metadata.setdefault("name", autoname(name, urn))
    metadata.setdefault("uid", _digest(urn, 32))
    namespace = metadata.get("namespace")
    resource_id = f"{namespace}/{metadata['name']}" if namespace else metadata["name"]
    extra: dict[str, Any] = {"metadata": metadata}
    if type_ == "kubernetes:core/v1:Service":
        spec = dict(inputs.get("spec") or {})
        if spec.get("type") != "ExternalName":
            spec.setdefault("clusterIP", f"10.96.{int(_digest(urn, 2), 16)}.{int(_digest(urn + 'x', 2), 16)}")
        extra["spec"] = spec
        if spec.get("type") == "LoadBalancer":
            extra["status"] = {"loadBalancer": {"ingress": [{"hostname": f"{_digest(urn, 16)}.elb.example.com"}]}}
    return resource_id, extra


def _aws(
    type_: str, name: str, urn: str, inputs: dict[str, Any], provider: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    region = str(provider.get("region") or DEFAULT_AWS_REGION)
    module = type_.split(":")[1].split("/")[0]
    resource_name = str(inputs.get("name") or autoname(name, urn))
    prefix = _AWS_ID_PREFIX.get(type_)
    resource_id = f"{prefix}-{_digest(urn, 17)}" if prefix else resource_name
    extra: dict[str, Any] = {"name": resource_name, "region": region, "tagsAll": inputs.get("tags") or {}}
    if module == "iam":
        kind = type_.rsplit(":", 1)[1].lower()
        extra["arn"] = f"arn:aws:iam::{ACCOUNT_ID}:{kind}/{resource_name}"
        if type_ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
            issuer = str(inputs.get("url", "")).removeprefix("https://")
            extra["arn"] = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{issuer}"
    else:
        extra["arn"] = f"arn:aws:{module}:{region}:{ACCOUNT_ID}:{resource_name}"
    if type_ == "aws:eks/cluster:Cluster":
        host = _digest(urn, 32).upper()
        extra |= {
            "endpoint": f"https://{host}.gr7.{region}.eks.amazonaws.com",
            "certificateAuthority": {"data": FAKE_CA},
            "identities": [{"oidcs": [{"issuer": f"https://oidc.eks.{region}.amazonaws.com/id/{host}"}]}],
            "version": inputs.get("version") or "1.31",
            "status": "ACTIVE",
            "vpcConfig": {**(inputs.get("vpcConfig") or {}), "clusterSecurityGroupId": f"sg-{_digest(urn, 17)}"},
        }
    elif type_ == "aws:eks/nodeGroup:NodeGroup":
        extra["resources"] = [{"autoscalingGroups": [{"name": f"eks-{resource_name}-{_digest(urn, 8)}"}]}]
    elif type_ == "aws:ec2/launchTemplate:LaunchTemplate":
        extra["latestVersion"] = 1
    elif type_ == "aws:ec2/vpc:Vpc":
        extra["defaultSecurityGroupId"] = f"sg-{_digest(urn + 'sg', 17)}"
    elif type_ == "aws:route53/zone:Zone":
        extra |= {"zoneId": resource_id, "nameServers": [f"ns-{i}.awsdns-00.com" for i in range(4)]}
    elif type_ == "aws:sqs/queue:Queue":
        resource_id = extra["url"] = f"https://sqs.{region}.amazonaws.com/{ACCOUNT_ID}/{resource_name}"
    elif type_ == "aws:s3/bucket:Bucket":
        resource_name = str(inputs.get("bucket") or resource_name)
        resource_id = extra["bucket"] = resource_name
        extra["arn"] = f"arn:aws:s3:::{resource_name}"  # bucket ARNs name no region or account
    elif type_ == "aws:lb/loadBalancer:LoadBalancer":
        extra |= {
            "dnsName": f"{resource_name}-{_digest(urn, 10)}.{region}.elb.amazonaws.com",
            "zoneId": "Z35SXDOTRQ7X7K",
        }
    return resource_id, extra


def _gcp(
    type_: str, name: str, urn: str, inputs: dict[str, Any], provider: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    project = str(inputs.get("project") or provider.get("project") or GCP_PROJECT)
    resource_name = str(inputs.get("name") or autoname(name, urn))
    kind = type_.rsplit(":", 1)[1]
    collection = kind[0].lower() + kind[1:] + "s"
    location = str(inputs.get("location") or inputs.get("region") or provider.get("region") or "global")
    resource_id = f"projects/{project}/locations/{location}/{collection}/{resource_name}"
    extra: dict[str, Any] = {
        "name": resource_name,
        "project": project,
        "selfLink": f"https://www.googleapis.com/compute/v1/{resource_id}",
    }
    if type_ == "gcp:container/cluster:Cluster":
        extra |= {
            "endpoint": f"34.{int(_digest(urn, 2), 16)}.{int(_digest(urn + '1', 2), 16)}.10",
            "masterAuth": {**(inputs.get("masterAuth") or {}), "clusterCaCertificate": FAKE_CA},
            "location": location,
            "masterVersion": inputs.get("minMasterVersion") or "1.31",
        }
    elif type_ == "gcp:serviceaccount/account:Account":
        account = inputs.get("accountId") or resource_name
        extra["email"] = f"{account}@{project}.iam.gserviceaccount.com"
    elif type_ in ("gcp:pubsub/topic:Topic", "gcp:pubsub/subscription:Subscription"):
        resource_id = f"projects/{project}/{collection}/{resource_name}"  # Pub/Sub names are global to the project
    elif type_ == "gcp:compute/globalAddress:GlobalAddress":
        extra["address"] = f"34.120.{int(_digest(urn, 2), 16)}.1"
    elif type_ == "gcp:dns/managedZone:ManagedZone":
        extra["nameServers"] = [f"ns-cloud-a{i}.googledomains.com." for i in range(1, 5)]
    return resource_id, extra


def aws_region_code(region: str) -> str:
    """The prefix of a region's AZ IDs: us-east-1 -> use1, ap-northeast-1 -> apne1, eu-central-1 -> euc1."""
    area, direction, number = region.split("-", 2)
    initials = "".join(word[0] for word in re.findall(r"north|south|east|west|central", direction))
    return f"{area}{initials}{number}"


def mock_call(token: str, args: dict[str, Any], provider: dict[str, Any]) -> dict[str, Any]:
    """Results of the provider functions (invokes) programs commonly call; {} for the rest."""
    region = str(args.get("region") or provider.get("region") or DEFAULT_AWS_REGION)
    if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
        names = [f"{region}{zone}" for zone in "abc"]
        zone_ids = [f"{aws_region_code(region)}-az{i}" for i in (1, 2, 3)]
        return {"id": region, "names": names, "zoneIds": zone_ids, "state": "available"}
    if token == "aws:index/getCallerIdentity:getCallerIdentity":
        return {"accountId": ACCOUNT_ID, "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/offline", "userId": "OFFLINE"}
    if token in ("aws:index/getRegion:getRegion", "aws:index/getPartition:getPartition"):
        return {"id": region, "name": region, "region": region, "partition": "aws", "dnsSuffix": "amazonaws.com"}
    if token == "aws:iam/getPolicyDocument:getPolicyDocument":
        return {"id": _digest(json.dumps(args, sort_keys=True)), "json": json.dumps(args, sort_keys=True)}
    if token == "aws:eks/getClusterAuth:getClusterAuth":
        return {"id": str(args.get("name", "")), "name": args.get("name"), "token": "offline-token"}
    if token == "gcp:organizations/getClientConfig:getClientConfig":
        project = str(provider.get("project") or GCP_PROJECT)
        return {"id": project, "project": project, "region": region, "accessToken": "offline-token"}
    if token == "gcp:organizations/getProject:getProject":
        project = str(args.get("projectId") or provider.get("project") or GCP_PROJECT)
        return {"id": f"projects/{project}", "projectId": project, "number": GCP_PROJECT_NUMBER, "name": project}
    if token == "gcp:compute/getZones:getZones":
        gcp_region = str(args.get("region") or provider.get("region") or "us-central1")
        return {"id": gcp_region, "names": [f"{gcp_region}-{zone}" for zone in "abc"]}
    return {}
