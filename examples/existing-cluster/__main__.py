"""A team's own Pulumi program: one model served with llmfleet's components on a cluster it already has.

It plans the model with llmfleet's planner (pure Python, no Pulumi), installs KEDA and the model server
from llmfleet's components into the cluster of a kubeconfig context, and puts them in a namespace made
by the team's own `components` package. Two packages called `components` meet here: the team's
(`components/` beside this file) and llmfleet's, which is installed as `llmfleet.components`.
"""

import pulumi
import pulumi_kubernetes as k8s
from components.team import TeamNamespace, TeamNamespaceArgs  # this project's own package

from llmfleet.components import InferenceService, InferenceServiceArgs, Keda, KedaArgs
from llmfleet.components.inference import waiting_requests_threshold
from llmfleet.components.sizing.calibration import catalog_eta
from llmfleet.components.sizing.catalog import load_catalog
from llmfleet.components.sizing.planner import plan_deployment
from llmfleet.components.sizing.types import ConcurrencyLoad, ModelRequest, Quantization, RegionRequest

TTFT_P95_MS = 3000.0
"""The team's time-to-first-token target: it sets KEDA's scale-out threshold."""

config = pulumi.Config()
cluster = k8s.Provider("cluster", context=config.get("kubeconfigContext") or "kind-llmfleet")
prometheus_url = config.get("prometheusUrl") or "http://prometheus-operated.monitoring.svc:9090"

# Size the model the way `llmfleet plan` does: a 1B GGUF model on llama.cpp's server, on a CPU node.
catalog = load_catalog()
entry = catalog.models["llama-3.2-1b"]
load = ConcurrencyLoad(concurrent_sequences=1, prompt_tokens=512, output_tokens=128)
model = ModelRequest(
    name="tiny",
    model_id=entry.id,
    hf_repo="bartowski/Llama-3.2-1B-Instruct-GGUF",  # ungated GGUF quantizations of the same model
    architecture=entry.architecture,
    quantization=Quantization.Q4_K_M,
    max_model_len=4096,
    load=load,
)
plan = plan_deployment(
    catalog, model, RegionRequest(cloud="local", region="local"), eta=catalog_eta(catalog), max_replicas=2
)

team = TeamNamespace(
    "assistants",
    TeamNamespaceArgs(team="assistants", cost_center="cc-1234"),
    opts=pulumi.ResourceOptions(providers=[cluster]),
)
keda = Keda("keda", KedaArgs(), opts=pulumi.ResourceOptions(providers=[cluster]))
service = InferenceService(
    "tiny",
    InferenceServiceArgs(
        deployment=plan,
        namespace=team.namespace,
        queue_threshold=waiting_requests_threshold(plan, load.output_tokens, TTFT_P95_MS),
        prometheus_url=prometheus_url,
        scaler_depends_on=[keda],
    ),
    opts=pulumi.ResourceOptions(providers=[cluster]),
)

pulumi.export("url", service.url)
pulumi.export("plan", {"instance_type": plan.instance_type, "replicas": plan.replicas, "engine": plan.engine.value})
