"""A replica's prefix cache, as vLLM keeps one, for the emulator: the known truth the load tests check.

vLLM (automatic prefix caching) cuts a prompt into blocks of `block_tokens` tokens and names each
full block by a hash of its tokens and of the block before it, so a block is only reused after the
very same prefix. A new request reuses the longest run of leading blocks already cached and computes
the rest (prefill); at least the last prompt token is always computed, since its logits start the
output. Freed blocks stay cached and the least recently used are evicted when space is needed.

The emulator's simplification: the cache holds at most `capacity_tokens` (whole blocks) and evicts
least recently used blocks past that; blocks of requests still running are not pinned (vLLM cannot
evict those), which only matters when the capacity is smaller than the running batch.

Tokens are the words of the chat (each message's role, then its content split on whitespace): the
load test's synthetic prompts are built from words that are one token each, so the emulator's count
is close to a real tokenizer's.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_BLOCK_TOKENS = 16
"""vLLM's default --block-size on CUDA (components/sizing/memory.py BLOCK_SIZE)."""


def chat_tokens(messages: object) -> list[str]:
    """The emulator's tokens of a chat: per message its role, then the words of its content."""
    tokens: list[str] = []
    if not isinstance(messages, list):
        return tokens
    for message in messages:  # pyright: ignore[reportUnknownVariableType]
        if not isinstance(message, dict):
            continue
        body: dict[str, Any] = message  # pyright: ignore[reportUnknownVariableType]
        content = body.get("content")
        tokens.append(f"<{body.get('role', '')}>")
        if isinstance(content, str):
            tokens.extend(content.split())
    return tokens


@dataclass(frozen=True, slots=True)
class Lookup:
    prompt_tokens: int
    cached_tokens: int

    @property
    def uncached_tokens(self) -> int:
        return self.prompt_tokens - self.cached_tokens


class PrefixCache:
    """Block-hashed prefix cache with LRU eviction; thread-safe; counts queries and hits in tokens
    (what vLLM exports as vllm:prefix_cache_queries_total and vllm:prefix_cache_hits_total)."""

    def __init__(self, capacity_tokens: int, block_tokens: int = DEFAULT_BLOCK_TOKENS) -> None:
        if capacity_tokens < 0 or block_tokens < 1:
            raise ValueError("capacity_tokens must be >= 0 and block_tokens >= 1")
        self.block_tokens = block_tokens
        self.capacity_tokens = capacity_tokens
        self.capacity_blocks = capacity_tokens // block_tokens
        self._blocks: OrderedDict[int, None] = OrderedDict()
        self._lock = threading.Lock()
        self.queries_tokens = 0
        self.hits_tokens = 0

    def __len__(self) -> int:
        """Blocks held."""
        return len(self._blocks)

    def _block_hashes(self, tokens: Sequence[str]) -> list[int]:
        hashes: list[int] = []
        parent = 0
        for start in range(0, len(tokens) - self.block_tokens + 1, self.block_tokens):
            parent = hash((parent, tuple(tokens[start : start + self.block_tokens])))
            hashes.append(parent)
        return hashes

    def lookup_and_insert(self, tokens: Sequence[str]) -> Lookup:
        """Serve one prompt: how many of its tokens were cached; then cache all its full blocks."""
        hashes = self._block_hashes(tokens)
        with self._lock:
            hit_blocks = 0
            for block in hashes:
                if block not in self._blocks:
                    break
                hit_blocks += 1
            # The last prompt token is always computed (its logits give the first output token).
            cached = min(hit_blocks * self.block_tokens, max(len(tokens) - 1, 0))
            for block in hashes:
                self._blocks[block] = None
                self._blocks.move_to_end(block)
            while len(self._blocks) > self.capacity_blocks:
                self._blocks.popitem(last=False)
            self.queries_tokens += len(tokens)
            self.hits_tokens += cached
        return Lookup(len(tokens), cached)

    def holds_prefix_of(self, tokens: Sequence[str]) -> int:
        """Leading tokens of `tokens` cached now, without touching the LRU order (a router's probe)."""
        with self._lock:
            held = 0
            for block in self._block_hashes(tokens):
                if block not in self._blocks:
                    break
                held += self.block_tokens
        return held
