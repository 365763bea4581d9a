"""llmfleet's async queue worker: jobs from SQS or Pub/Sub, run through the region's gateway, results to
S3 or GCS, a signed webhook when asked. Runs in the worker image (queueworker/Dockerfile), one process per pod."""
