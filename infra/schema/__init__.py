"""The stack file's schema, one module per section of `llmfleet:deployment`.

`infra/config.py` composes these into `DeploymentSpec` and is the only reader of stack files.
Every model forbids unknown keys, so a misspelt field is an error that names its path.
"""
