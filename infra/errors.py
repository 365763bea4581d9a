"""Errors that mean "the user's input is wrong": the CLI prints them and exits 2, never a traceback."""

from llmfleet.components.sizing.errors import PlanningError
from llmfleet.infra.config import ConfigError


class UsageError(Exception):
    """A command-line argument is wrong (the message says which and what is allowed)."""


USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, PlanningError, UsageError)
