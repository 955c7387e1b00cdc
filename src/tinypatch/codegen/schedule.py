"""The body of ``model_invoke``: the plan's schedule as C loops.

Operators outside every stage are one kernel call on whole tensors. A patch stage becomes a
raster loop over its tiles; per tile, every operator of the stage computes the ``out`` part
of its ``need`` region (:class:`tinypatch.planning.tiles.OpSpan`), read from the regions of
its inputs, with zero padding only at true image borders. The spans are small constant
tables (one per operator and axis), exactly those the Python plan executor walks.

A stream stage becomes a loop over its row strips (the row spans from the same tables) that
walks a constant step table (:func:`tinypatch.planning.stream.column_steps`): the depth-first column pulls
of the Python executor, flattened at generation time, each step one op computing one column
into its window buffer or one window buffer sliding its kept columns to the front.

Tile-local tensors are stored with a fixed row width (their widest region), so that a cached
halo slides left (``cache_w``), rolls up (``cache``, one tile column) or is refilled from its
line buffer (``cache``) with in-place row copies that never overrun their buffer.
"""

from __future__ import annotations

from collections.abc import Callable

from tinypatch.analysis.regions import reads_nchw, writes_nchw
from tinypatch.codegen import cfmt
from tinypatch.codegen.emitters import OpEmitter, Site, reduce_finish
from tinypatch.codegen.mixed_tiles import MixedCode
from tinypatch.codegen.storage import Storage, Unit
from tinypatch.codegen.views import Layout, View, full_view, nchw_window_view, window_view
from tinypatch.errors import UnsupportedOperatorError
from tinypatch.ir import Graph
from tinypatch.ir.optable import op_def
from tinypatch.planning.memory import accumulator_name, line_buffer_name
from tinypatch.planning.stream import (
    STEP_DST,
    STEP_HI,
    STEP_KEEP,
    STEP_LO,
    STEP_OP,
    STEP_PAD,
    STEP_SHIFT,
    column_steps,
)
from tinypatch.planning.tiles import StageTiling

# columns of a span table row
NEED0, NEED1, OUT0, OUT1, PAD0, PAD1, READS = range(7)


def _indent(text: str, n: int) -> str:
    pad = " " * n
    return "".join(pad + line + "\n" if line else "\n" for line in text.splitlines())


class Scheduler:
    def __init__(self, graph: Graph, storage: Storage, unit: Unit, emitter: OpEmitter,
                 mixed: MixedCode | None = None) -> None:
        self.graph, self.storage, self.unit, self.emitter = graph, storage, unit, emitter
        self.mixed = mixed  # a precision plan's per-patch tests and requantization

    def body(self) -> str:
        """C statements of the whole inference, in schedule order."""
        g = self.graph
        stage_at = {st.stage.start: (n, st) for n, st in enumerate(self.storage.buffers.tilings)}
        parts, k = [], 0
        while k < len(g.ops):
            if k in stage_at:
                n, st = stage_at[k]
                parts.append(self.stage(n, st))
                k = st.stage.end
            else:
                parts.append(self.layer(k))
                k += 1
        return "".join(parts)

    def _operand(self, t: str, op_type: str) -> bool:
        """Does the kernel call take this input as a tensor view? (Not weights, shapes, axes.)"""
        return not self.graph.tensors[t].is_const or op_def(op_type).const_operands

    # --- layer by layer -----------------------------------------------------------------
    def layer(self, k: int) -> str:
        g = self.graph
        op = g.ops[k]
        ins = [full_view(self.storage, t) if t and self._operand(t, op.type) else None for t in op.inputs]
        site = Site(k, ins, full_view(self.storage, op.outputs[0]))
        if op_def(op.type).window is not None:  # a conv or pool: its own SAME/VALID padding
            top, _, left, _ = self.emitter.kernels[k].default_pads(g.tensors[op.inputs[0]].shape[1:3])
            site.pads = (str(top), str(left))
        call = self.emitter.call(site)
        if k in self.storage.inplace:  # the shadow build checks the kernel's reads against its writes
            out = op.outputs[0]
            call = f"TP_SHADOW_BEGIN({self.storage.raw(out)}, {g.tensors[out].nbytes}, {k});\n{call}TP_SHADOW_END();\n"
        return f"{{   /* op {k}: {op.type} (a block: its temporaries share stack slots with the other ops') */\n" \
            + _indent(call + self._dump_whole(k, op.outputs[0]), 4) + "}\n"

    def _dump_whole(self, k: int, t: str) -> str:
        """TP_DUMP of all of tensor t's bytes (host check builds with TP_DUMP_FILE set)."""
        n = self.graph.tensors[t].nbytes
        return f"TP_DUMP({k}, -1, -1, 0, 0, {self.storage.raw(t)}, 1, 1, {n}, {n}, 1);\n"

    @staticmethod
    def _dump_view(k: int, ti: str, tj: str, y0: str, x0: str, v: View) -> str:
        """TP_DUMP of the region a kernel call just wrote."""
        return f"TP_DUMP({k}, {ti}, {tj}, {y0}, {x0}, {v.ptr}, {v.h}, {v.w}, {v.rs}, {v.c}, {v.esize});\n"

    # --- patch stages ---------------------------------------------------------------------
    def stage(self, n: int, st: StageTiling) -> str:
        if st.stream:
            return self.stream_stage(n, st)
        g, stage = self.graph, st.stage
        nh, nw = stage.grid
        ops = st.info.tile_ops
        columns = {k: [p for p, r in enumerate(st.h.spans[0][k].reads) if r is not None] for k in ops}
        persistent = [k for k in ops if st.cached(k)]
        for k in ops:
            self._tables(n, k, st, columns[k])
        setup = "".join(f"int kept{k} = 0, kr{k} = 0, kc{k} = 0; /* op {k}: origin of its last kept region */\n"
                        for k in persistent)
        sums = ""
        if st.info.reduce is not None:
            sums = f"((int32_t *){self.storage.raw(accumulator_name(st.info.output))})"
            setup += f"memset({sums}, 0, {4 * g.tensors[st.info.tiled].shape[3]});  /* per-channel sums */\n"
        decl = "".join(f"const int16_t *h{k} = tp_s{n}h{k}[ti], *w{k} = tp_s{n}w{k}[tj];\n" for k in ops)
        body = [decl + (self.mixed.tile_begin(st) if self.mixed else "")]
        for k in ops:
            body.append(f"/* op {k}: {g.ops[k].type} */\n")
            if k in persistent:
                body.append(self._restore(k, st))
            site = self._site(st, k, columns[k])
            call = self.emitter.call(site)
            if self.mixed:
                call = self.mixed.wrap(st, k, site, call)
            if not writes_nchw(g, g.ops[k]):  # TP_DUMP reads NHWC rows
                call += self._dump_view(k, "ti", "tj", f"h{k}[{OUT0}]", f"w{k}[{OUT0}]", site.out)
            body.append(f"if (h{k}[{OUT1}] > h{k}[{OUT0}] && w{k}[{OUT1}] > w{k}[{OUT0}]) {{\n"
                        + _indent(call, 4) + "}\n")
            if k in persistent:
                body.append(self._keep(k, st, len(columns[k])))
            if sums and g.ops[k].outputs[0] == st.info.tiled:
                body.append(self._accumulate(st, k, sums))
        loop = (f"for (int ti = 0; ti < {nh}; ti++) {{\n"
                f"    for (int tj = 0; tj < {nw}; tj++) {{\n" + _indent("".join(body), 8) + "    }\n}\n")
        tail = ""
        if sums:
            out = self.storage.base(st.info.output)
            tail = f"/* op {st.info.reduce}: {g.ops[st.info.reduce].type} from the accumulated sums */\n" \
                + reduce_finish(self.emitter, st.info.reduce, sums, out) + self._dump_whole(st.info.reduce, st.info.output)
        head = (f"/* stage {n}: ops [{stage.start}, {stage.end}) patch by patch, {nh}x{nw} tiles "
                f"(rows {stage.rows}, cols {stage.cols}); TP_STAGE_RUNS > 1 (instruction counts of the stage "
                f"alone) runs it again on the same input */\n")
        return head + "for (int tp_run = 0; tp_run < TP_STAGE_RUNS; tp_run++) {\n" + _indent(setup + loop + tail, 4) + "}\n"

    # --- stream stages --------------------------------------------------------------------
    def stream_stage(self, n: int, st: StageTiling) -> str:
        """Per row strip, the stage's step table walked by one flat loop: a switch on the op."""
        g, stage = self.graph, st.stage
        ops = st.info.tile_ops
        columns = {k: [p for p, r in enumerate(st.h.spans[0][k].reads) if r is not None] for k in ops}
        for k in ops:
            self._tables(n, k, st, columns[k], axes="h")
        steps = column_steps(g, st)
        table = self.unit.name(f"tp_s{n}steps")
        self.unit.add(cfmt.table2d("int16_t", table, [list(r) for r in steps]), 2 * len(steps) * len(steps[0]))
        cases = []
        for k in ops:
            site = self._stream_site(st, k, columns[k])
            call = self.emitter.call(site)
            if k == ops[-1]:  # columns of the stage output (window buffers hold no tensor coordinates)
                call += self._dump_view(k, "ti", "-1", f"h{k}[{OUT0}]", f"step[{STEP_DST}]", site.out)
            call = f"if (h{k}[{OUT1}] > h{k}[{OUT0}]) {{\n" + _indent(call, 4) + "}\n"
            if k != ops[-1]:
                call = self._slide(st, k) + "else " + call
            cases.append(f"case {k}:  /* op {k}: {g.ops[k].type} */\n" + _indent(call + "break;\n", 4))
        decl = "".join(f"const int16_t *h{k} = tp_s{n}h{k}[ti];\n" for k in ops)
        walk = (f"for (int si = 0; si < {len(steps)}; si++) {{\n"
                f"    const int16_t *step = {table}[si];\n"
                f"    switch (step[{STEP_OP}]) {{\n" + _indent("".join(cases), 8) + "    }\n}\n")
        loop = f"for (int ti = 0; ti < {stage.grid[0]}; ti++) {{\n" + _indent(decl + walk, 4) + "}\n"
        head = (f"/* stage {n}: ops [{stage.start}, {stage.end}) streamed: {stage.grid[0]} row strips (rows "
                f"{stage.rows}), each computed column by column through window buffers in {len(steps)} steps */\n")
        return head + "{\n" + _indent(loop, 4) + "}\n"

    def _slide(self, st: StageTiling, k: int) -> str:
        """A slide step of op k's window buffer: its kept columns move to the front."""
        t = self.graph.ops[k].outputs[0]
        px = self.graph.tensors[t].shape[3] * self.storage.esize(t)
        return (f"if (step[{STEP_KEEP}])  /* kept columns slide to the front */\n"
                f"    tp_shift_rows({self.storage.raw(t)}, {st.rings[t] * px}, h{k}[{NEED1}] - h{k}[{NEED0}], "
                f"step[{STEP_KEEP}] * {px}, (ptrdiff_t)step[{STEP_SHIFT}] * {px});\n")

    def _stream_site(self, st: StageTiling, k: int, cols: list[int]) -> Site:
        """Op k computing the column of a compute step (window buffers read from their column 0)."""
        lo, hi = f"step[{STEP_LO}]", f"step[{STEP_HI}]"
        ins = self._ins(st, k, cols, lambda t, c: ("0" if t in st.rings else lo, f"({hi} - {lo})"))
        out_t = self.graph.ops[k].outputs[0]
        out = window_view(self.storage, out_t, self._layout(st, out_t), f"h{k}[{OUT0}]", f"step[{STEP_DST}]",
                          f"(h{k}[{OUT1}] - h{k}[{OUT0}])", "1")
        return Site(k, ins, out, pads=(f"h{k}[{PAD0}]", f"step[{STEP_PAD}]"), stage=True)

    def _accumulate(self, st: StageTiling, k: int, sums: str) -> str:
        """Add the tile's region of the averaged map to the per-channel sums."""
        t = self.graph.ops[k].outputs[0]
        c = self.graph.tensors[t].shape[3]
        h, w = f"h{k}", f"w{k}"
        return (f"if ({h}[{NEED1}] > {h}[{NEED0}] && {w}[{NEED1}] > {w}[{NEED0}])\n"
                f"    tp_sum_channels({sums}, {self.storage.base(t)}, {h}[{NEED1}] - {h}[{NEED0}], "
                f"{w}[{NEED1}] - {w}[{NEED0}], {st.w.max_len(t) * c}, {c});\n")

    def _tables(self, n: int, k: int, st: StageTiling, cols: list[int], axes: str = "hw") -> None:
        for axis, til in (("h", st.h), ("w", st.w)):
            if axis not in axes:
                continue
            rows = []
            for i, spans in enumerate(til.spans):
                s = spans[k]
                row = [s.need[0], s.need[1], s.out[0], s.out[1], s.pads[0], s.pads[1]]
                for p in cols:
                    row.extend(s.reads[p])  # type: ignore[arg-type]
                if axis == "h" and self._has_lines(st, k):
                    row.extend(_next_rows(st, k, i))
                rows.append(row)
            self.unit.add(cfmt.table2d("int16_t", f"tp_s{n}{axis}{k}", rows), 2 * len(rows) * len(rows[0]))

    def _has_lines(self, st: StageTiling, k: int) -> bool:
        return st.line_buffer(k) and line_buffer_name(self.graph.ops[k].outputs[0]) in self.storage.placement.offsets

    def _layout(self, st: StageTiling, t: str) -> Layout:
        tensor = self.graph.tensors[t]
        if t in st.info.internal:
            p = self.graph.producers()[t]
            if st.stream:  # a window buffer: column 0 holds the first column its consumer reads
                return Layout(f"h{p}[{NEED0}]", "0", st.rings[t], self.storage.buffer_bytes(t))
            return Layout(f"h{p}[{NEED0}]", f"w{p}[{NEED0}]", st.w.max_len(t), self.storage.buffer_bytes(t))
        return Layout("0", "0", tensor.shape[2], tensor.nbytes)

    def _ins(self, st: StageTiling, k: int, cols: list[int],
             columns: Callable[[str, int], tuple[str, str]]) -> list[View | None]:
        """Views of op k's inputs in a stage; ``columns(t, c)``: (first column, width) of the
        window of activation input t, whose row span is at column c of op k's row table."""
        g = self.graph
        op = g.ops[k]
        ins: list[View | None] = []
        for p, t in enumerate(op.inputs):
            if not t or not self._operand(t, op.type):
                ins.append(None)
            elif g.tensors[t].is_const:
                if any(d > 1 for d in g.tensors[t].shape[-3:-1]):
                    raise UnsupportedOperatorError(op.type, k, "a constant with spatial extent inside a patch stage")
                ins.append(full_view(self.storage, t))
            else:
                c = READS + 2 * cols.index(p)
                x0, w = columns(t, c)
                rows = f"(h{k}[{c + 1}] - h{k}[{c}])"
                if reads_nchw(g, op):  # a leading TRANSPOSE reads its window of the NCHW input
                    ins.append(nchw_window_view(self.storage, t, f"h{k}[{c}]", x0, rows, w))
                else:
                    ins.append(window_view(self.storage, t, self._layout(st, t), f"h{k}[{c}]", x0, rows, w))
        return ins

    def _site(self, st: StageTiling, k: int, cols: list[int]) -> Site:
        ins = self._ins(st, k, cols, lambda t, c: (f"w{k}[{c}]", f"(w{k}[{c + 1}] - w{k}[{c}])"))
        out_t = self.graph.ops[k].outputs[0]
        where = (f"h{k}[{OUT0}]", f"w{k}[{OUT0}]", f"(h{k}[{OUT1}] - h{k}[{OUT0}])", f"(w{k}[{OUT1}] - w{k}[{OUT0}])")
        if writes_nchw(self.graph, self.graph.ops[k]):  # a trailing TRANSPOSE writes its window of the NCHW output
            out = nchw_window_view(self.storage, out_t, *where)
        else:
            out = window_view(self.storage, out_t, self._layout(st, out_t), *where)
        first = READS if cols else OUT0
        return Site(k, ins, out, pads=(f"h{k}[{PAD0}]", f"w{k}[{PAD0}]"),
                    win=(f"h{k}[{OUT0}]", f"w{k}[{OUT0}]", f"h{k}[{first}]", f"w{k}[{first}]"), stage=True)

    def _geometry(self, st: StageTiling, k: int) -> tuple[str, int, int]:
        """(buffer as char *, bytes per pixel, row stride in bytes) of op k's tile buffer."""
        t = self.graph.ops[k].outputs[0]
        px = self.graph.tensors[t].shape[3] * self.storage.esize(t)
        return self.storage.raw(t), px, st.w.max_len(t) * px

    def _lines(self, st: StageTiling, k: int, px: int) -> tuple[str, int, int]:
        """(line buffer as char *, its first column, its row stride in bytes)."""
        t = self.graph.ops[k].outputs[0]
        lo, hi = st.w.extent(t)
        return self.storage.raw(line_buffer_name(t)), lo, (hi - lo) * px

    def _restore(self, k: int, st: StageTiling) -> str:
        """Refill the cached part of op k's region from its last kept region (or the line buffer)."""
        buf, px, rs = self._geometry(st, k)
        h, w = f"h{k}", f"w{k}"
        delta = f"(ptrdiff_t)({h}[{NEED0}] - kr{k}) * {rs} + (ptrdiff_t)({w}[{NEED0}] - kc{k}) * {px}"
        code = [(f"if (tj > 0 && {w}[{OUT0}] > {w}[{NEED0}])  /* overlapping columns slide left */\n"
                 f"    tp_shift_rows({buf}, {rs}, {h}[{NEED1}] - {h}[{NEED0}], ({w}[{OUT0}] - {w}[{NEED0}]) * {px}, "
                 f"{delta});\n")]
        if k in st.h.cached:
            rows = f"{h}[{OUT0}] - {h}[{NEED0}]"
            if st.line_buffer(k):
                if self._has_lines(st, k):
                    lines, lo, lrs = self._lines(st, k, px)
                    code.append(f"if (ti > 0 && {h}[{OUT0}] > {h}[{NEED0}])  /* overlapping rows from the line buffer */\n"
                                f"    tp_copy_rows({buf} + ({w}[{OUT0}] - {w}[{NEED0}]) * {px}, {rs}, "
                                f"{lines} + ({w}[{OUT0}] - {lo}) * {px}, {lrs}, {rows}, "
                                f"({w}[{NEED1}] - {w}[{OUT0}]) * {px});\n")
            else:
                code.append(f"if (ti > 0 && {h}[{OUT0}] > {h}[{NEED0}])  /* overlapping rows roll up */\n"
                            f"    tp_shift_rows({buf}, {rs}, {rows}, ({w}[{NEED1}] - {w}[{NEED0}]) * {px}, {delta});\n")
        body = "".join(code)
        return (f"if (kept{k} && {h}[{NEED1}] > {h}[{NEED0}] && {w}[{NEED1}] > {w}[{NEED0}]) {{\n"
                + _indent(body, 4) + "}\n")

    def _keep(self, k: int, st: StageTiling, n_reads: int) -> str:
        """After op k: remember its region as the kept one and save the rows a later tile row reuses."""
        h, w = f"h{k}", f"w{k}"
        code = f"kept{k} = 1;\nkr{k} = {h}[{NEED0}];\nkc{k} = {w}[{NEED0}];\n"
        if self._has_lines(st, k):
            buf, px, rs = self._geometry(st, k)
            lines, lo, lrs = self._lines(st, k, px)
            nxt, rows = READS + 2 * n_reads, READS + 2 * n_reads + 1
            code += (f"if ({h}[{rows}] > 0)  /* rows the next tile row takes from the line buffer */\n"
                     f"    tp_copy_rows({lines} + ({w}[{OUT0}] - {lo}) * {px}, {lrs}, "
                     f"{buf} + (ptrdiff_t)({h}[{nxt}] - {h}[{NEED0}]) * {rs} + ({w}[{OUT0}] - {w}[{NEED0}]) * {px}, "
                     f"{rs}, {h}[{rows}], ({w}[{NEED1}] - {w}[{OUT0}]) * {px});\n")
        return (f"if ({h}[{NEED1}] > {h}[{NEED0}] && {w}[{NEED1}] > {w}[{NEED0}]) {{\n"
                + _indent(code, 4) + "}\n")


def _next_rows(st: StageTiling, k: int, i: int) -> tuple[int, int]:
    """(first row, row count) of op k's output that the next tile row needing any of it takes
    from the line buffer, after tile row i; (0, 0) if none."""
    later = [s[k] for s in st.h.spans[i + 1:] if s[k].need[0] < s[k].need[1]]
    if not later or later[0].out[0] <= later[0].need[0]:
        return 0, 0
    return later[0].need[0], later[0].out[0] - later[0].need[0]
