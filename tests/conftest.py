"""Shared fixtures: the offline engine's mocks and throwaway stack files."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmfleet.infra.render.offline import RecordingMocks

StackWriter = Callable[..., Path]


@pytest.fixture
def recording_mocks() -> RecordingMocks:
    """Fresh RecordingMocks installed as the Pulumi runtime's (for `@pulumi.runtime.test` tests)."""
    return RecordingMocks().install(stack="test")


@pytest.fixture
def write_stack(tmp_path: Path) -> StackWriter:
    """`write_stack(deployment, name="t", **secrets)` -> path of `Pulumi.<name>.yaml` in a temp dir.

    Each secret is written as `llmfleet:<key>: {secure: ...}`, as `pulumi config set --secret` does; the
    HuggingFace token the deployment names (gated weights need one) is written unless given.
    """

    def write(deployment: dict[str, Any], name: str = "t", **secrets: str) -> Path:
        if (token := deployment.get("huggingface_token_secret")) and token not in secrets:
            secrets[token] = "v1:enc"
        config: dict[str, Any] = {"llmfleet:deployment": deployment}
        config |= {f"llmfleet:{key}": {"secure": value} for key, value in secrets.items()}
        path = tmp_path / f"Pulumi.{name}.yaml"
        path.write_text(yaml.safe_dump({"config": config}))
        return path

    return write


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
