"""Gateway conformance: auth and rate limits behave as the stack says, checked one by one.

One user runs the checks in order, then the run ends; each becomes a check in the verdict:
- no API key -> 401; a wrong key -> 401 or 403; the valid key -> a successful completion. A wrong
  key passes with either refusal: Envoy Gateway's API-key auth answers 401 for a missing and for an
  unknown key alike (Envoy's api_key_auth filter docs: "invalid or not exists" -> 401, 403 only for a
  valid key whose client is not allowed; see docs/gateway.md), while other gateways and
  OpenAI-style servers answer 403. The check is `observed in [401, 403]` (op "in");
- with --llm-expect-rpm R: small requests sent back to back with the limit key get a 429 after at
  most R admitted (a gateway that never refuses, or refuses early, fails);
- with --llm-expect-tpm T: requests of --llm-output-tokens each, with the token-limit key, get a 429
  before more than T tokens plus one request's worth are admitted (gateways count a response's
  tokens after it, so the request that crosses the limit still passes).
Use a separate key per limit (--llm-limit-key-env, --llm-token-limit-key-env) so one limit's
window does not hide the other. Run it as a single process.

    LLM_API_KEY=... locust -f loadtests/suites/gateway.py --headless --host URL --llm-model NAME --llm-expect-rpm 60
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from locust import events
from locust.exception import StopUser

from llmfleet.loadtests import gate
from llmfleet.loadtests.prompts import ChatPrompt
from llmfleet.loadtests.samples import RequestSample
from llmfleet.loadtests.user import ChatUser
from llmfleet.values import Slo

COMPARE: dict[str, Callable[[float, Any], bool]] = {
    "==": operator.eq,
    "<=": operator.le,
    ">=": operator.ge,
    "in": lambda observed, accepted: observed in accepted,
}
"""Probe ops; "in" takes the list of accepted values as its threshold."""
WRONG_KEY_REFUSALS: list[float] = [401, 403]
"""A wrong key's accepted answers: Envoy Gateway says 401 (as for no key), others 403."""
LIMIT_PROBE_MARGIN = 5
"""Requests sent past the expected limit before concluding the gateway does not enforce it."""


@events.init_command_line_parser.add_listener
def _gateway_options(parser: Any, **_: Any) -> None:
    group = parser.add_argument_group("llmfleet gateway conformance")
    group.add_argument("--llm-wrong-key", default="llmfleet-conformance-wrong-key", help="A key the gateway refuses.")
    group.add_argument("--llm-expect-rpm", type=int, default=0, help="Requests/minute limit to probe (0: skip).")
    group.add_argument("--llm-expect-tpm", type=int, default=0, help="Tokens/minute limit to probe (0: skip).")
    group.add_argument("--llm-limit-key-env", default=None, help="Key for the request-limit probe (default: main).")
    group.add_argument("--llm-token-limit-key-env", default=None, help="Key for the token-limit probe.")
    parser.set_defaults(num_users=1)


@dataclass
class Probe:
    metric: str
    op: str
    threshold: gate.Threshold
    observed: float | None
    n: int

    def check(self) -> gate.Check:
        passed = self.observed is not None and COMPARE[self.op](self.observed, self.threshold)
        return gate.Check(
            metric=self.metric,
            stat="value",
            op=self.op,
            threshold=self.threshold,
            observed=self.observed,
            n=self.n,
            passed=passed,
        )


class GatewayConformanceUser(ChatUser):
    fixed_count = 1

    def on_start(self) -> None:
        super().on_start()
        self.probes: list[Probe] = []
        self.collector.evaluate = self._verdict

    def next_request(self) -> None:
        options = self.environment.parsed_options
        tiny = ChatPrompt([{"role": "user", "content": "ping"}], max_tokens=1)
        without_key = self.send_chat(tiny, headers={}, name="gateway.status_without_key", record=False)
        self.probes.append(Probe("gateway.status_without_key", "==", 401, without_key.status, 1))
        wrong_key_header = {"Authorization": f"Bearer {options.llm_wrong_key}"}
        wrong_key = self.send_chat(tiny, headers=wrong_key_header, name="gateway.status_with_wrong_key", record=False)
        self.probes.append(Probe("gateway.status_with_wrong_key", "in", WRONG_KEY_REFUSALS, wrong_key.status, 1))
        valid = self.send_chat(tiny, name="gateway.valid_key", record=False)
        self.probes.append(Probe("gateway.valid_key_ok", "==", 1, float(valid.ok), 1))
        if options.llm_expect_rpm > 0:
            self._probe_limit(
                "gateway.requests_admitted_before_429",
                options.llm_limit_key_env,
                tiny,
                options.llm_expect_rpm,
                per_request=1,
            )
        if options.llm_expect_tpm > 0:
            prompt = self.prompts.next()
            self._probe_limit(
                "gateway.tokens_admitted_before_429",
                options.llm_token_limit_key_env,
                prompt,
                options.llm_expect_tpm + prompt.max_tokens,
                per_request=prompt.max_tokens,
            )
        self.collector.end_run()
        raise StopUser()

    def _probe_limit(self, metric: str, key_env: str | None, prompt: ChatPrompt, limit: int, per_request: int) -> None:
        key = os.environ.get(key_env) if key_env else None
        headers = {"Authorization": f"Bearer {key}"} if key else self.auth_headers
        admitted = sent = 0
        while sent * per_request <= limit + LIMIT_PROBE_MARGIN * per_request:
            sample = self.send_chat(prompt, headers=headers, name=metric, record=False)
            sent += 1
            if sample.status == 429:
                break
            admitted += per_request
        # Never refused: `admitted` is then past the limit and the check fails. Refused at once: the
        # limit is not what the stack says (or the key is exhausted), which fails the second check.
        self.probes.append(Probe(metric, "<=", limit, admitted, sent))
        self.probes.append(Probe(f"{metric}.first_request_admitted", "==", 1, float(admitted > 0), 1))

    def _verdict(self, samples: Sequence[RequestSample], slo: Slo, run: gate.RunInfo) -> gate.Verdict:
        checks = [probe.check() for probe in self.probes]
        reasons = [] if checks else ["no conformance check ran"]
        return gate.Verdict(
            checks=checks,
            metrics={"gateway": {c.metric: c.observed for c in checks}},
            valid=bool(checks),
            reasons=reasons,
        )
