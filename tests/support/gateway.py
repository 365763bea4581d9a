"""One region's Gateway component rendered under the offline engine's recorder (RecordingMocks)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pulumi
import pytest

from llmfleet.components.gateway import (
    Fallback,
    FallbackProvider,
    Gateway,
    GatewayArgs,
    ModelBackend,
    RateLimit,
    Tenant,
    Tls,
)
from llmfleet.infra.config import ConfigError, parse_deployment
from llmfleet.infra.render.manifests import to_manifest
from llmfleet.infra.render.offline import RecordedResource, RecordingMocks

NAME = "aws-us-east-1-gateway"
NAMESPACE = "llmfleet"
MODELS = [ModelBackend("chat", "chat-vllm"), ModelBackend("code", "code-vllm")]
TENANTS = [
    Tenant("acme", api_key="acme-key-123", limits=RateLimit(600, 400_000)),
    # Plain keys: the component must make them secret whatever the caller passes.
    Tenant("beta", api_key="beta-key-456"),
]


def full_args(**changes: Any) -> GatewayArgs:
    args = GatewayArgs(
        namespace=NAMESPACE,
        models=MODELS,
        tenants=TENANTS,
        default_limits=RateLimit(requests_per_minute=60, tokens_per_minute=50_000),
        fallback=Fallback(FallbackProvider.OPENAI, "sk-fallback", {"chat": "gpt-4o-mini"}),
        hostname="api.example.com",
        region_hostname="aws-us-east-1.api.example.com",
        tls=Tls(secret_name="api-tls", cluster_issuer="letsencrypt"),
        inference_pod_selector={"app.kubernetes.io/part-of": "llmfleet"},
        health_path="/health",
    )
    return replace(args, **changes)


def manifest(resource: RecordedResource) -> dict[str, Any]:
    """The Kubernetes object a recorded resource would apply, secrets in clear (the tests read them)."""
    found = to_manifest(resource, redacted=False)
    assert found is not None, f"{resource.name}: {resource.type} is not a Kubernetes object"
    return found


@dataclass
class GatewayRender:
    """What one Gateway registered (the recorder `llmfleet render` uses), with lookups by kind and name."""

    mocks: RecordingMocks

    @property
    def resources(self) -> list[RecordedResource]:
        return self.mocks.resources

    def kind(self, kind: str) -> list[RecordedResource]:
        """Every Kubernetes object of `kind`."""
        return [r for r in self.resources if r.type.startswith("kubernetes:") and r.type.endswith(f":{kind}")]

    def by_kind(self, kind: str, health: bool = False) -> list[RecordedResource]:
        """Kubernetes objects of `kind`: those of the model traffic, or (health=True) of the health route."""
        return [r for r in self.kind(kind) if ("-health-" in r.name) == health]

    def one(self, kind: str, health: bool = False) -> RecordedResource:
        found = self.by_kind(kind, health)
        assert len(found) == 1, f"expected one {kind}, got {[r.name for r in found]}"
        return found[0]

    def named(self, name: str) -> RecordedResource:
        found = [r for r in self.resources if r.name == name]
        assert len(found) == 1, f"expected one resource {name}, got {[r.name for r in found]}"
        return found[0]

    def depends_on(self, name: str, other: str) -> bool:
        """Whether resource `name` waits for the resource named `other` (as registered with the engine)."""
        return any(urn.endswith(f"::{other}") for urn in self.named(name).dependencies)


def render(args: GatewayArgs) -> tuple[GatewayRender, dict[str, Any]]:
    """Register a Gateway named NAME from `args`; (what it registered, its outputs)."""
    recorded = GatewayRender(RecordingMocks().install(stack="test"))
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        gateway = Gateway(NAME, args)
        return gateway.endpoint.apply(lambda url: outputs.update(endpoint=url))

    program()
    return recorded, outputs


def stack(**gateway: Any) -> dict[str, Any]:
    """A deployment (two models, one AWS region) with the given `gateway:` section."""
    return {
        "models": [
            {"name": "chat", "model": "llama-3.1-8b", "load": {"concurrent_sequences": 8}},
            {"name": "code", "model": "llama-3.1-8b", "load": {"concurrent_sequences": 8}},
        ],
        "regions": [{"cloud": "aws", "region": "us-east-1", "role": "primary"}],
        "api_access_cidrs": ["203.0.113.0/24"],
        "gateway": gateway,
    }


def error_of(**gateway: Any) -> str:
    """The ConfigError a `gateway:` section is refused with (fails the test if it is accepted)."""
    with pytest.raises(ConfigError) as caught:
        parse_deployment(stack(**gateway), "test")
    return str(caught.value)
