"""The suites with behaviour of their own, run for real against the emulator on 127.0.0.1: gateway
conformance, the failover drill, the ramp and spike shapes."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from support.locust_harness import Run, emulator_process, run_locust

from llmfleet.loadtests.emulator import Emulator, EmulatorConfig


def test_gateway_conformance_against_keys_and_limits(tmp_path: Path) -> None:
    keys = {"LLM_API_KEY": "key-main", "RPM_KEY": "key-rpm", "TPM_KEY": "key-tpm"}
    config = EmulatorConfig(
        ttft_s=0.005, itl_s=0.001, api_keys=frozenset(keys.values()), requests_per_minute=5, tokens_per_minute=1000
    )
    env = {**os.environ, **keys}
    args = ("-t", "20s", "--llm-output-tokens", "300", "--llm-limit-key-env", "RPM_KEY")
    with Emulator(config) as emulator:  # a wrong key gets 401, as from Envoy Gateway
        good = run_locust(
            "gateway",
            emulator.url,
            tmp_path / "good",
            *args,
            *("--llm-token-limit-key-env", "TPM_KEY", "--llm-expect-rpm", "5", "--llm-expect-tpm", "1000"),
            env=env,
        )
    checks = {c["metric"]: c for c in good.verdict.get("checks", [])}
    assert good.code == 0, good
    assert checks["gateway.status_without_key"]["observed"] == 401
    wrong_key = checks["gateway.status_with_wrong_key"]
    assert (wrong_key["op"], wrong_key["threshold"], wrong_key["observed"], wrong_key["pass"]) == (
        "in",
        [401, 403],
        401,
        True,
    )
    assert checks["gateway.requests_admitted_before_429"]["observed"] == 5
    assert checks["gateway.tokens_admitted_before_429"]["observed"] == 900  # 3 x 300; the 4th passes 1000
    # A gateway that answers 403 to a wrong key (that check passes too) but does not enforce the limit
    # it should: the limit check fails and the run breaches.
    unlimited_config = EmulatorConfig(
        ttft_s=0.005, itl_s=0.001, api_keys=frozenset(keys.values()), wrong_key_status=403
    )
    with Emulator(unlimited_config) as unlimited:
        bad = run_locust("gateway", unlimited.url, tmp_path / "bad", *args, "--llm-expect-rpm", "5", env=env)
    assert bad.code == 3, bad
    failed = [c["metric"] for c in bad.verdict["checks"] if not c["pass"]]
    assert failed == ["gateway.requests_admitted_before_429"], bad
    assert {c["metric"]: c["observed"] for c in bad.verdict["checks"]}["gateway.status_with_wrong_key"] == 403


def test_failover_drill_counts_errors_and_time_to_recover(tmp_path: Path) -> None:
    config = EmulatorConfig(ttft_s=0.03, itl_s=0.005, output_tokens=10)
    with Emulator(config) as region_a, emulator_process("--ttft-ms", "30", "--itl-ms", "5") as (url_b, region_b):
        run = run_locust(
            "failover",
            region_a.url,
            tmp_path,
            *("-u", "4", "-r", "4", "-t", "3s", "--llm-endpoints", f"{region_a.url},{url_b}"),
            *("--llm-failover-at", "1", "--llm-failover-command", f"kill -9 {region_b.pid}"),
            *("--llm-output-tokens", "10", "--llm-min-samples", "5", "--llm-max-recovery-s", "1"),
        )
        served_by_a = region_a.requests_served
    assert region_b.poll() is not None, "the suite's failover command removed region B"
    failover = run.verdict["metrics"]["failover"]
    assert failover["removed_by_suite"] is True, run
    assert failover["failed_requests"] >= 1, run  # requests in flight to B, and each user's next try of B
    assert failover["time_to_recover_s"] is not None and failover["time_to_recover_s"] < 1.0, run
    last_failure = max(s.started_at for s in run.samples if not s.ok)
    late = [s for s in run.samples if s.started_at > last_failure]
    assert late and all(s.ok for s in late)
    assert served_by_a > len(run.samples) / 2  # region A carried the traffic after B went away
    assert run.code == 0, run
    recover = {c["metric"]: c for c in run.verdict["checks"]}["failover.time_to_recover_s"]
    assert recover["pass"] and recover["threshold"] == 1.0


def most_in_flight(run: Run, since_s: float, until_s: float) -> int:
    """Most requests in flight at once between `since_s` and `until_s` after the first request started.
    A closed-loop user has one request in flight at a time, so this never exceeds the users running,
    however slow a busy machine makes each request (requests started per second would: a starved
    generator starts fewer whatever the users)."""
    first = min(s.started_at for s in run.samples)
    events = sorted(
        (moment - first, step) for s in run.samples for moment, step in ((s.started_at, 1), (s.ended_at, -1))
    )
    in_flight, most = 0, 0
    for at, step in events:  # at equal moments an end (-1) sorts before a start (+1)
        in_flight += step
        if since_s <= at < until_s:
            most = max(most, in_flight)
    return most


def test_ramp_and_spike_shapes_change_the_users_over_the_run(tmp_path: Path) -> None:
    args = ("-u", "8", "-t", "6s", "--llm-output-tokens", "4")
    with Emulator(EmulatorConfig(ttft_s=0.1, itl_s=0.01, output_tokens=4)) as emulator, ThreadPoolExecutor(2) as pool:
        ramp, spike = pool.map(lambda name: run_locust(name, emulator.url, tmp_path / name, *args), ["ramp", "spike"])
    assert ramp.code == spike.code == 0, (ramp, spike)
    # ramp: users 1 -> 8 over the first 3 s, then 8
    assert most_in_flight(ramp, 0, 0.3) <= 2 < most_in_flight(ramp, 3.2, 6), ramp
    # spike: 2 users, 8 from 2 s to 4 s, then 2 (windows kept clear of the edges: the first request
    # starts a little after the shape's clock)
    assert most_in_flight(spike, 0, 1.5) <= 2 < most_in_flight(spike, 2.2, 3.8), spike
    assert most_in_flight(spike, 4.8, 6) <= 2, spike
