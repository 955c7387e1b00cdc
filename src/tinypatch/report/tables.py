"""Rich tables (and the plots behind --plot) for the CLI commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tinypatch.analysis.regions import axis_maps
from tinypatch.ir import Graph
from tinypatch.planning.cost import overhead

if TYPE_CHECKING:
    from tinypatch.report.layer_memory import MemoryReport
    from tinypatch.planning.cost import PlanCost
    from tinypatch.planning.optimal import FrontResult, Schedule


def kb(n: int | float) -> str:
    return f"{n / 1024:,.1f}"


def _m(n: int) -> str:
    return f"{n / 1e6:,.2f}M"


def analyze_tables(console: Console, graph: Graph, report: MemoryReport) -> None:
    """Per-layer table and totals of ``tinypatch analyze``."""
    t = Table(title=f"{escape(graph.name)}: per-layer memory and compute (bytes; working = placed arena bytes live)")
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
    if report.inplace_ops:
        s.add_row(f"peak, {len(report.inplace_ops)} ops in place (as `tinypatch codegen` builds)",
                  f"{report.peak_inplace:,} B = {kb(report.peak_inplace)} kB")
    s.add_row("flash (weights, biases, constants)", f"{report.flash_bytes:,} B = {kb(report.flash_bytes)} kB")
    s.add_row("MACs", f"{report.total_macs:,} = {_m(report.total_macs)}")
    console.print(s)
    console.print(f"accounting: {report.accounting()}", highlight=False)


def layer_plot(path: str, graph: Graph, report: MemoryReport, budget: int | None = None,
               planned: list[int] | None = None) -> None:
    """MCUNetV2 Fig. 1 style bars: peak bytes per block (zoo models) or per layer; ``planned``
    adds the analytic bytes per op under a patch plan (layer-by-layer vs patch-based)."""
    # matplotlib is imported only to plot
    from tinypatch.report.plots import plot_layer_memory

    blocks = graph.meta.get("blocks") or [(f"{r.index}:{r.op_type.lower()}", [r.index]) for r in report.rows]
    labels = [name for name, _ in blocks]
    series = {"analytic, layer by layer (MCUNetV2 convention)": [max(report.rows[i].analytic_bytes for i in ix)
                                                                for _, ix in blocks]}
    if planned is not None:
        series["analytic, with the plan"] = [max(planned[i] for i in ix) for _, ix in blocks]
    else:
        series["placed arena, live bytes"] = [max(report.rows[i].working_bytes for i in ix) for _, ix in blocks]
    plot_layer_memory(path, labels, series,
                      f"{graph.name}: peak memory per {'block' if graph.meta.get('blocks') else 'layer'}", budget)


def plan_tables(console: Console, graph: Graph, chosen: Schedule, cost: PlanCost, base: PlanCost,
                result: FrontResult) -> None:
    """The chosen schedule, before/after figures and the Pareto front."""
    inp = "input counted" if cost.include_input else "input not counted"
    if not chosen.plan.stages:
        console.print("[bold]chosen schedule:[/] layer-by-layer (no patch stage helps under these constraints)")
    else:
        console.print(f"[bold]chosen schedule:[/] {len(chosen.plan.stages)} patch stage(s), the other operators "
                      f"layer by layer")
    if chosen.plan.rewrites:
        from tinypatch.planning.rewrite import describe

        console.print(f"graph rewritten ({describe(chosen.plan.rewrites)}): {len(graph.ops)} ops; the op indices "
                      f"below are the rewritten graph's, which run, codegen and show rebuild from the model",
                      highlight=False)
    if chosen.plan.inplace:
        console.print(f"in place (output written over the input, raster order): ops "
                      f"{', '.join(map(str, chosen.plan.inplace))}")
    from tinypatch.planning.tiles import tile_stage

    for n, s in enumerate(chosen.plan.stages, 1):
        st = tile_stage(graph, s)
        ops = graph.ops
        t = Table(title=f"stage {n}: ops {s.start}..{s.end - 1} ({ops[s.start].type} .. {ops[s.end - 1].type}), "
                        f"grid {s.grid[0]}x{s.grid[1]}; tile sizes of the largest tile, halo = input rows/cols "
                        f"beyond stride x output")
        for col in ("op", "type", "output", "tile out HxW", "tile in HxW", "halo rows/cols", "halo"):
            t.add_column(col, justify="right" if col not in ("type", "output", "halo") else "left")
        for k in st.info.tile_ops:
            op = ops[k]
            oh = max(x[k].need[1] - x[k].need[0] for x in st.h.spans)
            ow = max(x[k].need[1] - x[k].need[0] for x in st.w.spans)
            acts = [m for m, name in enumerate(op.inputs) if name and not graph.tensors[name].is_const]
            ih = max(x[k].reads[acts[0]][1] - x[k].reads[acts[0]][0] for x in st.h.spans)
            iw = max(x[k].reads[acts[0]][1] - x[k].reads[acts[0]][0] for x in st.w.spans)
            out_shape = graph.tensors[op.outputs[0]].shape
            mh, mw = axis_maps(graph, op)  # type: ignore[misc]
            t.add_row(str(k), op.type, "x".join(map(str, out_shape[1:])), f"{oh}x{ow}", f"{ih}x{iw}",
                      f"{max(ih - oh * mh.stride, 0)}/{max(iw - ow * mw.stride, 0)}", s.mode(k))
        if st.info.reduce is not None:
            k = st.info.reduce
            t.add_row(str(k), ops[k].type, "x".join(map(str, graph.tensors[ops[k].outputs[0]].shape[1:])),
                      "-", "-", "-", "accumulated over tiles")
        console.print(t)
    insns = chosen.insns is not None and result.baseline.insns
    t = Table(title=f"before / after (placed arena peak, {inp}; kB = 1024 B)")
    for col in ("schedule", "peak kB", "peak kB (input counted)", "peak kB (input not counted)",
                "analytic kB (MCUNetV2)", "MACs", "MAC overhead", "MAC overhead (full-size tiles)",
                *(("predicted instr.", "vs layer by layer") if insns else ())):
        t.add_column(col, justify="right" if col != "schedule" else "left", no_wrap=col == "schedule")
    lbl = "layer-by-layer" + (f", {len(result.baseline.plan.inplace)} in place" if result.baseline.plan.inplace else "")
    for name, c, s in ((lbl, base, result.baseline), ("chosen", cost, chosen)):
        t.add_row(name, kb(c.peak), kb(c.peak_with_input), kb(c.peak_without_input), kb(c.peak_analytic),
                  _m(c.macs), f"{c.mac_overhead:+.1%}", f"{c.mac_overhead_full_tiles:+.1%}",
                  *((_m(round(s.insns)), f"{s.insns / result.baseline.insns:.3f}") if insns else ()))
    console.print(t)
    console.print(f"peak reduction {base.peak / cost.peak:.2f}x; per-tile working set of each stage: "
                  f"{', '.join(kb(w) + ' kB' for w in cost.stage_working_set) or '-'}")
    n = len(result.front)
    title = (f"Pareto front: {n} schedule{'s' if n != 1 else ''}, exact over {result.options} segment options "
             f"(searched in {result.seconds:.2f} s)")
    t = Table(title=title, min_width=len(title))  # the title on one line
    if insns:
        t.caption = f"objective: {'predicted instructions, then fewer kernel calls' if result.objective == 'instructions' else 'MACs'}"
    for col in ("schedule", "peak kB", "MACs", "MAC overhead", *(("predicted instr.", "vs layer by layer", "calls")
                                                                   if insns else ())):
        t.add_column(escape("schedule: ops [start:end] grid halo") if col == "schedule" else col,
                     justify="right" if col != "schedule" else "left")
    for c in result.front:
        mark = " [bold green]<- chosen[/]" if c is chosen else ""
        inplace = f" ({len(c.plan.inplace)} in place)" if c.plan.inplace else ""
        t.add_row(escape(c.label) + inplace + mark, kb(c.peak or 0), _m(c.macs),
                  f"{overhead(c.macs, result.baseline.macs):+.1%}",
                  *((_m(round(c.insns or 0)), f"{(c.insns or 0) / result.baseline.insns:.3f}", f"{c.calls:,}")
                    if insns else ()))
    console.print(t)


def pareto_plot(path: str, graph: Graph, result: FrontResult, reference: FrontResult | None = None) -> None:
    """Our front, the MCUNetV2-style single-stage front (if given) and the layer-by-layer point."""
    base = result.baseline
    fronts = {"tinypatch (multi-stage, halo caching)": [(s.peak or 0, s.macs / 1e6) for s in result.front]}
    if reference is not None:
        fronts["MCUNetV2-style single stage, recompute"] = [(s.peak or 0, s.macs / 1e6) for s in reference.front]
    # matplotlib is imported only to plot
    from tinypatch.report.plots import plot_pareto

    plot_pareto(path, f"{graph.name}: peak SRAM vs MACs (placed arena)", fronts,
                {"layer-by-layer": [(base.peak or 0, base.macs / 1e6)]})
