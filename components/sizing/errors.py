"""Errors the planner raises for input it cannot satisfy (the CLI turns these into exit 2)."""


class PlanningError(Exception):
    """No option meets the request, or a pinned choice cannot work; the message says why."""
