"""Helm values checked against the pinned charts (infra/render/chart_values/, infra/render/chart_values.py)."""

from typing import Any

import pytest

from llmfleet.components import pins
from llmfleet.components.gateway.certificates import cert_manager_values
from llmfleet.components.gateway.install import envoy_gateway_values
from llmfleet.components.observability.dcgm import dcgm_values
from llmfleet.components.observability.stack import RemoteWrite, stack_values
from llmfleet.components.routing.picker import ScorerWeights, chart_values
from llmfleet.infra.render.chart_values import _vendored, values_problems


def test_every_pinned_chart_has_vendored_values_from_its_pinned_release() -> None:
    vendored = _vendored()
    for pin in pins.table().charts:
        document = vendored.get((pin.name, pin.version))
        assert document is not None, (
            f"{pin.id}: run python -m llmfleet.infra.vendor.chart_values (see infra/render/chart_values/README.md)"
        )
        source = document["source"]
        assert (source["repo"], source["tag"], source["path"]) == (pin.source.repo, pin.source.tag, pin.source.path)
        assert source["commit"] == pin.source.commit, pin.id
        assert document["licence"] == "Apache-2.0"
        assert ("schema" in document) != ("tree" in document), pin.id


KPS = pins.chart("kube-prometheus-stack")
EG = pins.chart("envoy-gateway")
CM = pins.chart("cert-manager")


@pytest.mark.parametrize("remote_write", [None, RemoteWrite("https://mimir.example.com/push", "fleet", True)])
@pytest.mark.parametrize("grafana_admin_secret", [True, False])
def test_the_monitoring_stack_values_are_the_charts(
    remote_write: RemoteWrite | None, grafana_admin_secret: bool
) -> None:
    values = stack_values(
        external_labels={"cloud": "aws", "region": "us-east-1"},
        retention="15d",
        storage_gib=20,
        remote_write=remote_write,
        grafana_admin_secret=grafana_admin_secret,
    )
    assert values_problems(KPS.name, KPS.version, values) == []


def test_the_other_components_values_are_the_charts() -> None:
    assert values_problems(EG.name, EG.version, envoy_gateway_values()) == []
    assert values_problems(CM.name, CM.version, cert_manager_values()) == []
    pool = pins.chart("inferencepool")
    for monitoring in (True, False):
        values = chart_values(pod_labels={"app": "m"}, port=8000, weights=ScorerWeights(), monitoring=monitoring)
        assert values_problems(pool.name, pool.version, values) == []
    dcgm = pins.chart("dcgm-exporter")
    for cloud in ("aws", "gcp"):
        assert values_problems(dcgm.name, dcgm.version, dcgm_values(cloud)) == []


REDIS_TYPO = {"config": {"envoyGateway": {"rateLimit": {"backend": {"redis": {"urll": "x"}}}}}}


@pytest.mark.parametrize(
    ("chart", "values", "expected"),
    [
        (KPS, {"grafana": {"adminPasword": ""}}, "grafana.adminPasword: the chart has no such value; did you mean"),
        (KPS, {"prometheus": {"prometheusSpec": {"retentionSise": "1GB"}}}, "did you mean retentionSize"),
        (EG, REDIS_TYPO, "values.config.envoyGateway.rateLimit.backend.redis.urll: not a field"),
        (CM, {"crds": {"enabled": True, "keeep": True}}, "values.crds: Additional properties are not allowed"),
        (pins.chart("keda"), {"operatr": {}}, "values.operatr: the chart has no such value"),
    ],
)
def test_a_value_the_chart_does_not_have_is_named(chart: pins.Pin, values: dict[str, Any], expected: str) -> None:
    problems = values_problems(chart.name, chart.version, values)
    assert len(problems) == 1 and expected in problems[0], problems


def test_open_subtrees_take_what_the_chart_passes_on_whole() -> None:
    plugin = pins.chart("nvidia-device-plugin")
    free = {"nodeSelector": {"any/label": "x"}, "tolerations": [{"key": "k", "operator": "Exists"}]}
    assert values_problems(plugin.name, plugin.version, free) == []


def test_a_chart_without_vendored_values_is_a_problem_not_a_pass() -> None:
    assert "not vendored" in values_problems("some-chart", "1.0.0", {})[0]
