"""The response cache wired through the gateway (gateway.response_cache): LiteLLM's proxy cache per region.

Proven here, offline: every new object (and the whole program's, with the option on) validates against its schema
(kubernetes-validate, the pinned CRDs and their CEL rules); a cached model's first pass goes to LiteLLM and the
cache's own client (its key, a generated secret) and the health prober take the model's original rules, which
keep the canary, pool and fallback; the tenant header those rules match is stripped from clients and set by the
API-key policy; the cache's client is held to no budget; LiteLLM and its Redis are hardened and fenced by
NetworkPolicies; the Redis is the cache's own, bounded by maxmemory with allkeys-lru; shadow copies are made of
the requests that reach a model only; bad options exit 2 naming the field; the plan prices the pods.
Not proven: a live Envoy (the route it re-selects after auth), LiteLLM's behaviour (test_response_cache.py).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from support.cel import check_rules
from support.gateway import MODELS, NAME, TENANTS, GatewayRender, full_args, render
from support.gateway import manifest as to_manifest
from support.routes import ask
from support.stacks import StackWriter
from typer.testing import CliRunner

from llmfleet.components import pins
from llmfleet.components.gateway import CanaryBackend, JwtAuth, ModelBackend, PriorityRouting, ResponseCache, Tenant
from llmfleet.components.gateway import response_cache as rc
from llmfleet.components.gateway.cache_deploy import CONFIG_FILE, LITELLM_PORT
from llmfleet.components.gateway.health import HEALTH_CLIENT
from llmfleet.components.gateway.install import REDIS_AUTH_SECRET
from llmfleet.components.gateway.routes import ENVOY_PROXY_LABEL
from llmfleet.components.gateway.types import CACHE_CLIENT, REVISION_HEADER, TENANT_HEADER
from llmfleet.infra.cli import app
from llmfleet.infra.config import ConfigError, load_stack
from llmfleet.infra.render.offline import run_program
from llmfleet.infra.render.validate import validate_manifest

CACHE = ResponseCache(models=("chat",), ttl_s=600, stale_s=60, opt_in_tenants=("acme",), max_memory_mb=512)
BACKEND = f"{NAME}-response-cache"
ENVOY_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "envoy-gateway-system"}},
    "podSelector": {"matchLabels": {ENVOY_PROXY_LABEL: NAME}},
}


def rendered(cache: ResponseCache | None = CACHE, **changes: Any) -> GatewayRender:
    recorder, _ = render(full_args(response_cache=cache, **changes))
    return recorder


@pytest.fixture(scope="module")
def cached() -> GatewayRender:
    return rendered()


def cache_objects(recorder: GatewayRender) -> list[dict[str, Any]]:
    return [to_manifest(r) for r in recorder.resources if "-response-cache" in r.name and r.type.startswith("kube")]


def route(recorder: GatewayRender) -> dict[str, Any]:
    return to_manifest(recorder.one("AIGatewayRoute"))


def named(recorder: GatewayRender, kind: str, suffix: str) -> dict[str, Any]:
    [found] = [r for r in recorder.kind(kind) if r.name.endswith(suffix)]
    return to_manifest(found)


# --- objects --------------------------------------------------------------------------------------


def test_every_new_object_validates_against_its_schema(cached: GatewayRender) -> None:
    objects = cache_objects(cached)
    kinds = sorted(m["kind"] for m in objects)
    expected = "AIServiceBackend Backend BackendSecurityPolicy ConfigMap Deployment Deployment NetworkPolicy"
    assert kinds == sorted(
        f"{expected} NetworkPolicy PodDisruptionBudget Secret Secret Secret Secret Service Service".split()
    )
    for manifest in [*objects, route(cached), to_manifest(cached.one("BackendTrafficPolicy"))]:
        assert validate_manifest(manifest) == [], manifest["metadata"]["name"]
    assert check_rules(cached).broken == []


def test_without_a_cache_nothing_new_is_rendered() -> None:
    plain = rendered(None)
    assert cache_objects(plain) == []
    assert [r["name"] for r in route(plain)["spec"]["rules"]] == ["chat", "code"]
    # A cache of models this region does not serve renders nothing either (a stack lists every region's models).
    assert cache_objects(rendered(ResponseCache(models=("elsewhere",)))) == []


# --- routing --------------------------------------------------------------------------------------


def test_a_cached_models_first_pass_goes_to_litellm_and_its_misses_to_the_models_rule(cached: GatewayRender) -> None:
    manifest = route(cached)
    plain = route(rendered(None))
    [original] = [r for r in plain["spec"]["rules"] if r["name"] == "chat"]
    # Clients (any tenant) reach the cache; uncached models are untouched.
    assert ask(manifest, "chat", **{TENANT_HEADER: "acme"}) == [(0, BACKEND, None)]
    assert ask(manifest, "chat") == [(0, BACKEND, None)]
    assert ask(manifest, "code", **{TENANT_HEADER: "acme"}) == ask(plain, "code")
    # The cache's misses and the health prober's probes take the model's own backends, the hosted fallback too.
    for client in (CACHE_CLIENT, HEALTH_CLIENT):
        assert ask(manifest, "chat", **{TENANT_HEADER: client}) == ask(plain, "chat")
    assert ask(plain, "chat") == [(0, f"{NAME}-chat", None), (1, f"{NAME}-fallback", "gpt-4o-mini")]
    [uncached] = [r for r in manifest["spec"]["rules"] if r["name"] == "chat-uncached"]
    assert uncached["backendRefs"] == original["backendRefs"] and uncached["timeouts"] == original["timeouts"]
    # A client naming a lookalike tenant does not match (the pattern is anchored).
    assert ask(manifest, "chat", **{TENANT_HEADER: f"{CACHE_CLIENT}x"}) == [(0, BACKEND, None)]


def test_the_cache_backend_is_litellms_service(cached: GatewayRender) -> None:
    backend = named(cached, "Backend", "-response-cache-backend")
    [endpoint] = backend["spec"]["endpoints"]
    assert endpoint["fqdn"] == {"hostname": f"{BACKEND}.llmfleet.svc.cluster.local", "port": LITELLM_PORT}
    service = named(cached, "Service", "-response-cache-service")
    assert service["metadata"]["name"] == BACKEND and service["spec"]["ports"][0]["port"] == LITELLM_PORT
    ai = named(cached, "AIServiceBackend", "-response-cache-aibackend")
    assert ai["spec"]["backendRef"]["name"] == BACKEND and ai["spec"]["schema"] == {"name": "OpenAI"}


def test_the_header_the_misses_are_told_apart_by_is_stripped_from_clients_and_set_by_auth(
    cached: GatewayRender,
) -> None:
    policy = to_manifest(cached.one("ClientTrafficPolicy"))
    assert TENANT_HEADER in policy["spec"]["headers"]["earlyRequestHeaders"]["remove"]
    security = to_manifest(cached.one("SecurityPolicy"))
    assert security["spec"]["apiKeyAuth"]["forwardClientIDHeader"] == TENANT_HEADER
    # The cache's key is a client of that policy: the same generated secret LiteLLM holds.
    keys = next(r for r in cached.by_kind("Secret") if r.name == f"{NAME}-api-keys")
    secret = next(r for r in cached.by_kind("Secret") if r.name == f"{NAME}-response-cache-key")
    password = next(r for r in cached.resources if r.name == f"{NAME}-cache-password")
    assert keys.inputs["stringData"][CACHE_CLIENT] == secret.inputs["stringData"]["key"]
    assert secret.inputs["stringData"]["key"] == password.outputs["result"]
    for role in ("key", "redis-password", "redis-config", "master-key"):
        stored = next(r for r in cached.by_kind("Secret") if r.name == f"{NAME}-response-cache-{role}")
        assert stored.secret_fields == {"stringData"}, f"{stored.name}: must arrive as a Pulumi secret"
    plain = [r.name for r in cached.resources if not r.secret_paths and password.outputs["result"] in str(r.inputs)]
    assert plain == [], f"the cache key in plain in {plain}"


def test_the_cache_client_is_held_to_no_budget(cached: GatewayRender) -> None:
    rules = cached.one("BackendTrafficPolicy").inputs["spec"]["rateLimit"]["global"]["rules"]
    default = [r for r in rules if r["clientSelectors"][0]["headers"][0]["type"] == "Distinct"]
    assert default
    for rule in default:
        (excluded,) = [h for h in rule["clientSelectors"][0]["headers"] if h.get("invert")]
        assert re.fullmatch(excluded["value"], CACHE_CLIENT) and re.fullmatch(excluded["value"], HEALTH_CLIENT)
        assert not re.fullmatch(excluded["value"], "beta"), "a tenant on the default limits is still counted"
    exact = [h["value"] for r in rules for h in r["clientSelectors"][0]["headers"] if h["type"] == "Exact"]
    assert CACHE_CLIENT not in exact


def test_revision_pinned_and_priority_requests_bypass_the_cache() -> None:
    canary = CanaryBackend("r2", "chat-r2", weight=10)
    models = [ModelBackend("chat", "chat-vllm", canary=canary, revision="r1"), MODELS[1]]
    recorder = rendered(models=models, priority=PriorityRouting({"chat": "gpt-4o"}))
    manifest = route(recorder)
    assert validate_manifest(manifest) == [] and check_rules(recorder).broken == []
    assert ask(manifest, "chat", **{TENANT_HEADER: "acme", REVISION_HEADER: "r2"}) == [(0, f"{NAME}-chat-r2", None)]
    assert ask(manifest, "chat", "cost", **{TENANT_HEADER: "acme"})[0][1] != BACKEND
    # The misses keep the canary split.
    weights = {ref["name"]: ref.get("weight") for ref in _rule(manifest, "chat-uncached")["backendRefs"]}
    assert weights[f"{NAME}-chat"] == 90 and weights[f"{NAME}-chat-r2"] == 10


def _rule(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [r for r in manifest["spec"]["rules"] if r["name"] == name]
    return found


def test_shadow_copies_are_made_of_the_requests_that_reach_the_model_only() -> None:
    canary = CanaryBackend("r2", "chat-r2", weight=0, shadow=20)
    models = [ModelBackend("chat", "chat-vllm", canary=canary, revision="r1"), MODELS[1]]
    recorder = rendered(models=models, engine_key_secret="engine-key")
    rules = route(recorder)["spec"]["rules"]
    patch = to_manifest(recorder.one("EnvoyPatchPolicy"))
    mirrored = {
        int(m.group(1))
        for p in patch["spec"]["jsonPatches"]
        if (m := re.search(r"/rule/(\d+)/", p["operation"]["jsonPath"]))
    }
    assert {rules[i]["name"] for i in mirrored} == {"chat-uncached"}


def test_a_tenant_cannot_take_the_caches_name_and_only_api_key_gateways_cache() -> None:
    with pytest.raises(ValueError, match=CACHE_CLIENT):
        rendered(tenants=[*TENANTS, Tenant(CACHE_CLIENT, api_key="k")])
    jwt = JwtAuth("https://issuer.example.com", "https://issuer.example.com/jwks")
    with pytest.raises(ValueError, match="API key"):
        rendered(tenants=[Tenant("acme")], jwt=jwt)


# --- LiteLLM and its Redis ------------------------------------------------------------------------


def test_litellm_runs_the_pinned_image_hardened_with_its_config_and_secrets(cached: GatewayRender) -> None:
    deployment = named(cached, "Deployment", "-response-cache")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert container["image"] == pins.image("litellm")
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert deployment["spec"]["replicas"] == 2
    # Secrets reach it as references, never values.
    secret_env = [e for e in container["env"] if "valueFrom" in e]
    refs = {(e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"]) for e in secret_env}
    assert refs == {
        (f"{BACKEND}-key", "key"),
        (f"{BACKEND}-redis-password", "redis-password"),
        (f"{BACKEND}-master-key", "apiKey"),
    }
    assert {e["name"] for e in secret_env} == {
        rc.UPSTREAM_KEY_ENV,
        rc.REDIS_PASSWORD_ENV,
        rc.MASTER_KEY_ENV,
    }
    assert all("value" not in e for e in secret_env)
    config_map = named(cached, "ConfigMap", "-response-cache-config")
    assert "&id" not in config_map["data"][CONFIG_FILE], "no YAML aliases"
    config = yaml.safe_load(config_map["data"][CONFIG_FILE])
    assert [m["model_name"] for m in config["model_list"]] == ["chat", f"chat{rc.STALE_SUFFIX}"]
    # Misses go to this region's own name (the gateway's certificate is for it), under /v1.
    assert config["model_list"][0]["litellm_params"]["api_base"] == "https://aws-us-east-1.api.example.com/v1"
    assert set(config_map["data"]) == {CONFIG_FILE, *(k for k in config_map["data"] if k.endswith(".py"))}
    assert len(config_map["data"]) == 2, "the config and the hook, side by side (LiteLLM imports it from there)"


def test_the_gateway_sends_litellm_its_master_key_and_clients_never_hold_it(cached: GatewayRender) -> None:
    policy = named(cached, "BackendSecurityPolicy", "-response-cache-credentials")
    assert validate_manifest(policy) == []
    spec = policy["spec"]
    assert spec["targetRefs"] == [{"group": "aigateway.envoyproxy.io", "kind": "AIServiceBackend", "name": BACKEND}]
    assert spec["type"] == "APIKey" and spec["apiKey"]["secretRef"]["name"] == f"{BACKEND}-master-key"
    master = next(r for r in cached.by_kind("Secret") if r.name == f"{NAME}-response-cache-master-key")
    generated = next(
        r for r in cached.resources if r.name == f"{NAME}-response-cache-master-key" and "random" in r.type
    )
    assert master.inputs["stringData"]["apiKey"] == generated.outputs["result"]
    keys = next(r for r in cached.by_kind("Secret") if r.name == f"{NAME}-api-keys")
    assert generated.outputs["result"] not in keys.inputs["stringData"].values(), "not a key any client presents"
    # The engines' key policy does not name the cache (LiteLLM would get the engines' key instead).
    engines = [p for p in cached.kind("BackendSecurityPolicy") if p.name.endswith("-engine-credentials")]
    assert all(BACKEND not in str(p.inputs["spec"]["targetRefs"]) for p in engines)


def test_one_replica_has_no_disruption_budget() -> None:
    recorder = rendered(ResponseCache(models=("chat",), replicas=1))
    assert not [r for r in recorder.kind("PodDisruptionBudget") if "-response-cache" in r.name]
    pdb = named(rendered(ResponseCache(models=("chat",), replicas=3)), "PodDisruptionBudget", "-response-cache-pdb")
    assert pdb["spec"]["minAvailable"] == 1


def test_the_cache_has_a_redis_of_its_own_bounded_and_evicting_lru(cached: GatewayRender) -> None:
    secret = next(r for r in cached.by_kind("Secret") if r.name == f"{NAME}-response-cache-redis-config")
    assert secret.inputs["metadata"]["name"] != REDIS_AUTH_SECRET, "not the rate-limit Redis"
    password = next(r for r in cached.by_kind("Secret") if r.name == f"{NAME}-response-cache-redis-password")
    assert (
        secret.inputs["stringData"]["redis.conf"].split("\n")[0]
        == "requirepass " + password.inputs["stringData"]["redis-password"]
    )
    conf = secret.inputs["stringData"]["redis.conf"]
    assert "maxmemory 512mb\n" in conf and "maxmemory-policy allkeys-lru\n" in conf
    assert conf.startswith("requirepass ") and len(conf.split("\n")[0]) > len("requirepass ") + 30
    redis = named(cached, "Deployment", "-response-cache-redis")
    [container] = redis["spec"]["template"]["spec"]["containers"]
    memory = container["resources"]["limits"]["memory"]
    assert int(memory.removesuffix("Mi")) > 512, "room beyond maxmemory for what Redis does not count"
    assert container["args"] == ["/etc/redis/redis.conf"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_only_the_gateway_reaches_litellm_and_only_litellm_reaches_its_redis(cached: GatewayRender) -> None:
    litellm = named(cached, "NetworkPolicy", "-response-cache-policy")["spec"]
    labels = named(cached, "Deployment", "-response-cache")["spec"]["selector"]["matchLabels"]
    assert litellm["podSelector"]["matchLabels"] == labels and litellm["policyTypes"] == ["Ingress", "Egress"]
    envoy, prometheus = litellm["ingress"]
    assert envoy == {"from": [ENVOY_PEER], "ports": [{"port": LITELLM_PORT, "protocol": "TCP"}]}
    assert prometheus["from"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    redis_labels = named(cached, "Deployment", "-response-cache-redis")["spec"]["selector"]["matchLabels"]
    to_redis, to_envoy, to_public, to_dns = litellm["egress"]
    assert to_redis == {
        "to": [{"podSelector": {"matchLabels": redis_labels}}],
        "ports": [{"port": 6379, "protocol": "TCP"}],
    }
    assert to_envoy == {"to": [ENVOY_PEER]}
    assert to_public["ports"] == [{"port": 443, "protocol": "TCP"}]
    assert "169.254.0.0/16" in to_public["to"][0]["ipBlock"]["except"], "not the metadata service"
    assert {p["port"] for p in to_dns["ports"]} == {53}
    redis = named(cached, "NetworkPolicy", "-response-cache-redis-policy")["spec"]
    assert redis["podSelector"]["matchLabels"] == redis_labels
    assert redis["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": labels}}], "ports": [{"port": 6379, "protocol": "TCP"}]}
    ]
    assert redis["policyTypes"] == ["Ingress", "Egress"] and not redis.get("egress"), "Redis opens nothing"
    # The model servers' own ingress policy does not select LiteLLM's pods (they would lose their egress).
    inference = to_manifest(next(r for r in cached.kind("NetworkPolicy") if r.name.endswith("-inference-ingress")))
    selector = inference["spec"]["podSelector"]["matchLabels"]
    assert not all(labels.get(k) == v for k, v in selector.items())


def test_the_hit_rate_panel_names_litellms_counters_in_the_caches_namespace() -> None:
    from llmfleet.components.observability.dashboards import dashboards
    from llmfleet.components.observability.metrics import KNOWN, metric_names
    from llmfleet.components.observability.rules import SloTargets

    slo = SloTargets(ttft_p95_ms=500, tpot_p95_ms=50, e2e_p99_ms=20_000, error_rate=0.01)
    assert "llmfleet-response-cache" not in [b.uid for b in dashboards("llmfleet", [], slo)]
    [board] = [b for b in dashboards("llmfleet", [], slo, cached=True) if b.uid == "llmfleet-response-cache"]
    names = {n for e in board.expressions() for n in metric_names(e)}
    # Hits over every request (LiteLLM 1.108.5's miss counter counts streamed misses only: response_cache.py).
    assert names == {f"{rc.HIT_METRIC}_total", f"{rc.REQUESTS_METRIC}_total"} <= set(KNOWN)
    assert all('namespace="llmfleet"' in e for e in board.expressions())
    [rate] = board.panels[0].queries
    assert rate.expr.index(rc.HIT_METRIC) < rate.expr.index("/") < rate.expr.index(rc.REQUESTS_METRIC)


# --- the stack option -----------------------------------------------------------------------------


def cache_stack(**cache: Any) -> dict[str, Any]:
    return {
        "models": [
            {"name": "small", "model": "qwen2.5-7b", "load": {"concurrent_sequences": 8}},
            {"name": "large", "model": "qwen2.5-7b", "load": {"concurrent_sequences": 8}},
        ],
        "regions": [
            {"cloud": "aws", "region": "us-east-1", "role": "primary"},
            {"cloud": "gcp", "region": "us-central1", "models": ["large"]},
        ],
        "gcp_project": "demo-project",
        "api_access_cidrs": ["203.0.113.0/24"],
        "gateway": {
            "hostname": "api.example.com",
            "tenants": [{"name": "a", "api_key_secret": "keyA"}, {"name": "b", "api_key_secret": "keyB"}],
            "response_cache": {"models": ["small"], **cache},
        },
    }


def test_the_stack_option_reaches_the_regions_serving_a_cached_model(write_stack: StackWriter) -> None:
    stack = cache_stack(ttl_s=120, stale_s=600, opt_in_tenants=["b"], max_memory_mb=256, replicas=3)
    run = run_program(stack_file=write_stack(stack, keyA="k", keyB="k2"))
    objects = [m for _, m in run.kubernetes_objects()]
    for manifest in objects:
        assert validate_manifest(manifest) == [], f"{manifest['kind']} {manifest['metadata'].get('name')}"
    caches = [m for m in objects if m["kind"] == "Deployment" and m["metadata"]["name"].endswith("-response-cache")]
    assert len(caches) == 1, "only the AWS region serves `small`"
    assert caches[0]["spec"]["replicas"] == 3
    [config] = [m for m in objects if m["kind"] == "ConfigMap" and CONFIG_FILE in m.get("data", {})]
    proxy = yaml.safe_load(config["data"][CONFIG_FILE])
    assert {m["litellm_params"]["api_base"] for m in proxy["model_list"] if m["model_name"] == "small"} == {
        "https://aws-us-east-1.api.example.com/v1"
    }
    # Serving stale is on: entries live ttl_s + stale_s, and the model has its stale twin as its fallback.
    assert proxy["litellm_settings"]["cache_params"]["ttl"] == 120 + 600
    assert f"small{rc.STALE_SUFFIX}" in [m["model_name"] for m in proxy["model_list"]]
    routes = [m for m in objects if m["kind"] == "AIGatewayRoute"]
    assert sorted(r["metadata"]["name"] for r in routes) == [
        "aws-us-east-1-gateway-models",
        "gcp-us-central1-gateway-models",
    ]
    split = {r["metadata"]["name"]: [rule["name"] for rule in r["spec"]["rules"]] for r in routes}
    # Prometheus scrapes LiteLLM where it runs, and Grafana shows its hit rate.
    [service] = [m for m in objects if m["kind"] == "Service" and m["metadata"]["name"].endswith("-response-cache")]
    monitors = [
        m for m in objects if m["kind"] == "ServiceMonitor" and m["metadata"]["name"] == "llmfleet-response-cache"
    ]
    assert len(monitors) == 1, "only the region running a cache"
    [monitor] = monitors
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [service["metadata"]["namespace"]]}
    labels = service["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [p["name"] for p in service["spec"]["ports"]]
    boards = [m for m in objects if m["kind"] == "ConfigMap" and m["metadata"]["name"] == "llmfleet-response-cache"]
    assert len(boards) == 1
    assert split["aws-us-east-1-gateway-models"] == ["small", "small-uncached", "large"]
    assert split["gcp-us-central1-gateway-models"] == ["large"]


@pytest.mark.parametrize(
    ("cache", "gateway", "message"),
    [
        ({"models": ["nope"]}, {}, "gateway.response_cache.models: unknown served names ['nope']"),
        ({"opt_in_tenants": ["zed"]}, {}, "gateway.response_cache.opt_in_tenants: unknown tenants ['zed']"),
        ({"ttl_s": 0}, {}, "gateway.response_cache.ttl_s"),
        ({"stale_s": -1}, {}, "gateway.response_cache.stale_s"),
        ({"max_memory_mb": 1}, {}, "gateway.response_cache.max_memory_mb"),
        ({"models": []}, {}, "gateway.response_cache.models"),
        ({"models": ["small", "small"]}, {}, "models: listed twice"),
        ({"ttl": 5}, {}, "gateway.response_cache.ttl"),
        ({}, {"hostname": None}, "gateway.response_cache: needs gateway.hostname with TLS on"),
        ({}, {"tenants": []}, "gateway.response_cache: needs a gateway with API-key tenants"),
        (
            {},
            {
                "tenants": [{"name": "a"}],
                "jwt": {"issuer": "https://i.example.com", "jwks_uri": "https://i.example.com/k"},
            },
            "this one has jwt",
        ),
        ({}, {"tenants": [], "allow_anonymous": True}, "this one has allow_anonymous"),
        (
            {},
            {"tenants": [{"name": "a", "api_key_secret": "keyA"}, {"name": CACHE_CLIENT, "api_key_secret": "keyB"}]},
            f"gateway.tenants[1].name: {CACHE_CLIENT!r} is the response cache's own client",
        ),
        (
            {"deterministic_only": False, "opt_in_tenants": ["b"]},
            {},
            "gateway.response_cache.opt_in_tenants: ['b'] opt tenants into caching sampled requests",
        ),
    ],
)
def test_bad_options_exit_2_naming_the_field(
    write_stack: StackWriter, cache: dict[str, Any], gateway: dict[str, Any], message: str
) -> None:
    stack = cache_stack()
    stack["gateway"]["response_cache"] = {**stack["gateway"]["response_cache"], **cache}
    for key, value in gateway.items():
        if value is None:
            del stack["gateway"][key]
        else:
            stack["gateway"][key] = value
    path = write_stack(stack, keyA="k", keyB="k2")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_stack(stack_file=path)
    result = CliRunner().invoke(app, ["plan", "--stack-file", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_a_region_whose_route_would_hold_too_many_rules_is_refused_before_anything_runs(
    write_stack: StackWriter,
) -> None:
    from llmfleet.components.gateway.routes import MAX_RULES_PER_ROUTE
    from llmfleet.infra.schema import gateway as schema
    from llmfleet.infra.schema.gateway import MAX_ROUTE_RULES

    assert MAX_ROUTE_RULES == MAX_RULES_PER_ROUTE, "the schema's copy of the CRD's bound"
    assert schema.CACHE_CLIENT == CACHE_CLIENT, "the schema's copy of the cache's client id"
    stack = cache_stack()
    names = [f"m{i}" for i in range(8)]
    stack["models"] = [{"name": n, "model": "qwen2.5-7b", "load": {"concurrent_sequences": 8}} for n in names]
    stack["regions"] = stack["regions"][:1]
    del stack["gcp_project"]
    stack["gateway"]["response_cache"]["models"] = names[:7]  # 8 + 7 = 15 rules: the most a route holds
    load_stack(stack_file=write_stack(stack, keyA="k", keyB="k2"))
    stack["gateway"]["response_cache"]["models"] = names
    path = write_stack(stack, keyA="k", keyB="k2")
    with pytest.raises(ConfigError, match=r"gateway\.response_cache\.models: region aws-us-east-1 would route 16"):
        load_stack(stack_file=path)
    result = CliRunner().invoke(app, ["plan", "--stack-file", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output


# --- the plan -------------------------------------------------------------------------------------


def test_the_plan_prices_litellm_and_its_redis_where_a_cached_model_is_served(write_stack: StackWriter) -> None:
    from llmfleet.infra.planning import build_plan

    _, spec = load_stack(stack_file=write_stack(cache_stack(replicas=2, cpu="1", memory="2Gi"), keyA="k", keyB="k2"))
    costs = build_plan("t", spec).response_cache
    assert [(c.region, c.what, c.pods) for c in costs] == [
        ("us-east-1", "Response cache LiteLLM", 2),
        ("us-east-1", "Response cache Redis", 1),
    ]
    litellm, redis = costs
    assert litellm.vcpu_total == 2 and litellm.memory_gib_total == 4 and litellm.usd_per_hour > 0
    assert redis.memory_gib_total > 1024 / 1024, "the default 1024 MiB maxmemory plus headroom"
    _, bigger = load_stack(stack_file=write_stack(cache_stack(replicas=4, cpu="1", memory="2Gi"), keyA="k", keyB="k2"))
    assert build_plan("t", bigger).response_cache[0].usd_per_hour == pytest.approx(2 * litellm.usd_per_hour, rel=1e-3)
    stack = cache_stack()
    del stack["gateway"]["response_cache"]
    _, none = load_stack(stack_file=write_stack(stack, keyA="k", keyB="k2"))
    assert build_plan("t", none).response_cache == ()


def test_llmfleet_plan_shows_the_cache_cost(write_stack: StackWriter) -> None:
    import json

    path = write_stack(cache_stack(), keyA="k", keyB="k2")
    result = CliRunner().invoke(app, ["plan", "--stack-file", str(path)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Response cache LiteLLM aws/us-east-1: 2 pods x (500m CPU, 1Gi) = 1 vCPU, 2 GiB on the system nodes" in text
    assert "Response cache Redis aws/us-east-1: 1 pod x (100m CPU, 1280Mi)" in text
    result = CliRunner().invoke(app, ["plan", "--stack-file", str(path), "--format", "json"])
    assert [c["what"] for c in json.loads(result.output)["response_cache"]] == [
        "Response cache LiteLLM",
        "Response cache Redis",
    ]
