"""Benchmark: the response cache (LiteLLM's proxy at the pinned release, real Redis) in front of the emulator.

Run it as a script, not under pytest (it needs .tools/litellm and redis-server, as tests/test_response_cache.py):

    .venv/bin/python tests/benchmarks/bench_cache.py [--prompts 200] [--requests 600] [--users 4] [--zipf 1.1]

One proxy with the config `litellm_config` generates and the shipped hook, Redis on loopback, the emulator as the
upstream (as the gateway's internal pass would be). Two workloads, through the same proxy:

1. repeated prompts: `--requests` temperature-0 chat completions whose prompt is drawn from `--prompts` distinct
   ones with Zipf(`--zipf`) popularity, by `--users` concurrent clients. Each answer is a hit or a miss by the
   `x-litellm-cache-key` header; printed: hit rate (and the most a cache could hit: 1 - distinct/requests),
   latency p50/p95 of hits and of misses, and the proxy's own hit counter as a cross-check.
2. the proxy hop: cache-ineligible requests (temperature 0.7, so the hook sets no-cache/no-store) through the
   proxy, interleaved with the same requests sent straight to the emulator: p50/p95 of both and the difference,
   which is what the extra hop costs a request the cache cannot serve;
3. the same streamed: time to the first token and to the end, through the proxy and straight (whether the proxy
   passes tokens on as they come).

Latencies depend on the machine's load (a shared 2-core box here; printed before and after): compare the
columns of one run, not runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, when run as a script
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for support.litellm_proxy

from support.litellm_proxy import LiteLLMProxy, RedisServer, Tools, pinned_version, tools

from llmfleet.components.gateway import response_cache as rc
from llmfleet.components.gateway.types import TENANT_HEADER
from llmfleet.loadtests.emulator import MODEL_NAME, Emulator, EmulatorConfig
from llmfleet.loadtests.stats import percentile

TENANT = "bench"
SETTINGS = rc.CacheSettings(ttl_s=600)


@dataclass
class Samples:
    hit_s: list[float] = field(default_factory=list[float])
    miss_s: list[float] = field(default_factory=list[float])
    errors: int = 0


def zipf_draws(prompts: int, requests: int, exponent: float, seed: int) -> list[int]:
    weights = [1 / (rank**exponent) for rank in range(1, prompts + 1)]
    return random.Random(seed).choices(range(prompts), weights=weights, k=requests)


def body(prompt: int, temperature: float) -> dict[str, object]:
    content = f"Question {prompt}: summarise the paragraph numbered {prompt} in one sentence."
    return {"model": MODEL_NAME, "messages": [{"role": "user", "content": content}], "temperature": temperature}


def repeated_prompts(proxy: LiteLLMProxy, draws: Sequence[int], users: int) -> Samples:
    samples, lock = Samples(), threading.Lock()
    queue = iter(draws)

    def user() -> None:
        with httpx.Client(base_url=proxy.url, timeout=60, headers=proxy.headers(TENANT)) as client:
            while True:
                with lock:
                    prompt = next(queue, None)
                if prompt is None:
                    return
                start = time.perf_counter()
                response = client.post("/v1/chat/completions", json=body(prompt, 0))
                elapsed = time.perf_counter() - start
                with lock:
                    if response.status_code != 200:
                        samples.errors += 1
                    elif rc.HIT_HEADER in response.headers:
                        samples.hit_s.append(elapsed)
                    else:
                        samples.miss_s.append(elapsed)

    threads = [threading.Thread(target=user) for _ in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    return samples


def proxy_hop(proxy: LiteLLMProxy, emulator: Emulator, requests: int) -> tuple[list[float], list[float], int]:
    """Sequential pairs, alternating which goes first, so both see the same load."""
    via, direct, errors = [], [], 0
    with (
        httpx.Client(base_url=proxy.url, timeout=60, headers=proxy.headers(TENANT)) as through,
        httpx.Client(
            base_url=emulator.url, timeout=60, headers={"authorization": f"Bearer {proxy.upstream_key}"}
        ) as raw,
    ):
        for i in range(requests):
            order = [(through, via), (raw, direct)] if i % 2 == 0 else [(raw, direct), (through, via)]
            for client, sink in order:
                start = time.perf_counter()
                response = client.post("/v1/chat/completions", json=body(10_000 + i, 0.7))
                elapsed = time.perf_counter() - start
                if response.status_code != 200 or rc.HIT_HEADER in response.headers:
                    errors += 1
                else:
                    sink.append(elapsed)
    return via, direct, errors


def content(chunk: dict[str, Any]) -> str:
    choices = chunk.get("choices") or [{}]
    return str((choices[0].get("delta") or {}).get("content") or "")


def first_token_s(client: httpx.Client, payload: dict[str, object]) -> tuple[float, float] | None:
    """(time to the first content token, time to the end) of one streamed request; None if it failed or hit."""
    start, first = time.perf_counter(), None
    with client.stream("POST", "/v1/chat/completions", json=payload | {"stream": True}) as response:
        if response.status_code != 200 or rc.HIT_HEADER in response.headers:
            return None
        for line in response.iter_lines():
            if first is None and line.startswith("data: {") and content(json.loads(line[6:])):
                first = time.perf_counter() - start
    return (first, time.perf_counter() - start) if first is not None else None


def streamed_hop(proxy: LiteLLMProxy, emulator: Emulator, requests: int) -> tuple[list[list[float]], int]:
    """As proxy_hop, streamed: [via TTFT, direct TTFT, via total, direct total], errors. Shows whether the proxy
    passes tokens on as they come (TTFT barely moves) or buffers them (TTFT near the total)."""
    series: list[list[float]] = [[], [], [], []]
    errors = 0
    with (
        httpx.Client(base_url=proxy.url, timeout=60, headers=proxy.headers(TENANT)) as through,
        httpx.Client(
            base_url=emulator.url, timeout=60, headers={"authorization": f"Bearer {proxy.upstream_key}"}
        ) as raw,
    ):
        for i in range(requests):
            order = [(through, 0), (raw, 1)] if i % 2 == 0 else [(raw, 1), (through, 0)]
            for client, column in order:
                measured = first_token_s(client, body(20_000 + i, 0.7))
                if measured is None:
                    errors += 1
                else:
                    series[column].append(measured[0])
                    series[column + 2].append(measured[1])
    return series, errors


def ms(values: Sequence[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.1f}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--hop-requests", type=int, default=100)
    parser.add_argument("--ttft-ms", type=float, default=50.0)
    parser.add_argument("--itl-ms", type=float, default=5.0)
    parser.add_argument("--output-tokens", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    try:
        found: Tools = tools()
    except BaseException as missing:  # pytest's skip outside pytest: say what is missing and stop
        raise SystemExit(str(missing)) from None
    print(f"load average at start: {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs")
    emulated = EmulatorConfig(ttft_s=args.ttft_ms / 1000, itl_s=args.itl_ms / 1000, output_tokens=args.output_tokens)
    print(
        f"upstream: emulator, TTFT {args.ttft_ms:.0f} ms + {args.itl_ms:.0f} ms x {args.output_tokens} tokens, "
        f"not streamed; proxy: LiteLLM {pinned_version()} with Redis on loopback"
    )
    with Emulator(emulated) as emulator, RedisServer(found) as redis, tempfile.TemporaryDirectory() as folder:
        config = rc.litellm_config(
            SETTINGS,
            [rc.CachedModel(MODEL_NAME)],
            upstream_base_url=f"{emulator.url}/v1",
            tenant_header=TENANT_HEADER,
            internal_pass_header="x-llmfleet-cache-pass",
        )
        proxy = LiteLLMProxy(found, Path(folder), config, rc.proxy_env(SETTINGS, tenant_header=TENANT_HEADER), redis)
        emulator.set_config(api_keys=frozenset({proxy.upstream_key}))
        with proxy:
            draws = zipf_draws(args.prompts, args.requests, args.zipf, args.seed)
            served_before, hits_before = emulator.requests_served, proxy.counter(rc.HIT_METRIC)
            start = time.perf_counter()
            samples = repeated_prompts(proxy, draws, args.users)
            wall = time.perf_counter() - start
            time.sleep(1.0)  # the Prometheus callback runs after each response
            counted = proxy.counter(rc.HIT_METRIC) - hits_before
            answered = len(samples.hit_s) + len(samples.miss_s)
            distinct = len(set(draws))
            print(
                f"\n1. repeated prompts: {args.requests} requests over {args.prompts} prompts, Zipf {args.zipf} "
                f"({distinct} distinct drawn), {args.users} users, temperature 0; wall {wall:.1f} s"
            )
            print(f"   hit rate {len(samples.hit_s) / max(answered, 1):.1%} (at most {1 - distinct / len(draws):.1%}: "
                  f"each distinct prompt misses once); errors {samples.errors}")  # fmt: skip
            print(
                f"   proxy's {rc.HIT_METRIC}: +{counted:.0f}; "
                f"upstream requests: {emulator.requests_served - served_before}"
            )
            print(f"   {'':10}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}")
            for name, values in (("hit", samples.hit_s), ("miss", samples.miss_s)):
                print(f"   {name:10}{len(values):>6}{ms(values, 50):>10}{ms(values, 95):>10}")
            via, direct, errors = proxy_hop(proxy, emulator, args.hop_requests)
            print(
                f"\n2. the proxy hop on cache-ineligible requests (temperature 0.7), {args.hop_requests} pairs, "
                f"errors {errors}"
            )
            print(f"   {'':22}{'p50 ms':>10}{'p95 ms':>10}")
            print(f"   {'through the proxy':22}{ms(via, 50):>10}{ms(via, 95):>10}")
            print(f"   {'straight to upstream':22}{ms(direct, 50):>10}{ms(direct, 95):>10}")
            if via and direct:
                extra50 = (percentile(via, 50) - percentile(direct, 50)) * 1000
                extra95 = (percentile(via, 95) - percentile(direct, 95)) * 1000
                print(f"   {'added by the hop':22}{extra50:>10.1f}{extra95:>10.1f}")
            (via_ttft, direct_ttft, via_total, direct_total), errors = streamed_hop(proxy, emulator, args.hop_requests)
            print(f"\n3. the same, streamed, {args.hop_requests} pairs, errors {errors}")
            print(f"   {'':22}{'TTFT p50':>10}{'TTFT p95':>10}{'end p50':>10}{'end p95':>10}")
            for name, ttft, total in (
                ("through the proxy", via_ttft, via_total),
                ("straight to upstream", direct_ttft, direct_total),
            ):
                print(f"   {name:22}{ms(ttft, 50):>10}{ms(ttft, 95):>10}{ms(total, 50):>10}{ms(total, 95):>10}")
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    import benchdoc  # tests/benchmarks/, beside this script: --write-docs records the output

    benchdoc.run("cache", main)
