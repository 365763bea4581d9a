"""Steady: closed loop, N users (-u) each sending one request after another for the whole run.

locust -f loadtests/suites/steady.py --headless -u 16 -r 16 -t 5m --host URL --llm-model NAME
"""

from llmfleet.loadtests.user import ChatUser


class SteadyUser(ChatUser):
    pass
