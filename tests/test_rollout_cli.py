"""`llmfleet rollout` end to end on the shipped prod stack, with the deployer and gate replaced.

The Automation API deployer needs the Pulumi CLI, which cannot run here; the command's own logic
(arguments, the stack's waves and revisions, exit codes, the report, the lock across processes) is
what these tests prove. tests/test_rollout.py runs the engine against emulators and the real gate.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.rollout import OLD, MemoryDeployer
from typer.testing import CliRunner

from llmfleet.infra.cli import app
from llmfleet.infra.commands import rollout as command
from llmfleet.infra.config import ConfigError, load_stack, parse_deployment, stack_path
from llmfleet.infra.program.revisions import RolloutRecord, target_revisions, wave_order
from llmfleet.infra.rollout.engine import GateResult

runner = CliRunner()
PROD_WAVES = ["aws-us-west-2", "gcp-us-central1", "aws-us-east-1"]


class FakeStack(MemoryDeployer):
    def __init__(self) -> None:
        super().__init__(PROD_WAVES)
        self.previewed = self.adopted = False

    def preview(self) -> None:
        self.previewed = True

    def adopt(self) -> None:
        self.adopted = True


class Breach:
    def __init__(self, region: str) -> None:
        self.region = region

    def run(self, region: str, endpoint: str, step: int, attempt: int, revision: str) -> GateResult:
        if region != self.region:
            return GateResult(0, {"checks": []})
        check = {"metric": "ttft_ms", "stat": "p95", "op": "<=", "threshold": 2000, "observed": 3100.5, "pass": False}
        return GateResult(3, {"exit_code": 3, "checks": [check], "metrics": {"ttft_ms": {"p95": 3100.5}}})


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeStack:
    stack = FakeStack()
    monkeypatch.setattr(command, "make_deployer", lambda *_: stack)
    monkeypatch.setattr(command, "pulumi_available", lambda: True)
    return stack


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["rollout", *args])
    assert "Traceback" not in result.stdout + result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_prod_waves_are_secondaries_first_and_the_primary_last() -> None:
    _, spec = load_stack("prod")
    assert wave_order(spec) == PROD_WAVES
    primary = [r.key for r in spec.regions if r.role == "primary"]
    assert wave_order(spec)[-1:] == primary


def test_a_revision_id_changes_with_the_image_args_version_or_quantization_only() -> None:
    name, spec = load_stack("dev")
    base = target_revisions(name, spec)["aws-us-east-1"]
    data = spec.model_dump(mode="json", exclude_defaults=True)

    def revised(change: dict[str, Any]) -> str:
        changed = copy.deepcopy(data)
        changed["models"][0].update(change)
        return target_revisions(name, parse_deployment(changed, "test"))["aws-us-east-1"].id

    assert revised({}) == base.id
    assert revised({"quantization": "fp8"}) != base.id
    assert revised({"hf_repo": "acme/llama-3.1-8b-finetune"}) != base.id
    assert revised({"max_model_len": 4096}) != base.id  # an engine argument
    assert len({revised({"quantization": "fp8"}), revised({"hf_repo": "acme/x"}), base.id}) == 3


def test_dry_run_without_the_pulumi_cli_prints_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(command, "pulumi_available", lambda: False)
    code, out, _ = run("--stack", "prod", "--dry-run", "--steps", "10,100")
    assert code == 0
    assert "waves: aws-us-west-2 -> gcp-us-central1 -> aws-us-east-1; steps 10%, 100%" in out
    assert "step gcp-us-central1 10%" in out and "preview is skipped" in out


def test_dry_run_with_a_deployer_previews_and_changes_nothing(fake: FakeStack, tmp_path: Path) -> None:
    code, _, _ = run("--stack", "prod", "--dry-run", "--log-dir", str(tmp_path))
    assert code == 0 and fake.previewed and fake.calls == [] and not list(tmp_path.iterdir())


def test_adopt_records_the_stack_file_revision(fake: FakeStack, tmp_path: Path) -> None:
    assert run("--stack", "prod", "--adopt", "--log-dir", str(tmp_path))[0] == 0 and fake.adopted


def test_a_whole_rollout_promotes_every_region(
    fake: FakeStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(command, "make_gate", lambda *_: Breach("nowhere"))
    code, out, _ = run("--stack", "prod", "--steps", "50,100", "--log-dir", str(tmp_path))
    assert code == 0 and fake.previewed, out
    target = target_revisions(*load_stack("prod"))
    assert fake.state == {r: {target[r].id: 100} for r in PROD_WAVES}
    assert f"promoted (log {tmp_path / 'prod.jsonl'})" in out


def test_a_breach_exits_3_with_the_report(fake: FakeStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(command, "make_gate", lambda *_: Breach("gcp-us-central1"))
    code, out, err = run("--stack", "prod", "--log-dir", str(tmp_path))
    assert code == 3 and "rolled_back" in out
    report = json.loads(err[err.index("{") : err.rindex("}") + 1])
    assert (report["region"], report["step"]) == ("gcp-us-central1", 5)
    assert report["failed_checks"][0]["observed"] == 3100.5 and report["figures"]["ttft_ms"]["p95"] == 3100.5
    assert fake.state == {r: {OLD: 100} for r in PROD_WAVES}
    code, _, err = run("--stack", "prod", "--resume", "--log-dir", str(tmp_path))
    assert code == 2 and "no unfinished rollout" in err


def test_a_rollout_is_refused_while_another_process_holds_the_stack(
    fake: FakeStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(command, "make_gate", lambda *_: Breach("nowhere"))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from llmfleet.infra.rollout.log import RolloutLog\n"
            "with RolloutLog(Path(sys.argv[1]), 'prod').locked():\n    print('locked', flush=True); time.sleep(30)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        code, _, err = run("--stack", "prod", "--log-dir", str(tmp_path))
        assert code == 2 and "in progress (pid" in err and str(holder.pid) in err
        assert fake.calls == [] and not fake.previewed, "refused before the preview"
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.05)
    assert run("--stack", "prod", "--steps", "100", "--log-dir", str(tmp_path))[0] == 0, "free once the holder died"


def test_a_rollout_marked_in_progress_from_another_machine_exits_2_saying_what_to_do(
    fake: FakeStack, tmp_path: Path
) -> None:
    fake.marker = "0ther0ther00"  # set in the stack's shared state by another runner; this log is empty
    code, _, err = run("--stack", "prod", "--log-dir", str(tmp_path))
    assert code == 2 and "rollout 0ther0ther00 is in progress" in err and "--abort" in err, err
    assert fake.calls == [] and not fake.previewed, "refused before the preview"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "5,3"], "--steps '5,3': must strictly increase"),
        (["--steps", "0,100"], "each step is a percentage from 1 to 100"),
        (["--steps", "five"], "not a list of whole percentages"),
        (["--resume", "--abort"], "give --resume or --abort, not both"),
        (["--adopt", "--resume"], "--adopt"),
        (["--suite", "rate"], "--suite 'rate': a rollout gates on one of"),
        (["--suite", "nope"], "--suite 'nope'"),
    ],
)
def test_bad_arguments_exit_2_naming_the_option(args: list[str], message: str, fake: FakeStack) -> None:
    code, _, err = run("--stack", "prod", *args)
    assert code == 2 and message in err and fake.calls == []


def test_resume_or_abort_with_nothing_to_continue_exits_2(fake: FakeStack, tmp_path: Path) -> None:
    for flag in ("--resume", "--abort"):
        code, _, err = run("--stack", "prod", flag, "--log-dir", str(tmp_path))
        assert code == 2 and "no unfinished rollout" in err


def test_a_damaged_log_exits_2_naming_the_line_and_abort_still_restores_the_old_revision(
    fake: FakeStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The issue's case: a region left at 50/50 with the in-progress marker set, then a record in the
    middle of the log loses a field. Exit 2 with the line and what to do (not 1, which means a failed
    `pulumi up`), and --abort takes every region back from what it really serves."""
    monkeypatch.setattr(command, "make_gate", lambda *_: Breach("nowhere"))
    assert run("--stack", "prod", "--steps", "50", "--log-dir", str(tmp_path))[0] == 0  # held at 50/50
    assert fake.marker is not None
    log = tmp_path / "prod.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    del records[1]["actions"]  # the plan record
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    code, _, err = run("--stack", "prod", "--resume", "--steps", "100", "--log-dir", str(tmp_path))
    assert code == 2 and f"{log}:2: the rollout log is damaged (actions: missing)" in err and "--abort" in err, err
    code, out, err = run("--stack", "prod", "--abort", "--log-dir", str(tmp_path))
    assert code == 0 and "aborted" in out and "moved to" in err, out + err
    assert fake.state == {r: {OLD: 100} for r in PROD_WAVES} and fake.marker is None


def test_without_the_pulumi_cli_a_real_rollout_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(command, "pulumi_available", lambda: False)
    code, _, err = run("--stack", "prod")
    assert code == 2 and "install the Pulumi CLI" in err


def prod_deployment() -> dict[str, Any]:
    return yaml.safe_load(stack_path("prod").read_text())["config"]["llmfleet:deployment"]


@pytest.mark.parametrize(
    ("rollout", "message"),
    [
        ({"steps": [25, 5]}, "llmfleet:deployment.rollout.steps: must strictly increase"),
        ({"steps": [5, 150]}, "llmfleet:deployment.rollout.steps: each step is a percentage"),
        ({"region_order": ["aws-us-east-1", "mars-1"]}, "rollout.region_order: unknown region keys ['mars-1']"),
        ({"region_order": ["aws-us-east-1"]}, "rollout.region_order: every region must be listed"),
        ({"gate_duration_s": 0}, "llmfleet:deployment.rollout.gate_duration_s"),
        ({"suite": "Steady!"}, "llmfleet:deployment.rollout.suite"),
        ({"step": [5]}, "llmfleet:deployment.rollout.step: unknown field"),
    ],
)
def test_the_rollout_section_names_bad_fields(rollout: dict[str, Any], message: str) -> None:
    data = prod_deployment() | {"rollout": rollout}
    with pytest.raises(ConfigError) as error:
        parse_deployment(data, "prod")
    assert message in str(error.value)


def test_region_order_from_the_stack_is_used() -> None:
    data = prod_deployment() | {"rollout": {"region_order": ["aws-us-east-1", "gcp-us-central1", "aws-us-west-2"]}}
    assert wave_order(parse_deployment(data, "prod")) == ["aws-us-east-1", "gcp-us-central1", "aws-us-west-2"]


def test_the_record_keeps_weights_and_refuses_undeployed_revisions() -> None:
    record = RolloutRecord().with_revision("r", "a", [{"name": "chat"}]).with_weights("r", {"a": 100})
    record = record.with_revision("r", "b", [{"name": "chat", "quantization": "fp8"}]).with_weights(
        "r", {"a": 75, "b": 25}
    )
    assert record.weights("r") == {"a": 75, "b": 25}
    assert record.with_revision("r", "b", []).regions["r"]["b"].models == [{"name": "chat", "quantization": "fp8"}]
    with pytest.raises(ValueError, match=r"revisions \['c'\] are not deployed"):
        record.with_weights("r", {"c": 100})
    assert record.without_revision("r", "a").weights("r") == {"b": 25}
    assert RolloutRecord.model_validate_json(record.model_dump_json()) == record


def test_the_ci_workflow_runs_the_rollout_with_options_the_command_has() -> None:
    import re

    import click
    import typer.main

    workflow = yaml.safe_load((command.PROJECT_ROOT / "loadtests" / "ci" / "rollout.yml").read_text())
    assert workflow[True]["push"]["branches"] == ["main"], "on merge"
    assert workflow["concurrency"]["cancel-in-progress"] is False
    script = "\n".join(step.get("run", "") for step in workflow["jobs"]["rollout"]["steps"])
    assert 'llmfleet rollout --stack "$STACK"' in script and "--resume" in script and "--abort" in script
    syncing = re.search(r"while sleep \d+; do aws s3 sync [^\n]*\$LOG_BUCKET[^\n]*done\) &", script)
    assert syncing and syncing.start() < script.index("llmfleet rollout"), "the log is synced during the run"
    group = typer.main.get_command(app)
    click_command = group.get_command(click.Context(group), "rollout")  # type: ignore[attr-defined]
    assert click_command is not None
    known = {opt for param in click_command.params for opt in param.opts}
    used = set(re.findall(r"(--[a-z-]+)", " ".join(line for line in script.splitlines() if "llmfleet" in line)))
    assert used <= known | {"--stack"}, f"unknown options in the workflow: {used - known}"


class FakePulumiStack:
    """Stands in for pulumi.automation.Stack: config, outputs, and every up/preview with the record it saw."""

    name = "prod"

    def __init__(self, outputs: dict[str, Any]) -> None:
        self.config: dict[str, Any] = {}
        self._outputs = outputs
        self.ups: list[dict[str, Any]] = []
        self.previews: list[dict[str, Any]] = []

    def get_all_config(self) -> dict[str, Any]:
        return dict(self.config)

    def set_config(self, key: str, value: Any) -> None:
        self.config[key] = value

    def _record(self) -> dict[str, Any]:
        return json.loads(self.config["llmfleet:rollout"].value)

    def up(self, **_: Any) -> None:
        self.ups.append(self._record())

    def preview(self, **_: Any) -> Any:
        self.previews.append(self._record())
        return type("Preview", (), {"change_summary": {"create": 4}})()

    def outputs(self) -> dict[str, Any]:
        return {k: type("Output", (), {"value": v})() for k, v in self._outputs.items()}


def test_the_automation_deployer_writes_the_record_before_each_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from pulumi import automation

    from llmfleet.infra.rollout import automation as deployer_module

    _, spec = load_stack("prod")
    target = target_revisions("prod", spec)
    region = "aws-us-west-2"
    applied = RolloutRecord().with_revision(region, OLD, [{"name": "qwen-7b"}]).with_weights(region, {OLD: 100})
    fake = FakePulumiStack({"rollout": applied.model_dump(mode="json"), "gateway_endpoints": {region: "https://w2"}})
    monkeypatch.setattr(automation, "select_stack", lambda **_: fake)
    deployer = deployer_module.AutomationDeployer("prod", target, say=lambda _: None)
    assert deployer.weights(region) == {OLD: 100}, "read back from the stack's rollout output"
    assert deployer.endpoints() == {region: "https://w2"}
    new = target[region].id
    deployer.preview()
    assert fake.ups == [] and fake.previews[0]["regions"][region][new]["weight"] == 0
    assert json.loads(fake.config["llmfleet:rollout"].value) == applied.model_dump(mode="json"), "preview restores"
    deployer.deploy_revision(region, new)
    deployer.set_weights(region, {OLD: 95, new: 5})
    deployer.set_weights(region, {new: 100})
    deployer.remove_revision(region, OLD)
    weights = [{r: e["weight"] for r, e in up["regions"][region].items()} for up in fake.ups]
    assert weights == [{OLD: 100, new: 0}, {OLD: 95, new: 5}, {OLD: 0, new: 100}, {new: 100}]
    models = fake.ups[0]["regions"][region][new]["models"]
    assert [m["name"] for m in models] == [m.name for m in spec.models], "the new revision's model settings"
    with pytest.raises(ValueError, match="not deployed"):
        deployer.set_weights(region, {"ffffffff": 100})


def test_a_failed_pulumi_up_exits_1_and_resume_retries_the_step(
    fake: FakeStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from llmfleet.infra.rollout.deployer import DeployFailed

    monkeypatch.setattr(command, "make_gate", lambda *_: Breach("nowhere"))
    original = fake.set_weights
    failures = [1]

    def flaky_weights(region: str, weights: dict[str, int]) -> None:
        if failures:
            failures.pop()
            raise DeployFailed("pulumi up failed (weights aws-us-west-2): error: timed out")
        original(region, weights)

    monkeypatch.setattr(fake, "set_weights", flaky_weights)
    code, _, err = run("--stack", "prod", "--steps", "100", "--log-dir", str(tmp_path))
    assert code == 1 and "timed out" in err and "--resume" in err
    code, out, _ = run("--stack", "prod", "--resume", "--log-dir", str(tmp_path))
    assert code == 0 and "promoted" in out
    target = target_revisions(*load_stack("prod"))
    assert fake.state == {r: {target[r].id: 100} for r in PROD_WAVES}


def test_the_automation_deployer_reports_a_failed_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from pulumi import automation

    from llmfleet.infra.rollout import automation as deployer_module
    from llmfleet.infra.rollout.deployer import DeployFailed

    fake = FakePulumiStack({})

    def failing_up(**_: Any) -> None:
        raise automation.CommandError(automation.CommandResult("", "error: quota exceeded for GPUs", 255))

    fake.up = failing_up  # type: ignore[method-assign]
    monkeypatch.setattr(automation, "select_stack", lambda **_: fake)
    target = target_revisions(*load_stack("prod"))
    deployer = deployer_module.AutomationDeployer("prod", target, say=lambda _: None)
    with pytest.raises(DeployFailed, match="quota exceeded"):
        deployer.deploy_revision("aws-us-west-2", target["aws-us-west-2"].id)
    assert deployer.weights("aws-us-west-2") == {}, "the record is not advanced past a failed update"


def test_the_automation_deployer_shares_the_in_progress_marker_through_the_stack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pulumi import automation

    from llmfleet.infra.rollout import automation as deployer_module

    target = target_revisions(*load_stack("prod"))
    applied = RolloutRecord(in_progress="0ther0ther00").model_dump(mode="json")
    fake = FakePulumiStack({"rollout": applied})  # another machine's rollout, applied by its last update
    monkeypatch.setattr(automation, "select_stack", lambda **_: fake)
    deployer = deployer_module.AutomationDeployer("prod", target, say=lambda _: None)
    assert deployer.in_progress() == "0ther0ther00", "read from the stack's rollout output"
    fake._outputs = {}
    deployer.mark_in_progress("m1ne")
    assert fake.ups[-1]["in_progress"] == "m1ne", "set by an update, so the output shares it"
    assert deployer.in_progress() == "m1ne"
    deployer.mark_in_progress(None)
    assert fake.ups[-1]["in_progress"] is None and deployer.in_progress() is None


def test_a_revision_removed_by_another_machine_can_still_be_rebuilt(monkeypatch: pytest.MonkeyPatch) -> None:
    from pulumi import automation

    from llmfleet.infra.rollout import automation as deployer_module

    target = target_revisions(*load_stack("prod"))
    region, new = "aws-us-west-2", target["aws-us-west-2"].id
    record = RolloutRecord().with_revision(region, OLD, [{"name": "qwen-7b", "quantization": "fp8"}])
    record = record.with_revision(region, new, []).with_weights(region, {new: 100}).without_revision(region, OLD)
    assert record.weights(region) == {new: 100} and [r.revision for r in record.retired] == [OLD]
    fake = FakePulumiStack({"rollout": record.model_dump(mode="json")})  # promoted by the lost runner
    monkeypatch.setattr(automation, "select_stack", lambda **_: fake)
    deployer = deployer_module.AutomationDeployer("prod", target, say=lambda _: None)  # a new runner: --abort
    deployer.deploy_revision(region, OLD)
    assert fake.ups[-1]["regions"][region][OLD] == {"weight": 0, "models": [{"name": "qwen-7b", "quantization": "fp8"}]}
