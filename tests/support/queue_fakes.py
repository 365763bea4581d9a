"""Test doubles of a cloud queue and object store, for the worker tests only (the product uses SQS/Pub/Sub, S3/GCS).

`FakeQueue` keeps the two behaviours the worker relies on: a message not acknowledged comes back with its
attempt count raised, and after `max_attempts` deliveries it moves to the dead-letter list (SQS redrive
policy, Pub/Sub dead-letter policy). Delays are recorded, not waited for.
"""

from __future__ import annotations

import collections
import http.server
import json
import threading
from typing import Any

from llmfleet.queueworker.worker import Message


class FakeQueue:
    def __init__(self, bodies: list[bytes] | None = None, max_attempts: int = 3) -> None:
        self.max_attempts = max_attempts
        self._ready: collections.deque[Message] = collections.deque()
        self._lock = threading.Lock()
        self._next = 0
        self.acked: list[Message] = []
        self.dead: list[Message] = []
        self.delays: list[int] = []
        self.in_flight = 0
        for body in bodies or []:
            self.send(body)

    def send(self, body: bytes) -> None:
        with self._lock:
            self._next += 1
            self._ready.append(Message(id=f"m{self._next}", body=body, attempt=1, handle=f"h{self._next}"))

    def receive(self, max_messages: int) -> list[Message]:
        with self._lock:
            taken = [self._ready.popleft() for _ in range(min(max_messages, len(self._ready)))]
            self.in_flight += len(taken)
            return taken

    def ack(self, message: Message) -> None:
        with self._lock:
            self.in_flight -= 1
            self.acked.append(message)

    def retry_later(self, message: Message, delay_s: int) -> None:
        with self._lock:
            self.in_flight -= 1
            self.delays.append(delay_s)
            again = Message(message.id, message.body, message.attempt + 1, message.handle)
            (self.dead if message.attempt >= self.max_attempts else self._ready).append(again)

    def drained(self) -> bool:
        with self._lock:
            return not self._ready and self.in_flight == 0


class FakeStore:
    def __init__(self, fail_times: int = 0) -> None:
        self.objects: dict[str, bytes] = {}
        self._fail = fail_times
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes) -> tuple[str, bool]:
        """A conditional create, as S3 (If-None-Match: *) and GCS (ifGenerationMatch=0) do it."""
        with self._lock:
            if self._fail > 0:
                self._fail -= 1
                raise OSError("store unavailable")
            created = key not in self.objects
            self.objects.setdefault(key, data)
        return f"mem://bucket/{key}", created

    def line(self, custom_id: str) -> dict[str, Any]:
        return json.loads(self.objects[f"results/{custom_id}.json"])


class WebhookReceiver:
    """A loopback HTTP server recording each POST (headers and body), answering `status`."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
