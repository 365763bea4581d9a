"""Region facts for global DNS (pure data, no Pulumi): latency regions, checker regions.

Route 53 latency routing ranks answers by AWS region, so a GCP region is labelled with the AWS region
nearest to it (same metro where one exists, else the nearest by distance). The Route 53 checker regions
are the values the HealthCheck API accepts; Cloud DNS health checks for external endpoints run from
exactly three GCP source regions (pulumi_gcp compute.HealthCheck `source_regions`).
"""

from __future__ import annotations

AWS_LATENCY_REGION: dict[str, str] = {
    "us-east4": "us-east-1",  # Ashburn, N. Virginia: same metro
    "us-east1": "us-east-1",  # Moncks Corner, S. Carolina
    "us-east5": "us-east-2",  # Columbus, Ohio: same metro
    "us-central1": "us-east-2",  # Council Bluffs, Iowa -> Ohio
    "us-south1": "us-east-2",  # Dallas
    "us-west1": "us-west-2",  # The Dalles, Oregon: same area as Boardman
    "us-west2": "us-west-1",  # Los Angeles -> N. California
    "us-west3": "us-west-2",  # Salt Lake City
    "us-west4": "us-west-1",  # Las Vegas -> N. California
    "northamerica-northeast1": "ca-central-1",  # Montréal: same metro
    "northamerica-northeast2": "ca-central-1",  # Toronto
    "southamerica-east1": "sa-east-1",  # São Paulo: same metro
    "europe-west1": "eu-west-3",  # St. Ghislain, Belgium -> Paris
    "europe-west2": "eu-west-2",  # London: same metro
    "europe-west3": "eu-central-1",  # Frankfurt: same metro
    "europe-west4": "eu-central-1",  # Eemshaven, Netherlands -> Frankfurt
    "europe-west6": "eu-central-2",  # Zürich: same metro
    "europe-west9": "eu-west-3",  # Paris: same metro
    "europe-north1": "eu-north-1",  # Hamina, Finland -> Stockholm
    "europe-southwest1": "eu-south-2",  # Madrid -> Spain (Aragón)
    "asia-east1": "ap-east-1",  # Changhua, Taiwan -> Hong Kong
    "asia-east2": "ap-east-1",  # Hong Kong: same metro
    "asia-northeast1": "ap-northeast-1",  # Tokyo: same metro
    "asia-northeast2": "ap-northeast-3",  # Osaka: same metro
    "asia-northeast3": "ap-northeast-2",  # Seoul: same metro
    "asia-south1": "ap-south-1",  # Mumbai: same metro
    "asia-south2": "ap-south-2",  # Delhi -> Hyderabad
    "asia-southeast1": "ap-southeast-1",  # Singapore: same metro
    "asia-southeast2": "ap-southeast-3",  # Jakarta: same metro
    "australia-southeast1": "ap-southeast-2",  # Sydney: same metro
    "australia-southeast2": "ap-southeast-4",  # Melbourne: same metro
}

ROUTE53_CHECKER_REGIONS: tuple[str, ...] = (
    "us-east-1",
    "us-west-1",
    "us-west-2",
    "eu-west-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-northeast-1",
    "sa-east-1",
)
"""Every region Route 53 health checkers run in (the HealthCheck `regions` values); the default is all."""
ROUTE53_MIN_CHECKER_REGIONS = 3
"""The Route 53 API rejects a health check with fewer checker regions."""

CLOUD_DNS_SOURCE_REGIONS: tuple[str, str, str] = ("us-central1", "us-east4", "europe-west4")
"""Default GCP source regions of the Cloud DNS health check (exactly three are required)."""
CLOUD_DNS_MIN_INTERVAL_S = 30
"""GCP health checks with source regions need check_interval_sec >= 30."""


def latency_region(cloud: str, region: str) -> str:
    """The AWS region Route 53 latency routing files this region under; KeyError for an unmapped GCP region."""
    return region if cloud == "aws" else AWS_LATENCY_REGION[region]
