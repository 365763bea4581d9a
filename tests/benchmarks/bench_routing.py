"""Benchmark: TTFT and prefix-cache hits with requests spread evenly vs sent to the replica holding the prefix.

Run it as a script, not under pytest:

    .venv/bin/python tests/benchmarks/bench_routing.py [--users 8] [--conversations 6] [--groups 16] ...

Four emulator replicas (loadtests/emulator.py), each with its own prefix cache (LRU at a set capacity,
TTFT = base + prefill time per uncached prompt token), serve the shared-prefix multi-turn workload of the
Locust suites (loadtests/conversations.py: conversations over shared system prompts, each turn resending
its history). The same requests are sent twice, by two routers in this script:

- `spread`: round robin over the replicas, as a Service spreads requests without knowing their prompts;
- `prefix-affinity`: THE BENCHMARK'S STAND-IN FOR THE ENDPOINT PICKER, not the product's router. It
  scores the replicas the way the upstream picker's default profile does, with the weights the render
  produces: prefix-cache-scorer (the share of the prompt's 16-token blocks it last sent to that replica,
  from its own per-replica LRU index, as the picker's approximate index does) and queue-scorer (fewer
  requests in flight, min-max normalised); kv-cache-utilization-scorer is left out (the emulator has no
  KV-cache gauge; with equal replicas it would not separate them). The product runs the real picker
  (components/routing; docs/routing.md).

Printed side by side: TTFT p50 / p95 and the cache-hit share the replicas report (usage.cached_tokens),
then the picker configuration `llmfleet render` writes for the dev stack, and the Locust command that
runs the same workload against a real gateway. Timings depend on the machine's load (a shared 2-core box
here): compare the two columns of one run, not runs.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, when run as a script

from llmfleet.loadtests.conversations import SharedPrefixPrompts
from llmfleet.loadtests.emulator import Emulator, EmulatorConfig
from llmfleet.loadtests.prefix_cache import PrefixCache, chat_tokens
from llmfleet.loadtests.prompts import ChatPrompt, chat_body
from llmfleet.loadtests.stats import percentile
from llmfleet.loadtests.stream import StreamMeter

Router = Callable[[ChatPrompt], int]


@dataclass
class Result:
    ttft_s: list[float] = field(default_factory=list[float])
    prompt_tokens: int = 0
    cached_tokens: int = 0
    errors: int = 0
    per_replica: list[int] = field(default_factory=lambda: [0, 0, 0, 0])


class Spread:
    """Round robin (what a Service's even spreading amounts to over many requests)."""

    def __init__(self, replicas: int) -> None:
        self._next = itertools.cycle(range(replicas))
        self._lock = threading.Lock()

    def pick(self, prompt: ChatPrompt) -> int:
        with self._lock:
            return next(self._next)

    def done(self, replica: int) -> None:
        pass


class PrefixAffinity:
    """The benchmark's stand-in for the endpoint picker: weighted prefix-cache and queue scores."""

    def __init__(self, replicas: int, capacity_tokens: int, prefix_weight: int, queue_weight: int) -> None:
        self._index = [PrefixCache(capacity_tokens) for _ in range(replicas)]
        self._in_flight = [0] * replicas
        self._weights = (prefix_weight, queue_weight)
        self._lock = threading.Lock()

    def pick(self, prompt: ChatPrompt) -> int:
        tokens = chat_tokens(prompt.messages)
        blocks = max(len(tokens) // self._index[0].block_tokens, 1)
        with self._lock:
            low, high = min(self._in_flight), max(self._in_flight)

            def score(replica: int) -> float:
                prefix = self._index[replica].holds_prefix_of(tokens) / self._index[replica].block_tokens / blocks
                queue = 1.0 if high == low else (high - self._in_flight[replica]) / (high - low)
                return self._weights[0] * prefix + self._weights[1] * queue

            best = max(range(len(self._index)), key=lambda r: (score(r), -self._in_flight[r], -r))
            self._index[best].lookup_and_insert(tokens)  # remember where this prefix went
            self._in_flight[best] += 1
        return best

    def done(self, replica: int) -> None:
        with self._lock:
            self._in_flight[replica] -= 1


def send(client: httpx.Client, url: str, prompt: ChatPrompt) -> tuple[float | None, int, int]:
    started = time.perf_counter()
    meter = StreamMeter(started, expected_output_tokens=prompt.max_tokens)
    with client.stream(
        "POST", f"{url}/v1/chat/completions", json=chat_body("emulated-model", prompt, stream=True)
    ) as r:
        for line in r.iter_lines():
            meter.feed_line(line)
            if meter.done:
                break
        sample = meter.finish(r.status_code)
    if not sample.ok or sample.first_token_at is None:
        return None, 0, 0
    return sample.first_token_at - started, sample.prompt_tokens or 0, sample.cached_prompt_tokens or 0


def run(router: Spread | PrefixAffinity, urls: Sequence[str], args: argparse.Namespace) -> Result:
    result = Result()
    lock = threading.Lock()

    def user(serial: int) -> None:
        prompts = SharedPrefixPrompts(
            groups=args.groups,
            prefix_tokens=args.prefix_tokens,
            turns=args.turns,
            prompt_tokens=args.prompt_tokens,
            output_tokens=args.output_tokens,
            seed=f"bench-{serial}",  # the same conversations for both routers
        )
        with httpx.Client(timeout=60) as client:
            for _ in range(args.conversations * args.turns):
                prompt = prompts.next()
                replica = router.pick(prompt)
                try:
                    ttft, prompt_tokens, cached = send(client, urls[replica], prompt)
                finally:
                    router.done(replica)
                with lock:
                    result.per_replica[replica] += 1
                    if ttft is None:
                        result.errors += 1
                        continue
                    result.ttft_s.append(ttft)
                    result.prompt_tokens += prompt_tokens
                    result.cached_tokens += cached

    threads = [threading.Thread(target=user, args=(i,)) for i in range(args.users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return result


def render_picker_config() -> str:
    """The picker configuration `llmfleet render` produces for the dev stack (its chat model's pool)."""
    from llmfleet.infra.render.offline import run_program

    for _, release in run_program("dev").helm_releases():
        if release["chart"] == "inferencepool":
            files = release["values"]["inferenceExtension"]["pluginsCustomConfig"]
            return "\n".join(
                f"# {release['name']}: inferenceExtension.pluginsCustomConfig[{k}]\n{v}" for k, v in files.items()
            )
    return "(no inferencepool release in the dev render)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=8, help="Concurrent conversations.")
    parser.add_argument("--conversations", type=int, default=6, help="Conversations per user.")
    parser.add_argument("--groups", type=int, default=16, help="Shared system prompts.")
    parser.add_argument("--prefix-tokens", type=int, default=2048)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--prompt-tokens", type=int, default=64, help="New tokens per turn.")
    parser.add_argument("--output-tokens", type=int, default=16)
    parser.add_argument("--cache-tokens", type=int, default=12288, help="Prefix-cache capacity per replica.")
    parser.add_argument("--ttft-ms", type=float, default=20.0, help="TTFT with the whole prompt cached.")
    parser.add_argument("--prefill-us-per-token", type=float, default=150.0, help="Prefill per uncached token.")
    parser.add_argument("--itl-ms", type=float, default=5.0)
    parser.add_argument("--no-render", action="store_true", help="Skip printing the rendered picker config.")
    args = parser.parse_args()

    weights = (3, 2)  # the render's prefix-cache and queue weights (components/routing/picker.py ScorerWeights)
    config = EmulatorConfig(
        ttft_s=args.ttft_ms / 1000,
        itl_s=args.itl_ms / 1000,
        prefix_cache_tokens=args.cache_tokens,
        prefill_s_per_token=args.prefill_us_per_token / 1e6,
    )
    results: dict[str, Result] = {}
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    for name in ("spread", "prefix-affinity"):
        replicas = [Emulator(config).start() for _ in range(4)]  # fresh, empty caches for each router
        try:
            urls = [r.url for r in replicas]
            router = Spread(4) if name == "spread" else PrefixAffinity(4, args.cache_tokens, *weights)
            results[name] = run(router, urls, args)
            truth = (
                sum(r.prefix_cache.hits_tokens for r in replicas),
                sum(r.prefix_cache.queries_tokens for r in replicas),
            )
            assert (results[name].cached_tokens, results[name].prompt_tokens) == truth, (
                "usage disagrees with the caches"
            )
        finally:
            for replica in replicas:
                replica.close()
    wall = time.perf_counter() - started

    working_set = args.groups * args.prefix_tokens
    print(
        f"4 emulator replicas, prefix cache {args.cache_tokens:,} tokens each (16-token blocks, LRU); TTFT = "
        f"{args.ttft_ms:g} ms + {args.prefill_us_per_token:g} us per uncached prompt token; {args.users} users x "
        f"{args.conversations} conversations x {args.turns} turns over {args.groups} shared system prompts of "
        f"{args.prefix_tokens:,} tokens (+{args.prompt_tokens} new tokens and a {args.output_tokens}-token reply "
        f"per turn); shared prefixes alone: {working_set:,} tokens vs {4 * args.cache_tokens:,} of cache in all"
    )
    print(f"wall {wall:.1f} s, load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after\n")
    header = f"{'':28}" + "".join(f"{name:>18}" for name in results)
    print(header)
    rows: list[tuple[str, Callable[[Result], str]]] = [
        ("requests (errors)", lambda r: f"{len(r.ttft_s)} ({r.errors})"),
        ("TTFT p50 ms", lambda r: f"{percentile(r.ttft_s, 50) * 1000:.0f}"),
        ("TTFT p95 ms", lambda r: f"{percentile(r.ttft_s, 95) * 1000:.0f}"),
        ("TTFT mean ms", lambda r: f"{statistics.fmean(r.ttft_s) * 1000:.0f}"),
        ("cache-hit share (tokens)", lambda r: f"{r.cached_tokens / max(r.prompt_tokens, 1):.1%}"),
        ("prompt tokens prefilled", lambda r: f"{r.prompt_tokens - r.cached_tokens:,}"),
        ("requests per replica", lambda r: "/".join(str(n) for n in r.per_replica)),
    ]
    for label, cell in rows:
        print(f"{label:28}" + "".join(f"{cell(r):>18}" for r in results.values()))
    print(
        "\n`prefix-affinity` is this script's stand-in for the endpoint picker (prefix-cache 3, queue 2, as rendered);"
        " the product uses the real picker."
    )
    if not args.no_render:
        print("\nThe picker configuration `llmfleet render --stack dev` produces (components/routing/picker.py):\n")
        print(render_picker_config())
    print(
        "Same workload against a deployed gateway (the picker routes; compare with routing.prefix_aware: false):\n"
        "  llmfleet loadtest --stack dev --model chat --suite steady --users 8 --duration 5m "
        "--report reports/prefix.json -- "
        f"--llm-prefix-groups {args.groups} --llm-prefix-tokens {args.prefix_tokens} --llm-turns {args.turns} "
        f"--llm-prompt-tokens {args.prompt_tokens} --llm-output-tokens {args.output_tokens}\n"
        "  (the verdict's metrics.prefix_cache_hit_share is the servers' own count, from usage.cached_tokens)"
    )


if __name__ == "__main__":
    import benchdoc  # tests/benchmarks/, beside this script: --write-docs records the output

    benchdoc.run("routing", main)
