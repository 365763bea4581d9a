"""The cheap-then-strong cascade (gateway.cascade): vLLM's semantic router v0.3.0 as Envoy's external processor.

Proven here, offline: every new object validates against the pinned CRDs (Envoy Gateway v1.8.1) and their CEL
rules; the router's chart values are the pinned chart's; the router's configuration, merged by Helm's rules into
the chart's default, passes the vllm-sr 0.3.0 wheel's config models and validator; the HTTP filter chain, as
Envoy Gateway v1.8.1 and the AI Gateway v1.1.0 compute it from these objects (their algorithms ported below, with
the source cited), puts the router after auth and before the AI Gateway's filter; `auto` requests that reach the
route unrewritten go to the cheap model; the stack option reaches the program; bad options name their field.
Not proven: a live Envoy (the filter chain it really builds), the router's decisions on real prompts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from cli.models import UserConfig  # the vllm-sr 0.3.0 wheel (dev extra): the router's own config models
from cli.validator import validate_user_config
from support.cel import check_rules
from support.gateway import NAME, NAMESPACE, GatewayRender, full_args, render
from support.gateway import manifest as to_manifest
from support.pin_checks import unpinned_releases
from support.routes import ask
from support.stacks import StackWriter
from typer.testing import CliRunner

from llmfleet.components import pins
from llmfleet.components.gateway import Cascade, ModelBackend
from llmfleet.components.gateway.cascade import (
    BUFFER_FILTER,
    COMPLEXITY_SIGNAL,
    EXT_PROC_FILTER,
    ROUTER_GRPC_PORT,
    router_config,
)
from llmfleet.infra.cli import app
from llmfleet.infra.config import ConfigError, load_stack
from llmfleet.infra.render.chart_values import _vendored, values_problems
from llmfleet.infra.render.offline import run_program
from llmfleet.infra.render.validate import validate_manifest

CASCADE = Cascade(
    cheap_model="chat",
    strong_model="code",
    hard_examples=("prove this step by step",),
    easy_examples=("what time is it",),
)
CHART = pins.chart("semantic-router")
ROUTER = f"{NAME}-router"


def rendered(cascade: Cascade | None = CASCADE, **changes: Any) -> GatewayRender:
    recorder, _ = render(full_args(cascade=cascade, **changes))
    return recorder


@pytest.fixture(scope="module")
def with_cascade() -> GatewayRender:
    return rendered()


def release(recorder: GatewayRender) -> dict[str, Any]:
    [found] = [r for r in recorder.resources if r.type == "kubernetes:helm.sh/v3:Release" and "router" in r.name]
    return found.inputs


# --- objects and values -------------------------------------------------------------------------


def test_every_new_object_validates_against_the_pinned_crds(with_cascade: GatewayRender) -> None:
    for kind in ("EnvoyExtensionPolicy", "EnvoyProxy", "BackendTrafficPolicy", "AIGatewayRoute"):
        manifest = to_manifest(with_cascade.one(kind))
        assert validate_manifest(manifest) == [], kind
    assert check_rules(with_cascade).broken == []
    policy = to_manifest(with_cascade.one("EnvoyExtensionPolicy"))
    [ext_proc] = policy["spec"]["extProc"]
    assert ext_proc["backendRefs"] == [{"group": "", "kind": "Service", "name": ROUTER, "port": ROUTER_GRPC_PORT}]
    assert ext_proc["failOpen"] is True
    # Request headers and body only: responses (streamed tokens) never wait on the router.
    assert ext_proc["processingMode"] == {"request": {"body": "Buffered"}}
    # On the model route only (the HTTPRoute the AI Gateway generates from it): not the health or redirect routes.
    assert policy["spec"]["targetRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": f"{NAME}-models"}
    ]
    assert policy["metadata"]["namespace"] == NAMESPACE


def test_fail_open_is_the_stacks_choice() -> None:
    recorder = rendered(Cascade(**{**CASCADE.__dict__, "fail_open": False}))
    [ext_proc] = to_manifest(recorder.one("EnvoyExtensionPolicy"))["spec"]["extProc"]
    assert ext_proc["failOpen"] is False


def test_the_router_is_the_pinned_chart_with_the_defaults_overridden(with_cascade: GatewayRender) -> None:
    inputs = release(with_cascade)
    assert (inputs["chart"], inputs["version"], inputs["name"]) == (CHART.name, CHART.version, ROUTER)
    assert inputs["namespace"] == NAMESPACE
    values = inputs["values"]
    assert values_problems(CHART.name, CHART.version, values) == []
    assert f"{values['image']['repository']}:{values['image']['tag']}" == pins.image("semantic-router")
    # The image is set (the chart's appVersion at the tag is `latest`), and only to the pinned row.
    as_rendered = {"name": ROUTER, "chart": CHART.name, "version": CHART.version, "values": values}
    assert unpinned_releases([as_rendered]) == []
    moved = {**as_rendered, "values": {**values, "image": {**values["image"], "tag": "latest"}}}
    assert unpinned_releases([moved]) == [
        f"release {ROUTER}: values.image overrides the chart's pinned image ({moved['values']['image']!r})"
    ]
    # No PVC of storage class `standard` (none on EKS by default): an emptyDir per pod for the models.
    assert values["persistence"] == {"enabled": False}
    assert values["extraVolumes"][0]["emptyDir"]["sizeLimit"] == "10Gi"
    assert values["extraVolumeMounts"] == [{"name": "models", "mountPath": "/app/models"}]
    assert values["resources"]["requests"] == {"cpu": "1", "memory": "3Gi"}
    assert values["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert values["securityContext"]["allowPrivilegeEscalation"] is False
    assert values["rbac"] == {"create": False}
    assert values["config"]["global"]["stores"]["semantic_cache"] == {"enabled": False}


def test_a_value_the_chart_does_not_have_is_caught() -> None:
    values = release(rendered(Cascade(**{**CASCADE.__dict__, "values": {"persistance": {"enabled": True}}})))["values"]
    assert values_problems(CHART.name, CHART.version, values) == [
        "chart semantic-router 0.3.0: values.persistance: the chart has no such value; did you mean persistence?"
    ]


# --- the router's configuration, as the router release reads it ----------------------------------


def helm_merge(defaults: Any, values: Any) -> Any:
    """Helm's coalescing of a chart's default values with the release's: maps merge key by key, anything else
    (lists included) is replaced by the release's value."""
    if isinstance(defaults, Mapping) and isinstance(values, Mapping):
        merged: dict[str, Any] = dict(defaults)  # pyright: ignore[reportUnknownArgumentType]
        for key, value in values.items():  # pyright: ignore[reportUnknownVariableType]
            merged[key] = helm_merge(merged.get(key), value) if key in merged else value  # pyright: ignore
        return merged
    return values


def chart_default_config() -> dict[str, Any]:
    return _vendored()[(CHART.name, CHART.version)]["defaults"]["config"]


def router_user_config(cascade: Cascade) -> dict[str, Any]:
    return helm_merge(chart_default_config(), router_config(cascade))


@pytest.mark.parametrize("escalate_medium", [False, True])
def test_the_router_config_passes_the_routers_own_config_models(escalate_medium: bool) -> None:
    merged = router_user_config(Cascade(**{**CASCADE.__dict__, "escalate_medium": escalate_medium}))
    config = UserConfig.model_validate(merged)
    assert validate_user_config(config) == []
    # What the router will do, read back through its own models.
    assert [m.name for m in config.providers.models] == ["chat", "code"]
    assert config.providers.defaults.default_model == "chat"
    [signal] = config.routing.signals.complexity or []
    assert (signal.name, signal.hard.candidates, signal.easy.candidates) == (
        COMPLEXITY_SIGNAL,
        ["prove this step by step"],
        ["what time is it"],
    )
    escalate, default = sorted(config.routing.decisions, key=lambda d: -d.priority)
    assert [r.model for r in escalate.modelRefs] == ["code"]
    difficulties = {c.name for c in escalate.rules.conditions}
    expected = {f"{COMPLEXITY_SIGNAL}:hard"} | ({f"{COMPLEXITY_SIGNAL}:medium"} if escalate_medium else set())
    assert difficulties == expected
    assert [r.model for r in default.modelRefs] == ["chat"] and default.rules.conditions == []
    assert config.routing.signals.domains == []  # the chart's `general` domain replaced
    global_ = config.global_ or {}
    assert global_["stores"]["semantic_cache"]["enabled"] is False
    assert global_["router"]["auto_model_name"] == "auto"


def test_the_config_check_catches_a_decision_on_an_undefined_signal() -> None:
    merged = router_user_config(CASCADE)
    merged["routing"]["decisions"][0]["rules"]["conditions"][0]["name"] = "nope:hard"
    errors = validate_user_config(UserConfig.model_validate(merged))
    assert errors and "nope" in str(errors[0])


# --- the filter chain ---------------------------------------------------------------------------

# Envoy Gateway v1.8.1 internal/xds/translator/httpfilters.go newOrderedHTTPFilter: default positions.
EG_ORDER = {
    "envoy.filters.http.api_key_auth": 6,
    "envoy.filters.http.jwt_authn": 9,
    BUFFER_FILTER: 11,
    EXT_PROC_FILTER: 100,
    "envoy.filters.http.ratelimit": 303,
    "envoy.filters.http.router": 310,
}
# AI Gateway v1.1.0 internal/extensionserver/post_translate_modify.go afterExtProcFilterPrefixes.
AI_GATEWAY_AFTER = (
    "envoy.filters.http.ext_proc",
    "envoy.filters.http.wasm",
    "envoy.filters.http.lua",
    "envoy.filters.http.rbac",
    "envoy.filters.http.local_ratelimit",
    "envoy.filters.http.ratelimit",
    "envoy.filters.http.custom_response",
    "envoy.filters.http.credential_injector",
    "envoy.filters.http.compressor",
    "envoy.filters.http.router",
)
AI_GATEWAY_FILTER = "envoy.filters.http.ext_proc/aigateway"


def kind_of(filter_name: str) -> str:
    return filter_name.split("/", 1)[0]


def envoy_gateway_chain(filters: list[str], filter_order: list[dict[str, str]]) -> list[str]:
    """sortHTTPFilters: default order, then each filterOrder entry moves every filter of its kind before the first
    (`before`) or after the last (`after`) filter of the named kind."""
    chain = sorted(filters, key=lambda f: (EG_ORDER[kind_of(f)], f))
    for position in filter_order:
        moving = [f for f in chain if kind_of(f) == position["name"]]
        if not moving:
            continue
        if "before" in position:
            anchors = [f for f in chain if kind_of(f) == position["before"]]
            if anchors:
                rest = [f for f in chain if f not in moving]
                i = rest.index(anchors[0])
                chain = rest[:i] + moving + rest[i:]
        elif "after" in position:
            anchors = [f for f in chain if kind_of(f) == position["after"]]
            if anchors:
                rest = [f for f in chain if f not in moving]
                i = rest.index(anchors[-1]) + 1
                chain = rest[:i] + moving + rest[i:]
    return chain


def insert_ai_gateway(chain: list[str]) -> list[str]:
    """insertAIGatewayExtProcFilter: before the first filter of afterExtProcFilterPrefixes, unless a buffer filter
    sits at or after that point: then right after the last buffer filter."""
    index = next(i for i, f in enumerate(chain) if f.startswith(AI_GATEWAY_AFTER))
    buffers = [i for i, f in enumerate(chain) if f.startswith(BUFFER_FILTER)]
    if buffers and buffers[-1] >= index:
        index = buffers[-1] + 1
    return [*chain[:index], AI_GATEWAY_FILTER, *chain[index:]]


def listener_chain(recorder: GatewayRender) -> list[str]:
    """The serving listener's filters as the two controllers would order them, from the rendered objects."""
    filters = ["envoy.filters.http.router"]
    security = to_manifest(recorder.one("SecurityPolicy"))["spec"]
    if "apiKeyAuth" in security:
        filters.append("envoy.filters.http.api_key_auth/securitypolicy")
    traffic = to_manifest(recorder.one("BackendTrafficPolicy"))["spec"]
    if "rateLimit" in traffic:
        filters.append("envoy.filters.http.ratelimit")
    if "requestBuffer" in traffic:
        filters.append(BUFFER_FILTER)
    filters += [
        f"{EXT_PROC_FILTER}/envoyextensionpolicy/{to_manifest(p)['metadata']['name']}"
        for p in recorder.by_kind("EnvoyExtensionPolicy")
    ]
    proxy = to_manifest(recorder.one("EnvoyProxy"))["spec"]
    return insert_ai_gateway(envoy_gateway_chain(filters, proxy.get("filterOrder", [])))


def test_the_router_runs_after_auth_and_before_the_ai_gateway(with_cascade: GatewayRender) -> None:
    assert to_manifest(with_cascade.one("EnvoyProxy"))["spec"]["filterOrder"] == [
        {"name": EXT_PROC_FILTER, "before": BUFFER_FILTER}
    ]
    assert listener_chain(with_cascade) == [
        "envoy.filters.http.api_key_auth/securitypolicy",
        f"{EXT_PROC_FILTER}/envoyextensionpolicy/{ROUTER}",
        BUFFER_FILTER,
        AI_GATEWAY_FILTER,
        "envoy.filters.http.ratelimit",
        "envoy.filters.http.router",
    ]


def test_without_the_filter_order_the_ai_gateway_would_run_first(with_cascade: GatewayRender) -> None:
    """The control: Envoy Gateway's default order alone puts the router after the AI Gateway's filter, where its
    rewrite of the model would be lost."""
    proxy = with_cascade.one("EnvoyProxy")
    saved = proxy.inputs["spec"].pop("filterOrder")
    try:
        chain = listener_chain(with_cascade)
    finally:
        proxy.inputs["spec"]["filterOrder"] = saved
    assert chain.index(AI_GATEWAY_FILTER) < chain.index(f"{EXT_PROC_FILTER}/envoyextensionpolicy/{ROUTER}")


# --- the route ----------------------------------------------------------------------------------


def test_auto_requests_the_router_did_not_rewrite_go_to_the_cheap_model(with_cascade: GatewayRender) -> None:
    route = to_manifest(with_cascade.one("AIGatewayRoute"))
    # chat (the cheap model) falls back to the hosted API: that ref keeps the provider's model name.
    assert ask(route, "auto") == [(0, f"{NAME}-chat", "chat"), (1, f"{NAME}-fallback", "gpt-4o-mini")]
    # A rewritten request matches its model's own rule, as before.
    assert ask(route, "code") == [(0, f"{NAME}-code", None)]
    assert to_manifest(with_cascade.one("BackendTrafficPolicy"))["spec"]["requestBuffer"] == {"limit": "50Mi"}


def test_without_a_cascade_nothing_new_is_rendered() -> None:
    recorder = rendered(None)
    assert recorder.by_kind("EnvoyExtensionPolicy") == []
    assert not [r for r in recorder.by_kind("NetworkPolicy") if "router" in r.name]
    assert not [r for r in recorder.resources if r.type == "kubernetes:helm.sh/v3:Release" and "router" in r.name]
    assert "filterOrder" not in to_manifest(recorder.one("EnvoyProxy"))["spec"]
    assert "requestBuffer" not in to_manifest(recorder.one("BackendTrafficPolicy"))["spec"]
    route = to_manifest(recorder.one("AIGatewayRoute"))
    assert "auto" not in {h["value"] for rule in route["spec"]["rules"] for h in rule["matches"][0]["headers"]}


def test_the_component_refuses_models_it_cannot_route() -> None:
    with pytest.raises(ValueError, match=r"cascade.strong_model: 'big' is not served in this region"):
        rendered(Cascade(**{**CASCADE.__dict__, "strong_model": "big"}))
    with pytest.raises(ValueError, match=r"cascade.auto_model: 'code' is a served model's name"):
        rendered(Cascade(**{**CASCADE.__dict__, "auto_model": "code"}))


def test_a_pooled_cheap_model_takes_unrewritten_auto_requests_on_its_service() -> None:
    """An InferencePool ignores modelNameOverride (AIGatewayRoute CRD): the rule uses the model's Service Backend."""
    pooled = [ModelBackend("chat", "chat-vllm", pool="chat-pool"), ModelBackend("code", "code-vllm")]
    recorder = rendered(models=pooled, fallback=None)
    route = to_manifest(recorder.one("AIGatewayRoute"))
    assert validate_manifest(route) == [] and check_rules(recorder).broken == []
    assert ask(route, "auto") == [(0, f"{NAME}-chat", "chat")]
    assert {to_manifest(b)["metadata"]["name"] for b in recorder.by_kind("Backend")} >= {f"{NAME}-chat"}


# --- the stack option ---------------------------------------------------------------------------


def cascade_stack(**cascade: Any) -> dict[str, Any]:
    return {
        "models": [
            {"name": "small", "model": "qwen2.5-7b", "load": {"concurrent_sequences": 8}},
            {"name": "large", "model": "qwen2.5-7b", "load": {"concurrent_sequences": 8}},
        ],
        "regions": [
            {"cloud": "aws", "region": "us-east-1", "role": "primary"},
            {"cloud": "gcp", "region": "us-central1", "models": ["small", "large"]},
        ],
        "gcp_project": "demo-project",
        "api_access_cidrs": ["203.0.113.0/24"],
        "gateway": {
            "tenants": [{"name": "a", "api_key_secret": "keyA"}],
            "cascade": {"cheap_model": "small", "strong_model": "large", **cascade},
        },
    }


def test_the_stack_option_reaches_every_regions_gateway(write_stack: StackWriter) -> None:
    run = run_program(stack_file=write_stack(cascade_stack(escalate_on="medium", fail_open=False), keyA="k"))
    policies = [m for _, m in run.kubernetes_objects() if m["kind"] == "EnvoyExtensionPolicy"]
    assert len(policies) == 2 and all(p["spec"]["extProc"][0]["failOpen"] is False for p in policies)
    for _, manifest in run.kubernetes_objects():
        if manifest["kind"] in ("EnvoyExtensionPolicy", "EnvoyProxy", "BackendTrafficPolicy", "AIGatewayRoute"):
            assert validate_manifest(manifest) == [], manifest["metadata"]["name"]
    proxies = [m for _, m in run.kubernetes_objects() if m["kind"] == "EnvoyProxy" and "filterOrder" in m["spec"]]
    assert len(proxies) == 2
    routers = [r for _, r in run.helm_releases() if r["name"].endswith("-gateway-router")]
    assert len(routers) == 2
    for router in routers:
        assert values_problems(CHART.name, CHART.version, router["values"]) == []
        config = UserConfig.model_validate(helm_merge(chart_default_config(), router["values"]["config"]))
        assert validate_user_config(config) == []
        assert [m.name for m in config.providers.models] == ["small", "large"]
        [escalate] = [d for d in config.routing.decisions if d.priority == 200]
        assert {c.name for c in escalate.rules.conditions} == {
            f"{COMPLEXITY_SIGNAL}:hard",
            f"{COMPLEXITY_SIGNAL}:medium",
        }


@pytest.mark.parametrize(
    ("cascade", "regions", "message"),
    [
        ({"strong_model": "nope"}, None, "gateway.cascade.strong_model: unknown served name 'nope'"),
        ({"strong_model": "small"}, None, "cheap_model and strong_model: name two different served models"),
        ({"auto_model": "large"}, None, "gateway.cascade.auto_model: 'large' is a served model's name"),
        ({"threshold": 1.5}, None, "gateway.cascade.threshold"),
        ({"hard_examples": []}, None, "gateway.cascade.hard_examples"),
        ({"escalate_on": "easy"}, None, "gateway.cascade.escalate_on"),
        ({"cpu": "lots"}, None, "gateway.cascade.cpu"),
        ({}, ["small"], "gateway.cascade.strong_model: 'large' is not served in ['gcp-us-central1']"),
    ],
)
def test_bad_options_exit_2_naming_the_field(
    write_stack: StackWriter, cascade: dict[str, Any], regions: list[str] | None, message: str
) -> None:
    stack = cascade_stack(**cascade)
    if regions is not None:
        stack["regions"][1]["models"] = regions
    path = write_stack(stack, keyA="k")
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_stack(stack_file=path)
    result = CliRunner().invoke(app, ["plan", "--stack-file", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


# --- the plan -----------------------------------------------------------------------------------


def test_the_plan_prices_the_router_pods_as_a_share_of_the_cheapest_cpu_node(write_stack: StackWriter) -> None:
    from llmfleet.components.sizing.catalog import load_catalog
    from llmfleet.components.sizing.cpu_pods import ALLOCATABLE_SHARE
    from llmfleet.infra.planning import build_plan

    catalog = load_catalog()
    _, spec = load_stack(stack_file=write_stack(cascade_stack(replicas=3, cpu="500m", memory="4Gi"), keyA="k"))
    plan = build_plan("t", spec)
    assert [(c.cloud, c.region) for c in plan.cascade] == [("aws", "us-east-1"), ("gcp", "us-central1")]
    for cost in plan.cascade:
        assert (cost.pods, cost.vcpu_total, cost.memory_gib_total) == (3, 1.5, 12)
        # Recomputed from the catalog: every CPU-only type's price for the pods; the plan's is the cheapest.
        prices: dict[str, float] = {}
        for instance in catalog.instances_in(cost.cloud, cost.region):
            on_demand = catalog.price(instance, cost.region).on_demand
            if instance.gpu_count == 0 and on_demand is not None:
                share = max(0.5 / instance.vcpu, 4 / instance.ram_gib) / ALLOCATABLE_SHARE
                prices[instance.type] = 3 * share * on_demand
        assert cost.usd_per_hour == pytest.approx(min(prices.values()), abs=1e-4)
        assert cost.usd_per_hour == pytest.approx(prices[cost.instance_type], abs=1e-4)
        assert cost.usd_per_month == pytest.approx(cost.usd_per_hour * 730, abs=0.1)
    # More router pods cost proportionally more; no cascade, no line.
    _, spec = load_stack(stack_file=write_stack(cascade_stack(replicas=6, cpu="500m", memory="4Gi"), keyA="k"))
    assert build_plan("t", spec).cascade[0].usd_per_hour == pytest.approx(2 * plan.cascade[0].usd_per_hour, rel=1e-3)
    stack = cascade_stack()
    del stack["gateway"]["cascade"]
    _, spec = load_stack(stack_file=write_stack(stack, keyA="k"))
    assert build_plan("t", spec).cascade == ()


def test_llmfleet_plan_shows_the_router_cost(write_stack: StackWriter) -> None:
    import json

    path = write_stack(cascade_stack(), keyA="k")
    result = CliRunner().invoke(app, ["plan", "--stack-file", str(path)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Cascade router aws/us-east-1: 2 pods x (1 CPU, 3Gi) = 2 vCPU, 6 GiB on the system nodes" in text
    result = CliRunner().invoke(app, ["plan", "--stack-file", str(path), "--format", "json"])
    assert [c["region"] for c in json.loads(result.output)["cascade"]] == ["us-east-1", "us-central1"]


def test_only_this_gateways_envoy_pods_reach_the_router(with_cascade: GatewayRender) -> None:
    [policy] = [r for r in with_cascade.by_kind("NetworkPolicy") if r.name.endswith("-router-isolation")]
    manifest = to_manifest(policy)
    assert validate_manifest(manifest) == []
    spec = manifest["spec"]
    # The chart's selector labels (templates/_helpers.tpl at v0.3.0: instance = release name, app = semantic-router).
    assert spec["podSelector"]["matchLabels"] == {"app.kubernetes.io/instance": ROUTER, "app": "semantic-router"}
    envoy, prometheus = spec["ingress"]
    assert envoy["ports"] == [{"port": ROUTER_GRPC_PORT, "protocol": "TCP"}]
    [peer] = envoy["from"]
    assert peer["podSelector"]["matchLabels"] == {"gateway.envoyproxy.io/owning-gateway-name": NAME}
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "envoy-gateway-system"}
    assert prometheus["ports"] == [{"port": 9190, "protocol": "TCP"}]
    dns, https = spec["egress"]
    assert {p["port"] for p in dns["ports"]} == {53} and https["ports"] == [{"port": 443, "protocol": "TCP"}]
    assert "169.254.0.0/16" in https["to"][0]["ipBlock"]["except"]  # not the metadata service
