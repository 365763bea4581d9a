"""`Gateway`: one region's API gateway in front of its InferenceServices.

Installs the controllers (install.py) and, for a cert-manager certificate, cert-manager and its ACME
ClusterIssuer (certificates.py), then the Gateway and model route (routes.py), auth
(auth.py), per-tenant budgets and the fallback's retry (limits.py, fallback.py) and the
NetworkPolicy that makes the gateway the only way in (isolation.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

import llmfleet.components.gateway.auth as auth
import llmfleet.components.gateway.cache_routes as cache_routes
import llmfleet.components.gateway.cascade as cascade
import llmfleet.components.gateway.certificates as certificates
import llmfleet.components.gateway.fallback as fallback
import llmfleet.components.gateway.health as health
import llmfleet.components.gateway.limits as limits
import llmfleet.components.gateway.priority as priority
import llmfleet.components.gateway.routes as routes
import llmfleet.components.gateway.shadow as shadow
from llmfleet.components.gateway.cache_deploy import LITELLM_PORT, CacheTarget, cache_credentials_spec, deploy_cache
from llmfleet.components.gateway.install import ENVOY_GATEWAY_NAMESPACE, install_controllers
from llmfleet.components.gateway.isolation import inference_egress_policy, inference_ingress_policy, router_policy
from llmfleet.components.gateway.prober_deploy import (
    KEY_FILE_KEY,
    PROBER_PORT,
    PROBER_REPLICAS,
    ProberTarget,
    deploy_prober,
)
from llmfleet.components.gateway.routes import (
    AI_GATEWAY_API,
    ENVOY_GATEWAY_API,
    GATEWAY_API,
    HTTP_PORT,
    HTTPS_PORT,
    MAX_RULES_PER_ROUTE,
    Names,
)
from llmfleet.components.gateway.types import (
    CACHE_CLIENT,
    INFERENCE_POOL_GROUP,
    INFERENCE_POOL_KIND,
    AcmeIssuer,
    Cascade,
    Fallback,
    JwtAuth,
    ModelBackend,
    PriorityRouting,
    RateLimit,
    ResponseCache,
    Tenant,
    Tls,
)
from llmfleet.components.helm import pinned_release


@dataclass
class GatewaySettings:
    """What a gateway enforces, as the stack states it: who may call, how much, TLS, names, fallback.

    `RegionalFleetArgs.gateway` takes these; the fleet adds what only it knows (namespace, the services,
    the engine key) and builds the `GatewayArgs` once."""

    tenants: Sequence[Tenant] = ()
    """API-key tenants (or JWT tenants with their own limits)."""
    default_limits: RateLimit = field(
        default_factory=lambda: RateLimit(requests_per_minute=60, tokens_per_minute=60_000)
    )
    """Limits of every tenant without its own (per client IP when anonymous)."""
    jwt: JwtAuth | None = None
    """Authenticate with JWTs from this issuer instead of API keys."""
    allow_anonymous: bool = False
    """No authentication at all (only when the stack says so)."""
    fallback: Fallback | None = None
    """Hosted API used at lower priority when the region's backends fail."""
    priority: PriorityRouting | None = None
    """Hybrid routing by `x-llmfleet-priority` (needs `fallback`: its provider serves the hosted models)."""
    cascade: Cascade | None = None
    """The cheap-then-strong cascade: vLLM's semantic router chooses the model of requests naming its auto model."""
    response_cache: ResponseCache | None = None
    """LiteLLM's response cache in front of some models (cache_routes.py, cache_deploy.py); API-key gateways only."""
    tls: Tls = field(default_factory=Tls)
    """The HTTPS listener's certificate Secret (and its cert-manager issuer, if any: installed and created
    here unless Tls says they exist)."""
    hostname: str | None = None
    """Public name clients use (all regions)."""
    region_hostname: str | None = None
    """This region's own name (health checks and the global load balancer target it)."""
    request_timeout_s: int = 600
    """Longest request, streamed or not."""
    replicas: int = 2
    """Envoy proxy replicas."""
    health_path: str | None = None
    """GET path answered without credentials, for DNS health checkers (they send no headers): 200 while a one-token
    completion of every model through this gateway succeeds (the health prober; JWT and closed gateways: while
    any model's engine answers its own /health); None: no unauthenticated path at all."""
    metrics_namespace: str | None = "monitoring"
    """Namespace of the Prometheus allowed to scrape the inference pods (None: no scrape is admitted). A
    RegionalFleet with its own monitoring uses that monitoring's namespace."""
    install_controllers: bool = True
    """Install Envoy Gateway, the AI Gateway and Redis (False when the cluster already runs them)."""
    envoy_gateway_values: Mapping[str, Any] | None = None
    """Escape hatch: deep-merged into the Envoy Gateway chart values."""


@dataclass(kw_only=True)
class GatewayArgs(GatewaySettings):
    """A gateway's settings and what it fronts: the namespace, the models' services, the engines' key."""

    namespace: pulumi.Input[str]
    """Namespace of the InferenceServices; the Gateway, route, policies and key Secrets go here too.

    Pass the Namespace resource's name Output so every object waits for the namespace to exist."""
    models: Sequence[ModelBackend]
    """The region's served models and their ClusterIP Services."""
    inference_pod_selector: Mapping[str, str] | None = None
    """Labels of the inference pods; given, NetworkPolicies admit only the gateway (and Prometheus) to them and
    let them reach only DNS and public HTTPS (the weights download)."""
    engine_key_secret: pulumi.Input[str] | None = None
    """Name of a Secret in `namespace` whose `apiKey` the engines require on their API: the AI Gateway adds it
    to every request it sends them (a BackendSecurityPolicy), so only the gateway can call them. None: the
    engines take requests without a key (the NetworkPolicy is then the only guard). In shadow mode (a canary with
    `shadow`) the Secret's `credential` must hold `Bearer <key>`: the mirrored copies carry it (shadow.py)."""

    @classmethod
    def of(
        cls,
        settings: GatewaySettings,
        *,
        namespace: pulumi.Input[str],
        models: Sequence[ModelBackend],
        inference_pod_selector: Mapping[str, str] | None,
        engine_key_secret: pulumi.Input[str] | None,
        metrics_namespace: str | None,
    ) -> GatewayArgs:
        """`settings` (each field as is: tenants keep their secret Outputs) with what the gateway fronts."""
        given: dict[str, Any] = {f.name: getattr(settings, f.name) for f in fields(GatewaySettings)}
        given["metrics_namespace"] = metrics_namespace
        return cls(
            **given,
            namespace=namespace,
            models=models,
            inference_pod_selector=inference_pod_selector,
            engine_key_secret=engine_key_secret,
        )


class Gateway(pulumi.ComponentResource):
    endpoint: pulumi.Output[str]
    """URL clients (and the global load balancer) use for this region (https unless TLS is off)."""
    envoy_service: str
    """Name of the Envoy LoadBalancer Service (in ENVOY_GATEWAY_NAMESPACE): its address is the region's entry."""
    envoy_namespace: str
    route_name: str
    """The AIGatewayRoute (and generated HTTPRoute) name."""
    health_path: str | None
    """Path that answers 200 without credentials while the region serves (None: none)."""
    cached_models: list[str]
    """The served names behind this region's response cache (empty: none runs here)."""

    def __init__(self, name: str, args: GatewayArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmfleet:gateway:Gateway", name, None, opts)
        self._args = args
        self._names = Names(name)
        self._mode = auth.auth_mode(args.tenants, args.jwt, args.allow_anonymous)
        ready: list[pulumi.Resource] = (
            install_controllers(
                name, self, args.envoy_gateway_values, inference_pools=any(m.pool for m in args.models)
            ).ready
            if args.install_controllers
            else []
        )
        if args.tls.cluster_issuer and args.tls.install_cert_manager:
            ready.append(certificates.install_cert_manager(name, self, after=ready))
        self._ready = ready
        self._after = pulumi.ResourceOptions(parent=self, depends_on=ready)
        hostnames = routes.listener_hostnames(args.hostname, args.region_hostname)
        self._listeners = routes.serving_listeners(args.tls, hostnames)
        self._health_key = self._prober_key() if args.health_path is not None else None
        self._cached = self._cached_models()
        self._cache_key = self._cache_client_key() if self._cached else None

        self._routes(hostnames)
        if args.tls.secret_name:
            self._https_redirect()
        if args.tls.cluster_issuer and args.tls.acme:
            self._cluster_issuer(args.tls.cluster_issuer, args.tls.acme)
        self._auth()
        self._traffic_policy()
        if args.fallback is not None:
            self._fallback(args.fallback)
        if args.cascade is not None:
            self._cascade(args.cascade)
        if args.health_path is not None:
            self._health(args.health_path)
        if self._cache_key is not None:
            self._response_cache()
        if args.engine_key_secret is not None:
            self._engine_key(args.engine_key_secret)
        if args.inference_pod_selector is not None:
            ports, selector = [m.port for m in args.models], args.inference_pod_selector
            inference_ingress_policy(
                name, self._names, args.namespace, selector, ports, self._after, args.metrics_namespace
            )
            inference_egress_policy(name, self._names, args.namespace, selector, self._after)

        self.envoy_service = self._names.envoy_service
        self.envoy_namespace = ENVOY_GATEWAY_NAMESPACE
        self.route_name = self._names.route
        self.health_path = args.health_path
        self.cached_models = list(self._cached)
        host = args.region_hostname or args.hostname
        in_cluster = f"{self.envoy_service}.{ENVOY_GATEWAY_NAMESPACE}.svc.cluster.local"
        self.endpoint = pulumi.Output.from_input(f"{args.tls.scheme}://{host or in_cluster}")
        self.register_outputs({"endpoint": self.endpoint, "envoy_service": self.envoy_service})

    def _custom(
        self, role: str, kind: str, api_version: str, name: str, spec: Any, annotations: Mapping[str, str] | None = None
    ) -> k8s.apiextensions.CustomResource:
        namespaced = kind not in ("GatewayClass", "ClusterIssuer")
        return k8s.apiextensions.CustomResource(
            f"{self._names.base}-{role}",
            api_version=api_version,
            kind=kind,
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=name,
                namespace=self._args.namespace if namespaced else None,
                annotations=dict(annotations) if annotations else None,
            ),
            spec=spec,
            opts=self._after,
        )

    def _routes(self, hostnames: list[str | None]) -> None:
        args, names = self._args, self._names
        self._custom("class", "GatewayClass", GATEWAY_API, names.gateway, routes.gateway_class_spec())
        proxy = routes.envoy_proxy_spec(names, args.replicas)
        if args.cascade is not None:
            proxy["filterOrder"] = cascade.filter_order()
        self._custom("proxy", "EnvoyProxy", ENVOY_GATEWAY_API, names.gateway, proxy)
        self._custom(
            "gateway",
            "Gateway",
            GATEWAY_API,
            names.gateway,
            routes.gateway_spec(names, args.tls, hostnames),
            annotations=routes.gateway_annotations(args.tls),
        )
        self._custom(
            "client-policy",
            "ClientTrafficPolicy",
            ENVOY_GATEWAY_API,
            names.gateway,
            routes.client_traffic_policy_spec(names),
        )
        for model in args.models:
            # The model's own, its GPU mix parts' and its canary revision's (or the canary's parts').
            for suffix, service_name, port in routes.model_backends(model):
                backend, role = names.backend(model.model, suffix), routes.join(model.model, suffix)
                spec = routes.backend_spec(service_name, args.namespace, port)
                self._custom(f"{role}-backend", "Backend", ENVOY_GATEWAY_API, backend, spec)
                spec = routes.ai_service_backend_spec(backend)
                self._custom(f"{role}-aibackend", "AIServiceBackend", AI_GATEWAY_API, backend, spec)
        fallback_models = args.fallback.models if args.fallback else None
        spec = routes.route_spec(names, self._listeners, args.models, args.request_timeout_s, fallback_models)
        if args.priority is not None:
            if args.fallback is None:
                raise ValueError("GatewayArgs.priority needs fallback: its provider serves the hosted models")
            pooled = sorted({m.model for m in args.models if m.pool} & set(args.priority.quality_models))
            if pooled:  # the quality rule would put the hosted model beside the pool: the CRD forbids it
                raise ValueError(f"models {pooled} are served through an InferencePool: not in priority.quality_models")
            spec["rules"] += priority.priority_rules(names, spec["rules"], args.priority.quality_models)
            priority.check_rule_count(len(spec["rules"]))
        if args.cascade is not None:
            self._check_cascade(args.cascade)
            spec["rules"].append(cascade.auto_rule(names, spec["rules"], args.cascade, args.request_timeout_s))
            if len(spec["rules"]) > MAX_RULES_PER_ROUTE:
                raise ValueError(
                    f"the model route would have {len(spec['rules'])} rules with the cascade's "
                    f"{args.cascade.auto_model!r} rule (the AIGatewayRoute CRD allows {MAX_RULES_PER_ROUTE}): "
                    "serve fewer models in the region or drop priority routing"
                )
        if self._cached:
            # After the priority and cascade rules, which copy the models' own backends: they bypass the cache.
            spec["rules"] = cache_routes.split_rules(names, spec["rules"], self._cached)
            cache_backend = cache_routes.backend_name(names)
            service = routes.backend_spec(cache_backend, args.namespace, LITELLM_PORT)
            self._custom("response-cache-backend", "Backend", ENVOY_GATEWAY_API, cache_backend, service)
            spec_ai = routes.ai_service_backend_spec(cache_backend)
            self._custom("response-cache-aibackend", "AIServiceBackend", AI_GATEWAY_API, cache_backend, spec_ai)
        self._custom("route", "AIGatewayRoute", AI_GATEWAY_API, names.route, spec)
        self._shadow(spec["rules"])

    def _shadow(self, model_rules: list[dict[str, Any]]) -> None:
        """While a canary is shadowed: the copies' route and credential, and the mirror policies (shadow.py)."""
        args, names = self._args, self._names
        shadows = [
            shadow.Shadow(m.model, m.canary.revision, m.canary.shadow)
            for m in args.models
            if m.canary is not None and m.canary.shadow
        ] + [shadow.Shadow(m.model, None, m.shadow) for m in args.models if m.shadow]
        if not shadows:
            return
        key = args.engine_key_secret
        if key is not None:  # the copies need the engines' key, which the client never had
            spec = shadow.credential_filter_spec(key)
            self._custom("shadow-credential", "HTTPRouteFilter", ENVOY_GATEWAY_API, shadow.filter_name(names), spec)
        spec = shadow.shadow_route_spec(names, self._listeners, shadows, credential=key is not None)
        self._custom("shadow-route", "HTTPRoute", GATEWAY_API, shadow.route_name(names), spec)
        listeners, tls = self._listeners, bool(args.tls.secret_name)
        spec = pulumi.Output.from_input(args.namespace).apply(
            lambda namespace: shadow.patch_policy_spec(
                namespace, names, listeners, tls, model_rules, shadows, credential=key is not None
            )
        )
        self._custom("shadow-mirror", "EnvoyPatchPolicy", ENVOY_GATEWAY_API, shadow.route_name(names), spec)

    def _https_redirect(self) -> None:
        spec = certificates.https_redirect_route_spec(self._names.gateway)
        self._custom("https-redirect", "HTTPRoute", GATEWAY_API, self._names.https_redirect, spec)

    def _cluster_issuer(self, issuer: str, acme: AcmeIssuer) -> None:
        spec = certificates.cluster_issuer_spec(acme, issuer, self._names.gateway, self._args.namespace)
        self._custom("cluster-issuer", "ClusterIssuer", certificates.CERT_MANAGER_API, issuer, spec)

    def _auth(self) -> None:
        spec = auth.security_policy_spec(self._names, self._listeners, self._mode, self._args.jwt)
        if self._mode is auth.AuthMode.API_KEYS:
            k8s.core.v1.Secret(
                f"{self._names.base}-api-keys",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=self._names.api_keys, namespace=self._args.namespace),
                type="Opaque",
                string_data=auth.api_key_data(self._args.tenants, self._internal_keys()),
                opts=self._after,
            )
        if spec is not None:
            self._custom("security-policy", "SecurityPolicy", ENVOY_GATEWAY_API, self._names.gateway, spec)

    def _traffic_policy(self) -> None:
        """One BackendTrafficPolicy on the model route: budgets, and the fallback's retries when enabled.

        One policy, because a route-level policy replaces rather than merges with another on the same target.
        """
        spec: dict[str, Any] = {"targetRefs": [routes.ref("HTTPRoute", self._names.route)]}
        exempt = [client for client, _ in self._internal_clients()]
        rules = limits.rate_limit_rules(self._mode, self._args.tenants, self._args.default_limits, exempt)
        if rules:
            spec["rateLimit"] = {"global": {"rules": rules}}
        if self._args.fallback is not None:
            spec.update(fallback.retry_policy())
        if self._args.cascade is not None:
            spec["requestBuffer"] = cascade.request_buffer()
        if len(spec) > 1:
            self._custom("traffic-policy", "BackendTrafficPolicy", ENVOY_GATEWAY_API, self._names.route, spec)

    def _fallback(self, hosted: Fallback) -> None:
        names = self._names
        k8s.core.v1.Secret(
            f"{names.base}-fallback-key",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=names.fallback, namespace=self._args.namespace),
            type="Opaque",
            string_data=fallback.api_key_data(hosted.api_key),
            opts=self._after,
        )
        self._custom(
            "fallback-backend", "Backend", ENVOY_GATEWAY_API, names.fallback, fallback.backend_spec(hosted.provider)
        )
        spec = fallback.ai_service_backend_spec(names)
        self._custom("fallback-aibackend", "AIServiceBackend", AI_GATEWAY_API, names.fallback, spec)
        spec = fallback.backend_security_policy_spec(names)
        self._custom("fallback-credentials", "BackendSecurityPolicy", AI_GATEWAY_API, names.fallback, spec)

    def _check_cascade(self, settings: Cascade) -> None:
        served = [m.model for m in self._args.models]
        for role, model in (("cheap_model", settings.cheap_model), ("strong_model", settings.strong_model)):
            if model not in served:
                raise ValueError(f"cascade.{role}: {model!r} is not served in this region (served: {served})")
        if settings.cheap_model == settings.strong_model:
            raise ValueError("cascade: cheap_model and strong_model are the same model")
        if settings.auto_model in served:
            raise ValueError(f"cascade.auto_model: {settings.auto_model!r} is a served model's name")

    def _cascade(self, settings: Cascade) -> None:
        """The router (its pinned chart, in the gateway's namespace) and its ext_proc on the model route."""
        names = self._names
        router = pinned_release(
            f"{names.base}-cascade-router",
            chart=cascade.ROUTER_CHART.name,
            version=cascade.ROUTER_CHART.version,
            namespace=self._args.namespace,
            values=cascade.router_values(names, settings),
            release_name=cascade.router_release_name(names),
            # The router downloads its classifier models before it listens (the chart allows 60 minutes).
            timeout_s=cascade.ROUTER_INSTALL_TIMEOUT_S,
            opts=self._after,
        )
        # The chart renders no NetworkPolicy: only this Gateway's Envoy pods reach the router (Prometheus its metrics).
        router_policy(
            names.base,
            names,
            self._args.namespace,
            cascade.router_pod_labels(names),
            cascade.ROUTER_GRPC_PORT,
            cascade.ROUTER_METRICS_PORT,
            self._after,
            self._args.metrics_namespace,
        )
        spec = cascade.extension_policy_spec(names, settings)
        k8s.apiextensions.CustomResource(
            f"{names.base}-cascade",
            api_version=ENVOY_GATEWAY_API,
            kind="EnvoyExtensionPolicy",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=cascade.router_release_name(names), namespace=self._args.namespace
            ),
            spec=spec,
            # After the router is up: with fail_open false a policy ahead of it would fail every request.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*self._ready, router]),
        )

    def _engine_key(self, secret: pulumi.Input[str]) -> None:
        """Every model's AIServiceBackends and InferencePools (canaries too) get the engines' key from one policy."""
        backends = [
            self._names.backend(m.model, suffix) for m in self._args.models for suffix, *_ in routes.model_backends(m)
        ]
        # Requests routed through an InferencePool skip the AIServiceBackends: the policy targets the pools too.
        pools = [m.pool for m in self._args.models if m.pool] + [
            m.canary.pool for m in self._args.models if m.canary and m.canary.pool
        ]
        spec = {
            "targetRefs": [routes.ref("AIServiceBackend", b, group="aigateway.envoyproxy.io") for b in backends]
            + [routes.ref(INFERENCE_POOL_KIND, p, group=INFERENCE_POOL_GROUP) for p in pools],
            "type": "APIKey",
            "apiKey": {"secretRef": {"name": secret, "kind": "Secret", "group": ""}},
        }
        self._custom("engine-credentials", "BackendSecurityPolicy", AI_GATEWAY_API, self._names.engine_key, spec)

    def _internal_clients(self) -> list[tuple[str, random.RandomPassword]]:
        """The gateway's own API-key clients, held to no budget: the health prober, the response cache."""
        found = [(health.HEALTH_CLIENT, self._health_key)] if self._health_key is not None else []
        return found + ([(CACHE_CLIENT, self._cache_key)] if self._cache_key is not None else [])

    def _internal_keys(self) -> dict[str, pulumi.Input[str]] | None:
        return {client: key.result for client, key in self._internal_clients()} or None

    def _cached_models(self) -> list[str]:
        """The response cache's models this region serves (a stack's cache lists models of every region)."""
        cache = self._args.response_cache
        if cache is None:
            return []
        served = {m.model for m in self._args.models}
        return [m for m in cache.models if m in served]

    def _cache_client_key(self) -> random.RandomPassword:
        """The response cache's own API key: its misses come back through this gateway as client CACHE_CLIENT."""
        if self._mode is not auth.AuthMode.API_KEYS:
            raise ValueError(
                f"response_cache needs a gateway that authenticates by API key (this one: {self._mode.value}): the "
                "cache keeps tenants apart by the key's client id and sends its misses back with a key of its own"
            )
        if any(t.name == CACHE_CLIENT for t in self._args.tenants):
            raise ValueError(f"tenant name {CACHE_CLIENT!r} is the response cache's: rename the tenant")
        return random.RandomPassword(f"{self._names.base}-cache-password", length=48, special=False, opts=self._after)

    def _response_cache(self) -> None:
        """LiteLLM and its Redis (cache_deploy.py), calling this gateway back the way a client in the cluster would."""
        args, cache, key = self._args, self._args.response_cache, self._cache_key
        assert cache is not None and key is not None
        host = (
            args.region_hostname
            or args.hostname
            or f"{self._names.envoy_service}.{ENVOY_GATEWAY_NAMESPACE}.svc.cluster.local"
        )
        target = CacheTarget(f"{args.tls.scheme}://{host}", self._cached, args.request_timeout_s)
        deploy_cache(
            self._names.base,
            self._names,
            args.namespace,
            cache,
            target,
            key.result,
            self._after,
            args.metrics_namespace,
        )
        spec = cache_credentials_spec(self._names)
        backend = cache_routes.backend_name(self._names)
        self._custom("response-cache-credentials", "BackendSecurityPolicy", AI_GATEWAY_API, backend, spec)

    def _prober_key(self) -> random.RandomPassword | None:
        """The health prober's own API key, on gateways that authenticate by API key (None otherwise)."""
        if self._mode is not auth.AuthMode.API_KEYS:
            return None
        if any(t.name == health.HEALTH_CLIENT for t in self._args.tenants):
            raise ValueError(f"tenant name {health.HEALTH_CLIENT!r} is the health prober's: rename the tenant")
        return random.RandomPassword(f"{self._names.base}-health-password", length=48, special=False, opts=self._after)

    def _health(self, path: str) -> None:
        names, models = self._names, self._args.models
        if self._mode in (auth.AuthMode.API_KEYS, auth.AuthMode.ANONYMOUS):
            deploy_prober(
                self._names.base, names, self._args.namespace, self._prober_target(), self._prober_secret(), self._after
            )
            spec = health.route_spec(names, self._listeners, path, (f"{names.health}-prober", PROBER_PORT))
            self._custom("health-route", "HTTPRoute", GATEWAY_API, names.health, spec)
            self._open_health()
            spec = health.traffic_policy_spec(names, PROBER_REPLICAS, prober=True)
            self._custom("health-traffic-policy", "BackendTrafficPolicy", ENVOY_GATEWAY_API, names.health, spec)
            return
        spec = health.backend_spec(models, self._args.namespace)
        self._custom("health-backend", "Backend", ENVOY_GATEWAY_API, names.health, spec)
        spec = health.route_spec(names, self._listeners, path)
        self._custom("health-route", "HTTPRoute", GATEWAY_API, names.health, spec)
        self._open_health()
        spec = health.traffic_policy_spec(names, len(health.backend_spec(models, self._args.namespace)["endpoints"]))
        self._custom("health-traffic-policy", "BackendTrafficPolicy", ENVOY_GATEWAY_API, names.health, spec)

    def _open_health(self) -> None:
        if self._mode is not auth.AuthMode.ANONYMOUS:
            spec = health.security_policy_spec(self._names)
            self._custom("health-security-policy", "SecurityPolicy", ENVOY_GATEWAY_API, self._names.health, spec)

    def _prober_target(self) -> ProberTarget:
        """The Envoy proxy's in-cluster Service, with the name its serving listener answers to."""
        tls = self._args.tls
        port = HTTPS_PORT if tls.secret_name else HTTP_PORT
        address = f"{self._names.envoy_service}.{ENVOY_GATEWAY_NAMESPACE}.svc.cluster.local"
        return ProberTarget(
            url=f"{tls.scheme}://{address}:{port}",
            host=self._args.hostname or self._args.region_hostname,
            models=[m.model for m in self._args.models],
        )

    def _prober_secret(self) -> k8s.core.v1.Secret | None:
        if self._health_key is None:
            return None
        return k8s.core.v1.Secret(
            f"{self._names.base}-health-key",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{self._names.health}-key", namespace=self._args.namespace),
            type="Opaque",
            string_data={KEY_FILE_KEY: pulumi.Output.secret(self._health_key.result)},
            opts=self._after,
        )
