"""GCP prices per region and capacity type from SkyPilot's GCP catalog (`catalogs/v8/gcp/vms.csv`).

SkyPilot's catalog prices a GCP machine in two kinds of row: the machine type's (its VM: vCPUs and memory) and the
accelerator's (`AcceleratorName` x `AcceleratorCount`, no machine type), each per availability zone with an
on-demand `Price` and a `SpotPrice`. A node of a GPU machine type costs both, so per zone the two rows are added,
and per region:

- on_demand: the lowest VM + GPU `Price` over the zones listing both (the same in every zone of a region);
- spot: the lowest VM + GPU `SpotPrice` over the zones listing both (SkyPilot's choice too); None where none does;
- a price of 0 or an empty cell is "not listed" (the a4-highgpu-8g VM rows carry 0.0: such a type is not priced);
- a CPU machine type (n2-standard-*) is its VM row alone.

Regenerate `prices.yaml`'s `gcp:` section from a copy of the file (the project holds an excerpt of it, the rows of
its machine types in the regions it plans, in `data/skypilot/`):

    python -m llmfleet.components.sizing.gcp_prices path/to/vms.csv [--write]

Without `--write` the section is printed; `tests/test_catalog.py` checks that the excerpt regenerates the
committed section exactly, so a hand edit of a GCP price fails the suite.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

DATA_DIR = Path(__file__).parent / "data"
PRICES = DATA_DIR / "prices.yaml"
EXCERPT = DATA_DIR / "skypilot" / "gcp_vms.csv"

ACCELERATOR = {
    "a2-highgpu": "A100",
    "a2-ultragpu": "A100-80GB",
    "a3-highgpu": "H100",
    "a3-megagpu": "H100-MEGA",
    "a3-ultragpu": "H200",
    "a4-highgpu": "B200",
    "g2-standard": "L4",
}
"""Machine family -> SkyPilot's accelerator name (the GPU the family attaches; a3-megagpu's H100s are listed apart)."""


@dataclass(frozen=True)
class ZonePrice:
    on_demand: float | None
    spot: float | None


@dataclass(frozen=True)
class GcpPrice:
    """A machine type's price in one region, with the parts it was added from (shown in prices.yaml)."""

    on_demand: float | None
    spot: float | None
    vm: ZonePrice
    gpus: ZonePrice


def _price(cell: str) -> float | None:
    value = float(cell) if cell.strip() else 0.0
    return value if value > 0 else None


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _by_zone(rows: Iterable[dict[str, str]]) -> dict[tuple[str, str], ZonePrice]:
    return {(r["Region"], r["AvailabilityZone"]): ZonePrice(_price(r["Price"]), _price(r["SpotPrice"])) for r in rows}


def _lowest(pairs: list[tuple[float | None, float | None]]) -> tuple[float, float, float] | None:
    """(sum, first, second) of the pair with the lowest sum, over pairs where both are listed."""
    sums = [(round(a + b, 5), a, b) for a, b in pairs if a is not None and b is not None]
    return min(sums) if sums else None


def machine_prices(rows: list[dict[str, str]], machine: str, gpu_count: int) -> dict[str, GcpPrice]:
    """Region -> price of one `machine` node (VM + its `gpu_count` GPUs; a CPU type, 0 GPUs: its VM row alone)."""
    vm = _by_zone(r for r in rows if r["InstanceType"] == machine)
    if gpu_count:
        accelerator = ACCELERATOR[machine.rsplit("-", 1)[0]]
        gpu = _by_zone(
            r
            for r in rows
            if not r["InstanceType"] and r["AcceleratorName"] == accelerator and int(r["AcceleratorCount"]) == gpu_count
        )
    else:
        gpu = {zone: ZonePrice(0.0, 0.0) for zone in vm}
    found: dict[str, GcpPrice] = {}
    for region in sorted({region for region, _ in vm}):
        zones = sorted(zone for r, zone in vm if r == region and (r, zone) in gpu)
        on_demand = _lowest([(vm[region, z].on_demand, gpu[region, z].on_demand) for z in zones])
        spot = _lowest([(vm[region, z].spot, gpu[region, z].spot) for z in zones])
        if on_demand is None and spot is None:
            continue  # neither capacity type priced in both rows: not sold here per the source
        found[region] = GcpPrice(
            on_demand=on_demand[0] if on_demand else None,
            spot=spot[0] if spot else None,
            vm=ZonePrice(on_demand[1] if on_demand else None, spot[1] if spot else None),
            gpus=ZonePrice(on_demand[2] if on_demand else None, spot[2] if spot else None),
        )
    return found


def gcp_machines() -> dict[str, int]:
    """The catalog's GCP machine types (instances.yaml) -> their GPU count (0: a CPU type, priced by its VM row)."""
    data = yaml.safe_load((DATA_DIR / "instances.yaml").read_text())
    return {e["type"]: int(e["gpu_count"]) for e in data["entries"] if e["cloud"] == "gcp"}


def gcp_section(rows: list[dict[str, str]], machines: Mapping[str, int]) -> str:
    """prices.yaml's `gcp:` section (YAML text, a comment per line with the VM and GPU parts)."""

    def number(value: float | None) -> str:
        return "null" if value is None else repr(round(value, 5))

    lines = ["gcp:"]
    for machine in sorted(machines):
        prices = machine_prices(rows, machine, machines[machine])
        if not prices:
            lines.append(f"  {machine}: {{}}  # no region lists both a VM and a GPU price: not planned")
            continue
        lines.append(f"  {machine}:")
        for region, p in prices.items():
            vm, gpus = (
                f"{number(p.vm.on_demand)}/{number(p.vm.spot)}",
                f"{number(p.gpus.on_demand)}/{number(p.gpus.spot)}",
            )
            parts = f"VM {vm} + GPUs {gpus}" if machines[machine] else f"VM {vm}, no GPU"
            lines.append(f"    {region}: {{on_demand: {number(p.on_demand)}, spot: {number(p.spot)}}}  # {parts}")
    return "\n".join(lines) + "\n"


def replace_section(prices_yaml: str, section: str) -> str:
    """prices.yaml's text with its top-level `gcp:` section (the file's last) replaced by `section`."""
    head, found, _ = prices_yaml.partition("\ngcp:\n")
    if not found:
        raise ValueError("prices.yaml has no top-level gcp: section")
    return head + "\n" + section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llmfleet.components.sizing.gcp_prices",
        description="GCP prices per region and capacity type from SkyPilot's GCP catalog",
    )
    parser.add_argument("vms_csv", type=Path, help="SkyPilot's catalogs/v8/gcp/vms.csv (or the project's excerpt)")
    parser.add_argument("--write", action="store_true", help=f"rewrite the gcp: section of {PRICES}")
    args = parser.parse_args(argv)
    section = gcp_section(read_rows(args.vms_csv), gcp_machines())
    if args.write:
        PRICES.write_text(replace_section(PRICES.read_text(), section))
    else:
        sys.stdout.write(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
