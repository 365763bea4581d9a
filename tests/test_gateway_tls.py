"""The gateway's certificate from cert-manager: install, ACME ClusterIssuer, port-80 listener and HTTPS redirect.

Graph tests under Pulumi mocks (the offline engine's recorder, each resource with its dependencies) and the
`gateway.tls` stack settings. Every object, the ClusterIssuer included, validates against its schema
(cert-manager's CRDs of the pinned release are vendored in infra/render/crds/); its solver's parentRefs are
also checked against the Gateway API ParentReference schema they share with HTTPRoute.
"""

from __future__ import annotations

from typing import Any

import pytest
from support.gateway import NAME, NAMESPACE, GatewayRender, error_of, full_args, manifest, stack
from support.gateway import render as render_gateway

from llmfleet.components.gateway import AcmeIssuer, GatewayArgs, Tls
from llmfleet.components.gateway.certificates import CERT_MANAGER_NAMESPACE, CERT_MANAGER_VERSION, HTTP_LISTENER
from llmfleet.components.gateway.routes import GATEWAY_API
from llmfleet.components.gateway.types import LETS_ENCRYPT_STAGING
from llmfleet.infra.config import parse_deployment
from llmfleet.infra.program.args import gateway_settings
from llmfleet.infra.render.validate import validate_manifest

ISSUER = "letsencrypt"
ACME = AcmeIssuer("ops@example.com", LETS_ENCRYPT_STAGING)
CERT_MANAGER_TLS = Tls(secret_name="api-tls", cluster_issuer=ISSUER, acme=ACME)
SERVING = ["https", "https-1"]
"""The HTTPS listeners of full_args (global and regional hostname)."""


Graph = GatewayRender
"""One Gateway's resources, each with the URNs it waits for."""


def render(args: GatewayArgs) -> Graph:
    return render_gateway(args)[0]


@pytest.fixture(scope="module")
def acme() -> Graph:
    return render(full_args(tls=CERT_MANAGER_TLS))


# --- install ------------------------------------------------------------------------------------


def test_cert_manager_installed_pinned_with_crds_and_gateway_api_after_envoy_gateway(acme: Graph) -> None:
    release = acme.named(f"{NAME}-cert-manager")
    inputs = release.inputs
    assert inputs["chart"] == "oci://quay.io/jetstack/charts/cert-manager"
    assert inputs["version"] == CERT_MANAGER_VERSION and inputs["version"].startswith("v")
    assert inputs["namespace"] == CERT_MANAGER_NAMESPACE
    assert inputs["values"]["crds"] == {"enabled": True}
    assert inputs["values"]["config"]["enableGatewayAPI"] is True
    assert inputs["values"]["config"]["kind"] == "ControllerConfiguration"
    # cert-manager looks for the Gateway API CRDs when it starts: Envoy Gateway's chart installs them.
    assert acme.depends_on(release.name, f"{NAME}-envoy-gateway"), acme.named(release.name).dependencies
    assert acme.depends_on(release.name, f"{NAME}-cert-manager-namespace")


def test_no_cert_manager_install_when_the_cluster_runs_it_or_the_secret_is_provided() -> None:
    running = render(full_args(tls=Tls(secret_name="api-tls", cluster_issuer=ISSUER, install_cert_manager=False)))
    provided = render(full_args(tls=Tls(secret_name="api-tls")))
    for graph in (running, provided):
        releases = {r.name for r in graph.kind("Release")}
        assert f"{NAME}-envoy-gateway" in releases, "the gateway's own controllers are still installed"
        assert not any("cert-manager" in r.name for r in graph.resources), releases
    (gateway,) = running.kind("Gateway")
    assert gateway.inputs["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": ISSUER}
    assert running.kind("ClusterIssuer") == [], "no acme: the named issuer already exists"


# --- issuer -------------------------------------------------------------------------------------


def test_acme_cluster_issuer_solves_http01_on_this_gateways_port_80_listener(acme: Graph) -> None:
    (issuer,) = acme.kind("ClusterIssuer")
    assert issuer.type == "kubernetes:cert-manager.io/v1:ClusterIssuer"
    assert issuer.inputs["metadata"] == {"name": ISSUER}, "cluster-scoped: no namespace"
    spec = issuer.inputs["spec"]["acme"]
    assert (spec["email"], spec["server"]) == ("ops@example.com", LETS_ENCRYPT_STAGING)
    assert spec["privateKeySecretRef"] == {"name": f"{ISSUER}-account-key"}
    (solver,) = spec["solvers"]
    assert set(solver) == {"http01"} and set(solver["http01"]) == {"gatewayHTTPRoute"}
    (parent,) = solver["http01"]["gatewayHTTPRoute"]["parentRefs"]
    assert parent == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": NAME,
        "namespace": NAMESPACE,
        "sectionName": HTTP_LISTENER,
    }
    (gateway,) = acme.kind("Gateway")
    listeners = {x["name"]: x for x in gateway.inputs["spec"]["listeners"]}
    assert (listeners[HTTP_LISTENER]["protocol"], listeners[HTTP_LISTENER]["port"]) == ("HTTP", 80)
    assert gateway.inputs["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": ISSUER}
    # The issuer is admitted by cert-manager's webhook: it waits for the release.
    assert acme.depends_on(issuer.name, f"{NAME}-cert-manager")


def test_cluster_issuer_parent_refs_are_valid_gateway_api_parent_references(acme: Graph) -> None:
    """cert-manager's gatewayHTTPRoute.parentRefs is Gateway API's ParentReference: check it as HTTPRoute's."""
    (issuer,) = acme.kind("ClusterIssuer")
    parents = issuer.inputs["spec"]["acme"]["solvers"][0]["http01"]["gatewayHTTPRoute"]["parentRefs"]
    probe = {"apiVersion": GATEWAY_API, "kind": "HTTPRoute", "metadata": {"name": "probe"}, "spec": {}}
    assert validate_manifest({**probe, "spec": {"parentRefs": parents}}) == []
    assert validate_manifest({**probe, "spec": {"parentRefs": [{**parents[0], "port": "80"}]}}) != [], "probe checks"


def test_every_object_validates_against_its_schema(acme: Graph) -> None:
    objects = [r for r in acme.resources if r.type.startswith("kubernetes:") and "helm.sh" not in r.type]
    kinds = {manifest(r)["kind"] for r in objects}
    assert kinds >= {"ClusterIssuer", "Gateway", "HTTPRoute", "SecurityPolicy", "Namespace"}
    assert [p for r in objects for p in validate_manifest(manifest(r))] == []
    (issuer,) = acme.kind("ClusterIssuer")
    misspelt = manifest(issuer)
    misspelt["spec"]["acme"]["privateKeySecretRefs"] = misspelt["spec"]["acme"].pop("privateKeySecretRef")
    assert validate_manifest(misspelt) != [], "cert-manager's schema checks the issuer"


# --- listeners and redirect ---------------------------------------------------------------------


def test_port_80_redirects_everything_else_to_https(acme: Graph) -> None:
    (redirect,) = [r for r in acme.kind("HTTPRoute") if r.name == f"{NAME}-https-redirect"]
    spec = redirect.inputs["spec"]
    assert [p["sectionName"] for p in spec["parentRefs"]] == [HTTP_LISTENER]
    (rule,) = spec["rules"]
    # A prefix match: cert-manager's solver route matches its token path exactly, which takes precedence.
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert rule["filters"] == [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]
    assert "backendRefs" not in rule, "nothing is served over plain HTTP"


def test_api_routes_and_auth_stay_on_the_https_listeners(acme: Graph) -> None:
    (route,) = acme.kind("AIGatewayRoute")
    assert [p["sectionName"] for p in route.inputs["spec"]["parentRefs"]] == SERVING
    (health,) = [r for r in acme.kind("HTTPRoute") if r.name == f"{NAME}-health-route"]
    assert [p["sectionName"] for p in health.inputs["spec"]["parentRefs"]] == SERVING
    # API-key auth on the HTTPS listeners only: the ACME server's challenge requests carry no key.
    (auth,) = [r for r in acme.kind("SecurityPolicy") if r.name == f"{NAME}-security-policy"]
    assert [t["sectionName"] for t in auth.inputs["spec"]["targetRefs"]] == SERVING
    assert "apiKeyAuth" in auth.inputs["spec"]


def test_provided_secret_also_redirects_and_plain_http_has_no_redirect() -> None:
    provided = render(full_args(tls=Tls(secret_name="api-tls")))
    (gateway,) = provided.kind("Gateway")
    assert [x["name"] for x in gateway.inputs["spec"]["listeners"]] == [*SERVING, HTTP_LISTENER]
    assert [r.name for r in provided.kind("HTTPRoute") if "redirect" in r.name] == [f"{NAME}-https-redirect"]
    plain = render(full_args(tls=Tls(secret_name=None), hostname=None, region_hostname=None))
    (gateway,) = plain.kind("Gateway")
    assert [(x["name"], x["port"]) for x in gateway.inputs["spec"]["listeners"]] == [("http", 80)]
    assert [r.name for r in plain.kind("HTTPRoute") if "redirect" in r.name] == []
    (route,) = plain.kind("AIGatewayRoute")
    assert [p["sectionName"] for p in route.inputs["spec"]["parentRefs"]] == ["http"], "the one serving listener"


def test_acme_without_an_issuer_name_is_refused() -> None:
    with pytest.raises(ValueError, match="acme needs cluster_issuer"):
        Tls(secret_name="api-tls", acme=ACME)


# --- stack settings -----------------------------------------------------------------------------

HOSTED = {"hostname": "api.example.com"}


def test_stack_acme_creates_the_issuer_and_installs_cert_manager_by_default() -> None:
    tls = {"mode": "cert-manager", "acme": {"email": "ops@example.com"}}
    args = gateway_settings(parse_deployment(stack(**HOSTED, tls=tls), "test").gateway, {}, "aws-us-east-1")
    assert args.tls.cluster_issuer == "llmfleet-acme" and args.tls.install_cert_manager is True
    assert args.tls.acme == AcmeIssuer("ops@example.com", "https://acme-v02.api.letsencrypt.org/directory")
    tls = {"mode": "cert-manager", "cluster_issuer": "corp-ca", "install_cert_manager": False}
    args = gateway_settings(parse_deployment(stack(**HOSTED, tls=tls), "test").gateway, {}, "aws-us-east-1")
    assert (args.tls.cluster_issuer, args.tls.acme, args.tls.install_cert_manager) == ("corp-ca", None, False)


@pytest.mark.parametrize(
    ("tls", "field", "hint"),
    [
        ({"mode": "cert-manager"}, "gateway: tls.acme", "cluster_issuer names one that already exists"),
        ({"mode": "cert-manager", "acme": {"email": "ops"}}, "gateway.tls.acme.email", "pattern"),
        (
            {"mode": "cert-manager", "acme": {"email": "a@b.io", "server": "http://acme"}},
            "gateway.tls.acme.server",
            "https",
        ),
        ({"mode": "secret", "acme": {"email": "a@b.io"}}, "tls.acme", "set tls.mode: cert-manager"),
        ({"mode": "secret", "cluster_issuer": "letsencrypt"}, "tls.cluster_issuer", "not used with tls.mode secret"),
        ({"mode": "secret", "install_cert_manager": False}, "tls.install_cert_manager", "only with cert-manager"),
        ({"mode": "cert-manager", "acme": {"email": "a@b.io", "mail": "x"}}, "gateway.tls.acme.mail", "unknown"),
    ],
)
def test_bad_tls_settings_name_their_field(tls: dict[str, Any], field: str, hint: str) -> None:
    message = error_of(**HOSTED, tls=tls)
    assert field in message, message
    assert hint in message, message


def test_cert_manager_needs_a_hostname_for_the_certificate() -> None:
    message = error_of(tls={"mode": "cert-manager", "acme": {"email": "ops@example.com"}})
    assert "hostname: required with tls.mode cert-manager" in message, message
