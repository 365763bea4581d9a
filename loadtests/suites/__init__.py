"""Locustfiles: `locust -f loadtests/suites/<suite>.py` or `llmfleet loadtest --suite <suite>`."""
