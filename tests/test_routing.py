"""Prefix- and load-aware routing: InferencePools, the endpoint picker's chart values, and the model route.

Checked against the real things at the pinned versions: the AIGatewayRoute CRD (schema and CEL rules)
that says how a rule names a pool, the InferencePool CRD, and the inferencepool chart v1.5.0 itself
(its values, its default picker configuration and its pool template, vendored in tests/data).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.cel import RuleCheck, check_rules, crd_schemas
from support.gateway import full_args, render
from support.stacks import ShippedRun

from llmfleet.components import pins
from llmfleet.components.gateway import CanaryBackend, ModelBackend
from llmfleet.components.gateway.install import envoy_gateway_values
from llmfleet.components.gateway.routes import Names, route_spec
from llmfleet.components.routing.picker import (
    EXT_PROC_PORT,
    ScorerWeights,
    chart_values,
    picker_name,
    plugins_config,
)
from llmfleet.infra.config import ConfigError, load_stack, parse_deployment, stack_path
from llmfleet.infra.program.args import routing_in
from llmfleet.infra.render.offline import OfflineRun
from llmfleet.infra.render.validate import validate_manifest

CHART = Path(__file__).parent / "data" / "inferencepool-v1.5.0"
POOL = {"group": "inference.networking.k8s.io", "kind": "InferencePool"}


def _leaf_paths(node: Any, prefix: str = "") -> set[str]:
    if isinstance(node, dict) and node:
        return {p for key, child in node.items() for p in _leaf_paths(child, f"{prefix}.{key}" if prefix else key)}
    return {prefix}


def _key_paths(node: Any, prefix: str = "") -> set[str]:
    paths: set[str] = {prefix} if prefix else set()
    if isinstance(node, dict):
        for key, child in node.items():
            paths |= _key_paths(child, f"{prefix}.{key}" if prefix else key)
    return paths


def _chart_reads() -> tuple[set[str], str]:
    """Keys of the chart's values files, and the text of the templates (which read more keys)."""
    keys = _key_paths(yaml.safe_load((CHART / "inferencepool-values.yaml").read_text()))
    keys |= {f"inferenceExtension.{k}" for k in _key_paths(yaml.safe_load((CHART / "epplib-values.yaml").read_text()))}
    templates = (CHART / "epplib-_config.yaml").read_text() + (CHART / "inferencepool-template.yaml").read_text()
    return keys, templates


def values() -> dict[str, Any]:
    return chart_values(
        pod_labels={"app.kubernetes.io/instance": "chat", "app.kubernetes.io/component": "inference"},
        port=8000,
        weights=ScorerWeights(),
    )


def test_every_value_is_one_the_pinned_chart_reads() -> None:
    """Helm ignores unknown keys silently: each leaf must be in the chart's values or read by its templates."""
    assert pins.chart("inferencepool").version == "v1.5.0", "re-vendor tests/data for another chart version"
    keys, templates = _chart_reads()
    # Free-form maps the templates read whole (toYaml / range): the pod labels, the plugin files, resources.
    free_form = (
        "inferencePool.modelServers.matchLabels.",
        "inferenceExtension.pluginsCustomConfig.",
        "inferenceExtension.resources.",
    )
    for path in _leaf_paths(values()):
        known = path in keys or f".Values.{path}" in templates or path.startswith(free_form)
        assert known, f"{path}: not a value of the inferencepool chart v1.5.0"
    assert "inferenceExtension.resources" in keys
    assert "inferencePool.modelServers.matchLabels" in templates
    assert ".Values.inferenceExtension.pluginsCustomConfig" in templates


def _upstream_default_profile() -> dict[str, int]:
    """pluginRef -> weight of the chart's default scheduling profile (without the latency predictor)."""
    text = (CHART / "epplib-_config.yaml").read_text()
    default = text.split("{{- else }}", 2)[-1].split("{{- end }}")[0]
    return {m[0]: int(m[1]) for m in re.findall(r"pluginRef: ([\w-]+)\s+weight: (\d+)", default)}


def test_default_scorers_and_weights_are_the_charts_own() -> None:
    upstream = _upstream_default_profile()
    assert upstream == {"queue-scorer": 2, "kv-cache-utilization-scorer": 2, "prefix-cache-scorer": 3}
    assert ScorerWeights().by_plugin() == upstream
    config = plugins_config(ScorerWeights())
    text = (CHART / "epplib-_config.yaml").read_text()
    for plugin in config["plugins"]:
        assert f"- type: {plugin['type']}" in text, f"{plugin['type']}: not a plugin of the chart's default config"
    assert config["apiVersion"] in text and config["kind"] in text


def test_weights_are_typed_and_a_zero_weight_drops_its_scorer() -> None:
    config = plugins_config(ScorerWeights(prefix_cache=5, queue=1, kv_cache_utilization=0))
    profile = config["schedulingProfiles"][0]["plugins"]
    assert profile == [{"pluginRef": "prefix-cache-scorer", "weight": 5}, {"pluginRef": "queue-scorer", "weight": 1}]
    assert "kv-cache-utilization-scorer" not in {p["type"] for p in config["plugins"]}
    with pytest.raises(ValueError, match="not all 0"):
        ScorerWeights(0, 0, 0)
    with pytest.raises(ValueError, match=">= 0"):
        ScorerWeights(prefix_cache=-1)


def chart_pool(release: str, namespace: str, chart_values_: dict[str, Any]) -> dict[str, Any]:
    """The InferencePool the chart's templates/inferencepool.yaml renders from these values (http model
    servers; `endpointPickerRef` from the epplib defaults: Service `<release>-epp`, port 9002, FailOpen)."""
    pool = chart_values_["inferencePool"]
    return {
        "apiVersion": "inference.networking.k8s.io/v1",
        "kind": "InferencePool",
        "metadata": {"name": release, "namespace": namespace},
        "spec": {
            "targetPorts": [{"number": p["number"]} for p in pool["targetPorts"]],
            "appProtocol": "http",
            "selector": {"matchLabels": dict(pool["modelServers"]["matchLabels"])},
            "endpointPickerRef": {
                "name": picker_name(release),
                "port": {"number": EXT_PROC_PORT},
                "failureMode": "FailOpen",
            },
        },
    }


def test_the_pool_the_chart_creates_from_our_values_is_valid() -> None:
    template = (CHART / "inferencepool-template.yaml").read_text()
    for field in ("targetPorts:", "appProtocol:", "matchLabels:", "endpointPickerRef:", "failureMode:"):
        assert field in template, f"the chart's pool template has no {field}"
    pool = chart_pool("chat", "llmfleet", values())
    assert validate_manifest(pool) == []
    # v1.5.0's CRD (what the chart's release installs) also requires endpointPickerRef; the vendored v1.6.0 one not.
    assert "endpointPickerRef" in pool["spec"]
    broken = chart_pool("chat", "llmfleet", values())
    broken["spec"]["targetPorts"] = []
    assert validate_manifest(broken) != [], "the validation can fail"


def _rule(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in spec["rules"] if r["name"] == name)


def test_a_pooled_model_s_rule_names_its_pool_alone_and_keeps_the_crds_rules() -> None:
    names = Names("gw")
    models = [ModelBackend("chat", "chat", pool="chat"), ModelBackend("code", "code")]
    spec = route_spec(names, ["https"], models, 600)
    assert _rule(spec, "chat")["backendRefs"] == [{**POOL, "name": "chat"}]
    assert _rule(spec, "code")["backendRefs"] == [{"name": "gw-code", "priority": 0}]
    schema = crd_schemas()[("aigateway.envoyproxy.io/v1beta1", "AIGatewayRoute")]
    check = RuleCheck()
    check.walk(schema, {"apiVersion": "aigateway.envoyproxy.io/v1beta1", "kind": "AIGatewayRoute", "spec": spec}, "r")
    assert check.broken == [] and check.evaluated > 5
    # The rule the CRD forbids (a pool beside a Service backend) is caught by the same check.
    mixed = {**spec, "rules": [{**spec["rules"][0], "backendRefs": [{**POOL, "name": "chat"}, {"name": "gw-x"}]}]}
    check = RuleCheck()
    check.walk(schema, {"apiVersion": "aigateway.envoyproxy.io/v1beta1", "kind": "AIGatewayRoute", "spec": mixed}, "r")
    assert "r.spec.rules[0]: cannot mix InferencePool and AIServiceBackend references in the same rule" in check.broken


def test_a_canary_keeps_exact_weights_on_the_services_and_pins_each_revision_to_its_pool() -> None:
    names = Names("gw")
    canary = CanaryBackend("b2", "chat-b2", 25, pool="chat-b2")
    spec = route_spec(
        names, ["https"], [ModelBackend("chat", "chat-a1", canary=canary, revision="a1", pool="chat-a1")], 600
    )
    weighted = _rule(spec, "chat")["backendRefs"]
    assert [(r["name"], r["weight"]) for r in weighted] == [("gw-chat", 75), ("gw-chat-b2", 25)]
    assert _rule(spec, "chat-a1")["backendRefs"] == [{**POOL, "name": "chat-a1"}]
    assert _rule(spec, "chat-b2")["backendRefs"] == [{**POOL, "name": "chat-b2"}]
    check = RuleCheck()
    schema = crd_schemas()[("aigateway.envoyproxy.io/v1beta1", "AIGatewayRoute")]
    check.walk(schema, {"apiVersion": "aigateway.envoyproxy.io/v1beta1", "kind": "AIGatewayRoute", "spec": spec}, "r")
    assert check.broken == []


def test_a_pool_and_the_hosted_fallback_cannot_share_a_rule() -> None:
    with pytest.raises(ValueError, match="cannot also fall back"):
        route_spec(Names("gw"), ["https"], [ModelBackend("chat", "chat", pool="chat")], 600, {"chat": "gpt-4o-mini"})


def test_the_gateway_with_pools_installs_the_pinned_crds_and_lets_envoy_gateway_resolve_pools() -> None:
    values_ = envoy_gateway_values(inference_pools=True)
    manager = values_["config"]["envoyGateway"]["extensionManager"]
    assert manager["backendResources"] == [{**POOL, "version": "v1"}]
    assert "backendResources" not in envoy_gateway_values()["config"]["envoyGateway"]["extensionManager"]


def test_every_gateway_object_keeps_the_crds_cel_rules_with_a_pool() -> None:
    models = [ModelBackend("chat", "chat-vllm", pool="chat"), ModelBackend("code", "code-vllm")]
    recorder, _ = render(full_args(models=models, fallback=None))
    check = check_rules(recorder)
    assert check.broken == [] and check.evaluated >= 10
    crds = [r for r in recorder.resources if r.type == "kubernetes:yaml/v2:ConfigFile"]
    assert [r.inputs["file"] for r in crds] == [pins.chart("inferencepool").source.url]


@pytest.fixture(scope="module")
def dev(shipped_run: ShippedRun) -> OfflineRun:
    return shipped_run("dev")


def test_the_dev_stack_routes_its_vllm_model_through_a_pool(dev: OfflineRun) -> None:
    releases = {release["name"]: (resource, release) for resource, release in dev.helm_releases(redacted=False)}
    resource, release = releases["chat"]
    row = pins.chart("inferencepool")
    assert (f"{release['repository']}/{release['chart']}", release["version"]) == (row.name, row.version)
    deployment = next(
        m for _, m in dev.kubernetes_objects() if m["kind"] == "Deployment" and m["metadata"]["name"] == "chat"
    )
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selected = release["values"]["inferencePool"]["modelServers"]["matchLabels"]
    assert selected.items() <= pod_labels.items()
    assert validate_manifest(chart_pool("chat", release["namespace"], release["values"])) == []
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--enable-prefix-caching" in args and "--enable-prompt-tokens-details" in args
    route = next(m for _, m in dev.kubernetes_objects() if m["kind"] == "AIGatewayRoute")
    assert _rule(route["spec"], "chat")["backendRefs"] == [{**POOL, "name": "chat"}]
    # The picker reads the pods' /metrics on the model port: a policy admits exactly its pods there.
    policy = next(m for _, m in dev.kubernetes_objects() if m["metadata"]["name"] == "chat-picker-scrape")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    peer = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert peer == {"inferencepool": "chat-epp"} and policy["spec"]["ingress"][0]["ports"][0]["port"] == 8000
    assert resource.parent is not None and "llmfleet:routing:InferencePool" in resource.parent
    # vLLM requires the engines' key on /v1: requests through the pool get it from the same policy.
    credentials = next(
        m
        for _, m in dev.kubernetes_objects()
        if m["kind"] == "BackendSecurityPolicy"
        and m["spec"].get("type") == "APIKey"
        and "engine" in m["metadata"]["name"]
    )
    assert {**POOL, "name": "chat"} in credentials["spec"]["targetRefs"]


def _deployment(**model: Any) -> dict[str, Any]:
    document = yaml.safe_load(stack_path("dev").read_text())
    spec = document["config"]["llmfleet:deployment"]
    spec["models"][0] = {**spec["models"][0], **model}
    return spec


def test_routing_defaults_and_refusals_name_their_fields() -> None:
    _, spec = load_stack("dev")
    region = spec.regions[0]
    assert set(routing_in(spec, region)) == {"chat"}, "vLLM: on by default"
    off = parse_deployment(_deployment(routing={"prefix_aware": False}), "t")
    assert routing_in(off, off.regions[0]) == {}
    elsewhere = parse_deployment(_deployment(routing={"regions": ["aws-us-east-1"]}), "t")
    assert set(routing_in(elsewhere, elsewhere.regions[0])) == {"chat"}
    with pytest.raises(ConfigError, match=r"models\[0\]\.routing\.regions: unknown region keys \['gcp-x'\]"):
        parse_deployment(_deployment(routing={"regions": ["gcp-x"]}), "t")
    with pytest.raises(ConfigError, match=r"models\[0\]\.routing\.prefix_aware: llama\.cpp"):
        parse_deployment(_deployment(quantization="q4_k_m", routing={"prefix_aware": True}), "t")
    weights = parse_deployment(_deployment(routing={"scorers": {"prefix_cache": 5, "kv_cache_utilization": 0}}), "t")
    options = routing_in(weights, weights.regions[0])["chat"]
    assert options.weights.by_plugin() == {"prefix-cache-scorer": 5, "queue-scorer": 2}
    with pytest.raises(ConfigError, match="scorers"):
        parse_deployment(
            _deployment(routing={"scorers": {"prefix_cache": 0, "queue": 0, "kv_cache_utilization": 0}}), "t"
        )


def test_a_fallback_model_keeps_its_service_route_and_asking_for_both_is_refused() -> None:
    _, prod = load_stack("prod")
    fallback = set(prod.gateway.fallback.models) if prod.gateway.fallback else set()
    assert fallback, "prod has a hosted fallback"
    for region in prod.regions:
        assert not fallback & set(routing_in(prod, region))
    spec = _deployment(routing={"prefix_aware": True})
    spec["gateway"]["fallback"] = {
        "provider": "openai",
        "api_key_secret": "openaiKey",
        "models": {"chat": "gpt-4o-mini"},
    }
    with pytest.raises(ConfigError, match=r"models\[0\]\.routing\.prefix_aware: this model is in gateway\.fallback"):
        parse_deployment(spec, "t")
    # `quality` priority routing puts the hosted model first in the model's rules: the same refusal, and by
    # default such a model keeps its Service route.
    spec["models"].append({**spec["models"][0], "name": "chat2", "routing": {}})
    spec["gateway"]["fallback"]["models"] = {"chat2": "gpt-4o-mini"}
    spec["gateway"]["priority"] = {"quality_models": {"chat": "gpt-5"}}
    with pytest.raises(ConfigError, match=r"gateway\.priority\.quality_models"):
        parse_deployment(spec, "t")
    spec["models"][0]["routing"] = {}
    quality = parse_deployment(spec, "t")
    assert routing_in(quality, quality.regions[0]) == {}


def test_the_local_llama_cpp_stack_has_no_pool(shipped_run: ShippedRun) -> None:
    local = shipped_run("local")
    assert not [r for _, r in local.helm_releases() if r["chart"] == "inferencepool"]
    assert not [r for r in local.resources if r.type == "kubernetes:yaml/v2:ConfigFile"]


def test_the_rollout_gate_can_run_the_shared_prefix_workload(tmp_path: Path) -> None:
    from llmfleet.infra.commands.rollout import make_gate

    spec = _deployment()
    spec["rollout"] = {"shared_prefix": {"groups": 16, "prefix_tokens": 2048, "turns": 4}}
    gate = make_gate(parse_deployment(spec, "t"), "steady", {}, tmp_path)
    args = [str(a) for a in gate.locust_args]
    assert args[:2] == ["--llm-prefix-groups", "16"]
    # The suite's own parser takes them (in a child process: importing Locust here would monkey-patch pytest).
    probe = (
        "import sys, warnings; warnings.simplefilter('ignore'); import llmfleet.loadtests.user; "
        "from locust.argument_parser import parse_options; o = parse_options(sys.argv[1:]); "
        "print(o.llm_prefix_groups, o.llm_prefix_tokens, o.llm_turns, o.llm_prompt_tokens)"
    )
    suite = str(Path(__file__).parent.parent / "loadtests" / "suites" / "steady.py")
    done = subprocess.run(
        [sys.executable, "-c", probe, "-f", suite, *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.split()[-4:] == ["16", "2048", "4", "64"], done.stdout + done.stderr[-2000:]
    assert list(make_gate(load_stack("dev")[1], "steady", {}, tmp_path).locust_args) == []
    with pytest.raises(ConfigError, match=r"rollout\.shared_prefix\.groups"):
        parse_deployment({**spec, "rollout": {"shared_prefix": {"groups": 0}}}, "t")
