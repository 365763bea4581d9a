"""What always-on CPU pods (the cascade's router) cost in a region, priced from the instance catalog (pure Python).

The pods run on the cluster's system nodes, which llmfleet does not size; their price is their share of the
region's cheapest CPU-only instance type at its on-demand price (they run all the time): per pod, the larger of
its CPU and memory requests over that type's allocatable vCPU and memory (85% of the node, as for the queue's
worker pool), times the node's price. A share of a node, not a node: what the pods add to a cluster whose system
nodes have room, and a lower bound when they need a node of their own.
"""

from __future__ import annotations

from llmfleet.components.queue.costs import quantity
from llmfleet.components.sizing.catalog import Catalog
from llmfleet.components.sizing.errors import PlanningError
from llmfleet.components.sizing.types import Frozen

ALLOCATABLE_SHARE = 0.85
"""Part of a node's vCPU and memory left for pods once the kubelet, system daemons and eviction reserve are
taken (EKS and GKE reserve more on small nodes; 15% is a round middle for 8-32 vCPU types)."""
HOURS_PER_MONTH = 730
CACHE_REDIS_CPU = "100m"
"""CPU request of the response cache's Redis (components/gateway/cache_deploy.py; its limit is one core)."""


def cache_redis_memory(max_memory_mb: int) -> str:
    """The response cache's Redis memory (request = limit): its maxmemory plus a quarter (at least 64 MiB) for what
    Redis's maxmemory does not count (allocator fragmentation, client buffers, the process itself)."""
    return f"{max_memory_mb + max(64, max_memory_mb // 4)}Mi"


class CpuPodsCost(Frozen):
    """Always-on CPU pods of one region (the cascade's semantic router), priced as a share of a CPU node."""

    cloud: str
    region: str
    what: str
    pods: int
    cpu: str
    memory: str
    vcpu_total: float
    memory_gib_total: float
    instance_type: str
    """The cheapest CPU-only type of the region for these pods, at its on-demand price."""
    usd_per_hour: float
    usd_per_month: float
    price_verified: bool
    price_source: str


def cpu_pods_cost(
    catalog: Catalog, cloud: str, region: str, what: str, pods: int, cpu: str, memory: str
) -> CpuPodsCost:
    cores, gib = quantity(cpu), quantity(memory)
    options: list[tuple[float, str, bool, str]] = []
    for instance in catalog.instances_in(cloud, region):
        price = catalog.price(instance, region)
        if instance.gpu_count or price.on_demand is None:
            continue
        share = max(cores / (instance.vcpu * ALLOCATABLE_SHARE), gib / (instance.ram_gib * ALLOCATABLE_SHARE))
        if share > 1:
            continue  # one pod does not fit on a node of this type
        options.append((pods * share * price.on_demand, instance.type, price.verified, price.source))
    if not options:
        raise PlanningError(
            f"{what}: the catalog has no priced CPU-only instance type in {cloud}/{region} that fits a pod of "
            f"{cpu} CPU and {memory}"
        )
    usd, instance_type, verified, source = min(options)
    return CpuPodsCost(
        cloud=cloud,
        region=region,
        what=what,
        pods=pods,
        cpu=cpu,
        memory=memory,
        vcpu_total=round(pods * cores, 3),
        memory_gib_total=round(pods * gib, 3),
        instance_type=instance_type,
        usd_per_hour=round(usd, 4),
        usd_per_month=round(usd * HOURS_PER_MONTH, 2),
        price_verified=verified,
        price_source=source,
    )
