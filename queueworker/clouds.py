"""The clouds' own queues and object stores behind the worker's two interfaces, through their official SDKs.

boto3 (SQS, S3) and google-cloud-pubsub / google-cloud-storage are imported when a worker starts, not
by the project: they are the `worker` extra (`pip install 'llmfleet[worker]'`), installed in the worker
image only. Credentials come from the pod's identity (IRSA on EKS, Workload Identity on GKE).
"""

from __future__ import annotations

import importlib
from typing import Any

from llmfleet.queueworker.worker import Message

SQS_WAIT_S = 20
"""SQS long poll: the longest wait ReceiveMessage allows, so an idle worker makes 3 requests a minute."""
PUBSUB_WAIT_S = 20.0
PUBSUB_MAX_ACK_DEADLINE_S = 600
"""Pub/Sub's longest ack deadline: a retry cannot be pushed further out than this."""


def _sdk(module: str) -> Any:
    """Import an SDK module, saying which extra provides it when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise SystemExit(
            f"{module} is not installed: pip install 'llmfleet[worker]' (the worker image has it)"
        ) from exc


class SqsQueue:
    """An SQS queue; its redrive policy moves a message to the dead-letter queue after maxReceiveCount receives."""

    def __init__(self, queue_url: str, region: str, client: Any = None) -> None:
        self.queue_url = queue_url
        self._sqs = client or _sdk("boto3").client("sqs", region_name=region)

    def receive(self, max_messages: int) -> list[Message]:
        answer = self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(max_messages, 10)),
            WaitTimeSeconds=SQS_WAIT_S,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return [
            Message(
                id=m["MessageId"],
                body=m["Body"].encode(),
                attempt=int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
                handle=m["ReceiptHandle"],
            )
            for m in answer.get("Messages", [])
        ]

    def ack(self, message: Message) -> None:
        self._sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message.handle)

    def retry_later(self, message: Message, delay_s: int) -> None:
        # The message becomes visible again after delay_s; its receive count decides when it is dead.
        self._sqs.change_message_visibility(
            QueueUrl=self.queue_url, ReceiptHandle=message.handle, VisibilityTimeout=delay_s
        )


class S3Store:
    def __init__(self, bucket: str, region: str, client: Any = None) -> None:
        self.bucket = bucket
        self._s3 = client or _sdk("boto3").client("s3", region_name=region)

    def put(self, key: str, data: bytes) -> tuple[str, bool]:
        uri = f"s3://{self.bucket}/{key}"
        try:
            # S3 conditional write: fails with 412 when the key exists (or 409 when a write races this one).
            self._s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="application/json", IfNoneMatch="*")
        except _sdk("botocore.exceptions").ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return uri, False
            raise
        return uri, True


class PubSubQueue:
    """A Pub/Sub pull subscription; its dead-letter policy forwards a message after max_delivery_attempts."""

    def __init__(self, subscription: str, client: Any = None) -> None:
        self.subscription = subscription
        """Full path: projects/<project>/subscriptions/<name>."""
        self._subscriber = client or _sdk("google.cloud.pubsub_v1").SubscriberClient()

    def receive(self, max_messages: int) -> list[Message]:
        exceptions = _sdk("google.api_core.exceptions")
        try:
            answer = self._subscriber.pull(
                request={"subscription": self.subscription, "max_messages": max_messages}, timeout=PUBSUB_WAIT_S
            )
        except exceptions.DeadlineExceeded:
            return []
        return [
            Message(
                id=r.message.message_id,
                body=bytes(r.message.data),
                # delivery_attempt is set once the subscription has a dead-letter policy (ours always has).
                attempt=max(1, int(r.delivery_attempt or 1)),
                handle=r.ack_id,
            )
            for r in answer.received_messages
        ]

    def ack(self, message: Message) -> None:
        self._subscriber.acknowledge(request={"subscription": self.subscription, "ack_ids": [message.handle]})

    def retry_later(self, message: Message, delay_s: int) -> None:
        self._subscriber.modify_ack_deadline(
            request={
                "subscription": self.subscription,
                "ack_ids": [message.handle],
                "ack_deadline_seconds": min(delay_s, PUBSUB_MAX_ACK_DEADLINE_S),
            }
        )


class GcsStore:
    def __init__(self, bucket: str, client: Any = None) -> None:
        self.bucket = bucket
        self._bucket = (client or _sdk("google.cloud.storage").Client()).bucket(bucket)

    def put(self, key: str, data: bytes) -> tuple[str, bool]:
        uri = f"gs://{self.bucket}/{key}"
        try:
            # Generation 0 means "no live object": the upload fails with 412 when the key exists.
            self._bucket.blob(key).upload_from_string(data, content_type="application/json", if_generation_match=0)
        except _sdk("google.api_core.exceptions").PreconditionFailed:
            return uri, False
        return uri, True
