"""The async queue of one region, as two components because KEDA sits between them:

- `AsyncQueue` (cloud): the queue and its dead-letter queue, the result bucket, the workers' identity and
  the identity KEDA's operator reads the queue's length with; built before KEDA, whose chart takes
  `keda_operator_values` (the operator's service account annotation);
- `QueueWorkers` (Kubernetes): the workers' service account, Secret, Deployment and NetworkPolicy, and the
  ScaledObject that scales them between zero and `max_workers` on the queue's length; built after KEDA and
  the gateway they call.

Producers submit jobs straight to the cloud's queue (`AsyncQueue.submit_to`: an SQS queue URL, or a Pub/Sub
topic), one OpenAI batch input line per message; results appear under `results/<custom_id>.json` in the
bucket (see queueworker/).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from llmfleet.components.hardening import container_hardening, pod_hardening
from llmfleet.components.queue import aws as aws_queue
from llmfleet.components.queue import gcp as gcp_queue
from llmfleet.components.queue.types import (
    COOLDOWN_S,
    POLLING_INTERVAL_S,
    WORKER_SERVICE_ACCOUNT,
    QueueCloud,
    QueueSettings,
    WorkerSettings,
)

KEDA_API = "keda.sh/v1alpha1"
WORKER_UID = 10001
"""The workers' uid (the image's own non-root user, queueworker/Dockerfile)."""
WORKER_LABELS = {
    "app.kubernetes.io/name": "llmfleet-queue-worker",
    "app.kubernetes.io/component": "queue-worker",
    "app.kubernetes.io/part-of": "llmfleet",
}


@dataclass
class AsyncQueueArgs:
    cloud: QueueCloud
    region: str
    """Cloud region of the queue and bucket (the fleet's)."""
    namespace: str
    """Namespace the workers run in: their identity trusts only its WORKER_SERVICE_ACCOUNT."""
    settings: QueueSettings = field(default_factory=QueueSettings)
    oidc_provider_arn: pulumi.Input[str] | None = None
    """aws: the EKS cluster's IAM OIDC provider (IRSA)."""
    oidc_issuer: pulumi.Input[str] | None = None
    """aws: the EKS cluster's OIDC issuer URL."""
    gcp_project: str | None = None
    """gcp: the project of the topic, bucket and service accounts (and of the cluster's workload pool)."""
    tags: Mapping[str, str] = field(default_factory=dict[str, str])
    """aws: tags on every resource."""


class AsyncQueue(pulumi.ComponentResource):
    cloud: QueueCloud
    submit_to: pulumi.Output[str]
    """Where producers send jobs: the SQS queue URL, or the Pub/Sub topic (projects/<p>/topics/<t>)."""
    queue_name: pulumi.Output[str]
    """What workers read: the SQS queue URL, or the subscription (projects/<p>/subscriptions/<s>)."""
    dead_letter: pulumi.Output[str]
    """Where dead jobs wait: the dead-letter SQS queue URL, or the dead-letter subscription."""
    bucket: pulumi.Output[str]
    """The result bucket's name."""
    worker_identity: pulumi.Output[str]
    """The workers' cloud identity: an IAM role ARN, or a service account email."""
    keda_operator_values: dict[str, Any]
    """KEDA chart values that give its operator the queue-reading identity."""
    settings: QueueSettings
    region: str

    def __init__(self, name: str, args: AsyncQueueArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmfleet:queue:AsyncQueue", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.cloud, self.settings, self.region = args.cloud, args.settings, args.region
        if args.cloud == "aws":
            if args.oidc_provider_arn is None or args.oidc_issuer is None:
                raise ValueError(f"{name}: an aws queue needs the EKS cluster's OIDC provider (IRSA)")
            made = aws_queue.aws_queue(
                name, args.settings, args.namespace, args.oidc_provider_arn, args.oidc_issuer, args.tags, child
            )
            self.submit_to = self.queue_name = made.queue.url
            self.dead_letter = made.dead_letter_queue.url
            self.bucket = made.bucket.bucket
            self.worker_identity = made.worker_role.arn
            self.keda_operator_values = aws_queue.keda_operator_values(made.keda_role.arn)
        else:
            if args.gcp_project is None:
                raise ValueError(f"{name}: a gcp queue needs gcp_project")
            made_gcp = gcp_queue.gcp_queue(name, args.settings, args.namespace, args.gcp_project, args.region, child)
            self.submit_to = made_gcp.topic.id
            self.queue_name = made_gcp.subscription.id
            self.dead_letter = made_gcp.dead_letter_subscription.id
            self.bucket = made_gcp.bucket.name
            self.worker_identity = made_gcp.worker_account.email
            self.keda_operator_values = gcp_queue.keda_operator_values(made_gcp.keda_account.email)
        self.register_outputs(
            {
                "submit_to": self.submit_to,
                "queue_name": self.queue_name,
                "dead_letter": self.dead_letter,
                "bucket": self.bucket,
                "worker_identity": self.worker_identity,
            }
        )

    def trigger(self, jobs_per_worker: int) -> dict[str, Any]:
        """The KEDA trigger on this queue's length."""
        if self.cloud == "aws":
            return aws_queue.sqs_trigger(self.queue_name, self.region, jobs_per_worker)
        return gcp_queue.pubsub_trigger(self.queue_name, jobs_per_worker)

    def service_account_annotations(self) -> dict[str, pulumi.Input[str]]:
        """What binds the workers' Kubernetes service account to their cloud identity."""
        if self.cloud == "aws":
            # Regional STS endpoints: KEDA's docs ask for them in the regions that need them; right everywhere.
            return {
                "eks.amazonaws.com/role-arn": self.worker_identity,
                "eks.amazonaws.com/sts-regional-endpoints": "true",
            }
        return {"iam.gke.io/gcp-service-account": self.worker_identity}

    def worker_environment(self) -> dict[str, pulumi.Input[str]]:
        return {
            "LLMFLEET_QUEUE": "sqs" if self.cloud == "aws" else "pubsub",
            "LLMFLEET_QUEUE_NAME": self.queue_name,
            "LLMFLEET_REGION": self.region,
            "LLMFLEET_RESULT_BUCKET": self.bucket,
            "LLMFLEET_JOB_TIMEOUT_S": str(self.settings.job_timeout_s),
        }


@dataclass
class QueueWorkersArgs:
    queue: AsyncQueue
    namespace: pulumi.Input[str]
    """Namespace of the workers (the one AsyncQueueArgs.namespace named; pass the Namespace's name Output)."""
    gateway_url: pulumi.Input[str]
    """The region's gateway: workers call the models through it, under its auth and budgets."""
    workers: WorkerSettings
    api_key: pulumi.Input[str] | None = None
    """The gateway tenant key the jobs run under (a secret); None for an anonymous gateway."""
    webhook_secret: pulumi.Input[str] | None = None
    """HMAC key of the webhook signature (a secret); None: jobs asking for a callback fail."""
    scaler_depends_on: Sequence[pulumi.Resource] = ()
    """The KEDA release (its CRDs and the operator's identity)."""
    node_selector: Mapping[str, str] | None = None
    """The workers' own pool (WorkerPool.node_selector); None: the system nodes."""
    tolerations: Sequence[k8s.core.v1.TolerationArgs] = ()
    """For the workers' own pool's taint (WorkerPool.tolerations)."""


class QueueWorkers(pulumi.ComponentResource):
    deployment: k8s.apps.v1.Deployment
    scaled_object: k8s.apiextensions.CustomResource

    def __init__(self, name: str, args: QueueWorkersArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmfleet:queue:QueueWorkers", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        queue, workers = args.queue, args.workers

        def meta(annotations: Mapping[str, pulumi.Input[str]] | None = None) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(
                name=WORKER_SERVICE_ACCOUNT, namespace=args.namespace, labels=WORKER_LABELS, annotations=annotations
            )

        account = k8s.core.v1.ServiceAccount(
            f"{name}-account",
            metadata=meta(queue.service_account_annotations()),
            automount_service_account_token=False,  # the workers never call the Kubernetes API
            opts=child,
        )
        env = [
            k8s.core.v1.EnvVarArgs(name=key, value=value)
            for key, value in {
                **queue.worker_environment(),
                "LLMFLEET_GATEWAY_URL": args.gateway_url,
                "LLMFLEET_CONCURRENCY": str(workers.concurrency),
                "PYTHONDONTWRITEBYTECODE": "1",
            }.items()
        ]
        secrets = {"gateway-api-key": args.api_key, "webhook-secret": args.webhook_secret}
        given = {key: pulumi.Output.secret(value) for key, value in secrets.items() if value is not None}
        if given:
            secret = k8s.core.v1.Secret(
                f"{name}-secrets", metadata=meta(), type="Opaque", string_data=given, opts=child
            )
            variables = {"gateway-api-key": "LLMFLEET_GATEWAY_API_KEY", "webhook-secret": "LLMFLEET_WEBHOOK_SECRET"}
            env += [
                k8s.core.v1.EnvVarArgs(
                    name=variables[key],
                    value_from=k8s.core.v1.EnvVarSourceArgs(
                        secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=secret.metadata.name, key=key)
                    ),
                )
                for key in given
            ]
        resources = {"cpu": workers.cpu, "memory": workers.memory}
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=meta(),
            # No replicas: KEDA owns the count (0 when the queue is empty), a later `pulumi up` must not reset it.
            spec=k8s.apps.v1.DeploymentSpecArgs(
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=WORKER_LABELS),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=WORKER_LABELS),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=account.metadata.name,
                        node_selector=dict(args.node_selector) if args.node_selector else None,
                        tolerations=list(args.tolerations) or None,
                        # SIGTERM stops taking jobs; the ones in flight get their whole timeout to finish.
                        termination_grace_period_seconds=queue.settings.job_timeout_s + 30,
                        **pod_hardening(WORKER_UID),
                        containers=[
                            k8s.core.v1.ContainerArgs(
                                name="worker",
                                image=workers.image,
                                env=env,
                                resources=k8s.core.v1.ResourceRequirementsArgs(requests=resources, limits=resources),
                                security_context=container_hardening(),
                            )
                        ],
                    ),
                ),
            ),
            opts=child,
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-no-ingress",
            metadata=meta(),
            # Workers only call out (queue, bucket, gateway, webhooks): nothing may connect to them.
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=WORKER_LABELS), policy_types=["Ingress"]
            ),
            opts=child,
        )
        after_keda = pulumi.ResourceOptions(parent=self, depends_on=list(args.scaler_depends_on))
        auth = k8s.apiextensions.CustomResource(
            f"{name}-trigger-auth",
            api_version=KEDA_API,
            kind="TriggerAuthentication",
            metadata=meta(),
            # The operator's own identity (from keda_operator_values), not the workers'.
            spec={"podIdentity": {"provider": queue.cloud}},
            opts=after_keda,
        )
        trigger = {**queue.trigger(workers.concurrency), "authenticationRef": {"name": WORKER_SERVICE_ACCOUNT}}
        self.scaled_object = k8s.apiextensions.CustomResource(
            f"{name}-scaler",
            api_version=KEDA_API,
            kind="ScaledObject",
            metadata=meta(),
            spec={
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": self.deployment.metadata.name,
                },
                "minReplicaCount": 0,
                "maxReplicaCount": workers.max_workers,
                "pollingInterval": POLLING_INTERVAL_S,
                "cooldownPeriod": COOLDOWN_S,
                "triggers": [trigger],
            },
            opts=pulumi.ResourceOptions.merge(after_keda, pulumi.ResourceOptions(depends_on=[auth])),
        )
        self.register_outputs({"deployment": self.deployment.metadata.name})
