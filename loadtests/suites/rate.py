"""Rate: open loop, Poisson arrivals at --llm-rate requests/s in total, queue time (start - due) recorded.

A server that slows down does not slow the arrivals, so its stalls show in latency and queue time
instead of hiding as fewer requests. -u sets how many users share the rate (more users, more
generator concurrency); --llm-max-inflight caps requests in flight per user.

    locust -f loadtests/suites/rate.py --headless -u 4 -t 5m --host URL --llm-model NAME --llm-rate 8
"""

from llmfleet.loadtests.user import OpenLoopChatUser


class PoissonUser(OpenLoopChatUser):
    pass
