"""Fast checks of the Locust side's inputs: prompts, datasets, `llmfleet loadtest` arguments, clock shifts."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.locust_harness import run_locust
from typer.testing import CliRunner

from llmfleet.infra.cli import app
from llmfleet.infra.commands.loadtest import endpoint_from_outputs, load_slo, parse_duration, stack_endpoint
from llmfleet.infra.config import load_stack
from llmfleet.infra.errors import UsageError
from llmfleet.loadtests.prompts import SINGLE_TOKEN_WORDS, DatasetPrompts, SyntheticPrompts, WorkloadError, chat_body
from llmfleet.loadtests.run import SuiteRun, suites
from llmfleet.loadtests.samples import RequestSample, read_samples, write_samples
from llmfleet.values import Slo


def test_synthetic_prompts_have_the_set_lengths_and_never_repeat() -> None:
    prompts = SyntheticPrompts(prompt_tokens=100, output_tokens=64, seed=3)
    first, second = prompts.next(), prompts.next()
    text = first.messages[0]["content"]
    words = text.split()
    assert len(words) == 2 + 96  # "Request 0:" then filler
    assert set(words[2:]) <= set(SINGLE_TOKEN_WORDS)
    assert first.max_tokens == 64
    assert text.split(":")[0] != second.messages[0]["content"].split(":")[0]  # unique prefix: no cache hit
    body = chat_body("m", first, stream=True)
    assert body["ignore_eos"] is True and body["max_tokens"] == 64
    assert body["stream_options"] == {"include_usage": True}
    assert "stream_options" not in chat_body("m", first, stream=False)


def test_dataset_prompts_cycle_and_errors_name_the_line(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "hi", "max_tokens": 5}\n\n{"messages": [{"role": "user", "content": "yo"}]}\n')
    prompts = DatasetPrompts(good, default_output_tokens=7)
    assert [prompts.next().max_tokens for _ in range(3)] == [5, 7, 5]
    bad = tmp_path / "bad.jsonl"
    for line, expected in (
        ('{"prompt": "x", "max_tokens": 0}', "bad.jsonl:2: max_tokens must be a positive integer"),
        ("[1]", "bad.jsonl:2: each line must be a JSON object"),
        ('{"messages": [{"role": "user"}]}', "bad.jsonl:2: messages[0] needs string `role` and `content`"),
        ("{not json", "bad.jsonl:2: not valid JSON"),
    ):
        bad.write_text('{"prompt": "ok"}\n' + line + "\n")
        with pytest.raises(WorkloadError, match=expected.replace("[", r"\[").replace("]", r"\]")):
            DatasetPrompts(bad)


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("5m", 300), ("1h30m", 5400), ("1.5m", 90)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "--duration") == seconds


def test_bad_duration_names_the_option() -> None:
    with pytest.raises(UsageError, match="--duration '5 minutes': use a duration like"):
        parse_duration("5 minutes", "--duration")


def test_every_suite_is_known_to_the_command() -> None:
    assert suites() == ["failover", "gateway", "ramp", "rate", "smoke", "spike", "steady"]


def test_locust_command_carries_every_option(tmp_path: Path) -> None:
    command = SuiteRun(
        suite="rate", host="http://h", model="m", api_key_env="K", users=4, rate=2.5, duration_s=90, warmup_s=9,
        processes=2, slo=Slo(ttft_p95_ms=300), report=tmp_path / "v.json", extra=["--llm-timeout", "5"],
    ).command()  # fmt: skip
    joined = " ".join(command)
    assert f"--llm-slo {tmp_path / 'v.slo.json'}" in joined  # the SLO value, written beside the report by run_suite
    for part in ("-u 4", "-r 4", "-t 90s", "--llm-rate 2.5", "--processes 2", "--llm-warmup 9", "--llm-api-key-env K"):
        assert part in joined, part
    assert f"--html {tmp_path / 'v.html'}" in joined and joined.endswith("--llm-timeout 5")


def test_the_command_reads_the_stack_and_hands_the_load_tests_its_slo(tmp_path: Path) -> None:
    assert load_slo("prod", None) == load_stack("prod")[1].slo != Slo()
    assert load_slo(None, None) == Slo()
    path = tmp_path / "slo.yaml"
    path.write_text("slo: {ttft_p95_ms: 250}\n")
    assert load_slo(None, path).ttft_p95_ms == 250
    path.write_text("ttft_p95_ms: 0\n")
    with pytest.raises(UsageError, match=r"slo\.ttft_p95_ms: Input should be greater than 0"):
        load_slo(None, path)


def test_plain_locust_reads_no_stack_and_says_what_replaced_llm_stack(tmp_path: Path) -> None:
    run = run_locust("smoke", "http://127.0.0.1:9", tmp_path, "--llm-stack", "prod")  # stops before any load
    assert run.code == 2, run
    assert "--llm-stack prod: give the stack's SLO as a file, --llm-slo FILE" in run.output, run
    assert run.samples == [] and run.verdict == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--suite", "nope"], "--suite 'nope': unknown suite; choose one of"),
        (["--suite", "rate"], "--rate: the rate suite needs a positive total rate"),
        (["--suite", "steady", "--rate", "3"], "--rate applies to the rate suite only"),
        (["--suite", "steady", "--stack", "dev", "--slo", "x.yaml"], "give --stack or --slo, not both"),
        (["--suite", "steady", "--users", "0"], "--users 0: must be at least 1"),
        (["--suite", "gateway", "--processes", "2"], "the gateway suite runs in one process"),
        (["--suite", "steady", "--duration", "soon"], "--duration 'soon': use a duration"),
        (["--suite", "steady", "--duration", "10s", "--warmup", "20s"], "--warmup 20s must be shorter"),
        (
            ["--suite", "steady", "--api-key-env", "LLMFLEET_TEST_UNSET_VAR"],
            "LLMFLEET_TEST_UNSET_VAR: that environment",
        ),
        (["--suite", "steady", "--slo", "/nonexistent/slo.yaml"], "slo.yaml"),
        (["--suite", "steady", "--slo", "SLO"], "ttft_p95_ms"),
        (["--suite", "steady", "--stack", "no-such-stack"], "no-such-stack"),
    ],
)
def test_bad_arguments_exit_2_with_the_reason(tmp_path: Path, args: list[str], message: str) -> None:
    bad_slo = tmp_path / "slo.yaml"
    bad_slo.write_text("ttft_p95_ms: -5\n")
    args = [str(bad_slo) if a == "SLO" else a for a in args]
    host = [] if "--stack" in args else ["--host", "http://127.0.0.1:9"]
    result = CliRunner().invoke(app, ["loadtest", "--model", "m", "--report", str(tmp_path / "v.json"), *host, *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_samples_round_trip_and_clock_shift(tmp_path: Path) -> None:
    sample = RequestSample(
        started_at=10.0, ended_at=12.0, ok=True, scheduled_at=9.5, first_token_at=10.2, last_token_at=11.9,
        token_chunk_times=[10.2, 11.9], output_tokens=2,
    )  # fmt: skip
    write_samples([sample], tmp_path / "s.jsonl")
    (back,) = read_samples(tmp_path / "s.jsonl")
    assert back == sample
    moved = back.shifted(100.0)
    assert (moved.started_at, moved.scheduled_at, moved.token_chunk_times) == (110.0, 109.5, [110.2, 111.9])
    assert moved.first_token_at is not None and moved.first_token_at - moved.started_at == pytest.approx(0.2)


def test_the_endpoint_comes_from_the_stack_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "pulumi"
    fake.write_text('#!/bin/sh\necho \'{"gateway_endpoints": {"aws-us-east-1": "https://a.example"}}\'\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert stack_endpoint("dev") == "https://a.example"
    both = {"global_endpoint": "https://global", "gateway_endpoints": {"a": "x"}}
    assert endpoint_from_outputs("s", both) == "https://global"
    with pytest.raises(UsageError, match=r"pick a region with --host: \['https://a', 'https://b'\]"):
        endpoint_from_outputs("s", {"gateway_endpoints": {"eu": "https://b", "us": "https://a"}})
    with pytest.raises(UsageError, match="no `global_endpoint` output"):
        endpoint_from_outputs("s", {})
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(UsageError, match="install the pulumi CLI"):
        stack_endpoint("dev")
