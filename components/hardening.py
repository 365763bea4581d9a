"""How every pod llmfleet runs is locked down: one place for the pod and container security contexts.

The Kubernetes "restricted" Pod Security Standard, for pods that never call the Kubernetes API: no
service-account token, the runtime's seccomp profile, every capability dropped, no privilege escalation,
and, where the image can run as any user, a fixed non-root uid (its group and fsGroup the same, so mounted
Secrets and volumes of mode 0440 stay readable). What differs between workloads is the uid (None: the
image's own user, for images that need root, see components/inference/hardening.py) and whether the root
filesystem can be read-only.
"""

from __future__ import annotations

from typing import Literal, TypedDict

import pulumi_kubernetes as k8s


class PodHardening(TypedDict):
    """PodSpecArgs fields: spread them in, `k8s.core.v1.PodSpecArgs(**pod_hardening(uid), ...)`."""

    automount_service_account_token: bool
    security_context: k8s.core.v1.PodSecurityContextArgs


def pod_hardening(uid: int | None, *, fs_group_change_policy: Literal["OnRootMismatch"] | None = None) -> PodHardening:
    """No token and RuntimeDefault seccomp; with a uid, run as it (user, group, fsGroup) and refuse root.

    `fs_group_change_policy`: OnRootMismatch for large volumes, which re-owning on every start would delay.
    """
    return PodHardening(
        automount_service_account_token=False,
        security_context=k8s.core.v1.PodSecurityContextArgs(
            run_as_user=uid,
            run_as_group=uid,
            fs_group=uid,
            run_as_non_root=True if uid is not None else None,
            seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
            fs_group_change_policy=fs_group_change_policy if uid is not None else None,
        ),
    )


def container_hardening(*, read_only_root: bool = True) -> k8s.core.v1.SecurityContextArgs:
    """Every capability dropped, no privilege escalation; a read-only root filesystem unless the image writes
    outside its mounted volumes."""
    return k8s.core.v1.SecurityContextArgs(
        allow_privilege_escalation=False,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
        read_only_root_filesystem=read_only_root,
    )
