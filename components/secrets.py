"""A secret value as a container reads it: a Kubernetes Secret holding it, and an env var taken from that Secret.

The value is wrapped as a Pulumi secret before it reaches the Secret's data, so it stays encrypted in the
state and masked in previews whatever the caller passed (DESIGN.md: secrets end to end). Every workload
that needs a key or token in its environment builds it here, so they all store and reference it alike.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s


def secret_env(
    resource_name: str,
    metadata: k8s.meta.v1.ObjectMetaArgs,
    *,
    env_name: str,
    data_key: str,
    value: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> k8s.core.v1.EnvVarArgs:
    """Create the Secret (`data_key` -> `value`) and return the env var `env_name` that reads it."""
    secret = k8s.core.v1.Secret(
        resource_name,
        metadata=metadata,
        type="Opaque",
        string_data={data_key: pulumi.Output.secret(value)},
        opts=opts,
    )
    return k8s.core.v1.EnvVarArgs(
        name=env_name,
        value_from=k8s.core.v1.EnvVarSourceArgs(
            secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=secret.metadata.name, key=data_key)
        ),
    )
