"""The `observability:` stack section: defaults, errors that name their field, component arguments, secrets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest
from support.stacks import StackWriter, one_region_stack

from llmfleet.components.observability import AlertThresholds
from llmfleet.components.observability.stack import (
    REMOTE_WRITE_CREDENTIAL_KEY,
    REMOTE_WRITE_SECRET,
    RemoteWrite,
    stack_values,
)
from llmfleet.infra.config import PROJECT_ROOT, ConfigError, load_stack, parse_deployment
from llmfleet.infra.planning import build_plan
from llmfleet.infra.program.args import observability_settings
from llmfleet.infra.render.offline import run_program

PREFIX = "llmfleet:deployment.observability"


def stack(**observability: Any) -> dict[str, Any]:
    deployment = one_region_stack()
    deployment["observability"] = observability
    return deployment


def error_of(**observability: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_deployment(stack(**observability), "test")
    return str(caught.value)


def test_defaults_install_the_stack_with_the_documented_thresholds() -> None:
    spec = parse_deployment(stack(), "test").observability
    assert spec.enabled and spec.retention == "15d" and spec.storage_gib == 20
    assert spec.remote_write is None and spec.grafana_admin_secret is None and spec.secret_refs() == []
    defaults = AlertThresholds()
    assert spec.alerts.kv_cache_usage_percent == defaults.kv_cache_usage_percent
    assert spec.alerts.gpu_memory_percent == defaults.gpu_memory_percent
    assert spec.alerts.queue_depth_per_replica is None


@pytest.mark.parametrize(
    ("section", "field", "hint"),
    [
        ({"retention": "15 days"}, "retention", "pattern"),
        ({"storage_gib": 1}, "storage_gib", "greater than or equal to 2"),
        ({"alerts": {"kv_cache_usage_percent": 120}}, "alerts.kv_cache_usage_percent", "less than or equal to 100"),
        ({"alerts": {"queue_depth_per_replica": 0}}, "alerts.queue_depth_per_replica", "greater than 0"),
        ({"alert": {}}, "alert", "unknown field"),
        ({"grafana_admin_secret": "has spaces"}, "grafana_admin_secret", "pattern"),
        ({"remote_write": {"url": "mimir:9009"}}, "remote_write.url", "pattern"),
        (
            {"remote_write": {"url": "https://m.example.com/push", "username": "u"}},
            "remote_write",
            "credentials_secret",
        ),
    ],
)
def test_bad_input_names_its_field(section: dict[str, Any], field: str, hint: str) -> None:
    message = error_of(**section)
    assert f"{PREFIX}.{field}" in message, message
    assert hint in message, message


def test_secret_refs_name_their_fields() -> None:
    spec = parse_deployment(
        stack(grafana_admin_secret="grafanaAdmin", remote_write={"url": "https://m/push", "credentials_secret": "rw"}),
        "test",
    ).observability
    assert spec.secret_refs() == [
        ("grafanaAdmin", "observability.grafana_admin_secret"),
        ("rw", "observability.remote_write.credentials_secret"),
    ]
    off = parse_deployment(stack(enabled=False, grafana_admin_secret="grafanaAdmin"), "test").observability
    assert off.secret_refs() == [], "a disabled stack needs no secrets"


def _dev() -> tuple[Any, list[Any]]:
    _, spec = load_stack("dev")
    return spec, list(build_plan("dev", spec).deployments)


def test_observability_args_carry_the_slo_thresholds_and_secrets() -> None:
    spec, deployments = _dev()
    section = parse_deployment(
        stack(
            retention="30d",
            alerts={"queue_depth_per_replica": 9, "preemptions_per_minute": 0.5},
            chart_values={"alertmanager": {"config": {"route": {"receiver": "pager"}}}},
            remote_write={"url": "https://m/push", "credentials_secret": "rw"},
        ),
        "test",
    ).observability
    token = pulumi.Output.secret("token")
    args = observability_settings(
        section, cloud="aws", region="us-east-1", slo=spec.slo, deployments=deployments, secrets={"rw": token}
    )
    assert args is not None
    assert args.slo.ttft_p95_ms == spec.slo.ttft_p95_ms and args.slo.error_rate == spec.slo.error_rate
    assert args.thresholds == AlertThresholds(queue_depth_per_replica=9, preemptions_per_minute=0.5)
    assert args.retention == "30d" and args.remote_write_url == "https://m/push"
    assert args.remote_write_credential is token and args.remote_write_username is None
    assert args.grafana_admin_password is None
    assert args.stack_values == {"alertmanager": {"config": {"route": {"receiver": "pager"}}}}
    disabled = parse_deployment(stack(enabled=False), "test").observability
    assert (
        observability_settings(
            disabled, cloud="aws", region="us-east-1", slo=spec.slo, deployments=deployments, secrets={}
        )
        is None
    )


def test_a_gpu_memory_threshold_vllm_always_exceeds_is_refused() -> None:
    spec, deployments = _dev()
    reserved = max(d.gpu_memory_utilization for d in deployments if d.gpu) * 100
    section = parse_deployment(stack(alerts={"gpu_memory_percent": reserved}), "test").observability
    with pytest.raises(ConfigError) as caught:
        observability_settings(
            section, cloud="aws", region="us-east-1", slo=spec.slo, deployments=deployments, secrets={}
        )
    message = str(caught.value)
    assert f"{PREFIX}.alerts.gpu_memory_percent" in message and "at least" in message, message


def test_a_missing_secret_stops_the_program_naming_its_field(write_stack: StackWriter) -> None:
    path = write_stack(stack(grafana_admin_secret="grafanaAdmin"), name="nosecret")
    with pytest.raises(ConfigError) as caught:
        run_program(stack_file=path)
    assert "observability.grafana_admin_secret" in str(caught.value)
    assert "pulumi config set --secret llmfleet:grafanaAdmin" in str(caught.value)


def test_the_cli_exits_2_on_a_bad_section_without_a_traceback(write_stack: StackWriter) -> None:
    path = write_stack(stack(retention="forever"), name="badobs")
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "llmfleet"),
            "render",
            "--stack-file",
            str(path),
            "--out",
            str(path.parent / "out"),
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{PREFIX}.retention" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_remote_write_authenticates_as_configured() -> None:
    def remote(username: str | None, credential: bool) -> dict[str, Any]:
        values = stack_values(
            external_labels={},
            retention="15d",
            storage_gib=20,
            remote_write=RemoteWrite("https://m/push", username, credential),
            grafana_admin_secret=False,
        )
        return values["prometheus"]["prometheusSpec"]["remoteWrite"][0]

    credential = {"name": REMOTE_WRITE_SECRET, "key": REMOTE_WRITE_CREDENTIAL_KEY}
    assert remote("fleet", True)["basicAuth"]["password"] == credential
    assert remote(None, True) == {
        "url": "https://m/push",
        "authorization": {"type": "Bearer", "credentials": credential},
    }
    assert remote(None, False) == {"url": "https://m/push"}
