"""The rules of infra/policy/rules.py as pulumi_policy policies (the pack in __main__.py lists POLICIES).

Adapting the engine's view to the rules':
- props arrive wrapped in pulumi_policy proxies; `plain` unwraps them to dicts and lists, with a
  secret (seen only by remediations) as rules.Secret;
- during `pulumi preview` an input may be unknown (an ID not created yet): a resource rule that would
  read unknown values reports itself not applicable, and runs for real in the update, where every
  input is known;
- stack rules get each resource's cluster (its top-level component) and region (rules.region_key).

Secrets: in a validation pulumi_policy hands over secret inputs already unwrapped, so whether a value
is a Pulumi secret can only be seen by a remediation. `api-keys-are-secrets` therefore validates what a
validation can see (credentials in plain sight in the cluster) and remediates the rest: at the
`remediate` enforcement level, every credential that is not a secret is made one before it is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceRemediation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
    proxy,
)
from pulumi_policy import Secret as PolicySecret
from pulumi_policy.secret import _DictSecretsProxy, _ListSecretsProxy  # pyright: ignore[reportPrivateUsage]

from llmfleet.infra.policy import rules

UNKNOWN_VALUES = frozenset(
    value for name, value in vars(proxy).items() if name.startswith("UNKNOWN_") and isinstance(value, str)
)
"""The sentinels pulumi_policy puts where a value is unknown during preview."""


_PROXIES = (proxy._DictProxy, proxy._ListProxy, _DictSecretsProxy, _ListSecretsProxy)  # pyright: ignore[reportPrivateUsage]
"""pulumi_policy's wrappers around props; each hands out its raw target as `["__target"]` (the SDK's own
serializer unwraps them the same way)."""


def plain(value: Any) -> Any:
    """Dicts, lists and rules.Secret from pulumi_policy's proxies and secrets."""
    if isinstance(value, _PROXIES):
        return plain(value["__target"])
    if isinstance(value, PolicySecret):
        return rules.Secret(plain(value.value))
    if isinstance(value, dict):
        return {k: plain(v) for k, v in cast(dict[str, Any], value).items()}
    if isinstance(value, list):
        return [plain(v) for v in cast(list[Any], value)]
    return value


def has_unknowns(value: Any) -> bool:
    if isinstance(value, str):
        return value in UNKNOWN_VALUES
    if isinstance(value, rules.Secret):
        return has_unknowns(value.value)
    if isinstance(value, dict):
        return any(has_unknowns(v) for v in cast(dict[str, Any], value).values())
    if isinstance(value, list):
        return any(has_unknowns(v) for v in cast(list[Any], value))
    return False


ResourceRule = Callable[[str, rules.Props], list[str]]
StackRule = Callable[[Sequence[rules.Resource]], list[rules.Violation]]


def resource_validation(rule: ResourceRule) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        props = cast(dict[str, Any], plain(args.props))
        if has_unknowns(props):
            args.not_applicable("some inputs are unknown until the update; checked then")
        for message in rule(args.resource_type, props):
            report_violation(message, args.urn)

    return validate


def stack_resources(resources: Sequence[PolicyResource]) -> list[rules.Resource]:
    """The stack's resources as stack rules see them: plain props, cluster and region."""
    found: list[rules.Resource] = []
    for resource in resources:
        top = resource
        while top.parent is not None and top.parent.resource_type != "pulumi:pulumi:Stack":
            top = top.parent
        props = cast(dict[str, Any], plain(resource.props))
        provider = cast(dict[str, Any], plain(resource.provider.props)) if resource.provider else {}
        region = rules.region_key(resource.resource_type, props, provider)
        found.append(rules.Resource(resource.resource_type, resource.name, resource.urn, props, top.urn, region))
    return found


def stack_validation(rule: StackRule) -> Callable[[StackValidationArgs, ReportViolation], None]:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        for message, urn in rule(stack_resources(args.resources)):
            report_violation(message, urn)

    return validate


def remediate_credentials(args: ResourceValidationArgs) -> dict[str, Any] | None:
    """Make every credential that is not yet a Pulumi secret one (None: nothing to change)."""
    props = cast(dict[str, Any], plain(args.props))
    paths = rules.unmarked_credentials(args.resource_type, props)
    if not paths:
        return None
    for path in paths:
        parent: Any = props
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = rules.Secret(parent[path[-1]])
    return cast(dict[str, Any], _to_policy_secrets(props))


def _to_policy_secrets(value: Any) -> Any:
    if isinstance(value, rules.Secret):
        return PolicySecret(_to_policy_secrets(value.value))
    if isinstance(value, dict):
        return {k: _to_policy_secrets(v) for k, v in cast(dict[str, Any], value).items()}
    if isinstance(value, list):
        return [_to_policy_secrets(v) for v in cast(list[Any], value)]
    return value


PRIMARY_REGIONS_SCHEMA = PolicyConfigSchema(
    properties={
        "primaryRegions": {
            "type": "array",
            "items": {"type": "string"},
            "description": "`<cloud>-<region>` keys of the stack's primary regions, e.g. aws-us-east-1.",
        }
    }
)


def _spot_in_primary(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    primary = cast(list[str], args.get_config().get("primaryRegions") or [])
    if not primary:
        args.not_applicable("set primaryRegions in the policy pack config to check the primary regions")
    for message, urn in rules.spot_only_in_primary(stack_resources(args.resources), primary):
        report_violation(message, urn)


MANDATORY = EnforcementLevel.MANDATORY
ADVISORY = EnforcementLevel.ADVISORY

POLICIES: list[Policy] = [
    ResourceValidationPolicy(
        name="gpu-pool-taint",
        description="GPU node pools carry the nvidia.com/gpu NoSchedule taint.",
        validate=resource_validation(rules.gpu_pool_taint),
        enforcement_level=MANDATORY,
    ),
    ResourceValidationPolicy(
        name="inference-pods-tolerate-gpu-taint",
        description="Inference pods that request GPUs tolerate the GPU taint.",
        validate=resource_validation(rules.inference_pod_tolerations),
        enforcement_level=MANDATORY,
    ),
    StackValidationPolicy(
        name="inference-pods-fit-their-pool",
        description="Inference pods request GPUs their node pools have, and tolerate the pools' taints.",
        validate=stack_validation(rules.inference_pods_fit_pools),
        enforcement_level=MANDATORY,
    ),
    ResourceValidationPolicy(
        name="inference-service-cluster-only",
        description="Inference Services are ClusterIP: no LoadBalancer, NodePort or external IPs.",
        validate=resource_validation(rules.inference_service_type),
        enforcement_level=MANDATORY,
    ),
    StackValidationPolicy(
        name="inference-only-through-gateway",
        description="Only the gateway component routes traffic to inference Services.",
        validate=stack_validation(rules.inference_only_through_gateway),
        enforcement_level=MANDATORY,
    ),
    ResourceValidationPolicy(
        name="api-keys-are-secrets",
        description="API keys and tokens come from Secrets in the cluster and are Pulumi secrets in the state.",
        validate=resource_validation(rules.credentials_in_plain_text),
        # typed as returning an Awaitable, but the analyzer takes a plain result too (Remediate in policy.py)
        remediate=cast(ResourceRemediation, remediate_credentials),
        enforcement_level=EnforcementLevel.REMEDIATE,
    ),
    ResourceValidationPolicy(
        name="pinned-image-tags",
        description="Images have a version tag (not latest) or a digest; Helm charts a version.",
        validate=resource_validation(rules.pinned_images),
        enforcement_level=MANDATORY,
    ),
    StackValidationPolicy(
        name="gpu-pool-fallback-types",
        description="A model's GPU pools offer more than one machine type (advisory).",
        validate=stack_validation(rules.single_machine_type),
        enforcement_level=ADVISORY,
    ),
    StackValidationPolicy(
        name="no-spot-only-primary",
        description="A primary region's GPU pools for a model are not all spot (advisory).",
        validate=_spot_in_primary,
        enforcement_level=ADVISORY,
        config_schema=PRIMARY_REGIONS_SCHEMA,
    ),
]
