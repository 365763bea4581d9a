"""The catalogs: they load, they are complete enough to plan with, every figure has a source, and the
figures agree with the sizing facts (components/sizing/data/README.md) where they give them.

Known answers below are written from the reference, not computed from the data files.
"""

from __future__ import annotations

import csv
import io

import pydantic
import pytest
import yaml

from llmfleet.components.sizing import gcp_prices
from llmfleet.components.sizing.catalog import DATA_DIR, Catalog, InstanceEntry, ModelEntry, load_catalog

# Reference section 4: KV cache per token in fp16, KiB (Gemma-2 is the plain-formula upper bound).
KV_KIB_PER_TOKEN = {
    "llama-3.2-1b": 32,
    "llama-3.2-3b": 112,
    "llama-3.1-8b": 128,
    "llama-3.1-70b": 320,
    "llama-3.1-405b": 504,
    "mistral-7b-v0.3": 128,
    "qwen2.5-7b": 56,
    "qwen2.5-14b": 192,
    "qwen2.5-72b": 320,
    "qwen3-8b": 144,
    "qwen3-32b": 256,
    "qwen3-30b-a3b": 96,
    "mixtral-8x7b": 128,
    "gemma-2-27b": 368,
    "phi-4": 200,
}

# Reference section 6: instance types it lists, with GPU and count.
REFERENCE_INSTANCES = {
    "g5.xlarge": ("A10G", 1),
    "g5.12xlarge": ("A10G", 4),
    "g5.48xlarge": ("A10G", 8),
    "g6.xlarge": ("L4", 1),
    "g6.12xlarge": ("L4", 4),
    "g6.48xlarge": ("L4", 8),
    "g6e.xlarge": ("L40S", 1),
    "g6e.12xlarge": ("L40S", 4),
    "g6e.48xlarge": ("L40S", 8),
    "p4d.24xlarge": ("A100-40GB", 8),
    "p4de.24xlarge": ("A100-80GB", 8),
    "p5.4xlarge": ("H100", 1),
    "p5.48xlarge": ("H100", 8),
    "p5en.48xlarge": ("H200", 8),
    "p6-b200.48xlarge": ("B200", 8),
    "g2-standard-12": ("L4", 1),
    "g2-standard-24": ("L4", 2),
    "g2-standard-48": ("L4", 4),
    "g2-standard-96": ("L4", 8),
    "a2-highgpu-1g": ("A100-40GB", 1),
    "a2-highgpu-8g": ("A100-40GB", 8),
    "a2-ultragpu-1g": ("A100-80GB", 1),
    "a2-ultragpu-8g": ("A100-80GB", 8),
    "a3-highgpu-1g": ("H100", 1),
    "a3-highgpu-2g": ("H100", 2),
    "a3-highgpu-4g": ("H100", 4),
    "a3-highgpu-8g": ("H100", 8),
    "a3-megagpu-8g": ("H100", 8),
    "a3-ultragpu-8g": ("H200", 8),
    "a4-highgpu-8g": ("B200", 8),
}

# Reference section 6: us-east-1 on-demand $/h from the Karpenter pricing data (the verified AWS prices).
AWS_PRICES = {
    "g5.xlarge": 1.006,
    "g5.48xlarge": 16.288,
    "g6.xlarge": 0.8048,
    "g6e.12xlarge": 10.4926,
    "p4d.24xlarge": 21.9576,
    "p5.48xlarge": 55.04,
    "p5en.48xlarge": 63.296,
    "p6-b200.48xlarge": 113.9328,
}

# Figures the reference marks UNVERIFIED (or gives as '~'): the catalog must keep them flagged.
UNVERIFIED_PRICES = ["g2-standard-24", "g2-standard-48", "g2-standard-96", "a2-ultragpu-1g", "a4-highgpu-8g"]
UNVERIFIED_GPUS = ["A10G", "L4", "B200"]

GIB = 2**30


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _raw_entries(name: str) -> list[dict[str, object]]:
    return yaml.safe_load((DATA_DIR / name).read_text())["entries"]


def kv_bytes_per_token(model: ModelEntry, tensor_parallel: int = 1, kv_bytes: int = 2) -> int:
    """Per GPU: 2 (K and V) x layers x KV heads on this GPU x head_dim x bytes (sizing facts §1)."""
    arch = model.architecture
    return 2 * arch.layers * max(1, arch.kv_heads // tensor_parallel) * arch.head_dim * kv_bytes


# --- loading and counts ---------------------------------------------------------------------------


def test_no_entry_is_lost_to_a_duplicate_key(catalog: Catalog) -> None:
    """The catalog is keyed by id/type: a duplicate would silently replace an entry."""
    assert len(catalog.models) == len(_raw_entries("models.yaml"))
    assert len(catalog.gpus) == len(_raw_entries("gpus.yaml"))
    assert len(catalog.instances) == len(_raw_entries("instances.yaml"))


def test_enough_models_including_moe(catalog: Catalog) -> None:
    assert len(catalog.models) >= 15
    assert set(KV_KIB_PER_TOKEN) <= set(catalog.models)
    moe = [m.id for m in catalog.models.values() if m.moe_experts]
    assert {"qwen3-30b-a3b", "mixtral-8x7b"} <= set(moe)
    for model_id in moe:
        arch = catalog.models[model_id].architecture
        assert arch.active_params_b is not None and arch.active_params_b < arch.params_b, model_id


def test_enough_gpu_instance_types_on_both_clouds(catalog: Catalog) -> None:
    gpu_types = [i for i in catalog.instances.values() if i.gpu is not None]
    assert len(gpu_types) >= 25
    assert {i.cloud for i in gpu_types} == {"aws", "gcp"}
    for instance_type, (gpu, count) in REFERENCE_INSTANCES.items():
        entry = catalog.instances[instance_type]
        assert (entry.gpu, entry.gpu_count) == (gpu, count), instance_type


def test_a_laptop_model_and_cpu_types_for_gguf(catalog: Catalog) -> None:
    small = catalog.models["qwen2.5-0.5b"].architecture
    assert small.params_b < 1 and small.tied_embeddings
    for cloud in ("aws", "gcp"):
        cpu = [i for i in catalog.instances.values() if i.cloud == cloud and i.gpu is None]
        assert len(cpu) >= 2, cloud
        assert all(i.memory_bandwidth_gb_s and i.memory_bandwidth_source for i in cpu), cloud
    local = catalog.instances["local-cpu"]
    assert (local.cloud, local.gpu, local.gpu_count, local.usd_per_hour) == ("local", None, 0, 0)
    assert local.regions == ["local"]
    assert catalog.instances_in("local", "local") == [local]


# --- sources and verification flags ---------------------------------------------------------------


def test_every_entry_names_its_source(catalog: Catalog) -> None:
    sources = [m.source for m in catalog.models.values()] + [g.source for g in catalog.gpus.values()]
    for instance in catalog.instances.values():
        sources += [instance.price_source, *([instance.regions_source] if instance.regions_source else [])]
        if instance.memory_bandwidth_gb_s is not None:
            assert instance.memory_bandwidth_source is not None, instance.type
            sources.append(instance.memory_bandwidth_source)
        if instance.capacity_source is not None:
            sources.append(instance.capacity_source)
    sources += [p.source for p in catalog.kv_calibration] + [p.source for p in catalog.throughput_calibration]
    for source in sources:
        assert len(source.ref.strip()) > 10, source


def test_model_sources_are_their_config_json(catalog: Catalog) -> None:
    for model in catalog.models.values():
        assert model.source.ref == f"https://huggingface.co/{model.hf_repo}/blob/main/config.json", model.id


def test_reference_unverified_figures_stay_flagged(catalog: Catalog) -> None:
    for instance_type in UNVERIFIED_PRICES:
        assert not catalog.instances[instance_type].price_source.verified, instance_type
    # Regions are no longer typed by hand: every cloud type is planned where prices.yaml (a pinned file) prices it.
    assert [i.type for i in catalog.instances.values() if catalog.region_prices(i) is None] == ["local-cpu"]
    for gpu in UNVERIFIED_GPUS:
        assert not catalog.gpus[gpu].source.verified, gpu
    # Reference: GCP prices come from the SkyPilot catalog and are UNVERIFIED against Google's list.
    gcp = [i for i in catalog.instances.values() if i.cloud == "gcp"]
    assert gcp and not any(i.price_source.verified for i in gcp)
    # CPU memory bandwidths are estimates.
    assert not any(i.memory_bandwidth_source.verified for i in catalog.instances.values() if i.memory_bandwidth_source)


def test_flagged_entries_say_why(catalog: Catalog) -> None:
    sources = [g.source for g in catalog.gpus.values()] + [p.source for p in catalog.kv_calibration]
    for instance in catalog.instances.values():
        sources += [instance.price_source, *([instance.regions_source] if instance.regions_source else [])]
    sources += list(catalog.prices.sources.values())
    for source in sources:
        if not source.verified:
            assert source.note, source.ref


# --- figures against the reference ----------------------------------------------------------------


@pytest.mark.parametrize(("model_id", "kib"), sorted(KV_KIB_PER_TOKEN.items()))
def test_kv_bytes_per_token_match_the_reference(catalog: Catalog, model_id: str, kib: int) -> None:
    assert kv_bytes_per_token(catalog.models[model_id]) == kib * 1024


def test_reference_architectures(catalog: Catalog) -> None:
    gemma = catalog.models["gemma-2-27b"]
    assert gemma.sliding_window and gemma.architecture.max_context == 8192
    assert catalog.models["phi-4"].architecture.kv_heads == 10
    assert catalog.models["llama-3.1-70b"].architecture.params_b == pytest.approx(70.55)
    assert catalog.models["mixtral-8x7b"].architecture.active_params_b == pytest.approx(12.88)
    assert catalog.models["qwen3-30b-a3b"].architecture.active_params_b == pytest.approx(3.35)


def test_gpu_memory_is_what_cuda_reports(catalog: Catalog) -> None:
    # Reference section 1, measured: cudaMemGetInfo / cuMemGetInfo totals.
    assert catalog.gpus["H100"].memory_gib == pytest.approx(85_017_493_504 / GIB, abs=0.005)
    assert catalog.gpus["H200"].memory_gib == pytest.approx(150_109_880_320 / GIB, abs=0.005)
    for gpu in catalog.gpus.values():
        # The CUDA total sits below the marketing figure whether that is read as GB or GiB (A100 "40GB" is 40 GiB).
        assert gpu.memory_gib < gpu.memory_gb_marketing, gpu.id


def test_fp8_support_follows_the_generation(catalog: Catalog) -> None:
    for gpu in catalog.gpus.values():
        if gpu.generation == "ampere":
            assert (gpu.fp8_support, gpu.fp8_tflops) == ("weight-only", None), gpu.id
            assert gpu.compute_capability < 8.9, gpu.id
        else:
            assert gpu.fp8_support == "native" and gpu.fp8_tflops, gpu.id
            assert gpu.compute_capability >= 8.9, gpu.id
    assert {g.id for g in catalog.gpus.values() if g.nvlink} == {"A100-40GB", "A100-80GB", "H100", "H200", "B200"}


def test_reference_bandwidths(catalog: Catalog) -> None:
    expected = {"L40S": 864, "A100-40GB": 1555, "A100-80GB": 2039, "H100": 3350, "H200": 4800, "B200": 8000}
    assert {g: catalog.gpus[g].bandwidth_gb_s for g in expected} == expected


def test_aws_prices_match_the_reference(catalog: Catalog) -> None:
    for instance_type, price in AWS_PRICES.items():
        entry = catalog.instances[instance_type]
        assert (entry.usd_per_hour, entry.price_region) == (price, "us-east-1"), instance_type
        assert entry.price_source.verified, instance_type


# --- instances are usable by the planner ----------------------------------------------------------


def test_every_instance_gpu_is_in_the_gpu_catalog(catalog: Catalog) -> None:
    for instance in catalog.instances.values():
        if instance.gpu is None:
            assert instance.gpu_count == 0, instance.type
        else:
            assert instance.gpu in catalog.gpus and instance.gpu_count > 0, instance.type


def test_cloud_specific_node_settings(catalog: Catalog) -> None:
    for instance in catalog.instances.values():
        # Planned somewhere, or listed in prices.yaml with no region (its source gives no node price: a4-highgpu-8g).
        assert instance.regions or catalog.region_prices(instance) == {}, instance.type
        assert instance.vcpu > 0 and instance.ram_gib > 0, instance.type
        if instance.cloud != "local":
            assert instance.usd_per_hour > 0, instance.type
        if instance.cloud == "aws":
            expected = "AL2023_x86_64_NVIDIA" if instance.gpu else "AL2023_x86_64_STANDARD"
            assert (instance.eks_ami_type, instance.gke_accelerator) == (expected, None), instance.type
        if instance.cloud == "gcp":
            assert instance.eks_ami_type is None, instance.type
            assert (instance.gke_accelerator is not None) == (instance.gpu is not None), instance.type


def test_every_gpu_has_fallback_instance_types(catalog: Catalog) -> None:
    """A node pool with one instance type has no fallback in a capacity shortage."""
    for gpu in catalog.gpus:
        offers: list[InstanceEntry] = [i for i in catalog.instances.values() if i.gpu == gpu]
        assert len(offers) >= 2, gpu
        assert len({r for i in offers for r in i.regions}) >= 3, gpu


def test_capacity_follows_the_cited_prices(catalog: Catalog) -> None:
    """p5e.48xlarge has spot prices and no on-demand price anywhere in the source (EC2 sells it through Capacity
    Blocks): it is spot-only with the source cited. GCP's 1/2-GPU A3 High shapes have both prices, so both are sold."""
    p5e = catalog.instances["p5e.48xlarge"]
    assert p5e.capacity == ("spot",) and p5e.capacity_source is not None
    assert all(row.on_demand is None and row.spot for row in catalog.prices.aws["p5e.48xlarge"].values())
    for machine in ("a3-highgpu-1g", "a3-highgpu-2g"):
        instance = catalog.instances[machine]
        assert set(instance.capacity) == {"on-demand", "spot"}, machine
        assert all(row.on_demand and row.spot for row in catalog.prices.gcp[machine].values()), machine


def test_regional_prices_are_cited_and_consistent(catalog: Catalog) -> None:
    """Per-region prices come from one pinned file per cloud; AWS us-east-1 on-demand figures agree with the other
    source (Karpenter's generated list) to the cent, and a spot price is never above the on-demand one on AWS."""
    for cloud, source in catalog.prices.sources.items():
        assert len(source.commit) == 40 and source.ref.endswith("vms.csv"), cloud
    for instance_type, rows in catalog.prices.aws.items():
        instance = catalog.instances[instance_type]
        assert instance.regions == sorted(rows), instance_type  # the table is where it is planned
        if "us-east-1" in rows and rows["us-east-1"].on_demand is not None:
            assert rows["us-east-1"].on_demand == pytest.approx(instance.usd_per_hour, abs=0.005), instance_type
        for region, row in rows.items():
            if row.on_demand is not None and row.spot is not None:
                assert row.spot <= row.on_demand + 1e-4, (instance_type, region)  # spot has 4 decimals
    # Regions differ: the same type costs more in Tokyo than in Virginia (the catalog used to price both alike).
    g5 = catalog.prices.aws["g5.xlarge"]
    assert g5["ap-northeast-1"].on_demand == 1.459 and g5["us-east-1"].on_demand == 1.006
    assert catalog.price(catalog.instances["g5.xlarge"], "us-west-2").spot == 0.4829


def test_missing_shapes_are_in_the_catalog(catalog: Catalog) -> None:
    """Shapes users rent that the catalog lacked: 2 and 4 A100s on GCP (40 and 80 GB) and AWS's p5e.48xlarge."""
    for machine, (gpu, count) in {
        "a2-highgpu-2g": ("A100-40GB", 2),
        "a2-highgpu-4g": ("A100-40GB", 4),
        "a2-ultragpu-2g": ("A100-80GB", 2),
        "a2-ultragpu-4g": ("A100-80GB", 4),
        "p5e.48xlarge": ("H200", 8),
    }.items():
        instance = catalog.instances[machine]
        assert (instance.gpu, instance.gpu_count) == (gpu, count) and instance.regions, machine


def test_a_capacity_other_than_the_default_needs_its_source() -> None:
    entry = next(e for e in _raw_entries("instances.yaml") if e["type"] == "g6e.xlarge") | {"capacity": ["spot"]}
    with pytest.raises(pydantic.ValidationError, match="add capacity_source"):
        InstanceEntry.model_validate(entry)
    sourced = InstanceEntry.model_validate(entry | {"capacity_source": {"ref": "a test: the type's capacity page"}})
    assert sourced.capacity == ("spot",)
    with pytest.raises(pydantic.ValidationError, match="capacity"):
        InstanceEntry.model_validate(entry | {"capacity": ["reserved"], "capacity_source": {"ref": "x" * 20}})


def test_schema_rejects_unknown_fields() -> None:
    entry = _raw_entries("models.yaml")[0] | {"layerz": 3}
    with pytest.raises(pydantic.ValidationError, match="layerz"):
        ModelEntry.model_validate(entry)


# --- calibration points ---------------------------------------------------------------------------


def test_enough_varied_kv_calibration_points(catalog: Catalog) -> None:
    points = catalog.kv_calibration
    assert len(points) >= 8
    assert len({p.gpu for p in points}) >= 4
    assert len({p.model for p in points}) >= 4
    assert len({p.tensor_parallel for p in points}) >= 3


def test_calibration_points_refer_to_the_catalog(catalog: Catalog) -> None:
    for point in [*catalog.kv_calibration, *catalog.throughput_calibration]:
        assert point.model in catalog.models and point.gpu in catalog.gpus, point.source.ref
    for point in catalog.kv_calibration:
        assert point.gpu_count == point.tensor_parallel * point.pipeline_parallel, point.source.ref
        assert 0 < point.gpu_memory_utilization <= 1, point.source.ref
        # vLLM refuses to start below one request of max_model_len, unless the log is that refusal.
        assert point.reported_kv_tokens > 0, point.source.ref


def test_reported_kv_memory_matches_reported_tokens(catalog: Catalog) -> None:
    """Where a log printed both the KV memory and the tokens, they agree through the KV formula (1%).

    This catches a mistyped figure or a wrong model / TP in a calibration point.
    """
    checked = 0
    for point in catalog.kv_calibration:
        kv_gib = point.reported_memory_gib.get("kv_cache")
        if kv_gib is None:
            continue
        kv_bytes = point.kv_cache_dtype.bytes_per_value
        per_token = kv_bytes_per_token(catalog.models[point.model], point.tensor_parallel, kv_bytes)
        assert point.reported_kv_tokens * per_token / GIB == pytest.approx(kv_gib, rel=0.01), point.source.ref
        checked += 1
    assert checked >= 6


def test_reported_memory_fits_the_budget(catalog: Catalog) -> None:
    """Weights + KV cache never exceed gpu_memory_utilization x the GPU's CUDA total."""
    for point in catalog.kv_calibration:
        weights = point.reported_memory_gib.get("weights")
        if weights is None:
            continue
        per_token = kv_bytes_per_token(catalog.models[point.model], point.tensor_parallel)
        kv_gib = point.reported_kv_tokens * per_token / GIB
        budget = catalog.gpus[point.gpu].memory_gib * point.gpu_memory_utilization
        assert weights + kv_gib < budget, point.source.ref


def test_throughput_points_from_the_reference(catalog: Catalog) -> None:
    points = {(p.model, p.gpu, p.tensor_parallel, p.concurrency): p for p in catalog.throughput_calibration}
    assert points[("llama-3.1-8b", "H100", 1, 1)].itl_ms == 4.63
    assert points[("llama-3.1-70b", "H100", 2, 1)].itl_ms == 18.58
    assert points[("llama-3.1-8b", "H100", 1, None)].output_tokens_per_s == 5777
    assert points[("llama-3.1-8b", "L40S", 1, None)].output_tokens_per_s == 1642
    for point in catalog.throughput_calibration:
        assert (point.itl_ms is not None) == (point.concurrency is not None), point.source.ref


# --- GCP prices: generated from the cited SkyPilot rows ------------------------------------------------------------

GCP_REGIONS = [
    "asia-east1",
    "asia-northeast1",
    "asia-south1",
    "europe-west4",
    "us-central1",
    "us-east1",
    "us-east4",
    "us-west4",
]


def test_gcp_prices_are_what_the_cited_rows_give() -> None:
    """prices.yaml's gcp: section is exactly what gcp_prices.py makes of the vendored SkyPilot rows: no GCP price is
    typed by hand, and a changed row or a hand edit fails here."""
    rows = gcp_prices.read_rows(gcp_prices.EXCERPT)
    generated = yaml.safe_load(gcp_prices.gcp_section(rows, gcp_prices.gcp_machines()))["gcp"]
    committed = yaml.safe_load(gcp_prices.PRICES.read_text())["gcp"]
    assert generated == committed
    assert (
        gcp_prices.replace_section(
            gcp_prices.PRICES.read_text(), gcp_prices.gcp_section(rows, gcp_prices.gcp_machines())
        )
        == gcp_prices.PRICES.read_text()
    )


def test_every_gcp_type_and_region_the_catalog_plans_has_a_cited_price(catalog: Catalog) -> None:
    source = catalog.prices.sources["gcp"]
    gcp_types = [i for i in catalog.instances.values() if i.cloud == "gcp"]
    assert len(gcp_types) == 22  # 19 GPU machine types and the 3 n2-standard CPU types
    for instance in gcp_types:
        table = catalog.region_prices(instance)
        assert table is not None, f"{instance.type}: not in prices.yaml"
        assert instance.regions == sorted(table), instance.type
        for region in instance.regions:
            price = catalog.price(instance, region)
            assert price.on_demand or price.spot, (instance.type, region)
            assert source.commit[:8] in price.source and region in price.source, (instance.type, region)
        if instance.regions:  # the list price in instances.yaml is the table's, not a second figure
            assert table[instance.price_region].on_demand == pytest.approx(instance.usd_per_hour, abs=1e-5)
    # The shapes users rent are planned in the stacks' GCP regions (a4-highgpu-8g alone has no cited node price).
    planned = {i.type for i in gcp_types if i.regions}
    assert planned == {i.type for i in gcp_types} - {"a4-highgpu-8g"}
    assert {r for i in gcp_types for r in i.regions} >= set(GCP_REGIONS)


def test_gcp_node_price_adds_vm_and_gpu_rows_per_zone() -> None:
    """Known answers written by hand: a zone needs both rows; 0.0 or an empty cell is no price; the region takes the
    cheapest zone; a machine family maps to its accelerator name and the row of its GPU count."""
    header = (
        "InstanceType,vCPUs,MemoryGiB,AcceleratorName,AcceleratorCount,GpuInfo,Region,AvailabilityZone,Price,SpotPrice"
    )
    lines = [
        "a3-highgpu-2g,52.0,468.0,,,,r1,r1-a,2.0,0.5",
        "a3-highgpu-2g,52.0,468.0,,,,r1,r1-b,2.0,0.4",
        "a3-highgpu-2g,52.0,468.0,,,,r1,r1-c,2.0,0.1",  # no GPU row in r1-c: not a zone of the machine
        "a3-highgpu-2g,52.0,468.0,,,,r2,r2-a,0.0,0.0",  # priced 0.0: not listed
        "a3-highgpu-2g,52.0,468.0,,,,r3,r3-a,3.0,",  # no spot price
        ",,,H100,2,{},r1,r1-a,8.0,2.0",
        ",,,H100,2,{},r1,r1-b,8.0,2.5",
        ",,,H100,2,{},r2,r2-a,8.0,2.0",
        ",,,H100,2,{},r3,r3-a,9.0,1.0",
        ",,,H100,1,{},r1,r1-a,4.0,1.0",  # another GPU count
        ",,,H100-MEGA,2,{},r1,r1-a,1.0,1.0",  # another accelerator
    ]
    rows = list(csv.DictReader(io.StringIO("\n".join([header, *lines]))))
    prices = gcp_prices.machine_prices(rows, "a3-highgpu-2g", 2)
    assert sorted(prices) == ["r1", "r3"]
    assert (prices["r1"].on_demand, prices["r1"].spot) == (10.0, 2.5)  # r1-a 0.5 + 2.0 = 2.5 < r1-b 0.4 + 2.5 = 2.9
    assert (prices["r3"].on_demand, prices["r3"].spot) == (12.0, None)
