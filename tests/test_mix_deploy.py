"""A deployed GPU mix (models[].deploy_mix): the plan's two parts become two node pools and two Deployments behind
the model's one route, each sized from its own part of the plan; the pool (or the weighted route) reaches both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.sizing import CATALOG, ETA, US_EAST_1, mix_request
from support.stacks import mixed_70b, write_mix
from typer.testing import CliRunner

from llmfleet.components.gateway import ModelBackend, SplitBackend, health
from llmfleet.components.inference.vllm import args as vllm_args
from llmfleet.components.sizing.plan import DeploymentPlan
from llmfleet.components.sizing.planner import plan_deployment
from llmfleet.components.sizing.types import Quantization
from llmfleet.infra.cli import app
from llmfleet.infra.config import ConfigError, load_stack
from llmfleet.infra.planning import build_plan
from llmfleet.infra.program.revisions import RECORD_KEY, RolloutRecord, region_revision, target_revisions
from llmfleet.infra.render.offline import OfflineRun, run_program
from llmfleet.infra.render.validate import validate_manifest
from llmfleet.infra.schema.models import ModelSpec

EKS_NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
POOL = {"group": "inference.networking.k8s.io", "kind": "InferencePool"}


def test_the_plan_deploys_a_cheaper_mix_as_two_full_parts() -> None:
    plain = mix_request("llama-3.3-70b", Quantization.FP8, 40)
    chosen = plan_deployment(CATALOG, plain.model_copy(update={"deploy_mix": True}), US_EAST_1, eta=ETA, tpot_slo_ms=60)
    mix = chosen.mix
    assert mix is not None and mix.deployed and len(chosen.parts) == 2
    for part, pool in zip(chosen.parts, mix.pools, strict=True):
        assert (part.instance_type, part.gpu, part.replicas, part.nodes) == (
            pool.instance_type,
            pool.gpu,
            pool.replicas,
            pool.nodes,
        )
        assert part.usd_per_hour == pytest.approx(pool.usd_per_hour, abs=1e-3)
        assert part.min_replicas == part.replicas and part.max_replicas == 2 * part.replicas
        assert part.part and part.parts == () and part.mix is None
        # Each part is sized for its own GPU: its memory split is that GPU's, its TP valid there.
        assert part.memory.gpu_total_gib == CATALOG.gpus[part.gpu or ""].memory_gib
        assert part.tensor_parallel <= part.gpus_per_node
    assert len({p.part for p in chosen.parts}) == 2
    assert sum(p.usd_per_hour for p in chosen.parts) == pytest.approx(mix.usd_per_hour, abs=1e-3)
    assert sum(p.usd_per_hour for p in chosen.parts) < chosen.usd_per_hour
    # Off by default: the same request without deploy_mix keeps the mix as advice.
    advice = plan_deployment(CATALOG, plain, US_EAST_1, eta=ETA, tpot_slo_ms=60)
    assert advice.mix is not None and not advice.mix.deployed and advice.parts == ()


def test_no_cheaper_mix_deploys_the_single_type_and_says_why() -> None:
    asked = mix_request("llama-3.1-8b", Quantization.BF16, 33).model_copy(update={"deploy_mix": True})
    chosen = plan_deployment(CATALOG, asked, US_EAST_1, eta=ETA, tpot_slo_ms=60)
    assert chosen.mix is not None and not chosen.mix.deployed and chosen.parts == ()
    assert "not deployed: no mix is cheaper" in chosen.mix.summary
    assert chosen.deployed == (chosen,)


def test_deploy_mix_is_refused_without_mixed_gpus_or_for_gguf(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"models\[0\].*set mixed_gpus: true"):
        load_stack(None, write_mix(mixed_70b(mixed_gpus=False), tmp_path))
    with pytest.raises(ConfigError, match=r"models\[0\].*vLLM models only"):
        load_stack(None, write_mix(mixed_70b(quantization="q4_k_m"), tmp_path))


def test_plan_totals_table_and_json_show_the_deployed_parts(tmp_path: Path) -> None:
    path = write_mix(mixed_70b(), tmp_path)
    name, spec = load_stack(None, path)
    plan = build_plan(name, spec)
    (d,) = plan.deployments
    assert d.mix is not None and d.mix.deployed
    assert plan.totals.nodes == sum(p.nodes for p in d.parts)
    assert plan.totals.usd_per_hour == pytest.approx(d.mix.usd_per_hour, abs=1e-3)
    env = {"COLUMNS": "400"}  # one line per row: the table's cells are checked as text
    runner = CliRunner()
    out = runner.invoke(app, ["plan", "--stack-file", str(path), "--format", "json"], env=env)
    assert out.exit_code == 0, out.output
    shown = json.loads(out.output)["deployments"][0]
    assert shown["mix"]["deployed"] is True
    assert [p["instance_type"] for p in shown["parts"]] == [p.instance_type for p in d.parts]
    table = runner.invoke(app, ["plan", "--stack-file", str(path)], env=env)
    assert table.exit_code == 0, table.output
    for part in d.parts:
        assert f"mix part {part.part}" in table.output and part.instance_type in table.output
    assert "mixed GPUs (deployed)" in table.output


@pytest.fixture(scope="module")
def pooled_stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mix(mixed_70b(), tmp_path_factory.mktemp("pooled"))


@pytest.fixture(scope="module")
def pooled(pooled_stack: Path) -> OfflineRun:
    return run_program(stack_file=pooled_stack)


def objects(run: OfflineRun, kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for _, m in run.kubernetes_objects() if m["kind"] == kind}


def test_each_part_gets_its_own_node_pool_and_deployment_sized_from_its_part(
    pooled: OfflineRun, pooled_stack: Path
) -> None:
    name, spec = load_stack(None, pooled_stack)
    (d,) = build_plan(name, spec).deployments
    groups = {r.inputs["instanceTypes"][0]: r.inputs for r in pooled.by_type(EKS_NODE_GROUP)}
    deployments = objects(pooled, "Deployment")
    scaled = objects(pooled, "ScaledObject")
    budgets = objects(pooled, "PodDisruptionBudget")
    for part in d.parts:
        group = groups[part.instance_type]
        assert group["scalingConfig"]["desiredSize"] == part.nodes
        deployment = deployments[f"chat-{part.part}"]
        # Its pods land on its own pool only: the selector matches its nodes' labels and no other pool's.
        selector = deployment["spec"]["template"]["spec"]["nodeSelector"]
        matching = [t for t, g in groups.items() if selector.items() <= g["labels"].items()]
        assert matching == [part.instance_type]
        assert deployment["spec"]["replicas"] == part.replicas
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == str(part.gpus_per_replica)
        assert container["args"][: len(vllm_args(part, 8000))] == vllm_args(part, 8000)
        so = scaled[f"chat-{part.part}"]["spec"]
        assert (so["minReplicaCount"], so["maxReplicaCount"]) == (part.min_replicas, part.max_replicas)
        assert so["scaleTargetRef"]["name"] == f"chat-{part.part}"
        assert f'service="chat-{part.part}"' in so["triggers"][0]["metadata"]["query"]
        assert (
            budgets[f"chat-{part.part}"]["spec"]["selector"]["matchLabels"]
            == deployment["spec"]["selector"]["matchLabels"]
        )
    assert "chat" not in deployments  # the single type is not deployed beside the mix
    gpu_groups = {t for t, g in groups.items() if g.get("taints")}
    assert gpu_groups == {p.instance_type for p in d.parts}


def test_one_inference_pool_selects_both_parts_and_the_route_names_it(pooled: OfflineRun) -> None:
    releases = {r["name"]: r for _, r in pooled.helm_releases(redacted=False)}
    selected = releases["chat"]["values"]["inferencePool"]["modelServers"]["matchLabels"]
    pods = [
        m["spec"]["template"]["metadata"]["labels"]
        for name, m in objects(pooled, "Deployment").items()
        if name.startswith("chat-")
    ]
    assert len(pods) == 2 and all(selected.items() <= labels.items() for labels in pods)
    # ... and nothing else: the selector names the mix, which other models' pods do not carry.
    assert "llmfleet.dev/mix" in selected
    route = next(iter(objects(pooled, "AIGatewayRoute").values()))
    rule = next(r for r in route["spec"]["rules"] if r["name"] == "chat")
    assert rule["backendRefs"] == [{**POOL, "name": "chat"}]
    policy = objects(pooled, "NetworkPolicy")["chat-picker-scrape"]
    assert all(policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items() for labels in pods)


def test_every_object_of_the_mixed_stack_validates(pooled: OfflineRun) -> None:
    problems = [p for _, m in pooled.kubernetes_objects() for p in validate_manifest(m)]
    assert problems == []


def test_without_a_pool_the_route_weights_the_parts_by_capacity(tmp_path: Path) -> None:
    run = run_program(stack_file=write_mix(mixed_70b(routing={"prefix_aware": False}), tmp_path))
    name, spec = load_stack(None, write_mix(mixed_70b(routing={"prefix_aware": False}), tmp_path))
    (d,) = build_plan(name, spec).deployments
    assert d.mix is not None
    route = next(iter(objects(run, "AIGatewayRoute").values()))
    rule = next(r for r in route["spec"]["rules"] if r["name"] == "chat")
    backends = objects(run, "Backend")
    weights = {}
    for ref in rule["backendRefs"]:
        host = backends[ref["name"]]["spec"]["endpoints"][0]["fqdn"]["hostname"]
        weights[host.split(".")[0]] = ref["weight"]
    expected = {f"chat-{p.part}": round(100 * pool.weight) for p, pool in zip(d.parts, d.mix.pools, strict=True)}
    assert weights == expected and len(weights) == 2
    bigger = max(d.mix.pools, key=lambda p: p.weight)
    assert max(weights.values()) == round(100 * bigger.weight) > min(weights.values())
    assert [p for _, m in run.kubernetes_objects() for p in validate_manifest(m)] == []
    credentials = next(m for m in objects(run, "BackendSecurityPolicy").values() if m["spec"].get("type") == "APIKey")
    targeted = {t["name"] for t in credentials["spec"]["targetRefs"]}
    assert {ref["name"] for ref in rule["backendRefs"]} <= targeted


def test_the_rollout_revision_follows_the_deployed_parts(tmp_path: Path) -> None:
    name, spec = load_stack(None, write_mix(mixed_70b(), tmp_path))
    deployed = build_plan(name, spec).deployments
    name, spec = load_stack(None, write_mix(mixed_70b(deploy_mix=False), tmp_path))
    advice = build_plan(name, spec).deployments
    assert region_revision(deployed)[0] != region_revision(advice)[0]


def test_the_health_check_reaches_either_part() -> None:
    parts = (SplitBackend("l40s", "chat-l40s", 60), SplitBackend("a10g", "chat-a10g", 40))
    # The region's health check (with global load balancing) reaches either part.
    spec = health.backend_spec([ModelBackend("chat", "chat-l40s", split=parts), ModelBackend("x", "x")], "ns")
    assert len(spec["endpoints"]) == 3  # each part, and the other model's Service (hostnames are Outputs)


# A rollout beside a deployed mix: the canary revision is deployed as the plan of ITS settings says (a mix of its
# own, or one type), and each revision's share of the requests is split over its parts by their capacity.
REGION = "aws-us-east-1"
OLD = "0ld0ld00"


def rollout_run(tmp_path: Path, old: dict[str, Any], weight: int, **current: Any) -> tuple[OfflineRun, str, Plans]:
    """The mixed stack mid-rollout: the stack file's revision (`current` settings) at 100 - weight, an older
    revision with the `old` settings at `weight`."""
    data = mixed_70b(**current)
    name, spec = load_stack(None, write_mix(data, tmp_path))
    new = target_revisions(name, spec)[REGION].id
    old_model = {**spec.models[0].model_dump(mode="json", exclude_defaults=True), **old}
    record = RolloutRecord().with_revision(REGION, OLD, [old_model])
    record = record.with_revision(REGION, new, [spec.models[0].model_dump(mode="json", exclude_defaults=True)])
    data["config"][RECORD_KEY] = record.with_weights(REGION, {OLD: weight, new: 100 - weight}).model_dump(mode="json")
    (current_plan,) = build_plan(name, spec).deployments
    (old_plan,) = build_plan(
        name, spec.model_copy(update={"models": [ModelSpec.model_validate(old_model)]})
    ).deployments
    return run_program(stack_file=write_mix(data, tmp_path)), new, {new: current_plan, OLD: old_plan}


Plans = dict[str, DeploymentPlan]


def route_rules(run: OfflineRun) -> dict[str, list[dict[str, Any]]]:
    (route,) = objects(run, "AIGatewayRoute").values()
    return {r["name"]: r["backendRefs"] for r in route["spec"]["rules"]}


def served_by(run: OfflineRun, refs: list[dict[str, Any]]) -> dict[str, int]:
    """backendRefs -> {Service the Backend points at: weight}."""
    backends = objects(run, "Backend")
    return {backends[r["name"]]["spec"]["endpoints"][0]["fqdn"]["hostname"].split(".")[0]: r["weight"] for r in refs}


def capacity_percent(plan: DeploymentPlan) -> dict[str, int]:
    assert plan.mix is not None
    return {part.part or "": round(100 * pool.weight) for part, pool in zip(plan.parts, plan.mix.pools, strict=True)}


def test_a_canary_mix_beside_a_mix_takes_its_share_split_by_capacity(tmp_path: Path) -> None:
    run, new, plans = rollout_run(tmp_path, {"hf_repo": "acme/llama-3.3-70b-old"}, 10)
    assert all(p.parts for p in plans.values()), "both revisions are deployed as a mix"
    deployments = objects(run, "Deployment")
    for revision, plan in plans.items():
        for part in plan.parts:
            deployment = deployments[f"chat-{part.part}-{revision}"]
            assert deployment["spec"]["replicas"] == part.replicas
    assert "chat" not in deployments and not any(n.startswith("chat-" + OLD) for n in deployments)
    rules = route_rules(run)
    # The weighted rule goes to the Services (exact weights): revision percent x the part's share of capacity.
    share = {new: 90, OLD: 10}
    expected = {
        f"chat-{part}-{revision}": share[revision] * percent
        for revision, plan in plans.items()
        for part, percent in capacity_percent(plan).items()
    }
    assert served_by(run, rules["chat"]) == expected and len(expected) == 4
    old_total = sum(w for n, w in expected.items() if n.endswith(OLD))
    assert old_total * 9 == pytest.approx(sum(expected.values()) - old_total, rel=0.02), "the canary gets 10%"
    # A request pinned to a revision goes to that revision's one pool, which selects both of its parts and no other.
    releases = {r["name"]: r for _, r in run.helm_releases(redacted=False)}
    for revision, plan in plans.items():
        assert rules[f"chat-{revision}"] == [{**POOL, "name": f"chat-{revision}"}]
        selected = releases[f"chat-{revision}"]["values"]["inferencePool"]["modelServers"]["matchLabels"]
        pods = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deployments.items() if n.startswith("chat-")}
        chosen = sorted(n for n, labels in pods.items() if selected.items() <= labels.items())
        assert chosen == sorted(f"chat-{p.part}-{revision}" for p in plan.parts)
    assert [p for _, m in run.kubernetes_objects() for p in validate_manifest(m)] == []
    # The engines' key reaches every backend a rule names.
    credentials = next(m for m in objects(run, "BackendSecurityPolicy").values() if m["spec"].get("type") == "APIKey")
    targeted = {t["name"] for t in credentials["spec"]["targetRefs"]}
    named = {ref["name"] for refs in rules.values() for ref in refs}
    assert named <= targeted


def test_without_a_pool_each_pinned_revision_weights_its_own_parts(tmp_path: Path) -> None:
    no_pool = {"routing": {"prefix_aware": False}}
    run, new, plans = rollout_run(tmp_path, {"hf_repo": "acme/llama-3.3-70b-old", **no_pool}, 25, **no_pool)
    rules = route_rules(run)
    for revision, plan in plans.items():
        pinned = served_by(run, rules[f"chat-{revision}"])
        assert pinned == {f"chat-{p}-{revision}": w for p, w in capacity_percent(plan).items()}
    weighted = served_by(run, rules["chat"])
    assert sum(w for n, w in weighted.items() if n.endswith(OLD)) * 3 == pytest.approx(
        sum(w for n, w in weighted.items() if n.endswith(new)), rel=0.02
    )
    assert not objects(run, "InferencePool")
    assert [p for _, m in run.kubernetes_objects() for p in validate_manifest(m)] == []


def test_a_single_type_canary_beside_a_mix_gets_a_pool_of_its_type(tmp_path: Path) -> None:
    # The older revision did not deploy the mix: it runs on the single type, on a node pool of its own.
    run, new, plans = rollout_run(tmp_path, {"deploy_mix": False}, 50)
    single = plans[OLD]
    assert not single.parts and plans[new].parts
    # One GPU node group per object (the single type may be one of the mix's types: it still gets its own).
    groups = [r.inputs for r in run.by_type(EKS_NODE_GROUP) if r.inputs.get("taints")]
    assert sorted(g["instanceTypes"][0] for g in groups) == sorted(
        [single.instance_type, *(p.instance_type for p in plans[new].parts)]
    )
    deployment = objects(run, "Deployment")[f"chat-{OLD}"]
    selector = deployment["spec"]["template"]["spec"]["nodeSelector"]
    assert [g["instanceTypes"][0] for g in groups if selector.items() <= g["labels"].items()] == [single.instance_type]
    weighted = served_by(run, route_rules(run)["chat"])
    assert weighted == {
        f"chat-{OLD}": 50 * 100,
        **{f"chat-{p}-{new}": 50 * w for p, w in capacity_percent(plans[new]).items()},
    }
    assert [p for _, m in run.kubernetes_objects() for p in validate_manifest(m)] == []
