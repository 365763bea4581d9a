"""Benchmark: jobs per second one queue worker process drains through the emulator, by concurrency.

Run it as a script, not under pytest:

    .venv/bin/python tests/benchmarks/bench_queue_worker.py [--jobs N] [--ttft-ms 50] [--itl-ms 2] [--tokens 64]

The emulator stands for the gateway and its models (loopback, non-streamed answers after
ttft + (tokens - 1) x itl); the queue and store are in-memory doubles (tests/support/queue_fakes.py), so the figure is
the worker's own ceiling: what it adds on top of the model's latency, and how it scales with threads.
A real SQS or Pub/Sub receive adds a network round trip per job; a real model's latency is longer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the repository root, when run as a script
sys.path.insert(0, str(ROOT / "tests"))

from support.queue_fakes import FakeQueue, FakeStore  # noqa: E402

from llmfleet.loadtests.emulator import Emulator, EmulatorConfig  # noqa: E402
from llmfleet.queueworker.worker import Worker, WorkerConfig  # noqa: E402


def job(i: int, tokens: int) -> bytes:
    body = {"model": "chat", "messages": [{"role": "user", "content": f"job {i}"}], "max_tokens": tokens}
    return json.dumps({"custom_id": f"j{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}).encode()


def run(jobs: int, concurrency: int, config: EmulatorConfig, tokens: int) -> tuple[float, int]:
    with Emulator(config) as em:
        queue, store = FakeQueue([job(i, tokens) for i in range(jobs)]), FakeStore()
        worker = Worker(WorkerConfig(gateway_url=em.url, concurrency=concurrency, job_timeout_s=60), queue, store)
        stop = threading.Event()

        def idle() -> None:
            if queue.drained():
                stop.set()
            time.sleep(0.005)

        start = time.perf_counter()
        worker.run(stop, idle)
        elapsed = time.perf_counter() - start
        assert len(store.objects) == jobs, f"{len(store.objects)} of {jobs} stored"
        return elapsed, em.requests_served


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--ttft-ms", type=float, default=50)
    parser.add_argument("--itl-ms", type=float, default=2)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 4, 16, 32])
    args = parser.parse_args()
    config = EmulatorConfig(ttft_s=args.ttft_ms / 1000, itl_s=args.itl_ms / 1000, output_tokens=args.tokens)
    latency_s = config.ttft_s + config.itl_s * (args.tokens - 1)
    print(f"load average at start: {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs")
    print(f"emulated model latency per job: {latency_s * 1000:.0f} ms ({args.tokens} tokens, not streamed)")
    print("concurrency  jobs  seconds  jobs/s  ideal jobs/s  efficiency")
    for concurrency in args.concurrency:
        jobs = min(args.jobs, max(40, concurrency * 25))
        elapsed, served = run(jobs, concurrency, config, args.tokens)
        rate, ideal = served / elapsed, concurrency / latency_s
        print(f"{concurrency:11d}  {served:4d}  {elapsed:7.2f}  {rate:6.1f}  {ideal:12.1f}  {rate / ideal:10.2f}")


if __name__ == "__main__":
    import benchdoc  # tests/benchmarks/, beside this script: --write-docs records the output

    benchdoc.run("queue-worker", main)
