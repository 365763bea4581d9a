"""`llmfleet plan`: what a stack would build and what it costs, offline, without credentials."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from llmfleet.components.queue.costs import QueueCost
from llmfleet.components.sizing.cpu_pods import CpuPodsCost
from llmfleet.components.sizing.plan import DeploymentPlan, Plan
from llmfleet.infra.commands.common import StackFileOption, StackOption, user_errors_exit_2
from llmfleet.infra.commands.progress import stdout_console
from llmfleet.infra.config import load_stack, stack_path, undefined_secrets
from llmfleet.infra.planning import build_plan, load_warnings
from llmfleet.infra.schema.gateway import FallbackSpec, PrioritySpec
from llmfleet.infra.schema.rollout import ShadowSpec


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


def _parallelism(d: DeploymentPlan) -> str:
    return f"{d.tensor_parallel}" + (f" x PP{d.pipeline_parallel}" if d.pipeline_parallel > 1 else "")


def _memory(d: DeploymentPlan) -> str:
    m = d.memory
    overheads = m.activation_gib_per_gpu + m.non_torch_gib_per_gpu + m.cuda_graph_gib_per_gpu
    return (
        f"{m.weights_gib_per_gpu:.1f} W + {overheads:.1f} O + {m.kv_cache_gib_per_gpu:.1f} KV / {m.gpu_total_gib:.1f}"
    )


def _price(usd_per_hour: float | None, flag: str, chosen: bool) -> str:
    """One capacity type's price of the planned nodes; the one the region buys is bold, '-' where not sold."""
    if usd_per_hour is None:
        return "-"
    text = f"{usd_per_hour:,.2f}{flag}"
    return f"[bold]{text}[/bold]" if chosen else text


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[DeploymentPlan], str]
    drop: int = 0
    """0: always shown; otherwise left out, highest first, when the table would not fit the width unwrapped."""
    narrow: str | None = None
    """The header on a narrow table: broken over lines so it is no wider than the column's cells."""

    @property
    def name(self) -> str:
        return self.header.split(" (")[0]


def _flag(d: DeploymentPlan) -> str:
    return "" if d.price_verified else "*"


COLUMNS = [
    Column("region", lambda d: f"{d.cloud}/{d.region}" + (" (spot)" if d.capacity_type == "spot" else "")),
    Column("model", lambda d: f"{d.model} ({d.quantization.value})" + (f" mix part {d.part}" if d.part else "")),
    Column("GPU", lambda d: d.gpu or "CPU (llama.cpp)"),
    Column("instance", lambda d: d.instance_type),
    Column("TP", _parallelism, drop=3),
    Column("replicas", lambda d: f"{d.replicas} ({d.min_replicas}-{d.max_replicas})"),
    Column("nodes", lambda d: f"{d.nodes}"),
    Column(
        "memory/GPU GiB (weights + overheads + KV / total)",
        _memory,
        drop=7,
        narrow="memory/GPU GiB\n(weights +\noverheads +\nKV / total)",
    ),
    Column("KV tokens", lambda d: f"{d.kv_cache_tokens_per_replica:,}", drop=6, narrow="KV\ntokens"),
    Column("max conc.", lambda d: f"{d.max_concurrency_at_context:.1f}", drop=5, narrow="max\nconc."),
    Column("tok/s/replica", lambda d: f"{d.output_tokens_per_s_per_replica:,.0f}", drop=2, narrow="tok/s/\nreplica"),
    Column(
        "$/h on-demand",
        lambda d: _price(d.usd_per_hour_on_demand, _flag(d), chosen=d.capacity_type == "on-demand"),
        narrow="$/h on-\ndemand",
    ),
    Column(
        "$/h spot",
        lambda d: _price(d.usd_per_hour_spot, _flag(d), chosen=d.capacity_type == "spot"),
        narrow="$/h\nspot",
    ),
    Column("$/1M tok", lambda d: f"{d.usd_per_million_output_tokens:.2f}", drop=4, narrow="$/1M\ntok"),
]
"""The plan table's columns. Sizing and price columns stay; detail (memory split, KV tokens, concurrency)
goes first on a narrow terminal, and is always in `--format json`."""


@dataclass
class TableLayout:
    headers: list[str]
    cells: list[list[str]]
    """Per shown column, its cell for each deployment (rich markup)."""
    left_out: list[str]


def _table_width(widths: Sequence[int]) -> int:
    """Width of a rich table with the default box and padding: each column + 2 padding + 1 rule, + 1 edge."""
    return sum(widths) + 3 * len(widths) + 1


def fit_columns(plan: Plan, width: int) -> TableLayout:
    """Every column with one-line headers if that fits `width`; else headers over several lines and the
    detail columns left out, highest `drop` first, until no cell needs wrapping; then the most useful of
    those left out are put back where they still fit. Rich folds what remains (a terminal narrower than
    the essential columns) so the table never exceeds the width."""
    # A deployed mix shows its two parts (what the program deploys), one row each.
    rows = [part for planned in plan.deployments for part in planned.deployed]
    cells = [[column.cell(d) for d in rows] for column in COLUMNS]

    def header(i: int, narrow: bool) -> str:
        return (COLUMNS[i].narrow or COLUMNS[i].header) if narrow else COLUMNS[i].header

    def fits(shown: list[int], narrow: bool) -> bool:
        widths = [
            max(
                [Text.from_markup(cell).cell_len for cell in cells[i]]
                + [len(line) for line in header(i, narrow).split("\n")]
            )
            for i in shown
        ]
        return _table_width(widths) <= width

    everything = list(range(len(COLUMNS)))
    narrow = not fits(everything, narrow=False)
    shown = list(everything)
    dropped: list[int] = []
    for i in sorted((i for i, c in enumerate(COLUMNS) if c.drop), key=lambda i: -COLUMNS[i].drop):
        if fits(shown, narrow):
            break
        shown.remove(i)
        dropped.append(i)
    for i in reversed(dropped):  # the most useful first: a narrow column may fit where a wide one did not
        if fits(sorted([*shown, i]), narrow):
            shown = sorted([*shown, i])
    return TableLayout(
        headers=[header(i, narrow) for i in shown],
        cells=[cells[i] for i in shown],
        left_out=[COLUMNS[i].name for i in everything if i not in shown],
    )


def render_table(plan: Plan, console: Console) -> None:
    layout = fit_columns(plan, console.width)
    table = Table(title=f"llmfleet plan: stack {plan.stack}", show_lines=False)
    for header in layout.headers:
        table.add_column(header, overflow="fold")
    for row in zip(*layout.cells, strict=True):
        table.add_row(*row)
    console.print(table)
    if layout.left_out:
        console.print(
            f"  left out to fit {console.width} columns: {', '.join(layout.left_out)} (all in --format json; "
            "a wider terminal or COLUMNS=240 shows them)"
        )
    t = plan.totals
    console.print(
        f"Totals: {counted(t.deployments, 'deployment')} in {counted(t.regions, 'region')}, "
        f"{counted(t.replicas, 'replica')} on {counted(t.nodes, 'node')} ({counted(t.gpus, 'GPU')}), "
        f"{t.output_tokens_per_s:,.0f} output tokens/s, "
        f"${t.usd_per_hour:,.2f}/h = ${t.usd_per_month:,.0f}/month"
    )
    for d in plan.deployments:
        fallbacks = ", ".join(d.fallback_instance_types) or "none in this region"
        console.print(
            f"  {d.cloud}/{d.region} {d.model}: fallbacks {fallbacks}; "
            f"{counted(len(d.rejected), 'other option')} rejected (see --format json)"
        )
    for d in plan.deployments:
        if d.cached_prompt_share > 0:
            console.print(f"  {d.cloud}/{d.region} {d.model}: {prefix_reuse_note(d)}")
    if any(not d.price_verified for d in plan.deployments) or any(not q.price_verified for q in plan.queue):
        console.print("  * price flagged unverified in the catalog")
    console.print("  bold: the capacity type the region buys (its capacity_type); '-': the source lists no such price")
    for d in plan.deployments:
        if d.mix is not None:
            state = "deployed" if d.mix.deployed else "not deployed"
            console.print(f"  {d.cloud}/{d.region} {d.model} mixed GPUs ({state}): {d.mix.summary}")
    risks = {f"{d.cloud}/{d.region}": d.spot_interruption for d in plan.deployments if d.spot_interruption}
    for where, risk in risks.items():
        console.print(f"  {where} spot: {risk}")
    if plan.failover is not None:
        f = plan.failover
        console.print(
            f"Global failover ({f.provider}), worst case {f.total_s} s = {f.detection_s} s detection "
            f"+ {f.check_timeout_s} s check timeout + {f.ttl_s} s TTL; budget {f.budget_s} s"
        )
    for q in plan.queue:
        console.print(queue_line(q))
    for c in plan.cascade:
        console.print(cascade_line(c))
    for c in plan.response_cache:
        console.print(response_cache_line(c))


def hybrid_line(fallback: FallbackSpec, priority: PrioritySpec) -> str:
    """What hybrid routing adds: requests sent to the hosted provider, billed by it per token (not priced here)."""
    quality = ", ".join(f"{served} -> {hosted}" for served, hosted in priority.quality_models.items()) or "none"
    cheap = ", ".join(f"{served} -> {hosted}" for served, hosted in fallback.models.items())
    return (
        f"Hybrid routing (x-llmfleet-priority): `quality` requests go to {fallback.provider} first ({quality}), "
        f"`balanced` ones when the region's servers fail ({cheap}), `cost` ones never; {fallback.provider} bills "
        "those tokens at its own prices, not priced here (no cited price table)"
    )


def shadow_line(shadow: ShadowSpec) -> str:
    """What the rollout's shadow stage adds: no capacity of its own, a share of the new revision's and the gateway's."""
    return (
        f"Shadow stage (rollout.shadow): each region's rollout copies {shadow.share}% of its requests to the new "
        f"revision for {shadow.duration_s:g} s before the canary steps, answers dropped; no GPU of its own (the new "
        "revision is deployed at 0% for those steps anyway): the copies take that share of the region's requests "
        "from the new revision's replicas, and Envoy sends each copied request twice (CPU, in-cluster bandwidth), "
        "not priced here"
    )


def cascade_line(c: CpuPodsCost) -> str:
    """What the cascade's router adds in a region: its pods' requests, priced as a share of a CPU node."""
    mark = "" if c.price_verified else "*"
    return (
        f"Cascade router {c.cloud}/{c.region}: {counted(c.pods, 'pod')} x ({c.cpu} CPU, {c.memory}) = "
        f"{c.vcpu_total:g} vCPU, {c.memory_gib_total:g} GiB on the system nodes, ${c.usd_per_hour:,.3f}{mark}/h "
        f"(${c.usd_per_month:,.2f}{mark}/month) as that share of an on-demand {c.instance_type}"
    )


def response_cache_line(c: CpuPodsCost) -> str:
    """What the response cache adds in a region: its LiteLLM pods, or its Redis, priced as a share of a CPU node."""
    mark = "" if c.price_verified else "*"
    return (
        f"{c.what} {c.cloud}/{c.region}: {counted(c.pods, 'pod')} x ({c.cpu} CPU, {c.memory}) = "
        f"{c.vcpu_total:g} vCPU, {c.memory_gib_total:g} GiB on the system nodes, ${c.usd_per_hour:,.3f}{mark}/h "
        f"(${c.usd_per_month:,.2f}{mark}/month) as that share of an on-demand {c.instance_type}"
    )


def queue_line(q: QueueCost) -> str:
    """What a region's async queue adds: per million jobs, idle, and where the workers run."""
    mark = "" if q.price_verified else "*"
    line = (
        f"Async queue {q.cloud}/{q.region}: ${q.usd_per_million_jobs:,.2f}{mark} per million jobs of "
        f"~{q.job_bytes:,} bytes (queue requests + result writes), ${q.idle_usd_per_month:,.2f}{mark}/month idle; "
    )
    pool = q.pool
    if pool is None:
        line += (
            f"up to {counted(q.worker_pods_max, 'worker pod')} ({q.worker_vcpu_max:g} vCPU, "
            f"{q.worker_memory_gib_max:g} GiB) on the system nodes"
        )
    else:
        pool_mark = "" if pool.price_verified else "*"
        line += (
            f"{pool.jobs_per_minute:,} jobs/min to {pool.model} at ~{pool.seconds_per_job:g} s each = "
            f"{pool.jobs_in_flight:g} in flight: up to {counted(pool.workers, 'worker pod')} on a spot pool of "
            f"0-{pool.max_nodes} {pool.instance_type} ({pool.pods_per_node} pods each), "
            f"${pool.usd_per_hour_at_max:,.2f}{pool_mark}/h at most ({pool.price_basis}); the batch is "
            f"{pool.batch_output_tokens_per_s:,.0f} output tokens/s, {pool.batch_share:.0%} of {pool.model}'s "
            "most capacity in the region"
        )
        if pool.batch_share > 1:
            line += " (more than it can serve: jobs will wait in the queue; raise its autoscaling.max_replicas)"
    return line + f"; not priced: {', '.join(q.not_priced)}"


def prefix_reuse_note(d: DeploymentPlan) -> str:
    """Why a plan with prefix reuse needs less: the prefill it no longer does, and what that assumes."""
    return (
        f"prefix reuse: {d.cached_prompt_share:.0%} of prompt tokens expected cached "
        "(load.cached_prompt_share), so each request prefills only the rest; "
        f"{d.output_tokens_per_s_per_replica:,.0f} output tokens/s per replica and the replica count assume it "
        "(it holds when requests sharing a prefix reach the replica that cached it: prefix-aware routing)"
    )


def register(app: typer.Typer) -> None:
    @app.command("plan")
    @user_errors_exit_2
    def plan(
        stack: StackOption = None,
        stack_file: StackFileOption = None,
        output: Annotated[OutputFormat, typer.Option("--format", "-f", help="table or json.")] = OutputFormat.TABLE,
    ) -> None:
        """Size every (region, model) of a stack: GPU, instance, parallelism, replicas, memory and cost."""
        name, spec = load_stack(stack, stack_file)
        for warning in [*spec.warnings(), *undefined_secrets(name, stack_file or stack_path(name), spec)]:
            print(f"warning: {warning}", file=sys.stderr)
        base_dir = stack_file.resolve().parent if stack_file is not None else None
        result = build_plan(name, spec, base_dir)
        for warning in load_warnings(spec, result):
            print(f"warning: {warning}", file=sys.stderr)
        if output is OutputFormat.JSON:
            typer.echo(json.dumps(result.model_dump(mode="json"), indent=2))
        else:
            console = stdout_console()  # the terminal's width; COLUMNS or 120 when piped
            render_table(result, console)
            if spec.gateway.priority is not None and spec.gateway.fallback is not None:
                console.print(hybrid_line(spec.gateway.fallback, spec.gateway.priority))
            if spec.rollout.shadow is not None:
                console.print(shadow_line(spec.rollout.shadow))


def counted(n: int, noun: str) -> str:
    """`1 node`, `2 nodes`: the totals line reads right for a one-region dev stack too."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
