"""Load shapes sized by Locust's common options: -u is the peak, -t the length (the ramp and spike suites)."""

from __future__ import annotations

from dataclasses import dataclass

from locust import LoadTestShape

DEFAULT_LENGTH_S = 60.0
"""The shape's length when the run has no -t."""


@dataclass(frozen=True)
class ShapeMoment:
    peak: int
    """-u: the most users the shape runs."""
    length_s: float
    """-t: when the shape ends the run."""
    elapsed_s: float

    @property
    def share(self) -> float:
        """How far into the run, 0 to 1."""
        return self.elapsed_s / self.length_s


class CommonOptionsShape(LoadTestShape):
    """A shape whose `tick` reads `moment()`; -u and -t size it instead of starting users directly."""

    abstract = True
    use_common_options = True

    def moment(self) -> ShapeMoment | None:
        """Where the run is now, or None once -t is over (the shape then ends the run)."""
        options = self.runner.environment.parsed_options if self.runner else None
        peak = int(getattr(options, "num_users", None) or 1)
        length = float(getattr(options, "run_time", None) or DEFAULT_LENGTH_S)
        elapsed = self.get_run_time()
        return ShapeMoment(peak, length, elapsed) if elapsed < length else None
