"""`gateway:` — Envoy Gateway + Envoy AI Gateway in front of every region (issue: the API gateway).

Authentication is on by default: clients present a per-tenant API key, or a JWT when `jwt` is set.
With neither (and `allow_anonymous` false) the gateway answers every request with 403 until tenants
are added. Keys never appear in the stack file: a tenant names a secret stack config key
(`pulumi config set --secret llmfleet:<key> ...`) that the program resolves.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import Field, model_validator

from llmfleet.infra.schema.base import Section

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
DNS_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$"
SECRET_KEY = r"^[A-Za-z][A-Za-z0-9_-]*$"
"""A Pulumi config key inside the `llmfleet:` namespace (the part after `llmfleet:`)."""


class RateLimits(Section):
    """Per-tenant budgets, enforced by every gateway replica together (counters live in Redis)."""

    requests_per_minute: int | None = Field(default=None, gt=0, description="Requests per minute; none: no limit.")
    tokens_per_minute: int | None = Field(
        default=None, gt=0, description="Prompt + generated tokens per minute (as the backend reports them)."
    )


class TenantSpec(Section):
    """One client of the gateway: an API key (or a JWT tenant claim value) and optionally its own limits."""

    name: str = Field(pattern=DNS_LABEL, description="Tenant id: the API key's client id and the rate-limit key.")
    api_key_secret: str | None = Field(
        default=None,
        pattern=SECRET_KEY,
        description="Secret stack config key holding this tenant's API key (required unless `jwt` is set).",
    )
    limits: RateLimits | None = Field(default=None, description="Own limits instead of `default_limits`.")


class JwtSpec(Section):
    """Accept JWTs from one OIDC issuer instead of API keys; a claim names the tenant."""

    issuer: str = Field(pattern=r"^https://", description="Expected `iss` claim (an https URL).")
    jwks_uri: str = Field(pattern=r"^https://", description="Where the issuer publishes its signing keys.")
    audiences: list[str] = Field(default_factory=list[str], max_length=8, description="Accepted `aud` values.")
    tenant_claim: str = Field(default="sub", min_length=1, description="Claim whose value is the tenant id.")


EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
DEFAULT_ACME_ISSUER = "llmfleet-acme"
"""Name of the ClusterIssuer created for `tls.acme` when `tls.cluster_issuer` does not name it."""


class AcmeSpec(Section):
    """The ACME account (Let's Encrypt by default) of the ClusterIssuer llmfleet creates in each region's cluster."""

    email: str = Field(pattern=EMAIL, description="Contact for expiry and account notices from the ACME server.")
    server: str = Field(
        default="https://acme-v02.api.letsencrypt.org/directory",
        pattern=r"^https://",
        description="ACME directory URL (Let's Encrypt staging: "
        "https://acme-staging-v02.api.letsencrypt.org/directory).",
    )


class TlsSpec(Section):
    """The HTTPS listener's certificate: a Secret you provide, or one cert-manager issues.

    With TLS on, the gateway also listens on port 80, answering ACME HTTP-01 challenges and redirecting
    everything else to HTTPS. `none` serves plain HTTP on port 80: only for `local` regions (kind/minikube
    behind `kubectl port-forward`), never on a cloud cluster.
    """

    mode: Literal["secret", "cert-manager", "none"] = Field(
        default="secret",
        description="secret: a kubernetes.io/tls Secret you create; cert-manager (needs hostname); none: plain HTTP "
        "on port 80, local regions only.",
    )
    secret_name: str = Field(
        default="llmfleet-gateway-tls",
        pattern=DNS_LABEL,
        description="kubernetes.io/tls Secret in the deployment namespace (created by cert-manager in that mode).",
    )
    cluster_issuer: str | None = Field(
        default=None,
        pattern=DNS_LABEL,
        description="cert-manager: the ClusterIssuer that signs the certificate (created when `acme` is set, "
        f"default name {DEFAULT_ACME_ISSUER}; without `acme` it must already exist).",
    )
    acme: AcmeSpec | None = Field(
        default=None, description="cert-manager: create the ClusterIssuer as this ACME account (HTTP-01 solver)."
    )
    install_cert_manager: bool = Field(
        default=True,
        description="cert-manager: install it (Helm chart, CRDs, Gateway API support); false when the clusters run it.",
    )

    @property
    def issuer(self) -> str | None:
        """The ClusterIssuer the Gateway names (None unless mode cert-manager)."""
        if self.mode != "cert-manager":
            return None
        return self.cluster_issuer or (DEFAULT_ACME_ISSUER if self.acme else None)


class FallbackSpec(Section):
    """A hosted API used, at lower priority, when a region's own backends fail."""

    provider: Literal["openai", "anthropic"] = Field(
        description="openai, or anthropic through its OpenAI-compatible endpoint."
    )
    api_key_secret: str = Field(pattern=SECRET_KEY, description="Secret stack config key holding the provider key.")
    models: dict[str, str] = Field(
        min_length=1, description="Served model name -> the provider's model to use instead (only these fall back)."
    )


class PrioritySpec(Section):
    """Hybrid routing by the `x-llmfleet-priority` request header (docs/patterns.md): `cost` stays on the region's
    own servers, `quality` goes to a hosted frontier model first, `balanced` (or none) is the default route."""

    quality_models: dict[str, str] = Field(
        default_factory=dict[str, str],
        description="Served model name -> the fallback provider's frontier model for `quality` requests.",
    )


MAX_ROUTE_RULES = 15
"""AIGatewayRoute spec.rules maxItems (components/gateway/routes.py MAX_RULES_PER_ROUTE, its CRD)."""
CACHE_CLIENT = "llmfleet-cache"
"""The response cache's own client id at the gateway (components/gateway/types.py CACHE_CLIENT): no tenant's name."""
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi)?$"
"""A Kubernetes resource quantity as the router's requests take it (`1`, `500m`, `3Gi`)."""


class CascadeSpec(Section):
    """The cheap-then-strong cascade (docs/patterns.md): requests naming `auto_model` are sent to `cheap_model` or,
    when vLLM's semantic router (v0.3.0) scores the prompt as hard, to `strong_model`."""

    cheap_model: str = Field(description="Served model taking every `auto_model` request not escalated.")
    strong_model: str = Field(description="Served model taking the escalated ones (served in every region too).")
    auto_model: str = Field(
        default="auto",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,62}$",
        description="The model name clients send to let the router choose (not a served model's name).",
    )
    escalate_on: Literal["hard", "medium"] = Field(
        default="hard",
        description="hard: only prompts the router scores hard go to strong_model; medium: medium and hard ones.",
    )
    threshold: float = Field(
        default=0.1,
        gt=0,
        lt=1,
        description="Margin of similarity to the hard over the easy examples above which a prompt is hard (below "
        "minus it: easy; between: medium). The router's complexity-rule threshold; 0.1 is its default.",
    )
    hard_examples: list[str] = Field(
        default_factory=lambda: [
            "prove this result step by step",
            "design the system and compare the trade-offs of each option",
            "find the root cause of this failure and explain the fix",
            "write a detailed analysis with several parts",
        ],
        min_length=1,
        max_length=64,
        description="Prompts typical of what needs the strong model (the router embeds them at start).",
    )
    easy_examples: list[str] = Field(
        default_factory=lambda: [
            "what is the capital of France",
            "fix the grammar of this sentence",
            "summarise this in one line",
            "translate this word into Spanish",
        ],
        min_length=1,
        max_length=64,
        description="Prompts the cheap model handles well.",
    )
    fail_open: bool = Field(
        default=True,
        description="true: when the router fails, requests pass (an `auto_model` request goes to cheap_model); "
        "false: every request on the gateway fails while the router is down.",
    )
    replicas: int = Field(default=2, ge=1, le=10, description="Router pods per region.")
    cpu: str = Field(default="1", pattern=QUANTITY, description="CPU request of each router pod (the chart's).")
    memory: str = Field(default="3Gi", pattern=QUANTITY, description="Memory request of each router pod (the chart's).")
    memory_limit: str = Field(default="7Gi", pattern=QUANTITY, description="Memory limit of each router pod.")
    router_values: dict[str, Any] = Field(
        default_factory=dict[str, Any],
        description="Escape hatch: deep-merged into the semantic-router chart values llmfleet sets (checked against "
        "the chart's values at render).",
    )

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        if self.cheap_model == self.strong_model:
            raise ValueError("cheap_model and strong_model: name two different served models")
        for name in ("hard_examples", "easy_examples"):
            if any(not text.strip() for text in getattr(self, name)):
                raise ValueError(f"{name}: an example prompt is empty")
        return self

    def check_stack(self, served: dict[str, list[str]]) -> None:
        """`served`: region key -> the names its gateway routes."""
        every = sorted({name for names in served.values() for name in names})
        if self.auto_model in every:
            raise ValueError(
                f"gateway.cascade.auto_model: {self.auto_model!r} is a served model's name; choose another (e.g. auto)"
            )
        for field_name in ("cheap_model", "strong_model"):
            model = getattr(self, field_name)
            missing = sorted(region for region, names in served.items() if model not in names)
            if model not in every:
                raise ValueError(f"gateway.cascade.{field_name}: unknown served name {model!r}; defined: {every}")
            if missing:
                raise ValueError(
                    f"gateway.cascade.{field_name}: {model!r} is not served in {missing}; the cascade runs in every "
                    "region's gateway, so serve it there (regions[].models)"
                )


class ResponseCacheSpec(Section):
    """The response cache (docs/patterns.md, "Response cache"): LiteLLM's proxy cache in front of the listed models,
    exact match on tenant + model + messages + sampling parameters, stored in a Redis of its own per region."""

    models: list[str] = Field(
        min_length=1,
        description="Served names whose responses are cached (each takes one more rule of the region's model route).",
    )
    ttl_s: int = Field(default=3600, ge=1, le=604_800, description="Seconds an entry is served before it expires.")
    stale_s: int = Field(
        default=0,
        ge=0,
        le=604_800,
        description="Serve stale (graceful degradation): entries are kept this much longer, and answer a request "
        "only when its model fails (every backend down, or any error); 0: off.",
    )
    deterministic_only: bool = Field(
        default=True,
        description="true: only deterministic requests are cached (temperature 0 or top_k 1, one choice; "
        "docs/patterns.md); "
        "false: every request of the listed models is.",
    )
    opt_in_tenants: list[str] = Field(
        default_factory=list[str],
        max_length=64,
        description="Tenants whose non-deterministic requests are cached too (with deterministic_only).",
    )
    replicas: int = Field(default=2, ge=1, le=10, description="LiteLLM proxy pods per region.")
    cpu: str = Field(default="500m", pattern=QUANTITY, description="CPU request of each LiteLLM pod.")
    memory: str = Field(default="1Gi", pattern=QUANTITY, description="Memory request of each LiteLLM pod.")
    memory_limit: str = Field(default="2Gi", pattern=QUANTITY, description="Memory limit of each LiteLLM pod.")
    max_memory_mb: int = Field(
        default=1024,
        ge=16,
        le=65_536,
        description="Size bound of the cache's Redis (maxmemory, in MiB): past it the least recently used entries "
        "are evicted (allkeys-lru).",
    )
    litellm_config: dict[str, Any] = Field(
        default_factory=dict[str, Any],
        description="Escape hatch: deep-merged into the LiteLLM proxy config llmfleet writes (its config.yaml).",
    )

    @model_validator(mode="after")
    def _unique(self) -> Self:
        for name in ("models", "opt_in_tenants"):
            values: list[str] = getattr(self, name)
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"{name}: listed twice: {repeated}")
        return self

    def check_regions(self, served: dict[str, list[str]], cascade: bool) -> None:
        """`served`: region key -> the names its gateway routes. Each region's model route holds one rule per served
        name, one more per cached one (and the cascade's): at most MAX_ROUTE_RULES, before any canary's."""
        for region, names in served.items():
            rules = len(names) + len(set(self.models) & set(names)) + int(cascade)
            if rules > MAX_ROUTE_RULES:
                raise ValueError(
                    f"gateway.response_cache.models: region {region} would route {rules} rules (one per served name, "
                    f"one more per cached model{', one for the cascade' if cascade else ''}), the AIGatewayRoute "
                    f"allows {MAX_ROUTE_RULES}; cache fewer of its models"
                )

    def check_stack(self, gateway: GatewaySpec, served: list[str]) -> None:
        """Cross-check against the gateway and the stack's served names (called by GatewaySpec.check_models)."""
        where = "gateway.response_cache"
        unknown = sorted(set(self.models) - set(served))
        if unknown:
            raise ValueError(f"{where}.models: unknown served names {unknown}; defined: {served}")
        keyed = [t.name for t in gateway.tenants if t.api_key_secret is not None]
        if gateway.jwt is not None or gateway.allow_anonymous or not keyed:
            how = "jwt" if gateway.jwt else "allow_anonymous" if gateway.allow_anonymous else "no tenants (closed)"
            raise ValueError(
                f"{where}: needs a gateway with API-key tenants (gateway.tenants with api_key_secret), this one has "
                f"{how}: the cache keeps each tenant's entries apart by the tenant the key names, and sends its "
                "misses back through the gateway with an API key of its own; remove response_cache or use API keys"
            )
        unknown = sorted(set(self.opt_in_tenants) - set(keyed))
        if unknown:
            raise ValueError(f"{where}.opt_in_tenants: unknown tenants {unknown}; the gateway's tenants: {keyed}")
        if self.opt_in_tenants and not self.deterministic_only:
            raise ValueError(
                f"{where}.opt_in_tenants: {self.opt_in_tenants} opt tenants into caching sampled requests, which "
                "deterministic_only: false already does for every tenant; remove opt_in_tenants or set "
                "deterministic_only: true"
            )
        for index, tenant in enumerate(gateway.tenants):
            if tenant.name == CACHE_CLIENT:
                raise ValueError(
                    f"gateway.tenants[{index}].name: {CACHE_CLIENT!r} is the response cache's own client at the "
                    "gateway (its misses come back under that name and skip the cache and the budgets); rename "
                    "the tenant"
                )
        if gateway.tls.mode != "none" and gateway.hostname is None:
            raise ValueError(
                f"{where}: needs gateway.hostname with TLS on: the cache sends its misses to the region's own name "
                "(<region key>.<hostname>), the name on the gateway's certificate; set hostname (or tls.mode none "
                "on a local region)"
            )


class GatewaySpec(Section):
    """The per-region API gateway: auth, per-tenant limits, TLS, timeouts and the optional fallback."""

    hostname: str | None = Field(
        default=None,
        pattern=DNS_NAME,
        description="Public name clients use (each region also answers on `<region key>.<hostname>`).",
    )
    tls: TlsSpec = Field(default_factory=TlsSpec, description="Where the HTTPS certificate comes from.")
    allow_anonymous: bool = Field(default=False, description="Serve without authentication (limits per client IP).")
    tenants: list[TenantSpec] = Field(
        default_factory=list[TenantSpec],
        description="API clients, each with its key (or the JWT's tenant claim) and optional limits of its own.",
    )
    default_limits: RateLimits = Field(
        default_factory=lambda: RateLimits(requests_per_minute=60, tokens_per_minute=60_000),
        description="Limits of every tenant without its own (and of each client IP when anonymous).",
    )
    jwt: JwtSpec | None = Field(
        default=None,
        description="Authenticate JWTs from one issuer instead of API keys (tenants then carry no api_key_secret).",
    )
    fallback: FallbackSpec | None = Field(
        default=None,
        description="A hosted API as a lower-priority backend for the listed models when the region's own servers "
        "fail.",
    )
    priority: PrioritySpec | None = Field(
        default=None, description="Hybrid routing by x-llmfleet-priority; needs `fallback` (the hosted provider)."
    )
    cascade: CascadeSpec | None = Field(
        default=None,
        description="The cheap-then-strong cascade on vLLM's semantic router (docs/patterns.md); off when absent.",
    )
    response_cache: ResponseCacheSpec | None = Field(
        default=None,
        description="Cache the listed models' responses (LiteLLM's proxy cache, docs/patterns.md); off when absent.",
    )
    request_timeout_s: int = Field(
        default=600, ge=30, le=3600, description="Longest request, streamed or not, before the gateway gives up."
    )
    replicas: int = Field(default=2, ge=1, le=50, description="Envoy proxy replicas per region.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [t.name for t in self.tenants]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"tenants: names must be unique, repeated: {repeated}")
        if self.allow_anonymous and (self.tenants or self.jwt):
            raise ValueError(
                "allow_anonymous: true turns authentication off, so `tenants` and `jwt` would be ignored; "
                "remove them or set allow_anonymous: false"
            )
        for i, tenant in enumerate(self.tenants):
            if self.jwt is None and tenant.api_key_secret is None:
                raise ValueError(
                    f"tenants[{i}].api_key_secret: required (tenant {tenant.name!r} needs an API key secret, "
                    "or configure `jwt` to identify tenants by a token claim)"
                )
            if self.jwt is not None and tenant.api_key_secret is not None:
                raise ValueError(
                    f"tenants[{i}].api_key_secret: not used with `jwt` (the gateway authenticates one way: "
                    "remove the key or the jwt section)"
                )
        self._consistent_tls()
        return self

    def _consistent_tls(self) -> None:
        tls = self.tls
        if tls.mode != "cert-manager":
            for name in ("cluster_issuer", "acme", "install_cert_manager"):
                if name in tls.model_fields_set:
                    raise ValueError(
                        f"tls.{name}: not used with tls.mode {tls.mode} (only with cert-manager); "
                        "remove it or set tls.mode: cert-manager"
                    )
            return
        if self.hostname is None:
            raise ValueError("hostname: required with tls.mode cert-manager (the name on the certificate)")
        if tls.issuer is None:
            raise ValueError(
                "tls.acme: required with tls.mode cert-manager (e.g. acme: {email: ops@example.com} creates a "
                "Let's Encrypt ClusterIssuer), unless tls.cluster_issuer names one that already exists"
            )

    def check_models(self, served: list[str]) -> None:
        """Cross-check against the stack's models (called by DeploymentSpec): a clear error for unknown names."""
        if self.response_cache is not None:
            self.response_cache.check_stack(self, served)
        if self.priority is not None:
            if self.fallback is None:
                raise ValueError(
                    "gateway.priority: needs gateway.fallback (the hosted provider and key the `quality` and "
                    "`balanced` routes use)"
                )
            unknown = sorted(set(self.priority.quality_models) - set(served))
            if unknown:
                raise ValueError(f"gateway.priority.quality_models: unknown served names {unknown}; defined: {served}")
        if self.fallback is None:
            return
        unknown = sorted(set(self.fallback.models) - set(served))
        if unknown:
            raise ValueError(f"gateway.fallback.models: unknown served names {unknown}; defined: {served}")

    def check_clouds(self, clouds: list[str]) -> None:
        """Cross-check against the stack's regions (called by DeploymentSpec): plain HTTP stays on laptops."""
        remote = sorted({c for c in clouds if c != "local"})
        if self.tls.mode == "none" and remote:
            raise ValueError(
                f"gateway.tls.mode: none (plain HTTP) is for local regions only, the stack has {remote} regions; "
                "use mode secret or cert-manager"
            )

    def secret_refs(self) -> list[tuple[str, str]]:
        """(stack secret key, field path) of every secret the gateway needs, for `require_secret`."""
        refs = [
            (t.api_key_secret, f"gateway.tenants[{i}].api_key_secret")
            for i, t in enumerate(self.tenants)
            if t.api_key_secret is not None
        ]
        if self.fallback is not None:
            refs.append((self.fallback.api_key_secret, "gateway.fallback.api_key_secret"))
        return refs
