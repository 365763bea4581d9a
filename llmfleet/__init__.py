"""llmfleet: self-hosted LLM inference across regions and clouds, on Pulumi.

The repository keeps its layout (`components/`, `infra/`, `loadtests/`, `queueworker/` at the top);
this package gives them one installed name, `llmfleet.components`, `llmfleet.infra`, ..., through the
relative links beside this file. A user's own Pulumi project can then have packages of its own named
`components` or `infra` and still import ours (see examples/).
"""
