"""Smoke: one user sends ten streamed requests; proves the endpoint answers and the measurement works.

locust -f loadtests/suites/smoke.py --headless --host URL --llm-model NAME --llm-slo slo.yaml
"""

from typing import Any

from locust import events

from llmfleet.loadtests.user import ChatUser

SMOKE_REQUESTS = 10


@events.init_command_line_parser.add_listener
def _smoke_defaults(parser: Any, **_: Any) -> None:
    parser.set_defaults(num_users=1, llm_requests_per_user=SMOKE_REQUESTS, llm_min_samples=SMOKE_REQUESTS)


class SmokeUser(ChatUser):
    pass
