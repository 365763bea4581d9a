"""Shadow mode at the gateway: the copies' route, credential and mirror policies, rendered and checked.

Envoy itself does not run here. What is checked: every object validates against its pinned CRD; the
EnvoyPatchPolicy's patches, applied the way Envoy Gateway v1.8.1 applies them (a JSONPath filter with a
regular expression on the route name, then the JSON pointer `path` below each match) to route
configurations named and shaped as Envoy Gateway names them, put a mirror policy on exactly the xDS routes
of the shadowed model's real traffic; the patched configurations parse as Envoy's RouteConfiguration
messages (envoy-data-plane's, strict: an unknown field or enum value fails); the mirror points at the
cluster Envoy Gateway builds for the shadow route's backend; no client request can reach that route.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration
from support.gateway import NAME, NAMESPACE, GatewayRender, full_args, render
from support.gateway import manifest as to_manifest

from llmfleet.components.gateway import CanaryBackend, ModelBackend, PriorityRouting, SplitBackend, Tls
from llmfleet.components.gateway.routes import Names
from llmfleet.components.gateway.shadow import ROUTE_CONFIGURATION, Shadow, patch_policy_spec
from llmfleet.components.gateway.types import MODEL_HEADER, REVISION_HEADER, SHADOW_HEADER
from llmfleet.infra.render.validate import validate_manifest

NAMES = Names(NAME)
KEY_SECRET = "llmfleet-engine-key"
JSONPATH = re.compile(r"^\.\.routes\[\?\(@\.name =~ '(?P<regex>[^']+)'\)\]$")


def shadowed(share: int = 10, **changes: Any) -> Any:
    models = [
        ModelBackend("chat", "chat-vllm", canary=CanaryBackend("b2", "chat-vllm-b2", 0, shadow=share), revision="a1"),
        ModelBackend("code", "code-vllm"),
    ]
    return full_args(**{"models": models, "engine_key_secret": KEY_SECRET, **changes})


def manifests(recorder: GatewayRender, kind: str) -> list[dict[str, Any]]:
    return [to_manifest(r) for r in recorder.by_kind(kind)]


def only(recorder: GatewayRender, kind: str, name: str) -> dict[str, Any]:
    [found] = [m for m in manifests(recorder, kind) if m["metadata"]["name"] == name]
    return found


# --- Envoy Gateway's xDS, as v1.8.1 names and patches it ----------------------------------------------------


def route_configuration(listener: str, host: str | None, routes: list[dict[str, Any]]) -> dict[str, Any]:
    """The xDS route configuration of one listener holding `routes` (each an HTTPRoute manifest), in Envoy
    Gateway's names: `<ns>/<gateway>/<listener>`; a route per rule and match, `httproute/<ns>/<route>/rule/<i>/
    match/<j>/<host with _ for .>`, sent to the rule's cluster `httproute/<ns>/<route>/rule/<i>` (or, for a
    backend with filters, `.../backend/0`)."""
    suffix = (host or "*").replace(".", "_")
    xds_routes: list[dict[str, Any]] = []
    for route in routes:
        prefix = f"httproute/{NAMESPACE}/{route['metadata']['name']}"
        for i, rule in enumerate(route["spec"]["rules"]):
            refs = rule.get("backendRefs", [])
            cluster = f"{prefix}/rule/{i}" + ("/backend/0" if refs and refs[0].get("filters") else "")
            for j, match in enumerate(rule.get("matches", [{}])):
                headers = [{"name": h["name"], "string_match": {"exact": h["value"]}} for h in match.get("headers", [])]
                xds_routes.append(
                    {
                        "name": f"{prefix}/rule/{i}/match/{j}/{suffix}",
                        "match": {"prefix": "/", "headers": headers},
                        "route": {"cluster": cluster},
                    }
                )
    host_name = f"{NAMESPACE}/{NAME}/{listener}/{suffix}"
    return {
        "name": f"{NAMESPACE}/{NAME}/{listener}",
        "virtual_hosts": [{"name": host_name, "domains": [host or "*"], "routes": xds_routes}],
    }


def generated_http_route(ai_route: dict[str, Any]) -> dict[str, Any]:
    """The HTTPRoute the AI Gateway generates: the same rules in order, then its `route-not-found` rule."""
    rules = [*ai_route["spec"]["rules"], {"name": "route-not-found", "matches": [{}]}]
    return {"metadata": ai_route["metadata"], "spec": {"rules": rules}}


def apply_patches(configuration: dict[str, Any], policy: dict[str, Any]) -> dict[str, Any]:
    """Envoy Gateway's EnvoyPatchPolicy JSONPatch on one route configuration (internal/xds/translator/
    jsonpatch.go, internal/utils/jsonpatch): patches naming it, each JSONPath expanded to every match (ojg's
    `=~` is Go's unanchored regexp match), `path` appended, `add` creating the member."""
    patched = copy.deepcopy(configuration)
    for patch in policy["spec"]["jsonPatches"]:
        assert patch["type"] == ROUTE_CONFIGURATION
        if patch["name"] != patched["name"]:
            continue
        operation = patch["operation"]
        assert operation["op"] == "add" and operation["path"] == "/route/request_mirror_policies"
        found = JSONPATH.match(operation["jsonPath"])
        assert found, operation["jsonPath"]
        regex = re.compile(found["regex"])
        matched = [r for vh in patched["virtual_hosts"] for r in vh["routes"] if regex.search(r["name"])]
        assert matched, f"no route matches {operation['jsonPath']}: Envoy Gateway would report an error"
        for xds_route in matched:
            xds_route["route"]["request_mirror_policies"] = copy.deepcopy(operation["value"])
    return patched


def parsed(configuration: dict[str, Any]) -> Any:
    """As Envoy reads it: fails on a field or enum value the RouteConfiguration proto does not have."""
    return RouteConfiguration.from_dict(configuration)


def patched_configurations(recorder: GatewayRender) -> list[dict[str, Any]]:
    ai_route = only(recorder, "AIGatewayRoute", NAMES.route)
    shadow_route = only(recorder, "HTTPRoute", f"{NAME}-shadow")
    policy = only(recorder, "EnvoyPatchPolicy", f"{NAME}-shadow")
    gateway = only(recorder, "Gateway", NAME)
    configurations: list[dict[str, Any]] = []
    for listener in gateway["spec"]["listeners"]:
        if listener["port"] != 443:
            continue
        routes = [generated_http_route(ai_route), shadow_route]
        configurations.append(
            apply_patches(route_configuration(listener["name"], listener.get("hostname"), routes), policy)
        )
    return configurations


def mirrors_by_rule(configuration: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    """AI route rule index -> the mirror policies on its xDS routes (every match of a rule the same)."""
    prefix = f"httproute/{NAMESPACE}/{NAMES.route}/rule/"
    found: dict[int, list[dict[str, Any]]] = {}
    for xds_route in configuration["virtual_hosts"][0]["routes"]:
        if xds_route["name"].startswith(prefix):
            index = int(xds_route["name"][len(prefix) :].split("/")[0])
            found.setdefault(index, xds_route["route"].get("request_mirror_policies", []))
    return found


# --- tests ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> GatewayRender:
    recorder, _ = render(shadowed())
    return recorder


def test_shadow_objects_validate_against_the_pinned_crds(rendered: GatewayRender) -> None:
    for kind in ("HTTPRouteFilter", "HTTPRoute", "EnvoyPatchPolicy", "ClientTrafficPolicy", "AIGatewayRoute"):
        for manifest in manifests(rendered, kind):
            assert validate_manifest(manifest) == []
    policy = only(rendered, "EnvoyPatchPolicy", f"{NAME}-shadow")
    assert policy["spec"]["targetRef"] == {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": NAME}


def test_mirror_policies_land_on_the_shadowed_models_real_traffic_only(rendered: GatewayRender) -> None:
    ai_rules = only(rendered, "AIGatewayRoute", NAMES.route)["spec"]["rules"]
    configurations = patched_configurations(rendered)
    assert len(configurations) == 2  # one per HTTPS listener (hostname and region hostname)
    for configuration in configurations:
        parsed(configuration)
        mirrors = mirrors_by_rule(configuration)
        for index, rule in enumerate(ai_rules):
            headers = {h["name"]: h["value"] for h in rule["matches"][0]["headers"]}
            real_chat = headers.get(MODEL_HEADER) == "chat" and REVISION_HEADER not in headers
            assert bool(mirrors[index]) == real_chat, rule["name"]
        weighted = next(i for i, r in enumerate(ai_rules) if r["name"] == "chat")
        [mirror] = mirrors[weighted]
        assert mirror["runtime_fraction"] == {"default_value": {"numerator": 10, "denominator": "HUNDRED"}}
        assert not mirrors[len(ai_rules)]  # the AI Gateway's route-not-found rule


def test_the_mirror_goes_to_the_new_revisions_backend_with_the_engines_key(rendered: GatewayRender) -> None:
    shadow_route = only(rendered, "HTTPRoute", f"{NAME}-shadow")
    [configuration, _] = patched_configurations(rendered)
    weighted = next(
        i for i, r in enumerate(only(rendered, "AIGatewayRoute", NAMES.route)["spec"]["rules"]) if r["name"] == "chat"
    )
    [mirror] = mirrors_by_rule(configuration)[weighted]
    # The cluster Envoy Gateway builds for the shadow route's rule that holds the new revision's Backend.
    shadow_clusters = {
        r["route"]["cluster"]
        for r in configuration["virtual_hosts"][0]["routes"]
        if r["name"].startswith(f"httproute/{NAMESPACE}/{NAME}-shadow/")
    }
    assert shadow_clusters == {mirror["cluster"]}
    [rule] = shadow_route["spec"]["rules"]
    [backend] = rule["backendRefs"]
    assert (backend["kind"], backend["name"]) == ("Backend", NAMES.backend("chat", "b2"))
    assert only(rendered, "Backend", NAMES.backend("chat", "b2"))["spec"]["endpoints"][0]["fqdn"][
        "hostname"
    ].startswith("chat-vllm-b2.")
    [extension] = backend["filters"]
    credential = only(rendered, "HTTPRouteFilter", extension["extensionRef"]["name"])["spec"]["credentialInjection"]
    assert credential["credential"]["valueRef"]["name"] == KEY_SECRET
    assert credential["overwrite"] is True


def test_no_client_request_reaches_the_shadow_route(rendered: GatewayRender) -> None:
    shadow_route = only(rendered, "HTTPRoute", f"{NAME}-shadow")
    for rule in shadow_route["spec"]["rules"]:
        for match in rule["matches"]:
            assert SHADOW_HEADER in {h["name"] for h in match["headers"]}
    client_policy = only(rendered, "ClientTrafficPolicy", NAME)
    assert SHADOW_HEADER in client_policy["spec"]["headers"]["earlyRequestHeaders"]["remove"]


def test_without_a_shadow_share_nothing_is_mirrored() -> None:
    models = [ModelBackend("chat", "chat-vllm", canary=CanaryBackend("b2", "chat-vllm-b2", 30), revision="a1")]
    recorder, _ = render(full_args(models=models, engine_key_secret=KEY_SECRET))
    for kind in ("EnvoyPatchPolicy", "HTTPRouteFilter"):
        assert manifests(recorder, kind) == []
    assert [m["metadata"]["name"] for m in manifests(recorder, "HTTPRoute") if "shadow" in m["metadata"]["name"]] == []


def test_priority_rules_are_mirrored_too() -> None:
    recorder, _ = render(shadowed(priority=PriorityRouting({"chat": "gpt-4o"})))
    ai_rules = only(recorder, "AIGatewayRoute", NAMES.route)["spec"]["rules"]
    mirrors = mirrors_by_rule(patched_configurations(recorder)[0])
    mirrored = sorted(ai_rules[i]["name"] for i, m in mirrors.items() if m)
    assert mirrored == ["chat", "chat-cost", "chat-quality"]


def test_plain_http_listeners_share_one_route_configuration() -> None:
    shadows = [Shadow("chat", "b2", 25)]
    rules = [{"name": "chat", "matches": [{"headers": [{"type": "Exact", "name": MODEL_HEADER, "value": "chat"}]}]}]
    spec = patch_policy_spec(NAMESPACE, NAMES, ["http", "http-1"], False, rules, shadows, credential=False)
    assert {p["name"] for p in spec["jsonPatches"]} == {f"{NAMESPACE}/{NAME}/http"}
    # Without the engines' key the shadow backend has no filter, so Envoy Gateway keeps the rule's own cluster.
    assert spec["jsonPatches"][0]["operation"]["value"][0]["cluster"] == f"httproute/{NAMESPACE}/{NAME}-shadow/rule/0"
    plain = shadowed(tls=Tls(secret_name=None), hostname=None, region_hostname=None, engine_key_secret=None)
    recorder, _ = render(plain)
    assert manifests(recorder, "HTTPRouteFilter") == []
    assert validate_manifest(only(recorder, "EnvoyPatchPolicy", f"{NAME}-shadow")) == []


def test_bad_shadow_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="before the canary steps"):
        CanaryBackend("b2", "chat-vllm-b2", 5, shadow=10)
    with pytest.raises(ValueError, match="not a percentage"):
        CanaryBackend("b2", "chat-vllm-b2", 0, shadow=101)
    with pytest.raises(ValueError, match="GPU mix cannot be shadowed"):
        CanaryBackend("b2", "chat-vllm-b2", 0, split=(SplitBackend("l4", "chat-vllm-b2-l4", 60),), shadow=10)
    with pytest.raises(ValueError, match="not a percentage"):
        Shadow("chat", "b2", 0)
    with pytest.raises(ValueError, match="DNS-label"):
        patch_policy_spec("Bad.NS", NAMES, ["https"], True, [], [Shadow("chat", "b2", 5)])
