"""The region's health prober: the process behind the gateway's unauthenticated health path.

DNS health checkers (Route 53, Cloud DNS) send a bare GET, and the AI Gateway processes only its API
paths (a chat completion, model chosen from the body). So this process makes the real request itself:
every `interval` seconds, for each served model, `POST /v1/chat/completions` with `max_tokens: 1` through
the region's Envoy proxy (its in-cluster Service), with the gateway's own health API key. That request
passes the gateway's auth, the AI Gateway's processor and routing, the engine-key injection and an
engine. `GET /health` answers 200 while the last probe of every model succeeded within `fresh` seconds,
else 503 naming each model and what went wrong.

Standard library only, in one file: it runs on the pinned Python image from a ConfigMap (no image to
build). Configuration is the environment (see `Config.from_environment`).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

CHAT_PATH = "/v1/chat/completions"
HEALTH_PATH = "/health"


@dataclass(frozen=True)
class Config:
    target: str
    """Base URL of the gateway's proxy, e.g. https://<envoy service>.<namespace>.svc.cluster.local:443."""
    models: tuple[str, ...]
    host: str | None = None
    """Host header and TLS server name the listener expects (None: the target's host)."""
    api_key: str | None = None
    """Sent as `Authorization: Bearer`; None on an anonymous gateway."""
    interval_s: float = 10.0
    timeout_s: float = 5.0
    """Longest one probe may take (connect and answer); a hung gateway is a failed probe, not a stuck prober."""
    fresh_s: float = 30.0
    """A model is healthy while its last success is this recent and its last probe succeeded."""
    port: int = 8080

    @staticmethod
    def from_environment(env: Mapping[str, str]) -> Config:
        def need(key: str) -> str:
            if not env.get(key):
                raise SystemExit(f"{key} is not set")
            return env[key]

        key_file = env.get("LLMFLEET_PROBE_KEY_FILE")
        api_key = None
        if key_file:
            with open(key_file, encoding="utf-8") as f:
                api_key = f.read().strip()
        return Config(
            target=need("LLMFLEET_PROBE_TARGET"),
            models=tuple(m for m in need("LLMFLEET_PROBE_MODELS").split(",") if m),
            host=env.get("LLMFLEET_PROBE_HOST") or None,
            api_key=api_key,
            interval_s=float(env.get("LLMFLEET_PROBE_INTERVAL_S", "10")),
            timeout_s=float(env.get("LLMFLEET_PROBE_TIMEOUT_S", "5")),
            fresh_s=float(env.get("LLMFLEET_PROBE_FRESH_S", "30")),
            port=int(env.get("LLMFLEET_PROBE_PORT", "8080")),
        )


@dataclass
class Result:
    ok: bool
    detail: str
    at: float
    """time.monotonic() of the probe's end."""


def probe(config: Config, model: str) -> Result:
    """One chat completion of one token through the gateway; ok only on a 200 with a JSON body."""
    target = urlsplit(config.target)
    address = target.hostname or "localhost"
    server_name = config.host or address
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1})
    headers = {"Content-Type": "application/json", "Host": server_name}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    conn: http.client.HTTPConnection
    if target.scheme == "https":
        # The request goes to the proxy's in-cluster address, so the certificate (issued for the public name) is
        # not checked: Route 53's own HTTPS checks do not check it either. SNI selects the listener.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = _SniConnection(address, target.port or 443, server_name, context, config.timeout_s)
    else:
        conn = http.client.HTTPConnection(address, target.port or 80, timeout=config.timeout_s)
    deadline = time.monotonic() + config.timeout_s
    try:
        conn.request("POST", CHAT_PATH, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read(65536)
        if time.monotonic() > deadline:
            return Result(False, f"answered after {config.timeout_s:g}s", time.monotonic())
        if response.status != 200:
            return Result(False, f"HTTP {response.status}: {data[:200].decode('utf-8', 'replace')}", time.monotonic())
        json.loads(data)
        return Result(True, "ok", time.monotonic())
    except (OSError, http.client.HTTPException, ValueError) as e:
        return Result(False, f"{type(e).__name__}: {e}", time.monotonic())
    finally:
        conn.close()


class _SniConnection(http.client.HTTPSConnection):
    """HTTPS to `address` with `server_name` as SNI (http.client would send the address)."""

    def __init__(self, address: str, port: int, server_name: str, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(address, port, timeout=timeout, context=context)
        self._server_name = server_name
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self._server_name)


class Health:
    """The last probe of each model, read by the HTTP handler and written by the probe threads."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic) -> None:
        self._config, self._clock = config, clock
        self._lock = threading.Lock()
        self._last: dict[str, Result] = {}
        self._last_ok: dict[str, float] = {}

    def record(self, model: str, result: Result) -> None:
        with self._lock:
            self._last[model] = result
            if result.ok:
                self._last_ok[model] = result.at

    def status(self) -> tuple[bool, dict[str, str]]:
        """(healthy, model -> what its last probe said); unhealthy while any model is failing or stale."""
        now, healthy = self._clock(), True
        report: dict[str, str] = {}
        with self._lock:
            for model in self._config.models:
                last, ok_at = self._last.get(model), self._last_ok.get(model)
                if last is None:
                    report[model], healthy = "not probed yet", False
                elif not last.ok:
                    report[model], healthy = last.detail, False
                elif ok_at is None or now - ok_at > self._config.fresh_s:
                    report[model], healthy = f"no success for {now - (ok_at or 0):.0f}s", False
                else:
                    report[model] = "ok"
        return healthy, report


def run_probes(config: Config, health: Health, stop: threading.Event) -> None:
    """Probe every model, then wait out the rest of the interval, until `stop` is set."""
    while not stop.is_set():
        started = time.monotonic()
        for model in config.models:
            health.record(model, probe(config, model))
        stop.wait(max(config.interval_s - (time.monotonic() - started), 0.0))


def make_server(config: Config, health: Health, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != HEALTH_PATH:
                self.send_error(404)
                return
            healthy, report = health.status()
            body = json.dumps({"healthy": healthy, "models": report}).encode()
            self.send_response(200 if healthy else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # a checker every few seconds would fill the log; failures are in the answer

    return ThreadingHTTPServer((host, config.port), Handler)


def main(argv: Sequence[str] = ()) -> None:
    config = Config.from_environment(os.environ)
    health = Health(config)
    threading.Thread(target=run_probes, args=(config, health, threading.Event()), daemon=True).start()
    server = make_server(config, health)
    print(f"probing {', '.join(config.models)} through {config.target} every {config.interval_s:g}s", file=sys.stderr)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
