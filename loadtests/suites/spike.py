"""Spike: closed loop, a quarter of -u users, then all of them at once for the middle third of -t, then back.

Shows how latency degrades under a sudden burst and how fast it recovers afterwards (autoscaling,
queues draining).

    locust -f loadtests/suites/spike.py --headless -u 64 -t 9m --host URL --llm-model NAME
"""

from locust import LoadTestShape

from loadtests.user import ChatUser


class SpikeUser(ChatUser):
    pass


class Spike(LoadTestShape):
    use_common_options = True  # -u is the spike's height, -t the length

    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options if self.runner else None
        peak = int(getattr(options, "num_users", None) or 1)
        length = float(getattr(options, "run_time", None) or 60)
        elapsed = self.get_run_time()
        if elapsed >= length:
            return None
        in_spike = length / 3 <= elapsed < 2 * length / 3
        return (peak if in_spike else max(1, peak // 4)), float(peak)
