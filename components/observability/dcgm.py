"""dcgm-exporter: GPU metrics (utilisation, memory, XID errors) from every GPU node, scraped by Prometheus.

A DaemonSet that must run where the GPUs are: it tolerates the GPU taint the node pools set and
is pinned to GPU nodes by node affinity. Its chart creates its own ServiceMonitor; with
`honorLabels` the `namespace`/`pod` labels the exporter puts on each GPU (the workload using it)
win over the exporter pod's own, so GPU series can be joined with the inference pods.
"""

from __future__ import annotations

from typing import Any

from llmfleet.components import pins
from llmfleet.components.node_labels import ACCELERATOR_LABEL, CPU_ACCELERATOR, GPU_TAINT_KEY
from llmfleet.components.observability.stack import SCRAPE_INTERVAL

_PIN = pins.chart("dcgm-exporter")
CHART = _PIN.name
REPOSITORY = _PIN.repository
CHART_VERSION = _PIN.version
"""Pinned (components/pins.yaml) to 4.8.x deliberately: exporter 4.9 renames the default metrics and changes their units
(DCGM 4.7 field names; e.g. GPU memory in bytes instead of MiB) and the Helm values format, which
the rules and dashboards here do not follow (dcgm-exporter 4.9.0 release notes). Chart 4.8.1 ships
image 4.5.2-4.8.1."""
RELEASE = "dcgm-exporter"

GPU_NODE_TERMS: list[dict[str, Any]] = [
    # Node pools this project creates label their nodes with the accelerator ("cpu" for CPU pools).
    {
        "matchExpressions": [
            {"key": ACCELERATOR_LABEL, "operator": "Exists"},
            {"key": ACCELERATOR_LABEL, "operator": "NotIn", "values": [CPU_ACCELERATOR]},
        ]
    },
    # GKE labels every GPU node with its accelerator type.
    {"matchExpressions": [{"key": "cloud.google.com/gke-accelerator", "operator": "Exists"}]},
    # NVIDIA GPU feature discovery (GPU Operator) on a bring-your-own cluster.
    {"matchExpressions": [{"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}]},
]
"""Node affinity terms (ORed): a node labelled as a GPU node in any of these ways runs the exporter."""
GKE_DRIVER_DIR = "/home/kubernetes/bin/nvidia"
"""Where GKE installs the NVIDIA driver and libraries on its GPU nodes; the exporter needs them mounted."""


def dcgm_values(cloud: str) -> dict[str, Any]:
    values: dict[str, Any] = {
        "serviceMonitor": {"enabled": True, "interval": SCRAPE_INTERVAL, "honorLabels": True},
        "tolerations": [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": GPU_NODE_TERMS}}
        },
    }
    if cloud == "gcp":
        values["extraHostVolumes"] = [{"name": "nvidia-install-dir-host", "hostPath": GKE_DRIVER_DIR}]
        values["extraVolumeMounts"] = [
            {"name": "nvidia-install-dir-host", "mountPath": "/usr/local/nvidia", "readOnly": True}
        ]
        values["extraEnv"] = [{"name": "LD_LIBRARY_PATH", "value": "/usr/local/nvidia/lib64"}]
    return values
