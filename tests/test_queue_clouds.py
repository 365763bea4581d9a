"""The worker's SQS and S3 adapters call the real APIs with the parameters botocore's service models accept.

botocore's Stubber validates every call against the SQS and S3 models shipped with boto3 (a wrong
parameter name or type fails here) and answers with canned responses, so nothing leaves the machine.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from llmfleet.queueworker.clouds import SQS_WAIT_S, S3Store, SqsQueue
from llmfleet.queueworker.worker import Message

URL = "https://sqs.us-east-1.amazonaws.com/123456789012/jobs"


def client(service: str) -> tuple[object, Stubber]:
    made = boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    return made, Stubber(made)


def test_sqs_receive_reads_the_receive_count_and_acks_and_retries_by_receipt_handle() -> None:
    sqs, stub = client("sqs")
    stub.add_response(
        "receive_message",
        {
            "Messages": [
                {
                    "MessageId": "m1",
                    "ReceiptHandle": "r1",
                    "Body": '{"a":1}',
                    "Attributes": {"ApproximateReceiveCount": "3"},
                }
            ]
        },
        {
            "QueueUrl": URL,
            "MaxNumberOfMessages": 1,
            "WaitTimeSeconds": SQS_WAIT_S,
            "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
        },
    )
    stub.add_response("delete_message", {}, {"QueueUrl": URL, "ReceiptHandle": "r1"})
    stub.add_response(
        "change_message_visibility", {}, {"QueueUrl": URL, "ReceiptHandle": "r1", "VisibilityTimeout": 40}
    )
    stub.add_response("receive_message", {}, None)
    with stub:
        queue = SqsQueue(URL, "us-east-1", client=sqs)
        [message] = queue.receive(1)
        assert message == Message(id="m1", body=b'{"a":1}', attempt=3, handle="r1")
        queue.ack(message)
        queue.retry_later(message, 40)
        assert queue.receive(4) == []
        stub.assert_no_pending_responses()


def test_s3_put_is_a_conditional_create_and_an_existing_result_is_kept() -> None:
    s3, stub = client("s3")
    expected = {
        "Bucket": "results-bucket",
        "Key": "results/j.json",
        "Body": b"{}",
        "ContentType": "application/json",
        "IfNoneMatch": "*",
    }
    stub.add_response("put_object", {}, expected)
    stub.add_client_error("put_object", "PreconditionFailed", http_status_code=412, expected_params=expected)
    stub.add_client_error("put_object", "AccessDenied", http_status_code=403, expected_params=expected)
    with stub:
        store = S3Store("results-bucket", "us-east-1", client=s3)
        assert store.put("results/j.json", b"{}") == ("s3://results-bucket/results/j.json", True)
        assert store.put("results/j.json", b"{}") == ("s3://results-bucket/results/j.json", False)
        with pytest.raises(Exception, match="AccessDenied"):
            store.put("results/j.json", b"{}")
