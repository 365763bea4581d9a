"""The gateway in the real program (infra/__main__.py under the offline engine), on the shipped stacks.

Graph properties, not snapshots: in every region the inference Services are reachable only through
that region's gateway, the tenants' and fallback keys are secrets end to end, the budgets are the
stack's, and every object the gateway adds validates against its schema (vendored CRDs included).
Expectations are derived from the stack files, so they hold when a stack changes, and fail when the
program stops following it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from support.stacks import ShippedRun, StackWriter

from llmfleet.components.gateway.health import HEALTH_CLIENT
from llmfleet.components.gateway.install import ENVOY_GATEWAY_NAMESPACE
from llmfleet.components.gateway.routes import ENVOY_PROXY_LABEL
from llmfleet.components.gateway.types import (
    AI_GATEWAY_METADATA_NAMESPACE,
    MODEL_HEADER,
    TENANT_HEADER,
    TOTAL_TOKENS_KEY,
)
from llmfleet.components.inference import InferenceService
from llmfleet.infra.config import STACKS_DIR, ConfigError, load_stack
from llmfleet.infra.render.offline import SECRET_PLACEHOLDER, OfflineRun, RecordedResource, run_program
from llmfleet.infra.render.validate import validate_manifest
from llmfleet.infra.schema.gateway import RateLimits

SHIPPED_STACKS = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in STACKS_DIR.glob("Pulumi.*.yaml"))
GATEWAY_TYPE = "llmfleet:gateway:Gateway"
FLEET_TYPE = "llmfleet:fleet:RegionalFleet"
GATEWAY_KINDS = {
    "GatewayClass",
    "EnvoyProxy",
    "Gateway",
    "ClientTrafficPolicy",
    "Backend",
    "AIServiceBackend",
    "AIGatewayRoute",
    "NetworkPolicy",
}


class Stack:
    """One shipped stack: its parsed spec and one program run, with the objects grouped by region."""

    def __init__(self, name: str, run: OfflineRun) -> None:
        self.name = name
        _, self.spec = load_stack(name)
        self.run = run
        self.objects = self.run.kubernetes_objects(redacted=False)

    def region_objects(self, region: str, kind: str) -> list[tuple[RecordedResource, dict[str, Any]]]:
        return [(r, m) for r, m in self.objects if m["kind"] == kind and self.run.region_of(r) == region]

    def gateway_objects(self, region: str, kind: str) -> list[dict[str, Any]]:
        """Objects of `kind` the region's Gateway component created."""
        prefix = f"{region}-gateway"
        return [m for r, m in self.region_objects(region, kind) if r.name.startswith(prefix)]

    def one(self, region: str, kind: str, suffix: str = "") -> dict[str, Any]:
        """The region gateway's one object of `kind` named `<region>-gateway...<suffix>`."""
        found = [m for m in self.gateway_objects(region, kind) if m["metadata"]["name"].endswith(suffix)]
        assert len(found) == 1, f"{self.name}/{region}: expected one {kind}, got {len(found)}"
        return found[0]


@pytest.fixture(scope="module")
def shipped(shipped_run: ShippedRun) -> Callable[[str], Stack]:
    """`shipped("prod")`: the stack over the session's one run of it (a run takes seconds)."""
    return functools.cache(lambda name: Stack(name, shipped_run(name)))


@pytest.fixture(params=SHIPPED_STACKS)
def stack(request: pytest.FixtureRequest, shipped: Callable[[str], Stack]) -> Stack:
    return shipped(request.param)


def test_each_region_has_one_gateway_under_its_fleet_and_exports_its_endpoint(stack: Stack) -> None:
    regions = [r.key for r in stack.spec.regions]
    gateways = stack.run.by_type(GATEWAY_TYPE)
    assert sorted(g.name for g in gateways) == sorted(f"{key}-gateway" for key in regions)
    for gateway in gateways:
        parent = stack.run.by_name(gateway.name.removesuffix("-gateway"))
        assert parent.type == FLEET_TYPE and gateway.parent == parent.urn, gateway.urn
    endpoints = stack.run.outputs["gateway_endpoints"]
    assert sorted(endpoints) == sorted(regions)
    hostname = stack.spec.gateway.hostname
    scheme = "http" if stack.spec.gateway.tls.mode == "none" else "https"
    for key, url in endpoints.items():
        host = f"{key}.{hostname}" if hostname else f"{key}-gateway-envoy.{ENVOY_GATEWAY_NAMESPACE}"
        assert url.startswith(f"{scheme}://{host}"), (key, url)


def test_every_gateway_object_validates_against_its_schema(stack: Stack) -> None:
    for region in stack.spec.regions:
        objects = [m for kind in {m["kind"] for _, m in stack.objects} for m in stack.gateway_objects(region.key, kind)]
        assert {m["kind"] for m in objects} >= GATEWAY_KINDS, region.key
        problems = [f"{m['kind']}/{m['metadata']['name']}: {p}" for m in objects for p in validate_manifest(m)]
        assert problems == [], f"{stack.name}/{region.key}"


def test_inference_services_are_reachable_only_through_the_gateway(stack: Stack) -> None:
    for region in stack.spec.regions:
        key = region.key
        services = [m for _, m in stack.region_objects(key, "Service") if _is_inference(m)]
        served = {m.name for m in stack.spec.models_in(region)}
        assert len(services) == len(served), key
        # No Service of the region opens anything to the outside (the Envoy Service is Envoy Gateway's).
        exposed = [m["metadata"]["name"] for _, m in stack.region_objects(key, "Service") if _exposed(m)]
        assert exposed == [], f"{key}: Services open outside the cluster"
        assert stack.region_objects(key, "Ingress") == []
        # The model route is the AIGatewayRoute's; the plain HTTPRoutes are the gateway's health route and,
        # with TLS, its port-80 redirect to HTTPS (which has no backend at all).
        routes = sorted(m["metadata"]["name"] for _, m in stack.region_objects(key, "HTTPRoute"))
        expected = [f"{key}-gateway-health"] if stack.spec.load_balancer else []
        expected += [f"{key}-gateway-https-redirect"] if stack.spec.gateway.tls.mode != "none" else []
        assert routes == sorted(expected), key
        if stack.spec.gateway.tls.mode != "none":
            redirect = stack.one(key, "HTTPRoute", "-https-redirect")
            assert all("backendRefs" not in rule for rule in redirect["spec"]["rules"]), key

        # Every Backend is the gateway's; each inference Service is the target of exactly one model Backend.
        namespace = stack.spec.namespace
        hosts = {f"{m['metadata']['name']}.{namespace}.svc.cluster.local" for m in services}
        backends = {r.name: m for r, m in stack.region_objects(key, "Backend")}
        assert all(name.startswith(f"{key}-gateway-") for name in backends), key
        model_backends = [b for name, b in backends.items() if not name.endswith("-health-backend")]
        targets = [e["fqdn"]["hostname"] for b in model_backends for e in b["spec"]["endpoints"]]
        assert sorted(t for t in targets if t in hosts) == sorted(hosts), key
        route = stack.one(key, "AIGatewayRoute")
        by_model = {rule["matches"][0]["headers"][0]["value"]: rule for rule in route["spec"]["rules"]}
        assert set(by_model) == served, key
        assert all(r["matches"][0]["headers"][0]["name"] == MODEL_HEADER for r in by_model.values())

        # And only the gateway's Envoy pods (and Prometheus) may open a connection to the pods.
        (policy,) = [
            m
            for m in stack.gateway_objects(key, "NetworkPolicy")
            if m["metadata"]["name"].endswith("inference-ingress")
        ]
        selected = policy["spec"]["podSelector"]["matchLabels"]
        for _, deployment in stack.region_objects(key, "Deployment"):
            if _is_inference(deployment):
                assert selected.items() <= deployment["spec"]["template"]["metadata"]["labels"].items(), key
        (rule,) = policy["spec"]["ingress"]
        envoy = rule["from"][0]
        assert envoy["podSelector"]["matchLabels"] == {ENVOY_PROXY_LABEL: f"{key}-gateway"}
        assert envoy["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": ENVOY_GATEWAY_NAMESPACE}
        ports = {p["port"] for m in services for p in m["spec"]["ports"]}
        assert {p["port"] for p in rule["ports"]} == ports, key
        # Metrics: Prometheus pods of the monitoring namespace only, not any pod labelled like Prometheus.
        prometheus = rule["from"][1]
        assert prometheus["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}, key
        assert len(rule["from"]) == 2, key

        # Out: DNS and public HTTPS only; never the metadata service or the VPC.
        (egress,) = [
            m for m in stack.gateway_objects(key, "NetworkPolicy") if m["metadata"]["name"].endswith("inference-egress")
        ]
        assert (
            egress["spec"]["policyTypes"] == ["Egress"]
            and egress["spec"]["podSelector"] == policy["spec"]["podSelector"]
        )
        dns, https = egress["spec"]["egress"]
        assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
        block = https["to"][0]["ipBlock"]
        assert block["cidr"] == "0.0.0.0/0" and "169.254.0.0/16" in block["except"] and "10.0.0.0/8" in block["except"]
        assert [p["port"] for p in https["ports"]] == [443]

        # The engines require a key that only the gateway sends.
        (credentials,) = [
            m
            for m in stack.gateway_objects(key, "BackendSecurityPolicy")
            if m["metadata"]["name"].endswith("engine-key")
        ]
        targets = {t["name"] for t in credentials["spec"]["targetRefs"]}
        model_backend_names = {m["metadata"]["name"] for m in model_backends}
        # Models routed through an InferencePool (docs/routing.md) reach the engines through it: the key goes there too.
        pools = {
            ref["name"]
            for rule in stack.one(key, "AIGatewayRoute")["spec"]["rules"]
            for ref in rule["backendRefs"]
            if ref.get("kind") == "InferencePool"
        }
        assert targets == {n for n in model_backend_names if not n.endswith("-fallback")} | pools, key
        secret = credentials["spec"]["apiKey"]["secretRef"]["name"]
        # Shadow mode's copies carry the same key, as the header value Envoy Gateway's credential injection reads.
        (engine_secret,) = [m for _, m in stack.region_objects(key, "Secret") if m["metadata"]["name"] == secret]
        assert engine_secret["stringData"]["credential"] == f"Bearer {engine_secret['stringData']['apiKey']}", key
        keyed = 0
        for _, deployment in stack.region_objects(key, "Deployment"):
            if not _is_inference(deployment):
                continue
            pod = deployment["spec"]["template"]["spec"]
            server = pod["containers"][0]
            if "vllm" in server["image"]:
                env = {e["name"]: e for e in server["env"]}
                assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": "apiKey"}, key
            else:  # llama-server reads the key from the mounted Secret, and then wants it on /metrics too
                assert "--api-key-file=/var/run/llmfleet/engine-key/apiKey" in server["args"], key
                (volume,) = [v for v in pod["volumes"] if v["name"] == "engine-key"]
                assert volume["secret"]["secretName"] == secret, key
                (monitor,) = [
                    m for _, m in stack.region_objects(key, "ServiceMonitor") if "inference" in m["metadata"]["name"]
                ]
                credentials = monitor["spec"]["endpoints"][0]["authorization"]["credentials"]
                assert credentials == {"name": "llmfleet-scrape-key", "key": "apiKey"}, key
                (scrape,) = [
                    m for _, m in stack.region_objects(key, "Secret") if m["metadata"]["name"] == credentials["name"]
                ]
                assert scrape["metadata"]["namespace"] == monitor["metadata"]["namespace"], "beside the monitor"
            keyed += 1
        assert keyed, f"{key}: no model server checked"


def test_only_the_load_balancers_health_path_is_open(stack: Stack) -> None:
    balancer = stack.spec.load_balancer
    for region in stack.spec.regions:
        key = region.key
        policies = stack.gateway_objects(key, "SecurityPolicy")
        opened = [p for p in policies if p["spec"].get("authorization", {}).get("defaultAction") == "Allow"]
        if balancer is None or stack.spec.gateway.allow_anonymous:
            assert opened == [], key
            continue
        (route,) = [r for r in stack.gateway_objects(key, "HTTPRoute") if "-health" in r["metadata"]["name"]]
        (rule,) = route["spec"]["rules"]
        assert rule["matches"][0]["path"] == {"type": "Exact", "value": balancer.health_check.path}, key
        (policy,) = opened
        assert policy["spec"]["targetRefs"] == [
            {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": route["metadata"]["name"]}
        ]
        # Answered by the prober, which sends a completion of every model through this region's own proxy.
        (backend,) = rule["backendRefs"]
        prober = stack.one(key, "Deployment", "-health-prober")
        assert (backend["kind"], backend["name"]) == ("Service", prober["metadata"]["name"]), key
        (container,) = prober["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        envoy = stack.one(key, "EnvoyProxy")["spec"]["provider"]["kubernetes"]["envoyService"]["name"]
        assert env["LLMFLEET_PROBE_TARGET"].split("://")[1].startswith(f"{envoy}.envoy-gateway-system.svc"), key
        served = {m.name for m in stack.spec.models_in(region)}
        assert served <= set(env["LLMFLEET_PROBE_MODELS"].split(",")), key


def test_gateway_keys_are_secrets_and_never_plain(stack: Stack) -> None:
    refs = stack.spec.gateway.secret_refs()
    tenants = [t.name for t in stack.spec.gateway.tenants if t.api_key_secret]
    for region in stack.spec.regions:
        secrets = {r.name: r for r, _ in stack.region_objects(region.key, "Secret")}
        if tenants:
            keys = secrets[f"{region.key}-gateway-api-keys"]
            # The health prober is a client of its own where the load balancer checks the region.
            prober = [HEALTH_CLIENT] if stack.spec.load_balancer else []
            assert sorted(keys.inputs["stringData"]) == sorted([*tenants, *prober])
            assert keys.secret_fields & {"stringData", *(f"stringData.{t}" for t in tenants)}, keys.urn
        if stack.spec.gateway.fallback:
            fallback = secrets[f"{region.key}-gateway-fallback-key"]
            assert fallback.secret_fields & {"stringData", "stringData.apiKey"}, fallback.urn
    # The offline engine gives every stack secret the same placeholder value: it must show up nowhere
    # in plain text, neither in an object's redacted inputs nor in a stack output that is not secret.
    plain = [r.urn for r in stack.run.resources if SECRET_PLACEHOLDER in json.dumps(r.redacted_inputs())]
    assert plain == []
    plain_outputs = {k: v for k, v in stack.run.outputs.items() if k not in stack.run.secret_outputs}
    assert SECRET_PLACEHOLDER not in json.dumps(plain_outputs)
    if refs:
        # ...and it does reach the Secrets (otherwise the check above proves nothing).
        revealed = [r for r in stack.run.resources if SECRET_PLACEHOLDER in json.dumps(r.inputs)]
        assert revealed and all(r.type == "kubernetes:core/v1:Secret" for r in revealed)


def test_limits_equal_the_stack(stack: Stack) -> None:
    gateway = stack.spec.gateway
    expected: dict[tuple[str, str], int] = {}
    if gateway.allow_anonymous:
        expected |= _budgets("client-ip", gateway.default_limits)
    elif gateway.tenants or gateway.jwt:
        for tenant in gateway.tenants:
            if tenant.limits is not None:
                expected |= _budgets(tenant.name, tenant.limits)
        expected |= _budgets("default", gateway.default_limits)
    for region in stack.spec.regions:
        policies = stack.gateway_objects(region.key, "BackendTrafficPolicy")
        rules = [rule for p in policies for rule in p["spec"].get("rateLimit", {}).get("global", {}).get("rules", [])]
        assert _limits_of(rules) == expected, f"{stack.name}/{region.key}"
        for rule in rules:
            if "cost" in rule:
                assert rule["cost"]["response"]["metadata"] == {
                    "namespace": AI_GATEWAY_METADATA_NAMESPACE,
                    "key": TOTAL_TOKENS_KEY,
                }


def test_prod_limits_are_not_vacuous(shipped: Callable[[str], Stack]) -> None:
    """The stack-derived expectation above, pinned once to figures read from stacks/Pulumi.prod.yaml."""
    prod = shipped("prod")
    rules = prod.one("aws-us-east-1", "BackendTrafficPolicy", "-models")["spec"]["rateLimit"]["global"]["rules"]
    limits = _limits_of(rules)
    assert limits[("search", "requests")] == 1200 and limits[("search", "tokens")] == 2_000_000
    assert limits[("default", "requests")] == 120 and limits[("default", "tokens")] == 300_000


def test_fallback_only_for_the_models_the_stack_lists(stack: Stack) -> None:
    fallback = stack.spec.gateway.fallback
    for region in stack.spec.regions:
        rules = {r["name"]: r for r in stack.one(region.key, "AIGatewayRoute")["spec"]["rules"]}
        for model, rule in rules.items():
            overrides = [ref.get("modelNameOverride") for ref in rule["backendRefs"] if ref.get("priority", 0) == 1]
            wanted = [fallback.models[model]] if fallback and model in fallback.models else []
            assert overrides == wanted, (region.key, model)
        policies = stack.gateway_objects(region.key, "BackendSecurityPolicy")
        hosted = [p for p in policies if p["metadata"]["name"].endswith("-fallback")]
        assert len(hosted) == (1 if fallback else 0), region.key


def test_a_missing_gateway_secret_names_its_field_before_any_resource(write_stack: StackWriter) -> None:
    deployment, secrets = _stack_config("dev")
    del secrets["gatewayKeyDevTeam"]  # the tenant's key is not set; every other secret is
    path = write_stack(deployment, name="nokey", **secrets)
    with pytest.raises(ConfigError, match=r"gateway\.tenants\[0\]\.api_key_secret.*gatewayKeyDevTeam"):
        run_program(stack_file=path)
    deployment["gateway"]["fallback"] = {"provider": "anthropic", "api_key_secret": "hosted", "models": {"chat": "x"}}
    path = write_stack(deployment, name="nofallbackkey", gatewayKeyDevTeam="k", **secrets)
    with pytest.raises(ConfigError, match=r"gateway\.fallback\.api_key_secret.*hosted"):
        run_program(stack_file=path)


def _stack_config(stack: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A shipped stack's deployment section and its secrets (key without `llmfleet:` -> placeholder)."""
    config = yaml.safe_load((STACKS_DIR / f"Pulumi.{stack}.yaml").read_text())["config"]
    secrets = {k.removeprefix("llmfleet:"): "placeholder" for k, v in config.items() if _is_secure(v)}
    return config["llmfleet:deployment"], secrets


def _is_secure(value: Any) -> bool:
    return isinstance(value, dict) and list(value) == ["secure"]  # pyright: ignore[reportUnknownArgumentType]


def _is_inference(obj: dict[str, Any]) -> bool:
    labels: dict[str, str] = obj["metadata"].get("labels") or {}
    return InferenceService.server_selector.items() <= labels.items()


def _exposed(service: dict[str, Any]) -> bool:
    spec = service.get("spec", {})
    return spec.get("type", "ClusterIP") != "ClusterIP" or bool(spec.get("externalIPs"))


def _budgets(who: str, limits: RateLimits) -> dict[tuple[str, str], int]:
    found: dict[tuple[str, str], int] = {}
    if limits.requests_per_minute is not None:
        found[(who, "requests")] = limits.requests_per_minute
    if limits.tokens_per_minute is not None:
        found[(who, "tokens")] = limits.tokens_per_minute
    return found


def _limits_of(rules: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """(tenant | "default" | "client-ip", "requests" | "tokens") -> per-minute limit, from the policy's rules."""
    limits: dict[tuple[str, str], int] = {}
    for rule in rules:
        assert rule["limit"]["unit"] == "Minute"
        (selector,) = rule["clientSelectors"]
        if "sourceCIDR" in selector:
            who = "client-ip"
        else:
            first = selector["headers"][0]
            assert first["name"] == TENANT_HEADER
            who = first["value"] if first["type"] == "Exact" else "default"
        limits[(who, "tokens" if "cost" in rule else "requests")] = rule["limit"]["requests"]
    return limits
