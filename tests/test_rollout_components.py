"""The component inputs a rollout drives: a second InferenceService revision and the gateway's weights.

Under Pulumi's mocks: the canary revision's objects get their own names beside the first revision's,
and the AIGatewayRoute splits the model's requests by weight between the two Backends; every object
still validates against its schema (CRDs for the gateway kinds).
"""

from __future__ import annotations

from typing import Any

import pytest
from support.gateway import MODELS, NAME, NAMESPACE, manifest, render
from support.inference import make_plan, serve

from llmfleet.components.gateway import CanaryBackend, GatewayArgs, ModelBackend
from llmfleet.components.gateway.routes import Names, route_spec
from llmfleet.infra.render.validate import validate_manifest


def test_a_revision_runs_beside_the_first_under_its_own_names() -> None:
    plan = make_plan()
    first = serve(plan)
    canary = serve(plan, revision="bbbb0002")
    assert "Deployment/chat" in first and "Service/chat" in first
    assert {k.split("/")[0] for k in canary} == {k.split("/")[0] for k in first}, "the same kinds of object"
    assert not set(first) & set(canary), f"names collide: {set(first) & set(canary)}"
    deployment = canary["Deployment/chat-bbbb0002"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["llmfleet.dev/revision"] == "bbbb0002" and labels["llmfleet.dev/model"] == "chat"
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector["app.kubernetes.io/instance"] == "chat-bbbb0002", "each revision selects only its own pods"
    assert canary["Service/chat-bbbb0002"]["spec"]["selector"] == selector


def route_rules(models: list[ModelBackend]) -> list[dict[str, Any]]:
    recorder, _ = render(GatewayArgs(namespace=NAMESPACE, models=models, allow_anonymous=True))
    route = recorder.one("AIGatewayRoute")
    assert validate_manifest(manifest(route)) == []
    return route.inputs["spec"]["rules"]


def route_refs(models: list[ModelBackend]) -> dict[str, list[dict[str, object]]]:
    return {rule["name"]: rule["backendRefs"] for rule in route_rules(models)}


def test_the_route_splits_a_model_between_two_revisions_by_weight() -> None:
    chat = ModelBackend("chat", "chat", canary=CanaryBackend("bbbb0002", "chat-bbbb0002", weight=25))
    refs = route_refs([chat, MODELS[1]])
    assert refs["chat"] == [
        {"name": f"{NAME}-chat", "priority": 0, "weight": 75},
        {"name": f"{NAME}-chat-bbbb0002", "priority": 0, "weight": 25},
    ]
    assert refs["code"] == [{"name": f"{NAME}-code", "priority": 0}], "a model without canary is untouched"


def test_the_canary_gets_its_own_backend_to_its_service() -> None:
    chat = ModelBackend("chat", "chat", canary=CanaryBackend("bbbb0002", "chat-bbbb0002", weight=0))
    recorder, _ = render(GatewayArgs(namespace=NAMESPACE, models=[chat], allow_anonymous=True))
    backends = {r.inputs["metadata"]["name"]: r for r in recorder.by_kind("Backend")}
    canary = backends[f"{NAME}-chat-bbbb0002"]
    endpoint = canary.inputs["spec"]["endpoints"][0]["fqdn"]
    assert endpoint == {"hostname": f"chat-bbbb0002.{NAMESPACE}.svc.cluster.local", "port": 8000}
    ai_backends = {r.inputs["metadata"]["name"]: r for r in recorder.by_kind("AIServiceBackend")}
    assert ai_backends[f"{NAME}-chat-bbbb0002"].inputs["spec"]["backendRef"]["name"] == f"{NAME}-chat-bbbb0002"
    for resource in [canary, ai_backends[f"{NAME}-chat-bbbb0002"]]:
        assert validate_manifest(manifest(resource)) == []


@pytest.mark.parametrize("weight", [-1, 101])
def test_a_weight_outside_0_to_100_is_refused(weight: int) -> None:
    with pytest.raises(ValueError, match="not a percentage"):
        CanaryBackend("bbbb0002", "chat-bbbb0002", weight=weight)


def test_a_revision_header_pins_a_request_to_that_revision_while_the_rest_follow_the_weights() -> None:
    chat = ModelBackend(
        "chat", "chat", canary=CanaryBackend("bbbb0002", "chat-bbbb0002", weight=5), revision="aaaa0001"
    )
    rules = {rule["name"]: rule for rule in route_rules([chat, MODELS[1]])}
    assert list(rules) == ["chat", "chat-aaaa0001", "chat-bbbb0002", "code"], "a pinned rule per revision"
    for revision, backend in [("aaaa0001", f"{NAME}-chat"), ("bbbb0002", f"{NAME}-chat-bbbb0002")]:
        rule = rules[f"chat-{revision}"]
        assert rule["backendRefs"] == [{"name": backend, "priority": 0}], rule
        assert rule["matches"] == [
            {
                "headers": [
                    {"type": "Exact", "name": "x-ai-eg-model", "value": "chat"},
                    {"type": "Exact", "name": "x-llmfleet-revision", "value": revision},
                ]
            }
        ]
    assert [r["weight"] for r in rules["chat"]["backendRefs"]] == [95, 5], "unpinned requests keep the weights"
    assert "chat-aaaa0001" not in {r["name"] for r in route_rules([ModelBackend("chat", "chat", revision="aaaa0001")])}


def test_more_rules_than_the_crd_allows_are_refused() -> None:
    canary = CanaryBackend("bbbb0002", "m-bbbb0002", weight=5)
    models = [ModelBackend(f"m{i}", f"m{i}", canary=canary, revision="aaaa0001") for i in range(6)]
    with pytest.raises(ValueError, match=r"1 to 15 rules.*got 18 for 6 models"):
        route_spec(Names(NAME), ["https"], models, 600)
