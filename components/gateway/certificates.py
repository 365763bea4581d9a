"""The HTTPS certificate from cert-manager: its install, the ACME ClusterIssuer and the port-80 listener's route.

cert-manager's Gateway support (the `cert-manager.io/cluster-issuer` annotation on the Gateway, see
routes.gateway_annotations) creates a Certificate for the HTTPS listeners' hostnames. An ACME HTTP-01
challenge is fetched over plain HTTP on port 80, so the Gateway also listens there (routes.gateway_spec):
cert-manager attaches its temporary solver HTTPRoute (exact path `/.well-known/acme-challenge/<token>`) to
that listener, and the redirect route here sends every other request to HTTPS. The exact path wins over
the redirect's `/` prefix (Gateway API route precedence: the longest, exact match first).

Chart values from cert-manager's deploy/charts/cert-manager/values.yaml: `crds.enabled` installs the CRDs
with the release (`crds.keep`, on by default, keeps them when the release goes, so Certificates survive);
`config.enableGatewayAPI` turns on the Gateway support (the recommended switch since cert-manager 1.16,
cert-manager/website issue 1586). OCI chart location and release as installed by e.g. joryirving/home-ops
(bootstrap/helmfile.d/00-crds.yaml, described at https://deepwiki.com/joryirving/home-ops/8.1-cert-manager).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from llmfleet.components import pins
from llmfleet.components.gateway.types import AcmeIssuer
from llmfleet.components.helm import pinned_release

CERT_MANAGER_CHART = pins.chart("cert-manager").name
CERT_MANAGER_VERSION = pins.chart("cert-manager").version
CERT_MANAGER_NAMESPACE = "cert-manager"
CERT_MANAGER_API = "cert-manager.io/v1"
CERT_MANAGER_CONFIG_API = "controller.config.cert-manager.io/v1alpha1"
HTTP_LISTENER = "http"
"""Name of the Gateway's port-80 listener (ACME challenges and the redirect to HTTPS)."""


def cert_manager_values() -> dict[str, Any]:
    """cert-manager chart values: CRDs with the release, Gateway API support on."""
    return {
        "crds": {"enabled": True},
        "config": {
            "apiVersion": CERT_MANAGER_CONFIG_API,
            "kind": "ControllerConfiguration",
            "enableGatewayAPI": True,
        },
    }


def install_cert_manager(name: str, parent: pulumi.Resource, after: Sequence[pulumi.Resource]) -> k8s.helm.v3.Release:
    """cert-manager in its own namespace, after `after` (the Gateway API CRDs must exist when it starts)."""
    namespace = k8s.core.v1.Namespace(
        f"{name}-cert-manager-namespace",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=CERT_MANAGER_NAMESPACE),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return pinned_release(
        f"{name}-cert-manager",
        chart=CERT_MANAGER_CHART,
        version=CERT_MANAGER_VERSION,
        namespace=namespace.metadata.name,
        values=cert_manager_values(),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(after)),
    )


def http_listener_ref(gateway: str, namespace: pulumi.Input[str] | None = None) -> dict[str, Any]:
    """A parentRef to the Gateway's port-80 listener (namespace needed from cluster-scoped objects)."""
    parent: dict[str, Any] = {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": gateway,
        "sectionName": HTTP_LISTENER,
    }
    if namespace is not None:
        parent["namespace"] = namespace
    return parent


def cluster_issuer_spec(acme: AcmeIssuer, issuer: str, gateway: str, namespace: pulumi.Input[str]) -> dict[str, Any]:
    """An ACME account whose HTTP-01 challenges are answered through the Gateway's port-80 listener."""
    return {
        "acme": {
            "email": acme.email,
            "server": acme.server,
            # cert-manager creates this Secret (the account key) in its own namespace.
            "privateKeySecretRef": {"name": f"{issuer}-account-key"},
            "solvers": [{"http01": {"gatewayHTTPRoute": {"parentRefs": [http_listener_ref(gateway, namespace)]}}}],
        }
    }


def https_redirect_route_spec(gateway: str) -> dict[str, Any]:
    """Every plain-HTTP request not taken by an ACME solver route: 301 to the same URL over HTTPS."""
    redirect = {"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}
    return {
        "parentRefs": [http_listener_ref(gateway)],
        "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "filters": [redirect]}],
    }
