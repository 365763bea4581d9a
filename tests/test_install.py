"""A user's install: `pip install .` without extras runs `llmfleet plan` and `llmfleet render`, and the plan
path loads no Pulumi SDK (planning is pure Python).

The wheel test builds the wheel, installs it into a fresh venv from the package index (as a user
would; about 1-3 minutes, most of it the Pulumi provider SDKs) and runs both commands from another
directory. It is the only test that installs anything.
"""

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

from llmfleet.infra.config import PROJECT_ROOT, STACKS_DIR

UNBUILT = (".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis")
PULUMI_SDKS = ("pulumi", "pulumi_aws", "pulumi_gcp", "pulumi_kubernetes", "pulumi_policy", "grpc")

PROBE = """
import json, sys
from llmfleet.infra.cli import main
sys.argv = ["llmfleet", *sys.argv[1:]]
try:
    main()
except SystemExit as done:
    code = done.code
print(json.dumps({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def run_cli(*args: str, python: str = sys.executable, cwd: Path | None = None) -> dict[str, object]:
    result = subprocess.run(
        [python, "-c", PROBE, *args], capture_output=True, text=True, timeout=300, cwd=cwd, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_plan_loads_no_pulumi_sdk() -> None:
    planned = run_cli("plan", "--stack", "dev", "--format", "json")
    assert planned["code"] in (0, None)
    loaded = set(planned["modules"])  # type: ignore[arg-type]
    assert "llmfleet" in loaded and "pydantic" in loaded, "the probe sees what the command imported"
    assert loaded.isdisjoint(PULUMI_SDKS), sorted(loaded & set(PULUMI_SDKS))
    rendered = run_cli("render", "--help")
    assert "pulumi" in set(rendered["modules"]), "the probe would see an SDK import"  # type: ignore[arg-type]


def test_wheel_without_extras_plans_and_renders_from_another_directory(tmp_path: Path) -> None:
    # Built from a copy: setuptools leaves build/ behind in the tree it builds, which later wheels would reuse.
    source = tmp_path / "src"
    shutil.copytree(PROJECT_ROOT, source, ignore=shutil.ignore_patterns(*UNBUILT))
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)],
        check=True,
        timeout=600,
    )
    (wheel,) = dist.glob("llmfleet-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-compile", "--disable-pip-version-check", str(wheel)],
        check=True,
        timeout=1200,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    stack = str(STACKS_DIR / "Pulumi.dev.yaml")
    llmfleet = str(env_dir / "bin" / "llmfleet")
    plan = subprocess.run(
        [llmfleet, "plan", "--stack-file", stack, "--format", "json"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert json.loads(plan.stdout)["deployments"], plan.stdout[-2000:]
    render = subprocess.run(
        [llmfleet, "render", "--stack-file", stack, "--out", "out"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert render.returncode == 0, render.stdout[-3000:] + render.stderr[-3000:]
    assert "objects valid" in render.stdout, render.stdout[-2000:]
    assert any((elsewhere / "out").rglob("deployment-*.yaml"))
    installed = run_cli("plan", "--stack-file", stack, python=str(python), cwd=elsewhere)
    assert set(installed["modules"]).isdisjoint(PULUMI_SDKS)  # type: ignore[arg-type]
