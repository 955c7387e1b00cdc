"""Rich tables (and the plots behind --plot) for the CLI commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from tinypatch.analysis.regions import axis_maps
from tinypatch.ir import Graph
from tinypatch.report.plots import plot_layer_memory, plot_pareto

if TYPE_CHECKING:
    from tinypatch.analysis.memory import MemoryReport
    from tinypatch.planning.cost import PlanCost
    from tinypatch.planning.search import Candidate, SearchResult


def kb(n: int | float) -> str:
    return f"{n / 1024:,.1f}"


def _m(n: int) -> str:
    return f"{n / 1e6:,.2f}M"


def analyze_tables(console: Console, graph: Graph, report: MemoryReport) -> None:
    """Per-layer table and totals of ``tinypatch analyze``."""
    t = Table(title=f"{graph.name}: per-layer memory and compute (bytes; working = placed arena bytes live)")
    for col in ("#", "op", "output", "in B", "out B", "working B", "analytic B", "MACs"):
        t.add_column(col, justify="left" if col in ("op", "output") else "right")
    peak_rows = {r.index for r in report.rows if r.analytic_bytes == report.peak_analytic}
    for r in report.rows:
        style = "bold yellow" if r.index in peak_rows else None
        t.add_row(str(r.index), r.op_type, "x".join(map(str, r.out_shape)), f"{r.in_bytes:,}", f"{r.out_bytes:,}",
                  f"{r.working_bytes:,}", f"{r.analytic_bytes:,}", f"{r.macs:,}", style=style)
    console.print(t)
    s = Table(title="totals (kB = 1024 B)", show_header=False)
    s.add_column("figure")
    s.add_column("value", justify="right")
    s.add_row("peak, analytic (MCUNetV2 convention)",
              f"{report.peak_analytic:,} B = {kb(report.peak_analytic)} kB at {report.peak_analytic_op}")
    s.add_row(f"peak, placed arena ({report.strategy})", f"{report.peak_placed:,} B = {kb(report.peak_placed)} kB")
    s.add_row("liveness lower bound", f"{report.lower_bound:,} B (gap {report.gap:,} B)")
    s.add_row("flash (weights, biases, constants)", f"{report.flash_bytes:,} B = {kb(report.flash_bytes)} kB")
    s.add_row("MACs", f"{report.total_macs:,} = {_m(report.total_macs)}")
    console.print(s)
    console.print(f"accounting: {report.accounting()}", highlight=False)


def layer_plot(path: str, graph: Graph, report: MemoryReport, budget: int | None = None) -> None:
    """MCUNetV2 Fig. 1 style bars: peak bytes per block (zoo models) or per layer."""
    blocks = graph.meta.get("blocks") or [(f"{r.index}:{r.op_type.lower()}", [r.index]) for r in report.rows]
    labels = [name for name, _ in blocks]
    analytic = [max(report.rows[i].analytic_bytes for i in ix) for _, ix in blocks]
    placed = [max(report.rows[i].working_bytes for i in ix) for _, ix in blocks]
    plot_layer_memory(path, labels, {"analytic (MCUNetV2 convention)": analytic, "placed arena, live bytes": placed},
                      f"{graph.name}: peak memory per {'block' if graph.meta.get('blocks') else 'layer'}", budget)


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
        t = Table(title="patch stage: per-operator tile sizes (largest tile), halo (input beyond stride x output) and its handling")
        for col in ("op", "type", "output", "tile out HxW", "tile in HxW", "halo rows/cols", "halo"):
            t.add_column(col, justify="right" if col not in ("type", "output", "halo") else "left")
        for k in st.info.ops:
            op = ops[k]
            oh = max(x[k].out[1] - x[k].out[0] for x in st.h.spans)
            ow = max(x[k].out[1] - x[k].out[0] for x in st.w.spans)
            reads = [(x[k].reads[0], y[k].reads[0]) for x in st.h.spans for y in st.w.spans]
            ih = max(r[0][1] - r[0][0] for r in reads)
            iw = max(r[1][1] - r[1][0] for r in reads)
            out_shape = graph.tensors[op.outputs[0]].shape
            mh, mw = axis_maps(graph, op)  # type: ignore[misc]
            t.add_row(str(k), op.type, "x".join(map(str, out_shape[1:])), f"{oh}x{ow}", f"{ih}x{iw}",
                      f"{max(ih - oh * mh.stride, 0)}/{max(iw - ow * mw.stride, 0)}", st.stage.mode(k))
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
