"""The real LiteLLM proxy (pinned release) with a real Redis, on loopback, for the response cache's tests and benchmark.

LiteLLM lives in its own virtualenv (.tools/litellm: its pins would move the project's), installed by .ci/run
at the version of the `litellm` image row; Redis is Debian's `redis-server` (.ci/run installs it). Without
either, `tools()` skips, except in CI (env CI set), where a missing tool is a failure.

    with RedisServer() as redis, LiteLLMProxy(config, hook_env, redis) as proxy:
        httpx.post(f"{proxy.url}/v1/chat/completions", headers=proxy.headers(tenant="a"), json=...)
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from llmfleet.components import pins
from llmfleet.components.gateway import response_cache as rc
from llmfleet.components.gateway.types import TENANT_HEADER
from llmfleet.infra.config import PROJECT_ROOT

LITELLM_VENV = PROJECT_ROOT / ".tools/litellm"
START_TIMEOUT_S = 240.0
"""Importing LiteLLM's proxy takes 10-60 s on this shared 2-core machine; a proxy not up by then has failed."""


@dataclass(frozen=True)
class Tools:
    litellm: Path
    python: Path
    redis_server: str
    redis_cli: str


def pinned_version() -> str:
    """The LiteLLM release of the `litellm` image row, as PyPI spells it (1.108.5)."""
    return pins.image("litellm").rsplit(":", 1)[1].removeprefix("v")


def tools() -> Tools:
    litellm = LITELLM_VENV / "bin/litellm"
    redis_server, redis_cli = shutil.which("redis-server"), shutil.which("redis-cli")
    missing = [
        what
        for what, ok in (
            (f"LiteLLM in {LITELLM_VENV} (.ci/run installs litellm[proxy]=={pinned_version()})", litellm.exists()),
            ("redis-server / redis-cli (apt-get install redis-server; .ci/run does)", redis_server and redis_cli),
        )
        if not ok
    ]
    if missing:
        message = "not installed: " + "; ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    assert redis_server is not None and redis_cli is not None
    return Tools(litellm, LITELLM_VENV / "bin/python", redis_server, redis_cli)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """redis-server on 127.0.0.1 with a password and no persistence; `cli(...)` runs redis-cli against it."""

    def __init__(self, tools: Tools) -> None:
        self.tools = tools
        self.port = free_port()
        self.password = secrets.token_hex(16)
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RedisServer:
        self._process = subprocess.Popen(
            [
                self.tools.redis_server,
                *("--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"),
                *("--requirepass", self.password),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while self.cli("PING", check=False) != "PONG":
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise RuntimeError("redis-server did not answer PING within 30 s")
            time.sleep(0.1)
        return self

    def cli(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            [
                self.tools.redis_cli,
                *("-h", "127.0.0.1", "-p", str(self.port), "--no-auth-warning", "-a", self.password),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"redis-cli {args}: {result.stderr}")
        return result.stdout.strip()

    def keys(self, pattern: str) -> set[str]:
        return {k for k in self.cli("--scan", "--pattern", pattern).splitlines() if k}

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)


class LiteLLMProxy:
    """`litellm --config` on 127.0.0.1 with the config and hook file written to `folder`, secrets in its env."""

    def __init__(
        self, tools: Tools, folder: Path, config: dict[str, Any], env: dict[str, str], redis: RedisServer
    ) -> None:
        self.tools = tools
        self.folder = folder
        self.port = free_port()
        self.master_key = "sk-" + secrets.token_hex(24)
        self.upstream_key = "internal-" + secrets.token_hex(8)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
        (folder / rc.HOOK_FILE).write_text(rc.hook_source())
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(folder),
            **env,
            rc.MASTER_KEY_ENV: self.master_key,
            rc.UPSTREAM_KEY_ENV: self.upstream_key,
            rc.REDIS_HOST_ENV: "127.0.0.1",
            rc.REDIS_PORT_ENV: str(redis.port),
            rc.REDIS_PASSWORD_ENV: redis.password,
            "NO_PROXY": "*",  # loopback only
        }
        self.log = folder / "proxy.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def headers(self, tenant: str | None) -> dict[str, str]:
        """What Envoy sends the proxy: its key for the proxy and the authenticated tenant."""
        headers = {"authorization": f"Bearer {self.master_key}"}
        if tenant is not None:
            headers[TENANT_HEADER] = tenant
        return headers

    def __enter__(self) -> LiteLLMProxy:
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    str(self.tools.litellm),
                    *("--config", str(self.folder / "config.yaml"), "--host", "127.0.0.1", "--port", str(self.port)),
                ],
                cwd=self.folder,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"LiteLLM exited ({self._process.returncode}):\n{self.log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{self.url}/health/liveliness", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"LiteLLM not up in {START_TIMEOUT_S} s:\n{self.log.read_text()[-4000:]}")
            time.sleep(0.25)

    def __exit__(self, *exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)

    def counter(self, name: str) -> float:
        """Sum of a Prometheus counter over all its label sets, from the proxy's /metrics (0 while absent)."""
        text = httpx.get(f"{self.url}/metrics/", timeout=10).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(f"{name}_total{{") or line.startswith(f"{name}_total "):
                total += float(line.rsplit(" ", 1)[1])
        return total
