"""Oracles for in-place operators that share nothing with :mod:`tinypatch.analysis.inplace_shift`.

* :func:`c_write_ahead`: the write-ahead figure stated next to each C kernel (parsed from the
  C sources, not imported from the code under test).
* :class:`BytewisePlanExecutor`: runs a plan's in-place window operators the way a C kernel
  with that write-ahead does, in the arena's own bytes: output pixels of a row in groups of
  ``block`` (every phase of the grouping), the last pixels of a group written before the first
  one's window is (re)read, every window read from the shared bytes at that moment. An unsafe
  shift therefore yields wrong bytes instead of going unseen.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

import tinypatch.codegen
from tinypatch.analysis.regions import axis_maps
from tinypatch.ir import Graph
from tinypatch.runtime.sim_arena import Arena
from tinypatch.runtime.plan_executor import PlanExecutor

C_DIR = Path(tinypatch.codegen.__file__).parent / "c"
_NOTE = re.compile(r"/\* write-ahead: (\d+) output pixels?[^*]*(?:\*(?!/)[^*]*)*\*/\s*\n[\w ]*?\b(tp_\w+)\(")


def c_write_ahead() -> dict[str, int]:
    """Kernel name -> the write-ahead (output pixels) stated above it in the C sources."""
    found: dict[str, int] = {}
    for path in sorted(C_DIR.glob("*.c")):
        for n, name in _NOTE.findall(path.read_text()):
            found[name] = int(n)
    return found


def window_in_place(graph: Graph, k: int, kernel, mem: np.ndarray, in_off: int, out_off: int,  # noqa: ANN001
                    block: int, phase: int) -> None:
    """Run window op ``k`` in ``mem`` (bytes): input at ``in_off``, output written at ``out_off``."""
    op = graph.ops[k]
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    mh, mw = axis_maps(graph, op)
    _, _, w, c = x.shape
    _, oh, ow, oc = y.shape
    ipx, opx = c * x.np_dtype.itemsize, oc * y.np_dtype.itemsize

    def compute(oy: int, a: int, b: int) -> np.ndarray:  # pixels [a, b) of row oy, from mem as it is now
        (r0, r1), pt, pb = mh.input_span((oy, oy + 1))
        (c0, c1), pl, pr = mw.input_span((a, b))
        rows = [mem[in_off + (r * w + c0) * ipx: in_off + (r * w + c1) * ipx] for r in range(r0, r1)]
        win = (np.stack(rows) if rows else np.zeros((0, (c1 - c0) * ipx), np.uint8)).copy()
        win = win.view(x.np_dtype).reshape(1, r1 - r0, c1 - c0, c)
        out = kernel([win] + [None] * (len(op.inputs) - 1), (pt, pb, pl, pr))[0]
        return np.ascontiguousarray(out).view(np.uint8).reshape(b - a, opx)

    def put(oy: int, ox: int, px: np.ndarray) -> None:
        at = out_off + (oy * ow + ox) * opx
        mem[at: at + opx] = px

    for oy in range(oh):
        cuts = sorted({0, ow, *range(phase or block, ow, block)})
        for a, b in zip(cuts, cuts[1:]):
            group = compute(oy, a, b)
            for ox in range(b - 1, a, -1):  # the rest of the group first ...
                put(oy, ox, group[ox - a])
            put(oy, a, compute(oy, a, a + 1)[0])  # ... then the first pixel's window read again


class BytewisePlanExecutor(PlanExecutor):
    """A :class:`PlanExecutor` whose in-place window ops write pixel group by pixel group into
    the arena bytes their input still occupies (each phase of the grouping in turn, from the
    same input bytes); each result must equal the op run out of place."""

    def __init__(self, graph: Graph, plan, block: int) -> None:  # noqa: ANN001
        super().__init__(graph, plan)
        self.block = block
        self.bytewise_ops = 0

    def _run_op(self, arena: Arena, outside: dict[str, np.ndarray], i: int) -> None:
        op = self.graph.ops[i]
        src = self.overwrites.get(i)
        if src is None or axis_maps(self.graph, op) is None or axis_maps(self.graph, op)[0].kind != "window":
            super()._run_op(arena, outside, i)
            return
        x = self.graph.tensors[op.inputs[0]]
        want = self.kernels[i]([arena.read(self._get(arena, outside, x.name), x.name)]
                               + [None] * (len(op.inputs) - 1))[0]  # out of place
        out_t = self.graph.tensors[op.outputs[0]]
        out_buf = self.buffer_of[out_t.name]
        in_off, out_off = self.placement.offsets[src], self.placement.offsets[out_buf]
        results = []
        for phase in range(self.block):
            mem = arena.memory.copy()
            window_in_place(self.graph, i, self.kernels[i], mem, in_off, out_off, self.block, phase)
            results.append(mem[out_off: out_off + out_t.nbytes].copy())
        for phase, r in enumerate(results):
            assert r.tobytes() == want.tobytes(), f"op {i} {op.type} in place (phase {phase}): wrong bytes"
        arena.free(src)
        self._put(arena, outside, out_t.name, results[0].view(out_t.np_dtype).reshape(out_t.shape))
        self.bytewise_ops += 1
