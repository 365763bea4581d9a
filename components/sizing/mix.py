"""Mixed GPU types for one model in one region (as in Melange, Griggs et al. 2024): split the load over two pools.

A single type is bought in whole replicas and whole nodes, so the last node is often part-empty, and the type
that is cheapest per unit of load is not always the one that covers the remainder most cheaply. A mix fills
the load with replicas of one type and covers the rest with another. The search is exact and small: per
instance type its replica shape cheapest per unit of capacity, every pair of types with different GPUs, and
every split in whole replicas (each pool at least one replica). Capacity is what the planner rated a
replica at: sequences in flight for a concurrency load, output tokens/s for a throughput load; each pool is
weighted by the capacity it brings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Protocol


class Candidate(Protocol):
    """What the mix needs from a sized option (planner.Sized provides it)."""

    @property
    def gpu_id(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def instance_type(self) -> str: ...
    @property
    def capacity(self) -> float: ...
    @property
    def node_price(self) -> float: ...
    @property
    def usd_per_hour(self) -> float: ...
    @property
    def replicas_per_node(self) -> int: ...
    @property
    def pipeline_stages(self) -> int: ...


def nodes_for(candidate: Candidate, replicas: int) -> int:
    """Nodes `replicas` of a candidate occupy: packed per node, or one node per stage when a replica spans nodes."""
    if candidate.pipeline_stages > 1:
        return replicas * candidate.pipeline_stages
    return math.ceil(replicas / candidate.replicas_per_node)


@dataclass(frozen=True)
class Split:
    """One pool of a mix: a candidate and how many replicas of it, on how many nodes, at what price."""

    candidate: Candidate
    replicas: int
    nodes: int

    @property
    def usd_per_hour(self) -> float:
        return self.nodes * self.candidate.node_price

    @property
    def capacity(self) -> float:
        return self.replicas * self.candidate.capacity


@dataclass(frozen=True)
class MixResult:
    best_single: Candidate
    pools: tuple[Split, Split] | None
    """The cheapest two-type split, or None when no pair of types exists."""

    @property
    def usd_per_hour(self) -> float | None:
        return None if self.pools is None else sum(p.usd_per_hour for p in self.pools)

    @property
    def saves_usd_per_hour(self) -> float:
        mixed = self.usd_per_hour
        return 0.0 if mixed is None else max(0.0, self.best_single.usd_per_hour - mixed)


def per_unit_cost(candidate: Candidate) -> float:
    """$/h per unit of capacity when the type's nodes are full: how good a type is for the bulk of a load."""
    replicas = candidate.replicas_per_node if candidate.pipeline_stages == 1 else 1
    return nodes_for(candidate, replicas) * candidate.node_price / (replicas * candidate.capacity)


def cheapest_mix(candidates: Sequence[Candidate], load: float) -> MixResult | None:
    """The best single candidate and the cheapest split of `load` over two GPU types (exact over whole replicas)."""
    if not candidates:
        return None
    best_single = min(candidates, key=lambda c: c.usd_per_hour)
    by_type: dict[str, Candidate] = {}  # per instance type, its replica shape cheapest per unit of capacity
    for c in candidates:
        held = by_type.get(c.instance_type)
        if c.capacity > 0 and (held is None or per_unit_cost(c) < per_unit_cost(held)):
            by_type[c.instance_type] = c
    best: tuple[Split, Split] | None = None
    for a, b in combinations(sorted(by_type.values(), key=lambda c: c.label), 2):
        if a.gpu_id == b.gpu_id:
            continue  # a mix of GPU types; two shapes of one GPU are the single-type search's business
        for first, second in ((a, b), (b, a)):
            for n in range(1, math.ceil(load / first.capacity)):
                rest = load - n * first.capacity
                m = max(1, math.ceil(rest / second.capacity - 1e-9))
                pools = (Split(first, n, nodes_for(first, n)), Split(second, m, nodes_for(second, m)))
                cost = pools[0].usd_per_hour + pools[1].usd_per_hour
                if best is None or cost < best[0].usd_per_hour + best[1].usd_per_hour - 1e-9:
                    best = pools
    return MixResult(best_single, best)
