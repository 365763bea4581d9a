"""Sizing the queue workers' own spot node pool for a stated batch throughput (pure Python, no Pulumi).

A job holds a worker slot for as long as the model takes to answer it. The plan says how fast one
replica of the model decodes at its planned batch (`output_tokens_per_s_per_replica` over
`max_num_seqs` sequences), so one job of `output_tokens` takes about output_tokens / (that rate per
sequence) seconds (its prefill is left out: decoding dominates answers of more than a few tokens).
By Little's law the jobs in flight are jobs/s x seconds per job; each worker pod holds `concurrency`
of them. The pods (their CPU and memory requests) are packed on the cheapest CPU-only instance type of
the region (at its cited spot price; the on-demand price, as an upper bound, where no spot price is cited),
with the other CPU types as fallbacks.

The workers only wait on the gateway, so the pool is small; what the batch costs in GPU time is the
model's: `batch_share` says what part of the model's most capacity in the region (max replicas) the
stated throughput takes.
"""

from __future__ import annotations

import math

from llmfleet.components.queue.costs import WorkerPoolPlan, quantity
from llmfleet.components.sizing.catalog import Catalog, InstanceEntry
from llmfleet.components.sizing.cpu_pods import ALLOCATABLE_SHARE
from llmfleet.components.sizing.errors import PlanningError
from llmfleet.components.sizing.plan import DeploymentPlan


def _cpu_types(catalog: Catalog, cloud: str, region: str) -> list[tuple[InstanceEntry, float, bool, str]]:
    """CPU-only types of the region with (price per node-hour, verified, basis): the spot price where the catalog
    cites one, else the on-demand price as an upper bound (the pool still asks for spot capacity)."""
    found: list[tuple[InstanceEntry, float, bool, str]] = []
    for instance in catalog.instances_in(cloud, region):
        if instance.gpu_count:
            continue
        price = catalog.price(instance, region)
        if price.spot is not None:
            found.append((instance, price.spot, price.verified, "spot"))
        elif price.on_demand is not None:
            found.append((instance, price.on_demand, False, "on-demand (no cited spot price): an upper bound"))
    return found


def plan_worker_pool(
    catalog: Catalog,
    deployment: DeploymentPlan,
    *,
    jobs_per_minute: int,
    output_tokens: int,
    concurrency: int,
    worker_cpu: str,
    worker_memory: str,
) -> WorkerPoolPlan:
    per_sequence = deployment.output_tokens_per_s_per_replica / deployment.max_num_seqs
    seconds_per_job = output_tokens / per_sequence
    in_flight = jobs_per_minute / 60 * seconds_per_job
    workers = max(1, math.ceil(in_flight / concurrency))
    cpu, memory_gib = quantity(worker_cpu), quantity(worker_memory)
    options: list[tuple[float, int, int, InstanceEntry, bool, str]] = []
    for instance, price, verified, basis in _cpu_types(catalog, deployment.cloud, deployment.region):
        per_node = math.floor(
            min(instance.vcpu * ALLOCATABLE_SHARE / cpu, instance.ram_gib * ALLOCATABLE_SHARE / memory_gib)
        )
        if per_node < 1:
            continue
        nodes = math.ceil(workers / per_node)
        options.append((nodes * price, nodes, per_node, instance, verified, basis))
    if not options:
        raise PlanningError(
            f"queue.spot_pool: the catalog has no priced CPU-only instance type in {deployment.cloud}/"
            f"{deployment.region}; remove spot_pool to run the workers on the system nodes"
        )
    options.sort(key=lambda o: (o[0], o[3].vcpu))
    cost, nodes, per_node, chosen, verified, basis = options[0]
    batch_tokens = jobs_per_minute / 60 * output_tokens
    capacity = deployment.max_replicas * deployment.output_tokens_per_s_per_replica
    return WorkerPoolPlan(
        model=deployment.model,
        jobs_per_minute=jobs_per_minute,
        seconds_per_job=round(seconds_per_job, 2),
        jobs_in_flight=round(in_flight, 1),
        workers=workers,
        instance_type=chosen.type,
        fallback_instance_types=tuple(o[3].type for o in options[1:4]),
        pods_per_node=per_node,
        max_nodes=nodes,
        usd_per_hour_at_max=round(cost, 4),
        price_verified=verified,
        price_basis=basis,
        batch_output_tokens_per_s=round(batch_tokens, 1),
        batch_share=round(batch_tokens / capacity, 3),
    )
