"""`llmfleet rollout`: SLO-gated progressive rollouts (log, deployer protocol, engine, Automation API deployer)."""
