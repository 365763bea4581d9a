"""Shadow mode: a share of a model's real requests is copied to its new revision; the copies' answers are dropped.

The AIGatewayRoute (AI Gateway v1.1.0) has no filters, so no Gateway API `RequestMirror` can be put on the
model route, and the HTTPRoute the AI Gateway generates from it is rewritten on every reconcile. Envoy's
own `request_mirror_policies` are added to the generated xDS routes instead, with an EnvoyPatchPolicy
(Envoy Gateway v1.8.1, `extensionApis.enableEnvoyPatchPolicy`, which install.py turns on):

- the mirror target is a cluster Envoy Gateway builds from a plain HTTPRoute of ours (`<gateway>-shadow`),
  one rule per shadowed model whose only backendRef is the new revision's Backend with a backend-level
  HTTPRouteFilter `credentialInjection`: Envoy Gateway then gives that backend its own cluster,
  `httproute/<ns>/<gateway>-shadow/rule/<i>/backend/0`, with Envoy's credential injector as an *upstream*
  filter adding the engines' key (`Authorization: Bearer <key>`), which the copies need because the
  engines refuse requests without it and the client's own credential was removed by the gateway's auth;
- that cluster is not the AI Gateway's: its extension server only modifies clusters of AIGatewayRoutes
  (it looks the route up by the name in the cluster name, and `<gateway>-shadow` is an HTTPRoute). So the
  copy does not run the AI Gateway's upstream ext_proc, which in v1.1.0 would register the copy as the
  original request's upstream leg (`rp.upstreamFilter`, `upstreamFilterCount` in
  internal/extproc/processor_impl.go: the original would be taken for a retry and its response could be
  processed by the copy's processor);
- the HTTPRoute's rules match only `x-llmfleet-shadow`, a header the ClientTrafficPolicy removes from every
  client request before routing (routes.py), so nothing reaches that route except the mirrored copies,
  which Envoy sends to its cluster directly;
- the EnvoyPatchPolicy adds, to every xDS route of the model's rules that carry real traffic (the model's
  weighted rule and its priority rules, not the rules pinned to a revision), one mirror policy with
  `runtime_fraction` = the share. Route names are Envoy Gateway's `httproute/<ns>/<route>/rule/<i>/match/<j>/
  <host>` (internal/gatewayapi/helpers.go irRouteName, host appended in route.go), selected with a JSONPath
  regular expression on the rule's prefix; route configurations are named after the listener
  (`<ns>/<gateway>/<listener>`; plain-HTTP listeners on one port share the first one's). Envoy Gateway
  applies the patches before the AI Gateway's post-translate hook (internal/xds/translator/translator.go).

Budgets: a copy is sent by Envoy's router, after every HTTP filter of the listener ran for the original
(auth, the rate limit filter, the AI Gateway's ext_proc), and its response goes back to the router's shadow
writer, which discards it: no filter of the listener sees the copy or its answer, so the rate limit filter
charges each tenant the original's tokens once, from the metadata the AI Gateway's ext_proc sets on the
original's response.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llmfleet.components.gateway.cache_routes import is_cache_rule
from llmfleet.components.gateway.routes import Names, listener_refs, ref
from llmfleet.components.gateway.types import MODEL_HEADER, REVISION_HEADER, SHADOW_HEADER

CREDENTIAL_KEY = "credential"
"""Key of the engines'-key Secret holding `Bearer <key>`: where Envoy Gateway's credential injection reads
the value it injects (egv1a1.InjectedCredentialKey)."""
ROUTE_CONFIGURATION = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class Shadow:
    """One model whose new revision receives copies of `share` percent of its requests."""

    model: str
    revision: str | None
    """The new revision's Backend suffix: the canary's id, or None when the new revision is the model's first."""
    share: int

    def __post_init__(self) -> None:
        if not 1 <= self.share <= 100:
            raise ValueError(f"model {self.model}: shadow share {self.share} is not a percentage (1-100)")


def route_name(names: Names) -> str:
    return f"{names.base}-shadow"


def filter_name(names: Names) -> str:
    return f"{names.base}-shadow-credential"


def credential_filter_spec(secret_name: Any) -> dict[str, Any]:
    """Backend-level credential injection: the engines' key replaces whatever Authorization a copy carries."""
    return {
        "credentialInjection": {
            "header": "Authorization",
            "overwrite": True,
            "credential": {"valueRef": {"group": "", "kind": "Secret", "name": secret_name}},
        }
    }


def shadow_route_spec(
    names: Names, listeners: Sequence[str], shadows: Sequence[Shadow], credential: bool = True
) -> dict[str, Any]:
    """One unreachable rule per shadowed model, only there so Envoy Gateway builds the copies' cluster; with
    `credential` (engines that require a key), the backend carries the credential filter."""
    extension = ref("HTTPRouteFilter", filter_name(names), group="gateway.envoyproxy.io")
    inject = {"type": "ExtensionRef", "extensionRef": extension}
    return {
        "parentRefs": listener_refs(names, listeners),
        "rules": [
            {
                "name": f"{s.model}-shadow",
                "matches": [{"headers": [{"type": "Exact", "name": SHADOW_HEADER, "value": s.model}]}],
                "backendRefs": [
                    {
                        **ref("Backend", names.backend(s.model, s.revision), group="gateway.envoyproxy.io"),
                        **({"filters": [inject]} if credential else {}),
                    }
                ],
            }
            for s in shadows
        ],
    }


def mirror_cluster(namespace: str, names: Names, index: int, credential: bool = True) -> str:
    """Envoy Gateway's cluster of the shadow route's rule `index`: a backend with filters gets its own
    (`.../backend/0`, internal/ir/xds.go NeedsClusterPerSetting), otherwise the rule's."""
    rule = f"httproute/{namespace}/{route_name(names)}/rule/{index}"
    return f"{rule}/backend/0" if credential else rule


def mirrored_rules(rules: Sequence[Mapping[str, Any]], model: str, names: Names | None = None) -> list[int]:
    """Indices of the model route's rules that carry the model's real traffic: they match its model header and
    are not pinned to a revision (the AI Gateway keeps the rules' order in the HTTPRoute it generates). With
    `names`, not the response cache's rule either: its misses come back by the model's uncached rule, which is
    mirrored, so a copy is made of each request that reaches a model, once."""
    found: list[int] = []
    for index, rule in enumerate(rules):
        if names is not None and is_cache_rule(names, rule):
            continue
        for match in rule.get("matches", []):
            headers = {h["name"]: h["value"] for h in match.get("headers", [])}
            if headers.get(MODEL_HEADER) == model and REVISION_HEADER not in headers:
                found.append(index)
                break
    return found


def route_configurations(listeners: Sequence[str], tls: bool) -> list[str]:
    """Listeners whose xDS route configuration holds the model routes: each HTTPS listener has its own (named
    after it); plain-HTTP listeners on one port share the first one's (Envoy Gateway's legacy xDS names)."""
    return list(listeners) if tls else list(listeners[:1])


def patch_policy_spec(
    namespace: str,
    names: Names,
    listeners: Sequence[str],
    tls: bool,
    model_rules: Sequence[Mapping[str, Any]],
    shadows: Sequence[Shadow],
    credential: bool = True,
) -> dict[str, Any]:
    """The EnvoyPatchPolicy adding the mirror policies to the AI Gateway's generated routes."""
    for name in (namespace, names.route, route_name(names)):
        if not _NAME.match(name):  # they go into a regular expression unescaped
            raise ValueError(f"shadow mode needs DNS-label names, got {name!r}")
    patches: list[dict[str, Any]] = []
    for listener in route_configurations(listeners, tls):
        for index, shadow in enumerate(shadows):
            rules = mirrored_rules(model_rules, shadow.model, names)
            if not rules:
                raise ValueError(f"shadow model {shadow.model} has no rule in the model route")
            mirror = {
                "cluster": mirror_cluster(namespace, names, index, credential),
                "runtime_fraction": {"default_value": {"numerator": shadow.share, "denominator": "HUNDRED"}},
            }
            for rule in rules:
                prefix = f"^httproute/{namespace}/{names.route}/rule/{rule}/match/"
                patches.append(
                    {
                        "type": ROUTE_CONFIGURATION,
                        "name": f"{namespace}/{names.gateway}/{listener}",
                        "operation": {
                            "op": "add",
                            "jsonPath": f"..routes[?(@.name =~ '{prefix}')]",
                            "path": "/route/request_mirror_policies",
                            "value": [mirror],
                        },
                    }
                )
    return {"targetRef": ref("Gateway", names.gateway), "type": "JSONPatch", "jsonPatches": patches}
