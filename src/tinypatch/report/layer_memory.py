"""The memory report of layer-by-layer inference: per op, the arena bytes live (placed buffers),
the analytic MCUNetV2 figure (:mod:`tinypatch.analysis.analytic`) and MACs; the peaks, the liveness
lower bound and the flash size.

Every activation is placed in one arena (:func:`tinypatch.planning.arena.plan_arena`), with each
tensor's real dtype and the arena's alignment, and the accounting is stated; it is placed again
with the operators that lower the arena run in place (:mod:`tinypatch.planning.inplace`), as the
C generator builds it. kB in printed figures are 1024 B.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tinypatch.analysis.liveness import live_profile
from tinypatch.analysis.macs import flash_bytes, op_costs
from tinypatch.analysis.analytic import analytic_memory
from tinypatch.ir import Graph
from tinypatch.planning.arena import plan_arena
from tinypatch.planning.inplace import add_inplace
from tinypatch.planning.memory import place_plan, plan_buffers
from tinypatch.planning.plan import Plan


@dataclass(frozen=True)
class LayerRow:
    """One op of the memory report."""

    index: int
    op_type: str
    name: str
    out_shape: tuple[int, ...]
    in_bytes: int  # non-constant inputs, own dtype
    out_bytes: int
    working_bytes: int  # arena bytes live during this op (placed buffers, aligned)
    analytic_bytes: int  # analytic MCUNetV2 convention
    macs: int


@dataclass(frozen=True)
class MemoryReport:
    """Layer-by-layer memory and compute of a graph, with the accounting stated."""

    model: str
    rows: list[LayerRow]
    peak_analytic: int
    peak_analytic_op: str
    peak_placed: int
    lower_bound: int
    strategy: str
    peak_inplace: int  # placed arena with the ops that lower it run in place (as `tinypatch codegen` builds)
    inplace_ops: list[int]
    flash_bytes: int
    total_macs: int
    include_input: bool
    include_output: bool
    alignment: int
    aliasing: bool

    @property
    def gap(self) -> int:
        """Placed peak minus the liveness lower bound (0: the placement is optimal)."""
        return self.peak_placed - self.lower_bound

    def accounting(self) -> str:
        io = (f"input {'counted' if self.include_input else 'not counted'}, "
              f"output {'counted' if self.include_output else 'not counted'}")
        return (f"{io}; analytic: int8 activations, in+out per op, in-place depthwise, residual skip "
                f"live at depthwise/SE ops; placed: real dtypes, {self.alignment}-byte aligned arena"
                f"{', in-place RESHAPE' if self.aliasing else ''}; weights in flash; 1 kB = 1024 B")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rows"] = [{**asdict(r), "out_shape": list(r.out_shape)} for r in self.rows]
        d["gap"] = self.gap
        d["accounting"] = self.accounting()
        return d


def analyze(graph: Graph, include_input: bool = True, include_output: bool = True, alignment: int = 16,
            aliasing: bool = True) -> MemoryReport:
    """The memory report of ``graph`` run layer by layer."""
    costs = op_costs(graph)
    analytic = analytic_memory(graph, include_input, include_output)
    plan = plan_arena(graph, include_input, include_output, alignment, aliasing)
    working = live_profile(plan.placement.buffers, len(graph.ops), alignment)
    rows = [LayerRow(c.index, c.op_type, c.name, c.out_shape, c.in_bytes, c.out_bytes, working[c.index],
                     analytic.per_op[c.index], c.macs) for c in costs]
    peak_op = graph.ops[analytic.peak_index].name if graph.ops else ""
    inplace = add_inplace(graph, Plan.layer_by_layer(graph, include_input, include_output), alignment)
    peak_inplace = place_plan(plan_buffers(graph, inplace), alignment).peak if inplace.inplace else plan.peak
    return MemoryReport(
        model=graph.name, rows=rows, peak_analytic=analytic.peak, peak_analytic_op=peak_op,
        peak_placed=plan.peak, lower_bound=plan.lower_bound, strategy=plan.strategy,
        peak_inplace=peak_inplace, inplace_ops=inplace.inplace,
        flash_bytes=flash_bytes(graph), total_macs=sum(c.macs for c in costs),
        include_input=include_input, include_output=include_output, alignment=alignment, aliasing=aliasing)
