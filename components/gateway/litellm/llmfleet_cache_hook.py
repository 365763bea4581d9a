"""LiteLLM pre-call hook of llmfleet's response cache: which requests may use the cache, in whose namespace.

Runs inside the LiteLLM proxy (its image, its Python), loaded from the ConfigMap that holds the proxy's
config.yaml: `litellm_settings.callbacks` names `llmfleet_cache_hook.hook`, and LiteLLM imports this file
from the config's folder. Written by llmfleet (components/gateway/response_cache.py ships it); its
settings come from one environment variable, LLMFLEET_CACHE_HOOK (JSON, see response_cache.proxy_env).

For every request it rewrites the request's `cache` controls (LiteLLM's DynamicCacheControl:
`namespace`, `ttl`, `s-maxage`, `no-cache`, `no-store`), whatever the client sent in them:
- namespace = the tenant the gateway authenticated (the tenant header Envoy sets from the API key and strips
  from clients), so one tenant's entries are never another's: LiteLLM prefixes the key with it;
- no tenant (or one that is not a DNS label): neither looked up nor stored;
- deterministic requests only, unless the tenant opted in (see `deterministic`);
- a client's own `no-cache` / `no-store` / `s-maxage` are kept (they only narrow the cache), its `ttl` only
  when shorter than the configured one, any other key (a client-chosen `namespace`) is dropped;
- a client's own cache key (`cache_key` or `litellm_params.preset_cache_key` in the body, which LiteLLM would use
  as the whole Redis key, another tenant's namespace included) is dropped;
- with stale serving on (`stale_s`), fresh hits are bounded by `s-maxage` = ttl_s, and the stale fallback's call
  (model `<model>-stale`, see response_cache.STALE_SUFFIX) reads without that bound and stores nothing.
"""

from __future__ import annotations

import hmac
import json
import os
import re
from collections.abc import Mapping
from typing import Any

from fastapi import HTTPException
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import UserAPIKeyAuth
from litellm.proxy.auth.auth_utils import get_request_route

SETTINGS_ENV = "LLMFLEET_CACHE_HOOK"
CHAT_ROUTES = frozenset({"/v1/chat/completions", "/chat/completions"})
PASS_THROUGH_ROUTES = frozenset({"/v1/completions", "/completions", "/v1/embeddings", "/embeddings"})
"""Served for a cached model, never cached: the gateway's cache rule matches the model on every path (an
AIGatewayRoute rule matches headers, not the path), so a cached model's text completions and embeddings (the async
queue's jobs too) arrive here and go to the model's upstream like a miss."""
SERVED_ROUTES = CHAT_ROUTES | PASS_THROUGH_ROUTES
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
CLIENT_CACHE_KEYS = ("cache_key", "preset_cache_key")
"""Request fields that would set the cache key itself, past the namespace: removed from every request."""


def _settings() -> dict[str, Any]:
    # Read per call: cheap, and a test can start the proxy before it knows every setting.
    return json.loads(os.environ.get(SETTINGS_ENV, "{}"))


def _header(data: Mapping[str, Any], name: str) -> str | None:
    request = data.get("proxy_server_request") or {}
    headers = request.get("headers") or {}
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name.lower() and isinstance(value, str):
            return value
    return None


def deterministic(data: Mapping[str, Any]) -> bool:
    """Greedy decoding with one choice: temperature 0 (given, not defaulted: an engine's default is a sampling
    temperature), or top_k 1 (vLLM's greedy); and n absent or 1. Tools do not matter: the model only proposes
    the calls (the client runs them), and the tools are part of the key."""
    temperature = data.get("temperature")
    greedy = (isinstance(temperature, int | float) and temperature == 0) or data.get("top_k") == 1
    return greedy and data.get("n") in (None, 1)


def cache_controls(data: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """The `cache` dict LiteLLM reads for this request."""
    client = data.get("cache")
    client = client if isinstance(client, dict) else {}
    tenant = _header(data, settings.get("tenant_header", "x-tenant-id"))
    if tenant is None or not _DNS_LABEL.match(tenant):
        return {"no-cache": True, "no-store": True}
    opted_in = tenant in settings.get("opt_in_tenants", [])
    if settings.get("deterministic_only", True) and not opted_in and not deterministic(data):
        return {"namespace": tenant, "no-cache": True, "no-store": True}
    controls: dict[str, Any] = {"namespace": tenant}
    for key in ("no-cache", "no-store"):
        if client.get(key) is True:
            controls[key] = True
    for key in ("s-maxage", "s-max-age"):
        if isinstance(client.get(key), int):
            controls[key] = client[key]
    ttl, ceiling = client.get("ttl"), settings.get("ttl_s")
    if isinstance(ttl, int) and ttl > 0 and (ceiling is None or ttl < ceiling):
        controls["ttl"] = ttl
    if settings.get("stale_s") and ceiling is not None:
        # Entries live ttl_s + stale_s in Redis; only the first ttl_s of that are fresh.
        controls["s-maxage"] = min(controls.get("s-maxage", ceiling), ceiling)
        controls.pop("s-max-age", None)
    return controls


def stale_controls(kwargs: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any] | None:
    """For the stale fallback's call (model group `<model><stale_suffix>`): the same controls without the
    freshness limit, and never stored (it only reads). None for any other call."""
    metadata = kwargs.get("metadata") or {}
    group = metadata.get("model_group") if isinstance(metadata, dict) else None
    suffix = settings.get("stale_suffix")
    if not settings.get("stale_s") or not suffix or not isinstance(group, str) or not group.endswith(suffix):
        return None
    controls = dict(kwargs.get("cache") or {})
    if controls.get("no-cache") is True:
        return None  # not a cacheable request: nothing stale to serve either
    controls.pop("s-maxage", None)
    controls.pop("s-max-age", None)
    controls["no-store"] = True
    return controls


class CacheHook(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict, call_type: Any) -> dict:
        # `cache` here is the proxy's internal DualCache, not the response cache; only the request is changed.
        data["cache"] = cache_controls(data, _settings())
        # A body `cache_key` (or `litellm_params.preset_cache_key`) is used by LiteLLM as the entry's whole Redis key,
        # namespace included, for the lookup and the store (caching_handler.py `_request_cache_key`, caching.py
        # `get_preset_cache_key_from_kwargs`): a tenant could read another's entries and write its own answers into
        # them. Keys are LiteLLM's to compute, from the namespace set above.
        for key in CLIENT_CACHE_KEYS:
            data.pop(key, None)
        params = data.get("litellm_params")
        if isinstance(params, dict):
            params.pop("preset_cache_key", None)
        return data

    async def async_pre_call_deployment_hook(self, kwargs: dict[str, Any], call_type: Any) -> dict | None:
        # Runs for each deployment LiteLLM calls, before its cache lookup: the stale fallback's is the one to change.
        controls = stale_controls(kwargs, _settings())
        if controls is not None:
            kwargs["cache"] = controls
        return kwargs


hook = CacheHook()


async def auth(request: Any, api_key: str) -> UserAPIKeyAuth:
    """LiteLLM's `general_settings.custom_auth`: run before its own key check on every authenticated route. The
    master key the gateway sends would open LiteLLM's admin routes too (`/cache/flushall` empties every tenant's
    entries); here it opens the routes a cached model's requests take (SERVED_ROUTES), and nothing else opens
    anything."""
    expected = os.environ.get(_settings().get("master_key_env", ""), "")
    if not expected or not hmac.compare_digest((api_key or "").removeprefix("Bearer ").strip(), expected):
        raise HTTPException(status_code=401, detail="not the gateway's key")
    route = get_request_route(request)
    if route not in SERVED_ROUTES:
        raise HTTPException(status_code=403, detail=f"{route} is not served here: completions and embeddings only")
    return UserAPIKeyAuth(api_key=expected)
