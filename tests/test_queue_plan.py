"""`llmfleet plan` shows what the async queue adds, from the cited request prices (components/queue/prices.yaml)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from support.stacks import StackWriter
from typer.testing import CliRunner

from llmfleet.components.queue.costs import BYTES_PER_TOKEN, JOB_OVERHEAD_BYTES, SECONDS_PER_MONTH, prices, queue_cost
from llmfleet.components.queue.types import POLLING_INTERVAL_S
from llmfleet.components.sizing.catalog import load_catalog
from llmfleet.infra.cli import app
from llmfleet.infra.config import ConfigError, load_stack
from llmfleet.infra.planning import build_plan


def stack(**queue: Any) -> dict[str, Any]:
    base = {"worker_image": "registry.example.com/worker:1.0", "tenant": "batch", "max_workers": 8}
    merged = {k: v for k, v in {**base, **queue}.items() if v is not None}
    return {
        "models": [
            {
                "name": "chat",
                "model": "qwen2.5-7b",
                "max_model_len": 32768,
                "load": {"concurrent_sequences": 8, "prompt_tokens": 20000},
            }
        ],
        "regions": [
            {"cloud": "aws", "region": "us-east-1", "role": "primary"},
            {"cloud": "gcp", "region": "us-central1"},
        ],
        "gcp_project": "acme-llm",
        "api_access_cidrs": ["203.0.113.0/24"],
        "gateway": {"tenants": [{"name": "batch", "api_key_secret": "keyBatch"}]},
        "queue": merged,
    }


def test_each_queue_region_is_priced_from_the_cited_request_prices(write_stack: StackWriter) -> None:
    name, spec = load_stack(stack_file=write_stack(stack()))
    aws, gcp = build_plan(name, spec).queue
    p = {k: v.value for k, v in prices().items()}
    job = 20000 * BYTES_PER_TOKEN + JOB_OVERHEAD_BYTES  # 80,512 bytes: two 64 KiB SQS chunks
    assert aws.job_bytes == gcp.job_bytes == job
    chunks = math.ceil(job / p["sqs_request_chunk_bytes"])
    assert chunks == 2
    sqs = (2 * chunks + 1) * p["sqs_standard_usd_per_million_requests"] / 1e6
    assert aws.usd_per_million_jobs == pytest.approx(
        (sqs + p["s3_standard_put_usd_per_thousand"] / 1e3) * 1e6, abs=0.01
    )
    polls = SECONDS_PER_MONTH / POLLING_INTERVAL_S
    assert aws.idle_usd_per_month == pytest.approx(polls * p["sqs_standard_usd_per_million_requests"] / 1e6, abs=0.01)
    pubsub = 2 * job / 2**40 * p["pubsub_usd_per_tib"]
    assert gcp.usd_per_million_jobs == pytest.approx((pubsub + p["gcs_class_a_usd_per_thousand"] / 1e3) * 1e6, abs=0.01)
    assert (aws.worker_pods_max, aws.worker_vcpu_max, aws.worker_memory_gib_max) == (8, 2.0, 2.0)
    assert not aws.price_verified and gcp.price_verified
    assert "worker pods (system nodes)" in aws.not_priced and "result storage" in gcp.not_priced


def test_small_pubsub_jobs_are_billed_the_minimum_request_size() -> None:
    small = queue_cost("gcp", "us-central1", 10, 1, "250m", "256Mi", POLLING_INTERVAL_S)
    minimum = prices()["pubsub_min_bytes_per_request"].value
    expected = (
        2 * minimum / 2**40 * prices()["pubsub_usd_per_tib"].value
        + prices()["gcs_class_a_usd_per_thousand"].value / 1e3
    )
    assert small.usd_per_million_jobs == pytest.approx(expected * 1e6, abs=0.01)


def test_plan_output_shows_the_queue_or_nothing_without_one(write_stack: StackWriter) -> None:
    runner = CliRunner()
    path = write_stack(stack(regions=["gcp-us-central1"]), keyBatch="k")
    table = runner.invoke(app, ["plan", "--stack-file", str(path)])
    assert table.exit_code == 0, table.output
    assert "Async queue gcp/us-central1" in table.output and "Async queue aws/" not in table.output
    as_json = json.loads(runner.invoke(app, ["plan", "--stack-file", str(path), "--format", "json"]).output)
    assert [q["region"] for q in as_json["queue"]] == ["us-central1"]
    plain = stack()
    del plain["queue"]
    no_queue = json.loads(
        runner.invoke(
            app, ["plan", "--stack-file", str(write_stack(plain, name="p", keyBatch="k")), "-f", "json"]
        ).output
    )
    assert no_queue["queue"] == []


def test_the_spot_pool_is_sized_for_the_stated_jobs_per_minute_from_the_model_plan(write_stack: StackWriter) -> None:
    name, spec = load_stack(stack_file=write_stack(stack(spot_pool={"jobs_per_minute": 900}, max_workers=None)))
    plan = build_plan(name, spec)
    catalog = load_catalog()
    for q in plan.queue:
        pool = q.pool
        assert pool is not None
        [d] = [d for d in plan.deployments if (d.cloud, d.region) == (q.cloud, q.region)]
        seconds = spec.models[0].load.output_tokens / (d.output_tokens_per_s_per_replica / d.max_num_seqs)
        assert pool.seconds_per_job == pytest.approx(seconds, abs=0.01)
        assert pool.workers == math.ceil(900 / 60 * seconds / spec.queue.concurrency)  # type: ignore[union-attr]
        assert q.worker_pods_max == pool.workers and "worker pods (system nodes)" not in q.not_priced
        [instance] = [i for i in catalog.instances_in(q.cloud, q.region) if i.type == pool.instance_type]
        assert instance.gpu_count == 0
        assert pool.max_nodes == math.ceil(pool.workers / pool.pods_per_node)
        price = catalog.price(instance, q.region)
        expected = price.spot if pool.price_basis == "spot" else price.on_demand
        assert expected is not None and pool.usd_per_hour_at_max == pytest.approx(pool.max_nodes * expected, abs=1e-3)
        capacity = d.max_replicas * d.output_tokens_per_s_per_replica
        assert pool.batch_share == pytest.approx(900 / 60 * spec.models[0].load.output_tokens / capacity, abs=1e-3)


def test_a_bigger_batch_never_gets_fewer_workers_or_nodes(write_stack: StackWriter) -> None:
    sizes = []
    for jobs in (60, 600, 6000):
        name, spec = load_stack(
            stack_file=write_stack(stack(spot_pool={"jobs_per_minute": jobs}, max_workers=None), name=f"j{jobs}")
        )
        pool = build_plan(name, spec).queue[0].pool
        assert pool is not None
        sizes.append((pool.workers, pool.max_nodes))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_spot_pool_options_name_their_field(write_stack: StackWriter) -> None:
    with pytest.raises(ConfigError, match=r"queue.max_workers: with queue.spot_pool"):
        load_stack(stack_file=write_stack(stack(spot_pool={"jobs_per_minute": 60}, max_workers=4), name="e1"))
    with pytest.raises(ConfigError, match=r"queue.spot_pool.model: 'nope' is not served"):
        load_stack(
            stack_file=write_stack(
                stack(spot_pool={"jobs_per_minute": 60, "model": "nope"}, max_workers=None), name="e2"
            )
        )
