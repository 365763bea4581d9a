"""`llmfleet loadtest` end to end: its exit codes and both reports, against the emulator on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from support.locust_harness import LLMFLEET, RUN_TIMEOUT_S, slo_file

from llmfleet.loadtests.emulator import Emulator, EmulatorConfig


def test_llmfleet_loadtest_exits_0_3_4_and_writes_both_reports(tmp_path: Path) -> None:
    """Three runs of the CLI at once (exit codes do not depend on timing): pass, breach, invalid. The
    breach is the error rate (every answer a 500): a latency breach measured on a busy machine may be
    the generator's own delay, which the gate rightly calls invalid, so it would not be a stable case."""
    strict = slo_file(tmp_path / "strict", "error_rate: 0.01\n")
    lenient = slo_file(tmp_path / "lenient")
    cases = {  # name: (expected exit, suite options, Locust options after --)
        "pass": (0, ["--suite", "smoke", "--slo", str(lenient)], []),
        "breach": (3, ["--suite", "smoke", "--slo", str(strict)], []),
        # 3 requests, fewer than the 20 samples a verdict needs (the budget ends the run before -t)
        "invalid": (
            4,
            ["--suite", "steady", "--duration", "10s", "--slo", str(lenient)],
            ["--llm-requests-per-user", "3"],
        ),
    }
    with (
        Emulator(EmulatorConfig(ttft_s=0.01, itl_s=0.002, output_tokens=4)) as emulator,
        Emulator(EmulatorConfig(ttft_s=0.01, itl_s=0.002, output_tokens=4, error_status_rate=1.0)) as failing,
    ):
        to_locust = ["--", "--llm-output-tokens", "4"]  # after --: straight to Locust
        running = {
            name: subprocess.Popen(
                [
                    str(LLMFLEET),
                    "loadtest",
                    *("--host", (failing if name == "breach" else emulator).url, "--model", "emulated-model"),
                    *args,
                    "--report",
                    str(tmp_path / name / "v.json"),
                    *to_locust,
                    *extra,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for name, (_, args, extra) in cases.items()
        }
        outputs = {name: process.communicate(timeout=RUN_TIMEOUT_S)[0] for name, process in running.items()}
    for name, (expected, _, _) in cases.items():
        process, output = running[name], outputs[name]
        assert process.returncode == expected, (name, output[-3000:])
        verdict = json.loads((tmp_path / name / "v.json").read_text())
        assert verdict["exit_code"] == expected
        assert (tmp_path / name / "v.html").stat().st_size > 1000, "Locust's HTML report alongside"
    assert "SLO breached: error_rate value 1.0" in outputs["breach"]
    assert "invalid run: too few samples after the warm-up" in outputs["invalid"]


def test_processes_auto_sizes_workers_from_the_measured_capacity(tmp_path: Path) -> None:
    from llmfleet.loadtests.capacity import auto_processes

    # 20 ms TPOT target: 50 chunks/s per user; one process reads 2,300 of them (46 users).
    assert auto_processes(46, 20, cpus=8, chunks_per_process=2300) == 1
    assert auto_processes(47, 20, cpus=8, chunks_per_process=2300) == 2
    assert auto_processes(47, 20, cpus=8, chunks_per_process=4600) == 1  # a faster machine: fewer processes
    assert auto_processes(10_000, 20, cpus=8, chunks_per_process=2300) == 8  # never more than one per CPU
    assert auto_processes(1, 60, cpus=1, chunks_per_process=2300) == 1
    command = [str(LLMFLEET), "loadtest", "--suite", "steady", "--model", "m", "--host", "http://127.0.0.1:9"]
    done = subprocess.run(
        [*command, "--report", str(tmp_path / "v.json"), "--processes", "many"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 2 and "--processes many" in done.stderr, done.stderr
