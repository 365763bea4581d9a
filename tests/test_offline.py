"""The offline engine: RecordingMocks records parents, providers and secrets; run_program runs a program."""

import textwrap
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
from support.stacks import StackWriter, one_region_stack

from llmfleet.infra.config import ConfigError
from llmfleet.infra.render.manifests import region_of
from llmfleet.infra.render.offline import REDACTED, SECRET_PLACEHOLDER, OfflineProgramError, RecordingMocks, run_program

# A small program in the shape of the real one: config -> per-region provider -> component -> children.
PROGRAM = textwrap.dedent(
    """
    import pulumi, pulumi_aws as aws, pulumi_kubernetes as k8s
    from llmfleet.infra.config import from_pulumi_config, require_secret

    class Region(pulumi.ComponentResource):
        def __init__(self, name, token, opts=None):
            super().__init__("llmfleet:test:Region", name, None, opts)
            child = pulumi.ResourceOptions(parent=self)
            cluster = aws.eks.Cluster(f"{name}-eks", role_arn="arn:aws:iam::1:role/r",
                                      vpc_config={"subnet_ids": ["s"]}, opts=child)
            provider = k8s.Provider(f"{name}-k8s", kubeconfig=cluster.endpoint, opts=child)
            on_cluster = pulumi.ResourceOptions(parent=self, provider=provider)
            k8s.core.v1.Secret(f"{name}-hf", string_data={"token": token}, opts=on_cluster)
            deployment = k8s.apps.v1.Deployment(f"{name}-vllm", spec={
                "selector": {"match_labels": {"app": "vllm"}},
                "template": {"metadata": {"labels": {"app": "vllm"}}, "spec": {"containers": [{
                    "name": "vllm", "image": "vllm/vllm-openai",
                    "ports": [{"container_port": 8000}],
                    "env": [{"name": "PLAIN", "value": "x"}, {"name": "HF_TOKEN", "value": token}]}]}}},
                opts=on_cluster)
            k8s.apiextensions.CustomResource(f"{name}-scaler", api_version="keda.sh/v1alpha1",
                kind="ScaledObject", metadata={"name": "vllm"},
                spec={"scaleTargetRef": {"name": deployment.metadata.name}, "triggers": []}, opts=on_cluster)
            k8s.helm.v3.Release(f"{name}-keda", chart="keda", version="2.17.2", namespace="keda",
                repository_opts={"repo": "https://kedacore.github.io/charts"}, values={"replicas": 2},
                opts=on_cluster)
            self.endpoint = cluster.endpoint
            self.register_outputs({})

    spec = from_pulumi_config()
    token = require_secret("hfToken", "models[0].hf_token")
    for region in spec.regions:
        aws_provider = aws.Provider(f"{region.key}-aws", region=region.region)
        fleet = Region(region.key, token, opts=pulumi.ResourceOptions(providers=[aws_provider]))
        pulumi.export(f"{region.key}-endpoint", fleet.endpoint)
    pulumi.export("token", token)
    """
)


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "program.py"
    path.write_text(PROGRAM)
    return path


def run(write_stack: StackWriter, program: Path, *regions: str) -> Any:
    return run_program(stack_file=write_stack(one_region_stack(*regions), hfToken="AAAB"), program=program)


def test_records_parents_and_providers(write_stack: StackWriter, program: Path) -> None:
    result = run(write_stack, program, "aws/us-east-1", "aws/eu-west-1")
    (component,) = [r for r in result.by_type("llmfleet:test:Region") if r.name == "aws-eu-west-1"]
    cluster = result.by_name("aws-eu-west-1-eks")
    deployment = result.by_name("aws-eu-west-1-vllm")
    assert cluster.parent == component.urn
    assert deployment.parent == component.urn
    # the component's providers map hands the region's aws provider to its child
    assert cluster.provider == result.by_name("aws-eu-west-1-aws").urn
    assert deployment.provider == result.by_name("aws-eu-west-1-k8s").urn
    assert result.by_name("aws-eu-west-1-aws").inputs["region"] == "eu-west-1"
    assert len(result.by_type("kubernetes:apps/v1:Deployment")) == 2


def test_records_exact_secret_paths_and_redacts_them(write_stack: StackWriter, program: Path) -> None:
    result = run(write_stack, program)
    deployment = result.by_name("aws-us-east-1-vllm")
    assert deployment.secret_fields == {"spec.template.spec.containers[0].env[1].value"}
    env = deployment.inputs["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[1]["value"] == SECRET_PLACEHOLDER, "inputs keep the value; the path marks it secret"
    redacted_env = deployment.redacted_inputs()["spec"]["template"]["spec"]["containers"][0]["env"]
    assert redacted_env == [{"name": "PLAIN", "value": "x"}, {"name": "HF_TOKEN", "value": REDACTED}]
    secret = result.by_name("aws-us-east-1-hf")
    assert secret.secret_fields == {"stringData"}
    assert result.secret_outputs == {"token"}
    assert result.outputs["aws-us-east-1-endpoint"].endswith(".gr7.us-east-1.eks.amazonaws.com")


def test_kubernetes_objects_are_manifests(write_stack: StackWriter, program: Path) -> None:
    result = run(write_stack, program)
    manifests = {m["kind"]: m for _, m in result.kubernetes_objects()}
    assert set(manifests) == {"Secret", "Deployment", "ScaledObject"}
    deployment = manifests["Deployment"]
    assert deployment["apiVersion"] == "apps/v1"
    assert deployment["metadata"]["name"].startswith("aws-us-east-1-vllm-"), "autonamed like Pulumi"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"] == [{"containerPort": 8000}], "camelCase keys, integers stay integers"
    assert manifests["Secret"] == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": manifests["Secret"]["metadata"]["name"]},
        "stringData": {"token": REDACTED},
    }, "a secret map keeps its keys, never its values"
    scaled = manifests["ScaledObject"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    ((_, release),) = result.helm_releases()
    assert release["chart"] == "keda"
    assert release["version"] == "2.17.2"
    assert release["repository"] == "https://kedacore.github.io/charts"
    assert release["values"] == {"replicas": 2}


def test_runs_in_one_process_are_isolated(write_stack: StackWriter, program: Path) -> None:
    one = run(write_stack, program, "aws/us-east-1")
    three = run(write_stack, program, "aws/us-east-1", "aws/eu-west-1", "aws/us-west-2")
    again = run(write_stack, program, "aws/us-east-1")
    assert len(three.resources) == 3 * len(one.resources)
    assert [r.urn for r in again.resources] == [r.urn for r in one.resources]


def test_invalid_stack_fails_before_the_program_naming_the_field(write_stack: StackWriter, program: Path) -> None:
    stack = one_region_stack()
    stack["regions"][0]["rol"] = "primary"
    with pytest.raises(ConfigError, match=r"llmfleet:deployment\.regions\[0\]\.rol: unknown field"):
        run_program(stack_file=write_stack(stack), program=program)


def test_missing_secret_is_reported_as_the_program_reports_it(write_stack: StackWriter, program: Path) -> None:
    with pytest.raises(ConfigError, match=r"models\[0\]\.hf_token: secret `llmfleet:hfToken` is not set"):
        unnamed = {k: v for k, v in one_region_stack().items() if k != "huggingface_token_secret"}  # not written
        run_program(stack_file=write_stack(unnamed), program=program)


def test_program_bug_is_a_clear_error(write_stack: StackWriter, tmp_path: Path) -> None:
    buggy = tmp_path / "buggy.py"
    buggy.write_text(
        "import pulumi_kubernetes as k8s\n"
        "cm = k8s.core.v1.ConfigMap('cm', data={'a': 'b'})\n"
        "cm.id.apply(lambda _: {}['missing'])\n"
    )
    with pytest.raises(OfflineProgramError, match=r"failed under the offline engine: KeyError: 'missing'"):
        run_program(stack_file=write_stack(one_region_stack(), hfToken="x"), program=buggy)


@pulumi.runtime.test
def test_recording_mocks_in_a_component_unit_test(recording_mocks: RecordingMocks) -> Any:
    token = pulumi.Output.secret("s3cr3t")
    config_map = k8s.core.v1.ConfigMap("cm", data={"plain": "v", "token": token})

    def check(_: Any) -> None:
        (recorded,) = recording_mocks.resources
        assert recorded.type == "kubernetes:core/v1:ConfigMap"
        assert recorded.parent is not None and recorded.parent.endswith("::pulumi:pulumi:Stack::llmfleet-test")
        assert recorded.secret_fields == {"data.token"}, recorded.urn
        assert recorded.redacted_inputs()["data"] == {"plain": "v", "token": REDACTED}

    return config_map.urn.apply(check)


def test_provider_functions_answer_for_the_provider_region(write_stack: StackWriter, tmp_path: Path) -> None:
    invokes = tmp_path / "invokes.py"
    invokes.write_text(
        "import pulumi, pulumi_aws as aws\n"
        "provider = aws.Provider('eu', region='eu-west-1')\n"
        "on_provider = pulumi.InvokeOutputOptions(provider=provider)\n"
        "zones = aws.get_availability_zones_output(state='available', opts=on_provider)\n"
        "pulumi.export('zones', zones.names)\n"
        "pulumi.export('zoneIds', zones.zone_ids)\n"
        "pulumi.export('account', aws.get_caller_identity_output().account_id)\n"
    )
    result = run_program(stack_file=write_stack(one_region_stack()), program=invokes)
    assert result.outputs["zones"] == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    assert result.outputs["zoneIds"] == ["euw1-az1", "euw1-az2", "euw1-az3"]
    assert result.outputs["account"] == "123456789012"


def test_resources_are_placed_in_regions_by_name(write_stack: StackWriter, program: Path) -> None:
    result = run(write_stack, program, "aws/us-east-1", "aws/eu-west-1")
    assert result.region_keys == ["aws-us-east-1", "aws-eu-west-1"]
    assert result.region_of(result.by_name("aws-eu-west-1-vllm")) == "aws-eu-west-1"
    assert region_of("aws-us-east-1-local-vllm", ["aws-us-east-1", "aws-us-east-1-local"]) == "aws-us-east-1-local"
    assert region_of("global-dns", result.region_keys) is None
