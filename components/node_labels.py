"""The labels and taint llmfleet puts on GPU nodes: what pods, exporters and the policy pack select them by.

Plain values with no Pulumi import, so the policy pack and other readers share them with the node pools
that set them.
"""

GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_TAINT_VALUE = "present"  # the value GKE itself uses for this taint
MODEL_LABEL = "llmfleet.dev/model"
"""The model a node pool serves: ties a model's pools (its primary and fallback pools) together."""
ACCELERATOR_LABEL = "llmfleet.dev/accelerator"
"""The GPU of the node (`cpu` without one). GKE: each pool's own GPU. EKS: the plan's GPU, although one node
group takes every fallback type and a fallback may bring another GPU (`node.kubernetes.io/instance-type`
tells the node's real type). Pods select their pool by MODEL_LABEL alone, so a fallback always matches."""
CPU_ACCELERATOR = "cpu"
