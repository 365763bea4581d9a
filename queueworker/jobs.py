"""One job of the async queue, in the OpenAI Batch API's line format, and the webhook's signature.

A message on the queue is one line of an OpenAI batch input file (`custom_id`, `method`, `url`,
`body`), plus an optional `callback_url`: producers that already write batch files send their lines as
they are. The result stored for it is one line of a batch output file (`id`, `custom_id`,
`response: {status_code, request_id, body}`, `error`), so readers of OpenAI batch output read it as is.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, cast

ALLOWED_URLS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings"})
"""The endpoints a job may call (the OpenAI Batch API's; the gateway routes all of them by `model`)."""
CUSTOM_ID_MAX = 256
"""Longest custom_id: it names the result object (S3 and GCS keys allow 1,024 bytes)."""
SIGNATURE_HEADER = "x-llmfleet-signature"
"""Webhook header: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the shared secret>`."""
SIGNATURE_TOLERANCE_S = 300
"""A receiver rejects signatures older than this (a replayed delivery)."""


class InvalidJob(ValueError):
    """The message is not a job this worker can run; retrying cannot help (stored as an error, not retried)."""


@dataclass(frozen=True)
class Job:
    custom_id: str
    url: str
    body: dict[str, Any]
    callback_url: str | None = None

    @classmethod
    def parse(cls, raw: bytes, fallback_id: str) -> Job:
        """A job from a message body; `fallback_id` (the queue's message id) names results of unparsable ones."""
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise InvalidJob(f"message {fallback_id}: not JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise InvalidJob(f"message {fallback_id}: a job is a JSON object")
        line = cast(dict[str, Any], data)
        custom_id = line.get("custom_id", fallback_id)
        if not isinstance(custom_id, str) or not 0 < len(custom_id) <= CUSTOM_ID_MAX or "/" in custom_id:
            raise InvalidJob(f"message {fallback_id}: custom_id must be 1-{CUSTOM_ID_MAX} characters without '/'")
        if line.get("method", "POST") != "POST":
            raise InvalidJob(f"job {custom_id}: method must be POST")
        url = line.get("url", "/v1/chat/completions")
        if url not in ALLOWED_URLS:
            raise InvalidJob(f"job {custom_id}: url {url!r} is not one of {sorted(ALLOWED_URLS)}")
        body = line.get("body")
        if not isinstance(body, dict) or not isinstance(cast(dict[str, Any], body).get("model"), str):
            raise InvalidJob(f"job {custom_id}: body must be an object naming a model")
        callback = line.get("callback_url")
        if callback is not None and not (isinstance(callback, str) and callback.startswith(("https://", "http://"))):
            raise InvalidJob(f"job {custom_id}: callback_url must be an http(s) URL")
        # A queue consumer cannot hold a stream open to anyone: the answer is stored whole.
        return cls(custom_id, url, {**cast(dict[str, Any], body), "stream": False}, callback)


def result_line(
    custom_id: str, status_code: int | None, body: Any, request_id: str | None, error: str | None
) -> dict[str, Any]:
    """One line of an OpenAI batch output file."""
    response = None if status_code is None else {"status_code": status_code, "request_id": request_id, "body": body}
    return {
        "id": f"batch_req_{uuid.uuid4().hex}",
        "custom_id": custom_id,
        "response": response,
        "error": None if error is None else {"code": "job_failed", "message": error},
    }


def sign(secret: bytes, body: bytes, now: float | None = None) -> str:
    """The SIGNATURE_HEADER value for `body`: the timestamp is signed with it, so a replay can be refused."""
    stamp = int(time.time() if now is None else now)
    digest = hmac.new(secret, f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


def verify(secret: bytes, body: bytes, header: str, now: float | None = None) -> bool:
    """What a webhook receiver runs: the signature matches the body and is at most SIGNATURE_TOLERANCE_S old."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        stamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - stamp) > SIGNATURE_TOLERANCE_S:
        return False
    expected = hmac.new(secret, f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))
