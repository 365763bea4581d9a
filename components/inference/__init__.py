"""Serving one model in one cluster: engines (vLLM, llama.cpp), the InferenceService component, autoscaling."""

from llmfleet.components.inference.autoscaling import waiting_requests_threshold
from llmfleet.components.inference.service import PORT, InferenceService, InferenceServiceArgs, ModelCache

__all__ = ["PORT", "InferenceService", "InferenceServiceArgs", "ModelCache", "waiting_requests_threshold"]
