"""Rich tables (and the plots behind --plot) for the CLI commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from tinypatch.ir import Graph
from tinypatch.report.plots import plot_layer_memory, plot_pareto

if TYPE_CHECKING:
    from tinypatch.planning.cost import PlanCost
    from tinypatch.planning.search import Candidate, SearchResult


def kb(n: int | float) -> str:
    return f"{n / 1024:,.1f}"


def _m(n: int) -> str:
    return f"{n / 1e6:,.2f}M"


def plan_tables(console: Console, graph: Graph, chosen: Candidate, cost: PlanCost, base: PlanCost,
                result: SearchResult) -> None:
    """The chosen schedule, before/after figures and the Pareto front."""
    inp = "input counted" if cost.include_input else "input not counted"
    if not chosen.plan.stages:
        console.print("[bold]chosen schedule:[/] layer-by-layer (no patch stage helps under these constraints)")
    from tinypatch.planning.tiles import tile_stage

    for s in chosen.plan.stages:
        st = tile_stage(graph, s)
        ops = graph.ops
        console.print(f"[bold]chosen schedule:[/] ops {s.start}..{s.end - 1} ({ops[s.start].type} .. "
                      f"{ops[s.end - 1].type}) patch by patch, grid {s.grid[0]}x{s.grid[1]}, then layer by layer")
        t = Table(title="patch stage: per-operator tile sizes (largest tile) and halo")
        for col in ("op", "type", "output", "tile out HxW", "tile in HxW", "halo rows/cols"):
            t.add_column(col, justify="right" if col not in ("type", "output") else "left")
        for k in st.info.ops:
            op = ops[k]
            oh = max(x[k].out[1] - x[k].out[0] for x in st.h.spans)
            ow = max(x[k].out[1] - x[k].out[0] for x in st.w.spans)
            reads = [(x[k].reads[0], y[k].reads[0]) for x in st.h.spans for y in st.w.spans]
            ih = max(r[0][1] - r[0][0] for r in reads)
            iw = max(r[1][1] - r[1][0] for r in reads)
            out_shape = graph.tensors[op.outputs[0]].shape
            t.add_row(str(k), op.type, "x".join(map(str, out_shape[1:])), f"{oh}x{ow}", f"{ih}x{iw}",
                      f"{ih - oh}/{iw - ow}")
        console.print(t)
    t = Table(title=f"before / after (placed arena peak, {inp}; kB = 1024 B)")
    for col in ("schedule", "peak kB", "peak kB (input counted)", "peak kB (input not counted)", "MACs",
                "MAC overhead", "MAC overhead (full-size tiles)"):
        t.add_column(col, justify="right" if col != "schedule" else "left")
    for name, c in (("layer-by-layer", base), (chosen.label, cost)):
        t.add_row(name, kb(c.peak), kb(c.peak_with_input), kb(c.peak_without_input), _m(c.macs),
                  f"{c.mac_overhead:+.1%}", f"{c.mac_overhead_full_tiles:+.1%}")
    console.print(t)
    console.print(f"peak reduction {base.peak / cost.peak:.2f}x; per-tile working set "
                  f"{', '.join(kb(w) + ' kB' for w in cost.stage_working_set) or '-'}")
    t = Table(title=f"Pareto front: {len(result.front)} of {len(result.candidates)} schedules "
                    f"(searched in {result.seconds * 1000:.0f} ms)")
    for col in ("schedule", "peak kB", "MACs", "MAC overhead"):
        t.add_column(col, justify="right" if col != "schedule" else "left")
    for c in result.front:
        mark = " [bold green]<- chosen[/]" if c is chosen else ""
        t.add_row(c.label + mark, kb(c.peak or 0), _m(c.macs), f"{c.macs / result.baseline.macs - 1:+.1%}")
    console.print(t)


def pareto_plot(path: str, graph: Graph, result: SearchResult) -> None:
    base = result.baseline
    plot_pareto(path, f"{graph.name}: peak SRAM vs MACs (placed arena)",
                {"patch-based (single stage)": [(c.peak or 0, c.macs / 1e6) for c in result.front]},
                {"layer-by-layer": [(base.peak or 0, base.macs / 1e6)]})
