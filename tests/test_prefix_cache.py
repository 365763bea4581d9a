"""The emulator's per-replica prefix cache and the shared-prefix workload, checked against known truth.

The cache's arithmetic is exact (tokens cached, LRU eviction), so those checks are equalities. Timing
checks are minimums only (an uncached prompt takes at least its prefill time), never an upper bound:
the shared machine's load can only add time.
"""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path

import httpx
import pytest
from support.locust_harness import run_locust

from llmfleet.loadtests.conversations import SharedPrefixPrompts, system_prompt
from llmfleet.loadtests.emulator import Emulator, EmulatorConfig
from llmfleet.loadtests.prefix_cache import PrefixCache, chat_tokens
from llmfleet.loadtests.prompts import ChatPrompt, WorkloadError, chat_body
from llmfleet.loadtests.stats import prefix_cache_hit_share, summarize
from llmfleet.loadtests.stream import StreamMeter, measure_response

WORDS = [f"w{i}" for i in range(200)]


def test_a_repeated_prefix_is_served_from_whole_blocks() -> None:
    cache = PrefixCache(capacity_tokens=1600, block_tokens=16)
    first = cache.lookup_and_insert(WORDS[:100])
    assert (first.prompt_tokens, first.cached_tokens) == (100, 0)
    # Same first 100 tokens, then different ones: the 6 full blocks (96 tokens) are reused.
    second = cache.lookup_and_insert([*WORDS[:100], "x", "y"])
    assert second.cached_tokens == 96
    # A prompt that differs in its first token shares nothing, even with the same tail (chained hashes).
    assert cache.lookup_and_insert(["z", *WORDS[1:100]]).cached_tokens == 0
    assert (cache.queries_tokens, cache.hits_tokens) == (100 + 102 + 100, 96)


def test_the_last_prompt_token_is_always_computed() -> None:
    cache = PrefixCache(capacity_tokens=1600, block_tokens=16)
    cache.lookup_and_insert(WORDS[:32])
    assert cache.lookup_and_insert(WORDS[:32]).cached_tokens == 31


def test_least_recently_used_blocks_are_evicted_at_capacity() -> None:
    cache = PrefixCache(capacity_tokens=64, block_tokens=16)  # 4 blocks
    a, b = WORDS[:32], WORDS[100:132]
    cache.lookup_and_insert(a)  # 2 blocks
    cache.lookup_and_insert(b)  # 2 blocks: full
    cache.lookup_and_insert([*a, "q"])  # touches a: b is now the oldest
    cache.lookup_and_insert(WORDS[150:182])  # 2 new blocks evict b's two
    assert len(cache) == 4
    assert cache.holds_prefix_of(a) == 32
    assert cache.holds_prefix_of(b) == 0


def test_a_zero_capacity_cache_holds_nothing() -> None:
    cache = PrefixCache(capacity_tokens=0)
    cache.lookup_and_insert(WORDS[:64])
    assert cache.lookup_and_insert(WORDS[:64]).cached_tokens == 0
    with pytest.raises(ValueError):
        PrefixCache(capacity_tokens=-1)


def test_chat_tokens_count_roles_and_words() -> None:
    messages = [{"role": "system", "content": "a b c"}, {"role": "user", "content": "d  e\nf"}]
    assert chat_tokens(messages) == ["<system>", "a", "b", "c", "<user>", "d", "e", "f"]
    assert chat_tokens("not a list") == []


def test_conversations_share_their_group_prefix_and_resend_history() -> None:
    one = SharedPrefixPrompts(groups=3, prefix_tokens=50, turns=3, prompt_tokens=10, output_tokens=8, seed="a")
    other = SharedPrefixPrompts(groups=3, prefix_tokens=50, turns=3, prompt_tokens=10, output_tokens=8, seed="b")
    turns = [one.next() for _ in range(3)]
    assert [len(t.messages) for t in turns] == [2, 4, 6]  # system + user, then + reply + user each turn
    for earlier, later in itertools.pairwise(turns):
        assert later.messages[: len(earlier.messages)] == earlier.messages  # the history is resent as it was
    assert turns[0].messages[0]["content"] == system_prompt(one.group, 50)
    assert len(turns[0].messages[0]["content"].split()) == 50
    assert len(turns[0].messages[1]["content"].split()) == 10  # "Request a-0:" + 8 words
    assert one.next().messages[0]["role"] == "system" and len(one.next().messages) == 4  # a new conversation
    # Every user builds the same text for a group; user messages differ.
    firsts = {other.next().messages[0]["content"] for _ in range(30)}
    assert firsts == {system_prompt(g, 50) for g in range(3)}
    assert system_prompt(0, 50) != system_prompt(1, 50)
    with pytest.raises(WorkloadError, match="turns must be at least 1"):
        SharedPrefixPrompts(groups=1, turns=0)


def _stream(client: httpx.Client, url: str, messages: list[dict[str, str]]) -> tuple[float, int | None, int | None]:
    body = chat_body("emulated-model", ChatPrompt(messages, 2), stream=True)
    started = time.perf_counter()
    meter = StreamMeter(started)
    with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        for line in response.iter_lines():
            meter.feed_line(line)
    sample = meter.finish(response.status_code)
    assert sample.ok and sample.first_token_at is not None, sample
    return sample.first_token_at - started, sample.prompt_tokens, sample.cached_prompt_tokens


def test_emulator_ttft_grows_with_the_uncached_prompt_and_reports_cached_tokens() -> None:
    config = EmulatorConfig(ttft_s=0.01, itl_s=0.001, prefix_cache_tokens=4096, prefill_s_per_token=0.0005)
    system = {"role": "system", "content": system_prompt(0, 400)}  # 401 tokens with its role
    with Emulator(config) as em, httpx.Client(timeout=10) as client:
        cold, prompt, cached = _stream(client, em.url, [system, {"role": "user", "content": "one two"}])
        assert (prompt, cached) == (404, 0)
        assert cold >= 0.01 + 404 * 0.0005  # a minimum: the whole prompt was prefilled
        warm, prompt, cached = _stream(client, em.url, [system, {"role": "user", "content": "three four"}])
        assert (prompt, cached) == (404, 400)  # 25 whole blocks of the shared 401 tokens
        assert warm >= 0.01 + 4 * 0.0005
        metrics = client.get(f"{em.url}/metrics").text
        assert 'vllm:prefix_cache_queries_total{model_name="emulated-model"} 808' in metrics
        assert 'vllm:prefix_cache_hits_total{model_name="emulated-model"} 400' in metrics
        # Non-streamed responses report the same usage.
        payload = chat_body("emulated-model", ChatPrompt([system], 2), stream=False)
        response = client.post(f"{em.url}/v1/chat/completions", json=payload)
        sample = measure_response(0.0, 1.0, response.status_code, response.content)
        assert (sample.prompt_tokens, sample.cached_prompt_tokens) == (401, 400)


def test_without_a_cache_nothing_is_cached_and_the_hit_share_is_zero() -> None:
    with Emulator(EmulatorConfig(ttft_s=0.0, itl_s=0.0)) as em, httpx.Client(timeout=10) as client:
        for _ in range(2):
            _, prompt, cached = _stream(client, em.url, [{"role": "user", "content": "same words again"}])
            assert (prompt, cached) == (4, 0)
        assert em.prefix_cache.hits_tokens == 0
    assert math.isnan(prefix_cache_hit_share([]))


def test_the_gate_reports_the_emulator_s_own_cache_hit_share(tmp_path: Path) -> None:
    """A Locust run of the shared-prefix workload: the verdict's hit share is the emulator's truth."""
    config = EmulatorConfig(ttft_s=0.0, itl_s=0.001, prefix_cache_tokens=1 << 20)
    with Emulator(config) as em:
        run = run_locust(
            "steady",
            em.url,
            tmp_path,
            *("-u", "3", "-r", "3", "--llm-requests-per-user", "6", "--llm-warmup", "0", "--llm-min-samples", "10"),
            *("--llm-prefix-groups", "2", "--llm-prefix-tokens", "256", "--llm-turns", "3"),
            *("--llm-prompt-tokens", "16", "--llm-output-tokens", "4"),
        )
        truth = em.prefix_cache.hits_tokens / em.prefix_cache.queries_tokens
    assert run.code == 0, run
    assert len(run.samples) == 18
    assert run.verdict["metrics"]["prefix_cache_hit_share"] == pytest.approx(truth, rel=1e-9)
    assert summarize(run.samples).prefix_cache_hit_share == pytest.approx(truth, rel=1e-9)
    # 18 requests over 2 prefixes of 257 tokens: at most 2 cold starts, so most of every prompt is cached.
    assert truth > 0.5
