"""The inferencepool chart's row of the pins table (components/pins.yaml), and the CRDs of that release."""

from llmfleet.components import pins

_ROW = pins.chart("inferencepool")
INFERENCEPOOL_CHART = _ROW.name
INFERENCEPOOL_CHART_VERSION = _ROW.version
INFERENCE_CRDS_MANIFEST = _ROW.source.url or ""
"""The release's manifests.yaml (InferencePool v1 and the x-k8s CRDs), applied before Envoy Gateway watches them."""
