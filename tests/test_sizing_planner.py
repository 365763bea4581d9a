"""The planner's choices: cheapest option that carries the load, explained rejections, pins checked."""

from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.sizing import CATALOG, ETA, US_EAST_1, request

from llmfleet.components.sizing import memory as mem
from llmfleet.components.sizing.errors import PlanningError
from llmfleet.components.sizing.parallelism import tensor_parallel_is_valid
from llmfleet.components.sizing.plan import DeploymentPlan
from llmfleet.components.sizing.planner import plan_deployment
from llmfleet.components.sizing.types import (
    ConcurrencyLoad,
    KvCacheDtype,
    ModelRequest,
    Quantization,
    RegionRequest,
    ThroughputLoad,
)


def plan(model: ModelRequest, region: RegionRequest = US_EAST_1, tpot_ms: float | None = 60) -> DeploymentPlan:
    return plan_deployment(CATALOG, model, region, eta=ETA, tpot_slo_ms=tpot_ms)


def test_small_model_lands_on_one_cheap_gpu_with_fallbacks() -> None:
    chosen = plan(request())
    assert chosen.gpu in {"L4", "A10G", "L40S"}
    assert chosen.tensor_parallel == 1
    assert len(chosen.fallback_instance_types) >= 2
    assert chosen.instance_type not in chosen.fallback_instance_types
    assert chosen.usd_per_hour == pytest.approx(chosen.nodes * CATALOG.instances[chosen.instance_type].usd_per_hour)
    # Everything else was considered and carries a reason; the cheaper-looking ones lost on the load.
    assert chosen.rejected and all(r.reason for r in chosen.rejected)
    for rejection in chosen.rejected:
        if "/h for the load" in rejection.reason:
            cost = float(rejection.reason.split("$")[1].split("/h")[0])
            assert cost >= chosen.usd_per_hour - 0.01


def test_plan_reports_vllm_memory_split_and_concurrency() -> None:
    chosen = plan(request())
    m = chosen.memory
    assert m.kv_bytes_per_token == 128 * 1024
    assert m.budget_gib_per_gpu == pytest.approx(m.gpu_total_gib * chosen.gpu_memory_utilization, abs=0.02)
    spent = m.weights_gib_per_gpu + m.activation_gib_per_gpu + m.non_torch_gib_per_gpu + m.cuda_graph_gib_per_gpu
    assert spent + m.kv_cache_gib_per_gpu == pytest.approx(m.budget_gib_per_gpu, abs=0.05)
    assert chosen.max_concurrency_at_context == pytest.approx(chosen.kv_cache_tokens_per_replica / 8192, abs=0.01)
    assert chosen.engine_version == mem.DEFAULT_VLLM_VERSION
    assert chosen.gpu_memory_utilization == 0.92


def test_sampler_activation_follows_the_max_num_seqs_the_service_starts_with() -> None:
    """v0.11's sorting sampler costs 39 bytes per logit per sequence row: at the H100 default of 1024 rows that is
    4.8 GiB for Llama-3.1, at the plan's own --max-num-seqs far less. The split must be the one vLLM will log."""
    chosen = plan(request(gpu="H100", engine_version="v0.11.0", load=ConcurrencyLoad(concurrent_sequences=16)))
    arch = CATALOG.models["llama-3.1-8b"].architecture
    assert chosen.max_num_seqs < 1024
    started = mem.activation_peak_bytes(
        arch, chosen.max_num_batched_tokens, chosen.max_num_seqs, 1, mem.Sampler.PYTORCH
    )
    default = mem.activation_peak_bytes(arch, chosen.max_num_batched_tokens, 1024, 1, mem.Sampler.PYTORCH)
    assert chosen.memory.activation_gib_per_gpu == pytest.approx(started / mem.GIB, abs=0.01)
    assert chosen.memory.activation_gib_per_gpu < default / mem.GIB - 1  # the default's figure is off by GiBs
    settings = mem.EngineSettings(
        0.92, chosen.max_num_batched_tokens, chosen.max_num_seqs, False, sampler=mem.Sampler.PYTORCH
    )
    logged = mem.replica_memory(
        arch, Quantization.BF16, KvCacheDtype.AUTO, CATALOG.gpus["H100"].memory_gib, 1, 1, settings
    )
    assert chosen.kv_cache_tokens_per_replica == logged.kv_tokens


def test_70b_fp8_needs_several_gpus_and_valid_tp() -> None:
    chosen = plan(request("llama-3.1-70b", Quantization.FP8, load=ConcurrencyLoad(concurrent_sequences=32)))
    assert chosen.gpus_per_replica >= 2
    assert tensor_parallel_is_valid(CATALOG.models["llama-3.1-70b"].architecture, chosen.tensor_parallel)
    assert chosen.memory.weights_gib_per_gpu < chosen.memory.gpu_total_gib


def test_405b_bf16_spans_nodes_with_pipeline_stages() -> None:
    chosen = plan(
        request("llama-3.1-405b", max_model_len=4096, load=ConcurrencyLoad(concurrent_sequences=1)), tpot_ms=None
    )
    assert chosen.pipeline_parallel >= 2 or chosen.gpu in {"H200", "B200"}
    assert chosen.nodes == chosen.replicas * chosen.pipeline_parallel or chosen.pipeline_parallel == 1


def test_throughput_load_scales_replicas() -> None:
    small = plan(request(load=ThroughputLoad(output_tokens_per_s=100)))
    large = plan(request(load=ThroughputLoad(output_tokens_per_s=5000)))
    assert large.replicas * large.output_tokens_per_s_per_replica >= 5000
    assert large.usd_per_hour > small.usd_per_hour


def test_fp8_on_ampere_runs_weight_only() -> None:
    chosen = plan(request(quantization=Quantization.FP8, gpu="A10G"))
    assert chosen.gpu == "A10G"
    assert chosen.memory.weights_gib_per_gpu < 9


def test_gguf_runs_on_cpu_with_llama_cpp() -> None:
    chosen = plan(
        request("qwen2.5-0.5b", Quantization.Q4_K_M, max_model_len=4096, load=ConcurrencyLoad(concurrent_sequences=2))
    )
    assert chosen.engine == "llama.cpp"
    assert chosen.gpu is None and chosen.gpus_per_node == 0
    assert chosen.engine_version == mem.DEFAULT_LLAMA_CPP_VERSION


def test_gguf_with_a_pinned_gpu_uses_it() -> None:
    chosen = plan(request("llama-3.1-8b", Quantization.Q4_K_M, gpu="L4"))
    assert (chosen.engine, chosen.gpu) == ("llama.cpp", "L4")


def test_vllm_format_pinned_on_a_cpu_type_is_refused_with_reason() -> None:
    with pytest.raises(PlanningError, match="needs a GPU for vLLM"):
        plan(request(instance_type="m7i.8xlarge"))


def test_model_that_fits_nowhere_says_by_how_much() -> None:
    with pytest.raises(PlanningError) as caught:
        plan(request("llama-3.1-405b"), RegionRequest(cloud="gcp", region="us-central1", allowed_gpus=("L4",)))
    message = str(caught.value)
    assert "gcp/us-central1" in message and "no option works" in message
    assert "GiB short" in message and "needs" in message


def test_region_without_the_allowed_gpu_is_explained() -> None:
    with pytest.raises(PlanningError, match=r"offers no .*allowed_gpus \['B200'\]"):
        plan(request(), RegionRequest(cloud="aws", region="eu-west-1", allowed_gpus=("B200",)))


def test_pinned_choices_are_checked_not_chosen() -> None:
    pinned = plan(request(instance_type="g6e.12xlarge", tensor_parallel=2, replicas=3))
    assert (pinned.instance_type, pinned.tensor_parallel, pinned.replicas) == ("g6e.12xlarge", 2, 3)
    assert pinned.replicas_per_node == 2 and pinned.nodes == 2
    with pytest.raises(PlanningError, match=r"one must divide the other|not divisible"):
        plan(request("phi-4", instance_type="g6e.12xlarge", tensor_parallel=4))
    with pytest.raises(PlanningError, match="pinned 1 replicas, the load needs"):
        plan(request(load=ConcurrencyLoad(concurrent_sequences=400), instance_type="g6e.xlarge", replicas=1))


def test_pinned_engine_settings_flow_into_memory() -> None:
    roomy = plan(request(instance_type="g6e.xlarge", gpu_memory_utilization=0.95))
    tight = plan(request(instance_type="g6e.xlarge", gpu_memory_utilization=0.80))
    assert roomy.kv_cache_tokens_per_replica > tight.kv_cache_tokens_per_replica
    old = plan(request(instance_type="g6e.xlarge", engine_version="v0.10.0"))
    assert (old.gpu_memory_utilization, old.memory.cuda_graph_gib_per_gpu) == (0.90, 0)


def test_prices_are_regional_and_per_capacity_type() -> None:
    """The same pinned type costs what prices.yaml says in each region, on-demand and spot, and the plan shows both."""
    pins = {"instance_type": "g6e.xlarge"}
    virginia = plan(request(**pins), US_EAST_1, tpot_ms=None)
    frankfurt = plan(request(**pins), RegionRequest(cloud="aws", region="eu-central-1"), tpot_ms=None)
    oregon = RegionRequest(cloud="aws", region="us-west-2", capacity_type="spot")
    oregon_spot = plan(request(**pins), oregon, tpot_ms=None)
    assert virginia.usd_per_hour == pytest.approx(virginia.nodes * 1.861)
    assert frankfurt.usd_per_hour == pytest.approx(frankfurt.nodes * 2.327)
    assert oregon_spot.usd_per_hour == pytest.approx(oregon_spot.nodes * 0.6538)
    assert oregon_spot.usd_per_hour_spot == oregon_spot.usd_per_hour
    assert oregon_spot.usd_per_hour_on_demand == pytest.approx(oregon_spot.nodes * 1.861)
    assert virginia.usd_per_hour_on_demand == virginia.usd_per_hour and virginia.usd_per_hour_spot is not None
    assert "00148f2a" in virginia.price_source and "us-east-1" in virginia.price_source
    assert virginia.spot_interruption is None and oregon_spot.spot_interruption is not None
    assert "two minutes" in oregon_spot.spot_interruption and "unknown" in oregon_spot.spot_interruption


US_EAST_2_H200 = RegionRequest(cloud="aws", region="us-east-2", allowed_gpus=("H200",))


def test_a_type_without_an_on_demand_price_is_rejected_on_demand() -> None:
    """p5e.48xlarge has only spot prices in the source: an on-demand region plans p5en and says why not p5e."""
    chosen = plan(request("llama-3.1-70b"), US_EAST_2_H200)
    assert chosen.instance_type == "p5en.48xlarge"
    assert "p5e.48xlarge" not in chosen.fallback_instance_types
    (reason,) = [r.reason for r in chosen.rejected if r.option.endswith(" p5e.48xlarge")]
    assert reason.startswith("not offered on-demand: only spot"), reason
    with pytest.raises(PlanningError, match=r"(?s)p5e.48xlarge: not offered on-demand.*capacity_type spot"):
        plan(request("llama-3.1-70b", instance_type="p5e.48xlarge"), US_EAST_2_H200)


def test_spot_regions_buy_at_the_spot_price_or_reject_types_without_one() -> None:
    """p5.4xlarge lists no spot price in us-east-2: a spot region rejects it with the reason, not at on-demand."""
    spot = RegionRequest(cloud="aws", region="us-east-2", capacity_type="spot", allowed_gpus=("H100",))
    chosen = plan(request(), spot)
    assert chosen.instance_type == "p5.48xlarge" and chosen.usd_per_hour == pytest.approx(chosen.nodes * 11.2543)
    (reason,) = [r.reason for r in chosen.rejected if r.option.endswith(" p5.4xlarge")]
    assert reason.startswith("no spot price in us-east-2 in the cited source"), reason


# --- properties ---------------------------------------------------------------------------------

MODELS = ["llama-3.2-3b", "llama-3.1-8b", "qwen2.5-7b", "phi-4", "qwen3-30b-a3b", "mixtral-8x7b"]
QUANTS = [Quantization.BF16, Quantization.FP8, Quantization.AWQ]


def plan_or_none(model: ModelRequest, tally: Counter[str], region: RegionRequest = US_EAST_1) -> DeploymentPlan | None:
    """A plan, or None when the planner refuses; `tally` counts both so a test can tell it checked something."""
    try:
        chosen = plan(model, region)
    except PlanningError:
        tally["refused"] += 1
        return None
    tally["planned"] += 1
    return chosen


def assert_mostly_planned(tally: Counter[str]) -> None:
    """A property over refused plans proves nothing: most examples must have produced a plan to compare."""
    total = tally["planned"] + tally["refused"]
    assert total > 0 and tally["planned"] >= MOSTLY_PLANNED * total, dict(tally)


MOSTLY_PLANNED = 0.75
ROUNDING_GIB = 0.005 * 6
"""MemorySplit rounds each of its six figures to 0.01 GiB, so their sum may drift by this much."""


@settings(max_examples=25, deadline=None)
@given(
    model_id=st.sampled_from(MODELS),
    quantization=st.sampled_from(QUANTS),
    context=st.sampled_from([2048, 4096, 8192, 16384]),
    sequences=st.integers(1, 200),
)
def test_every_plan_fits_its_memory_and_uses_a_valid_tp(
    model_id: str, quantization: Quantization, context: int, sequences: int
) -> None:
    """Every model, quantization, context and load drawn here has a plan in us-east-1 (a refusal fails the test)."""
    arch = CATALOG.models[model_id].architecture
    context = min(context, arch.max_context)
    chosen = plan(
        request(
            model_id,
            quantization,
            context,
            ConcurrencyLoad(concurrent_sequences=sequences, prompt_tokens=512, output_tokens=256),
        )
    )
    assert tensor_parallel_is_valid(arch, chosen.tensor_parallel)
    assert chosen.tensor_parallel <= chosen.gpus_per_node
    m = chosen.memory
    # vLLM's whole split on one GPU: the budget is utilization x total, and weights, every overhead it
    # subtracts (activation peak, non-torch, CUDA graphs: the default release subtracts them) and the KV
    # cache all come out of it.
    assert m.budget_gib_per_gpu == pytest.approx(chosen.gpu_memory_utilization * m.gpu_total_gib, abs=0.01)
    assert m.activation_gib_per_gpu > 0 and m.non_torch_gib_per_gpu > 0 and m.cuda_graph_gib_per_gpu > 0
    spent = (
        m.weights_gib_per_gpu
        + m.activation_gib_per_gpu
        + m.non_torch_gib_per_gpu
        + m.cuda_graph_gib_per_gpu
        + m.kv_cache_gib_per_gpu
    )
    assert spent <= chosen.gpu_memory_utilization * m.gpu_total_gib + ROUNDING_GIB, m
    kv_per_token_per_gpu = m.kv_bytes_per_token / chosen.tensor_parallel / chosen.pipeline_parallel
    kv_tokens_held = (m.kv_cache_gib_per_gpu + ROUNDING_GIB / 6) * mem.GIB / kv_per_token_per_gpu
    assert chosen.kv_cache_tokens_per_replica <= kv_tokens_held  # the tokens come out of that KV memory
    assert chosen.kv_cache_tokens_per_replica >= chosen.max_model_len  # one max-context request fits
    assert chosen.replicas * chosen.max_num_seqs >= sequences
    assert chosen.nodes * chosen.gpus_per_node >= chosen.replicas * chosen.gpus_per_replica


def test_longer_context_never_needs_fewer_gpus() -> None:
    tally: Counter[str] = Counter()

    @settings(max_examples=20, deadline=None)
    @given(
        model_id=st.sampled_from(MODELS),
        contexts=st.lists(st.sampled_from([1024, 4096, 8192, 16384, 32768]), min_size=2, max_size=2, unique=True),
        sequences=st.integers(1, 100),
        instance_type=st.sampled_from(["g6e.12xlarge", "g5.48xlarge", "p5.48xlarge"]),
    )
    def check(model_id: str, contexts: list[int], sequences: int, instance_type: str) -> None:
        arch = CATALOG.models[model_id].architecture
        short, long = sorted(min(c, arch.max_context) for c in contexts)
        load = ConcurrencyLoad(concurrent_sequences=sequences, prompt_tokens=512, output_tokens=256)
        # Free choice: the cheapest plan can only get dearer. Pinned instance type: GPUs only grow.
        free_short, free_long = (
            plan_or_none(request(model_id, max_model_len=short, load=load), tally),
            plan_or_none(request(model_id, max_model_len=long, load=load), tally),
        )
        if free_long is not None:
            assert free_short is not None and free_short.usd_per_hour <= free_long.usd_per_hour
        pinned = {"instance_type": instance_type}
        pinned_short = plan_or_none(request(model_id, max_model_len=short, load=load, **pinned), tally)
        pinned_long = plan_or_none(request(model_id, max_model_len=long, load=load, **pinned), tally)
        if pinned_long is not None:
            assert pinned_short is not None
            assert pinned_short.nodes * pinned_short.gpus_per_node <= pinned_long.nodes * pinned_long.gpus_per_node

    check()
    assert_mostly_planned(tally)


def test_higher_load_never_needs_fewer_gpus() -> None:
    tally: Counter[str] = Counter()

    @settings(max_examples=20, deadline=None)
    @given(
        model_id=st.sampled_from(MODELS),
        loads=st.lists(st.integers(1, 400), min_size=2, max_size=2),
        instance_type=st.sampled_from(["g6.12xlarge", "g6e.48xlarge", "p4de.24xlarge"]),
    )
    def check(model_id: str, loads: list[int], instance_type: str) -> None:
        low, high = sorted(loads)

        def at(n: int, **pins: Any) -> DeploymentPlan | None:
            load = ThroughputLoad(output_tokens_per_s=10 * n)
            return plan_or_none(request(model_id, max_model_len=4096, load=load, **pins), tally)

        free_low, free_high = at(low), at(high)
        if free_high is not None:
            assert free_low is not None and free_low.usd_per_hour <= free_high.usd_per_hour
        pinned_low, pinned_high = at(low, instance_type=instance_type), at(high, instance_type=instance_type)
        if pinned_high is not None:
            assert pinned_low is not None
            assert pinned_low.nodes * pinned_low.gpus_per_node <= pinned_high.nodes * pinned_high.gpus_per_node

    check()
    assert_mostly_planned(tally)


# --- GGUF on GPUs (llama.cpp's CUDA server) ----------------------------------------------------------


def test_a_70b_gguf_fits_on_one_large_gpu_with_llama_cpp() -> None:
    """Llama 3.1 70B q4_k_m (a 43 GB file) used to fit nowhere: CPU types are too slow for the SLO. llama.cpp's CUDA
    server holds it on one 80 GB GPU; the split stays inside the GPU and the KV cache holds a full-context request."""
    chosen = plan(request("llama-3.1-70b", Quantization.Q4_K_M))
    assert chosen.engine == "llama.cpp" and chosen.gpu is not None
    assert chosen.gpus_per_replica == 1 and chosen.tensor_parallel == 1
    m = chosen.memory
    assert m.weights_gib_per_gpu == pytest.approx(70.55e9 * 4.89 / 8 / mem.GIB, abs=0.01)  # the GGUF file's bytes
    assert m.weights_gib_per_gpu + m.activation_gib_per_gpu + m.kv_cache_gib_per_gpu <= m.budget_gib_per_gpu + 0.01
    assert m.budget_gib_per_gpu <= m.gpu_total_gib
    assert chosen.kv_cache_tokens_per_replica >= chosen.max_model_len


def test_gguf_stays_on_cpu_where_cpu_is_cheaper_and_meets_the_slo() -> None:
    chosen = plan(
        request("qwen2.5-0.5b", Quantization.Q4_K_M, max_model_len=2048, load=ConcurrencyLoad(concurrent_sequences=2))
    )
    assert chosen.gpu is None and chosen.engine == "llama.cpp"
    assert any(r.option.startswith("L4 x1") or r.option.startswith("A10G x1") for r in chosen.rejected)


def test_gguf_hints_never_suggest_the_quantization_already_chosen() -> None:
    """405B q4_k_m fits on no single GPU of us-east-1: the fix names more memory or a shorter context, not q4_k_m."""
    with pytest.raises(PlanningError) as refused:
        plan(request("llama-3.1-405b", Quantization.Q4_K_M, max_model_len=4096))
    message = str(refused.value)
    assert "q4_k_m)" not in message and "(q4_k_m" not in message, message
    assert "a GPU with more memory" in message or "a CPU type with more RAM" in message, message
    with pytest.raises(PlanningError) as refused:
        plan(request("llama-3.1-405b", Quantization.Q8_0, max_model_len=4096))
    assert "smaller GGUF quantization (q5_k_m or q4_k_m)" in str(refused.value)


def test_a_70b_model_on_gcp_a100_80gb_no_longer_needs_the_8_gpu_machine() -> None:
    """With a2-ultragpu-2g/4g in the catalog, Llama 3.3 70B bf16 on A100 80GB takes the GPUs it needs (the plan
    used to buy a2-ultragpu-8g, the only multi-GPU A100 80GB shape it knew)."""
    region = RegionRequest(cloud="gcp", region="us-central1", allowed_gpus=("A100-80GB",))
    chosen = plan(request("llama-3.3-70b"), region, tpot_ms=100)
    assert chosen.instance_type in {"a2-ultragpu-2g", "a2-ultragpu-4g"}, chosen.instance_type
    assert chosen.gpus_per_node < 8 and chosen.memory.weights_gib_per_gpu < chosen.memory.budget_gib_per_gpu
