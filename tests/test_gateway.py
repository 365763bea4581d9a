"""The Gateway component under Pulumi mocks: every object validates, limits match, keys stay secret.

Each test renders one region's gateway offline, rebuilds the Kubernetes objects from the recorded
inputs and checks them against the vendored CRDs (infra/render/validate.py) plus the CRDs' CEL rules that
plain JSON-schema validation cannot evaluate.
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from support.gateway import MODELS, NAME, NAMESPACE, TENANTS, GatewayRender, full_args, manifest, render

from llmfleet.components import pins
from llmfleet.components.gateway import GatewayArgs, GatewaySettings, JwtAuth, RateLimit, Tenant, Tls, prober
from llmfleet.components.gateway.health import HEALTH_CLIENT
from llmfleet.components.gateway.install import (
    ENVOY_GATEWAY_VERSION,
    RATELIMIT_POD_LABELS,
    REDIS_AUTH_SECRET,
    REDIS_URL,
)
from llmfleet.components.gateway.routes import ENVOY_PROXY_LABEL
from llmfleet.infra.render.offline import RecordedResource
from llmfleet.infra.render.validate import validate_manifest

Full = tuple[GatewayRender, dict[str, Any]]
"""A render and its outputs."""


@pytest.fixture(scope="module")
def full() -> Full:
    return render(full_args())


# --- every object is valid ----------------------------------------------------------------------


def test_every_kubernetes_object_validates_against_its_schema(full: Full) -> None:
    recorder, _ = full
    objects = [r for r in recorder.resources if r.type.startswith("kubernetes:") and "helm.sh" not in r.type]
    kinds = {manifest(r)["kind"] for r in objects}
    assert {
        "GatewayClass",
        "Gateway",
        "EnvoyProxy",
        "ClientTrafficPolicy",
        "SecurityPolicy",
        "BackendTrafficPolicy",
        "Backend",
        "AIServiceBackend",
        "AIGatewayRoute",
        "BackendSecurityPolicy",
        "Secret",
        "NetworkPolicy",
        "Deployment",
        "Service",
        "Namespace",
    } <= kinds
    problems = [p for r in objects for p in validate_manifest(manifest(r))]
    assert problems == []


def test_cel_rules_the_schema_validator_skips(full: Full) -> None:
    recorder, _ = full
    for backend in recorder.by_kind("AIServiceBackend"):
        ref = backend.inputs["spec"]["backendRef"]
        assert (ref["kind"], ref["group"]) == ("Backend", "gateway.envoyproxy.io"), backend.name
    for rule in recorder.one("AIGatewayRoute").inputs["spec"]["rules"]:
        # backendRefs without group/kind name AIServiceBackends (group+kind is only for InferencePool)
        assert all("group" not in ref and "kind" not in ref for ref in rule["backendRefs"])
    policy = recorder.one("BackendSecurityPolicy").inputs["spec"]
    assert policy["type"] == "APIKey" and set(policy) == {"targetRefs", "type", "apiKey"}
    for backend in recorder.by_kind("Backend"):
        endpoints = backend.inputs["spec"]["endpoints"]
        assert all(set(e) == {"fqdn"} for e in endpoints), backend.name


# --- routing: every model, only through the gateway ---------------------------------------------


def test_route_sends_each_model_to_its_service_with_long_timeouts(full: Full) -> None:
    recorder, _ = full
    route = recorder.one("AIGatewayRoute").inputs["spec"]
    by_model = {r["matches"][0]["headers"][0]["value"]: r for r in route["rules"]}
    assert set(by_model) == {"chat", "code"}
    assert all(r["matches"][0]["headers"][0]["name"] == "x-ai-eg-model" for r in route["rules"])
    assert all(r["timeouts"]["request"] == "600s" for r in route["rules"])
    hosts = {b.name: b.inputs["spec"]["endpoints"][0]["fqdn"] for b in recorder.by_kind("Backend")}
    assert hosts[f"{NAME}-code-backend"] == {"hostname": "code-vllm.llmfleet.svc.cluster.local", "port": 8000}
    assert {c["type"] for c in route["llmRequestCosts"]} >= {"InputToken", "OutputToken", "TotalToken"}


def test_only_the_gateway_reaches_the_inference_pods(full: Full) -> None:
    recorder, _ = full
    policy = next(r for r in recorder.by_kind("NetworkPolicy") if r.name == f"{NAME}-inference-ingress")
    spec = policy.inputs["spec"]
    assert spec["podSelector"]["matchLabels"] == {"app.kubernetes.io/part-of": "llmfleet"}
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    envoy, prometheus = rule["from"]
    assert envoy["podSelector"]["matchLabels"] == {ENVOY_PROXY_LABEL: NAME}
    assert envoy["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "envoy-gateway-system"}
    assert prometheus["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    assert [p["port"] for p in rule["ports"]] == [8000]
    # Every model backend routes to an in-cluster Service name, never to a public address.
    fqdn = [b.inputs["spec"]["endpoints"][0]["fqdn"]["hostname"] for b in recorder.by_kind("Backend")]
    assert sum(h.endswith(".svc.cluster.local") for h in fqdn) == len(MODELS)


def test_https_listeners_for_global_and_regional_names_with_cert_manager(
    full: Full,
) -> None:
    recorder, outputs = full
    gateway = recorder.one("Gateway").inputs
    listeners = gateway["spec"]["listeners"]
    assert [(x["name"], x["protocol"], x["port"], x.get("hostname")) for x in listeners] == [
        ("https", "HTTPS", 443, "api.example.com"),
        ("https-1", "HTTPS", 443, "aws-us-east-1.api.example.com"),
        ("http", "HTTP", 80, None),  # ACME challenges and the redirect to HTTPS (tests/test_gateway_tls.py)
    ]
    assert all(x["tls"]["certificateRefs"][0]["name"] == "api-tls" for x in listeners[:2])
    assert gateway["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt"}
    assert outputs["endpoint"] == "https://aws-us-east-1.api.example.com"


def test_plain_http_listener_when_tls_is_off() -> None:
    recorder, outputs = render(full_args(tls=Tls(secret_name=None), hostname=None, region_hostname=None))
    (listener,) = recorder.one("Gateway").inputs["spec"]["listeners"]
    assert (listener["protocol"], listener["port"], "tls" in listener) == ("HTTP", 80, False)
    assert outputs["endpoint"] == f"http://{NAME}-envoy.envoy-gateway-system.svc.cluster.local"
    with pytest.raises(ValueError, match="cluster_issuer"):
        Tls(secret_name=None, cluster_issuer="letsencrypt")


# --- auth ---------------------------------------------------------------------------------------


def test_api_keys_are_secret_inputs_and_named_by_tenant(full: Full) -> None:
    recorder, _ = full
    keys = next(r for r in recorder.by_kind("Secret") if r.name == f"{NAME}-api-keys")
    assert keys.secret_fields == {"stringData"}, f"{keys.name}: API keys must arrive as a Pulumi secret"
    assert set(keys.inputs["stringData"]) == {"acme", "beta", HEALTH_CLIENT}, "the tenants and the health prober"
    fallback = next(r for r in recorder.by_kind("Secret") if r.name == f"{NAME}-fallback-key")
    assert fallback.secret_fields == {"stringData"}
    assert set(fallback.inputs["stringData"]) == {"apiKey"}
    # No other resource carries a key in plain text.
    plain = [r.name for r in recorder.resources if not r.secret_paths and "key-123" in str(r.inputs)]
    assert plain == []
    auth = recorder.one("SecurityPolicy").inputs["spec"]["apiKeyAuth"]
    assert auth["credentialRefs"][0]["name"] == keys.inputs["metadata"]["name"]
    assert auth["forwardClientIDHeader"] == "x-tenant-id" and auth["sanitize"] is True


def test_jwt_mode_maps_the_tenant_claim_and_has_no_key_secret() -> None:
    jwt = JwtAuth("https://id.example.com/", "https://id.example.com/jwks", ("llm-api",), tenant_claim="org")
    recorder, _ = render(full_args(tenants=[Tenant("acme", limits=RateLimit(10, 100))], jwt=jwt, fallback=None))
    (provider,) = recorder.one("SecurityPolicy").inputs["spec"]["jwt"]["providers"]
    assert provider["issuer"] == "https://id.example.com/" and provider["audiences"] == ["llm-api"]
    assert provider["remoteJWKS"]["uri"] == "https://id.example.com/jwks"
    assert provider["claimToHeaders"] == [{"claim": "org", "header": "x-tenant-id"}]
    assert [r.name for r in recorder.by_kind("Secret")] == ["aws-us-east-1-gateway-redis-auth"], "no key Secret"


def test_no_credentials_means_closed_not_open() -> None:
    recorder, _ = render(full_args(tenants=[], fallback=None))
    spec = recorder.one("SecurityPolicy").inputs["spec"]
    assert spec["authorization"] == {"defaultAction": "Deny"}
    assert "rateLimit" not in str(recorder.by_kind("BackendTrafficPolicy"))


def test_anonymous_only_when_asked_and_then_limited_per_client_ip() -> None:
    recorder, _ = render(full_args(tenants=[], fallback=None, allow_anonymous=True))
    assert recorder.by_kind("SecurityPolicy") == []
    rules = recorder.one("BackendTrafficPolicy").inputs["spec"]["rateLimit"]["global"]["rules"]
    assert [r["clientSelectors"][0]["sourceCIDR"]["type"] for r in rules] == ["Distinct", "Distinct"]
    with pytest.raises(ValueError, match="allow_anonymous"):
        render(full_args(allow_anonymous=True))


# --- health: the one unauthenticated path ------------------------------------------------------


def test_health_path_is_open_and_answered_by_the_prober(full: Full) -> None:
    recorder, _ = full
    route = recorder.one("HTTPRoute", health=True).inputs
    (rule,) = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "Exact", "value": "/health"}, "method": "GET"}]
    assert "filters" not in rule, "the prober answers /health itself"
    (backend_ref,) = rule["backendRefs"]
    service = recorder.one("Service", health=True).inputs
    assert backend_ref == {"group": "", "kind": "Service", "name": service["metadata"]["name"], "port": 8080}
    assert recorder.by_kind("Backend", health=True) == [], "nothing goes straight to the engines"
    deployment = recorder.one("Deployment", health=True).inputs
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    # Open: a route-level policy allowing everyone, on this route only; the Gateway's still asks for keys.
    open_policy = recorder.one("SecurityPolicy", health=True).inputs["spec"]
    assert open_policy["targetRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": route["metadata"]["name"]}
    ]
    assert open_policy["authorization"] == {"defaultAction": "Allow"} and set(open_policy) == {
        "targetRefs",
        "authorization",
    }
    assert "apiKeyAuth" in recorder.one("SecurityPolicy").inputs["spec"]
    # A prober's 503 is its verdict: only a connection failure is retried on the other replica.
    traffic = recorder.one("BackendTrafficPolicy", health=True).inputs["spec"]
    assert traffic["retry"]["retryOn"] == {"triggers": ["connect-failure", "reset"]} and "rateLimit" not in traffic
    # Route 53 wants an answer within 2 s of connecting; every attempt fits within that.
    whole, attempt = _ms(rule["timeouts"]["request"]), _ms(traffic["retry"]["perRetry"]["timeout"])
    assert whole < 2000 and attempt * (traffic["retry"]["numRetries"] + 1) <= whole


def _container_env(deployment: RecordedResource) -> dict[str, str]:
    (container,) = deployment.inputs["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def test_the_prober_calls_every_model_through_the_gateway_with_its_own_secret_key(
    full: Full,
) -> None:
    recorder, _ = full
    deployment = recorder.one("Deployment", health=True)
    env = _container_env(deployment)
    # Through this Gateway's Envoy proxy (its in-cluster Service, the HTTPS listener), as the public name.
    assert env["LLMFLEET_PROBE_TARGET"] == f"https://{NAME}-envoy.envoy-gateway-system.svc.cluster.local:443"
    assert env["LLMFLEET_PROBE_HOST"] == "api.example.com"
    assert env["LLMFLEET_PROBE_MODELS"].split(",") == [m.model for m in MODELS]
    assert "LLMFLEET_PROBE_KEY" not in env, "the key is a mounted file, never the environment"
    # The key: a generated secret, in the prober's Secret and in the API-key policy's Secret as its own client.
    key_secret = next(r for r in recorder.by_kind("Secret", health=True) if r.name == f"{NAME}-health-key")
    assert key_secret.secret_paths, f"{key_secret.name}: the health key must be a Pulumi secret"
    pod = deployment.inputs["spec"]["template"]["spec"]
    mounted = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert mounted == {key_secret.inputs["metadata"]["name"]}
    (container,) = pod["containers"]
    key_mount = next(m for m in container["volumeMounts"] if m["name"] != "code")
    assert env["LLMFLEET_PROBE_KEY_FILE"] == f"{key_mount['mountPath']}/apiKey"
    passwords = [r.name for r in recorder.resources if r.type == "random:index/randomPassword:RandomPassword"]
    assert f"{NAME}-health-password" in passwords
    keys = next(r for r in recorder.by_kind("Secret") if r.name == f"{NAME}-api-keys")
    assert keys.inputs["stringData"][HEALTH_CLIENT] == key_secret.inputs["stringData"]["apiKey"]
    (password,) = [r for r in recorder.resources if r.name == f"{NAME}-health-password"]
    assert key_secret.inputs["stringData"]["apiKey"] == password.outputs["result"], "the generated password"
    # The code it runs is this repository's prober, on the pinned image.
    code = recorder.one("ConfigMap", health=True).inputs["data"]["prober.py"]
    assert code == (Path(prober.__file__)).read_text()
    assert container["image"] == pins.image("health-prober")
    assert container["command"] == ["python", "/app/prober.py"]


def test_the_prober_is_locked_down(full: Full) -> None:
    recorder, _ = full
    pod = recorder.one("Deployment", health=True).inputs["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    (policy,) = [r for r in recorder.by_kind("NetworkPolicy", health=True)]
    spec = policy.inputs["spec"]
    envoy = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "envoy-gateway-system"}},
        "podSelector": {"matchLabels": {ENVOY_PROXY_LABEL: NAME}},
    }
    selector = recorder.one("Deployment", health=True).inputs["spec"]["selector"]["matchLabels"]
    assert spec["podSelector"]["matchLabels"] == selector
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [{"from": [envoy], "ports": [{"port": 8080, "protocol": "TCP"}]}]
    assert spec["egress"][0] == {"to": [envoy]}
    assert [p["port"] for p in spec["egress"][1]["ports"]] == [53, 53]


def test_the_health_client_is_held_to_no_budget(full: Full) -> None:
    recorder, _ = full
    rules = recorder.one("BackendTrafficPolicy").inputs["spec"]["rateLimit"]["global"]["rules"]
    default = [r for r in rules if r["clientSelectors"][0]["headers"][0]["type"] == "Distinct"]
    assert default, "the default budget rules"
    for rule in default:
        (excluded,) = [h for h in rule["clientSelectors"][0]["headers"] if h.get("invert")]
        assert re.fullmatch(excluded["value"], HEALTH_CLIENT), excluded
    exact = [h["value"] for r in rules for h in r["clientSelectors"][0]["headers"] if h["type"] == "Exact"]
    assert HEALTH_CLIENT not in exact


def test_a_tenant_cannot_take_the_health_clients_name() -> None:
    with pytest.raises(ValueError, match="llmfleet-health"):
        render(full_args(tenants=[*TENANTS, Tenant(HEALTH_CLIENT, api_key="k")]))


def test_anonymous_gateways_probe_without_a_key() -> None:
    recorder, _ = render(full_args(tenants=[], fallback=None, allow_anonymous=True))
    env = _container_env(recorder.one("Deployment", health=True))
    assert "LLMFLEET_PROBE_KEY_FILE" not in env
    assert recorder.by_kind("Secret", health=True) == [], "no key to hold"


def test_jwt_gateways_keep_the_engines_health_route() -> None:
    """No key the prober could hold: the route still goes to every engine's /health (docs/security.md)."""
    jwt = JwtAuth(issuer="https://id.example.com", jwks_uri="https://id.example.com/jwks")
    recorder, _ = render(full_args(tenants=[], jwt=jwt, fallback=None))
    assert recorder.by_kind("Deployment", health=True) == []
    backend = recorder.one("Backend", health=True).inputs
    hosts = [e["fqdn"]["hostname"] for e in backend["spec"]["endpoints"]]
    assert hosts == [f"{m.service_name}.{NAMESPACE}.svc.cluster.local" for m in MODELS]
    traffic = recorder.one("BackendTrafficPolicy", health=True).inputs["spec"]
    assert traffic["retry"]["numRetries"] + 1 >= len(MODELS)


def _ms(duration: str) -> int:
    """A Gateway API duration with one unit ("600ms", "2s") in milliseconds."""
    if duration.endswith("ms"):
        return int(duration[:-2])
    assert duration.endswith("s"), duration
    return int(duration[:-1]) * 1000


def test_health_path_can_be_renamed_or_turned_off() -> None:
    recorder, _ = render(full_args(health_path="/healthz", fallback=None))
    (rule,) = recorder.one("HTTPRoute", health=True).inputs["spec"]["rules"]
    assert rule["matches"][0]["path"]["value"] == "/healthz"
    assert rule["filters"][0]["urlRewrite"]["path"]["replaceFullPath"] == "/health"
    recorder, _ = render(full_args(health_path=None, fallback=None))
    assert [r.name for r in recorder.resources if "-health-" in r.name] == []
    recorder, _ = render(full_args(tenants=[], fallback=None, allow_anonymous=True))
    assert recorder.by_kind("SecurityPolicy", health=True) == [], "nothing to open on an anonymous gateway"


# --- limits -------------------------------------------------------------------------------------


def test_limits_match_the_stack(full: Full) -> None:
    recorder, _ = full
    policy = recorder.one("BackendTrafficPolicy").inputs["spec"]
    assert policy["targetRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "HTTPRoute",
            "name": recorder.one("AIGatewayRoute").inputs["metadata"]["name"],
        }
    ]
    limits: dict[tuple[str, str], int] = {}
    for rule in policy["rateLimit"]["global"]["rules"]:
        headers = rule["clientSelectors"][0]["headers"]
        who = headers[0].get("value", "default")
        what = "tokens" if "cost" in rule else "requests"
        assert rule["limit"]["unit"] == "Minute"
        limits[(who, what)] = rule["limit"]["requests"]
        if what == "tokens":
            assert rule["cost"]["request"] == {"from": "Number", "number": 0}
            assert rule["cost"]["response"]["metadata"] == {
                "namespace": "io.envoy.ai_gateway",
                "key": "llm_total_token",
            }
        if who == "default":
            # everyone else, each tenant its own bucket, but not the tenants with their own limits nor the prober
            assert headers[0] == {"name": "x-tenant-id", "type": "Distinct"}
            assert headers[1] == {
                "name": "x-tenant-id",
                "type": "RegularExpression",
                "value": r"^(acme|llmfleet\-health)$",
                "invert": True,
            }
    assert limits == {
        ("acme", "requests"): 600,
        ("acme", "tokens"): 400_000,
        ("default", "requests"): 60,
        ("default", "tokens"): 50_000,
    }


def test_clients_cannot_claim_another_tenant(full: Full) -> None:
    recorder, _ = full
    spec = recorder.one("ClientTrafficPolicy").inputs["spec"]
    assert "x-tenant-id" in spec["headers"]["earlyRequestHeaders"]["remove"]


# --- fallback -----------------------------------------------------------------------------------


def test_fallback_is_lower_priority_with_retries_and_only_for_listed_models(
    full: Full,
) -> None:
    recorder, _ = full
    rules = {r["name"]: r for r in recorder.one("AIGatewayRoute").inputs["spec"]["rules"]}
    chat_refs = rules["chat"]["backendRefs"]
    assert [(r["priority"], r.get("modelNameOverride")) for r in chat_refs] == [(0, None), (1, "gpt-4o-mini")]
    assert len(rules["code"]["backendRefs"]) == 1
    backend = next(b for b in recorder.by_kind("Backend") if b.name == f"{NAME}-fallback-backend")
    assert backend.inputs["spec"]["endpoints"][0]["fqdn"] == {"hostname": "api.openai.com", "port": 443}
    assert backend.inputs["spec"]["tls"]["wellKnownCACertificates"] == "System"
    retry = recorder.one("BackendTrafficPolicy").inputs["spec"]["retry"]
    assert retry["numAttemptsPerPriority"] < retry["numRetries"] + 1, "a retry must reach priority 1"
    assert "timeout" not in retry.get("perRetry", {}), "a per-try timeout would cut long generations"


def test_without_fallback_no_hosted_backend_or_retry() -> None:
    recorder, _ = render(full_args(fallback=None))
    assert [b.name for b in recorder.by_kind("Backend")] == [f"{NAME}-chat-backend", f"{NAME}-code-backend"]
    assert recorder.by_kind("BackendSecurityPolicy") == []
    assert "retry" not in recorder.one("BackendTrafficPolicy").inputs["spec"]


# --- install ------------------------------------------------------------------------------------


def test_charts_pinned_and_envoy_gateway_wired_to_ai_gateway_and_redis(
    full: Full,
) -> None:
    recorder, _ = full
    releases = {r.name: r.inputs for r in recorder.by_kind("Release")}
    gateway_charts = {f"{NAME}-envoy-gateway", f"{NAME}-ai-gateway-crds", f"{NAME}-ai-gateway"}
    assert set(releases) == gateway_charts | {f"{NAME}-cert-manager"}
    assert all(r["version"].startswith("v") and "latest" not in r["version"] for r in releases.values())
    assert releases[f"{NAME}-envoy-gateway"]["version"] == ENVOY_GATEWAY_VERSION
    config = releases[f"{NAME}-envoy-gateway"]["values"]["config"]["envoyGateway"]
    assert config["rateLimit"]["backend"] == {"type": "Redis", "redis": {"url": REDIS_URL}}
    assert config["extensionManager"]["service"]["fqdn"]["port"] == 1063
    assert config["extensionApis"]["enableBackend"] is True


def test_redis_needs_a_password_only_the_rate_limit_service_gets_and_runs_unprivileged(
    full: Full,
) -> None:
    recorder, _ = full
    (deployment,) = [r for r in recorder.by_kind("Deployment") if r.name.endswith("-redis")]
    pod = deployment.inputs["spec"]["template"]["spec"]
    (redis,) = pod["containers"]
    assert redis["args"][0] == "/etc/redis/redis.conf", "the password comes from the mounted config file"
    assert "env" not in redis and "--requirepass" not in redis["args"], "never in the env or on the command line"
    (config,) = [v for v in pod["volumes"] if v["name"] == "config"]
    (secret,) = [r for r in recorder.by_kind("Secret") if r.name.endswith("-redis-auth")]
    assert config["secret"]["secretName"] == secret.inputs["metadata"]["name"] == REDIS_AUTH_SECRET
    assert "redis.conf" in secret.inputs["stringData"], "(the generated password is unknown to these mocks)"
    assert secret.secret_paths, "the password is a Pulumi secret"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] >= 10000
    assert pod["automountServiceAccountToken"] is False
    assert redis["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    # The rate-limit service authenticates with the same Secret; Envoy Gateway merges this env into its container.
    releases = {r.name: r.inputs for r in recorder.by_kind("Release")}
    provider = releases[f"{NAME}-envoy-gateway"]["values"]["config"]["envoyGateway"]["provider"]
    (env,) = provider["kubernetes"]["rateLimitDeployment"]["container"]["env"]
    assert env == {"name": "REDIS_AUTH", "valueFrom": {"secretKeyRef": {"name": REDIS_AUTH_SECRET, "key": "password"}}}
    # Only the rate-limit pods reach Redis: not the internet-facing Envoy proxies in the same namespace.
    (policy,) = [r for r in recorder.by_kind("NetworkPolicy") if r.name.endswith("-redis-ingress")]
    (rule,) = policy.inputs["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": RATELIMIT_POD_LABELS}}]
    assert RATELIMIT_POD_LABELS["app.kubernetes.io/name"] == "envoy-ratelimit"


def test_children_are_parented_to_the_component(full: Full) -> None:
    recorder, _ = full
    (component,) = [r for r in recorder.resources if r.type == "llmfleet:gateway:Gateway"]
    children = [r for r in recorder.resources if r is not component]
    orphans = [r.name for r in children if not (r.parent or "").endswith(f"llmfleet:gateway:Gateway::{component.name}")]
    assert children and orphans == []
    assert all(r.name.startswith(NAME) for r in recorder.resources)


def test_existing_controllers_skip_the_install() -> None:
    tls = Tls(secret_name="api-tls", cluster_issuer="letsencrypt", install_cert_manager=False)
    recorder, _ = render(full_args(install_controllers=False, tls=tls))
    assert recorder.by_kind("Release") == []
    assert not any(r.name.endswith("-redis") for r in recorder.resources)


def test_gateway_args_are_the_settings_plus_the_wiring() -> None:
    # Every settings field reaches the args as given (a field `of` forgot would come back at its default).
    settings = full_args(request_timeout_s=120, replicas=3, install_controllers=False, allow_anonymous=True)
    args = GatewayArgs.of(
        settings,
        namespace="serving",
        models=MODELS[:1],
        inference_pod_selector={"app": "x"},
        engine_key_secret="key",
        metrics_namespace="prom",
    )
    for f in fields(GatewaySettings):
        expected = "prom" if f.name == "metrics_namespace" else getattr(settings, f.name)
        assert getattr(args, f.name) == expected, f.name
    assert (args.namespace, args.models, args.engine_key_secret) == ("serving", MODELS[:1], "key")
    assert args.inference_pod_selector == {"app": "x"}
