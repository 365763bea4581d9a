"""The async queue in the real program (infra/__main__.py under the offline engine): an AWS and a GCP region.

Graph properties derived from the stack: each queue region gets its queue and dead-letter queue, a private
result bucket, workers whose cloud identity can do exactly what the worker does (and trusts only their
service account), KEDA's operator with an identity that can only read the queue's length, and a ScaledObject
from zero on that queue; every Kubernetes object validates against its schema (the vendored KEDA CRDs).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
from support.stacks import StackWriter

from llmfleet.components.queue.aws import KEDA_SQS_ACTIONS, WORKER_SQS_ACTIONS
from llmfleet.components.queue.pool import POOL_LABEL, POOL_VALUE, TAINT_KEY
from llmfleet.components.queue.types import WORKER_SERVICE_ACCOUNT
from llmfleet.infra.config import ConfigError, load_stack
from llmfleet.infra.planning import build_plan
from llmfleet.infra.render.offline import SECRET_PLACEHOLDER, OfflineRun, RecordedResource, run_program
from llmfleet.infra.render.validate import validate_manifest

AWS, GCP, LOCAL = "aws-us-east-1", "gcp-us-central1", "local-kind"
QUEUE = {
    "worker_image": "registry.example.com/llmfleet-worker:0.1.0",
    "tenant": "batch",
    "webhook_secret": "queueWebhookSecret",
    "max_attempts": 6,
    "job_timeout_s": 240,
    "concurrency": 8,
    "max_workers": 12,
}


def deployment(**queue: Any) -> dict[str, Any]:
    return {
        "models": [{"name": "chat", "model": "qwen2.5-7b", "load": {"concurrent_sequences": 8}}],
        "regions": [
            {"cloud": "aws", "region": "us-east-1", "role": "primary"},
            {"cloud": "gcp", "region": "us-central1"},
        ],
        "gcp_project": "acme-llm",
        "api_access_cidrs": ["203.0.113.0/24"],
        "gateway": {
            "hostname": "llm.example.com",
            "tenants": [
                {"name": "search", "api_key_secret": "keySearch"},
                {"name": "batch", "api_key_secret": "keyBatch"},
            ],
        },
        "queue": {**QUEUE, **queue},
    }


SECRETS = {"keySearch": "k1", "keyBatch": "k2", "queueWebhookSecret": "s"}


@functools.cache
def run_at(path: str) -> OfflineRun:
    return run_program(stack_file=Path(path))


@pytest.fixture
def run(write_stack: StackWriter) -> OfflineRun:
    return run_at(str(write_stack(deployment(), **SECRETS)))


def in_region(run: OfflineRun, region: str, type_: str) -> list[RecordedResource]:
    return [r for r in run.by_type(type_) if run.region_of(r) == region]


def one(run: OfflineRun, region: str, type_: str, suffix: str = "") -> RecordedResource:
    found = [r for r in in_region(run, region, type_) if r.name.endswith(suffix)]
    assert len(found) == 1, f"{region}: expected one {type_} named *{suffix}, got {[r.name for r in found]}"
    return found[0]


def objects(run: OfflineRun, region: str, kind: str) -> list[dict[str, Any]]:
    return [
        m
        for r, m in run.kubernetes_objects(redacted=False)
        if m["kind"] == kind and run.region_of(r) == region and r.name.startswith(f"{region}-queue")
    ]


def test_every_queue_object_validates_and_sits_under_its_fleet(run: OfflineRun) -> None:
    for region in (AWS, GCP):
        for type_ in ("llmfleet:queue:AsyncQueue", "llmfleet:queue:QueueWorkers"):
            component = one(run, region, type_)
            assert component.parent == run.by_name(region).urn, component.urn
        queue_objects = [
            m for r, m in run.kubernetes_objects(redacted=False) if r.name.startswith(f"{region}-queue-workers")
        ]
        kinds = sorted(m["kind"] for m in queue_objects)
        assert kinds == sorted(
            ["ServiceAccount", "Secret", "Deployment", "NetworkPolicy", "TriggerAuthentication", "ScaledObject"]
        )
        for manifest in queue_objects:
            assert validate_manifest(manifest) == [], manifest["metadata"]["name"]


def test_the_stack_exports_where_to_submit_jobs_and_find_results(run: OfflineRun) -> None:
    jobs = one(run, AWS, "aws:sqs/queue:Queue", "-jobs")
    bucket = one(run, GCP, "gcp:storage/bucket:Bucket", "-results")
    topic = one(run, GCP, "gcp:pubsub/topic:Topic", "-jobs")
    queues = run.outputs["queues"]
    assert queues[AWS]["submit_to"] == jobs.outputs["url"]
    assert queues[GCP]["submit_to"] == f"projects/acme-llm/topics/{topic.outputs['name']}"
    assert queues[GCP]["bucket"] == bucket.outputs["name"]


def test_sqs_queue_dead_letters_after_the_stack_attempts_and_hides_jobs_while_they_run(run: OfflineRun) -> None:
    jobs = one(run, AWS, "aws:sqs/queue:Queue", "-jobs")
    dead = one(run, AWS, "aws:sqs/queue:Queue", "-dead-letter")
    redrive = json.loads(jobs.inputs["redrivePolicy"])
    assert redrive == {"deadLetterTargetArn": dead.outputs["arn"], "maxReceiveCount": QUEUE["max_attempts"]}
    assert jobs.inputs["visibilityTimeoutSeconds"] == QUEUE["job_timeout_s"] + 60
    assert jobs.inputs["sqsManagedSseEnabled"] and dead.inputs["sqsManagedSseEnabled"]
    bucket = one(run, AWS, "aws:s3/bucket:Bucket", "-results")
    block = one(run, AWS, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert block.inputs["bucket"] == bucket.outputs["bucket"]
    assert all(block.inputs[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls"))


def test_aws_identities_are_least_privilege_and_trust_one_service_account_each(run: OfflineRun) -> None:
    jobs = one(run, AWS, "aws:sqs/queue:Queue", "-jobs")
    bucket = one(run, AWS, "aws:s3/bucket:Bucket", "-results")
    worker_policy = json.loads(one(run, AWS, "aws:iam/rolePolicy:RolePolicy", "-worker-policy").inputs["policy"])
    assert worker_policy["Statement"] == [
        {"Effect": "Allow", "Action": WORKER_SQS_ACTIONS, "Resource": [jobs.outputs["arn"]]},
        {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": [f"{bucket.outputs['arn']}/results/*"]},
    ]
    keda_policy = json.loads(one(run, AWS, "aws:iam/rolePolicy:RolePolicy", "-keda-policy").inputs["policy"])
    assert keda_policy["Statement"] == [
        {"Effect": "Allow", "Action": KEDA_SQS_ACTIONS, "Resource": [jobs.outputs["arn"]]}
    ]
    for role, subject in (("-worker-role", f"llmfleet:{WORKER_SERVICE_ACCOUNT}"), ("-keda-role", "keda:keda-operator")):
        trust = json.loads(one(run, AWS, "aws:iam/role:Role", role).inputs["assumeRolePolicy"])
        [statement] = trust["Statement"]
        conditions = statement["Condition"]["StringEquals"]
        assert [v for k, v in conditions.items() if k.endswith(":sub")] == [f"system:serviceaccount:{subject}"]


def test_keda_operator_gets_the_queue_reading_identity_and_scales_workers_from_zero(run: OfflineRun) -> None:
    keda_role = one(run, AWS, "aws:iam/role:Role", "-keda-role")
    [release] = [v for r, v in run.helm_releases(redacted=False) if r.name == f"{AWS}-keda-release"]
    assert release["values"]["podIdentity"]["aws"]["irsa"] == {"enabled": True, "roleArn": keda_role.outputs["arn"]}
    [scaler] = objects(run, AWS, "ScaledObject")
    [auth] = objects(run, AWS, "TriggerAuthentication")
    [deploy] = objects(run, AWS, "Deployment")
    jobs = one(run, AWS, "aws:sqs/queue:Queue", "-jobs")
    spec = scaler["spec"]
    assert spec["minReplicaCount"] == 0 and spec["maxReplicaCount"] == QUEUE["max_workers"]
    assert spec["scaleTargetRef"]["name"] == deploy["metadata"]["name"]
    [trigger] = spec["triggers"]
    assert trigger["type"] == "aws-sqs-queue" and trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert trigger["metadata"]["queueURL"] == jobs.outputs["url"] and trigger["metadata"]["awsRegion"] == "us-east-1"
    assert trigger["metadata"]["queueLength"] == str(QUEUE["concurrency"])
    assert auth["spec"] == {"podIdentity": {"provider": "aws"}}
    assert "replicas" not in deploy["spec"]  # KEDA owns the count


def test_workers_call_the_gateway_with_the_tenant_key_as_a_secret(run: OfflineRun) -> None:
    worker_role = one(run, AWS, "aws:iam/role:Role", "-worker-role")
    [account] = objects(run, AWS, "ServiceAccount")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == worker_role.outputs["arn"]
    [deploy] = objects(run, AWS, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    [container] = pod["containers"]
    assert container["image"] == QUEUE["worker_image"]
    env = {e["name"]: e for e in container["env"]}
    assert env["LLMFLEET_GATEWAY_URL"]["value"] == run.outputs["gateway_endpoints"][AWS]
    assert env["LLMFLEET_GATEWAY_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "gateway-api-key"
    assert env["LLMFLEET_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"]["key"] == "webhook-secret"
    assert pod["terminationGracePeriodSeconds"] > QUEUE["job_timeout_s"]
    [secret] = [r for r in in_region(run, AWS, "kubernetes:core/v1:Secret") if r.name.startswith(f"{AWS}-queue")]
    for key in ("stringData.gateway-api-key", "stringData.webhook-secret"):
        assert any(key.startswith(path) for path in secret.secret_fields), (key, secret.secret_fields)
    for resource in run.resources:
        if resource.name.startswith((f"{AWS}-queue", f"{GCP}-queue")):
            plain = json.dumps(resource.redacted_inputs())
            assert SECRET_PLACEHOLDER not in plain, resource.urn


def test_gcp_subscription_dead_letters_through_the_pubsub_agent_and_workers_get_only_their_grants(
    run: OfflineRun,
) -> None:
    subscription = one(run, GCP, "gcp:pubsub/subscription:Subscription", "-jobs")
    dead_topic = one(run, GCP, "gcp:pubsub/topic:Topic", "-dead-letter")
    assert subscription.inputs["deadLetterPolicy"] == {
        "deadLetterTopic": f"projects/acme-llm/topics/{dead_topic.outputs['name']}",
        "maxDeliveryAttempts": QUEUE["max_attempts"],
    }
    assert subscription.inputs["ackDeadlineSeconds"] == QUEUE["job_timeout_s"] + 60
    assert subscription.inputs["expirationPolicy"] == {"ttl": ""}
    agent = "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com"
    publisher = one(run, GCP, "gcp:pubsub/topicIAMMember:TopicIAMMember")
    assert (publisher.inputs["member"], publisher.inputs["role"]) == (agent, "roles/pubsub.publisher")
    grants = {
        (r.inputs["role"], r.inputs["member"])
        for t in (
            "gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember",
            "gcp:storage/bucketIAMMember:BucketIAMMember",
        )
        for r in in_region(run, GCP, t)
    }
    worker = one(run, GCP, "gcp:serviceaccount/account:Account", "-worker-account").outputs["email"]
    assert grants == {
        ("roles/pubsub.subscriber", agent),
        ("roles/pubsub.subscriber", f"serviceAccount:{worker}"),
        ("roles/storage.objectCreator", f"serviceAccount:{worker}"),
    }
    identities = {r.inputs["member"] for r in in_region(run, GCP, "gcp:serviceaccount/iAMMember:IAMMember")}
    assert identities == {
        f"serviceAccount:acme-llm.svc.id.goog[llmfleet/{WORKER_SERVICE_ACCOUNT}]",
        "serviceAccount:acme-llm.svc.id.goog[keda/keda-operator]",
    }
    bucket = one(run, GCP, "gcp:storage/bucket:Bucket", "-results")
    assert bucket.inputs["publicAccessPrevention"] == "enforced" and bucket.inputs["uniformBucketLevelAccess"]


def test_gcp_workers_scale_on_the_subscription_with_keda_on_workload_identity(run: OfflineRun) -> None:
    subscription = one(run, GCP, "gcp:pubsub/subscription:Subscription", "-jobs")
    keda = one(run, GCP, "gcp:serviceaccount/account:Account", "-keda-account").outputs["email"]
    [release] = [v for r, v in run.helm_releases(redacted=False) if r.name == f"{GCP}-keda-release"]
    assert release["values"]["podIdentity"]["gcp"] == {"enabled": True, "gcpIAMServiceAccount": keda}
    [scaler] = objects(run, GCP, "ScaledObject")
    [trigger] = scaler["spec"]["triggers"]
    assert trigger["type"] == "gcp-pubsub"
    path = f"projects/acme-llm/subscriptions/{subscription.outputs['name']}"
    assert trigger["metadata"]["subscriptionName"] == path
    [auth] = objects(run, GCP, "TriggerAuthentication")
    assert auth["spec"] == {"podIdentity": {"provider": "gcp"}}
    [account] = objects(run, GCP, "ServiceAccount")
    worker = one(run, GCP, "gcp:serviceaccount/account:Account", "-worker-account").outputs["email"]
    assert account["metadata"]["annotations"] == {"iam.gke.io/gcp-service-account": worker}


def test_a_queue_limited_to_one_region_leaves_the_other_and_keda_untouched(write_stack: StackWriter) -> None:
    limited = run_at(str(write_stack(deployment(regions=[GCP]), name="one", **SECRETS)))
    assert in_region(limited, AWS, "llmfleet:queue:AsyncQueue") == []
    [release] = [v for r, v in limited.helm_releases(redacted=False) if r.name == f"{AWS}-keda-release"]
    assert "podIdentity" not in (release["values"] or {})
    assert len(in_region(limited, GCP, "llmfleet:queue:QueueWorkers")) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"regions": ["aws-eu-west-9"]}, "queue.regions[0]: unknown region"),
        ({"tenant": "nobody"}, "queue.tenant"),
        ({"worker_image": "registry.example.com/llmfleet-worker:latest"}, "worker_image"),
        ({"worker_image": "registry.example.com/llmfleet-worker"}, "worker_image"),
        ({"job_timeout_s": 600}, "job_timeout_s"),
        ({"max_attempts": 3}, "max_attempts"),
        ({"surprise": 1}, "queue.surprise"),
    ],
)
def test_bad_queue_settings_name_the_field(write_stack: StackWriter, change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_stack(stack_file=write_stack(deployment(**change), name="bad"))


def test_a_queue_needs_created_clusters_and_an_api_key_tenant(write_stack: StackWriter) -> None:
    local = deployment()
    local["regions"] = [{"cloud": "local", "region": "kind", "role": "primary", "cluster": {"mode": "existing"}}]
    local["gateway"] = {"tls": {"mode": "none"}, "allow_anonymous": True}
    local["queue"].pop("tenant")
    with pytest.raises(ConfigError, match=f"queue.regions: {LOCAL} runs on an existing cluster"):
        load_stack(stack_file=write_stack(local, name="local1"))
    jwt = deployment()
    jwt["gateway"] = {"jwt": {"issuer": "https://id.example.com", "jwks_uri": "https://id.example.com/jwks"}}
    with pytest.raises(ConfigError, match="JWTs"):
        load_stack(stack_file=write_stack(jwt, name="jwt1"))


@pytest.fixture
def pooled_stack(write_stack: StackWriter) -> Path:
    spec = deployment(spot_pool={"jobs_per_minute": 600})
    del spec["queue"]["max_workers"]
    return write_stack(spec, name="pooled", **SECRETS)


def test_a_spot_pool_sized_by_the_plan_carries_only_the_workers(pooled_stack: Path) -> None:
    pooled = run_at(str(pooled_stack))
    name, spec = load_stack(stack_file=pooled_stack)
    planned = {(q.cloud, q.region): q.pool for q in build_plan(name, spec).queue}
    for region, cloud in ((AWS, "aws"), (GCP, "gcp")):
        pool_plan = planned[(cloud, region.split("-", 1)[1])]
        assert pool_plan is not None
        component = one(pooled, region, "llmfleet:queue:WorkerPool")
        assert component.parent == pooled.by_name(region).urn
        [deploy] = objects(pooled, region, "Deployment")
        pod = deploy["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {POOL_LABEL: POOL_VALUE}
        assert pod["tolerations"] == [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]
        [scaler] = objects(pooled, region, "ScaledObject")
        assert scaler["spec"]["maxReplicaCount"] == pool_plan.workers
        if cloud == "aws":
            group = one(pooled, region, "aws:eks/nodeGroup:NodeGroup", "queue-pool-nodegroup")
            assert group.inputs["capacityType"] == "SPOT" and "launchTemplate" in group.inputs
            assert group.inputs["scalingConfig"]["minSize"] == 0
            assert group.inputs["scalingConfig"]["maxSize"] == pool_plan.max_nodes
            assert group.inputs["instanceTypes"] == [pool_plan.instance_type, *pool_plan.fallback_instance_types]
            assert group.inputs["taints"] == [{"key": TAINT_KEY, "value": "true", "effect": "NO_SCHEDULE"}]
            assert group.inputs["labels"] == {POOL_LABEL: POOL_VALUE}
        else:
            node_pool = one(pooled, region, "gcp:container/nodePool:NodePool", "queue-pool-pool")
            config = node_pool.inputs["nodeConfig"]
            assert config["spot"] is True and config["workloadMetadataConfig"] == {"mode": "GKE_METADATA"}
            assert config["machineType"] == pool_plan.instance_type
            assert config["taints"] == [{"key": TAINT_KEY, "value": "true", "effect": "NO_SCHEDULE"}]
            assert node_pool.inputs["autoscaling"]["totalMinNodeCount"] == 0
            assert node_pool.inputs["autoscaling"]["totalMaxNodeCount"] == pool_plan.max_nodes
            assert config["serviceAccount"]  # the cluster's least-privilege node account, never the default


def test_without_a_spot_pool_the_workers_run_on_the_system_nodes(run: OfflineRun) -> None:
    assert run.by_type("llmfleet:queue:WorkerPool") == []
    [deploy] = objects(run, AWS, "Deployment")
    assert "nodeSelector" not in deploy["spec"]["template"]["spec"]


def test_the_policy_pack_passes_a_stack_with_the_queue_and_its_spot_pool(pooled_stack: Path) -> None:
    from support.policy import RESOURCE_RULES, STACK_RULES, as_rule_resources

    from llmfleet.infra.policy import rules

    resources = as_rule_resources(run_at(str(pooled_stack)))
    found = [(rule.__name__, r.urn, v) for rule in RESOURCE_RULES for r in resources for v in rule(r.type, r.props)]
    for stack_rule in STACK_RULES:
        found += [(stack_rule.__name__, at, message) for message, at in stack_rule(resources)]
    found += [("spot_only_in_primary", at, m) for m, at in rules.spot_only_in_primary(resources, [AWS])]
    assert found == []
    queue_images = [r for r in resources if r.type == "kubernetes:apps/v1:Deployment" and "queue" in r.name]
    assert len(queue_images) == 2  # the rules saw the workers
