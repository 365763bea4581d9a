"""What the load test sends: synthetic prompts of set lengths, or the conversations of a JSONL dataset.

Synthetic prompts fix the output length the way vLLM `bench serve` and GuideLLM do: `max_tokens=N`
with `ignore_eos: true`, so the server generates exactly N tokens whatever the text says. The prompt
is built from common English words that BPE tokenizers (Llama, Qwen, Mistral, GPT) encode as one
token each after a space, so `prompt_tokens` words are close to that many tokens; the server's
`usage.prompt_tokens` gives the real figure. Each prompt starts with a unique request number so a
prefix cache cannot serve it from an earlier request (that would make TTFT look better than it is).

A dataset is a JSONL file, one request per line:
    {"messages": [{"role": "user", "content": "..."}], "max_tokens": 256}
    {"prompt": "...", "max_tokens": 256}
`max_tokens` is optional (the synthetic output length is used); lines are sent in order, cycling.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have an "
    "they you were her she there one all we their been has when who will more no if out so said what up its "
    "about into than them can only other new some could time these two may then do first any my now such like "
    "our over man me even most made after also did many before must through back years where much your way "
    "well down should because each just those people how too little state good very make world still own see"
)


class WorkloadError(ValueError):
    """A workload option or dataset is wrong (the message names it and what is allowed): bad input, exit 2."""


SINGLE_TOKEN_WORDS = tuple(_WORDS.split())
"""Frequent words that are a single token (with their leading space) in the common BPE vocabularies."""


@dataclass(frozen=True, slots=True)
class ChatPrompt:
    messages: list[dict[str, str]]
    max_tokens: int


def chat_body(model: str, prompt: ChatPrompt, *, stream: bool) -> dict[str, Any]:
    """The chat-completions request: exactly `max_tokens` out (ignore_eos), usage in the stream."""
    body: dict[str, Any] = {
        "model": model,
        "messages": prompt.messages,
        "max_tokens": prompt.max_tokens,
        "ignore_eos": True,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


class SyntheticPrompts:
    """Endless prompts of about `prompt_tokens` tokens asking for exactly `output_tokens` tokens."""

    def __init__(self, prompt_tokens: int = 128, output_tokens: int = 128, *, seed: int = 0) -> None:
        if prompt_tokens < 1 or output_tokens < 1:
            raise WorkloadError(
                f"prompt and output lengths must be at least 1 token (got {prompt_tokens}, {output_tokens})"
            )
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens
        self._random = random.Random(seed)
        self._serial = itertools.count()

    def next(self) -> ChatPrompt:
        # "Request 17:" costs about 4 tokens; the rest is filler words.
        filler = self._random.choices(SINGLE_TOKEN_WORDS, k=max(self.prompt_tokens - 4, 0))
        text = f"Request {next(self._serial)}: " + " ".join(filler)
        return ChatPrompt([{"role": "user", "content": text}], self.output_tokens)


class DatasetPrompts:
    """The requests of a JSONL dataset, in file order, cycling."""

    def __init__(self, path: Path, default_output_tokens: int = 128) -> None:
        self.path = path
        self.prompts = [_parse_line(path, n, line, default_output_tokens) for n, line in _lines(path)]
        if not self.prompts:
            raise WorkloadError(f"{path}: the dataset has no requests (one JSON object per line)")
        self._cycle = itertools.cycle(self.prompts)

    def next(self) -> ChatPrompt:
        return next(self._cycle)


PromptSource = SyntheticPrompts | DatasetPrompts


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WorkloadError(f"--dataset {path}: cannot read it ({exc.strerror})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, line


def _parse_line(path: Path, number: int, line: str, default_output_tokens: int) -> ChatPrompt:
    where = f"{path}:{number}"
    try:
        raw: object = json.loads(line)
    except ValueError as exc:
        raise WorkloadError(f"{where}: not valid JSON ({exc.msg})") from None
    if not isinstance(raw, dict):
        raise WorkloadError(f"{where}: each line must be a JSON object with `messages` or `prompt`")
    record = cast(dict[str, Any], raw)
    max_tokens = record.get("max_tokens", default_output_tokens)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise WorkloadError(f"{where}: max_tokens must be a positive integer (got {max_tokens!r})")
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            raise WorkloadError(f"{where}: messages must be a non-empty list of {{role, content}} objects")
        for i, message in enumerate(cast(list[Any], messages)):
            if not (
                isinstance(message, dict)
                and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)
            ):
                raise WorkloadError(f"{where}: messages[{i}] needs string `role` and `content`")
        return ChatPrompt(cast(list[dict[str, str]], messages), max_tokens)
    prompt = record.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise WorkloadError(f"{where}: give `messages` (a list) or `prompt` (a non-empty string)")
    return ChatPrompt([{"role": "user", "content": prompt}], max_tokens)
