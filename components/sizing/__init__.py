"""Sizing: pure functions from (model, quantization, context, load, region) to a Plan. No Pulumi here."""
