"""The gateway's inputs as plain values: who may call, how much, where requests go, what to fall back to.

These shape the Kubernetes objects (how many rules, which policies), so they are plain Python, not
Outputs; only secrets (API keys) are `pulumi.Input[str]` and stay secret end to end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pulumi

from llmfleet.components.inference.engine import PORT

TENANT_HEADER = "x-tenant-id"
"""Header the gateway sets to the authenticated tenant (and strips from clients) for rate limits."""
MODEL_HEADER = "x-ai-eg-model"
"""Header the AI Gateway fills from the request body's `model`; routes match on it."""
REVISION_HEADER = "x-llmfleet-revision"
"""While a model has a canary, a request carrying `x-llmfleet-revision: <id>` goes to that revision only
(the rollout gate pins its load to the revision under test); other requests follow the weights."""
SHADOW_HEADER = "x-llmfleet-shadow"
"""Matched by the shadow route only (components/gateway/shadow.py); removed from every client request, so no
client can reach that route."""
PRIORITY_HEADER = "x-llmfleet-priority"
"""With priority routing, `cost` keeps a request on the region's servers, `quality` sends it to the hosted frontier
model first; `balanced`, another value or none takes the default route (components/gateway/priority.py)."""
CACHE_CLIENT = "llmfleet-cache"
"""The response cache's client id at the API-key policy: its misses come back through the gateway under it, which
selects the model's own rules (components/gateway/cache_routes.py) and holds it to no budget (so no tenant's)."""
AI_GATEWAY_METADATA_NAMESPACE = "io.envoy.ai_gateway"
"""Dynamic-metadata namespace where the AI Gateway writes the token counts of `llmRequestCosts`."""
TOTAL_TOKENS_KEY = "llm_total_token"
"""Metadata key of prompt + generated tokens (the token budget is charged this)."""
INFERENCE_POOL_GROUP = "inference.networking.k8s.io"
INFERENCE_POOL_KIND = "InferencePool"
"""The only non-default backendRef an AIGatewayRoute rule accepts (its CRD's CEL rules), and only alone."""


class Priority(StrEnum):
    COST = "cost"
    QUALITY = "quality"
    BALANCED = "balanced"


class FallbackProvider(StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


@dataclass(frozen=True)
class RateLimit:
    requests_per_minute: int | None = None
    """Requests per minute; None: unlimited."""
    tokens_per_minute: int | None = None
    """Prompt + generated tokens per minute; None: unlimited."""


@dataclass(frozen=True)
class Tenant:
    name: str
    """Tenant id (DNS label): the API key's client id and the value of TENANT_HEADER."""
    api_key: pulumi.Input[str] | None = None
    """The tenant's API key (a secret); None when tenants are identified by JWT."""
    limits: RateLimit | None = None
    """Own limits; None: the gateway's default limits."""


@dataclass(frozen=True)
class JwtAuth:
    issuer: str
    """Expected `iss` claim."""
    jwks_uri: str
    """https URL of the issuer's JSON Web Key Set."""
    audiences: Sequence[str] = ()
    """Accepted `aud` values (empty: not checked)."""
    tenant_claim: str = "sub"
    """Claim copied into TENANT_HEADER (the rate-limit key)."""


@dataclass(frozen=True)
class Fallback:
    provider: FallbackProvider
    api_key: pulumi.Input[str]
    """The provider's API key (a secret)."""
    models: Mapping[str, str]
    """Served model name -> the provider's model name; only these models fall back."""


@dataclass(frozen=True)
class PriorityRouting:
    """Hybrid routing by PRIORITY_HEADER between the region's servers and the fallback provider's models."""

    quality_models: Mapping[str, str] = field(default_factory=dict[str, str])
    """Served model name -> the provider's frontier model that `quality` requests go to first."""


@dataclass(frozen=True)
class Cascade:
    """The cheap-then-strong cascade: requests naming `auto_model` are sent to the cheap or the strong model by
    vLLM's semantic router (components/gateway/cascade.py), on its `complexity` signal."""

    cheap_model: str
    """Served model that takes every `auto_model` request the router does not escalate."""
    strong_model: str
    """Served model that takes the escalated ones."""
    hard_examples: Sequence[str]
    """Prompts typical of what needs the strong model (the signal's `hard` candidates)."""
    easy_examples: Sequence[str]
    """Prompts the cheap model handles (its `easy` candidates)."""
    auto_model: str = "auto"
    """The model name clients send to let the router choose."""
    threshold: float = 0.1
    """A prompt is `hard` when its similarity to the hard examples exceeds that to the easy ones by more than
    this (`easy` below minus it, `medium` between): the complexity rule's threshold, default v0.3.0's."""
    escalate_medium: bool = False
    """Also send `medium` prompts to the strong model."""
    fail_open: bool = True
    """When the router fails or times out, let the request through (an `auto` request then goes to the cheap
    model, other requests are untouched); False: answer 5xx to every request on the gateway."""
    replicas: int = 2
    cpu: str = "1"
    """The router pod's CPU request (the chart's default)."""
    memory: str = "3Gi"
    """Its memory request (the chart's default)."""
    memory_limit: str = "7Gi"
    """Its memory limit (the chart's default)."""
    values: Mapping[str, Any] = field(default_factory=dict[str, Any])
    """Escape hatch: deep-merged into the chart values llmfleet sets."""


@dataclass(frozen=True)
class ResponseCache:
    """LiteLLM's proxy cache in front of `models` (components/gateway/cache_routes.py, cache_deploy.py)."""

    models: Sequence[str]
    """Served names whose responses are cached."""
    ttl_s: int = 3600
    """Seconds an entry is served."""
    stale_s: int = 0
    """Serve stale: entries kept this much longer, served only when the model's call fails (0: off)."""
    deterministic_only: bool = True
    """Cache only deterministic requests (the hook's rule, components/gateway/response_cache.py)."""
    opt_in_tenants: Sequence[str] = ()
    """Tenants whose other requests are cached too."""
    replicas: int = 2
    """LiteLLM proxy pods (a PodDisruptionBudget keeps one up when there are two or more)."""
    cpu: str = "500m"
    memory: str = "1Gi"
    memory_limit: str = "2Gi"
    max_memory_mb: int = 1024
    """The cache Redis's maxmemory (MiB); past it the least recently used entries go (allkeys-lru)."""
    config: Mapping[str, Any] = field(default_factory=dict[str, Any])
    """Escape hatch: deep-merged into the LiteLLM proxy config."""

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("ResponseCache: list at least one model")
        if self.ttl_s < 1 or self.max_memory_mb < 16 or self.replicas < 1:
            raise ValueError("ResponseCache: ttl_s >= 1, max_memory_mb >= 16 and replicas >= 1")


LETS_ENCRYPT_PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"


@dataclass(frozen=True)
class AcmeIssuer:
    """An ACME account (Let's Encrypt by default) that the gateway's ClusterIssuer registers."""

    email: str
    """Contact for expiry and account notices from the ACME server."""
    server: str = LETS_ENCRYPT_PRODUCTION
    """ACME directory URL (LETS_ENCRYPT_STAGING to try a setup without hitting production rate limits)."""


@dataclass(frozen=True)
class Tls:
    secret_name: str | None = "llmfleet-gateway-tls"
    """kubernetes.io/tls Secret of the HTTPS listener, in the gateway's namespace. None: plain HTTP on
    port 80, for a local cluster reached through `kubectl port-forward` only."""
    cluster_issuer: str | None = None
    """cert-manager ClusterIssuer that creates `secret_name` (None: the Secret is provided)."""
    acme: AcmeIssuer | None = None
    """Create `cluster_issuer` as this ACME account, answering HTTP-01 challenges on the gateway's port-80
    listener (None: the ClusterIssuer already exists)."""
    install_cert_manager: bool = True
    """With `cluster_issuer`: install cert-manager (False: the cluster runs it already, Gateway API support on)."""

    def __post_init__(self) -> None:
        if self.cluster_issuer and not self.secret_name:
            raise ValueError("Tls: cluster_issuer needs secret_name (the Secret it issues); plain HTTP has none")
        if self.acme and not self.cluster_issuer:
            raise ValueError("Tls: acme needs cluster_issuer (the name of the ClusterIssuer to create)")

    @property
    def scheme(self) -> str:
        return "https" if self.secret_name else "http"


@dataclass(frozen=True)
class SplitBackend:
    """One part of a model served from two GPU types (a deployed mix), with its share of the requests."""

    part: str
    """The part's name (its GPU); names its Backend objects (`<gateway>-<model>-<part>`)."""
    service_name: pulumi.Input[str]
    """The part's ClusterIP Service, in the gateway's namespace."""
    weight: int
    """Relative share of the model's requests: the part's share of the mix's capacity, from the plan."""
    port: int = PORT


@dataclass(frozen=True)
class CanaryBackend:
    """A second revision of a model beside the first, taking a share of its requests (`llmfleet rollout`)."""

    revision: str
    """Revision id; names the canary's Backend objects (`<gateway>-<model>-<revision>`)."""
    service_name: pulumi.Input[str]
    """The canary InferenceService's ClusterIP Service, in the gateway's namespace."""
    weight: int
    """Percent of the model's requests sent to the canary (0-100); the first revision gets the rest."""
    port: int = PORT
    pool: str | None = None
    """The canary revision's own InferencePool, if it has one: requests pinned to the revision go through it."""
    split: tuple[SplitBackend, ...] = ()
    """The canary revision deployed as a GPU mix of its own: its parts, weighted by capacity within its share
    (`service_name` is then its first part's)."""
    shadow: int = 0
    """Shadow stage of a rollout: percent of the model's requests copied to the canary, the copies' responses
    dropped (components/gateway/shadow.py); only while the canary takes no requests itself (`weight` 0)."""

    def __post_init__(self) -> None:
        if not 0 <= self.weight <= 100:
            raise ValueError(f"canary {self.revision}: weight {self.weight} is not a percentage (0-100)")
        if not 0 <= self.shadow <= 100:
            raise ValueError(f"canary {self.revision}: shadow {self.shadow} is not a percentage (0-100)")
        if self.shadow and self.split:  # an Envoy mirror policy names one cluster: one part could be mirrored only
            raise ValueError(f"canary {self.revision}: a revision deployed as a GPU mix cannot be shadowed")
        if self.shadow and self.weight:
            raise ValueError(
                f"canary {self.revision}: shadowed at {self.shadow}% while taking {self.weight}% of the requests; "
                "the shadow stage comes before the canary steps (weight 0)"
            )


@dataclass(frozen=True)
class ModelBackend:
    """One served model behind the gateway: the region's InferenceService for it."""

    model: str
    """Served model name clients send as `model`."""
    service_name: pulumi.Input[str]
    """The InferenceService's ClusterIP Service, in the gateway's namespace."""
    port: int = PORT
    canary: CanaryBackend | None = None
    """During a rollout or an A/B test: a second revision and its share of this model's requests."""
    revision: str | None = None
    """Revision id of `service_name` once a rollout recorded one: with a canary, requests carrying
    `x-llmfleet-revision: <revision>` go to it only."""
    pool: str | None = None
    """InferencePool of the model's replicas (components.routing), in the gateway's namespace: the model's
    rule sends requests to it, and its endpoint picker chooses the replica (prefix cache, queue, KV cache).
    A rule holds one pool and nothing else (AIGatewayRoute CRD), so while a canary splits the model by
    weight the split goes to the Services (exact weights) and only revision-pinned requests use the
    pools; a pool cannot share its rule with the hosted fallback."""
    split: tuple[SplitBackend, ...] = ()
    """A model served from two GPU types: its parts, weighted by capacity. Without a canary the pool, when there is
    one, selects both parts' pods itself; with one, each revision's share is split over its parts."""
    shadow: int = 0
    """Shadow stage of a rollout whose new revision is this first one: percent of the model's requests copied to
    it (answers dropped) while the canary, here the old revision, takes them all (`canary.weight` 100)."""

    def __post_init__(self) -> None:
        if not 0 <= self.shadow <= 100:
            raise ValueError(f"model {self.model}: shadow {self.shadow} is not a percentage (0-100)")
        if self.shadow and (self.canary is None or self.canary.weight != 100 or self.canary.shadow):
            raise ValueError(
                f"model {self.model}: its first revision can be shadowed only while the other takes every request"
            )
        if self.shadow and self.split:
            raise ValueError(f"model {self.model}: a revision deployed as a GPU mix cannot be shadowed")
