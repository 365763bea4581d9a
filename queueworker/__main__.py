"""`python -m llmfleet.queueworker`: the worker of one region's async queue, configured by its pod's environment.

    LLMFLEET_QUEUE            sqs | pubsub
    LLMFLEET_QUEUE_NAME       SQS queue URL, or the Pub/Sub subscription path (projects/<p>/subscriptions/<s>)
    LLMFLEET_REGION           AWS region of the queue and bucket (sqs)
    LLMFLEET_RESULT_BUCKET    S3 or GCS bucket of the results
    LLMFLEET_GATEWAY_URL      the region's gateway
    LLMFLEET_GATEWAY_API_KEY  the tenant key the jobs run under (unset: anonymous gateway)
    LLMFLEET_WEBHOOK_SECRET   HMAC key of the callback signature (unset: callbacks refused)
    LLMFLEET_CONCURRENCY      jobs in flight per pod (default 4)
    LLMFLEET_JOB_TIMEOUT_S    longest gateway answer per job (default 300)

SIGTERM (a scale-in, a node drained) stops taking jobs and finishes those in flight; the pod's grace period
is longer than one job. Anything not acknowledged by then is redelivered.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping

from llmfleet.queueworker.clouds import GcsStore, PubSubQueue, S3Store, SqsQueue
from llmfleet.queueworker.worker import JobQueue, ResultStore, Worker, WorkerConfig


def from_environment(env: Mapping[str, str]) -> tuple[WorkerConfig, JobQueue, ResultStore]:
    def need(key: str) -> str:
        if not env.get(key):
            raise SystemExit(f"{key} is not set (see `python -m llmfleet.queueworker --help`)")
        return env[key]

    kind = need("LLMFLEET_QUEUE")
    if kind == "sqs":
        region = need("LLMFLEET_REGION")
        queue: JobQueue = SqsQueue(need("LLMFLEET_QUEUE_NAME"), region)
        store: ResultStore = S3Store(need("LLMFLEET_RESULT_BUCKET"), region)
    elif kind == "pubsub":
        queue = PubSubQueue(need("LLMFLEET_QUEUE_NAME"))
        store = GcsStore(need("LLMFLEET_RESULT_BUCKET"))
    else:
        raise SystemExit(f"LLMFLEET_QUEUE: sqs or pubsub, not {kind!r}")
    secret = env.get("LLMFLEET_WEBHOOK_SECRET")
    config = WorkerConfig(
        gateway_url=need("LLMFLEET_GATEWAY_URL"),
        api_key=env.get("LLMFLEET_GATEWAY_API_KEY") or None,
        webhook_secret=secret.encode() if secret else None,
        concurrency=int(env.get("LLMFLEET_CONCURRENCY", "4")),
        job_timeout_s=float(env.get("LLMFLEET_JOB_TIMEOUT_S", "300")),
    )
    return config, queue, store


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    if "--help" in sys.argv:
        print(__doc__)
        return
    config, queue, store = from_environment(os.environ)
    stop = threading.Event()

    def finish(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    worker = Worker(config, queue, store)
    worker.run(stop)
    logging.getLogger("queueworker").info("stopped: %s", worker.counters)


if __name__ == "__main__":
    main()
