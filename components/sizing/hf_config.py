"""A model's shape from its HuggingFace `config.json`, for models that are not in the catalog.

config.json has no parameter count, so it is estimated from the layer shapes: embeddings (twice
unless tied), per layer the attention projections, the gated MLP (or every routed expert, plus
shared experts and the router for MoE) and two norms. For Llama-3.1-8B this gives 8.03 B, for
Mixtral-8x7B 46.7 B total / 12.9 B active (tests/test_sizing_hf_config.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from pydantic import ValidationError

from llmfleet.components.sizing.types import ModelArchitecture


class HfConfigError(ValueError):
    """config.json is missing, unreadable, or lacks a field the planner needs (the message says which)."""


def _int(config: dict[str, Any], *names: str, default: int | None = None) -> int:
    for name in names:
        value = config.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    if default is not None:
        return default
    raise HfConfigError(f"config.json has no integer `{names[0]}`")


def architecture_from_config(config: dict[str, Any]) -> ModelArchitecture:
    """Estimate a ModelArchitecture from config.json's fields (multimodal configs: their text_config)."""
    text = config.get("text_config")
    if isinstance(text, dict):
        config = {**config, **cast(dict[str, Any], text)}
    hidden = _int(config, "hidden_size", "n_embd", "d_model")
    layers = _int(config, "num_hidden_layers", "n_layer", "num_layers")
    heads = _int(config, "num_attention_heads", "n_head")
    kv_heads = _int(config, "num_key_value_heads", default=heads)
    head_dim = _int(config, "head_dim", default=hidden // heads)
    vocab = _int(config, "vocab_size")
    context = _int(config, "max_position_embeddings", "n_positions", "max_seq_len")
    tied = bool(config.get("tie_word_embeddings", False))
    intermediate = _int(config, "intermediate_size", default=4 * hidden)

    experts = _int(config, "num_local_experts", "num_experts", "n_routed_experts", default=0)
    per_token = _int(config, "num_experts_per_tok", default=0)
    expert_width = _int(config, "moe_intermediate_size", default=intermediate)
    shared_width = _int(config, "shared_expert_intermediate_size", default=0)
    shared_width += _int(config, "n_shared_experts", default=0) * expert_width

    attention = hidden * head_dim * (2 * heads + 2 * kv_heads)
    norms = 2 * hidden
    embeddings = vocab * hidden * (1 if tied else 2)
    if experts and per_token:
        router = hidden * experts
        total_layer = attention + norms + router + 3 * hidden * (experts * expert_width + shared_width)
        active_layer = attention + norms + router + 3 * hidden * (per_token * expert_width + shared_width)
        active: float | None = (embeddings + layers * active_layer) / 1e9
    else:
        total_layer = attention + norms + 3 * hidden * intermediate
        active = None
    try:
        return ModelArchitecture(
            params_b=(embeddings + layers * total_layer) / 1e9,
            active_params_b=active,
            layers=layers,
            hidden_size=hidden,
            attention_heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            max_context=context,
            vocab_size=vocab,
            tied_embeddings=tied,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise HfConfigError(f"config.json describes an impossible model: {problems}") from None


def read_hf_config(path: Path) -> ModelArchitecture:
    """Read and interpret a config.json file."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise HfConfigError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HfConfigError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise HfConfigError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise HfConfigError(f"{path} must hold a JSON object (a HuggingFace config.json)")
    return architecture_from_config(cast(dict[str, Any], data))
