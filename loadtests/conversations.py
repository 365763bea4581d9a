"""Shared-prefix, multi-turn load: what chat and agent traffic looks like to a prefix cache.

Every conversation starts with one of `groups` shared system prompts of `prefix_tokens` tokens (the
same text in every user and every Locust process: it is generated from the group number alone), then
runs `turns` turns. Each turn resends the whole history (system prompt, the earlier user messages
and replies) plus a new user message of `prompt_tokens` tokens that starts with a unique number, so
only the shared part can come from a cache. A server that routes a conversation back to the replica
holding its prefix computes only the new tokens; one that spreads it computes the whole prompt.

The replies resent in the history are the workload's own text of `output_tokens` tokens, not what
the model generated (the user does not keep the streamed text): a real vLLM then reuses the cached
blocks up to the previous turn's prompt, not the previous reply's, as it would for a client that
edits its history. The expected cached share is therefore a lower bound of what a chat client that
resends the model's own replies would see.

    --llm-prefix-groups 8 --llm-prefix-tokens 1024 --llm-turns 4 --llm-prompt-tokens 64
"""

from __future__ import annotations

import itertools
import random

from llmfleet.loadtests.prompts import SINGLE_TOKEN_WORDS, ChatPrompt, WorkloadError


def system_prompt(group: int, tokens: int) -> str:
    """Group `group`'s shared system prompt: `tokens` words (about as many tokens), identical wherever it is built."""
    words = random.Random(f"llmfleet-prefix-{group}").choices(SINGLE_TOKEN_WORDS, k=max(tokens - 3, 0))
    return f"System prompt {group}: " + " ".join(words)


class SharedPrefixPrompts:
    """Conversations of `turns` turns over `groups` shared system prompts (a PromptSource)."""

    def __init__(
        self,
        *,
        groups: int,
        prefix_tokens: int = 1024,
        turns: int = 1,
        prompt_tokens: int = 64,
        output_tokens: int = 128,
        seed: int | str = 0,
    ) -> None:
        for name, value in (
            ("prefix groups", groups),
            ("prefix tokens", prefix_tokens),
            ("turns", turns),
            ("prompt tokens", prompt_tokens),
            ("output tokens", output_tokens),
        ):
            if value < 1:
                raise WorkloadError(f"shared-prefix workload: {name} must be at least 1 (got {value})")
        self.groups = groups
        self.prefix_tokens = prefix_tokens
        self.turns = turns
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens
        self._tag = seed
        self._random = random.Random(seed)
        self._serial = itertools.count()
        self._prefixes = {group: system_prompt(group, prefix_tokens) for group in range(groups)}
        self._history: list[dict[str, str]] = []
        self._turn = 0
        self.group = 0
        """The group of the conversation in progress."""

    def next(self) -> ChatPrompt:
        if self._turn == 0:
            self.group = self._random.randrange(self.groups)
            self._history = [{"role": "system", "content": self._prefixes[self.group]}]
        elif self._history:
            reply = " ".join(self._random.choices(SINGLE_TOKEN_WORDS, k=self.output_tokens))
            self._history.append({"role": "assistant", "content": reply})
        filler = self._random.choices(SINGLE_TOKEN_WORDS, k=max(self.prompt_tokens - 2, 0))
        self._history.append(
            {"role": "user", "content": f"Request {self._tag}-{next(self._serial)}: " + " ".join(filler)}
        )
        self._turn = (self._turn + 1) % self.turns
        return ChatPrompt(list(self._history), self.output_tokens)
