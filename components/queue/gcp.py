"""The queue on GCP: a Pub/Sub topic and pull subscription with a dead-letter topic, a GCS bucket for
results, and two service accounts reached through GKE Workload Identity.

- workers: subscriber on this subscription, object creator on this bucket; nothing else;
- KEDA's operator: monitoring viewer on the project (the gcp-pubsub scaler reads the subscription's
  backlog from Cloud Monitoring; that role is project-wide by nature), through the chart's
  `podIdentity.gcp` support and a TriggerAuthentication with `podIdentity.provider: gcp`;
- Pub/Sub's own service agent: publisher on the dead-letter topic and subscriber on the subscription,
  which dead-lettering needs (without them messages are never forwarded).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp

from llmfleet.components.queue.types import KEDA_SERVICE_ACCOUNT, WORKER_SERVICE_ACCOUNT, QueueSettings

DAY_S = 86_400
RESULT_PREFIX = "results/"
RETRY_MIN_BACKOFF = "10s"
RETRY_MAX_BACKOFF = "600s"
"""Pub/Sub's redelivery backoff after a nack or an expired deadline (its allowed range is 0-600 s)."""


@dataclass
class GcpQueue:
    topic: gcp.pubsub.Topic
    subscription: gcp.pubsub.Subscription
    dead_letter_topic: gcp.pubsub.Topic
    dead_letter_subscription: gcp.pubsub.Subscription
    bucket: gcp.storage.Bucket
    worker_account: gcp.serviceaccount.Account
    keda_account: gcp.serviceaccount.Account


def account_id(name: str, role: str) -> str:
    """A service account id (6-30 characters) unique to this project, stack and queue."""
    digest = hashlib.sha256(f"{pulumi.get_project()}/{pulumi.get_stack()}/{name}".encode()).hexdigest()[:10]
    return f"llmfleet-q{role}-{digest}"


def gcp_queue(
    name: str, settings: QueueSettings, namespace: str, project: str, region: str, child: pulumi.ResourceOptions
) -> GcpQueue:
    never_expire = gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl="")  # default: deleted after 31 idle days
    dead_topic = gcp.pubsub.Topic(f"{name}-dead-letter", project=project, opts=child)
    dead_subscription = gcp.pubsub.Subscription(
        # A topic keeps nothing by itself: this subscription is where dead jobs wait for inspection.
        f"{name}-dead-letter",
        topic=dead_topic.id,
        project=project,
        message_retention_duration=f"{settings.dead_letter_retention_days * DAY_S}s",
        expiration_policy=never_expire,
        opts=child,
    )
    topic = gcp.pubsub.Topic(f"{name}-jobs", project=project, opts=child)
    subscription = gcp.pubsub.Subscription(
        f"{name}-jobs",
        topic=topic.id,
        project=project,
        ack_deadline_seconds=settings.lease_s,
        message_retention_duration=f"{settings.retention_days * DAY_S}s",
        retry_policy=gcp.pubsub.SubscriptionRetryPolicyArgs(
            minimum_backoff=RETRY_MIN_BACKOFF, maximum_backoff=RETRY_MAX_BACKOFF
        ),
        dead_letter_policy=gcp.pubsub.SubscriptionDeadLetterPolicyArgs(
            dead_letter_topic=dead_topic.id, max_delivery_attempts=settings.max_attempts
        ),
        expiration_policy=never_expire,
        opts=child,
    )
    number = gcp.organizations.get_project_output(
        project_id=project, opts=pulumi.InvokeOutputOptions(parent=child.parent)
    ).number
    pubsub_agent = number.apply(lambda n: f"serviceAccount:service-{n}@gcp-sa-pubsub.iam.gserviceaccount.com")
    gcp.pubsub.TopicIAMMember(
        f"{name}-dead-letter-publisher",
        topic=dead_topic.name,
        project=project,
        role="roles/pubsub.publisher",
        member=pubsub_agent,
        opts=child,
    )
    gcp.pubsub.SubscriptionIAMMember(
        f"{name}-dead-letter-forwarder",
        subscription=subscription.name,
        project=project,
        role="roles/pubsub.subscriber",
        member=pubsub_agent,
        opts=child,
    )
    bucket = gcp.storage.Bucket(
        f"{name}-results",
        project=project,
        location=region.upper(),
        uniform_bucket_level_access=True,
        public_access_prevention="enforced",
        force_destroy=False,
        lifecycle_rules=[
            gcp.storage.BucketLifecycleRuleArgs(
                action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                    age=settings.result_retention_days, matches_prefixes=[RESULT_PREFIX]
                ),
            )
        ],
        opts=child,
    )

    def workload_account(role: str, k8s_namespace: str, k8s_account: str, purpose: str) -> gcp.serviceaccount.Account:
        account = gcp.serviceaccount.Account(
            f"{name}-{role}-account",
            account_id=account_id(name, role[0]),
            project=project,
            display_name=f"llmfleet queue {purpose}",
            opts=child,
        )
        gcp.serviceaccount.IAMMember(
            f"{name}-{role}-workload-identity",
            service_account_id=account.name,
            role="roles/iam.workloadIdentityUser",
            member=f"serviceAccount:{project}.svc.id.goog[{k8s_namespace}/{k8s_account}]",
            opts=child,
        )
        return account

    worker = workload_account("worker", namespace, WORKER_SERVICE_ACCOUNT, "workers")
    worker_member = worker.email.apply(lambda email: f"serviceAccount:{email}")
    gcp.pubsub.SubscriptionIAMMember(
        f"{name}-worker-subscriber",
        subscription=subscription.name,
        project=project,
        role="roles/pubsub.subscriber",
        member=worker_member,
        opts=child,
    )
    gcp.storage.BucketIAMMember(
        f"{name}-worker-writer",
        bucket=bucket.name,
        role="roles/storage.objectCreator",
        member=worker_member,
        opts=child,
    )
    keda = workload_account("keda", *KEDA_SERVICE_ACCOUNT, "autoscaler")
    gcp.projects.IAMMember(
        f"{name}-keda-monitoring",
        project=project,
        role="roles/monitoring.viewer",
        member=keda.email.apply(lambda email: f"serviceAccount:{email}"),
        opts=child,
    )
    return GcpQueue(topic, subscription, dead_topic, dead_subscription, bucket, worker, keda)


def keda_operator_values(keda_account_email: pulumi.Input[str]) -> dict[str, Any]:
    """KEDA chart values (2.20.2 `podIdentity.gcp`) annotating the operator with the autoscaler's account."""
    return {"podIdentity": {"gcp": {"enabled": True, "gcpIAMServiceAccount": keda_account_email}}}


def pubsub_trigger(subscription_path: pulumi.Input[str], jobs_per_worker: int) -> dict[str, Any]:
    """KEDA gcp-pubsub trigger (metadata as the v2.20.2 scaler parses it): one worker per `jobs_per_worker`
    undelivered messages (SubscriptionSize = num_undelivered_messages, which counts leased ones too).

    KEDA deprecated this scaler in 2025 (it reads Cloud Monitoring through MQL) without a removal date; its
    suggested replacement is a prometheus trigger on Cloud Monitoring's PromQL API, left for when MQL goes."""
    return {
        "type": "gcp-pubsub",
        "metadata": {
            "subscriptionName": subscription_path,
            "mode": "SubscriptionSize",
            "value": str(jobs_per_worker),
            "activationValue": "0",
        },
    }
