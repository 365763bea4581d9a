"""`LoadGenerator`: an SLO gate run inside a cluster, on Locust's own distributed mode.

A gate at hundreds or thousands of concurrent streams does not belong on a CI runner: one Locust
process reads only so many token chunks/s before its own delay reaches the figures (measured per machine by
loadtests/capacity.py; docs/loadtesting.md).
This component runs one llmfleet suite next to a region's gateway as Kubernetes workloads:

- `Job {name}-master`: `locust -f <suite> --master --headless --expect-workers N ...`, the same
  command `llmfleet loadtest` runs locally; it gathers the workers' raw samples (as in local
  `--processes` runs), judges them against the SLO (mounted from a ConfigMap) and writes the verdict
  JSON to its log (`--llm-report /dev/stdout`); the Job's pod exits with the gate's code (0 pass,
  3 breach, 4 invalid), so `kubectl wait` / `kubectl logs job/{name}-master` give the verdict.
- `Job {name}-workers`: N pods `locust --worker --master-host {name}-master`, each a generator with
  its own CPU request, spread over nodes.
- `Service {name}-master`: the master's port 5557 for the workers.

The image is `loadtests/Dockerfile` built on the pinned Locust image (components/pins.yaml row
`locust`), so the suites ship inside it: `docker build -f loadtests/Dockerfile --build-arg
LOCUST_IMAGE=<pins.image("locust")> -t <registry>/llmfleet-loadtest:<tag> .`. The project publishes no
image; `args.image` is yours.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from llmfleet.components import pins
from llmfleet.components.hardening import container_hardening, pod_hardening
from llmfleet.components.secrets import secret_env

LOCUST_IMAGE = pins.image("locust")
"""The base the load generator's image is built on (loadtests/Dockerfile's LOCUST_IMAGE)."""
SUITES = ("smoke", "steady", "rate", "ramp", "spike")
"""Suites that run distributed (gateway and failover run in one process; see `llmfleet loadtest`)."""
MASTER_PORT = 5557
SUITES_DIR = "/src/loadtests/suites"
"""Where loadtests/Dockerfile copies the suites."""
SLO_PATH = "/etc/llmfleet/slo.json"
RUN_AS = 1000
"""The `locust` user of the Locust image (its first useradd on Debian slim); numeric for runAsNonRoot."""
START_WAIT_S = 300
"""How long the master waits for every worker (--expect-workers-max-wait)."""
REQUEST_TIMEOUT_E2E_MULTIPLE = 2.0
DRAIN_MARGIN_S = 60.0
"""The master Job's deadline: the run, its bounded drain (2 x the E2E p99 target), start-up and this margin."""


@dataclass
class LoadGeneratorArgs:
    image: pulumi.Input[str]
    """The load generator's image, built from loadtests/Dockerfile on LOCUST_IMAGE."""
    host: pulumi.Input[str]
    """The endpoint to load, e.g. the region gateway's in-cluster URL (http://<gateway service>.<ns>:80)."""
    model: str
    """The served model name sent in each request."""
    slo: Mapping[str, float]
    """The SLO that judges the run: the stack's `slo:` fields (`Slo.model_dump()`); e2e_p99_ms is required."""
    users: int
    """Concurrent users (closed loop) over all workers, or the rate's sharers (open loop)."""
    duration_s: float
    workers: int = 1
    """Worker pods; each is one Locust process (size them from docs/loadtesting.md's per-process capacity)."""
    suite: str = "steady"
    """One of SUITES."""
    rate: float | None = None
    """The rate suite: total requests per second."""
    warmup_s: float | None = None
    """Excluded from the verdict; None: a tenth of the run."""
    namespace: pulumi.Input[str] = "llmfleet-loadtest"
    """An existing namespace (created by the caller, as for every other component)."""
    api_key: pulumi.Input[str] | None = None
    """A tenant's API key for the gateway: stored in a Secret, sent as Authorization: Bearer."""
    headers: Sequence[str] = ()
    """`Name: value` sent with every request (e.g. `x-llmfleet-revision: <id>` to pin a revision)."""
    worker_cpu: str = "1"
    """CPU request (and limit) per worker: one Locust process uses at most one core."""
    worker_memory: str = "1Gi"
    extra_args: Sequence[str] = ()
    """Escape hatch: more Locust options for master and workers (e.g. `--llm-output-tokens 256`)."""
    labels: Mapping[str, str] = field(default_factory=dict[str, str])


ROLE = "loadgen"
"""A RegionalFleet names its LoadGenerator `<fleet name>-loadgen`; the rollout's in-cluster gate reruns that name."""


@dataclass(frozen=True)
class LoadGeneratorSettings:
    """A LoadGenerator as a RegionalFleet deploys it next to its gateway: the fleet adds the host (its gateway),
    the namespace (its services') and the model (its first; a gate run names its own, loadtests/incluster.py)."""

    image: str
    slo: Mapping[str, float]
    users: int
    duration_s: float
    suite: str = "steady"
    workers: int = 1
    worker_cpu: str = "1"
    worker_memory: str = "1Gi"
    api_key: pulumi.Input[str] | None = None
    extra_args: Sequence[str] = ()

    def args(self, host: pulumi.Input[str], model: str, namespace: pulumi.Input[str]) -> LoadGeneratorArgs:
        return LoadGeneratorArgs(
            image=self.image,
            host=host,
            model=model,
            slo=self.slo,
            users=self.users,
            duration_s=self.duration_s,
            workers=self.workers,
            suite=self.suite,
            namespace=namespace,
            api_key=self.api_key,
            worker_cpu=self.worker_cpu,
            worker_memory=self.worker_memory,
            extra_args=self.extra_args,
        )


def check_args(args: LoadGeneratorArgs) -> None:
    """Bad arguments fail before any resource is registered, naming the field."""
    if args.suite not in SUITES:
        raise ValueError(f"LoadGeneratorArgs.suite {args.suite!r}: one of {', '.join(SUITES)}")
    if args.workers < 1 or args.users < 1:
        raise ValueError("LoadGeneratorArgs.workers and .users must be at least 1")
    if args.duration_s <= 0:
        raise ValueError("LoadGeneratorArgs.duration_s must be positive")
    if (args.suite == "rate") != (args.rate is not None and args.rate > 0):
        raise ValueError("LoadGeneratorArgs.rate: a positive rate for the rate suite, and only for it")
    if args.warmup_s is not None and not 0 <= args.warmup_s < args.duration_s:
        raise ValueError("LoadGeneratorArgs.warmup_s must be within [0, duration_s)")
    if not args.slo.get("e2e_p99_ms", 0) > 0:
        raise ValueError("LoadGeneratorArgs.slo: needs e2e_p99_ms (give the stack's Slo.model_dump())")


class LoadGenerator(pulumi.ComponentResource):
    """One distributed gate run of a suite against `args.host`, judged on `args.slo`."""

    master: k8s.batch.v1.Job
    """The master Job: its pod's exit code is the gate's, its log ends with the verdict JSON."""
    workers: k8s.batch.v1.Job
    service: k8s.core.v1.Service
    master_job_name: pulumi.Output[str]
    """`kubectl logs -n <namespace> job/<master_job_name>` prints the verdict."""

    def __init__(self, name: str, args: LoadGeneratorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmfleet:loadgen:LoadGenerator", name, None, opts)
        check_args(args)
        child = pulumi.ResourceOptions(parent=self)
        labels = {
            "app.kubernetes.io/name": "locust",
            "app.kubernetes.io/instance": name,
            "app.kubernetes.io/part-of": "llmfleet",
            **args.labels,
        }

        def meta(suffix: str, role: str | None = None, job: bool = False) -> k8s.meta.v1.ObjectMetaArgs:
            extra = {"app.kubernetes.io/component": role} if role else {}
            # pulumi-kubernetes waits for a Job to complete and fails the update when it fails: a gate run
            # that breaches (exit 3) would fail `pulumi up` of the fleet, and a long one would time it out.
            # The run's verdict is read from the master's log, not from the update (loadtests/incluster.py).
            annotations = {"pulumi.com/skipAwait": "true"} if job else None
            return k8s.meta.v1.ObjectMetaArgs(
                name=f"{name}-{suffix}", namespace=args.namespace, labels=labels | extra, annotations=annotations
            )

        slo = k8s.core.v1.ConfigMap(
            f"{name}-slo", metadata=meta("slo"), data={"slo.json": json.dumps(dict(args.slo))}, opts=child
        )
        env = [k8s.core.v1.EnvVarArgs(name="PYTHONUNBUFFERED", value="1")]
        if args.api_key is not None:
            env.append(
                secret_env(
                    f"{name}-api-key",
                    meta("api-key"),
                    env_name="LLM_API_KEY",
                    data_key="LLM_API_KEY",
                    value=args.api_key,
                    opts=child,
                )
            )
        master_labels = labels | {"app.kubernetes.io/component": "master"}
        self.service = k8s.core.v1.Service(
            f"{name}-master",
            metadata=meta("master", "master"),
            spec=k8s.core.v1.ServiceSpecArgs(
                selector={k: master_labels[k] for k in ("app.kubernetes.io/instance", "app.kubernetes.io/component")},
                ports=[k8s.core.v1.ServicePortArgs(name="locust", port=MASTER_PORT, target_port=MASTER_PORT)],
            ),
            opts=child,
        )
        suite_file = f"{SUITES_DIR}/{args.suite}.py"
        common = ["-f", suite_file, *args.extra_args]
        warmup = args.warmup_s if args.warmup_s is not None else args.duration_s / 10
        master_args = [
            *common,
            *("--master", "--headless", "--only-summary", "--expect-workers", str(args.workers)),
            *("--expect-workers-max-wait", str(START_WAIT_S), "-u", str(args.users), "-r", str(args.users)),
            *("-t", f"{args.duration_s:g}s", "--llm-model", args.model, "--llm-slo", SLO_PATH),
            *("--llm-report", "/dev/stdout", "--llm-warmup", f"{warmup:g}"),
        ]
        if args.rate is not None:
            master_args += ["--llm-rate", f"{args.rate:g}"]
        for header in args.headers:
            master_args += ["--llm-header", header]
        drain_s = REQUEST_TIMEOUT_E2E_MULTIPLE * args.slo["e2e_p99_ms"] / 1000
        deadline_s = math.ceil(START_WAIT_S + args.duration_s + drain_s + DRAIN_MARGIN_S)
        slo_volume = k8s.core.v1.VolumeArgs(
            name="slo", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=slo.metadata.name)
        )
        self.master = k8s.batch.v1.Job(
            f"{name}-master-job",
            metadata=meta("master", "master", job=True),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=0,  # a second run would be a second verdict
                active_deadline_seconds=deadline_s,
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=master_labels),
                    spec=_pod(
                        _container(
                            "master",
                            args.image,
                            [*master_args, "--host", args.host],
                            env,
                            cpu="500m",
                            memory="1Gi",
                            mounts=[k8s.core.v1.VolumeMountArgs(name="slo", mount_path="/etc/llmfleet")],
                            port=MASTER_PORT,
                        ),
                        volumes=[slo_volume],
                    ),
                ),
            ),
            opts=child,
        )
        worker_labels = labels | {"app.kubernetes.io/component": "worker"}
        worker_args = [*common, "--worker", "--master-host", self.service.metadata.name]
        self.workers = k8s.batch.v1.Job(
            f"{name}-workers",
            metadata=meta("workers", "worker", job=True),
            spec=k8s.batch.v1.JobSpecArgs(
                parallelism=args.workers,
                completions=args.workers,
                backoff_limit=0,  # the master counts a lost worker (its samples are missing: invalid)
                active_deadline_seconds=deadline_s,
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=worker_labels),
                    spec=_pod(
                        _container("worker", args.image, worker_args, env, args.worker_cpu, args.worker_memory),
                        spread={
                            k: worker_labels[k] for k in ("app.kubernetes.io/instance", "app.kubernetes.io/component")
                        },
                    ),
                ),
            ),
            opts=child,
        )
        self.master_job_name = self.master.metadata.name
        self.register_outputs({"master_job_name": self.master_job_name, "workers": args.workers})


def _container(
    role: str,
    image: pulumi.Input[str],
    arguments: Sequence[pulumi.Input[str]],
    env: list[k8s.core.v1.EnvVarArgs],
    cpu: str,
    memory: str,
    mounts: list[k8s.core.v1.VolumeMountArgs] | None = None,
    port: int | None = None,
) -> k8s.core.v1.ContainerArgs:
    """The image's entrypoint is `locust`; a generator needs no privilege at all."""
    return k8s.core.v1.ContainerArgs(
        name=role,
        image=image,
        args=list(arguments),
        env=env,
        ports=[k8s.core.v1.ContainerPortArgs(name="locust", container_port=port)] if port else None,
        volume_mounts=[*(mounts or []), k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp")],
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": cpu, "memory": memory}, limits={"cpu": cpu, "memory": memory}
        ),
        security_context=container_hardening(),
    )


def _pod(
    container: k8s.core.v1.ContainerArgs,
    volumes: list[k8s.core.v1.VolumeArgs] | None = None,
    spread: Mapping[str, str] | None = None,
) -> k8s.core.v1.PodSpecArgs:
    return k8s.core.v1.PodSpecArgs(
        containers=[container],
        restart_policy="Never",
        **pod_hardening(RUN_AS),
        volumes=[
            *(volumes or []),
            k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
        ],
        # Workers on different nodes where they can: generators sharing a node's CPU starve each other.
        topology_spread_constraints=[
            k8s.core.v1.TopologySpreadConstraintArgs(
                max_skew=1,
                topology_key="kubernetes.io/hostname",
                when_unsatisfiable="ScheduleAnyway",
                label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(spread)),
            )
        ]
        if spread
        else None,
    )
