"""Ramp: closed loop, users rising linearly from 1 to -u over the first half of -t, then held.

locust -f loadtests/suites/ramp.py --headless -u 64 -t 10m --host URL --llm-model NAME
"""

import math

from llmfleet.loadtests.shapes import CommonOptionsShape
from llmfleet.loadtests.user import ChatUser


class RampUser(ChatUser):
    pass


class Ramp(CommonOptionsShape):
    def tick(self) -> tuple[int, float] | None:
        now = self.moment()
        if now is None:
            return None
        users = max(1, math.ceil(now.peak * min(1.0, 2 * now.share)))
        return users, float(now.peak)
