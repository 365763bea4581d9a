"""validate_manifest: core kinds via kubernetes-validate (strict), custom resources via the vendored CRDs."""

import copy
from typing import Any

import pytest

from llmfleet.infra.render.validate import CRD_DIR, known_custom_kinds, validate_manifest

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "chat", "namespace": "llmfleet"},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "chat"}},
        "template": {
            "metadata": {"labels": {"app": "chat"}},
            "spec": {
                "containers": [
                    {
                        "name": "vllm",
                        "image": "vllm/vllm-openai:v0.10.1",
                        "ports": [{"containerPort": 8000, "name": "http"}],
                        "resources": {"limits": {"nvidia.com/gpu": 1}},
                    }
                ],
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            },
        },
    },
}

SCALED_OBJECT: dict[str, Any] = {
    "apiVersion": "keda.sh/v1alpha1",
    "kind": "ScaledObject",
    "metadata": {"name": "chat", "namespace": "llmfleet"},
    "spec": {
        "scaleTargetRef": {"name": "chat"},
        "minReplicaCount": 1,
        "maxReplicaCount": 4,
        "triggers": [
            {
                "type": "prometheus",
                "metadata": {"serverAddress": "http://prometheus:9090", "query": "sum(vllm:num_requests_waiting)"},
            }
        ],
    },
}

AI_GATEWAY_ROUTE: dict[str, Any] = {
    "apiVersion": "aigateway.envoyproxy.io/v1alpha1",
    "kind": "AIGatewayRoute",
    "metadata": {"name": "chat", "namespace": "llmfleet"},
    "spec": {
        "parentRefs": [{"name": "llmfleet", "kind": "Gateway", "group": "gateway.networking.k8s.io"}],
        "rules": [
            {
                "matches": [{"headers": [{"type": "Exact", "name": "x-ai-eg-model", "value": "chat"}]}],
                "backendRefs": [{"name": "chat"}],
            }
        ],
    },
}


def changed(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of obj with `a.b.0.c` set to value."""
    result = copy.deepcopy(obj)
    node: Any = result
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    node[parts[-1]] = value
    return result


@pytest.mark.parametrize("good", [DEPLOYMENT, SCALED_OBJECT, AI_GATEWAY_ROUTE], ids=lambda o: o["kind"])
def test_valid_objects_pass(good: dict[str, Any]) -> None:
    assert validate_manifest(good) == []


def test_core_kind_misspelt_field_is_named() -> None:
    bad = changed(DEPLOYMENT, "spec.template.spec.containers.0.resourcs", {})
    (problem,) = validate_manifest(bad)
    assert problem.startswith("Deployment/chat: spec.template.spec.containers[0].resourcs: unknown field")
    assert "'resources'" in problem, "the message lists the allowed fields"


def test_core_kind_wrong_type_is_named() -> None:
    bad = changed(DEPLOYMENT, "spec.template.spec.containers.0.ports.0.containerPort", "8000")
    (problem,) = validate_manifest(bad)
    assert problem.startswith("Deployment/chat: spec.template.spec.containers[0].ports[0].containerPort: ")
    assert "'integer'" in problem


def test_int_or_string_accepts_both_in_core_kinds() -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "chat"},
        "spec": {"ports": [{"port": 8000, "targetPort": "http"}, {"port": 9000, "targetPort": 9000}]},
    }
    assert validate_manifest(service) == []
    assert validate_manifest(changed(service, "spec.ports.0.targetPort", 1.5)) != []


def test_scaled_object_misspelt_field_and_wrong_type() -> None:
    misspelt = changed(SCALED_OBJECT, "spec.triggers.0.metdata", {})
    assert [p.split(" (")[0] for p in validate_manifest(misspelt)] == [
        "ScaledObject/chat: spec.triggers[0].metdata: unknown field"
    ]
    wrong_type = changed(SCALED_OBJECT, "spec.minReplicaCount", "1")
    assert validate_manifest(wrong_type) == ["ScaledObject/chat: spec.minReplicaCount: '1' is not of type 'integer'"]


def test_scaled_object_missing_required_field() -> None:
    bad = copy.deepcopy(SCALED_OBJECT)
    del bad["spec"]["scaleTargetRef"]
    assert validate_manifest(bad) == ["ScaledObject/chat: spec: 'scaleTargetRef' is a required property"]


def test_ai_gateway_route_misspelt_field_and_wrong_type() -> None:
    misspelt = changed(AI_GATEWAY_ROUTE, "spec.rules.0.backendRef", [])
    assert validate_manifest(misspelt)[0].startswith("AIGatewayRoute/chat: spec.rules[0].backendRef: unknown field")
    wrong_type = changed(AI_GATEWAY_ROUTE, "spec.rules.0.backendRefs", {"name": "chat"})
    (problem,) = validate_manifest(wrong_type)
    assert problem.startswith("AIGatewayRoute/chat: spec.rules[0].backendRefs: ")
    assert "'array'" in problem


def test_crd_version_is_the_one_the_manifest_names() -> None:
    assert validate_manifest(changed(AI_GATEWAY_ROUTE, "apiVersion", "aigateway.envoyproxy.io/v1beta1")) == []
    (problem,) = validate_manifest(changed(AI_GATEWAY_ROUTE, "apiVersion", "aigateway.envoyproxy.io/v9"))
    assert problem.startswith(
        "AIGatewayRoute/chat: unknown kind AIGatewayRoute in apiVersion aigateway.envoyproxy.io/v9:"
    )


def test_preserve_unknown_fields_stays_open() -> None:
    # PrometheusRule's metadata is `type: object` with no properties: any labels/annotations pass.
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "slo", "labels": {"release": "kps"}},
        "spec": {"groups": [{"name": "slo", "rules": [{"alert": "TtftHigh", "expr": "1 > 0", "for": "5m"}]}]},
    }
    assert validate_manifest(rule) == []
    assert validate_manifest(changed(rule, "spec.groups.0.rules.0.expresion", "1")) != []


def test_unknown_kind_names_kind_and_fix() -> None:
    (problem,) = validate_manifest({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
    assert problem.startswith("Widget/w: unknown kind Widget in apiVersion example.com/v1")
    assert str(CRD_DIR) in problem


def test_missing_kind_is_reported() -> None:
    assert validate_manifest({"metadata": {"name": "x"}}) == [
        "None/x: apiVersion and kind must both be set (got None, None)"
    ]


def test_every_vendored_crd_is_indexed() -> None:
    kinds = known_custom_kinds()
    assert "keda.sh/v1alpha1 ScaledObject" in kinds
    assert "aigateway.envoyproxy.io/v1beta1 AIGatewayRoute" in kinds
    assert len(kinds) >= len(list(CRD_DIR.glob("*.yaml")))
