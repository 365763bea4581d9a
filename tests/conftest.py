"""Shared fixtures: the offline engine's mocks and throwaway stack files.

Test modules import helpers from tests/support/, never from here: pytest loads conftest itself.
"""

import functools
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.stacks import ShippedRun, StackWriter

from llmfleet.infra.render.offline import RecordingMocks, run_program


@pytest.fixture
def recording_mocks() -> RecordingMocks:
    """Fresh RecordingMocks installed as the Pulumi runtime's (for `@pulumi.runtime.test` tests)."""
    return RecordingMocks().install(stack="test")


@pytest.fixture(scope="session")
def shipped_run() -> ShippedRun:
    """The shipped stacks run under the offline engine once per test session (per xdist worker), shared by
    every module that reads them: a whole-program run of prod takes seconds. Callers must not change what it
    returns (copy a manifest before editing it)."""
    return functools.cache(lambda name: run_program(name))


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
