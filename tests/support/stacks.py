"""Stack files for tests: the shipped ones changed in place, and throwaway ones written to a temp dir."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from llmfleet.infra.config import STACKS_DIR
from llmfleet.infra.render.offline import OfflineRun

ShippedRun = Callable[[str], OfflineRun]
"""`shipped_run("prod")` -> the shipped stack's program run (conftest's session fixture)."""
StackWriter = Callable[..., Path]
"""`write_stack(deployment, name="t", **secrets)` -> path of `Pulumi.<name>.yaml` (conftest's fixture)."""


def mixed_70b(**model: Any) -> dict[str, Any]:
    """The shipped dev stack serving Llama 3.3 70B fp8 at 40 sequences on L40S or A10G, a mix deployed."""
    data = yaml.safe_load((STACKS_DIR / "Pulumi.dev.yaml").read_text())
    spec = data["config"]["llmfleet:deployment"]
    spec["models"][0] = {
        **spec["models"][0],
        "model": "llama-3.3-70b",
        "quantization": "fp8",
        "load": {"concurrent_sequences": 40, "prompt_tokens": 1024, "output_tokens": 256},
        "mixed_gpus": True,
        "deploy_mix": True,
        **model,
    }
    spec["regions"][0]["allowed_gpus"] = ["L40S", "A10G"]
    return data


def write_mix(data: dict[str, Any], tmp_path: Path) -> Path:
    path = tmp_path / "Pulumi.mix.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def one_region_stack(*regions: str) -> dict[str, Any]:
    """A valid deployment: one small model in the given `cloud/region`s, the first primary."""
    listed = regions or ("aws/us-east-1",)
    return {
        "models": [{"name": "chat", "model": "llama-3.1-8b", "load": {"concurrent_sequences": 8}}],
        "huggingface_token_secret": "hfToken",  # meta-llama weights are gated
        "regions": [
            {"cloud": r.split("/")[0], "region": r.split("/")[1], "role": "primary" if i == 0 else "secondary"}
            for i, r in enumerate(listed)
        ],
        "api_access_cidrs": ["203.0.113.0/24"],
    }
