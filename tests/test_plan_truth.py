"""What `llmfleet plan` must catch before anything is paid for: gated weights without a token, secrets the
stack names but does not define, and every YAML example of the README and the stack docs planned as a user
would copy it."""

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from llmfleet.components.sizing.catalog import load_catalog
from llmfleet.infra.cli import app
from llmfleet.infra.config import PROJECT_ROOT, STACKS_DIR

DOCUMENTED = [
    PROJECT_ROOT / "README.md",
    *(PROJECT_ROOT / "docs" / page for page in ("stack-files.md", "gateway.md", "observability.md")),
]
"""The pages whose YAML blocks are stack files or sections of one (the README's, moved to docs/)."""


def plan(tmp_path: Path, deployment: dict[str, Any], **secrets: str) -> tuple[int, str, str]:
    config: dict[str, Any] = {"llmfleet:deployment": deployment}
    config |= {f"llmfleet:{key}": {"secure": value} for key, value in secrets.items()}
    path = tmp_path / "Pulumi.truth.yaml"
    path.write_text(yaml.safe_dump({"config": config}))
    result = CliRunner().invoke(app, ["plan", "--stack-file", str(path)])
    return result.exit_code, result.stdout, result.stderr


def stack(model: str = "llama-3.1-8b", **fields: Any) -> dict[str, Any]:
    return {
        "models": [{"name": "chat", "model": model, "load": {"concurrent_sequences": 4}, **fields}],
        "regions": [{"cloud": "aws", "region": "us-east-1", "role": "primary"}],
        "api_access_cidrs": ["203.0.113.0/24"],
    }


def test_every_catalog_model_says_whether_its_weights_are_gated_and_why() -> None:
    models = load_catalog().models.values()
    assert {m.id for m in models if m.gated} >= {"llama-3.1-8b", "llama-3.3-70b", "gemma-2-27b"}
    assert {m.id for m in models if not m.gated} >= {"qwen2.5-7b", "phi-4"}
    assert all(m.gated_source.ref.startswith(f"https://huggingface.co/{m.hf_repo}") for m in models)


def test_gated_weights_without_a_token_exit_2_naming_the_field(tmp_path: Path) -> None:
    code, out, err = plan(tmp_path, stack())
    assert code == 2, out
    assert "llmfleet:deployment.huggingface_token_secret: required: models[0] (chat) downloads" in err
    assert "meta-llama/Llama-3.1-8B-Instruct" in err and "Traceback" not in out + err


@pytest.mark.parametrize(
    ("deployment", "secrets"),
    [
        (stack() | {"huggingface_token_secret": "hfToken"}, {"hfToken": "v1:enc"}),
        (stack("qwen2.5-7b"), {}),  # ungated
        (stack(hf_repo="unsloth/Llama-3.1-8B-Instruct"), {}),  # the stack's own repository: not known to be gated
    ],
)
def test_a_token_an_ungated_model_or_another_repository_plans(
    tmp_path: Path, deployment: dict[str, Any], secrets: dict[str, str]
) -> None:
    code, out, err = plan(tmp_path, deployment, **secrets)
    assert code == 0, out + err
    assert "warning" not in err


def test_secrets_named_but_not_set_are_reported_with_the_command_that_sets_them(tmp_path: Path) -> None:
    deployment = stack() | {"huggingface_token_secret": "hfToken"}
    deployment["gateway"] = {"tenants": [{"name": "acme", "api_key_secret": "acmeKey"}]}
    code, _, err = plan(tmp_path, deployment, acmeKey="v1:enc")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: llmfleet:deployment.huggingface_token_secret: secret `llmfleet:hfToken` is not set in "
        "Pulumi.truth.yaml; set it with `pulumi config set --secret -s truth llmfleet:hfToken <value>`"
    ]


def readme_yaml_blocks() -> list[str]:
    return [block for page in DOCUMENTED for block in re.findall(r"```yaml\n(.*?)```", page.read_text(), re.S)]


def test_readme_yaml_blocks_are_found() -> None:
    blocks = readme_yaml_blocks()
    assert len(blocks) >= 4 and blocks[0].startswith("config:")


@pytest.mark.parametrize("index", range(len(readme_yaml_blocks())))
def test_every_readme_yaml_block_plans(tmp_path: Path, index: int) -> None:
    """A full stack file plans as written; a section example plans inside the shipped prod stack, whose
    models and regions the README's sections refer to."""
    base = yaml.safe_load((STACKS_DIR / "Pulumi.prod.yaml").read_text())
    block = readme_yaml_blocks()[index]
    if block.startswith("config:"):
        document = yaml.safe_load(block)
    else:
        section = yaml.safe_load(textwrap.dedent(block))
        document = base
        document["config"]["llmfleet:deployment"] |= section
    path = tmp_path / "Pulumi.readme.yaml"
    path.write_text(yaml.safe_dump(document))
    result = CliRunner().invoke(app, ["plan", "--stack-file", str(path)])
    assert result.exit_code == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("load", "expected"),
    [
        ({"concurrent_sequences": -32}, "load.concurrent_sequences: Input should be greater than 0 (got -32)"),
        ({"output_tokens_per_s": 0}, "load.output_tokens_per_s: Input should be greater than 0 (got 0)"),
        ({"concurrent_sequences": 8, "prompt_tokens": 0}, "load.prompt_tokens: Input should be greater than 0"),
    ],
)
def test_a_union_field_reports_only_the_branch_the_user_wrote(
    tmp_path: Path, load: dict[str, Any], expected: str
) -> None:
    code, out, err = plan(tmp_path, stack("qwen2.5-7b", load=load))
    assert code == 2, out
    problems = [line.strip() for line in err.splitlines()[1:] if line.strip()]
    assert len(problems) == 1 and problems[0].startswith("llmfleet:deployment.models[0].") and expected in problems[0]
