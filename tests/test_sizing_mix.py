"""Mixed GPU types (components/sizing/mix.py): the split search is exact, and the planner reports what it saves."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.sizing import CATALOG, ETA, US_EAST_1, mix_request

from llmfleet.components.sizing.mix import cheapest_mix, nodes_for
from llmfleet.components.sizing.planner import plan_deployment
from llmfleet.components.sizing.types import Quantization


@dataclass(frozen=True)
class Shape:
    gpu_id: str
    instance_type: str
    capacity: float
    node_price: float
    replicas_per_node: int
    pipeline_stages: int = 1
    load: float = 0.0

    @property
    def label(self) -> str:
        return self.instance_type

    @property
    def usd_per_hour(self) -> float:
        return nodes_for(self, math.ceil(self.load / self.capacity)) * self.node_price


def brute_force(shapes: list[Shape], load: float) -> float:
    """Every ordered pair of types with different GPUs, every count of the first short of carrying the load alone (else
    the first type alone is cheaper) and every count of the second up to carrying it alone."""
    best = math.inf
    for a, b in itertools.permutations(shapes, 2):
        if a.gpu_id == b.gpu_id:
            continue
        for n in range(1, math.ceil(load / a.capacity)):
            for m in range(1, math.ceil(load / b.capacity) + 1):
                if n * a.capacity + m * b.capacity >= load:
                    best = min(best, nodes_for(a, n) * a.node_price + nodes_for(b, m) * b.node_price)
    return best


@settings(max_examples=60, deadline=None)
@given(
    load=st.integers(1, 120),
    specs=st.lists(
        st.tuples(
            st.sampled_from(["A", "B", "C"]), st.integers(1, 40), st.floats(0.5, 30.0), st.sampled_from([1, 2, 4])
        ),
        min_size=2,
        max_size=4,
    ),
)
def test_the_split_search_is_exact(load: int, specs: list[tuple[str, int, float, int]]) -> None:
    shapes = [Shape(g, f"{g}-{i}", float(c), p, r, load=load) for i, (g, c, p, r) in enumerate(specs)]
    found = cheapest_mix(shapes, float(load))
    assert found is not None
    expected = brute_force(shapes, float(load))
    if found.pools is None:
        assert expected == math.inf
        return
    pools = found.pools
    assert pools[0].candidate.gpu_id != pools[1].candidate.gpu_id
    assert pools[0].capacity + pools[1].capacity >= load - 1e-9  # the split carries the load
    assert found.usd_per_hour == pytest.approx(expected)


def test_a_mix_of_two_gpu_types_can_beat_the_best_single_type() -> None:
    """70B fp8 at 40 sequences: two L40S x4 nodes (the best single type) leave one half-used; an A10G x4 node for the
    remainder is cheaper. The plan reports both pools, their route weights and what the mix saves."""
    chosen = plan_deployment(
        CATALOG, mix_request("llama-3.3-70b", Quantization.FP8, 40), US_EAST_1, eta=ETA, tpot_slo_ms=60
    )
    mix = chosen.mix
    assert mix is not None and mix.usd_per_hour is not None and not mix.deployed
    assert mix.single_usd_per_hour == pytest.approx(chosen.usd_per_hour)
    assert mix.usd_per_hour < chosen.usd_per_hour and mix.saves_usd_per_hour > 0
    assert mix.saves_usd_per_hour == pytest.approx(chosen.usd_per_hour - mix.usd_per_hour, abs=1e-3)
    assert len({p.gpu for p in mix.pools}) == 2 and sum(p.weight for p in mix.pools) == pytest.approx(1, abs=1e-3)
    assert mix.usd_per_hour == pytest.approx(sum(p.usd_per_hour for p in mix.pools), abs=1e-3)
    assert mix.summary.startswith("mix ") and "saves" in mix.summary


def test_the_plan_says_why_no_mix_is_cheaper() -> None:
    chosen = plan_deployment(
        CATALOG, mix_request("llama-3.1-8b", Quantization.BF16, 33), US_EAST_1, eta=ETA, tpot_slo_ms=60
    )
    assert chosen.mix is not None and chosen.mix.saves_usd_per_hour == 0
    assert chosen.mix.summary.startswith("no mix is cheaper: the best split")
    pinned = plan_deployment(
        CATALOG, mix_request("llama-3.1-8b", Quantization.BF16, 33, gpu="L40S"), US_EAST_1, eta=ETA, tpot_slo_ms=60
    )
    assert pinned.mix is not None and "pins" in pinned.mix.summary
    off = plan_deployment(
        CATALOG,
        mix_request("llama-3.1-8b", Quantization.BF16, 33).model_copy(update={"mixed_gpus": False}),
        US_EAST_1,
        eta=ETA,
        tpot_slo_ms=60,
    )
    assert off.mix is None
