"""Spike: closed loop, a quarter of -u users, then all of them at once for the middle third of -t, then back.

Shows how latency degrades under a sudden burst and how fast it recovers afterwards (autoscaling,
queues draining).

    locust -f loadtests/suites/spike.py --headless -u 64 -t 9m --host URL --llm-model NAME
"""

from llmfleet.loadtests.shapes import CommonOptionsShape
from llmfleet.loadtests.user import ChatUser


class SpikeUser(ChatUser):
    pass


class Spike(CommonOptionsShape):
    def tick(self) -> tuple[int, float] | None:
        now = self.moment()
        if now is None:
            return None
        in_spike = 1 / 3 <= now.share < 2 / 3
        return (now.peak if in_spike else max(1, now.peak // 4)), float(now.peak)
