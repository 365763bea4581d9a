"""The one reader of stack files: `stacks/Pulumi.<stack>.yaml` -> a validated `DeploymentSpec`.

Everything downstream (planner, program, commands) takes the values this returns; nothing else
parses stack files or calls `pulumi.Config`. Every error names the field path and what is allowed.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, cast

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from llmfleet.infra.schema.base import Section
from llmfleet.infra.schema.gateway import GatewaySpec
from llmfleet.infra.schema.models import ModelSpec
from llmfleet.infra.schema.observability import ObservabilitySpec
from llmfleet.infra.schema.queue import QueueSpec
from llmfleet.infra.schema.regions import RegionSpec
from llmfleet.infra.schema.rollout import RolloutSpec
from llmfleet.infra.schema.traffic import LoadBalancerSpec
from llmfleet.values import Slo

if TYPE_CHECKING:
    import pulumi

CONFIG_KEY = "llmfleet:deployment"
CURRENT_KUBECONFIG = "local"
"""`cluster.kubeconfig_secret: local`: the current kubeconfig context, not a secret."""
PROJECT_ROOT = Path(__file__).resolve().parent.parent
STACKS_DIR = PROJECT_ROOT / "stacks"
DEFAULT_STACK = "dev"
OPEN_TO_ALL = "0.0.0.0/0"


class ConfigError(Exception):
    """Invalid stack input. The message names the field path and what would fix it."""


class DeploymentSpec(Section):
    """`config: {llmfleet:deployment: ...}` of a stack file."""

    models: list[ModelSpec] = Field(
        min_length=1, description="One entry per served model: what it is, how it is quantized, the load it must carry."
    )
    regions: list[RegionSpec] = Field(
        min_length=1, description="Where the models are served; exactly one region has role: primary."
    )
    slo: Slo = Field(
        default_factory=Slo,
        description="The one SLO the planner (TPOT), the KEDA thresholds (TTFT), the alert rules and the Locust gate "
        "all read.",
    )
    gateway: GatewaySpec = Field(
        default_factory=GatewaySpec,
        description="Each region's API gateway (Envoy Gateway + AI Gateway): hostname, TLS, tenants, limits, fallback.",
    )
    load_balancer: LoadBalancerSpec | None = Field(default=None, description="Global DNS; None: no global name.")
    observability: ObservabilitySpec = Field(
        default_factory=ObservabilitySpec,
        description="Each region's monitoring (kube-prometheus-stack, dcgm-exporter, alert rules, dashboards).",
    )
    rollout: RolloutSpec = Field(
        default_factory=RolloutSpec,
        description="How `llmfleet rollout` moves the stack to a new revision: region order, steps, the gate's load "
        "test.",
    )
    queue: QueueSpec | None = Field(default=None, description="Async queue (SQS / Pub/Sub) per region; None: off.")
    namespace: str = Field(
        default="llmfleet",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Kubernetes namespace of the model servers in every region.",
    )
    gcp_project: str | None = Field(default=None, description="GCP project for gcp regions.")
    huggingface_token_secret: str | None = Field(
        default=None,
        description="Secret stack config key holding a HuggingFace token for gated weights "
        "(`pulumi config set --secret <key> hf_...`); None downloads anonymously.",
    )
    api_access_cidrs: list[str] | None = Field(
        default=None,
        min_length=1,
        description="IPv4 CIDRs allowed to reach the Kubernetes API of the clusters llmfleet creates (EKS "
        "publicAccessCidrs, GKE master authorized networks): your networks and wherever `pulumi up` runs. "
        "Required when a region creates its cluster; `0.0.0.0/0` opens it to the internet (warned about).",
    )

    @field_validator("api_access_cidrs")
    @classmethod
    def _cidrs(cls, cidrs: list[str] | None) -> list[str] | None:
        for cidr in cidrs or []:
            try:
                ipaddress.IPv4Network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not an IPv4 CIDR such as 203.0.113.0/24 ({exc})") from None
        return cidrs

    @field_validator("huggingface_token_secret")
    @classmethod
    def _bare_key(cls, key: str | None) -> str | None:
        if key is not None and ":" in key:
            bare = key.rsplit(":", 1)[1]
            raise ValueError(f"give the key without its namespace, e.g. `{bare}` (read as llmfleet:<key>)")
        return key

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        names = [m.name for m in self.models] + [a.name for m in self.models for a in m.adapters]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"models: served names (models and their adapters) must be unique, repeated: {dupes}")
        keys = [r.key for r in self.regions]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"regions: each cloud/region once, repeated: {dupes}")
        primaries = [r.key for r in self.regions if r.role == "primary"]
        if len(primaries) != 1:
            raise ValueError(f"regions: exactly one region needs role: primary, found {primaries or 'none'}")
        for i, region in enumerate(self.regions):
            unknown = sorted(set(region.models or []) - set(names))
            if unknown:
                raise ValueError(f"regions[{i}].models: unknown served names {unknown}; defined: {names}")
        if any(r.cloud == "gcp" and r.cluster.mode == "create" for r in self.regions) and not self.gcp_project:
            raise ValueError("gcp_project: required when a gcp region creates its cluster")
        creating = [r.key for r in self.regions if r.cluster.mode == "create"]
        if creating and self.api_access_cidrs is None:
            raise ValueError(
                f"api_access_cidrs: required because {', '.join(creating)} create their cluster: list the IPv4 "
                "CIDRs allowed to reach the Kubernetes API (your office or VPN, and where `pulumi up` runs), e.g. "
                "[203.0.113.0/24]; only [0.0.0.0/0], written out, leaves it open to the internet"
            )
        self.gateway.check_models(names)
        self.gateway.check_clouds([r.cloud for r in self.regions])
        for i, model in enumerate(self.models):
            model.routing.check(f"models[{i}]", model.quantization, self.has_fallback(model.name), keys)
        if self.load_balancer is not None:
            self.load_balancer.check_stack(self.regions, self.gateway.hostname, self.gcp_project)
        self.rollout.check_regions(keys)
        in_cluster = self.rollout.in_cluster
        if in_cluster is not None and in_cluster.tenant is not None:
            keyed = [t.name for t in self.gateway.tenants if t.api_key_secret]
            if in_cluster.tenant not in keyed:
                raise ValueError(
                    f"rollout.in_cluster.tenant: {in_cluster.tenant!r} is not a gateway tenant with an "
                    f"api_key_secret; those are {keyed}"
                )
        if self.gateway.cascade is not None:
            self.gateway.cascade.check_stack({r.key: self.served_in(r) for r in self.regions})
        if self.gateway.response_cache is not None:
            served = {r.key: self.served_in(r) for r in self.regions}
            self.gateway.response_cache.check_regions(served, cascade=self.gateway.cascade is not None)
        if self.queue is not None:
            served = {r.key: [m.name for m in self.models_in(r)] for r in self.regions}
            self.queue.check_stack(self.regions, self.gateway, self.gateway.request_timeout_s, served)
        return self

    def warnings(self) -> list[str]:
        """Settings that are valid but open something up: the commands and the program print them."""
        found: list[str] = []
        if OPEN_TO_ALL in (self.api_access_cidrs or []) and any(r.cluster.mode == "create" for r in self.regions):
            found.append(
                f"{CONFIG_KEY}.api_access_cidrs: {OPEN_TO_ALL} lets any address on the internet reach the "
                "clusters' Kubernetes API (credentials are still required); list your networks instead"
            )
        return found

    def secret_refs(self) -> list[tuple[str, str]]:
        """(stack secret key, field path) of every secret the stack names, as the program resolves them."""
        refs: list[tuple[str, str]] = []
        if self.huggingface_token_secret:
            refs.append((self.huggingface_token_secret, "huggingface_token_secret"))
        for i, region in enumerate(self.regions):
            key = region.cluster.kubeconfig_secret
            if region.cluster.mode == "existing" and key is not None and key != CURRENT_KUBECONFIG:
                refs.append((key, f"regions[{i}].cluster.kubeconfig_secret"))
        return refs + self.gateway.secret_refs() + self.observability.secret_refs()

    def has_fallback(self, served: str) -> bool:
        """The gateway sends this model to the hosted API too (fallback, or `quality` priority routing): its
        rules then hold the hosted backend beside the model's own, which an InferencePool rule cannot."""
        hosted: set[str] = set(self.gateway.fallback.models) if self.gateway.fallback is not None else set()
        if self.gateway.priority is not None:
            hosted |= set(self.gateway.priority.quality_models)
        return served in hosted

    def served_in(self, region: RegionSpec) -> list[str]:
        """The names the region's gateway routes: its models and their LoRA adapters."""
        return [name for m in self.models_in(region) for name in (m.name, *(a.name for a in m.adapters))]

    def models_in(self, region: RegionSpec) -> list[ModelSpec]:
        """The models a region serves, in stack order."""
        wanted = region.models
        return [m for m in self.models if wanted is None or m.name in wanted]


def _field_path(loc: tuple[int | str, ...]) -> str:
    """`('models', 0, 'load', 'ConcurrencyLoad', 'x')` -> `models[0].load.x`.

    Union members and validator wrappers appear in pydantic's loc as class or function names;
    they are not fields the user can write, so they are dropped.
    """
    path = CONFIG_KEY
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part[:1].isupper() or "[" in part:
            continue
        else:
            path += f".{part}"
    return path


def _is_union_member(part: int | str) -> bool:
    return isinstance(part, str) and part[:1].isupper() and "[" not in part


_SHAPE_ERRORS = ("missing", "extra_forbidden")


def _branch_the_user_wrote(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """Of a union field that matched no member, the errors of the member the user meant.

    Pydantic reports every member's errors (for `load: {concurrent_sequences: -32}`: the bad value, and
    ThroughputLoad's missing `output_tokens_per_s` and unknown `concurrent_sequences`), which contradict
    each other. The member whose fields the user wrote has the fewest missing or unknown fields.
    """
    branches: dict[tuple[int | str, ...], dict[int | str, int]] = {}
    for error in errors:
        loc = tuple(error["loc"])
        for k, part in enumerate(loc):
            if _is_union_member(part):
                shape = branches.setdefault(loc[:k], {}).setdefault(part, 0)
                branches[loc[:k]][part] = shape + (error["type"] in _SHAPE_ERRORS)
                break
    chosen = {prefix: min(members, key=lambda m: members[m]) for prefix, members in branches.items()}
    kept: list[ErrorDetails] = []
    for error in errors:
        loc = tuple(error["loc"])
        member = next(((loc[:k], part) for k, part in enumerate(loc) if _is_union_member(part)), None)
        if member is None or chosen.get(member[0]) == member[1]:
            kept.append(error)
    return kept


def _describe(error: ErrorDetails) -> str:
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field (check the spelling; see docs/stack-reference.md)"
    elif error["type"] == "missing":
        message = "required field is missing"
    got = error.get("input")
    shown = "" if error["type"] in ("missing", "model_type") or isinstance(got, dict | list) else f" (got {got!r})"
    return f"{_field_path(error['loc'])}: {message}{shown}"


def parse_deployment(data: Any, source: str) -> DeploymentSpec:
    """Validate the `llmfleet:deployment` value; raise ConfigError with one line per problem."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {CONFIG_KEY} must be a mapping, got {type(data).__name__}")
    try:
        return DeploymentSpec.model_validate(data)
    except ValidationError as exc:
        seen: list[str] = []
        for error in _branch_the_user_wrote(exc.errors()):
            line = _describe(error)
            if line not in seen:
                seen.append(line)
        raise ConfigError(f"{source}: invalid stack configuration\n  " + "\n  ".join(seen)) from None


def stack_path(stack: str) -> Path:
    return STACKS_DIR / f"Pulumi.{stack}.yaml"


def load_stack_file(path: Path) -> DeploymentSpec:
    """Read a stack file (`config: {llmfleet:deployment: ...}`) and validate it."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in STACKS_DIR.glob("Pulumi.*.yaml"))
        raise ConfigError(f"{path}: no such stack file (stacks in {STACKS_DIR}: {known})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the stack file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:  # YAML is UTF-8 text; a binary or other-encoded file is bad input, not a crash
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}): save the stack file as UTF-8") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    config = cast(dict[str, Any], document).get("config") if isinstance(document, dict) else None
    if not isinstance(config, dict) or CONFIG_KEY not in config:
        raise ConfigError(f"{path}: missing `config: {{{CONFIG_KEY}: ...}}`")
    return parse_deployment(cast(dict[str, Any], config)[CONFIG_KEY], str(path))


def undefined_secrets(stack: str, path: Path, spec: DeploymentSpec) -> list[str]:
    """Secrets the stack names that its file does not define, each with the command that sets it.

    `pulumi config set --secret` writes `llmfleet:<key>: {secure: ...}` into this same file (stackConfigDir),
    so a key missing here stops `pulumi up` and `llmfleet render`; `plan` reports them all at once.
    """
    document = yaml.safe_load(path.read_text())
    defined = set(cast(dict[str, Any], document["config"]))
    return [
        f"{CONFIG_KEY}.{field}: secret `llmfleet:{key}` is not set in {path.name}; "
        f"set it with `pulumi config set --secret -s {stack} llmfleet:{key} <value>`"
        for key, field in spec.secret_refs()
        if f"llmfleet:{key}" not in defined and key not in defined
    ]


def load_stack(stack: str | None = None, stack_file: Path | None = None) -> tuple[str, DeploymentSpec]:
    """Resolve `--stack NAME` / `--stack-file PATH` (default: the dev stack) to (name, spec)."""
    if stack and stack_file:
        raise ConfigError("give --stack or --stack-file, not both")
    if stack_file is not None:
        name = stack_file.name.removeprefix("Pulumi.").removesuffix(".yaml")
        return name, load_stack_file(stack_file)
    name = stack or DEFAULT_STACK
    return name, load_stack_file(stack_path(name))


def require_secret(key: str, field: str) -> pulumi.Output[str]:
    """A secret stack value (`pulumi config set --secret llmfleet:<key> ...`), kept secret end to end.

    `field` is the stack-file path that named the key, so a missing secret is reported against it
    before the program creates any resource.
    """
    import pulumi

    value = pulumi.Config("llmfleet").get_secret(key)
    if value is None:
        raise ConfigError(
            f"{CONFIG_KEY}.{field}: secret `llmfleet:{key}` is not set in stack {pulumi.get_stack()}; "
            f"run `pulumi config set --secret llmfleet:{key} <value>`"
        )
    return value


def from_pulumi_config() -> DeploymentSpec:
    """The running Pulumi program's stack configuration (the program's only config read)."""
    import pulumi

    data = pulumi.Config("llmfleet").require_object("deployment")
    return parse_deployment(data, f"stack {pulumi.get_stack()}")
