"""`llmfleet loadtest`: run a Locust suite headless against an endpoint and gate it on the SLO.

The command checks its arguments and the SLO before any load is sent (bad input: exit 2), then runs
`locust -f loadtests/suites/<suite>.py --headless ...` with the same options a person would type, so
`llmfleet loadtest` and plain `locust` behave the same. Locust's master runs the gate when it quits;
the exit code is the gate's: 0 pass, 3 SLO breached, 4 run invalid (also when Locust ended without
writing a verdict). Extra arguments after `--` go to Locust unchanged.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Annotated, Any, cast
from urllib.parse import urlsplit

import typer

from llmfleet.infra.commands.common import user_errors_exit_2
from llmfleet.infra.config import PROJECT_ROOT, load_stack
from llmfleet.infra.errors import UsageError
from llmfleet.loadtests import capacity, gate, incluster
from llmfleet.loadtests.capacity import auto_processes
from llmfleet.loadtests.run import SuiteRun, run_suite, suites, unwritable
from llmfleet.values import Slo

COUNTED_SUITES = {"smoke", "gateway"}
"""Suites that end after a set number of requests: no warm-up to exclude."""
SINGLE_PROCESS_SUITES = {"gateway"}
"""Its checks run in order in one user; workers would each run them against the same limits."""
DEFAULT_WARMUP_SHARE = 0.1
"""Without --warmup, the first tenth of a timed run is excluded from the gate."""
ENDPOINT_OUTPUT = "global_endpoint"
"""The stack output holding the global endpoint URL (the global load balancer's)."""
REGION_ENDPOINTS_OUTPUT = "gateway_endpoints"
"""Per region, its gateway URL: used when the stack has a single region and no global endpoint."""
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def parse_duration(text: str, option: str) -> float:
    """`90`, `90s`, `5m`, `1h30m` -> seconds."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None:
        raise UsageError(f"{option} {text!r}: use a duration like 90s, 5m or 1h30m")
    hours, minutes, seconds = (float(part) if part else 0.0 for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def load_slo(stack: str | None, path: Path | None) -> Slo:
    """The SLO of --stack (its stack file), of the --slo file, or the defaults: the load tests take the value."""
    if stack is not None:
        return load_stack(stack)[1].slo  # a bad stack raises ConfigError naming the field: exit 2
    try:
        return gate.load_slo(path)
    except gate.SloFileError as exc:
        raise UsageError(str(exc)) from None


def stack_endpoint(stack: str) -> str:
    """The global endpoint from `pulumi stack output --json -s STACK`."""
    pulumi = shutil.which("pulumi")
    if pulumi is None:
        raise UsageError("--host is required (without it, the endpoint comes from the stack: install the pulumi CLI)")
    try:
        done = subprocess.run(
            [pulumi, "stack", "output", "--json", "-s", stack],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"--stack {stack}: `pulumi stack output` failed ({exc}); give --host") from None
    if done.returncode != 0:
        raise UsageError(f"--stack {stack}: `pulumi stack output` failed: {done.stderr.strip()[-300:]}; give --host")
    try:
        outputs = cast(dict[str, Any], json.loads(done.stdout))
    except ValueError:
        raise UsageError(f"--stack {stack}: `pulumi stack output --json` did not print JSON; give --host") from None
    return endpoint_from_outputs(stack, outputs)


def endpoint_from_outputs(stack: str, outputs: dict[str, Any]) -> str:
    """The global endpoint, or the only region's gateway; several regions without a global one: ask."""
    endpoint = outputs.get(ENDPOINT_OUTPUT)
    if isinstance(endpoint, str) and endpoint:
        return endpoint
    regional = outputs.get(REGION_ENDPOINTS_OUTPUT)
    urls = sorted(str(url) for url in cast(dict[str, Any], regional).values()) if isinstance(regional, dict) else []
    if len(urls) == 1:
        return urls[0]
    if urls:
        raise UsageError(f"--stack {stack}: no global `{ENDPOINT_OUTPUT}` output; pick a region with --host: {urls}")
    raise UsageError(f"--stack {stack}: the stack has no `{ENDPOINT_OUTPUT}` output (pulumi up first?); give --host")


def check_host(host: str) -> str:
    """An http(s) URL with a host name: anything else is a usage error before any load is sent."""
    try:
        parts = urlsplit(host.strip())
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = None, False
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise UsageError(
            f"--host {host!r}: expected an http(s) URL such as https://llm.example.com or http://127.0.0.1:8000"
        )
    return host.strip()


def default_report(suite: str) -> Path:
    """`$XDG_CACHE_HOME/llmfleet/reports/<suite>-<UTC time>.json` (~/.cache when unset or relative, as the
    XDG spec says): outside any checkout, so a load test leaves nothing untracked in the repository; one
    file per run, so runs never overwrite each other. The command prints the path when it ends."""
    cache = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(cache) if cache and Path(cache).is_absolute() else Path.home() / ".cache"
    return base / "llmfleet" / "reports" / f"{suite}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"


def check_report(report: Path) -> None:
    """The verdict and Locust's HTML report can be written where --report says (checked before any load)."""
    for path in (report, report.with_suffix(".html")):
        problem = unwritable(path)
        if problem:
            raise UsageError(f"--report {report}: {path} {problem}")


def _auto_processes(users: int, tpot_target_ms: float, host: str, model: str, api_key_env: str) -> int:
    """--processes auto from this machine's measured per-process capacity (measured on first use, cached)
    and the faster of the SLO's pace and the server's, probed with a few requests (loadtests/capacity.py)."""
    if not capacity.cache_path().exists() and not os.environ.get(capacity.ENV_OVERRIDE):
        typer.echo("--processes auto: measuring one Locust process on this machine (once, ~10 s)", err=True)
    try:
        per_process = capacity.chunks_per_process()
    except (ValueError, capacity.CalibrationError) as exc:
        raise UsageError(f"--processes auto: {exc}; give --processes N") from None
    key = os.environ.get(api_key_env)
    pace = capacity.probe_pace(host, model, {"Authorization": f"Bearer {key}"} if key else {})
    slo_pace = 1000 / tpot_target_ms
    if pace is None:
        typer.echo(
            f"--processes auto: the server's pace not measured; sized for the SLO's {slo_pace:.3g} chunks/s", err=True
        )
    else:
        typer.echo(
            f"--processes auto: the server streams {pace:.3g} chunks/s a request (SLO: {slo_pace:.3g})", err=True
        )
    return auto_processes(users, tpot_target_ms, chunks_per_process=per_process, observed_chunks_per_s=pace)


IN_CLUSTER_FIXED = ("suite", "model", "host", "stack", "slo", "users", "rate", "duration", "warmup", "processes")
"""What a deployed LoadGenerator defines: with --in-cluster they would be ignored silently, so they are errors."""


def _from_command_line(ctx: typer.Context, parameter: str) -> bool:
    source = ctx.get_parameter_source(parameter)  # typer ships its own click: compared by name
    return source is not None and source.name == "COMMANDLINE"


def _in_cluster(ctx: typer.Context, name: str, namespace: str, context: str | None, report: Path | None) -> int:
    """`--in-cluster NAME`: rerun the deployed LoadGenerator NAME and gate on its verdict (loadtests/incluster.py)."""
    given = [f"--{p}" for p in IN_CLUSTER_FIXED if _from_command_line(ctx, p)]
    if given or ctx.args:
        fixed = ", ".join(given + list(ctx.args))
        raise UsageError(f"--in-cluster {name}: {fixed} come from the deployed LoadGenerator; change its args instead")
    report = report if report is not None else default_report(f"in-cluster-{name}")
    check_report(report)
    try:
        kubectl = incluster.Kubectl(namespace=namespace, context=context, executable=incluster.find_kubectl())
        done = incluster.run_in_cluster(name, kubectl, say=lambda line: typer.echo(line, err=True))
    except incluster.InClusterError as exc:
        raise UsageError(str(exc)) from None
    log_path = report.with_suffix(".log")
    log_path.write_text(done.log)
    if done.verdict is not None and done.problem is None:
        verdict = gate.Verdict.from_json(done.verdict)
    else:
        verdict = gate.Verdict(checks=[], valid=False, reasons=[done.problem or "no verdict"])
    verdict.write(report)
    for reason in verdict.reasons:
        typer.echo(f"invalid run: {reason}", err=True)
    for check in verdict.breaches:
        typer.echo(f"SLO breached: {check.metric} {check.stat} {check.observed} {check.op} {check.threshold}", err=True)
    typer.echo(f"verdict: exit {verdict.exit_code}; {report} and the master's log {log_path}")
    return int(verdict.exit_code)


def register(app: typer.Typer) -> None:
    @app.command("loadtest", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    @user_errors_exit_2
    def loadtest(
        ctx: typer.Context,
        suite: Annotated[
            str | None, typer.Option("--suite", help="smoke, steady, rate, ramp, spike, gateway, failover.")
        ] = None,
        model: Annotated[str | None, typer.Option("--model", help="Served model name.")] = None,
        report: Annotated[
            Path | None,
            typer.Option(
                "--report",
                help="Verdict JSON; Locust's HTML report goes alongside. Default: "
                "$XDG_CACHE_HOME/llmfleet/reports/<suite>-<UTC time>.json (~/.cache when unset), outside the checkout.",
            ),
        ] = None,
        host: Annotated[str | None, typer.Option("--host", help="Endpoint URL (default: the stack's).")] = None,
        api_key_env: Annotated[
            str, typer.Option("--api-key-env", help="Environment variable with the API key.")
        ] = "LLM_API_KEY",
        stack: Annotated[
            str | None, typer.Option("--stack", "-s", help="Stack whose SLO (and endpoint) to use.")
        ] = None,
        slo: Annotated[Path | None, typer.Option("--slo", help="SLO file (YAML/JSON) instead of a stack.")] = None,
        users: Annotated[int, typer.Option("--users", help="Concurrent users (closed loop) or rate sharers.")] = 1,
        rate: Annotated[float | None, typer.Option("--rate", help="Open loop: total requests/s (rate suite).")] = None,
        duration: Annotated[str, typer.Option("--duration", help="Run length, e.g. 60s, 5m.")] = "60s",
        warmup: Annotated[
            str | None, typer.Option("--warmup", help="Excluded from the gate (default: a tenth of timed runs).")
        ] = None,
        processes: Annotated[
            str,
            typer.Option("--processes", help="Locust processes (1: no workers; auto: sized from users, SLO and CPUs)."),
        ] = "1",
        in_cluster: Annotated[
            str | None,
            typer.Option(
                "--in-cluster",
                help="Run a deployed LoadGenerator of this name again (its suite, users and SLO) through kubectl.",
            ),
        ] = None,
        namespace: Annotated[
            str, typer.Option("--namespace", help="--in-cluster: the LoadGenerator's namespace.")
        ] = "llmfleet-loadtest",
        kube_context: Annotated[
            str | None, typer.Option("--kube-context", help="--in-cluster: the kubectl context (default: current).")
        ] = None,
    ) -> None:
        """Run a Locust suite headless and gate it on the SLO: exit 0 pass, 3 breached, 4 invalid."""
        if in_cluster is not None:
            raise typer.Exit(_in_cluster(ctx, in_cluster, namespace, kube_context, report))
        if suite is None:
            raise UsageError("--suite is required (or --in-cluster NAME to run a deployed LoadGenerator)")
        if model is None:
            raise UsageError("--model is required: the served model name")
        known = suites()
        if suite not in known:
            raise UsageError(f"--suite {suite!r}: unknown suite; choose one of {known}")
        if stack is not None and slo is not None:
            raise UsageError("give --stack or --slo, not both")
        if users < 1:
            raise UsageError(f"--users {users}: must be at least 1")
        slo_value = load_slo(stack, slo)  # a bad SLO fails now (exit 2), before any load is sent
        auto = processes.strip() == "auto"
        if auto:
            process_count = 1  # sized below, once the host is known
        elif processes.strip().isdigit() and int(processes) >= 1:
            process_count = int(processes)
        else:
            raise UsageError(f"--processes {processes}: a whole number of at least 1, or auto")
        if suite in SINGLE_PROCESS_SUITES and process_count > 1:
            raise UsageError(f"--processes {processes}: the {suite} suite runs in one process (drop --processes)")
        if suite == "rate" and (rate is None or rate <= 0):
            raise UsageError("--rate: the rate suite needs a positive total rate in requests/s, e.g. --rate 5")
        if rate is not None and suite != "rate":
            raise UsageError(f"--rate applies to the rate suite only (suite {suite} is closed loop)")
        if not model.strip():
            raise UsageError("--model: give the served model name")
        if os.environ.get(api_key_env) is None and api_key_env != "LLM_API_KEY":
            raise UsageError(f"--api-key-env {api_key_env}: that environment variable is not set")
        duration_s = parse_duration(duration, "--duration")
        if duration_s <= 0:
            raise UsageError("--duration must be positive")
        if warmup is not None:
            warmup_s = parse_duration(warmup, "--warmup")
        else:
            warmup_s = 0.0 if suite in COUNTED_SUITES else duration_s * DEFAULT_WARMUP_SHARE
        if warmup_s >= duration_s:
            raise UsageError(f"--warmup {warmup_s:g}s must be shorter than --duration {duration_s:g}s")
        if host is None:
            if stack is None:
                raise UsageError("--host is required (or --stack with the pulumi CLI to read the stack's endpoint)")
            host = stack_endpoint(stack)
        host = check_host(host)
        report = report if report is not None else default_report(suite)
        check_report(report)
        if auto and suite not in SINGLE_PROCESS_SUITES:
            process_count = _auto_processes(users, slo_value.tpot_p95_ms, host, model, api_key_env)
        run = SuiteRun(
            suite=suite,
            host=host,
            model=model,
            report=report,
            duration_s=duration_s,
            warmup_s=warmup_s,
            users=users,
            rate=rate,
            processes=process_count,
            slo=slo_value,
            api_key_env=api_key_env,
            extra=tuple(ctx.args),
        )
        if auto:
            typer.echo(f"--processes auto: {process_count} Locust process(es) for {users} users", err=True)
        verdict = run_suite(run)
        for reason in verdict.reasons:
            typer.echo(f"invalid run: {reason}", err=True)
        for check in verdict.breaches:
            typer.echo(
                f"SLO breached: {check.metric} {check.stat} {check.observed} {check.op} {check.threshold}", err=True
            )
        typer.echo(f"verdict: exit {verdict.exit_code}; {report} and {run.html_report()}")
        raise typer.Exit(verdict.exit_code)
