"""The render subsystem: run the program offline and check what it would create.

offline.py runs infra/__main__.py under Pulumi's mocks and records every resource (mock_outputs.py
invents what the clouds would answer); manifests.py turns recorded resources back into Kubernetes
objects and Helm releases; validate.py checks each object against its schema (kubernetes-validate for
core kinds, the CRDs vendored in crds/); chart_values.py checks Helm values against the pinned charts
(chart_values/); writer.py writes a run to disk as `llmfleet render` does. The command and the tests use
it; the program itself never imports it.
"""
