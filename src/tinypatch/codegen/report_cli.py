"""``tinypatch codegen --report``: build, run, check and print the costs of a generated project."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tinypatch.assets import assets_dir
from tinypatch.codegen import toolchain
from tinypatch.codegen.project import Project
from tinypatch.codegen.report import McuCost, measure, outputs_equal
from tinypatch.errors import ToolchainError
from tinypatch.ir import Graph
from tinypatch.planning.latency import cost_model, fitted_targets
from tinypatch.runtime.inputs import model_inputs


def report_project(console: Console, graph: Graph, project: Project, args: argparse.Namespace) -> int:
    """Build and run ``project`` on its target; 0 when the outputs equal the Python executor's."""
    missing = toolchain.missing_tools(project.target)
    if missing:
        raise ToolchainError(f"cannot build for {project.target}: {missing}")
    inputs = model_inputs(graph, args.input, args.seed, args.preprocess)
    if project.target == "host":
        toolchain.make(project.path, "host-check")
        outputs = toolchain.run_host(project.path, graph, inputs, "model_host_check")
        exact = outputs_equal(graph, outputs, inputs)
        _print_outputs(console, outputs)
        console.print(f"host build (ASan/UBSan): {_verdict(exact)}; arena {project.arena_bytes:,} B")
        return 0 if exact else 1
    with tempfile.TemporaryDirectory() as tmp:
        assets = assets_dir()
        plugin = toolchain.build_insncount(assets, Path(tmp)) if assets is not None else None
        cost = measure(graph, project, inputs, plugin)
    cost_table(console, f"{graph.name} on {project.target} (QEMU)", [("this plan", cost)])
    console.print(f"outputs vs Python executor: {_verdict(cost.exact)}")
    if cost.insns is not None and project.target in fitted_targets():
        predicted = cost_model(project.target).predict(graph, project.plan)
        console.print(f"instructions: predicted {predicted:,.0f} (cost model of {project.target}), measured "
                      f"{cost.insns:,} ({predicted / cost.insns - 1:+.1%})")
    if plugin is None:
        console.print("instruction counts need the qemu-insncount plugin of the shared assets (not found)")
    return 0 if cost.exact else 1


def _verdict(exact: bool) -> str:
    return "[green]byte-identical[/]" if exact else "[red]OUTPUTS DIFFER[/]"


def _print_outputs(console: Console, outputs: dict) -> None:
    for name, value in outputs.items():
        flat = value.ravel()
        more = " ..." if flat.size > 16 else ""
        console.print(f"output {name}: {flat[:16].tolist()}{more}", highlight=False)


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
