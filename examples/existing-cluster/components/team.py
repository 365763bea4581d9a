"""`TeamNamespace`: the namespace a team's workloads go in, with the labels the platform bills by."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s


@dataclass(frozen=True)
class TeamNamespaceArgs:
    team: str
    """Team that owns the namespace (label `example.com/team`)."""
    cost_center: str
    """Where its cost is billed (label `example.com/cost-center`)."""


class TeamNamespace(pulumi.ComponentResource):
    """One namespace labelled for its team; `name` is the namespace's own name too."""

    namespace: pulumi.Output[str]

    def __init__(self, name: str, args: TeamNamespaceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("example:team:TeamNamespace", name, None, opts)
        labels = {"example.com/team": args.team, "example.com/cost-center": args.cost_center}
        created = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=name, labels=labels),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.namespace = created.metadata.apply(lambda m: m.name or name)
        self.register_outputs({"namespace": self.namespace})
