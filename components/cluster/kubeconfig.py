"""Kubeconfigs for created clusters, authenticating through the cloud's exec plugin.

No credential is written into the kubeconfig: `aws eks get-token` and `gke-gcloud-auth-plugin` mint a
short-lived token each time the Kubernetes provider connects, from the credentials of wherever
`pulumi up` runs. The file still names the cluster's endpoint and CA, so it is handled as a secret.
"""

import json
from typing import Any

EXEC_API_VERSION = "client.authentication.k8s.io/v1beta1"


def _kubeconfig(name: str, server: str, ca_data: str, exec_config: dict[str, Any]) -> str:
    # JSON is YAML, and both kubectl and the Kubernetes provider read it.
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": ca_data}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
            "users": [{"name": name, "user": {"exec": {"apiVersion": EXEC_API_VERSION, **exec_config}}}],
        },
        indent=2,
    )


def eks_kubeconfig(cluster_name: str, region: str, endpoint: str, ca_data: str) -> str:
    """Kubeconfig for an EKS cluster; needs the AWS CLI v2 on PATH (`aws eks get-token`)."""
    return _kubeconfig(
        cluster_name,
        endpoint,
        ca_data,
        {
            "command": "aws",
            "args": ["eks", "get-token", "--cluster-name", cluster_name, "--region", region, "--output", "json"],
            "interactiveMode": "Never",
        },
    )


def gke_kubeconfig(cluster_name: str, endpoint: str, ca_data: str) -> str:
    """Kubeconfig for a GKE cluster; needs `gke-gcloud-auth-plugin` on PATH."""
    return _kubeconfig(
        cluster_name,
        f"https://{endpoint}",
        ca_data,
        {
            "command": "gke-gcloud-auth-plugin",
            "installHint": "Install gke-gcloud-auth-plugin: gcloud components install gke-gcloud-auth-plugin",
            "provideClusterInfo": True,
            "interactiveMode": "Never",
        },
    )
