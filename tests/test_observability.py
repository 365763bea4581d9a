"""Observability in the program's graph (offline engine): one stack per region, KEDA on its Prometheus,
monitors that select what the services and gateway expose, rules with the stack's SLO, every object valid.

Expected values come from the stack files, the plan and the other components' own objects (the
Services, the gateway's namespace), not from the observability code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from support.stacks import ShippedRun, StackWriter, one_region_stack

from llmfleet.components.gateway.install import ENVOY_GATEWAY_NAMESPACE
from llmfleet.components.node_labels import GPU_TAINT_KEY
from llmfleet.components.observability import (
    AlertThresholds,
    Observability,
    ObservabilityArgs,
    ObservabilitySettings,
    SloTargets,
    stack,
)
from llmfleet.components.observability.component import SCRAPE_KEY_SECRET
from llmfleet.components.observability.monitors import SCRAPE_KEY
from llmfleet.components.sizing.types import Engine
from llmfleet.infra.config import load_stack
from llmfleet.infra.planning import build_plan
from llmfleet.infra.render.offline import OfflineRun, RecordedResource, RecordingMocks, run_program
from llmfleet.infra.render.validate import validate_manifest

OBSERVABILITY = "llmfleet:observability:Observability"
FLEET = "llmfleet:fleet:RegionalFleet"
RELEASE = "kubernetes:helm.sh/v3:Release"
SERVICE = "kubernetes:core/v1:Service"
SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
SERVICE_MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"
POD_MONITOR = "kubernetes:monitoring.coreos.com/v1:PodMonitor"
RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
SECRET = "kubernetes:core/v1:Secret"


@pytest.fixture(scope="module")
def prod(shipped_run: ShippedRun) -> OfflineRun:
    return shipped_run("prod")


@pytest.fixture(scope="module")
def local(shipped_run: ShippedRun) -> OfflineRun:
    return shipped_run("local")


def descendants(run: OfflineRun, root: RecordedResource) -> list[RecordedResource]:
    found: list[RecordedResource] = []
    frontier = {root.urn}
    for resource in run.resources:  # registration order: parents come before children
        if resource.parent in frontier:
            found.append(resource)
            frontier.add(resource.urn)
    return found


def of_type(resources: list[RecordedResource], type_: str) -> list[RecordedResource]:
    return [r for r in resources if r.type == type_]


def one(resources: list[RecordedResource], type_: str, where: str) -> RecordedResource:
    found = of_type(resources, type_)
    assert len(found) == 1, f"{where}: expected one {type_}, got {[r.urn for r in found]}"
    return found[0]


def region_stacks(run: OfflineRun) -> dict[str, RecordedResource]:
    return {run.region_of(r) or "": r for r in of_type(run.resources, OBSERVABILITY)}


def chart(resources: list[RecordedResource], name: str) -> RecordedResource | None:
    found = [r for r in of_type(resources, RELEASE) if r.inputs["chart"] == name]
    assert len(found) <= 1
    return found[0] if found else None


@pytest.mark.parametrize("name", ["prod", "local"])
def test_one_observability_stack_per_region_under_its_fleet(name: str, prod: OfflineRun, local: OfflineRun) -> None:
    run = {"prod": prod, "local": local}[name]
    _, spec = load_stack(name)
    stacks = region_stacks(run)
    assert sorted(stacks) == sorted(r.key for r in spec.regions)
    fleets = {r.name: r for r in of_type(run.resources, FLEET)}
    for key, observability in stacks.items():
        assert observability.parent == fleets[key].urn, f"{key}: observability outside its fleet"
        children = descendants(run, observability)
        release = chart(children, stack.CHART)
        assert release is not None, f"{key}: no kube-prometheus-stack"
        assert release.inputs["version"] == stack.CHART_VERSION and release.inputs["name"] == stack.RELEASE
        # The region's cluster provider, the same one its inference Deployments use.
        deployment = next(
            r for r in run.resources if r.name.startswith(key) and r.type == "kubernetes:apps/v1:Deployment"
        )
        assert {r.provider for r in children if r.custom} == {deployment.provider}, key


def test_keda_queries_the_prometheus_the_region_installs(prod: OfflineRun, local: OfflineRun) -> None:
    for run in (prod, local):
        for key, observability in region_stacks(run).items():
            release = chart(descendants(run, observability), stack.CHART)
            assert release is not None
            values = release.inputs["values"]
            # The chart names Prometheus' Service <fullname>-prometheus in the release namespace.
            url = f"http://{values['fullnameOverride']}-prometheus.{release.inputs['namespace']}.svc.cluster.local:9090"
            scalers = [r for r in of_type(run.resources, SCALED_OBJECT) if run.region_of(r) == key]
            assert scalers, key
            for scaler in scalers:
                addresses = {t["metadata"]["serverAddress"] for t in scaler.inputs["spec"]["triggers"]}
                assert addresses == {url}, f"{scaler.urn}: {addresses}"
            assert observability.outputs.get("prometheusUrl", url) == url


def test_the_program_exports_each_regions_monitoring(prod: OfflineRun) -> None:
    exported = prod.outputs["observability"]
    assert set(exported) == set(region_stacks(prod))
    for key, region in exported.items():
        assert region["prometheus_url"] == stack.PROMETHEUS_URL, key
        # prod routes llama-70b through an InferencePool (qwen-7b has the hosted fallback): the pickers' board too.
        assert len(region["dashboards"]) == 7 and all(t.startswith("llmfleet / ") for t in region["dashboards"])
        assert "llmfleet / Routing (endpoint picker)" in region["dashboards"], key
    assert "observability" not in prod.secret_outputs


def test_stack_values_pick_up_the_projects_monitors_and_rules(prod: OfflineRun) -> None:
    for key, observability in region_stacks(prod).items():
        release = chart(descendants(prod, observability), stack.CHART)
        assert release is not None
        spec = release.inputs["values"]["prometheus"]["prometheusSpec"]
        for selector in ("serviceMonitor", "podMonitor", "rule"):
            assert spec[f"{selector}SelectorNilUsesHelmValues"] is False, f"{key}: {selector} selector"
        assert spec["externalLabels"] == {"cloud": key.split("-")[0], "region": key.split("-", 1)[1]}
        assert spec["retention"] == "15d" and "remoteWrite" not in spec
        # Not the chart's public default password: empty makes the Grafana chart generate one.
        assert release.inputs["values"]["grafana"]["adminPassword"] == ""


def test_dcgm_exporter_only_where_gpus_serve_and_it_tolerates_their_taint(prod: OfflineRun, local: OfflineRun) -> None:
    for key, observability in region_stacks(prod).items():
        release = chart(descendants(prod, observability), "dcgm-exporter")
        assert release is not None, f"{key}: GPU region without dcgm-exporter"
        values = release.inputs["values"]
        assert {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"} in values["tolerations"]
        assert values["serviceMonitor"]["enabled"] is True
        assert release.inputs["version"] and not release.inputs["version"].startswith("4.9")
        assert ("extraHostVolumes" in values) == key.startswith("gcp-"), key
    for observability in region_stacks(local).values():
        assert chart(descendants(local, observability), "dcgm-exporter") is None, "CPU-only region with dcgm"


def _matches(labels: dict[str, str], term: dict[str, Any]) -> bool:
    """Whether a node with these labels satisfies one nodeSelectorTerm."""
    for expression in term["matchExpressions"]:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if operator == "Exists" and key not in labels:
            return False
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
    return True


def test_dcgm_exporter_lands_on_every_gpu_pool_and_no_other(prod: OfflineRun) -> None:
    pools = {"aws:eks/nodeGroup:NodeGroup": "labels", "gcp:container/nodePool:NodePool": "nodeConfig"}
    for key, observability in region_stacks(prod).items():
        release = chart(descendants(prod, observability), "dcgm-exporter")
        assert release is not None
        affinity = release.inputs["values"]["affinity"]["nodeAffinity"]
        terms = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        gpu_pools = system_pools = 0
        for pool in (r for r in prod.resources if r.type in pools and prod.region_of(r) == key):
            inputs = pool.inputs if pools[pool.type] == "labels" else pool.inputs["nodeConfig"]
            labels = inputs.get("labels") or {}
            runs_there = any(_matches(labels, term) for term in terms)
            if "system" in pool.name:
                system_pools += 1
                assert not runs_there, f"{pool.urn}: dcgm-exporter on a node without GPUs"
            else:
                gpu_pools += 1
                assert runs_there, f"{pool.urn} ({labels}): GPU nodes dcgm-exporter would skip"
        assert gpu_pools and system_pools, key


@pytest.mark.parametrize("name", ["prod", "local"])
def test_the_engine_monitor_selects_every_inference_service_and_its_port(
    name: str, prod: OfflineRun, local: OfflineRun
) -> None:
    run = {"prod": prod, "local": local}[name]
    for key, observability in region_stacks(run).items():
        monitor = one(descendants(run, observability), SERVICE_MONITOR, key).inputs["spec"]
        services = [
            r
            for r in of_type(run.resources, SERVICE)
            if run.region_of(r) == key and r.parent and ":inference:InferenceService" in r.parent
        ]
        assert services, key
        for service in services:
            labels = service.inputs["metadata"]["labels"]
            assert monitor["selector"]["matchLabels"].items() <= labels.items(), f"{service.urn}: not selected"
            assert service.inputs["metadata"]["namespace"] in monitor["namespaceSelector"]["matchNames"]
            ports = {p["name"] for p in service.inputs["spec"]["ports"]}
            assert {e["port"] for e in monitor["endpoints"]} <= ports, f"{service.urn}: ports {ports}"
        # The Prometheus namespace's own Services (e.g. Grafana) are not model servers.
        assert stack.NAMESPACE not in monitor["namespaceSelector"]["matchNames"]


def test_the_gateway_monitor_watches_the_envoy_proxies(prod: OfflineRun) -> None:
    for key, observability in region_stacks(prod).items():
        monitor = one(descendants(prod, observability), POD_MONITOR, key).inputs["spec"]
        assert monitor["namespaceSelector"]["matchNames"] == [ENVOY_GATEWAY_NAMESPACE]
        assert monitor["selector"]["matchLabels"]["app.kubernetes.io/managed-by"] == "envoy-gateway"
        assert monitor["podMetricsEndpoints"][0]["path"] == "/stats/prometheus"


def _alerts(run: OfflineRun, key: str) -> dict[str, list[dict[str, Any]]]:
    observability = region_stacks(run)[key]
    spec = one(descendants(run, observability), RULE, key).inputs["spec"]
    found: dict[str, list[dict[str, Any]]] = {}
    for group in spec["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                found.setdefault(rule["alert"], []).append(rule)
    return found


def test_rules_carry_the_stacks_slo_and_autoscaling_thresholds(prod: OfflineRun) -> None:
    _, spec = load_stack("prod")
    plan = build_plan("prod", spec)
    slo = spec.slo
    for region in spec.regions:
        alerts = _alerts(prod, region.key)
        assert alerts["LLMTimeToFirstTokenSLO"][0]["expr"].endswith(f"> {slo.ttft_p95_ms / 1000:g}")
        assert alerts["LLMTimePerOutputTokenSLO"][0]["expr"].endswith(f"> {slo.tpot_p95_ms / 1000:g}")
        assert alerts["LLMEndToEndLatencySLO"][0]["expr"].endswith(f"> {slo.e2e_p99_ms / 1000:g}")
        assert f"> {slo.error_rate * 14.4:g} and" in alerts["LLMErrorBudgetBurnFast"][0]["expr"]
        # One queue alert per model, at the threshold the model's ScaledObject scales on.
        scalers = {
            r.inputs["metadata"]["name"]: r.inputs["spec"]["triggers"][0]["metadata"]["threshold"]
            for r in of_type(prod.resources, SCALED_OBJECT)
            if prod.region_of(r) == region.key
        }
        queue = {r["labels"]["model"]: r["expr"].rsplit(" ", 1)[1] for r in alerts["LLMQueueBacklog"]}
        assert queue == scalers, region.key
        gpus = any(d.gpu for d in plan.deployments if (d.cloud, d.region) == (region.cloud, region.region))
        assert ("GPUXidError" in alerts) == gpus


@pytest.mark.parametrize("name", ["prod", "local"])
def test_every_rendered_rule_group_passes_promtool(
    name: str, prod: OfflineRun, local: OfflineRun, tmp_path: Path
) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is required in CI: apt-get install prometheus")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    run = {"prod": prod, "local": local}[name]
    for key, observability in region_stacks(run).items():
        groups = one(descendants(run, observability), RULE, key).inputs["spec"]["groups"]
        path = tmp_path / f"{key}.yaml"
        path.write_text(yaml.safe_dump({"groups": groups}))
        done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{key}: {done.stdout}{done.stderr}"
        assert f"{sum(len(g['rules']) for g in groups)} rules found" in done.stdout


def test_local_llama_cpp_queue_rule_uses_its_service_label(local: OfflineRun) -> None:
    _, spec = load_stack("local")
    plan = build_plan("local", spec)
    (deployment,) = plan.deployments
    assert deployment.engine is Engine.LLAMA_CPP
    (rule,) = _alerts(local, spec.regions[0].key)["LLMQueueBacklog"]
    assert f'llamacpp:requests_deferred{{namespace="{spec.namespace}",service="{deployment.model}"}}' in rule["expr"]


@pytest.mark.parametrize("name", ["prod", "local"])
def test_every_observability_object_validates(name: str, prod: OfflineRun, local: OfflineRun) -> None:
    run = {"prod": prod, "local": local}[name]
    checked = 0
    for observability in region_stacks(run).values():
        members = {r.urn for r in descendants(run, observability)}
        for resource, manifest in run.kubernetes_objects():
            if resource.urn in members:
                assert validate_manifest(manifest) == [], resource.urn
                checked += 1
    # Per region at least: its namespace, two monitors, the rules and five dashboards.
    assert checked >= 9 * len(region_stacks(run))


def test_dashboards_are_configmaps_the_grafana_sidecar_loads(prod: OfflineRun) -> None:
    for key, observability in region_stacks(prod).items():
        children = descendants(prod, observability)
        release = chart(children, stack.CHART)
        assert release is not None
        sidecar = release.inputs["values"]["grafana"]["sidecar"]["dashboards"]
        boards = of_type(children, CONFIG_MAP)
        assert len(boards) == 7, f"{key}: latency, throughput, queue/KV, GPUs, gateway, cost, routing"
        for board in boards:
            metadata = board.inputs["metadata"]
            assert metadata["labels"][sidecar["label"]] == sidecar["labelValue"]
            assert metadata["namespace"] == release.inputs["namespace"], "the sidecar watches its own namespace"


def test_grafana_password_and_remote_write_credential_stay_secret(write_stack: StackWriter) -> None:
    deployment = one_region_stack()
    deployment["observability"] = {
        "grafana_admin_secret": "grafanaAdmin",
        "remote_write": {
            "url": "https://mimir.example.com/api/v1/push",
            "username": "fleet",
            "credentials_secret": "rw",
        },
        "retention": "30d",
        "storage_gib": 100,
        "chart_values": {"alertmanager": {"config": {"route": {"receiver": "pager"}}}, "prometheus": {"x": 1}},
    }
    path = write_stack(deployment, name="obs", grafanaAdmin="s3cret-admin", rw="s3cret-rw")
    run = run_program(stack_file=path)
    (observability,) = region_stacks(run).values()
    children = descendants(run, observability)
    secrets = {r.inputs["metadata"]["name"]: r for r in of_type(children, SECRET)}
    # the engines' key is copied beside Prometheus for the model servers' scrape (d3be7a7)
    assert set(secrets) == {stack.GRAFANA_ADMIN_SECRET, stack.REMOTE_WRITE_SECRET, SCRAPE_KEY_SECRET}
    for secret, key in (
        (stack.GRAFANA_ADMIN_SECRET, stack.GRAFANA_PASSWORD_KEY),
        (stack.REMOTE_WRITE_SECRET, stack.REMOTE_WRITE_CREDENTIAL_KEY),
        (SCRAPE_KEY_SECRET, SCRAPE_KEY),
    ):
        # The value, or all of stringData around it, is a secret input.
        assert secrets[secret].secret_fields & {"stringData", f"stringData.{key}"}, secret
    release = chart(children, stack.CHART)
    assert release is not None
    values = release.inputs["values"]
    spec = values["prometheus"]["prometheusSpec"]
    assert spec["retention"] == "30d" and spec["retentionSize"] == "90GB"
    (remote,) = spec["remoteWrite"]
    assert remote["url"] == "https://mimir.example.com/api/v1/push"
    assert remote["basicAuth"]["password"] == {
        "name": stack.REMOTE_WRITE_SECRET,
        "key": stack.REMOTE_WRITE_CREDENTIAL_KEY,
    }
    assert values["grafana"]["admin"]["existingSecret"] == stack.GRAFANA_ADMIN_SECRET
    # The escape hatch merges into the values instead of replacing them.
    assert values["alertmanager"]["config"]["route"]["receiver"] == "pager"
    assert values["prometheus"]["x"] == 1 and spec["ruleSelectorNilUsesHelmValues"] is False
    rendered = repr([r.redacted_inputs() for r in run.resources])
    assert "s3cret" not in rendered, "a credential reached a rendered input"
    # Both Secrets exist before the chart that reads them.
    assert release.parent == observability.urn


def test_turned_off_there_is_no_stack_and_keda_keeps_the_default_address(
    write_stack: StackWriter, tmp_path: Path
) -> None:
    deployment = one_region_stack()
    deployment["observability"] = {"enabled": False}
    run = run_program(stack_file=write_stack(deployment, name="off"))
    assert of_type(run.resources, OBSERVABILITY) == []
    assert not [r for r in run.resources if r.type.startswith("kubernetes:monitoring.coreos.com")]
    (scaler,) = of_type(run.resources, SCALED_OBJECT)
    assert scaler.inputs["spec"]["triggers"][0]["metadata"]["serverAddress"] == stack.PROMETHEUS_URL


def _standalone(**changes: Any) -> list[RecordedResource]:
    """The component on its own, as another team's program would use it (dev's plan, mocks)."""
    _, spec = load_stack("dev")
    fields: dict[str, Any] = {
        "cloud": "aws",
        "region": "us-east-1",
        "slo": SloTargets(ttft_p95_ms=800, tpot_p95_ms=60, e2e_p99_ms=30_000, error_rate=0.01),
        "inference_namespace": "models",
        "deployments": build_plan("dev", spec).deployments,
        "queue_thresholds": {"chat": 4},
    }
    mocks = RecordingMocks().install()
    args = ObservabilityArgs(**{**fields, **changes})
    pulumi.runtime.test(lambda: Observability("obs", args) and None)()
    return mocks.resources


def test_standalone_component_follows_its_namespace_arguments() -> None:
    resources = _standalone(namespace="telemetry")
    (release,) = [r for r in of_type(resources, RELEASE) if r.inputs["chart"] == stack.CHART]
    assert release.inputs["namespace"] == "telemetry"
    args = ObservabilityArgs(cloud="aws", region="x", slo=SloTargets(1, 1, 1, 0), namespace="telemetry")
    assert args.prometheus_url == "http://kube-prometheus-stack-prometheus.telemetry.svc.cluster.local:9090"
    (monitor,) = of_type(resources, SERVICE_MONITOR)
    assert monitor.inputs["spec"]["namespaceSelector"]["matchNames"] == ["models"]
    (rule,) = of_type(resources, RULE)
    queue = [r for g in rule.inputs["spec"]["groups"] for r in g["rules"] if r.get("alert") == "LLMQueueBacklog"]
    assert [r["expr"].rsplit(" ", 1)[1] for r in queue] == ["4"]


def test_standalone_component_refuses_a_model_without_queue_threshold() -> None:
    with pytest.raises(ValueError, match=r"queue_thresholds has no entry for models \['chat'\]"):
        _standalone(queue_thresholds={})


def test_observability_args_are_the_settings_plus_what_is_monitored() -> None:
    # Every settings field reaches the args as given (a field `of` forgot would come back at its default).
    settings = ObservabilitySettings(
        cloud="gcp",
        region="us-central1",
        slo=SloTargets(1, 2, 3, 0.5),
        thresholds=AlertThresholds(queue_depth_per_replica=7),
        retention="3d",
        storage_gib=5,
        remote_write_url="https://metrics.example.com/api/v1/write",
        remote_write_username="fleet",
        remote_write_credential="token",
        grafana_admin_password="admin",
        namespace="telemetry",
        stack_values={"grafana": {"enabled": False}},
        dcgm_values={"image": {"tag": "x"}},
    )
    args = ObservabilityArgs.of(
        settings,
        inference_namespace="models",
        deployments=(),
        queue_thresholds={"chat": 4},
        routed_models=["chat"],
        inference_scrape_key="key",
    )
    for f in fields(ObservabilitySettings):
        assert getattr(args, f.name) == getattr(settings, f.name), f.name
    assert (args.inference_namespace, args.queue_thresholds, args.routed_models) == ("models", {"chat": 4}, ["chat"])
    assert args.inference_scrape_key == "key" and args.prometheus_url == settings.prometheus_url
