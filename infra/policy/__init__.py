"""The llmfleet policy pack (`pulumi up --policy-pack infra/policy`): rules.py holds the rules as plain
functions, policies.py wraps them as pulumi_policy policies, __main__.py serves the pack."""
