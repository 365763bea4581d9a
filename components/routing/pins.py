"""The inferencepool chart's pin (moves into components/pins.yaml once that table lands)."""

INFERENCEPOOL_CHART = "oci://registry.k8s.io/gateway-api-inference-extension/charts/inferencepool"
INFERENCEPOOL_CHART_VERSION = "v1.5.0"
INFERENCE_CRDS_MANIFEST = (
    "https://github.com/kubernetes-sigs/gateway-api-inference-extension/releases/download/v1.5.0/manifests.yaml"
)
