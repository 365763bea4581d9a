"""The one table of pinned versions (components/pins.yaml), loaded and checked once.

Every chart, image, EKS add-on, engine release and vendored CRD set the project uses is a row there
with the upstream release it comes from; code asks for a row by id (`chart("keda")`, `image("redis")`)
instead of writing a version itself, so a bump is one line and the tests that compare renders,
Helm values, engine flags and CRDs against the pinned upstream all read the same version.
Pure data: no Pulumi import (the planner reads the engine pins).
"""

from __future__ import annotations

from enum import StrEnum
from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TABLE = Path(__file__).resolve().parent / "pins.yaml"


class Kind(StrEnum):
    CHART = "charts"
    IMAGE = "images"
    ENGINE = "engines"
    EKS_ADDON = "eks_addons"
    CRD_SET = "crd_sets"
    KUBERNETES = "kubernetes"


class Source(BaseModel):
    """The upstream release a pin comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repo: str = Field(pattern=r"^[\w.-]+/[\w.-]+$", description="GitHub owner/name of the upstream project.")
    tag: str = Field(min_length=1, description="The release tag.")
    commit: str | None = Field(default=None, pattern=r"^[0-9a-f]{40}$", description="The tag's commit, where read.")
    path: str | None = Field(default=None, description="Where in the repository (chart folder, CRD folder, file).")
    url: str | None = Field(default=None, description="Where the release is published, when it is not only a tag.")


class Pin(BaseModel):
    """One row of the table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]*$")
    name: str = Field(min_length=1, description="Chart name or oci:// URL, image repository, add-on or engine name.")
    version: str = Field(min_length=1, description="The exact version: chart version, image tag, add-on build.")
    source: Source
    why: str = Field(min_length=1)
    repository: str | None = Field(default=None, description="Charts: the https:// Helm repository (none for oci://).")
    engine: str | None = Field(default=None, description="Images: the engine row whose release this image is.")
    chart: str | None = Field(default=None, description="CRD sets: the chart row that installs them.")

    @field_validator("version")
    @classmethod
    def _exact(cls, version: str) -> str:
        if version.strip() != version or version in ("latest", "stable", "main") or "*" in version:
            raise ValueError(f"{version!r} is not an exact version")
        return version

    @property
    def ref(self) -> str:
        """Images: `<name>:<version>`, as a container spec names it."""
        return f"{self.name}:{self.version}"


class PinTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    charts: tuple[Pin, ...]
    images: tuple[Pin, ...]
    engines: tuple[Pin, ...]
    eks_addons: tuple[Pin, ...]
    crd_sets: tuple[Pin, ...]
    kubernetes: tuple[Pin, ...]

    @model_validator(mode="after")
    def _consistent(self) -> PinTable:
        for kind in Kind:
            ids = [pin.id for pin in self.rows(kind)]
            if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
                raise ValueError(f"{kind.value}: duplicate ids {duplicates}")
        for pin in self.charts:
            if pin.name.startswith("oci://") == bool(pin.repository):
                raise ValueError(f"charts.{pin.id}: an oci:// chart has no repository; any other chart needs one")
        engines = {pin.id for pin in self.engines}
        for pin in self.images:
            if pin.engine is not None and pin.engine not in engines:
                raise ValueError(f"images.{pin.id}: engine {pin.engine!r} is not a row of engines")
        charts = {pin.id for pin in self.charts}
        for pin in self.crd_sets:
            if pin.chart is not None and pin.chart not in charts:
                raise ValueError(f"crd_sets.{pin.id}: chart {pin.chart!r} is not a row of charts")
        return self

    def rows(self, kind: Kind) -> tuple[Pin, ...]:
        rows: tuple[Pin, ...] = getattr(self, kind.value)
        return rows

    def get(self, kind: Kind, id: str) -> Pin:
        for pin in self.rows(kind):
            if pin.id == id:
                return pin
        known = ", ".join(pin.id for pin in self.rows(kind))
        raise KeyError(f"no {kind.value} row {id!r} in {TABLE.name} (rows: {known}); add one (see its header)")


@cache
def table() -> PinTable:
    return PinTable.model_validate(yaml.safe_load(TABLE.read_text()))


def chart(id: str) -> Pin:
    """A chart row: `name` (chart or oci:// URL), `repository`, `version`."""
    return table().get(Kind.CHART, id)


def image(id: str) -> str:
    """A pinned image reference, `<repository>:<tag>`."""
    return table().get(Kind.IMAGE, id).ref


def engine(id: str) -> str:
    """An engine's pinned release (`v0.27.1` for vllm, `b11063` for llama.cpp)."""
    return table().get(Kind.ENGINE, id).version


def eks_addon(id: str) -> str:
    """An EKS add-on's pinned build (`v1.20.4-eksbuild.2`)."""
    return table().get(Kind.EKS_ADDON, id).version


def kubernetes(id: str) -> str:
    """The Kubernetes minor a created cluster runs unless the stack sets `kubernetes_version` (`eks`)."""
    return table().get(Kind.KUBERNETES, id).version


def crd_set(id: str) -> Pin:
    return table().get(Kind.CRD_SET, id)
