"""`regions:` — where to serve, on which cloud, and how the cluster is obtained."""

from typing import Literal

from pydantic import Field

from infra.schema.base import Section


class ClusterSpec(Section):
    """How the region's Kubernetes cluster is obtained (created by default)."""

    mode: Literal["create", "existing"] = "create"
    kubeconfig_secret: str | None = Field(
        None,
        description="existing: name of a secret stack config key holding the kubeconfig "
        "(`pulumi config set --secret <key> ...`), or `local` for the current kubeconfig.",
    )
    kubernetes_version: str | None = Field(None, description="created clusters: control-plane version.")


class RegionSpec(Section):
    """One cloud region."""

    cloud: Literal["aws", "gcp"]
    region: str = Field(min_length=1)
    role: Literal["primary", "secondary"] = "secondary"
    capacity_type: Literal["on-demand", "spot"] = "on-demand"
    allowed_gpus: list[str] | None = Field(None, description="GPU catalog ids this region may use.")
    models: list[str] | None = Field(None, description="Served model names for this region (default: all).")
    cluster: ClusterSpec = ClusterSpec()

    @property
    def key(self) -> str:
        """Stable name of the region in resource names and render folders: `<cloud>-<region>`."""
        return f"{self.cloud}-{self.region}"
