"""Locust suites and the SLO gate that validate a rollout against the stack's SLO."""
