"""Ramp: closed loop, users rising linearly from 1 to -u over the first half of -t, then held.

locust -f loadtests/suites/ramp.py --headless -u 64 -t 10m --host URL --llm-model NAME
"""

import math

from locust import LoadTestShape

from loadtests.user import ChatUser


class RampUser(ChatUser):
    pass


class Ramp(LoadTestShape):
    use_common_options = True  # -u is the peak, -t the length

    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options if self.runner else None
        peak = int(getattr(options, "num_users", None) or 1)
        length = float(getattr(options, "run_time", None) or 60)
        elapsed = self.get_run_time()
        if elapsed >= length:
            return None
        users = max(1, math.ceil(peak * min(1.0, elapsed / (length / 2))))
        return users, float(peak)
