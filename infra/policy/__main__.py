"""Serve the llmfleet policy pack to the Pulumi CLI: `pulumi up --policy-pack infra/policy`.

PulumiPolicy.yaml runs this file with the project's virtualenv (.venv), where llmfleet is installed.
Constructing the PolicyPack starts the analyzer's gRPC server and blocks: import policies.py, not this.
"""

import sys
from pathlib import Path

from pulumi_policy import EnforcementLevel, PolicyPack

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, should llmfleet not be installed

from llmfleet.infra.policy.policies import POLICIES  # after the path is set

PolicyPack(
    name="llmfleet",
    description="GPU pools, inference pods, exposure, secrets and images of self-hosted LLM inference.",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
)
