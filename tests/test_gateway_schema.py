"""The `gateway:` stack section: valid settings become component arguments, bad ones name their field."""

from typing import Any

import pulumi
import pytest
from support.gateway import error_of, stack

from llmfleet.components.gateway import FallbackProvider
from llmfleet.infra.config import parse_deployment
from llmfleet.infra.program.args import gateway_settings

FULL: dict[str, Any] = {
    "hostname": "api.example.com",
    "tls": {"mode": "cert-manager", "cluster_issuer": "letsencrypt", "secret_name": "api-tls"},
    "tenants": [
        {"name": "acme", "api_key_secret": "gatewayKeyAcme", "limits": {"requests_per_minute": 600}},
        {"name": "beta", "api_key_secret": "gatewayKeyBeta"},
    ],
    "default_limits": {"requests_per_minute": 30, "tokens_per_minute": 20000},
    "fallback": {"provider": "anthropic", "api_key_secret": "anthropicKey", "models": {"chat": "claude-haiku-4-5"}},
    "request_timeout_s": 900,
}


def test_full_section_parses_and_lists_its_secrets() -> None:
    spec = parse_deployment(stack(**FULL), "test").gateway
    assert spec.secret_refs() == [
        ("gatewayKeyAcme", "gateway.tenants[0].api_key_secret"),
        ("gatewayKeyBeta", "gateway.tenants[1].api_key_secret"),
        ("anthropicKey", "gateway.fallback.api_key_secret"),
    ]


def test_defaults_are_closed_and_limited() -> None:
    spec = parse_deployment(stack(), "test").gateway
    assert spec.allow_anonymous is False and spec.tenants == [] and spec.jwt is None
    assert spec.default_limits.requests_per_minute and spec.default_limits.tokens_per_minute
    assert spec.secret_refs() == []


def test_gateway_settings_carry_limits_secrets_and_region_hostname() -> None:
    spec = parse_deployment(stack(**FULL), "test").gateway
    secrets = {key: pulumi.Output.secret(f"value-of-{key}") for key, _ in spec.secret_refs()}
    args = gateway_settings(spec, secrets, "aws-us-east-1")
    assert [t.name for t in args.tenants] == ["acme", "beta"]
    assert args.tenants[0].api_key is secrets["gatewayKeyAcme"]
    assert args.tenants[0].limits is not None and args.tenants[0].limits.requests_per_minute == 600
    assert args.tenants[0].limits.tokens_per_minute is None
    assert args.tenants[1].limits is None
    assert (args.default_limits.requests_per_minute, args.default_limits.tokens_per_minute) == (30, 20000)
    assert args.fallback is not None and args.fallback.provider is FallbackProvider.ANTHROPIC
    assert args.fallback.api_key is secrets["anthropicKey"]
    assert args.region_hostname == "aws-us-east-1.api.example.com"
    assert args.tls.cluster_issuer == "letsencrypt" and args.request_timeout_s == 900


def test_plain_http_on_a_local_region_only() -> None:
    data = stack(allow_anonymous=True, tls={"mode": "none"})
    data["regions"] = [{"cloud": "local", "region": "local", "role": "primary", "cluster": {"mode": "existing"}}]
    spec = parse_deployment(data, "test").gateway
    args = gateway_settings(spec, {}, "local-local")
    assert args.tls.secret_name is None and args.tls.scheme == "http"
    assert args.health_path is None, "no load balancer: nothing opened without credentials"


@pytest.mark.parametrize(
    ("gateway", "field", "hint"),
    [
        ({"tenants": [{"name": "acme"}]}, "tenants[0].api_key_secret", "required"),
        (
            {
                "jwt": {"issuer": "https://id", "jwks_uri": "https://id/jwks"},
                "tenants": [{"name": "a", "api_key_secret": "k"}],
            },
            "tenants[0].api_key_secret",
            "not used with `jwt`",
        ),
        ({"allow_anonymous": True, "tenants": [{"name": "a", "api_key_secret": "k"}]}, "gateway", "allow_anonymous"),
        (
            {"tenants": [{"name": "a", "api_key_secret": "k"}, {"name": "a", "api_key_secret": "j"}]},
            "gateway",
            "unique",
        ),
        ({"tenants": [{"name": "Acme Corp", "api_key_secret": "k"}]}, "gateway.tenants[0].name", "pattern"),
        ({"tenants": [{"name": "a", "api_key_secret": "my key"}]}, "gateway.tenants[0].api_key_secret", "pattern"),
        (
            {"default_limits": {"requests_per_minute": 0}},
            "gateway.default_limits.requests_per_minute",
            "greater than 0",
        ),
        ({"tls": {"mode": "cert-manager"}}, "gateway", "hostname"),
        ({"tls": {"mode": "acme"}}, "gateway.tls.mode", "cert-manager"),
        ({"jwt": {"issuer": "http://id", "jwks_uri": "https://id/jwks"}}, "gateway.jwt.issuer", "https"),
        (
            {"fallback": {"provider": "openai", "api_key_secret": "k", "models": {"chatt": "gpt-4o"}}},
            "fallback.models",
            "chatt",
        ),
        (
            {"fallback": {"provider": "gemini", "api_key_secret": "k", "models": {"chat": "x"}}},
            "gateway.fallback.provider",
            "openai",
        ),
        ({"request_timeout_s": 5}, "gateway.request_timeout_s", "greater than or equal to 30"),
        ({"tenant": []}, "gateway.tenant", "unknown field"),
        ({"tls": {"mode": "none"}}, "gateway.tls.mode", "local regions only"),
        ({"tls": {"mode": "none", "cluster_issuer": "letsencrypt"}}, "tls.cluster_issuer", "not used"),
    ],
)
def test_bad_settings_name_their_field(gateway: dict[str, Any], field: str, hint: str) -> None:
    message = error_of(**gateway)
    assert field in message, message
    assert hint in message, message
