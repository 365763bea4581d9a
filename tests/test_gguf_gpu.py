"""GGUF on a GPU through the whole program: the plan picks a GPU type for llama.cpp, the pool is a GPU pool, the
server runs the pinned CUDA image with every layer offloaded and asks for one GPU per replica."""

from __future__ import annotations

from pathlib import Path

import yaml

from llmfleet.components import pins
from llmfleet.infra.config import STACKS_DIR, load_stack
from llmfleet.infra.planning import build_plan
from llmfleet.infra.render.offline import run_program


def test_a_70b_gguf_stack_runs_llama_cpp_on_one_gpu(tmp_path: Path) -> None:
    data = yaml.safe_load((STACKS_DIR / "Pulumi.dev.yaml").read_text())
    deployment = data["config"]["llmfleet:deployment"]
    deployment["models"][0].update(
        model="llama-3.1-70b", quantization="q4_k_m", hf_repo="bartowski/Meta-Llama-3.1-70B-Instruct-GGUF"
    )
    deployment["regions"][0]["allowed_gpus"] = ["L40S", "H100"]
    path = tmp_path / "Pulumi.gguf.yaml"
    path.write_text(yaml.safe_dump(data))
    name, spec = load_stack(None, path)
    (planned,) = build_plan(name, spec).deployments
    assert planned.engine == "llama.cpp" and planned.gpu in {"L40S", "H100"} and planned.gpus_per_replica == 1

    run = run_program(stack_file=path)
    objects = [m for _, m in run.kubernetes_objects(redacted=True)]
    (server,) = [m for m in objects if m["kind"] == "Deployment" and m["metadata"]["name"] == "chat"]
    container = server["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == pins.image("llama.cpp-server-cuda")
    assert "--n-gpu-layers=999" in container["args"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    node_groups = [r for r in run.resources if r.type == "aws:eks/nodeGroup:NodeGroup"]
    assert any(planned.instance_type in g.inputs.get("instanceTypes", []) for g in node_groups), node_groups
