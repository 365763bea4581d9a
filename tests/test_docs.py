"""docs/stack-reference.md is what `python -m llmfleet.infra.docs` writes from the stack schema, and says
something about every key."""

import re
from pathlib import Path

import pytest
from pydantic import Field

from llmfleet.infra import docs
from llmfleet.infra.config import DeploymentSpec
from llmfleet.infra.schema.base import Section


def test_the_committed_reference_is_the_generated_one() -> None:
    assert docs.REFERENCE.read_text() == docs.render_reference(), "stale: run python -m llmfleet.infra.docs"
    assert docs.main(["--check"]) == 0


def test_every_stack_key_has_a_description() -> None:
    assert docs.missing_descriptions() == [], "add Field(description=...) to these schema fields"


def test_every_key_of_every_section_is_listed_once() -> None:
    text = docs.render_reference()
    models = docs.walk(DeploymentSpec)
    assert {m.__name__ for m in models} >= {"DeploymentSpec", "ModelSpec", "RegionSpec", "Slo", "GatewaySpec"}
    for model in models:
        section = text.split(f"\n## {model.__name__}\n", 1)[1].split("\n## ", 1)[0]
        for name, info in model.model_fields.items():
            assert section.count(f"| `{info.alias or name}` |") == 1, f"{model.__name__}.{name}"


def test_a_new_field_shows_up_and_a_bare_one_is_reported() -> None:
    class Extra(Section):
        """A section added later."""

        documented: int = Field(default=3, gt=0, description="Three by default.")
        bare: str = "x"

    class Root(Section):
        """The root."""

        extra: Extra = Field(default_factory=Extra, description="The new section.")

    text = docs.render_reference(Root)
    assert "| `documented` | integer (> 0) | `3` | Three by default. |" in text
    assert "[Extra](#extra)" in text and "At `llmfleet:deployment.extra`." in text
    assert docs.missing_descriptions(Root) == ["Extra.bare"]


def test_a_stale_file_fails_the_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "stack-reference.md"
    stale.write_text(docs.render_reference().replace("Served model name", "Model name"))
    monkeypatch.setattr(docs, "REFERENCE", stale)
    assert docs.main(["--check"]) == 1


ROOT = docs.PROJECT_ROOT
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").rglob("README.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)  # code spans: regex patterns and commands, not links
    return [m.group(1) for m in re.finditer(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", m.group(1))]


def test_slugs_are_githubs() -> None:
    assert slug("`llmfleet plan`") == "llmfleet-plan"
    assert slug("Measured: the gate against a raw-socket client") == "measured-the-gate-against-a-raw-socket-client"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    broken: list[str] = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path) if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor}")
    assert broken == [], "moved or renamed? fix the links"
