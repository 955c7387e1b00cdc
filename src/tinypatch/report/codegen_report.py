"""``tinypatch codegen --report``: print what building and running a generated project gave."""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tinypatch.codegen.project import Project
from tinypatch.codegen.report import McuCost


def print_report(console: Console, project: Project, cost: McuCost | None, outputs: dict[str, np.ndarray] | None,
                 exact: bool, insncount: bool, predicted: float | None = None) -> None:
    """The --report part of ``tinypatch codegen``: host outputs and verdict, or the Cortex-M cost table
    (and ``predicted`` instructions of the target's cost model beside the measured ones)."""
    if cost is None:
        _print_outputs(console, outputs or {})
        console.print(f"host build (ASan/UBSan): {_verdict(exact)}; arena {project.arena_bytes:,} B")
        return
    cost_table(console, f"{escape(project.model)} on {project.target} (QEMU)", [("this plan", cost)])
    console.print(f"outputs vs Python executor: {_verdict(cost.exact)}")
    if cost.insns is not None and predicted is not None:
        console.print(f"instructions: predicted {predicted:,.0f} (cost model of {project.target}), measured "
                      f"{cost.insns:,} ({predicted / cost.insns - 1:+.1%})")
    if not insncount:
        console.print("instruction counts need the qemu-insncount plugin of the shared assets (not found)")


def _verdict(exact: bool) -> str:
    return "[green]byte-identical[/]" if exact else "[red]OUTPUTS DIFFER[/]"


def _print_outputs(console: Console, outputs: dict) -> None:
    for name, value in outputs.items():
        flat = value.ravel()
        more = " ..." if flat.size > 16 else ""
        console.print(f"output {name}: {flat[:16].tolist()}{more}", highlight=False, markup=False)


def _n(v: float | None, fmt: str = ",") -> str:
    return "-" if v is None else format(v, fmt)


def cost_table(console: Console, title: str, rows: list[tuple[str, McuCost]]) -> None:
    """Flash, RAM, stack and instruction figures, one row per (label, cost)."""
    t = Table(title=title + " (bytes; instructions counted by qemu-insncount)")
    for col in ("schedule", "flash", "static RAM", "arena", "stack used", "RAM region", "instructions",
                "kernel instr.", "MACs", "instr./MAC", "exact"):
        t.add_column(col, justify="left" if col == "schedule" else "right")
    for label, c in rows:
        t.add_row(label, _n(c.flash), _n(c.static_ram), _n(c.arena), _n(c.stack_used), _n(c.ram_region),
                  _n(c.insns), _n(c.kernel_insns), _n(c.macs), _n(c.insns_per_mac, ".2f"),
                  "yes" if c.exact else "NO")
    console.print(t)
