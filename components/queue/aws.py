"""The queue on AWS: SQS with a dead-letter queue, an S3 bucket for results, and two IRSA roles.

- workers: receive, delete and re-time messages of this queue, put objects under `results/` of this
  bucket; nothing else (no list, no read, no other queue);
- KEDA's operator: GetQueueAttributes on this queue only (the aws-sqs-queue scaler's one call), through
  the chart's IRSA support (`podIdentity.aws.irsa`), used by a TriggerAuthentication with
  `podIdentity.provider: aws` (KEDA's "Using KEDA role to access infrastructure").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from llmfleet.components.cluster.eks_addons import irsa_trust_policy
from llmfleet.components.queue.types import KEDA_SERVICE_ACCOUNT, WORKER_SERVICE_ACCOUNT, QueueSettings

DAY_S = 86_400
RESULT_PREFIX = "results/"
WORKER_SQS_ACTIONS = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"]
KEDA_SQS_ACTIONS = ["sqs:GetQueueAttributes"]


@dataclass
class AwsQueue:
    queue: aws.sqs.Queue
    dead_letter_queue: aws.sqs.Queue
    bucket: aws.s3.Bucket
    worker_role: aws.iam.Role
    keda_role: aws.iam.Role


def policy(actions: list[str], resources: list[str]) -> str:
    return json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resources}]}
    )


def aws_queue(
    name: str,
    settings: QueueSettings,
    namespace: str,
    oidc_provider_arn: pulumi.Input[str],
    oidc_issuer: pulumi.Input[str],
    tags: Mapping[str, str],
    child: pulumi.ResourceOptions,
) -> AwsQueue:
    dead = aws.sqs.Queue(
        f"{name}-dead-letter",
        message_retention_seconds=settings.dead_letter_retention_days * DAY_S,
        sqs_managed_sse_enabled=True,
        tags=dict(tags),
        opts=child,
    )
    queue = aws.sqs.Queue(
        f"{name}-jobs",
        message_retention_seconds=settings.retention_days * DAY_S,
        # A received job stays hidden while its gateway call may still run; a worker that dies leaves it
        # to reappear after that, and the receive count moves it to the dead-letter queue eventually.
        visibility_timeout_seconds=settings.lease_s,
        receive_wait_time_seconds=20,
        sqs_managed_sse_enabled=True,
        redrive_policy=dead.arn.apply(
            lambda arn: json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": settings.max_attempts})
        ),
        tags=dict(tags),
        opts=child,
    )
    bucket = aws.s3.Bucket(f"{name}-results", force_destroy=False, tags=dict(tags), opts=child)
    aws.s3.BucketPublicAccessBlock(
        f"{name}-results-private",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=child,
    )
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-results-encryption",
        bucket=bucket.id,
        rules=[
            aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="AES256"
                )
            )
        ],
        opts=child,
    )
    aws.s3.BucketLifecycleConfiguration(
        f"{name}-results-expiry",
        bucket=bucket.id,
        rules=[
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="expire-results",
                status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=RESULT_PREFIX),
                expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=settings.result_retention_days),
            )
        ],
        opts=child,
    )

    def trust(subject: str) -> pulumi.Output[str]:
        return pulumi.Output.all(oidc_provider_arn, oidc_issuer).apply(
            lambda parts: irsa_trust_policy(str(parts[0]), str(parts[1]), subject)
        )

    worker_role = aws.iam.Role(
        f"{name}-worker-role",
        assume_role_policy=trust(f"system:serviceaccount:{namespace}:{WORKER_SERVICE_ACCOUNT}"),
        tags=dict(tags),
        opts=child,
    )
    aws.iam.RolePolicy(
        f"{name}-worker-policy",
        role=worker_role.id,
        policy=pulumi.Output.all(queue.arn, bucket.arn).apply(
            lambda arns: json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Action": WORKER_SQS_ACTIONS, "Resource": [arns[0]]},
                        {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": [f"{arns[1]}/{RESULT_PREFIX}*"]},
                    ],
                }
            )
        ),
        opts=child,
    )
    keda_namespace, keda_account = KEDA_SERVICE_ACCOUNT
    keda_role = aws.iam.Role(
        f"{name}-keda-role",
        assume_role_policy=trust(f"system:serviceaccount:{keda_namespace}:{keda_account}"),
        tags=dict(tags),
        opts=child,
    )
    aws.iam.RolePolicy(
        f"{name}-keda-policy",
        role=keda_role.id,
        policy=queue.arn.apply(lambda arn: policy(KEDA_SQS_ACTIONS, [arn])),
        opts=child,
    )
    return AwsQueue(queue, dead, bucket, worker_role, keda_role)


def keda_operator_values(keda_role_arn: pulumi.Input[str]) -> dict[str, Any]:
    """KEDA chart values (2.20.2 `podIdentity.aws.irsa`) giving the operator the queue-reading role."""
    return {"podIdentity": {"aws": {"irsa": {"enabled": True, "roleArn": keda_role_arn}}}}


def sqs_trigger(queue_url: pulumi.Input[str], region: str, jobs_per_worker: int) -> dict[str, Any]:
    """KEDA aws-sqs-queue trigger (metadata as the v2.20.2 scaler parses it): one worker per
    `jobs_per_worker` messages, visible and in flight (scaleOnInFlight, the default, so busy workers stay)."""
    return {
        "type": "aws-sqs-queue",
        "metadata": {
            "queueURL": queue_url,
            "awsRegion": region,
            "queueLength": str(jobs_per_worker),
            "activationQueueLength": "0",
            "scaleOnInFlight": "true",
        },
    }
