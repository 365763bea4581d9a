"""components/hardening.py: the one pod and container lockdown every llmfleet workload uses."""

from __future__ import annotations

import re
from pathlib import Path

from llmfleet.components.hardening import container_hardening, pod_hardening

COMPONENTS = Path(__file__).resolve().parent.parent / "components"


def test_a_uid_runs_as_it_and_refuses_root_without_one_the_image_user_stays() -> None:
    pod = pod_hardening(10001, fs_group_change_policy="OnRootMismatch")
    context = pod["security_context"]
    assert pod["automount_service_account_token"] is False
    assert (context.run_as_user, context.run_as_group, context.fs_group) == (10001, 10001, 10001)
    assert context.run_as_non_root is True and context.fs_group_change_policy == "OnRootMismatch"
    assert context.seccomp_profile is not None and context.seccomp_profile.type == "RuntimeDefault"
    image_user = pod_hardening(None, fs_group_change_policy="OnRootMismatch")["security_context"]
    assert image_user.run_as_user is image_user.run_as_non_root is image_user.fs_group_change_policy is None
    assert image_user.seccomp_profile is not None and image_user.seccomp_profile.type == "RuntimeDefault"


def test_containers_drop_everything_and_choose_their_root_filesystem() -> None:
    for read_only in (True, False):
        context = container_hardening(read_only_root=read_only)
        assert context.allow_privilege_escalation is False and context.read_only_root_filesystem is read_only
        assert context.capabilities is not None and list(context.capabilities.drop or []) == ["ALL"]


def test_no_component_writes_its_own_security_context() -> None:
    # One definition: a workload that builds its own security context drifts from the rest.
    pattern = re.compile(r"\b(Pod)?SecurityContextArgs\(|SeccompProfileArgs\(")
    own = [
        f"{path.relative_to(COMPONENTS)}:{number}"
        for path in sorted(COMPONENTS.rglob("*.py"))
        if path != COMPONENTS / "hardening.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert own == [], f"use components/hardening.py: {own}"
