"""The response cache (components/gateway/response_cache.py) on the real LiteLLM proxy, the real Redis, our emulator.

Two parts. The config and hook are checked against LiteLLM's own code at the pinned release (its config model,
`Cache`'s parameters, `CustomLogger`'s hook signature), run in LiteLLM's virtualenv. Then one proxy per module,
started from the generated config with the shipped hook file, in front of the emulator (as the gateway's internal
pass would be), on loopback: what it caches, for whom, how long, and what it counts. Requests carry what Envoy
sends the proxy: its key for the proxy and the tenant header. Every wait is bounded; nothing is timed.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.litellm_proxy import LiteLLMProxy, RedisServer, Tools, tools

from llmfleet.components.gateway import response_cache as rc
from llmfleet.components.gateway.types import TENANT_HEADER
from llmfleet.loadtests.emulator import MODEL_NAME, Emulator, EmulatorConfig

PASS_HEADER = "x-llmfleet-cache-pass"
MISS_METRIC = "litellm_cache_misses_metric"
"""LiteLLM's miss counter, which the cache does not rely on (it counts streamed misses only at 1.108.5)."""
RECORDED_MODEL = "recorded-model"
RECORDED_TEXT = " a recorded completion"
RECORDED_EMBEDDING = [0.25, -0.5, 1.0]
RECORDED_ERROR = "recorded upstream failure"
SETTINGS = rc.CacheSettings(ttl_s=120, opt_in_tenants=("beta",), stale_s=600)
LIFETIME_S = SETTINGS.ttl_s + SETTINGS.stale_s
"""How long Redis keeps an entry: fresh for ttl_s, then stale (served only when the model fails) for stale_s."""
TIMEOUT = httpx.Timeout(30.0)


def config(emulator_url: str, recorder_url: str = "http://127.0.0.1:9/v1") -> dict[str, Any]:
    generated = rc.litellm_config(
        SETTINGS,
        [rc.CachedModel(MODEL_NAME)],
        upstream_base_url=f"{emulator_url}/v1",
        tenant_header=TENANT_HEADER,
        internal_pass_header=PASS_HEADER,
    )
    # A second model whose upstream records what the proxy sends on a miss (the emulator keeps no headers).
    recorded = rc.litellm_config(
        SETTINGS,
        [rc.CachedModel(RECORDED_MODEL)],
        upstream_base_url=recorder_url,
        tenant_header=TENANT_HEADER,
        internal_pass_header=PASS_HEADER,
    )
    generated["model_list"] += recorded["model_list"]
    return generated


# --- the config and the hook, against LiteLLM's code at the pinned release ---------------------------------

LITELLM_CHECK = Path(__file__).resolve().parent / "support" / "litellm_check.py"


def test_the_config_and_hook_match_litellm_at_the_pin(tmp_path: Path) -> None:
    found = tools()
    hook = tmp_path / rc.HOOK_FILE
    hook.write_text(rc.hook_source())
    result = subprocess.run(
        [str(found.python), str(LITELLM_CHECK), str(hook)],
        input=json.dumps(config("http://127.0.0.1:8000")),
        capture_output=True,
        text=True,
        timeout=240,
        env={"LITELLM_LOCAL_MODEL_COST_MAP": "True", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_the_check_catches_a_misspelt_cache_parameter(tmp_path: Path) -> None:
    found = tools()
    bad = config("http://127.0.0.1:8000")
    bad["litellm_settings"]["cache_params"]["tll"] = 5
    bad["litellm_settings"]["enable_cacheing"] = True
    hook = tmp_path / rc.HOOK_FILE
    hook.write_text(rc.hook_source())
    result = subprocess.run(
        [str(found.python), str(LITELLM_CHECK), str(hook)],
        input=json.dumps(bad),
        capture_output=True,
        text=True,
        timeout=240,
        env={"LITELLM_LOCAL_MODEL_COST_MAP": "True", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    problems = json.loads(result.stdout.strip().splitlines()[-1])
    assert "cache_params.tll is not a parameter of Cache" in problems
    assert "litellm_settings.enable_cacheing is no litellm setting" in problems


def test_the_config_names_secrets_only_by_environment_variable() -> None:
    generated = config("http://gw/v1")
    text = json.dumps(generated)
    cache = generated["litellm_settings"]["cache_params"]
    assert cache["password"] == f"os.environ/{rc.REDIS_PASSWORD_ENV}"
    assert generated["general_settings"]["master_key"] == f"os.environ/{rc.MASTER_KEY_ENV}"
    upstream = [m for m in generated["model_list"] if not m["model_name"].endswith(rc.STALE_SUFFIX)]
    assert upstream and all(m["litellm_params"]["api_key"] == f"os.environ/{rc.UPSTREAM_KEY_ENV}" for m in upstream)
    assert cache["ttl"] == LIFETIME_S and cache["namespace"] == rc.KEY_PREFIX
    assert rc.HOOK_CALLBACK in generated["litellm_settings"]["callbacks"]
    assert "sk-" not in text


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        rc.CacheSettings(ttl_s=0)
    with pytest.raises(ValueError, match="at least one model"):
        rc.litellm_config(SETTINGS, [], upstream_base_url="u", tenant_header="t", internal_pass_header="p")
    with pytest.raises(ValueError, match="twice"):
        rc.litellm_config(
            SETTINGS, [rc.CachedModel("m"), rc.CachedModel("m")], upstream_base_url="u", tenant_header="t",
            internal_pass_header="p",
        )  # fmt: skip


def test_stale_serving_is_a_fallback_model_in_the_same_caching_group() -> None:
    on = config("http://gw")
    stale = f"{MODEL_NAME}{rc.STALE_SUFFIX}"
    (entry,) = [m for m in on["model_list"] if m["model_name"] == stale]
    assert entry["litellm_params"]["api_base"] == rc.STALE_NOWHERE
    assert "os.environ" not in json.dumps(entry)  # the internal key goes nowhere but the gateway
    assert {MODEL_NAME: [stale]} in on["router_settings"]["fallbacks"]
    assert [MODEL_NAME, stale] in on["router_settings"]["caching_groups"]
    off = rc.litellm_config(
        rc.CacheSettings(ttl_s=60), [rc.CachedModel("m")], upstream_base_url="u", tenant_header="t",
        internal_pass_header="p",
    )  # fmt: skip
    assert [m["model_name"] for m in off["model_list"]] == ["m"]
    assert "fallbacks" not in off["router_settings"] and off["litellm_settings"]["cache_params"]["ttl"] == 60


def test_proxy_env_carries_the_hook_settings() -> None:
    env = rc.proxy_env(SETTINGS, tenant_header=TENANT_HEADER)
    assert json.loads(env[rc.HOOK_SETTINGS_ENV]) == {
        "tenant_header": TENANT_HEADER,
        "deterministic_only": True,
        "opt_in_tenants": ["beta"],
        "ttl_s": 120,
        "stale_s": 600,
        "stale_suffix": rc.STALE_SUFFIX,
        "master_key_env": rc.MASTER_KEY_ENV,
    }
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"


# --- the real proxy ----------------------------------------------------------------------------------------


class Recorder(BaseHTTPRequestHandler):
    """An OpenAI-shaped upstream that keeps each request's headers and path, and answers chat completions, text
    completions and embeddings (the emulator serves chat completions only)."""

    seen: list[dict[str, str]] = []
    paths: list[str] = []
    failing = False
    """Answer every request with a 500."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        Recorder.seen.append({k.lower(): v for k, v in self.headers.items()})
        Recorder.paths.append(self.path)
        status = 500 if Recorder.failing else 200
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        if self.path.endswith("/embeddings"):
            answer: dict[str, Any] = {
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": RECORDED_EMBEDDING}],
                "model": RECORDED_MODEL,
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }
        elif self.path.endswith("/chat/completions"):
            answer = {
                "id": "chatcmpl-recorded",
                "object": "chat.completion",
                "created": 1,
                "model": RECORDED_MODEL,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": usage,
            }
        else:
            answer = {
                "id": "cmpl-recorded",
                "object": "text_completion",
                "created": 1,
                "model": RECORDED_MODEL,
                "choices": [{"index": 0, "text": RECORDED_TEXT, "finish_reason": "stop", "logprobs": None}],
                "usage": usage,
            }
        if Recorder.failing:
            answer = {"error": {"message": RECORDED_ERROR, "type": "server_error"}}
        body = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Stack:
    def __init__(self, proxy: LiteLLMProxy, redis: RedisServer, emulator: Emulator) -> None:
        self.proxy, self.redis, self.emulator = proxy, redis, emulator
        self.client = httpx.Client(base_url=proxy.url, timeout=TIMEOUT)

    def ask(self, tenant: str | None, content: str, **params: Any) -> httpx.Response:
        body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": content}], "max_tokens": 8, **params}
        response = self.client.post("/v1/chat/completions", headers=self.proxy.headers(tenant), json=body)
        return response

    def stored(self, tenant: str) -> set[str]:
        return self.redis.keys(f"{rc.KEY_PREFIX}:{tenant}:*")

    def wait_stored(self, tenant: str, before: set[str]) -> set[str]:
        """LiteLLM writes the entry in a background task after answering: wait (bounded) until it is there."""
        deadline = time.monotonic() + 15
        while (now := self.stored(tenant)) == before:
            assert time.monotonic() < deadline, f"no new cache entry for {tenant} within 15 s"
            time.sleep(0.05)
        return now - before


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    found: Tools = tools()
    recorder = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    emulator = Emulator(EmulatorConfig(ttft_s=0.01, itl_s=0.001, output_tokens=8)).start()
    try:
        with RedisServer(found) as redis:
            recorder_url = f"http://127.0.0.1:{recorder.server_address[1]}/v1"
            proxy = LiteLLMProxy(
                found,
                tmp_path_factory.mktemp("litellm"),
                config(emulator.url, recorder_url),
                rc.proxy_env(SETTINGS, tenant_header=TENANT_HEADER),
                redis,
            )
            # The emulator stands for the gateway's internal pass: it accepts the internal key only.
            emulator.set_config(api_keys=frozenset({proxy.upstream_key}))
            with proxy:
                yield Stack(proxy, redis, emulator)
    finally:
        emulator.close()
        recorder.shutdown()


def test_a_repeated_deterministic_request_is_served_from_the_cache(stack: Stack) -> None:
    served = stack.emulator.requests_served
    first = stack.ask("alpha", "what is 2+2?", temperature=0)
    assert first.status_code == 200, first.text
    assert rc.HIT_HEADER not in first.headers
    (key,) = stack.wait_stored("alpha", set())
    second = stack.ask("alpha", "what is 2+2?", temperature=0)
    assert second.status_code == 200
    assert second.headers[rc.HIT_HEADER] == key.removeprefix(f"{rc.KEY_PREFIX}:")
    assert second.json()["choices"][0]["message"]["content"] == first.json()["choices"][0]["message"]["content"]
    assert stack.emulator.requests_served == served + 1
    # Stored for the configured lifetime, no longer.
    assert SETTINGS.ttl_s < int(stack.redis.cli("TTL", key)) <= LIFETIME_S


def test_top_k_1_is_deterministic_too(stack: Stack) -> None:
    before = stack.stored("alpha")
    stack.ask("alpha", "greedy by top_k", temperature=0.9, top_k=1)
    stack.wait_stored("alpha", before)
    assert rc.HIT_HEADER in stack.ask("alpha", "greedy by top_k", temperature=0.9, top_k=1).headers


def test_another_tenant_never_sees_the_entry(stack: Stack) -> None:
    before = stack.stored("alpha")
    stack.ask("alpha", "isolation", temperature=0)
    stack.wait_stored("alpha", before)
    served = stack.emulator.requests_served
    other = stack.ask("gamma", "isolation", temperature=0)
    assert other.status_code == 200 and rc.HIT_HEADER not in other.headers
    # Not even by naming the other tenant's namespace itself: the hook overwrites the client's cache controls.
    forged = stack.ask("delta", "isolation", temperature=0, cache={"namespace": "alpha"})
    assert rc.HIT_HEADER not in forged.headers
    assert stack.emulator.requests_served == served + 2
    # Each tenant then hits its own entry.
    stack.wait_stored("gamma", set())
    assert stack.ask("gamma", "isolation", temperature=0).headers[rc.HIT_HEADER].startswith("gamma:")


def test_a_client_cannot_name_the_cache_key(stack: Stack) -> None:
    # LiteLLM takes a body `cache_key` (or `litellm_params.preset_cache_key`) as the whole Redis key, namespace
    # included; the hook drops both. Without that, "epsilon" read alpha's entries and wrote into them (tried).
    before = stack.stored("alpha")
    stack.ask("alpha", "alpha's own prompt", temperature=0)
    (entry,) = stack.wait_stored("alpha", before)
    alphas = entry.removeprefix(f"{rc.KEY_PREFIX}:")
    for forged in ({"cache_key": alphas}, {"litellm_params": {"preset_cache_key": alphas}}):
        read = stack.ask("epsilon", "anything else", temperature=0, **forged)
        assert read.status_code == 200 and rc.HIT_HEADER not in read.headers, forged
    # Writing: epsilon learns the hash of a prompt alpha has not asked (the same for every tenant, after the
    # namespace), then sends another prompt under alpha's key for it.
    before = stack.stored("epsilon")
    stack.ask("epsilon", "alpha asks this later", temperature=0)
    (learned,) = stack.wait_stored("epsilon", before)
    target = "alpha:" + learned.rsplit(":", 1)[1]
    alpha_before = stack.stored("alpha")
    before = stack.stored("epsilon")
    stack.ask("epsilon", "an answer of epsilon's choosing", temperature=0, cache_key=target)
    stack.wait_stored("epsilon", before)  # stored, in epsilon's own namespace
    assert stack.stored("alpha") == alpha_before
    served = stack.emulator.requests_served
    assert rc.HIT_HEADER not in stack.ask("alpha", "alpha asks this later", temperature=0).headers
    assert stack.emulator.requests_served == served + 1


def test_sampled_requests_are_not_cached_unless_the_tenant_opted_in(stack: Stack) -> None:
    served = stack.emulator.requests_served
    for _ in range(2):
        assert rc.HIT_HEADER not in stack.ask("alpha", "a poem", temperature=0.7).headers
    for _ in range(2):  # no temperature at all: the engine's default samples
        assert rc.HIT_HEADER not in stack.ask("alpha", "a poem").headers
    assert rc.HIT_HEADER not in stack.ask("alpha", "two answers", temperature=0, n=2).headers
    assert stack.emulator.requests_served == served + 5
    before = stack.stored("beta")
    stack.ask("beta", "a poem", temperature=0.7)
    stack.wait_stored("beta", before)
    assert rc.HIT_HEADER in stack.ask("beta", "a poem", temperature=0.7).headers


def test_no_tenant_no_cache(stack: Stack) -> None:
    served = stack.emulator.requests_served
    for _ in range(2):
        assert rc.HIT_HEADER not in stack.ask(None, "anonymous", temperature=0).headers
    assert stack.emulator.requests_served == served + 2
    assert stack.redis.keys(f"{rc.KEY_PREFIX}:anonymous*") == set()


def test_sampling_parameters_are_part_of_the_key(stack: Stack) -> None:
    before = stack.stored("alpha")
    stack.ask("alpha", "keyed", temperature=0, max_tokens=8)
    stack.wait_stored("alpha", before)
    assert rc.HIT_HEADER not in stack.ask("alpha", "keyed", temperature=0, max_tokens=4).headers
    # A parameter LiteLLM does not know (vLLM's) is keyed as well.
    assert rc.HIT_HEADER not in stack.ask("alpha", "keyed", temperature=0, max_tokens=8, min_p=0.5).headers


def test_an_entry_expires_after_its_ttl(stack: Stack) -> None:
    before = stack.stored("alpha")
    stack.ask("alpha", "short-lived", temperature=0, cache={"ttl": 1})
    (key,) = stack.wait_stored("alpha", before)
    deadline = time.monotonic() + 10
    while stack.redis.cli("EXISTS", key) != "0":  # Redis drops it once its second is over
        assert time.monotonic() < deadline, "entry with ttl 1 s still there after 10 s"
        time.sleep(0.1)
    served = stack.emulator.requests_served
    assert rc.HIT_HEADER not in stack.ask("alpha", "short-lived", temperature=0, cache={"ttl": 1}).headers
    assert stack.emulator.requests_served == served + 1


def test_a_client_cannot_keep_an_entry_longer_than_the_ttl(stack: Stack) -> None:
    before = stack.stored("alpha")
    stack.ask("alpha", "forever", temperature=0, cache={"ttl": 10**7})
    (key,) = stack.wait_stored("alpha", before)
    assert 0 < int(stack.redis.cli("TTL", key)) <= LIFETIME_S


def test_errors_are_not_cached(stack: Stack) -> None:
    stack.emulator.set_config(error_status_rate=1.0)
    try:
        failed = stack.ask("alpha", "fails once", temperature=0)
    finally:
        stack.emulator.set_config(error_status_rate=0.0)
    assert failed.status_code >= 500
    time.sleep(0.5)  # a write, were there one, is a background task
    served = stack.emulator.requests_served
    retried = stack.ask("alpha", "fails once", temperature=0)
    assert retried.status_code == 200 and rc.HIT_HEADER not in retried.headers
    assert stack.emulator.requests_served == served + 1


def stream_text(stack: Stack, content: str, **params: Any) -> tuple[httpx.Headers, str]:
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 8,
        "temperature": 0,
        "stream": True,
        **params,
    }
    text = ""
    with stack.client.stream("POST", "/v1/chat/completions", headers=stack.proxy.headers("alpha"), json=body) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                for choice in json.loads(line[6:]).get("choices", []):
                    text += choice.get("delta", {}).get("content") or ""
        return r.headers, text


def test_a_streamed_deterministic_request_is_replayed_as_a_stream(stack: Stack) -> None:
    served = stack.emulator.requests_served
    before = stack.stored("alpha")
    misses = stack.proxy.counter(MISS_METRIC)
    headers, text = stream_text(stack, "stream this")
    assert rc.HIT_HEADER not in headers and text.strip()
    stack.wait_stored("alpha", before)
    # LiteLLM's miss counter does move for a streamed miss (only for those: see rc.REQUESTS_METRIC).
    deadline = time.monotonic() + 15
    while stack.proxy.counter(MISS_METRIC) < misses + 1:
        assert time.monotonic() < deadline, f"{MISS_METRIC} did not move for a streamed miss within 15 s"
        time.sleep(0.1)
    headers, replayed = stream_text(stack, "stream this")
    assert rc.HIT_HEADER in headers
    assert replayed == text
    assert stack.emulator.requests_served == served + 1


def test_hits_and_requests_are_counted_on_metrics(stack: Stack) -> None:
    hits, requests = stack.proxy.counter(rc.HIT_METRIC), stack.proxy.counter(rc.REQUESTS_METRIC)
    misses = stack.proxy.counter(MISS_METRIC)
    before = stack.stored("alpha")
    stack.ask("alpha", "counted", temperature=0)
    stack.wait_stored("alpha", before)
    assert rc.HIT_HEADER in stack.ask("alpha", "counted", temperature=0).headers
    deadline = time.monotonic() + 15  # the Prometheus callback runs after the response
    while stack.proxy.counter(rc.HIT_METRIC) < hits + 1 or stack.proxy.counter(rc.REQUESTS_METRIC) < requests + 2:
        assert time.monotonic() < deadline, "hit/request counters did not move within 15 s"
        time.sleep(0.1)
    assert stack.proxy.counter(rc.HIT_METRIC) == hits + 1
    # Why the hit ratio is hits / requests: a plain (not streamed) miss leaves LiteLLM's miss counter where it was.
    assert stack.proxy.counter(MISS_METRIC) == misses


def test_a_client_s_user_agent_is_no_metric_label(stack: Stack) -> None:
    # LiteLLM 1.108.5 labels its request counters with the client's User-Agent: each distinct one a new series.
    requests = stack.proxy.counter(rc.REQUESTS_METRIC)
    body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "labelled"}], "max_tokens": 8}
    headers = {**stack.proxy.headers("alpha"), "user-agent": "tenant-chosen-agent-1"}
    assert stack.client.post("/v1/chat/completions", headers=headers, json=body).status_code == 200
    deadline = time.monotonic() + 15
    while stack.proxy.counter(rc.REQUESTS_METRIC) < requests + 1:
        assert time.monotonic() < deadline, "the request counter did not move within 15 s"
        time.sleep(0.1)
    text = httpx.get(f"{stack.proxy.url}/metrics/", timeout=10).text
    assert "tenant-chosen-agent-1" not in text
    assert not [line for line in text.splitlines() if any(f'{label}="' in line for label in rc.EXCLUDED_METRIC_LABELS)]


def test_stale_entries_answer_only_when_the_model_fails(stack: Stack) -> None:
    before = stack.stored("alpha")
    first = stack.ask("alpha", "degrade gracefully", temperature=0)
    stack.wait_stored("alpha", before)
    time.sleep(1.5)  # older than the freshness this client asks for below (s-maxage 1 s): a minimum, not a timing
    stack.emulator.set_config(error_status_rate=1.0)
    try:
        stale = stack.ask("alpha", "degrade gracefully", temperature=0, cache={"s-maxage": 1})
        unknown = stack.ask("alpha", "never asked before", temperature=0)
        sampled = stack.ask("alpha", "degrade gracefully", temperature=0.7)
    finally:
        stack.emulator.set_config(error_status_rate=0.0)
    assert stale.status_code == 200, stale.text
    assert rc.HIT_HEADER in stale.headers and stale.headers[rc.STALE_MARK_HEADER] == "1"
    assert stale.json()["choices"] == first.json()["choices"]
    # Nothing stale to serve (no entry, or a request that may not use the cache): the upstream's error.
    assert unknown.status_code >= 500 and "emulated server error" in unknown.text
    assert sampled.status_code >= 500
    # While the model answers, an entry older than the freshness limit is not served: the request goes upstream.
    served = stack.emulator.requests_served
    fresh = stack.ask("alpha", "degrade gracefully", temperature=0, cache={"s-maxage": 1})
    assert fresh.status_code == 200 and rc.HIT_HEADER not in fresh.headers
    assert fresh.headers[rc.STALE_MARK_HEADER] == "0"
    assert stack.emulator.requests_served == served + 1


def test_the_master_key_opens_no_admin_route(stack: Stack) -> None:
    admin = httpx.Client(base_url=stack.proxy.url, timeout=TIMEOUT, headers=stack.proxy.headers("alpha"))
    before = stack.stored("alpha")
    stack.ask("alpha", "survives a flush", temperature=0)
    stack.wait_stored("alpha", before)
    for method, path in [("POST", "/cache/flushall"), ("POST", "/cache/delete"), ("GET", "/get/config/callbacks")]:
        response = admin.request(method, path, json={"keys": []} if method == "POST" else None)
        assert response.status_code in (401, 403), f"{path}: {response.status_code} {response.text[:200]}"
    assert stack.stored("alpha") >= before  # nothing flushed
    assert rc.HIT_HEADER in stack.ask("alpha", "survives a flush", temperature=0).headers
    wrong = stack.client.post(
        "/v1/chat/completions",
        headers={"authorization": "Bearer sk-not-the-key", TENANT_HEADER: "alpha"},
        json={"model": MODEL_NAME, "messages": [{"role": "user", "content": "x"}], "temperature": 0},
    )
    assert wrong.status_code in (401, 403)
    # What the pod's probes and Prometheus call needs no key.
    for path in ("/health/liveliness", "/health/readiness", "/metrics/"):
        assert httpx.get(f"{stack.proxy.url}{path}", timeout=TIMEOUT).status_code == 200, path


def test_a_streamed_request_is_served_stale_as_a_stream(stack: Stack) -> None:
    before = stack.stored("alpha")
    _, text = stream_text(stack, "stream when down")
    stack.wait_stored("alpha", before)
    time.sleep(1.5)  # older than s-maxage 1 s below: a minimum
    stack.emulator.set_config(error_status_rate=1.0)
    try:
        headers, replayed = stream_text(stack, "stream when down", cache={"s-maxage": 1})
    finally:
        stack.emulator.set_config(error_status_rate=0.0)
    assert rc.HIT_HEADER in headers and headers[rc.STALE_MARK_HEADER] == "1"
    assert replayed == text and text.strip()


def test_a_miss_goes_upstream_with_the_internal_key_and_pass_header(stack: Stack) -> None:
    Recorder.seen.clear()
    body = {"model": RECORDED_MODEL, "messages": [{"role": "user", "content": "who?"}], "temperature": 0}
    response = stack.client.post("/v1/chat/completions", headers=stack.proxy.headers("alpha"), json=body)
    assert response.status_code == 200, response.text
    (seen,) = Recorder.seen
    assert seen["authorization"] == f"Bearer {stack.proxy.upstream_key}"
    assert seen[PASS_HEADER] == "1"
    assert stack.proxy.master_key not in json.dumps(seen)


def test_a_cached_model_s_completions_and_embeddings_pass_through_uncached(stack: Stack) -> None:
    # The cache's gateway rule matches the model on every path, so these reach the proxy too: it must serve them
    # (the async queue's jobs use them), from the model's upstream, with the internal key and pass header, and
    # never from the cache (the cache is for chat completions: a repeat goes upstream again, nothing is stored).
    before = stack.stored("alpha")
    calls = [
        ("/v1/completions", {"prompt": "say hi", "max_tokens": 4, "temperature": 0}),
        ("/v1/embeddings", {"input": "embed me"}),
        ("/completions", {"prompt": "say hi", "max_tokens": 4, "temperature": 0}),
        ("/embeddings", {"input": "embed me"}),
    ]
    for path, params in calls:
        Recorder.seen.clear()
        Recorder.paths.clear()
        for _ in range(2):
            response = stack.client.post(
                path, headers=stack.proxy.headers("alpha"), json={"model": RECORDED_MODEL, **params}
            )
            assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:300]}"
            assert rc.HIT_HEADER not in response.headers, path
            if path.endswith("embeddings"):
                assert response.json()["data"][0]["embedding"] == RECORDED_EMBEDDING
            else:
                assert response.json()["choices"][0]["text"] == RECORDED_TEXT
        upstream = "/v1/embeddings" if path.endswith("embeddings") else "/v1/completions"
        assert Recorder.paths == [upstream, upstream], path
        assert all(s["authorization"] == f"Bearer {stack.proxy.upstream_key}" for s in Recorder.seen)
        assert all(s[PASS_HEADER] == "1" for s in Recorder.seen)
    time.sleep(0.5)  # a write, were there one, is a background task
    assert stack.stored("alpha") == before
    # A failing upstream's error reaches the client: the stale fallback has nothing to serve for these.
    Recorder.failing = True
    try:
        failed = stack.client.post(
            "/v1/completions",
            headers=stack.proxy.headers("alpha"),
            json={"model": RECORDED_MODEL, "prompt": "say hi", "max_tokens": 4, "temperature": 0},
        )
    finally:
        Recorder.failing = False
    assert failed.status_code >= 500 and RECORDED_ERROR in failed.text, failed.text[:300]
