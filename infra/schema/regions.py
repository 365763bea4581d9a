"""`regions:` — where to serve, on which cloud, and how the cluster is obtained."""

from typing import Literal, Self

from pydantic import Field, model_validator

from llmfleet.infra.schema.base import Section


class ClusterSpec(Section):
    """How the region's Kubernetes cluster is obtained (created by default)."""

    mode: Literal["create", "existing"] = Field(
        default="create",
        description="create: llmfleet creates the cluster (EKS or GKE); existing: a cluster from kubeconfig_secret.",
    )
    kubeconfig_secret: str | None = Field(
        default=None,
        description="existing: name of a secret stack config key holding the kubeconfig "
        "(`pulumi config set --secret <key> ...`), or `local` for the current kubeconfig.",
    )
    kubernetes_version: str | None = Field(default=None, description="created clusters: control-plane version.")


class RegionSpec(Section):
    """One cloud region (`local`: a kind/minikube cluster from the current kubeconfig, no GPUs)."""

    cloud: Literal["aws", "gcp", "local"] = Field(
        description="aws, gcp, or local (an existing kind/minikube cluster, no GPUs)."
    )
    region: str = Field(
        min_length=1, description="A region the instance catalog lists for that cloud (`local` for cloud: local)."
    )
    role: Literal["primary", "secondary"] = Field(
        default="secondary",
        description="Exactly one primary (the last resort of global failover, the last rollout wave); the rest "
        "secondary.",
    )
    capacity_type: Literal["on-demand", "spot"] = Field(
        default="on-demand",
        description="on-demand or spot GPU nodes; a type is planned only where the cited price source sells it so.",
    )
    allowed_gpus: list[str] | None = Field(default=None, description="GPU catalog ids this region may use.")
    models: list[str] | None = Field(default=None, description="Served model names for this region (default: all).")
    cluster: ClusterSpec = Field(
        default_factory=ClusterSpec, description="How the region's cluster is obtained (created by default)."
    )

    @model_validator(mode="after")
    def _local_is_existing(self) -> Self:
        if self.cloud == "local" and self.cluster.mode != "existing":
            raise ValueError("cloud `local` serves on an existing cluster: set cluster.mode: existing")
        return self

    @property
    def key(self) -> str:
        """Stable name of the region in resource names and render folders: `<cloud>-<region>`."""
        return f"{self.cloud}-{self.region}"
