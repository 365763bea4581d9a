"""Reusable Pulumi components for self-hosted LLM inference (import them into any Pulumi program)."""
