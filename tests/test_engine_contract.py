"""Engine flags and metric names against the pinned releases' own source (components/inference/data/)."""

from pathlib import Path
from typing import Any

from support.pin_checks import (
    ENGINE_DATA,
    engine_release,
    metric_names,
    unknown_engine_flags,
    unknown_llamacpp_metrics,
    unknown_vllm_metrics,
)

from llmfleet.components import pins

ROOT = Path(__file__).resolve().parent.parent


def test_the_pinned_vllm_release_is_vendored_from_its_source() -> None:
    data = engine_release("vllm", pins.engine("vllm"))
    assert data is not None, f"vendor it: python -m llmfleet.infra.vendor.engine_flags vllm <wheel> (see {ENGINE_DATA})"
    assert data["source"]["archive"].startswith(f"vllm-{pins.engine('vllm').removeprefix('v')}-")
    assert {"--model", "--max-model-len", "--enable-prefix-caching", "--no-enable-prefix-caching"} <= set(data["flags"])
    assert data["metrics"]["vllm:num_requests_waiting"] == "gauge"
    assert data["metrics"]["vllm:time_to_first_token_seconds"] == "histogram"


def server(image: str, *args: str) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"name": "m"},
        "spec": {"template": {"spec": {"containers": [{"image": image, "args": list(args)}]}}},
    }


def test_a_flag_the_pinned_release_lacks_is_named() -> None:
    image = pins.image("vllm")
    assert unknown_engine_flags([server(image, "--model", "m", "--max-model-len=4096")]) == []
    assert unknown_engine_flags([server(image, "--max-model-length", "4096")]) == [
        f"Deployment/m: vllm {pins.engine('vllm')} has no --max-model-length"
    ]
    assert unknown_engine_flags([server("vllm/vllm-openai:v0.0.1", "--model", "m")]) == [
        "Deployment/m: no vendored flags for ('vllm', 'v0.0.1')"
    ]


def test_a_metric_the_pinned_release_does_not_export_is_named() -> None:
    version = pins.engine("vllm")
    ok = {"vllm:num_requests_waiting", "vllm:prompt_tokens_total", "vllm:time_to_first_token_seconds_bucket"}
    assert unknown_vllm_metrics(ok, version) == []
    renamed = {"vllm:gpu_cache_usage_perc", "vllm:num_requests_waiting_total", "vllm:prompt_tokens"}
    assert unknown_vllm_metrics(renamed, version) == sorted(renamed)


def test_every_vllm_metric_the_code_names_is_exported_by_the_pinned_release() -> None:
    text = "\n".join(
        p.read_text() for folder in ("components", "infra", "loadtests") for p in (ROOT / folder).rglob("*.py")
    )
    names = metric_names(text, "vllm:")
    assert "vllm:num_requests_waiting" in names
    assert unknown_vllm_metrics(names, pins.engine("vllm")) == []


def test_llama_cpp_flags_and_metrics_are_the_pinned_builds() -> None:
    build = pins.engine("llama.cpp")
    data = engine_release("llama.cpp", build)
    assert data is not None, (
        "vendor it: python -m llmfleet.infra.vendor.engine_flags llama.cpp <build> <arg.cpp> <server/*.cpp>"
    )
    image = pins.image("llama.cpp-server")
    assert unknown_engine_flags([server(image, "--hf-repo", "r", "--ctx-size", "4096", "--metrics")]) == []
    assert unknown_engine_flags([server(image, "--context-size", "4096")]) == [
        f"Deployment/m: llama.cpp {build} has no --context-size"
    ]
    assert unknown_llamacpp_metrics({"llamacpp:requests_processing", "llamacpp:kv_cache_usage_ratio"}, build) == [
        "llamacpp:kv_cache_usage_ratio"
    ]
    text = "\n".join(p.read_text() for p in (ROOT / "components").rglob("*.py"))
    assert unknown_llamacpp_metrics(metric_names(text, "llamacpp:"), build) == []
