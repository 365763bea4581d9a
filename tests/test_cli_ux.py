"""The CLI for a person at a terminal and for a pipe: --version, render's progress, tables that fit, report paths."""

import io
import os
import pty
import subprocess
import sys
import threading
from importlib.metadata import version
from pathlib import Path

import pytest
from rich.console import Console
from rich.text import Text
from typer.testing import CliRunner

from llmfleet.components.sizing.plan import Plan
from llmfleet.infra.cli import app
from llmfleet.infra.commands.loadtest import default_report
from llmfleet.infra.commands.plan import COLUMNS, fit_columns, render_table
from llmfleet.infra.commands.progress import PIPED_WIDTH, RenderProgress, interactive
from llmfleet.infra.config import PROJECT_ROOT, load_stack
from llmfleet.infra.planning import build_plan

LLMFLEET = Path(sys.executable).parent / "llmfleet"
RENDER_TIMEOUT_S = 600


def test_version_comes_from_the_installed_metadata() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"llmfleet {version('llmfleet')}\n"


def test_version_imports_no_pulumi() -> None:
    """`llmfleet --version` answers from metadata: the Pulumi SDK (seconds to import) stays unloaded."""
    code = (
        "import sys\n"
        "from llmfleet.infra.cli import main\n"
        "sys.argv = ['llmfleet', '--version']\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0].startswith('pulumi')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    printed, modules = done.stdout.splitlines()
    assert printed == f"llmfleet {version('llmfleet')}"
    assert modules == "[]", modules


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert interactive(_Tty())
    assert not interactive(io.StringIO())  # piped or redirected
    monkeypatch.setenv("CI", "true")
    assert not interactive(_Tty())
    monkeypatch.delenv("CI")
    monkeypatch.setenv("TERM", "dumb")
    assert not interactive(_Tty())


def test_render_progress_counts_resources_per_region_then_the_phase() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=200)
    with RenderProgress(console, ["aws-us-east-1", "aws-us-east-1b"]) as progress:
        for name in ["aws-us-east-1-cluster", "aws-us-east-1b-cluster", "aws-us-east-1-pool", "dns-zone"]:
            progress.resource(name)
        assert progress.describe() == (
            "running the program offline: 4 resources (aws-us-east-1 2, aws-us-east-1b 1, global 1)"
        )
        progress.phase("writing files and validating every object")
    assert "writing files and validating every object: 4 resources" in screen.getvalue()


def test_render_progress_without_a_console_draws_nothing() -> None:
    with RenderProgress(None, ["aws-us-east-1"]) as progress:
        progress.resource("aws-us-east-1-cluster")
        assert progress.describe().endswith("1 resources (aws-us-east-1 1)")


def _render_on_a_tty(out: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """`llmfleet render --stack local` with stderr on a pseudo-terminal and stdout piped."""
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [str(LLMFLEET), "render", "--stack", "local", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=secondary,
        cwd=PROJECT_ROOT,
        env=env,
        text=True,
    )
    os.close(secondary)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: the child closed the terminal
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    stdout, _ = process.communicate(timeout=RENDER_TIMEOUT_S)
    reader.join(timeout=30)
    os.close(primary)
    return process.returncode, stdout, b"".join(chunks).decode(errors="replace")


def test_render_shows_progress_on_a_terminal_and_nothing_in_ci(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if k != "CI"} | {"TERM": "xterm"}
    code, stdout, terminal = _render_on_a_tty(tmp_path / "tty", base)
    assert code == 0, terminal
    assert "running the program offline:" in terminal and "resources (" in terminal, terminal
    assert "local-" in terminal or "global" in terminal, terminal  # counted per region
    code_ci, stdout_ci, terminal_ci = _render_on_a_tty(tmp_path / "ci", base | {"CI": "true"})
    assert code_ci == 0, terminal_ci
    assert "resources (" not in terminal_ci and "\x1b[" not in terminal_ci, terminal_ci
    # stdout (the contract) is the same either way, up to the --out path it names
    assert stdout.replace(str(tmp_path / "tty"), "OUT") == stdout_ci.replace(str(tmp_path / "ci"), "OUT")


@pytest.fixture(scope="module")
def prod_plan() -> Plan:
    name, spec = load_stack("prod", None)
    return build_plan(name, spec, None)


@pytest.mark.parametrize("width", [60, 80, 100, 120, 160, 240])
def test_plan_table_fits_the_width_and_keeps_every_deployment(prod_plan: Plan, width: int) -> None:
    screen = io.StringIO()
    render_table(prod_plan, Console(file=screen, width=width))
    lines = screen.getvalue().splitlines()
    assert max(len(line) for line in lines) <= width, "\n".join(lines)
    layout = fit_columns(prod_plan, width)
    rows = [line.split("│")[1:-1] for line in lines if line.startswith("│")]
    assert all(len(row) == len(layout.headers) for row in rows), "\n".join(lines)
    for j, cells in enumerate(layout.cells):
        # read top to bottom, a column holds every deployment's cell in order, however rich wrapped or folded it
        printed = "".join("".join(row[j].split()) for row in rows)
        assert printed == "".join("".join(Text.from_markup(cell).plain.split()) for cell in cells), (j, printed)
    regions = "".join("".join(row[0].split()) for row in rows)
    for d in prod_plan.deployments:
        assert d.region in regions
    left_out = [line for line in lines if "left out to fit" in line]
    if width >= 240:
        assert not left_out and len(layout.headers) == len(COLUMNS)
        assert any("memory/GPU GiB (weights + overheads + KV / total)" in line for line in lines)
    if width <= 160:
        assert left_out and "memory/GPU GiB" in left_out[0]
    if width >= 120:  # the essential columns fit: no cell of theirs is wrapped
        assert all(f"│ {d.model} ({d.quantization.value}) " in screen.getvalue() for d in prod_plan.deployments)


@pytest.mark.parametrize(("columns", "limit"), [(None, PIPED_WIDTH), ("90", 90), ("200", 200)])
def test_plan_piped_is_as_wide_as_columns_or_the_default(columns: str | None, limit: int) -> None:
    result = CliRunner().invoke(app, ["plan", "--stack", "prod"], env={"COLUMNS": columns, "CI": None})
    assert result.exit_code == 0, result.output
    widest = max(len(line) for line in result.stdout.splitlines())
    assert widest <= limit, result.stdout
    assert widest > limit - 20, "uses the width it has"


def test_default_report_is_outside_the_checkout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    report = default_report("smoke")
    assert report.parent == tmp_path / "cache" / "llmfleet" / "reports"
    assert report.name.startswith("smoke-") and report.suffix == ".json"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # the XDG spec: relative paths are ignored
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_report("steady").parent == tmp_path / "home" / ".cache" / "llmfleet" / "reports"
    assert not default_report("steady").is_relative_to(PROJECT_ROOT)


def test_loadtest_without_report_writes_to_the_cache_dir(tmp_path: Path) -> None:
    from llmfleet.loadtests.emulator import Emulator, EmulatorConfig

    env = os.environ | {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    with Emulator(EmulatorConfig(ttft_s=0.01, itl_s=0.002, output_tokens=4)) as emulator:
        done = subprocess.run(
            [
                *(str(LLMFLEET), "loadtest", "--host", emulator.url, "--model", "emulated-model", "--suite", "smoke"),
                *("--", "--llm-output-tokens", "4"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            cwd=tmp_path,
            env=env,
        )
    reports = sorted((tmp_path / "cache" / "llmfleet" / "reports").glob("smoke-*"))
    # The verdict, Locust's HTML report, and the SLO the verdict was judged on (SuiteRun.slo_file).
    assert ["".join(p.suffixes[-2:]) if p.name.endswith(".slo.json") else p.suffix for p in reports] == [
        ".html",
        ".json",
        ".slo.json",
    ], (done.stdout, done.stderr)
    assert str(reports[1]) in done.stdout
    assert not any(p.name != "cache" for p in tmp_path.iterdir()), "nothing written in the working directory"


def test_the_readme_report_paths_are_ignored_by_git() -> None:
    if not (PROJECT_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    done = subprocess.run(
        ["git", "check-ignore", "-q", "reports/steady.json"], cwd=PROJECT_ROOT, timeout=30, check=False
    )
    assert done.returncode == 0, "reports/ (the docs' --report examples) should be in .gitignore"
