"""Hybrid routing by `x-llmfleet-priority`: the model route's rules, rendered, validated and matched.

Which rule a request takes is decided by Envoy from the route; here `select` applies the Gateway API's
match precedence as the HTTPRoute CRD states it (largest number of header matches, then the first
matching rule in list order) to the rendered AIGatewayRoute, so the tests show which backends each
priority reaches, in which order. No live Envoy runs here.
"""

from __future__ import annotations

from typing import Any

import pytest
from support.cel import check_rules
from support.gateway import NAME, full_args, render
from support.gateway import manifest as to_route
from support.routes import ask, backends, select
from support.stacks import StackWriter

from llmfleet.components.gateway import CanaryBackend, ModelBackend, PriorityRouting
from llmfleet.components.gateway.types import MODEL_HEADER, PRIORITY_HEADER, REVISION_HEADER
from llmfleet.infra.config import ConfigError, load_stack
from llmfleet.infra.render.offline import run_program
from llmfleet.infra.render.validate import validate_manifest

FALLBACK = f"{NAME}-fallback"
QUALITY = {"chat": "gpt-4o", "code": "gpt-4.1"}


def route(**changes: Any) -> dict[str, Any]:
    recorder, _ = render(full_args(priority=PriorityRouting(QUALITY), **changes))
    [resource] = recorder.kind("AIGatewayRoute")
    manifest = to_route(resource)
    assert validate_manifest(manifest) == []
    assert check_rules(recorder).broken == []
    return manifest


def test_each_priority_picks_its_backends() -> None:
    manifest = route()
    own_chat, own_code = (0, f"{NAME}-chat", None), (0, f"{NAME}-code", None)
    # chat has a cheap hosted fallback (gpt-4o-mini) and a frontier model for quality.
    assert ask(manifest, "chat", "cost") == [own_chat]
    assert ask(manifest, "chat", "quality") == [(0, FALLBACK, "gpt-4o"), (1, f"{NAME}-chat", None)]
    balanced = [own_chat, (1, FALLBACK, "gpt-4o-mini")]
    assert ask(manifest, "chat", "balanced") == balanced
    assert ask(manifest, "chat") == balanced
    assert ask(manifest, "chat", "fastest") == balanced
    # code has no cheap fallback: cost and balanced stay on its servers, quality goes out first.
    assert ask(manifest, "code", "cost") == [own_code]
    assert ask(manifest, "code") == [own_code]
    assert ask(manifest, "code", "quality") == [(0, FALLBACK, "gpt-4.1"), (1, f"{NAME}-code", None)]


def test_priority_rules_keep_the_timeout_and_the_route_keeps_one_traffic_policy() -> None:
    manifest = route()
    timeouts = {rule["name"]: rule["timeouts"] for rule in manifest["spec"]["rules"]}
    assert len(set(map(str, timeouts.values()))) == 1
    assert sorted(timeouts) == ["chat", "chat-cost", "chat-quality", "code", "code-quality"]


def test_a_revision_pin_beats_a_priority_and_cost_keeps_the_canary_split() -> None:
    models = [ModelBackend("chat", "chat-vllm", canary=CanaryBackend("r2", "chat-r2", 10), revision="r1")]
    manifest = route(models=models)
    pinned = ask(manifest, "chat", "quality", **{REVISION_HEADER: "r2"})
    assert pinned == [(0, f"{NAME}-chat-r2", None)]
    cost = select(manifest, {MODEL_HEADER: "chat", PRIORITY_HEADER: "cost"})
    assert sorted((r["name"], r["weight"]) for r in cost["backendRefs"]) == [
        (f"{NAME}-chat", 90),
        (f"{NAME}-chat-r2", 10),
    ]
    quality = backends(select(manifest, {MODEL_HEADER: "chat", PRIORITY_HEADER: "quality"}))
    assert quality[0] == (0, FALLBACK, "gpt-4o") and {b[0] for b in quality[1:]} == {1}


def test_without_priority_routing_the_header_changes_nothing() -> None:
    recorder, _ = render(full_args())
    [resource] = recorder.kind("AIGatewayRoute")
    manifest = to_route(resource)
    assert (
        ask(manifest, "chat", "quality")
        == ask(manifest, "chat")
        == [(0, f"{NAME}-chat", None), (1, FALLBACK, "gpt-4o-mini")]
    )


def test_too_many_rules_are_refused_with_what_to_change() -> None:
    many = [ModelBackend(f"m{i}", f"m{i}-vllm") for i in range(6)]
    fallback = full_args().fallback
    assert fallback is not None
    with pytest.raises(Exception, match="rules with priority routing"):
        render(
            full_args(
                models=many,
                fallback=type(fallback)(fallback.provider, "sk", {m.model: "gpt-4o-mini" for m in many}),
                priority=PriorityRouting({m.model: "gpt-4o" for m in many}),
            )
        )


def gateway_stack(**gateway: Any) -> dict[str, Any]:
    return {
        "models": [{"name": "chat", "model": "qwen2.5-7b", "load": {"concurrent_sequences": 8}}],
        "regions": [{"cloud": "aws", "region": "us-east-1", "role": "primary"}],
        "api_access_cidrs": ["203.0.113.0/24"],
        "gateway": {"tenants": [{"name": "a", "api_key_secret": "keyA"}], **gateway},
    }


def test_the_stack_option_reaches_the_route_and_bad_ones_name_the_field(write_stack: StackWriter) -> None:
    fallback = {"provider": "openai", "api_key_secret": "openaiKey", "models": {"chat": "gpt-4o-mini"}}
    path = write_stack(
        gateway_stack(fallback=fallback, priority={"quality_models": {"chat": "gpt-4o"}}), keyA="k", openaiKey="o"
    )
    [manifest] = [m for _, m in run_program(stack_file=path).kubernetes_objects() if m["kind"] == "AIGatewayRoute"]
    assert ask(manifest, "chat", "quality")[0][2] == "gpt-4o" and len(ask(manifest, "chat", "cost")) == 1
    with pytest.raises(ConfigError, match=r"gateway.priority: needs gateway.fallback"):
        load_stack(stack_file=write_stack(gateway_stack(priority={"quality_models": {"chat": "gpt-4o"}}), name="b1"))
    with pytest.raises(ConfigError, match=r"gateway.priority.quality_models: unknown served names \['nope'\]"):
        load_stack(
            stack_file=write_stack(
                gateway_stack(fallback=fallback, priority={"quality_models": {"nope": "gpt-4o"}}), name="b2"
            )
        )


def test_the_plan_says_what_hybrid_routing_sends_to_the_hosted_provider(write_stack: StackWriter) -> None:
    from typer.testing import CliRunner

    from llmfleet.infra.cli import app

    fallback = {"provider": "openai", "api_key_secret": "openaiKey", "models": {"chat": "gpt-4o-mini"}}
    path = write_stack(
        gateway_stack(fallback=fallback, priority={"quality_models": {"chat": "gpt-4o"}}),
        name="plan",
        keyA="k",
        openaiKey="o",
    )
    result = CliRunner().invoke(app, ["plan", "--stack-file", str(path)])
    assert result.exit_code == 0, result.output
    line = " ".join(result.output.split())
    assert "`quality` requests go to openai first (chat -> gpt-4o)" in line and "not priced" in line


def test_a_pooled_model_cannot_take_quality_requests() -> None:
    """A rule holds an InferencePool alone (AIGatewayRoute CRD), so the hosted model cannot stand beside it."""
    models = [ModelBackend("chat", "chat-vllm", pool="chat-pool"), ModelBackend("code", "code-vllm")]
    fallback = full_args().fallback
    assert fallback is not None
    with pytest.raises(Exception, match=r"models \['chat'\] are served through an InferencePool"):
        route(models=models, fallback=type(fallback)(fallback.provider, "sk", {"code": "gpt-4o-mini"}))
