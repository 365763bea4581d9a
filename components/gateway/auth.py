"""Who may call: per-tenant API keys, JWTs from one issuer, or (only when the stack says so) anyone.

vLLM accepts a single `--api-key`, so tenants are told apart here. The authenticated tenant id is
written to TENANT_HEADER, which the rate limits count by. With no tenants, no JWT and anonymous
access off, the policy denies everything: the gateway is closed, never silently open.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

import pulumi

from llmfleet.components.gateway.routes import Names, listener_refs
from llmfleet.components.gateway.types import TENANT_HEADER, JwtAuth, Tenant

API_KEY_HEADERS = ("authorization", "x-api-key")
"""OpenAI clients send `Authorization: Bearer <key>`; Anthropic-style clients send `x-api-key`."""


class AuthMode(StrEnum):
    API_KEYS = "api-keys"
    JWT = "jwt"
    ANONYMOUS = "anonymous"
    CLOSED = "closed"


def auth_mode(tenants: Sequence[Tenant], jwt: JwtAuth | None, allow_anonymous: bool) -> AuthMode:
    """The one way this gateway authenticates; mixing them is an error, not a guess."""
    keyed = [t.name for t in tenants if t.api_key is not None]
    if allow_anonymous:
        if tenants or jwt:
            raise ValueError("allow_anonymous turns authentication off: give no tenants and no jwt with it")
        return AuthMode.ANONYMOUS
    if jwt is not None:
        if keyed:
            raise ValueError(f"tenants {keyed} have API keys but jwt is set: the gateway authenticates one way")
        return AuthMode.JWT
    unkeyed = [t.name for t in tenants if t.api_key is None]
    if unkeyed:
        raise ValueError(f"tenants {unkeyed} have no API key (and no jwt identifies them)")
    return AuthMode.API_KEYS if tenants else AuthMode.CLOSED


def api_key_data(
    tenants: Sequence[Tenant], extra: Mapping[str, pulumi.Input[str]] | None = None
) -> pulumi.Output[dict[str, str]]:
    """Secret data: client id (tenant name, or an `extra` client such as the health prober) -> key. Secret end to
    end: the keys are never unwrapped in plain."""
    keys: dict[str, pulumi.Input[str]] = {t.name: t.api_key for t in tenants if t.api_key is not None}
    keys.update(extra or {})
    return pulumi.Output.secret(pulumi.Output.all(**keys)).apply(lambda data: {str(k): str(v) for k, v in data.items()})


def security_policy_spec(
    names: Names, listeners: Sequence[str], mode: AuthMode, jwt: JwtAuth | None
) -> dict[str, Any] | None:
    """The SecurityPolicy on the Gateway's serving listeners, or None when the stack allows anonymous access."""
    target = {"targetRefs": listener_refs(names, listeners)}
    if mode is AuthMode.ANONYMOUS:
        return None
    if mode is AuthMode.CLOSED:
        return {**target, "authorization": {"defaultAction": "Deny"}}
    if mode is AuthMode.API_KEYS:
        return {
            **target,
            "apiKeyAuth": {
                "credentialRefs": [{"group": "", "kind": "Secret", "name": names.api_keys}],
                "extractFrom": [{"headers": list(API_KEY_HEADERS)}],
                "forwardClientIDHeader": TENANT_HEADER,
                # The backends never see a tenant's key.
                "sanitize": True,
            },
        }
    assert jwt is not None
    provider: dict[str, Any] = {
        "name": "oidc",
        "issuer": jwt.issuer,
        "remoteJWKS": {"uri": jwt.jwks_uri},
        "claimToHeaders": [{"claim": jwt.tenant_claim, "header": TENANT_HEADER}],
    }
    if jwt.audiences:
        provider["audiences"] = list(jwt.audiences)
    return {**target, "jwt": {"providers": [provider]}}
