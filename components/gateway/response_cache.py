"""The response cache's LiteLLM proxy: its config.yaml and its pre-call hook, as plain data (no Pulumi import).

The cache is LiteLLM's proxy cache (pinned release: components/pins.yaml, images `litellm`), not one of our own:
an OpenAI-compatible proxy that keys a Redis cache on the model and every request parameter (messages and
sampling parameters), prefixes the key with a per-request namespace, marks a hit with the
`x-litellm-cache-key` response header and counts hits and requests on its Prometheus `/metrics`
(docs/patterns.md "Response cache" says what each claim rests on, at the pinned version).

Per region: client -> Envoy (auth, TENANT_HEADER, budgets) -> LiteLLM (this config) -> on a miss back through
the gateway with the internal pass header and the internal client key -> the model's normal route. The hook
(`litellm/llmfleet_cache_hook.py`, shipped as a file beside config.yaml) puts each request in its tenant's
namespace, lets only deterministic requests use the cache unless the tenant opted in, serves stale entries only
to the stale fallback (`stale_s`), and limits the master key to the completions and embeddings routes (its
`auth`): not the admin routes.

Everything the proxy reads from its environment is named here: the Redis address and password and the
internal key (secrets: the Deployment fills them from Secrets) and `proxy_env` (plain values).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOOK_MODULE = "llmfleet_cache_hook"
"""The hook's module name; its file, HOOK_FILE, must sit in the same folder as config.yaml (LiteLLM resolves a
callback `module.instance` relative to the config file)."""
HOOK_FILE = f"{HOOK_MODULE}.py"
HOOK_CALLBACK = f"{HOOK_MODULE}.hook"
HOOK_AUTH = f"{HOOK_MODULE}.auth"
"""LiteLLM's custom_auth: the master key opens the chat completions, text completions and embeddings routes only
(not the admin routes)."""
_HOOK_PATH = Path(__file__).resolve().parent / "litellm" / HOOK_FILE

HOOK_SETTINGS_ENV = "LLMFLEET_CACHE_HOOK"
"""JSON settings of the hook (tenant header, opt-in tenants, deterministic-only, TTL, stale, the master key's
env var): `proxy_env`."""
REDIS_HOST_ENV = "LLMFLEET_CACHE_REDIS_HOST"
REDIS_PORT_ENV = "LLMFLEET_CACHE_REDIS_PORT"
REDIS_PASSWORD_ENV = "LLMFLEET_CACHE_REDIS_PASSWORD"
"""Secret: Redis's password (the proxy reads it as `os.environ/...`, never from the config file)."""
MASTER_KEY_ENV = "LLMFLEET_CACHE_MASTER_KEY"
"""Secret: the key a caller of the proxy must send (`Authorization: Bearer`): the gateway, through a backend
security policy. LiteLLM refuses to start without one (proxy/auth/master_key_boot_check.py)."""
UPSTREAM_KEY_ENV = "LLMFLEET_CACHE_UPSTREAM_KEY"
"""Secret: the internal client key the proxy sends to the gateway on a miss (budget-exempt)."""

KEY_PREFIX = "llmfleet-cache"
"""Every key LiteLLM writes to Redis starts `llmfleet-cache:`: entries `llmfleet-cache:<tenant>:<sha256>`, and
its own per-key token counters `llmfleet-cache:{...}:tokens`."""
HIT_HEADER = "x-litellm-cache-key"
"""Set on a response served from the cache (LiteLLM's proxy, common_request_processing.py)."""
HIT_METRIC = "litellm_cache_hits_metric"
"""Responses served from the cache: LiteLLM's Prometheus counter (integrations/prometheus.py), `_total` on the
proxy's `/metrics`, labelled by model."""
REQUESTS_METRIC = "litellm_proxy_total_requests_metric"
"""Every request the proxy answered, hits included: the hit ratio's denominator. Not LiteLLM's
`litellm_cache_misses_metric`: at the pinned release it counts only streamed misses (a plain miss is logged with
`cache_hit` None, which its `_increment_cache_metrics` skips)."""
EXCLUDED_METRIC_LABELS = ("user_agent", "client_ip")
"""Labels LiteLLM's Prometheus callback would put on its counters that the clients control or that churn."""
PORT = 4000
"""LiteLLM proxy's default port (`litellm --port`)."""
STALE_SUFFIX = "-stale"
"""With stale_s: model `<name>-stale` is the fallback of `<name>` (router_settings.fallbacks) in the same caching
group (one key for both); the hook lifts the freshness limit for it, so it answers with an entry up to ttl_s +
stale_s old. It has no upstream: STALE_NOWHERE."""
STALE_NOWHERE = "http://127.0.0.1:9/v1"
"""The stale fallback's api_base: nothing listens on the pod's own port 9 (discard), so a stale lookup that
misses fails at once without calling anything; the client then gets the original error (LiteLLM re-raises it)."""
STALE_MARK_HEADER = "x-litellm-attempted-fallbacks"
"""`1` on an answer the stale fallback served (with HIT_HEADER); `0` on every other answer."""


@dataclass(frozen=True)
class CacheSettings:
    ttl_s: int = 300
    """How long an entry lives (Redis TTL); a client may ask for less (`cache.ttl`), never more."""
    deterministic_only: bool = True
    """Only greedy requests (temperature 0 or top_k 1, n 1) use the cache, except for opt_in_tenants."""
    opt_in_tenants: tuple[str, ...] = ()
    """Tenants whose every request uses the cache (a repeated sampled request then gets the same sample)."""
    max_messages: int | None = 4
    """Requests with more messages are neither looked up nor stored (LiteLLM's `max_messages`, its default 4):
    long conversations rarely repeat and would fill the cache. None: no limit."""
    upstream_timeout_s: float = 600.0
    """How long the proxy waits for the gateway on a miss (a long generation)."""
    stale_s: int = 0
    """Serve stale (graceful degradation): entries are kept this much longer than ttl_s, and a request whose
    model fails upstream (every backend down, or any error the gateway answers) is answered from an entry up
    to ttl_s + stale_s old, marked `x-litellm-attempted-fallbacks: 1`. 0: off."""

    def __post_init__(self) -> None:
        if self.ttl_s < 1:
            raise ValueError(f"ttl_s must be at least 1 second, got {self.ttl_s}")
        if self.stale_s < 0:
            raise ValueError(f"stale_s must not be negative, got {self.stale_s}")
        if self.max_messages is not None and self.max_messages < 1:
            raise ValueError(f"max_messages must be at least 1 (or None), got {self.max_messages}")


@dataclass(frozen=True)
class CachedModel:
    name: str
    """The client-facing model name: the proxy serves it and asks the gateway for the same name on a miss."""


def litellm_config(
    settings: CacheSettings,
    models: Sequence[CachedModel],
    *,
    upstream_base_url: str,
    tenant_header: str,
    internal_pass_header: str,
) -> dict[str, Any]:
    """LiteLLM proxy's config.yaml, as a dict. `upstream_base_url` is the gateway's OpenAI base URL (ending
    `/v1`); `tenant_header` is only checked here (the hook reads it from `proxy_env`)."""
    if not models:
        raise ValueError("a response cache needs at least one model")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ValueError(f"models named twice: {sorted({n for n in names if names.count(n) > 1})}")
    if not tenant_header or not internal_pass_header:
        raise ValueError("tenant_header and internal_pass_header must be header names")
    config: dict[str, Any] = {
        "model_list": [
            {
                "model_name": model.name,
                "litellm_params": {
                    # `openai/` = any OpenAI-compatible server; LiteLLM sends `model: <name>` to api_base.
                    "model": f"openai/{model.name}",
                    "api_base": upstream_base_url,
                    "api_key": f"os.environ/{UPSTREAM_KEY_ENV}",
                    # The internal pass: the gateway's rule for this model without it leads here, with it to
                    # the model's servers; clients cannot send it (the gateway strips it).
                    "extra_headers": {internal_pass_header: "1"},
                    "timeout": settings.upstream_timeout_s,
                    # Envoy retries and falls back already; a second layer would multiply attempts.
                    "max_retries": 0,
                },
            }
            for model in models
        ],
        "litellm_settings": {
            "cache": True,
            "cache_params": {
                "type": "redis",
                "host": f"os.environ/{REDIS_HOST_ENV}",
                "port": f"os.environ/{REDIS_PORT_ENV}",
                "password": f"os.environ/{REDIS_PASSWORD_ENV}",
                "namespace": KEY_PREFIX,
                # With stale serving, entries outlive their freshness (the hook bounds fresh hits with s-maxage).
                "ttl": settings.ttl_s + settings.stale_s,
                "max_messages": settings.max_messages,
                # Chat completions only. A cached model's text completions and embeddings reach the proxy too (the
                # gateway's rule matches the model, not the path) and go upstream like a miss, never cached (tested).
                "supported_call_types": ["acompletion", "completion"],
            },
            # Parameters LiteLLM does not know (vLLM's min_p, repetition_penalty, ...) are part of the key too;
            # without it two requests differing only in them would share an entry.
            "enable_caching_on_provider_specific_optional_params": True,
            "callbacks": [HOOK_CALLBACK, "prometheus"],
            # Prometheus scrapes /metrics without a key; the proxy's NetworkPolicy admits only the gateway and
            # the monitoring namespace (the default would make every scrape carry the master key).
            "require_auth_for_metrics_endpoint": False,
            # Labels a client sets: each distinct User-Agent would be new series on the request counters (tried at
            # 1.108.5: `user_agent="<the client's header>"`), an unbounded number in the region's Prometheus.
            # client_ip is an Envoy pod's address: churn on every rollout, nothing to read.
            "prometheus_exclude_labels": list(EXCLUDED_METRIC_LABELS),
            # Never answer with a retry of LiteLLM's own: a miss's errors are the gateway's, passed through.
            "num_retries": 0,
        },
        "router_settings": {"num_retries": 0},
        "general_settings": {"master_key": f"os.environ/{MASTER_KEY_ENV}", "custom_auth": HOOK_AUTH},
    }
    if settings.stale_s:
        # Each stale model is its model's twin but for where it would send: `timeout` and `extra_headers` are part
        # of the cache key (enable_caching_on_provider_specific_optional_params), so they must be the same for
        # both to find one entry. It never reaches a server, so the internal key stays with the real one.
        config["model_list"] += [
            {
                "model_name": f"{entry['model_name']}{STALE_SUFFIX}",
                "litellm_params": copy.deepcopy(entry["litellm_params"])
                | {"api_base": STALE_NOWHERE, "api_key": "unused"},
            }
            for entry in list(config["model_list"])
        ]
        config["router_settings"] |= {
            "fallbacks": [{m.name: [f"{m.name}{STALE_SUFFIX}"]} for m in models],
            "caching_groups": [[m.name, f"{m.name}{STALE_SUFFIX}"] for m in models],
        }
    return config


def proxy_env(settings: CacheSettings, *, tenant_header: str) -> dict[str, str]:
    """The plain (non-secret) environment of the proxy container: the hook's settings, and LiteLLM told to use
    the model cost map in its package instead of downloading one at start."""
    hook = {
        "tenant_header": tenant_header,
        "deterministic_only": settings.deterministic_only,
        "opt_in_tenants": list(settings.opt_in_tenants),
        "ttl_s": settings.ttl_s,
        "stale_s": settings.stale_s,
        "stale_suffix": STALE_SUFFIX,
        "master_key_env": MASTER_KEY_ENV,
    }
    return {HOOK_SETTINGS_ENV: json.dumps(hook, sort_keys=True), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def hook_source() -> str:
    """The hook file's text (HOOK_FILE), shipped beside config.yaml."""
    return _HOOK_PATH.read_text(encoding="utf-8")
