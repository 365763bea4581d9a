"""The region's health prober (components/gateway/prober.py) against the emulator on loopback.

The prober's /health is 200 only while a real chat completion of every model through the target succeeded
recently; a refusal, an error, a hang (bounded by the probe timeout) or a rejected key makes it 503 and says why.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from llmfleet.components.gateway import prober
from llmfleet.loadtests.emulator import Emulator, EmulatorConfig

KEY = "health-key"
MODELS = ("llama-8b", "qwen-7b")


def config(url: str, **changes: Any) -> prober.Config:
    settings: dict[str, Any] = {"api_key": KEY, "timeout_s": 1.0, "interval_s": 0.05} | changes
    return prober.Config(target=url, models=MODELS, **settings)


def health_of(cfg: prober.Config) -> tuple[int, dict[str, Any]]:
    """One probe of every model, then the prober's own GET /health over loopback."""
    health = prober.Health(cfg)
    for model in cfg.models:
        health.record(model, prober.probe(cfg, model))
    server = prober.make_server(prober.Config(target=cfg.target, models=cfg.models, port=0), health, "127.0.0.1")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        response = httpx.get(f"http://127.0.0.1:{server.server_address[1]}/health", timeout=5)
        return response.status_code, response.json()
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def emulator(**changes: Any) -> Iterator[Emulator]:
    base: dict[str, Any] = {"ttft_s": 0.001, "itl_s": 0.001, "api_keys": frozenset({KEY})}
    with Emulator(EmulatorConfig(**(base | changes))) as em:
        yield em


def test_healthy_while_every_model_answers_with_the_key() -> None:
    with emulator() as em:
        status, body = health_of(config(em.url))
        served = em.requests_served
    assert status == 200, body
    assert body == {"healthy": True, "models": {m: "ok" for m in MODELS}}
    assert served == len(MODELS), "one real completion per model"


def test_rejected_key_is_unhealthy_and_says_401() -> None:
    with emulator() as em:
        status, body = health_of(prober.Config(target=em.url, models=MODELS, api_key="wrong", timeout_s=1.0))
    assert status == 503
    assert all(detail.startswith("HTTP 401") for detail in body["models"].values()), body


def test_server_errors_are_unhealthy() -> None:
    with emulator(error_status_rate=1.0) as em:
        status, body = health_of(config(em.url))
    assert status == 503
    assert all(detail.startswith("HTTP 500") for detail in body["models"].values()), body


def test_refused_connections_are_unhealthy() -> None:
    with emulator(refuse_connections=True) as em:
        status, body = health_of(config(em.url))
    assert status == 503
    assert all("Connection" in d or "refused" in d.lower() for d in body["models"].values()), body


def test_a_hung_gateway_fails_the_probe_within_its_timeout() -> None:
    with emulator(hang_share=1.0) as em:
        cfg = config(em.url, timeout_s=0.3)
        started = time.monotonic()
        result = prober.probe(cfg, MODELS[0])
        took = time.monotonic() - started
        status, body = health_of(cfg)
    assert not result.ok and "timed out" in result.detail, result
    assert took >= 0.3, "the probe waits its timeout before failing"
    assert took < 30, "and no longer than a bounded time"
    assert status == 503, body


def test_one_failing_model_is_named() -> None:
    cfg = config("http://127.0.0.1:1")
    health = prober.Health(cfg)
    health.record(MODELS[0], prober.Result(True, "ok", time.monotonic()))
    health.record(MODELS[1], prober.Result(False, "HTTP 404: model not found", time.monotonic()))
    healthy, report = health.status()
    assert not healthy
    assert report == {MODELS[0]: "ok", MODELS[1]: "HTTP 404: model not found"}


def test_a_success_older_than_the_window_is_stale() -> None:
    now = [100.0]
    cfg = config("http://127.0.0.1:1", fresh_s=30.0)
    health = prober.Health(cfg, clock=lambda: now[0])
    for model in MODELS:
        health.record(model, prober.Result(True, "ok", 100.0))
    assert health.status()[0]
    now[0] = 131.0
    healthy, report = health.status()
    assert not healthy and report[MODELS[0]].startswith("no success for 31s")


def test_unprobed_models_are_unhealthy() -> None:
    healthy, report = prober.Health(config("http://127.0.0.1:1")).status()
    assert not healthy and set(report.values()) == {"not probed yet"}


def test_recovers_when_the_gateway_does() -> None:
    with emulator(error_status_rate=1.0) as em:
        cfg = config(em.url)
        health = prober.Health(cfg)
        stop = threading.Event()
        thread = threading.Thread(target=prober.run_probes, args=(cfg, health, stop), daemon=True)
        thread.start()
        try:
            assert _eventually(lambda: _all_probed(health) and not health.status()[0])
            em.set_config(error_status_rate=0.0)
            assert _eventually(lambda: health.status()[0]), health.status()
        finally:
            stop.set()
            thread.join(timeout=10)


def _all_probed(health: prober.Health) -> bool:
    return "not probed yet" not in health.status()[1].values()


def _eventually(check: Any, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_sends_a_one_token_completion_with_the_key_and_host() -> None:
    """What goes over the wire: read by a bare socket server on loopback."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            seen.append(data)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    cfg = prober.Config(target=f"http://127.0.0.1:{port}", models=("m",), host="eu.llm.example.com", api_key=KEY)
    result = prober.probe(cfg, "m")
    thread.join(timeout=10)
    listener.close()
    assert result.ok, result
    head, _, body = seen[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/chat/completions HTTP/1.1"
    assert "Host: eu.llm.example.com" in lines
    assert f"Authorization: Bearer {KEY}" in lines
    assert b'"max_tokens": 1' in body and b'"model": "m"' in body


def test_configuration_from_the_environment(tmp_path: Any) -> None:
    key_file = tmp_path / "apiKey"
    key_file.write_text(KEY + "\n")
    env = {
        "LLMFLEET_PROBE_TARGET": "https://gw-envoy.envoy-gateway-system.svc.cluster.local:443",
        "LLMFLEET_PROBE_MODELS": "a,b",
        "LLMFLEET_PROBE_HOST": "eu.llm.example.com",
        "LLMFLEET_PROBE_KEY_FILE": str(key_file),
    }
    cfg = prober.Config.from_environment(env)
    assert (cfg.models, cfg.api_key, cfg.host) == (("a", "b"), KEY, "eu.llm.example.com")
    with pytest.raises(SystemExit, match="LLMFLEET_PROBE_MODELS"):
        prober.Config.from_environment({"LLMFLEET_PROBE_TARGET": "http://x"})
