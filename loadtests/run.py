"""Run a Locust suite headless against a host and get the SLO verdict: `run_suite(...)`.

`llmfleet loadtest` and the rollout command both call this. It runs exactly the `locust -f
loadtests/suites/<suite>.py --headless ...` command a person would type (the suite files work the same
with plain `locust`), in a child process: Locust monkey-patches the process with gevent, which must not
happen to the caller. Locust's master runs the gate when it quits and writes the verdict JSON; the
Locust HTML report goes next to it (`<report>.html`).
"""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llmfleet.loadtests import gate
from llmfleet.values import Slo

SUITES_DIR = Path(__file__).resolve().parent / "suites"
DRAIN_MARGIN_S = 60.0
"""Beyond the run time and the bounded drain (request timeout), how long Locust gets to start and end."""


def suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.py") if not p.stem.startswith("_"))


@dataclass(frozen=True)
class SuiteRun:
    """One headless run: what to send, where, for how long, and which SLO judges it."""

    suite: str
    host: str
    model: str
    report: Path
    """The verdict JSON; Locust's HTML report is written alongside with the suffix .html."""
    duration_s: float
    warmup_s: float = 0.0
    users: int = 1
    rate: float | None = None
    """Open-loop suites: total requests per second."""
    processes: int = 1
    """Locust processes generating load (>1: one master and that many workers on this machine)."""
    slo: Slo = field(default_factory=Slo)
    """What the gate judges the run on (the caller reads it from a stack or a file); written beside the report."""
    api_key_env: str = "LLM_API_KEY"
    extra: Sequence[str] = field(default_factory=tuple[str, ...])
    """More Locust options, passed unchanged (e.g. suite options like --llm-output-tokens)."""

    def html_report(self) -> Path:
        return self.report.with_suffix(".html")

    def slo_file(self) -> Path:
        return self.report.with_suffix(".slo.json")

    def command(self) -> list[str]:
        command = [
            *(sys.executable, "-m", "locust", "-f", str(SUITES_DIR / f"{self.suite}.py"), "--headless"),
            *("--only-summary", "--host", self.host, "-u", str(self.users), "-r", str(self.users)),
            *("-t", f"{self.duration_s:g}s", "--html", str(self.html_report())),
            *("--llm-model", self.model, "--llm-api-key-env", self.api_key_env),
            *("--llm-report", str(self.report), "--llm-warmup", f"{self.warmup_s:g}"),
            *("--llm-slo", str(self.slo_file())),
        ]
        if self.rate is not None:
            command += ["--llm-rate", f"{self.rate:g}"]
        if self.processes > 1:
            command += ["--processes", str(self.processes), *master_port_options()]
        return command + list(self.extra)


def master_port_options() -> list[str]:
    """`--processes` binds its master to Locust's fixed port 5557 unless told otherwise, so two runs on one
    machine (parallel CI jobs, two regions' gates) collide: the second master dies and its workers hang.
    A free loopback port per run, for the master to bind and its forked workers to dial."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    return ["--master-bind-host", "127.0.0.1", "--master-bind-port", port, "--master-port", port]


PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGKILL) -> None:
    """Linux: have the kernel send `signum` to this process when its parent dies (prctl
    PR_SET_PDEATHSIG), so load never outlives whoever started it. Elsewhere: nothing."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)


def unwritable(path: Path) -> str | None:
    """Why a report cannot be written at `path` (None: it can). Creates the folder, leaves no file behind."""
    if path.is_dir():
        return "is a directory; give a file name"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        with path.open("a"):
            pass
        if not existed:
            path.unlink()
    except OSError as exc:
        return f"cannot write there ({exc.strerror or exc})"
    return None


def run_suite(run: SuiteRun) -> gate.Verdict:
    """Run the suite to the end and return its verdict (`verdict.exit_code`: 0 pass, 3 breach, 4 invalid).

    A run that ends without writing a verdict (Locust crashed, timed out) is an invalid verdict, never
    a pass. Argument checking is the caller's: `llmfleet loadtest` validates before calling. Locust is
    started so the kernel kills it if this process dies (even by SIGKILL: a rollout runner killed
    mid-gate must not leave load running), and its --processes workers die with it in turn.
    """
    run.report.parent.mkdir(parents=True, exist_ok=True)
    run.report.unlink(missing_ok=True)
    run.slo_file().write_text(run.slo.model_dump_json())
    drain_s = gate.request_timeout_s(run.slo) + gate.DRAIN_MARGIN_S
    limit = run.duration_s + drain_s + DRAIN_MARGIN_S
    try:
        done = subprocess.run(run.command(), check=False, timeout=limit, preexec_fn=die_with_parent)
        ended = f"locust exited {done.returncode}"
    except subprocess.TimeoutExpired:
        ended = f"locust did not end within {limit:g}s"
    if not run.report.exists():
        return gate.Verdict(checks=[], valid=False, reasons=[f"{ended} without writing a verdict"])
    return gate.Verdict.read(run.report)
