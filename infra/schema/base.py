"""Shared base for every stack-file model."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A part of the stack file: unknown keys are errors, values are frozen once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
